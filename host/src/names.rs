//! Validated names: connectors, apps, endpoints.
//!
//! A connector name becomes part of routing keys and queue names (`<connector>.inbound`), so it
//! may not contain a dot; all names share one rule so that an operator learns it once.

use std::fmt;
use std::str::FromStr;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} name `{value}`: use 1 to 64 ASCII letters, digits, `_` or `-`, starting with a letter or digit")]
pub struct NameError {
    /// Which kind of name (`connector`, `app`, `endpoint`).
    pub kind: &'static str,
    /// The value given.
    pub value: String,
}

fn check(kind: &'static str, value: &str) -> Result<(), NameError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok { Ok(()) } else { Err(NameError { kind, value: value.to_owned() }) }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(value: String) -> Result<Self, NameError> {
                check($kind, &value)?;
                Ok(Self(value))
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::try_from(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A connector: a named set of queues (`<name>.inbound`, `.outbound`, `.event`, `.status`).
    /// Every transport has one, named after it.
    ConnectorName,
    "connector"
);
name_type!(
    /// An application instance in the config (`[apps.<name>]`).
    AppName,
    "app"
);
name_type!(
    /// A logical endpoint on a connector (`routing_metadata.endpoint_name`).
    EndpointName,
    "endpoint"
);

impl EndpointName {
    /// `default`, the endpoint of a message that names none.
    pub fn default_endpoint() -> Self {
        Self("default".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names_parse() {
        for n in ["telnet", "sms_in", "ussd-1", "A", "9lives"] {
            assert_eq!(n.parse::<ConnectorName>().expect(n).as_str(), n);
        }
    }

    #[test]
    fn bad_names_are_refused_with_the_rule() {
        for n in ["", "sms.in", "-x", "_x", "with space", "é", &"x".repeat(65)] {
            let e = n.parse::<ConnectorName>().expect_err(n);
            assert!(e.to_string().contains("invalid connector name"), "{e}");
            assert!(e.to_string().contains("1 to 64 ASCII letters"), "{e}");
        }
    }

    #[test]
    fn serde_validates() {
        let ok: AppName = serde_json::from_str("\"survey\"").expect("valid");
        assert_eq!(ok.to_string(), "survey");
        let err = serde_json::from_str::<AppName>("\"no.dots\"").expect_err("invalid");
        assert!(err.to_string().contains("invalid app name `no.dots`"), "{err}");
        assert_eq!(EndpointName::default_endpoint().as_str(), "default");
    }
}
