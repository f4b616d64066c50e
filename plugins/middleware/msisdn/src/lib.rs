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

use vumi_sdk::Result;
use vumi_sdk::middleware::{Editable, Middleware, Verdict};

use logic::Settings;

struct Msisdn;

impl Middleware<Settings> for Msisdn {
    fn inbound(msg: &mut Editable, _connector: &str, s: &Settings) -> Result<Verdict> {
        // An address already in its normal form is not written back: one host call saved.
        if let Some(n) = msg.from_addr().and_then(|a| s.normalise(a).filter(|n| n != a)) {
            msg.set_from_addr(Some(&n));
        }
        Ok(Verdict::Pass)
    }

    fn outbound(msg: &mut Editable, _connector: &str, s: &Settings) -> Result<Verdict> {
        let written = msg.to_addr().and_then(|a| {
            let n = s.normalise(a)?;
            let n = if s.strip_plus { n.trim_start_matches('+').to_owned() } else { n };
            (n != a).then_some(n)
        });
        if let Some(n) = written {
            msg.set_to_addr(Some(&n));
        }
        Ok(Verdict::Pass)
    }
}

vumi_sdk::export_middleware!(Msisdn, config = Settings);
