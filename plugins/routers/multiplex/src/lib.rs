//! From-address multiplexing (Vumi's `FromAddrMultiplexRouter`): many transports into one app,
//! and each reply back out by the transport its message came in on. The app sees which
//! transport a message came from as its endpoint (the transport's name), so it can tell SMS
//! from USSD without knowing either.
//!
//! ```toml
//! [routers.fan_in.config]
//! app = "survey_app"
//! ```

use serde::Deserialize;
use vumi_sdk::router::{Router, Target};
use vumi_sdk::{Message, Result};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    app: String,
}

struct Multiplex;

impl Router<Settings> for Multiplex {
    fn route_inbound(_msg: &Message, from: &str, s: &Settings) -> Result<Vec<Target>> {
        Ok(vec![Target::with_endpoint(s.app.as_str(), from)])
    }
    fn route_outbound(msg: &Message, _from: &str, _s: &Settings) -> Result<Vec<Target>> {
        // The endpoint is read only when the transport name does not decide.
        match msg.transport_name().filter(|t| !t.is_empty()) {
            Some(t) => Ok(vec![Target::to(t)]),
            None => reply_transport(None, msg.endpoint()).map(|t| vec![Target::to(t)]),
        }
    }
}

/// Replies carry their transport's name; a fresh `send-to` names it as its endpoint.
fn reply_transport(transport_name: Option<&str>, endpoint: &str) -> Result<String> {
    match transport_name.filter(|t| !t.is_empty()) {
        Some(t) => Ok(t.to_owned()),
        None if endpoint != "default" => Ok(endpoint.to_owned()),
        None => Err("the message names no transport: reply to a message, or send-to an endpoint named after a transport".into()),
    }
}

vumi_sdk::export_router!(Multiplex, config = Settings);

#[cfg(test)]
mod tests {
    use super::reply_transport;

    #[test]
    fn replies_leave_by_their_transport_and_sends_by_their_endpoint() {
        assert_eq!(reply_transport(Some("sms"), "default").unwrap(), "sms");
        assert_eq!(reply_transport(None, "ussd").unwrap(), "ussd");
        assert!(reply_transport(None, "default").is_err());
    }
}
