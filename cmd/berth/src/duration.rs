//! Points in time as docker's `--since`/`--until` take them, and the RFC 3339 timestamps of CRI
//! log lines, as nanoseconds since the Unix epoch (no calendar crate: the proleptic Gregorian
//! arithmetic below is all that is needed).
//!
//! A point is an RFC 3339 timestamp (`2024-05-01T10:00:00Z`, fractions and offsets allowed, or a
//! date alone), Unix seconds (`1714557600` or `1714557600.5`), or a Go-style duration before now
//! (`10m`, `1h30m`, `1.5s`, `250ms`), as `docker logs --since` accepts them.

const SECOND: i128 = 1_000_000_000;

/// A Go-style duration (`1h30m`, `1.5s`, `300ms`, `2us`, `10ns`) in nanoseconds. A bare number
/// is not a duration (docker reads it as Unix seconds).
pub fn parse_duration(text: &str) -> Option<i64> {
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => SECOND,
            "m" => 60 * SECOND,
            "h" => 3600 * SECOND,
            _ => return None,
        };
        total += decimal(number, scale)?;
        if total > i128::from(i64::MAX) {
            return None;
        }
        rest = after;
    }
    i64::try_from(total).ok()
}

/// `number` (digits, optionally with a fraction) times `scale`, truncated to an integer.
fn decimal(number: &str, scale: i128) -> Option<i128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if !all_digits(whole) || !all_digits(fraction) || whole.len() > 20 {
        return None;
    }
    let mut value = if whole.is_empty() {
        0
    } else {
        whole.parse::<i128>().ok()? * scale
    };
    let mut unit = scale;
    for digit in fraction.bytes().take(18) {
        unit /= 10;
        value += i128::from(digit - b'0') * unit;
    }
    Some(value)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date of a day count since the epoch (the inverse of [`days_from_civil`]).
// Day (1..=31) and month (1..=12) are small by construction.
#[allow(clippy::cast_possible_truncation)]
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn digits(text: &str, at: usize, len: usize) -> Option<u32> {
    let part = text.get(at..at + len)?;
    part.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| part.parse().ok())?
}

/// An RFC 3339 timestamp (`T` or a space between date and time, `Z` or `±hh:mm`, any fraction),
/// or a date alone (midnight UTC), in nanoseconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let year = i64::from(digits(text, 0, 4)?);
    let (month, day) = (digits(text, 5, 2)?, digits(text, 8, 2)?);
    if bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let date = i128::from(days_from_civil(year, month, day)) * 86_400 * SECOND;
    if text.len() == 10 {
        return i64::try_from(date).ok();
    }
    if !matches!(bytes.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (hour, minute) = (digits(text, 11, 2)?, digits(text, 14, 2)?);
    let second = digits(text, 17, 2)?;
    if bytes.get(13) != Some(&b':') || bytes.get(16) != Some(&b':') {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos: i128 = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let len = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        if len == 0 {
            return None;
        }
        nanos = decimal(&format!(".{}", &fraction[..len]), SECOND)?;
        rest = &fraction[len..];
    }
    let offset: i128 = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let (h, m) = (digits(rest, 1, 2)?, digits(rest, 4, 2)?);
            sign * i128::from(h * 3600 + m * 60) * SECOND
        }
    };
    let time = i128::from(hour * 3600 + minute * 60 + second) * SECOND + nanos;
    i64::try_from(date + time - offset).ok()
}

/// `ns` since the epoch as RFC 3339 in UTC with nanoseconds, as CRI log lines carry it.
pub fn format_rfc3339(ns: i64) -> String {
    let (secs, nanos) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60
    )
}

