//! To-address router (Vumi's `ToAddrRouter`): an inbound message goes to the first app whose
//! pattern (a regular expression) matches its `to_addr`, e.g. one USSD code per campaign.
//! Replies go back out by the transport they came in on.
//!
//! ```toml
//! [routers.codes.config]
//! default = "fallback_app"               # nothing matched: here (omit to refuse the message)
//! [[routers.codes.config.routes]]
//! to_addr = '^\*120\*7(#|\*)'            # anchored as you write it
//! app = "survey_app"
//! ```

use std::sync::OnceLock;

use regex::Regex;
use serde::Deserialize;
use vumi_sdk::router::{Router, Target};
use vumi_sdk::{Message, Result};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Route {
    to_addr: String,
    app: String,
    /// `to_addr` compiled, on first use, and kept with the config for the instance's life (an
    /// invalid pattern is an error only for the messages that reach it, as it always was).
    #[serde(skip)]
    compiled: OnceLock<std::result::Result<Regex, String>>,
}

impl Route {
    fn pattern(&self) -> Result<&Regex> {
        let compiled = self.compiled.get_or_init(|| {
            Regex::new(&self.to_addr).map_err(|e| format!("invalid pattern `{}`: {e}", self.to_addr))
        });
        Ok(compiled.as_ref().map_err(Clone::clone)?)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rules {
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    default: Option<String>,
}

impl Rules {
    fn route(&self, to_addr: &str) -> Result<String> {
        for r in &self.routes {
            if r.pattern()?.is_match(to_addr) {
                return Ok(r.app.clone());
            }
        }
        self.default
            .clone()
            .ok_or_else(|| format!("no route matches to_addr `{to_addr}` and there is no `default`").into())
    }
}

struct ToAddr;

impl Router<Rules> for ToAddr {
    fn route_inbound(msg: &Message, _from: &str, rules: &Rules) -> Result<Vec<Target>> {
        Ok(vec![Target::to(rules.route(msg.to_addr().unwrap_or_default())?)])
    }
    fn route_outbound(msg: &Message, _from: &str, _rules: &Rules) -> Result<Vec<Target>> {
        Ok(msg.transport_name().map(Target::to).into_iter().collect())
    }
}

vumi_sdk::export_router!(ToAddr, config = Rules);

#[cfg(test)]
mod tests {
    use super::*;

    fn route(to_addr: &str, app: &str) -> Route {
        Route { to_addr: to_addr.into(), app: app.into(), compiled: OnceLock::new() }
    }

    #[test]
    fn the_first_matching_pattern_wins_and_the_default_catches_the_rest() {
        let rules = Rules {
            routes: vec![route(r"^\*120\*7(#|\*)", "survey"), route(r"^\*120", "menu")],
            default: Some("other".into()),
        };
        assert_eq!(rules.route("*120*7#").unwrap(), "survey");
        assert_eq!(rules.route("*120*77#").unwrap(), "menu");
        assert_eq!(rules.route("12345").unwrap(), "other");
        let strict = Rules { default: None, ..rules };
        assert!(strict.route("12345").unwrap_err().reason().contains("`12345`"));
        let bad = Rules { routes: vec![route("(", "x")], default: None };
        assert!(bad.route("1").unwrap_err().reason().contains("invalid pattern"));
    }
}
