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

use vumi_sdk::router::{Router, Target};
use vumi_sdk::{Message, Result};

use logic::Rules;

struct Keyword;

impl Router<Rules> for Keyword {
    fn route_inbound(msg: &Message, _from: &str, rules: &Rules) -> Result<Vec<Target>> {
        Ok(vec![Target::to(rules.route(msg.content())?)])
    }

    fn route_outbound(msg: &Message, _from: &str, rules: &Rules) -> Result<Vec<Target>> {
        match msg.transport_name() {
            Some(t) if !t.is_empty() => Ok(vec![Target::to(t)]),
            _ => rules.default_transport.as_deref().map(|t| vec![Target::to(t)]).ok_or_else(|| {
                "the message names no transport and the router has no `default_transport`".into()
            }),
        }
    }
}

vumi_sdk::export_router!(Keyword, config = Rules);
