//! Pod traffic shaping from kubelet's annotations `kubernetes.io/ingress-bandwidth` and
//! `kubernetes.io/egress-bandwidth` (Kubernetes quantities in bits per second, e.g. `10M`), handed
//! to CNI's `bandwidth` capability as containerd and CRI-O do.

use std::collections::BTreeMap;

use crate::error::SandboxError;

pub const INGRESS: &str = "kubernetes.io/ingress-bandwidth";
pub const EGRESS: &str = "kubernetes.io/egress-bandwidth";

/// Kubernetes' accepted range for these annotations (1 kbit/s to 1 Pbit/s).
const MIN_RATE: u64 = 1_000;
const MAX_RATE: u64 = 1_000_000_000_000_000;
/// The burst runtimes pass with a rate (the annotation has none): the largest the tbf qdisc takes.
const BURST: u64 = u32::MAX as u64;

/// A Kubernetes quantity as a whole number: `100`, `10k`, `5M`, `1G`, `2Mi`, `1.5M`.
fn parse_quantity(value: &str) -> Option<u64> {
    let value = value.trim();
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(split);
    let multiplier: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut total = whole.checked_mul(multiplier)?;
    if !fraction.is_empty() {
        let digits = u32::try_from(fraction.len()).ok().filter(|d| *d <= 18)?;
        let scale = 10u64.pow(digits);
        let fraction: u64 = fraction.parse().ok()?;
        total = total.checked_add(fraction.checked_mul(multiplier)? / scale)?;
    }
    Some(total)
}

fn rate(
    annotations: &BTreeMap<String, String>,
    key: &'static str,
) -> Result<Option<u64>, SandboxError> {
    let Some(value) = annotations.get(key) else {
        return Ok(None);
    };
    let invalid = |problem| SandboxError::InvalidBandwidth {
        annotation: key,
        value: value.clone(),
        problem,
    };
    let rate = parse_quantity(value).ok_or_else(|| invalid("is not a quantity"))?;
    if !(MIN_RATE..=MAX_RATE).contains(&rate) {
        return Err(invalid("is outside 1k..1P bits per second"));
    }
    Ok(Some(rate))
}

/// The pod's bandwidth limits, if its annotations set any.
pub fn from_annotations(
    annotations: &BTreeMap<String, String>,
) -> Result<Option<berth_network::Bandwidth>, SandboxError> {
    let ingress = rate(annotations, INGRESS)?;
    let egress = rate(annotations, EGRESS)?;
    if ingress.is_none() && egress.is_none() {
        return Ok(None);
    }
    let burst = |rate: Option<u64>| if rate.is_some() { BURST } else { 0 };
    Ok(Some(berth_network::Bandwidth {
        ingress_rate: ingress.unwrap_or(0),
        ingress_burst: burst(ingress),
        egress_rate: egress.unwrap_or(0),
        egress_burst: burst(egress),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        for (text, value) in [
            ("100", Some(100)),
            ("10k", Some(10_000)),
            ("5M", Some(5_000_000)),
            ("1.5M", Some(1_500_000)),
            ("2Mi", Some(2 << 20)),
            ("1G", Some(1_000_000_000)),
            ("", None),
            ("M", None),
            ("10m", None),
            ("-1M", None),
            ("1.2.3M", None),
            ("99999999999999999999P", None),
        ] {
            assert_eq!(parse_quantity(text), value, "{text:?}");
        }
    }

    #[test]
    fn annotations_to_bandwidth() {
        let mut a = BTreeMap::new();
        assert!(from_annotations(&a).unwrap().is_none());
        a.insert(INGRESS.to_string(), "10M".to_string());
        let b = from_annotations(&a).unwrap().unwrap();
        assert_eq!(
            (
                b.ingress_rate,
                b.ingress_burst,
                b.egress_rate,
                b.egress_burst
            ),
            (10_000_000, BURST, 0, 0)
        );
        a.insert(EGRESS.to_string(), "1".to_string());
        assert!(matches!(
            from_annotations(&a),
            Err(SandboxError::InvalidBandwidth { .. })
        ));
        a.insert(EGRESS.to_string(), "lots".to_string());
        assert!(matches!(
            from_annotations(&a),
            Err(SandboxError::InvalidBandwidth { .. })
        ));
    }
}
