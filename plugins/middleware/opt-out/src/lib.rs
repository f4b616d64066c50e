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

use vumi_sdk::middleware::{Editable, Middleware, Verdict};
use vumi_sdk::{Result, kv};

use logic::{Decision, Settings};

struct OptOut;

fn key(addr: &str) -> String {
    format!("optout:{addr}")
}

impl Middleware<Settings> for OptOut {
    fn inbound(msg: &mut Editable, _connector: &str, s: &Settings) -> Result<Verdict> {
        let Some(from) = msg.from_addr().map(str::to_owned) else { return Ok(Verdict::Pass) };
        let keyword = msg.keyword();
        let decision = s.classify(&keyword);
        let opted_out = match decision {
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
        msg.set_helper_metadata("optout", logic::marker(opted_out, decision, &keyword))?;
        Ok(Verdict::Pass)
    }

    fn outbound(msg: &mut Editable, _connector: &str, _s: &Settings) -> Result<Verdict> {
        let Some(to) = msg.to_addr() else { return Ok(Verdict::Pass) };
        let Some(keyword) = kv::get(&key(to))? else { return Ok(Verdict::Pass) };
        // One key of the helper metadata, not the whole dictionary: outbound is every reply's path.
        if logic::answers_the_opt_out(msg.helper_metadata_get("optout").as_ref()) {
            return Ok(Verdict::Pass);
        }
        let keyword = String::from_utf8_lossy(&keyword).into_owned();
        Ok(Verdict::Drop(format!("`{to}` has opted out (sent {keyword})")))
    }
}

vumi_sdk::export_middleware!(OptOut, config = Settings);
