//! Validated names: connectors, apps, endpoints, tenants.
//!
//! A connector name becomes part of routing keys and queue names (`<connector>.inbound`), so it
//! may not contain a dot; all names share one rule so that an operator learns it once.
//!
//! A tenant's components and connectors are named inside the tenant (`[tenants.acme.apps.echo]`)
//! and run under their **qualified** name, `acme:echo`: two tenants may both have an `echo`, and
//! no plain name can contain the separator, so a qualified name is never mistaken for another
//! tenant's or the operator's. Qualified names are made here ([`qualify`]) and nowhere else.

use std::fmt;
use std::str::FromStr;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {kind} name `{value}`: use 1 to 64 ASCII letters, digits, `_` or `-`, starting with a letter or digit"
)]
pub struct NameError {
    /// Which kind of name (`connector`, `app`, `endpoint`).
    pub kind: &'static str,
    /// The value given.
    pub value: String,
}

/// Separates a tenant from a name in a qualified name (`acme:echo`).
pub const TENANT_SEPARATOR: char = ':';

fn plain(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check(kind: &'static str, value: &str) -> Result<(), NameError> {
    // Connectors and apps may be qualified by their tenant; the parts follow the plain rule.
    let ok = match value.split_once(TENANT_SEPARATOR) {
        Some((tenant, local)) if matches!(kind, "connector" | "component") => plain(tenant) && plain(local),
        _ => plain(value),
    };
    if ok { Ok(()) } else { Err(NameError { kind, value: value.to_owned() }) }
}

/// `local` as tenant `tenant` names it: `tenant:local`.
pub fn qualify(tenant: &TenantName, local: &str) -> String {
    format!("{tenant}{TENANT_SEPARATOR}{local}")
}

/// The tenant of a qualified name (`None` for the operator's own components).
pub fn tenant_of(name: &str) -> Option<&str> {
    name.split_once(TENANT_SEPARATOR).map(|(t, _)| t)
}

/// A name as its tenant wrote it (`echo` for `acme:echo`).
pub fn local(name: &str) -> &str {
    name.split_once(TENANT_SEPARATOR).map_or(name, |(_, l)| l)
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
    /// A component in the config: an app, router, middleware or channel (`[apps.<name>]`,
    /// `[routers.<name>]`, ...); one namespace for all of them.
    ComponentName,
    "component"
);
name_type!(
    /// A logical endpoint on a connector (`routing_metadata.endpoint_name`).
    EndpointName,
    "endpoint"
);

name_type!(
    /// A tenant: an organisation whose apps, routers, middleware and channels the host runs
    /// apart from everyone else's (`[tenants.<name>]`).
    TenantName,
    "tenant"
);

impl ConnectorName {
    /// `local`, a connector tenant `tenant` named, under its qualified name.
    pub fn qualified(tenant: &TenantName, name: &ConnectorName) -> Self {
        Self(qualify(tenant, local(name)))
    }
}

impl ComponentName {
    /// `local`, a component tenant `tenant` named, under its qualified name.
    pub fn qualified(tenant: &TenantName, name: &ComponentName) -> Self {
        Self(qualify(tenant, local(name)))
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
    fn qualified_names_keep_tenant_and_local_apart() {
        let acme: TenantName = "acme".parse().expect("tenant");
        let echo: ComponentName = "echo".parse().expect("app");
        let q = ComponentName::qualified(&acme, &echo);
        assert_eq!(q.as_str(), "acme:echo");
        assert!(tenant_of(&q).is_some() && tenant_of(&echo).is_none());
        assert_eq!((tenant_of(&q), local(&q)), (Some("acme"), "echo"));
        assert_eq!((tenant_of("echo"), local("echo")), (None, "echo"));
        // Round-trips through serde; a tenant, an endpoint or a double qualification does not.
        assert_eq!(serde_json::from_str::<ComponentName>("\"acme:echo\"").expect("qualified"), q);
        for bad in ["a:b:c", ":b", "a:", "a:b.c"] {
            assert!(bad.parse::<ComponentName>().is_err(), "{bad}");
        }
        assert!("acme:x".parse::<TenantName>().is_err());
        assert!("a:b".parse::<EndpointName>().is_err());
    }

    #[test]
    fn serde_validates() {
        let ok: ComponentName = serde_json::from_str("\"survey\"").expect("valid");
        assert_eq!(ok.to_string(), "survey");
        let err = serde_json::from_str::<ComponentName>("\"no.dots\"").expect_err("invalid");
        assert!(err.to_string().contains("invalid component name `no.dots`"), "{err}");
    }
}
