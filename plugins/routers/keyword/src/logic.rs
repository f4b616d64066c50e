//! The keyword rules as plain Rust, tested natively (`cargo test -p keyword-router`).

use std::collections::BTreeMap;

use serde::Deserialize;

/// The router's config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// First word (lower case) → app connector.
    #[serde(default)]
    pub keywords: BTreeMap<String, String>,
    /// Where messages matching no keyword go.
    #[serde(default)]
    pub default: Option<String>,
    /// Where outbound messages naming no transport go.
    #[serde(default)]
    pub default_transport: Option<String>,
}

impl Rules {
    /// The app connector for a message with `content`.
    pub fn route(&self, content: Option<&str>) -> Result<String, String> {
        let keyword = content.and_then(|c| c.split_whitespace().next()).map(str::to_lowercase);
        match keyword.as_deref().and_then(|k| self.keywords.get(k)).or(self.default.as_ref()) {
            Some(app) => Ok(app.clone()),
            None => Err(format!(
                "no app for keyword `{}` and no `default` (keywords: {})",
                keyword.unwrap_or_default(),
                self.keywords.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            keywords: [("echo".to_owned(), "echo_app".to_owned())].into(),
            default: Some("survey_app".into()),
            default_transport: None,
        }
    }

    #[test]
    fn the_first_word_picks_the_app_case_insensitively() {
        assert_eq!(rules().route(Some("ECHO hello")).as_deref(), Ok("echo_app"));
        assert_eq!(rules().route(Some("  echo")).as_deref(), Ok("echo_app"));
        assert_eq!(rules().route(Some("echoes")).as_deref(), Ok("survey_app"));
        assert_eq!(rules().route(Some("2")).as_deref(), Ok("survey_app"));
        assert_eq!(rules().route(None).as_deref(), Ok("survey_app"), "a new session with no content");
    }

    #[test]
    fn without_a_default_an_unknown_keyword_is_an_error_naming_it() {
        let r = Rules { default: None, ..rules() };
        let err = r.route(Some("quiz me")).unwrap_err();
        assert!(err.contains("`quiz`") && err.contains("echo"), "{err}");
    }
}
