//! Wall-clock timestamps as CRI carries them (`created_at`, `started_at`, a stats sample's
//! `timestamp`): nanoseconds since the Unix epoch in an `i64`.
//!
//! No dependencies, so the monitor and the CLI (separate, small binaries) can use it too.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in nanoseconds since the Unix epoch. A clock set before 1970 reads 0, and one past the
/// year 2262 (where an `i64` of nanoseconds ends) reads `i64::MAX`: a timestamp that is merely
/// wrong is better for these fields than a failed request.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, nanos)
}

/// A duration in nanoseconds, saturating at `i64::MAX`.
pub fn nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_after_2020_and_durations_saturate() {
        assert!(now_ns() > 1_577_836_800 * 1_000_000_000);
        assert_eq!(nanos(Duration::from_millis(3)), 3_000_000);
        assert_eq!(nanos(Duration::MAX), i64::MAX);
    }
}
