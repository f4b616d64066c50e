//! Opt-out (Vumi's `OptOutMiddleware`, plus the enforcement Vumi left to each app): a user who
//! sends `STOP` goes on an opt-out list in `kv`; every later outbound message to them is dropped
//! (the sender gets a nack saying why) until they send `START`.
//!
//! ```toml
//! [middleware.opt_out]
//! kind = "plugin"
//! plugin = "../plugins/dist/opt-out-middleware.wasm"
//! config = { keywords = ["STOP", "UNSUBSCRIBE"], opt_in_keywords = ["START"] }
//!
//! [chains.sms]
//! inbound = ["msisdn", "opt_out"]     # normalise first: the list is keyed by address
//! outbound = ["msisdn", "opt_out"]
//! ```
//!
//! Attach it to both directions of the same connector. Inbound messages always pass on, marked
//! in `helper_metadata.optout` (`{"optout": true, "optout_keyword": "stop"}` for the opt-out
//! itself), so the app can thank the user: a reply to the opt-out message (replies keep
//! `helper_metadata`) is the one message still let through.

mod logic;

use vumi_middleware_sdk::{Message, Middleware, Result, Verdict, config, kv};

use logic::{Decision, Settings};

/// The config, parsed once per instance.
static SETTINGS: std::sync::OnceLock<Result<Settings>> = std::sync::OnceLock::new();

struct OptOut;

fn key(addr: &str) -> String {
    format!("optout:{addr}")
}

impl Middleware for OptOut {
    fn inbound(mut msg: Message, _connector: &str) -> Result<Verdict> {
        let s = config::cached(&SETTINGS)?;
        let Some(from) = msg.from_addr.clone() else { return Ok(Verdict::Pass(msg)) };
        let keyword = msg.keyword();
        let opted_out = match s.classify(&keyword) {
            Decision::OptOut => {
                kv::set(&key(&from), keyword.as_bytes(), None)?;
                true
            }
            Decision::OptIn => {
                kv::delete(&key(&from))?;
                false
            }
            Decision::Other => kv::get(&key(&from))?.is_some(),
        };
        let mut helper = msg.helper_metadata();
        helper.insert("optout".into(), logic::marker(opted_out, s.classify(&keyword), &keyword));
        msg.set_helper_metadata(helper);
        Ok(Verdict::Pass(msg))
    }

    fn outbound(msg: Message, _connector: &str) -> Result<Verdict> {
        let Some(to) = msg.to_addr.as_deref() else { return Ok(Verdict::Pass(msg)) };
        let Some(keyword) = kv::get(&key(to))? else { return Ok(Verdict::Pass(msg)) };
        if logic::answers_the_opt_out(&msg.helper_metadata()) {
            return Ok(Verdict::Pass(msg));
        }
        let keyword = String::from_utf8_lossy(&keyword).into_owned();
        Ok(Verdict::Drop(format!("`{to}` has opted out (sent {keyword})")))
    }
}

vumi_middleware_sdk::export_middleware!(OptOut);
