//! Keyword router (Vumi's `KeywordRouter`): an inbound message goes to the app connector its
//! first word names; replies go back out by the transport they came in on.
//!
//! ```toml
//! [routers.main.config]
//! default = "survey_app"          # no keyword matched (or no content): here; omit to refuse
//! [routers.main.config.keywords]
//! echo = "echo_app"               # matched case-insensitively
//! quiz = "quiz_app"
//! ```
//!
//! Each message is routed on its own, as Vumi's keyword router did: apps keep their own state
//! per user, so a user can talk to two apps in one session (`echo hi` to echo, `2` to the survey).

mod logic;

use vumi_router_sdk::{Message, Result, Router, Target, config};

use logic::Rules;

struct Keyword;

/// The config, parsed once per instance.
static RULES: std::sync::OnceLock<Result<Rules>> = std::sync::OnceLock::new();

impl Router for Keyword {
    fn route_inbound(msg: &Message, _from: &str) -> Result<Vec<Target>> {
        let rules = config::cached(&RULES)?;
        Ok(vec![Target::to(rules.route(msg.content())?)])
    }

    fn route_outbound(msg: &Message, _from: &str) -> Result<Vec<Target>> {
        match msg.transport_name() {
            Some(t) if !t.is_empty() => Ok(vec![Target::to(t)]),
            _ => {
                let rules = config::cached(&RULES)?;
                rules.default_transport.as_deref().map(|t| vec![Target::to(t)]).ok_or_else(|| {
                    "the message names no transport and the router has no `default_transport`".to_owned()
                })
            }
        }
    }
}

vumi_router_sdk::export_router!(Keyword);
