//! Session length (Vumi's `SessionLengthMiddleware`): records when each user's session started
//! and, when it closes, how long it lasted, in `helper_metadata.session`:
//!
//! ```json
//! {"session_start": "2026-11-25 10:00:00.000000", "session_end": "2026-11-25 10:01:12.500000", "session_length": 72.5}
//! ```
//!
//! Every message of the session carries `session_start`; the closing one (the user hanging up
//! inbound, or the app's `END` outbound) also `session_end` and `session_length` in seconds.
//! Times are the messages' own timestamps, so the figures hold however late a message is handled.
//!
//! ```toml
//! [middleware.session_length]
//! kind = "plugin"
//! plugin = "../plugins/dist/session-length-middleware.wasm"
//! config = { max_session_secs = 86400 }   # forget a start after this long (abandoned sessions)
//!
//! [chains.ussd]
//! inbound = ["session_length"]
//! outbound = ["session_length"]
//! ```

mod logic;

use serde_json::Value;
use vumi_middleware_sdk::{Message, Middleware, Result, SessionEvent, Verdict, config, kv};

use logic::Settings;

/// The config, parsed once per instance.
static SETTINGS: std::sync::OnceLock<Result<Settings>> = std::sync::OnceLock::new();

struct SessionLength;

/// Mark `msg`, the user being `user` on `connector`.
fn mark(mut msg: Message, connector: &str, user: Option<String>) -> Result<Verdict> {
    let (Some(user), Some(event)) = (user, msg.session_event) else { return Ok(Verdict::Pass(msg)) };
    let s = config::cached(&SETTINGS)?;
    let key = format!("start:{connector}:{user}");
    let start = match event {
        SessionEvent::New => {
            kv::set(&key, msg.timestamp.as_bytes(), Some(s.max_session_secs))?;
            Some(msg.timestamp.clone())
        }
        SessionEvent::Resume => kv::get(&key)?.map(|b| String::from_utf8_lossy(&b).into_owned()),
        SessionEvent::Close => {
            let start = kv::get(&key)?.map(|b| String::from_utf8_lossy(&b).into_owned());
            kv::delete(&key)?;
            start
        }
    };
    let Some(start) = start else { return Ok(Verdict::Pass(msg)) };
    let mut session = serde_json::Map::new();
    session.insert("session_start".into(), Value::from(start.clone()));
    if event == SessionEvent::Close {
        session.insert("session_end".into(), Value::from(msg.timestamp.clone()));
        if let Some(secs) = logic::seconds_between(&start, &msg.timestamp) {
            session.insert("session_length".into(), Value::from(secs));
        }
    }
    let mut helper = msg.helper_metadata();
    helper.insert("session".into(), Value::Object(session));
    msg.set_helper_metadata(helper);
    Ok(Verdict::Pass(msg))
}

impl Middleware for SessionLength {
    fn inbound(msg: Message, connector: &str) -> Result<Verdict> {
        let user = msg.from_addr.clone();
        mark(msg, connector, user)
    }

    fn outbound(msg: Message, connector: &str) -> Result<Verdict> {
        let user = msg.to_addr.clone();
        mark(msg, connector, user)
    }
}

vumi_middleware_sdk::export_middleware!(SessionLength);
