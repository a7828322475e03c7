//! Latency statistics: percentiles over sorted samples, summaries, formatting.
//!
//! Percentiles use the *nearest-rank* method on the sorted samples: the p-th
//! percentile of `n` samples is the sample at 1-based rank `ceil(p/100 * n)`
//! (rank 1 for p = 0). Every reported value is therefore a latency that was
//! really observed, never an interpolation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Nearest-rank percentile of `sorted` (ascending). `None` when empty.
///
/// `p` is clamped to `[0, 100]`.
// The rank is in 0..=n (p is clamped to 0..=100) before it is clamped to 1..=n.
#[allow(clippy::cast_possible_truncation)]
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 100.0) };
    // ceil(p/100 * n) computed in integer space where possible to avoid
    // float artefacts such as 0.99 * 100 = 98.99999999999999.
    let scaled = p * n as f64 / 100.0;
    let mut rank = scaled.ceil() as usize;
    // Guard against floating point noise just above an integer (e.g. 50.000000001).
    if (scaled - scaled.round()).abs() < 1e-9 {
        rank = scaled.round() as usize;
    }
    let rank = rank.clamp(1, n);
    Some(sorted[rank - 1])
}

/// Summary of one operation's latency samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of successful, timed calls.
    pub count: usize,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub min_us: f64,
    pub max_us: f64,
}

fn us(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1000.0
}

impl Summary {
    /// Summarise samples (any order; sorted in place).
    pub fn from_samples(samples: &mut [Duration]) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        samples.sort_unstable();
        let total: u128 = samples.iter().map(|d| d.as_nanos()).sum();
        let mean_ns = total as f64 / samples.len() as f64;
        // Never 0: samples is not empty.
        let pick = |p| percentile(samples, p).map_or(0.0, us);
        Summary {
            count: samples.len(),
            mean_us: mean_ns / 1000.0,
            p50_us: pick(50.0),
            p90_us: pick(90.0),
            p99_us: pick(99.0),
            min_us: us(samples[0]),
            max_us: us(samples[samples.len() - 1]),
        }
    }
}

/// Median of a set of values (lower median for even counts, i.e. nearest-rank p50).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0)
}

/// Human formatting of a latency given in microseconds.
pub fn fmt_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.1}µs")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{:.3}s", us / 1_000_000.0)
    }
}

/// Human formatting of a size given in KiB.
pub fn fmt_kib(kib: u64) -> String {
    if kib < 1024 {
        format!("{kib} KiB")
    } else {
        format!("{:.1} MiB", kib as f64 / 1024.0)
    }
}

/// Signed KiB delta, formatted.
pub fn fmt_kib_delta(delta: i64) -> String {
    let sign = if delta < 0 { "-" } else { "+" };
    format!("{sign}{}", fmt_kib(delta.unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn percentile_empty_is_none() {
        let v: [u32; 0] = [];
        assert_eq!(percentile(&v, 50.0), None);
    }

    #[test]
    fn percentile_single_sample_is_that_sample() {
        for p in [0.0, 1.0, 50.0, 99.0, 100.0] {
            assert_eq!(percentile(&[7], p), Some(7));
        }
    }

    #[test]
    fn percentile_nearest_rank_1_to_100() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&v, 1.0), Some(1));
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 90.0), Some(90));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 99.5), Some(100));
        assert_eq!(percentile(&v, 100.0), Some(100));
    }

    #[test]
    fn percentile_small_sets() {
        let v = [10, 20, 30, 40];
        // ranks: p50 -> ceil(2.0) = 2, p25 -> 1, p26 -> ceil(1.04) = 2, p99 -> ceil(3.96) = 4
        assert_eq!(percentile(&v, 25.0), Some(10));
        assert_eq!(percentile(&v, 26.0), Some(20));
        assert_eq!(percentile(&v, 50.0), Some(20));
        assert_eq!(percentile(&v, 75.0), Some(30));
        assert_eq!(percentile(&v, 99.0), Some(40));
        let ten: Vec<u32> = (1..=10).collect();
        assert_eq!(percentile(&ten, 99.0), Some(10));
        assert_eq!(percentile(&ten, 90.0), Some(9));
        assert_eq!(percentile(&ten, 50.0), Some(5));
    }

    #[test]
    fn percentile_float_noise_does_not_bump_rank() {
        // 0.07 * 100 = 7.000000000000001 in f64; nearest rank must still be 7.
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 7.0), Some(7));
        let v: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&v, 99.0), Some(990));
        assert_eq!(percentile(&v, 99.9), Some(999));
    }

    #[test]
    fn percentile_clamps_out_of_range() {
        let v = [1, 2, 3];
        assert_eq!(percentile(&v, -5.0), Some(1));
        assert_eq!(percentile(&v, 250.0), Some(3));
        assert_eq!(percentile(&v, f64::NAN), Some(1));
    }

    #[test]
    fn summary_unsorted_input() {
        let mut s = vec![ms(5), ms(1), ms(3), ms(2), ms(4)];
        let sum = Summary::from_samples(&mut s);
        assert_eq!(sum.count, 5);
        assert_eq!(sum.min_us, 1000.0);
        assert_eq!(sum.max_us, 5000.0);
        assert_eq!(sum.p50_us, 3000.0);
        assert_eq!(sum.p99_us, 5000.0);
        assert!((sum.mean_us - 3000.0).abs() < 1e-9);
    }

    #[test]
    fn summary_empty_is_default() {
        assert_eq!(Summary::from_samples(&mut []), Summary::default());
    }

    #[test]
    fn median_odd_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_us(12.34), "12.3µs");
        assert_eq!(fmt_us(1234.0), "1.23ms");
        assert_eq!(fmt_us(2_500_000.0), "2.500s");
        assert_eq!(fmt_kib(512), "512 KiB");
        assert_eq!(fmt_kib(2048), "2.0 MiB");
        assert_eq!(fmt_kib_delta(-2048), "-2.0 MiB");
        assert_eq!(fmt_kib_delta(100), "+100 KiB");
    }
}
