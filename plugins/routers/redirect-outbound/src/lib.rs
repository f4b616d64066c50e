//! Redirect outbound (Vumi's `RedirectOutboundRouter`): one app behind several transports, its
//! outbound messages sent by the transport its *endpoint* names. So an app answering a USSD
//! session can also `send-to` endpoint `sms` and have that message leave by the SMS transport.
//!
//! ```toml
//! [routers.mobile.config]
//! app = "survey_app"
//! [routers.mobile.config.endpoints]      # endpoint -> transport
//! sms = "sms"
//! ```
//!
//! Inbound messages all go to `app`, arriving on the endpoint mapped to their transport (or
//! `default`). An outbound message on an unmapped endpoint leaves by the transport it names
//! (a reply), as in any router.

use std::collections::BTreeMap;

use serde::Deserialize;
use vumi_sdk::router::{Router, Target};
use vumi_sdk::{Message, Result};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    app: String,
    #[serde(default)]
    endpoints: BTreeMap<String, String>,
}

impl Settings {
    fn transport_for(&self, endpoint: &str, transport_name: Option<&str>) -> Result<String> {
        if let Some(t) = self.endpoints.get(endpoint) {
            return Ok(t.clone());
        }
        transport_name.filter(|t| !t.is_empty()).map(str::to_owned).ok_or_else(|| {
            format!("endpoint `{endpoint}` maps to no transport, and the message names none").into()
        })
    }

    fn endpoint_of(&self, transport: &str) -> Option<&str> {
        self.endpoints.iter().find(|(_, t)| t.as_str() == transport).map(|(e, _)| e.as_str())
    }
}

struct Redirect;

impl Router<Settings> for Redirect {
    fn route_inbound(_msg: &Message, from: &str, s: &Settings) -> Result<Vec<Target>> {
        Ok(vec![match s.endpoint_of(from) {
            Some(ep) => Target::with_endpoint(s.app.clone(), ep),
            None => Target::to(s.app.clone()),
        }])
    }
    fn route_outbound(msg: &Message, _from: &str, s: &Settings) -> Result<Vec<Target>> {
        Ok(vec![Target::to(s.transport_for(msg.endpoint(), msg.transport_name())?)])
    }
}

vumi_sdk::export_router!(Redirect, config = Settings);

#[cfg(test)]
mod tests {
    use super::Settings;

    #[test]
    fn endpoints_pick_the_transport_and_replies_keep_theirs() {
        let s = Settings { app: "a".into(), endpoints: [("sms".to_owned(), "sms_http".to_owned())].into() };
        assert_eq!(
            s.transport_for("sms", Some("ussd")).unwrap(),
            "sms_http",
            "a send-to on `sms` leaves by SMS"
        );
        assert_eq!(
            s.transport_for("default", Some("ussd")).unwrap(),
            "ussd",
            "a reply leaves by its transport"
        );
        assert!(s.transport_for("default", None).unwrap_err().reason().contains("`default`"));
        assert_eq!(s.endpoint_of("sms_http"), Some("sms"));
        assert_eq!(s.endpoint_of("ussd"), None);
    }
}
