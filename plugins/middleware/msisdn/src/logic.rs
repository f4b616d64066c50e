//! The normalisation rules as plain Rust, tested natively (`cargo test -p msisdn-middleware`).

use serde::Deserialize;

/// The middleware's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The country calling code numbers without one belong to, digits only (`27`, `234`).
    pub country_code: String,
    /// Outbound: write `to_addr` without the leading `+`.
    #[serde(default)]
    pub strip_plus: bool,
}

impl Settings {
    /// `addr` in E.164, or `None` if it is not a phone number (left as it is).
    ///
    /// As Vumi: `00` starts an international number, a single leading `0` is the national
    /// trunk prefix (replaced by the country code), a number already starting with the country
    /// code gets a `+`. Spaces, dashes, dots and brackets are ignored.
    pub fn normalise(&self, addr: &str) -> Option<String> {
        let trimmed = addr.trim();
        let (plus, rest) = match trimmed.strip_prefix('+') {
            Some(r) => (true, r),
            None => (false, trimmed),
        };
        if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_digit() || " -().".contains(c)) {
            return None;
        }
        let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
        let national = if plus {
            return plausible(digits);
        } else if let Some(intl) = digits.strip_prefix("00") {
            return plausible(intl.to_owned());
        } else if let Some(n) = digits.strip_prefix('0') {
            n.to_owned()
        } else if digits.starts_with(&self.country_code) && digits.len() > 9 {
            return plausible(digits);
        } else {
            digits
        };
        plausible(format!("{}{national}", self.country_code))
    }
}

/// E.164 allows at most 15 digits; fewer than 7 is a short code, not a person: leave it.
fn plausible(digits: String) -> Option<String> {
    (7..=15).contains(&digits.len()).then(|| format!("+{digits}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn za() -> Settings {
        Settings { country_code: "27".into(), strip_plus: false }
    }

    #[test]
    fn every_local_form_becomes_e164() {
        for raw in [
            "0821234567",
            "27821234567",
            "+27821234567",
            "0027821234567",
            "082 123 4567",
            "(082) 123-4567",
            " +27 82 123 4567 ",
        ] {
            assert_eq!(za().normalise(raw).as_deref(), Some("+27821234567"), "{raw}");
        }
    }

    #[test]
    fn a_number_without_country_code_or_trunk_prefix_gets_the_country_code() {
        assert_eq!(za().normalise("821234567").as_deref(), Some("+27821234567"));
    }

    #[test]
    fn other_countries_keep_their_code() {
        assert_eq!(za().normalise("+2348031234567").as_deref(), Some("+2348031234567"));
        assert_eq!(za().normalise("002348031234567").as_deref(), Some("+2348031234567"));
    }

    #[test]
    fn what_is_not_a_phone_number_is_left_alone() {
        for raw in ["127.0.0.1:5555", "alice", "", "+", "*120*33#", "1234", "+1234567890123456"] {
            assert_eq!(za().normalise(raw), None, "{raw}");
        }
    }
}