/// A `--since`/`--until` value at `now` (nanoseconds since the epoch).
pub fn parse_point(text: &str, now: i64) -> Result<i64, String> {
    let text = text.trim();
    if let Some(ns) = parse_rfc3339(text) {
        return Ok(ns);
    }
    if !text.is_empty()
        && text.chars().all(|c| c.is_ascii_digit() || c == '.')
        && let Some(ns) = decimal(text, SECOND).and_then(|v| i64::try_from(v).ok())
    {
        return Ok(ns);
    }
    if let Some(ago) = parse_duration(text) {
        return Ok(now.saturating_sub(ago));
    }
    Err(format!(
        "{text:?} is neither a time (RFC 3339, e.g. 2024-05-01T10:00:00Z, or Unix seconds) \
         nor a duration before now (e.g. 10m, 1h30m)"
    ))
}

/// A `--since`/`--until` argument: kept as written, resolved against the clock when used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point(pub String);

/// clap's value parser for [`Point`]: checks the syntax at parse time.
pub fn point(text: &str) -> Result<Point, String> {
    parse_point(text, berth_clock::now_ns()).map(|_| Point(text.to_string()))
}

impl Point {
    pub fn at(&self, now: i64) -> i64 {
        // Checked by `point` when parsed.
        parse_point(&self.0, now).unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000_000_000;

    #[test]
    fn durations_read_as_go_writes_them() {
        assert_eq!(parse_duration("10m"), Some(10 * MINUTE));
        assert_eq!(parse_duration("1h30m"), Some(90 * MINUTE));
        assert_eq!(parse_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_duration("250ms"), Some(250_000_000));
        assert_eq!(parse_duration("2us"), Some(2_000));
        assert_eq!(parse_duration("3ns"), Some(3));
        assert_eq!(
            parse_duration("2h45m30.5s"),
            Some(165 * MINUTE + 30_500_000_000)
        );
        assert_eq!(parse_duration(".5m"), Some(30_000_000_000));
        for bad in [
            "",
            "10",
            "m",
            "10x",
            "1h-5m",
            "1..5s",
            "99999999999999999999h",
            "1 h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamps_read_and_written_as_rfc_3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-05-01"),
            Some(1_714_521_600 * 1_000_000_000)
        );
        let t = 1_714_557_600 * 1_000_000_000;
        assert_eq!(parse_rfc3339("2024-05-01T10:00:00Z"), Some(t));
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00+02:00"), Some(t));
        assert_eq!(parse_rfc3339("2024-05-01 09:30:00-00:30"), Some(t));
        assert_eq!(parse_rfc3339("2024-05-01T10:00:00.000000001Z"), Some(t + 1));
        assert_eq!(
            parse_rfc3339("2024-05-01T10:00:00.5Z"),
            Some(t + 500_000_000)
        );
        // More digits than nanoseconds hold are cut, not rounded.
        assert_eq!(
            parse_rfc3339("2024-05-01T10:00:00.1234567899Z"),
            Some(t + 123_456_789)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1_000_000_000));
        for bad in [
            "2024-05-01T10:00:00",
            "2024-13-01T10:00:00Z",
            "2024-05-01T25:00:00Z",
            "2024-05-01T10:00:00.Z",
            "2024-05-01T10:00:00+0200",
            "2024/05/01",
            "x",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        for ns in [0, t + 1, -1_000_000_000, 951_782_400 * 1_000_000_000 + 7] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ns)), Some(ns));
        }
        assert_eq!(format_rfc3339(t), "2024-05-01T10:00:00.000000000Z");
        assert_eq!(
            format_rfc3339(951_782_400 * 1_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn points_are_times_unix_seconds_or_durations_before_now() {
        let now = 1_000 * MINUTE;
        assert_eq!(parse_point("10m", now), Ok(990 * MINUTE));
        assert_eq!(
            parse_point("1714557600", now),
            Ok(1_714_557_600 * 1_000_000_000)
        );
        assert_eq!(parse_point("1.5", now), Ok(1_500_000_000));
        assert_eq!(
            parse_point("2024-05-01T10:00:00Z", now),
            Ok(1_714_557_600 * 1_000_000_000)
        );
        assert!(parse_point("yesterday", now).is_err());
        assert!(point("").is_err());
        assert_eq!(point("1h").map(|p| p.at(now)), Ok(now - 60 * MINUTE));
    }
}
