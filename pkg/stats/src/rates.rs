//! CPU usage rates (CRI `usage_nano_cores`): cores used over the interval since the previous
//! sample of the same cgroup, as kubelet expects from the runtime.

use std::collections::HashMap;
use std::sync::Mutex;

/// Samples closer together than this don't replace the previous one: a second client polling
/// right after the first would otherwise turn everybody's rate into a rate over microseconds.
const MIN_INTERVAL_NS: i64 = 100_000_000;

#[derive(Debug, Clone, Copy)]
struct Sample {
    at_ns: i64,
    usage_ns: u64,
    /// The rate computed when this sample was taken (reported again for samples too close).
    rate: Option<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct CpuRates {
    samples: Mutex<HashMap<String, Sample>>,
}

impl CpuRates {
    /// Records `usage_ns` (cumulative CPU time) of `key` at `at_ns` and returns the rate in
    /// nanocores since the previous sample; `None` for the first sample (kubelet then computes
    /// it from its own two samples).
    pub(crate) fn rate(&self, key: &str, at_ns: i64, usage_ns: u64) -> Option<u64> {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let first = Sample {
            at_ns,
            usage_ns,
            rate: None,
        };
        let Some(prev) = samples.get(key).copied() else {
            samples.insert(key.to_string(), first);
            return None;
        };
        let elapsed = at_ns - prev.at_ns;
        // A counter that went back is a new cgroup under the same key: start over.
        if usage_ns < prev.usage_ns || elapsed < 0 {
            samples.insert(key.to_string(), first);
            return None;
        }
        if elapsed < MIN_INTERVAL_NS {
            return prev.rate;
        }
        let per_second = u128::from(usage_ns - prev.usage_ns) * 1_000_000_000 / elapsed as u128;
        // Only a counter jump over a minimal interval could exceed u64: report it saturated.
        let rate = u64::try_from(per_second).unwrap_or(u64::MAX);
        samples.insert(
            key.to_string(),
            Sample {
                at_ns,
                usage_ns,
                rate: Some(rate),
            },
        );
        Some(rate)
    }

    /// Drops the samples of keys `keep` says are gone.
    pub(crate) fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn rate_over_the_interval() {
        let r = CpuRates::default();
        assert_eq!(r.rate("a", 10 * S, 5 * S as u64), None);
        // One core for two seconds.
        assert_eq!(r.rate("a", 12 * S, 7 * S as u64), Some(1_000_000_000));
        // Too close: the previous rate, and the sample is kept.
        assert_eq!(
            r.rate("a", 12 * S + 1000, 7 * S as u64 + 999),
            Some(1_000_000_000)
        );
        // Half a core over the next second, measured from the kept sample.
        assert_eq!(
            r.rate("a", 13 * S, 7 * S as u64 + S as u64 / 2),
            Some(500_000_000)
        );
    }

    #[test]
    fn reset_counters_and_forgetting() {
        let r = CpuRates::default();
        r.rate("a", S, 100);
        assert_eq!(r.rate("a", 2 * S, 50), None);
        r.rate("b", S, 1);
        r.retain(|k| k == "b");
        assert_eq!(r.rate("a", 3 * S, 60), None);
        r.retain(|_| false);
        assert_eq!(r.rate("b", 4 * S, 1), None);
    }
}
