//! Vumi's timestamp: `YYYY-MM-DD HH:MM:SS.ffffff`, UTC, no zone.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDateTime, Timelike, Utc};

/// A UTC instant in Vumi's text form. Reading accepts the form with 1 to 6 fractional digits
/// or none (older workers wrote whole seconds); writing always gives six.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub NaiveDateTime);

impl Timestamp {
    /// The current time, at Vumi's microsecond precision (so a round trip through JSON is exact).
    pub fn now() -> Self {
        let t = Utc::now().naive_utc();
        Self(t.with_nanosecond(t.nanosecond() / 1000 * 1000).unwrap_or(t))
    }
}

/// The text is not a Vumi timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a timestamp of the form YYYY-MM-DD HH:MM:SS[.ffffff]")]
pub struct TimestampError(pub String);

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, TimestampError> {
        // `%.f` accepts an optional fraction of any length; Vumi's has at most six digits.
        let frac_ok = s.split_once('.').is_none_or(|(_, f)| (1..=6).contains(&f.len()));
        match NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f") {
            Ok(t) if frac_ok => Ok(Self(t)),
            _ => Err(TimestampError(s.to_owned())),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // By hand rather than `format("%Y-...")`: every message crossing into a plugin is
        // written, and chrono's format-string interpreter showed in profiles.
        let (d, t) = (self.0.date(), self.0.time());
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
            d.year(),
            d.month(),
            d.day(),
            t.hour(),
            t.minute(),
            t.second(),
            // A leap second's nanoseconds run past 1e9: keep it to six digits.
            (t.nanosecond() / 1000).min(999_999)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse_and_write_with_microseconds() {
        let t: Timestamp = "2014-05-06 10:11:12.123456".parse().expect("micro");
        assert_eq!(t.to_string(), "2014-05-06 10:11:12.123456");
        let t: Timestamp = "2014-05-06 10:11:12".parse().expect("whole seconds");
        assert_eq!(t.to_string(), "2014-05-06 10:11:12.000000");
        let t: Timestamp = "2014-05-06 10:11:12.5".parse().expect("one digit");
        assert_eq!(t.to_string(), "2014-05-06 10:11:12.500000");
    }

    #[test]
    fn other_forms_are_refused() {
        for s in ["2014-05-06T10:11:12", "2014-05-06 10:11", "yesterday", "2014-05-06 10:11:12.1234567", ""] {
            assert!(s.parse::<Timestamp>().is_err(), "{s}");
        }
    }
}
