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

use std::time::Duration;

use serde_json::Value;
use vumi_sdk::middleware::{Editable, Middleware, Verdict};
use vumi_sdk::{Result, SessionEvent, kv};

use logic::Settings;

struct SessionLength;

/// Mark `msg`, the user being `user` on `connector`.
fn mark(msg: &mut Editable, connector: &str, user: Option<&str>, s: &Settings) -> Result<Verdict> {
    let (Some(user), Some(event)) = (user, msg.session_event()) else { return Ok(Verdict::Pass) };
    let key = format!("start:{connector}:{user}");
    let timestamp = msg.timestamp().to_owned();
    let start = match event {
        SessionEvent::New => {
            kv::set(&key, timestamp.as_bytes(), Some(Duration::from_secs(u64::from(s.max_session_secs))))?;
            Some(timestamp.clone())
        }
        SessionEvent::Resume => kv::get(&key)?.map(|b| String::from_utf8_lossy(&b).into_owned()),
        SessionEvent::Close => {
            let start = kv::get(&key)?.map(|b| String::from_utf8_lossy(&b).into_owned());
            kv::delete(&key)?;
            start
        }
    };
    let Some(start) = start else { return Ok(Verdict::Pass) };
    let mut session = serde_json::Map::new();
    session.insert("session_start".into(), Value::from(start.clone()));
    if event == SessionEvent::Close {
        session.insert("session_end".into(), Value::from(timestamp.clone()));
        if let Some(secs) = logic::seconds_between(&start, &timestamp) {
            session.insert("session_length".into(), Value::from(secs));
        }
    }
    msg.set_helper_metadata("session", Value::Object(session))?;
    Ok(Verdict::Pass)
}

impl Middleware<Settings> for SessionLength {
    fn inbound(msg: &mut Editable, connector: &str, s: &Settings) -> Result<Verdict> {
        let user = msg.from_addr().map(str::to_owned);
        mark(msg, connector, user.as_deref(), s)
    }

    fn outbound(msg: &mut Editable, connector: &str, s: &Settings) -> Result<Verdict> {
        let user = msg.to_addr().map(str::to_owned);
        mark(msg, connector, user.as_deref(), s)
    }
}

vumi_sdk::export_middleware!(SessionLength, config = Settings);
