//! The keyword rules as plain Rust, tested natively (`cargo test -p opt-out-middleware`).

use serde::Deserialize;
use serde_json::{Value, json};

/// The middleware's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// First words that opt a user out, matched case-insensitively.
    #[serde(default = "default_keywords")]
    pub keywords: Vec<String>,
    /// First words that opt them back in.
    #[serde(default = "default_opt_in")]
    pub opt_in_keywords: Vec<String>,
}

fn default_keywords() -> Vec<String> {
    vec!["STOP".into()]
}
fn default_opt_in() -> Vec<String> {
    vec!["START".into()]
}

/// What an inbound message's first word means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Put the sender on the list.
    OptOut,
    /// Take them off it.
    OptIn,
    /// Nothing to do with the list.
    Other,
}

impl Settings {
    /// What `keyword` (already uppercased) asks for.
    pub fn classify(&self, keyword: &str) -> Decision {
        let is =
            |list: &[String]| !keyword.is_empty() && list.iter().any(|k| k.eq_ignore_ascii_case(keyword));
        if is(&self.keywords) {
            Decision::OptOut
        } else if is(&self.opt_in_keywords) {
            Decision::OptIn
        } else {
            Decision::Other
        }
    }
}

/// `helper_metadata.optout` for an inbound message (Vumi's shape).
pub fn marker(opted_out: bool, decision: Decision, keyword: &str) -> Value {
    match decision {
        Decision::OptOut => json!({ "optout": true, "optout_keyword": keyword.to_lowercase() }),
        Decision::OptIn => json!({ "optout": false, "optin_keyword": keyword.to_lowercase() }),
        Decision::Other => json!({ "optout": opted_out }),
    }
}

/// Whether an outbound message answers the opt-out message itself (a reply carries the
/// inbound's `helper_metadata`): the app's "you will hear no more from us" goes through.
/// `optout` is the message's `helper_metadata.optout`, if it has one.
pub fn answers_the_opt_out(optout: Option<&Value>) -> bool {
    optout.and_then(|o| o.get("optout_keyword")).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        serde_json::from_str("{}").unwrap()
    }

    #[test]
    fn stop_and_start_are_recognised_in_any_case() {
        let s = settings();
        assert_eq!(s.classify("STOP"), Decision::OptOut);
        assert_eq!(s.classify(&"stop".to_uppercase()), Decision::OptOut);
        assert_eq!(s.classify("START"), Decision::OptIn);
        assert_eq!(s.classify("STOPPING"), Decision::Other);
        assert_eq!(s.classify(""), Decision::Other);
    }

    #[test]
    fn only_the_reply_to_the_opt_out_itself_is_let_through() {
        assert!(answers_the_opt_out(Some(&marker(true, Decision::OptOut, "STOP"))));
        assert!(!answers_the_opt_out(Some(&marker(true, Decision::Other, "HELLO"))));
        assert!(!answers_the_opt_out(None));
    }

    #[test]
    fn unknown_settings_are_refused() {
        assert!(serde_json::from_str::<Settings>(r#"{"keyword": ["STOP"]}"#).is_err());
    }
}
