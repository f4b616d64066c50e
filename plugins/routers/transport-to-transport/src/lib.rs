//! Transport to transport (Vumi's `TransportToTransportRouter`): inbound messages on one
//! transport are sent out, unchanged, by another: a bridge (e.g. mirroring a USSD line to a
//! logging SMS gateway, or an SMPP bind to an HTTP aggregator).
//!
//! ```toml
//! [routers.bridge.config.routes]
//! sms_in = "sms_out"        # inbound on transport `sms_in` leaves by transport `sms_out`
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use vumi_sdk::router::{Router, Target};
use vumi_sdk::{Message, Result};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    routes: BTreeMap<String, String>,
}

struct Bridge;

impl Router<Settings> for Bridge {
    fn route_inbound(_msg: &Message, from: &str, s: &Settings) -> Result<Vec<Target>> {
        let to =
            s.routes.get(from).ok_or_else(|| format!("no route for messages from transport `{from}`"))?;
        Ok(vec![Target::to(to.clone())])
    }
    fn route_outbound(msg: &Message, _from: &str, _s: &Settings) -> Result<Vec<Target>> {
        Ok(msg.transport_name().map(Target::to).into_iter().collect())
    }
}

vumi_sdk::export_router!(Bridge, config = Settings);
