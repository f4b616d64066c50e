//! MSISDN normalisation (Vumi's `NormalizeMsisdnMiddleware`): phone numbers become E.164
//! (`+27821234567`) whatever form the network wrote them in, so apps, opt-out lists and
//! session keys see one form per user.
//!
//! ```toml
//! [middleware.msisdn]
//! kind = "plugin"
//! plugin = "../plugins/dist/msisdn-middleware.wasm"
//! config = { country_code = "27", strip_plus = false }
//! ```
//!
//! Inbound, `from_addr` is normalised; outbound, `to_addr` (and, with `strip_plus`, written
//! without the `+`, for aggregators that want bare digits). Addresses that are not phone numbers
//! (a telnet peer, a chat handle) pass untouched.

mod logic;

use vumi_middleware_sdk::{Message, Middleware, Result, Verdict, config};

use logic::Settings;

/// The config, parsed once per instance.
static SETTINGS: std::sync::OnceLock<Result<Settings>> = std::sync::OnceLock::new();

struct Msisdn;

impl Middleware for Msisdn {
    fn inbound(mut msg: Message, _connector: &str) -> Result<Verdict> {
        let s = config::cached(&SETTINGS)?;
        if let Some(n) = msg.from_addr.as_deref().and_then(|a| s.normalise(a)) {
            msg.from_addr = Some(n);
        }
        Ok(Verdict::Pass(msg))
    }

    fn outbound(mut msg: Message, _connector: &str) -> Result<Verdict> {
        let s = config::cached(&SETTINGS)?;
        if let Some(n) = msg.to_addr.as_deref().and_then(|a| s.normalise(a)) {
            msg.to_addr = Some(if s.strip_plus { n.trim_start_matches('+').to_owned() } else { n });
        }
        Ok(Verdict::Pass(msg))
    }
}

vumi_middleware_sdk::export_middleware!(Msisdn);
