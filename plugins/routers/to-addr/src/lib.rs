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

use regex::Regex;
use serde::Deserialize;
use vumi_router_sdk::{Message, Result, Router, Target, config};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Route {
    to_addr: String,
    app: String,
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
            let re = Regex::new(&r.to_addr).map_err(|e| format!("invalid pattern `{}`: {e}", r.to_addr))?;
            if re.is_match(to_addr) {
                return Ok(r.app.clone());
            }
        }
        self.default.clone().ok_or_else(|| format!("no route matches to_addr `{to_addr}` and there is no `default`"))
    }
}

struct ToAddr;

/// The config, parsed once per instance.
static RULES: std::sync::OnceLock<Result<Rules>> = std::sync::OnceLock::new();

impl Router for ToAddr {
    fn route_inbound(msg: &Message, _from: &str) -> Result<Vec<Target>> {
        let rules = config::cached(&RULES)?;
        Ok(vec![Target::to(rules.route(msg.to_addr().unwrap_or_default())?)])
    }
    fn route_outbound(msg: &Message, _from: &str) -> Result<Vec<Target>> {
        Ok(msg.transport_name().map(Target::to).into_iter().collect())
    }
}

vumi_router_sdk::export_router!(ToAddr);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_pattern_wins_and_the_default_catches_the_rest() {
        let rules = Rules {
            routes: vec![
                Route { to_addr: r"^\*120\*7(#|\*)".into(), app: "survey".into() },
                Route { to_addr: r"^\*120".into(), app: "menu".into() },
            ],
            default: Some("other".into()),
        };
        assert_eq!(rules.route("*120*7#").unwrap(), "survey");
        assert_eq!(rules.route("*120*77#").unwrap(), "menu");
        assert_eq!(rules.route("12345").unwrap(), "other");
        let strict = Rules { default: None, ..rules };
        assert!(strict.route("12345").unwrap_err().contains("`12345`"));
        let bad = Rules { routes: vec![Route { to_addr: "(".into(), app: "x".into() }], default: None };
        assert!(bad.route("1").unwrap_err().contains("invalid pattern"));
    }
}
