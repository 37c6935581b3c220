//! Times as people type and read them: parsing the bounds of `index shortlist` and the TUI's time filter, and
//! formatting modification times for tables (local time) and JSON (RFC 3339 with nanoseconds, UTC).

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Local, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, TimeZone, Utc};

use crate::error::{Error, Result};

/// Nanoseconds since the Unix epoch, saturating outside the years 1677 to 2262.
pub fn system_time_to_ns(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_nanos()).map(|ns| -ns).unwrap_or(i64::MIN),
    }
}

/// Which end of an inclusive range a typed time is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Start,
    /// A time typed to the second (or the day) covers that whole second (or day).
    End,
}

/// Parses `YYYY-MM-DD HH:MM:SS[.fff]` (local time; `T` may replace the space), `YYYY-MM-DD HH:MM`,
/// `YYYY-MM-DD`, or RFC 3339, into nanoseconds since the Unix epoch.
pub fn parse_time(value: &str, bound: Bound) -> Result<i64> {
    let bad = || Error::BadTime { value: value.to_string() };
    let text = value.trim();
    if let Ok(exact) = DateTime::parse_from_rfc3339(text) {
        return exact.timestamp_nanos_opt().ok_or_else(bad);
    }
    let text = text.replacen('T', " ", 1);
    // (format, how much time the typed value covers beyond its start, in nanoseconds)
    let (naive, covers_ns) = if let Ok(t) = NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f") {
        let typed_fraction = text.contains('.');
        (t, if typed_fraction { 0 } else { 999_999_999 })
    } else if let Ok(t) = NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M") {
        (t, 59_999_999_999)
    } else if let Ok(day) = NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
        (day.and_time(NaiveTime::MIN), 86_399_999_999_999)
    } else {
        return Err(bad());
    };
    let local = match (Local.from_local_datetime(&naive), bound) {
        (LocalResult::Single(t), _) => t,
        // A time that occurs twice when clocks go back: take the widest reading.
        (LocalResult::Ambiguous(early, _), Bound::Start) => early,
        (LocalResult::Ambiguous(_, late), Bound::End) => late,
        (LocalResult::None, _) => return Err(bad()),
    };
    let start = local.timestamp_nanos_opt().ok_or_else(bad)?;
    Ok(match bound {
        Bound::Start => start,
        Bound::End => start.saturating_add(covers_ns),
    })
}

/// `2026-11-21 13:40:01` in the local time zone, for tables.
pub fn format_local(ns: i64) -> String {
    Local.timestamp_nanos(ns).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// RFC 3339 in UTC with nanoseconds, for JSON.
pub fn format_rfc3339(ns: i64) -> String {
    Utc.timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_exact_and_local_seconds_cover_the_second() {
        let exact = parse_time("2024-03-01T12:00:00.5Z", Bound::End).unwrap();
        assert_eq!(exact, 1_709_294_400_500_000_000);
        assert_eq!(format_rfc3339(exact), "2024-03-01T12:00:00.500000000Z");

        let local = Local.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap().timestamp_nanos_opt().unwrap();
        assert_eq!(parse_time("2024-03-01 12:00:00", Bound::Start).unwrap(), local);
        assert_eq!(parse_time("2024-03-01 12:00:00", Bound::End).unwrap(), local + 999_999_999);
        assert_eq!(parse_time("2024-03-01T12:00:00", Bound::Start).unwrap(), local);
        assert_eq!(parse_time("2024-03-01 12:00:00.25", Bound::End).unwrap(), local + 250_000_000);
        assert_eq!(format_local(local), "2024-03-01 12:00:00");

        let day = Local.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap().timestamp_nanos_opt().unwrap();
        assert_eq!(parse_time("2024-03-01", Bound::End).unwrap(), day + 86_399_999_999_999);
    }

    #[test]
    fn nonsense_names_the_value() {
        let err = parse_time("yesterday", Bound::Start).unwrap_err().to_string();
        assert!(err.starts_with("invalid time \"yesterday\""), "{err}");
        assert!(parse_time("2024-13-01 00:00:00", Bound::Start).is_err());
    }
}
