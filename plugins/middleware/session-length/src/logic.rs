//! Time arithmetic on Vumi timestamps, tested natively (`cargo test -p session-length-middleware`).

use serde::Deserialize;

/// The middleware's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// A session start is forgotten after this many seconds (a session nobody closed).
    #[serde(default = "default_max")]
    pub max_session_secs: u32,
}

fn default_max() -> u32 {
    86_400
}

/// Seconds since 1970 of a Vumi timestamp (`YYYY-MM-DD HH:MM:SS[.ffffff]`, UTC).
pub fn parse(ts: &str) -> Option<f64> {
    let (date, time) = ts.split_once(' ')?;
    let mut d = date.splitn(3, '-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(str::parse::<i64>);
    let (h, min, s) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || s > 60 {
        return None;
    }
    let frac: f64 = format!("0.{frac}").parse().ok()?;
    Some((days_from_civil(y, m, day) * 86_400 + h * 3600 + min * 60 + s) as f64 + frac)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds from `start` to `end`, to the microsecond; `None` if either does not parse.
pub fn seconds_between(start: &str, end: &str) -> Option<f64> {
    let secs = parse(end)? - parse(start)?;
    Some((secs * 1e6).round() / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_and_a_leap_day_are_where_they_should_be() {
        assert_eq!(parse("1970-01-01 00:00:00"), Some(0.0));
        assert_eq!(parse("2024-02-29 00:00:00"), Some(1_709_164_800.0));
        assert_eq!(parse("2026-11-25 10:00:00.500000"), Some(1_795_600_800.5));
    }

    #[test]
    fn lengths_cross_midnight_and_keep_microseconds() {
        assert_eq!(seconds_between("2026-12-31 23:59:30.250000", "2027-01-01 00:00:42.750000"), Some(72.5));
        assert_eq!(seconds_between("2026-11-25 10:00:00", "2026-11-25 10:00:00.000001"), Some(0.000001));
    }

    #[test]
    fn nonsense_is_none() {
        for bad in ["", "yesterday", "2026-13-01 00:00:00", "2026-11-25T10:00:00", "2026-11-25 25:00:00"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
