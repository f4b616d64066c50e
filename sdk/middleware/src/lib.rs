//! # vumi-middleware-sdk
//!
//! Write a vumi **middleware** (`world middleware` in `wit/`) in Rust. The operator attaches it
//! to connectors and directions (`[chains.<connector>]` in the host's config); it sees each
//! message published there, and passes it on (changed or not) or drops it with a reason.
//!
//! ```no_run
//! use vumi_middleware_sdk::{Message, Middleware, Result, Verdict};
//!
//! /// Shouting is rude: lowercase every inbound message.
//! struct Calm;
//!
//! impl Middleware for Calm {
//!     fn inbound(mut msg: Message, _connector: &str) -> Result<Verdict> {
//!         msg.content = msg.content.as_deref().map(str::to_lowercase);
//!         Ok(Verdict::Pass(msg))
//!     }
//! }
//!
//! vumi_middleware_sdk::export_middleware!(Calm);
//! ```
//!
//! It is a separate crate from `vumi-sdk` and `vumi-router-sdk` on purpose: a component carries
//! the world its bindings describe, and a middleware must carry no other world's exports.

#![deny(missing_docs)]

extern crate self as vumi_middleware_sdk;

/// The raw bindings generated from `wit/`; public only for [`export_middleware!`].
#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "vumi:plugin/middleware",
        pub_export_macro: true,
        export_macro_name: "__export_middleware",
        default_bindings_module: "::vumi_middleware_sdk::wit",
        runtime_path: "::vumi_middleware_sdk::__wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

use wit::vumi::plugin::types as raw;

pub use raw::SessionEvent;

/// Why a middleware failed: the text is the reason on the host's failure path.
pub type Error = String;
/// `Result` with a text error.
pub type Result<T> = std::result::Result<T, Error>;

/// A JSON object, as the metadata fields hold.
pub type Map = serde_json::Map<String, serde_json::Value>;

/// A message passing through. Its fields are the WIT record's (`from_addr`, `to_addr`,
/// `content`, `session_event`, ... ; the metadata fields are JSON text): change what you need and
/// pass it on. Keep `message_id`: the host refuses a verdict that changes it.
pub struct Message(raw::UserMessage);

impl std::ops::Deref for Message {
    type Target = raw::UserMessage;
    fn deref(&self) -> &raw::UserMessage {
        &self.0
    }
}

impl std::ops::DerefMut for Message {
    fn deref_mut(&mut self) -> &mut raw::UserMessage {
        &mut self.0
    }
}

fn object(text: &str) -> Map {
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => Map::new(),
    }
}

impl Message {
    /// `helper_metadata` parsed (empty if it is not an object).
    pub fn helper_metadata(&self) -> Map {
        object(&self.0.helper_metadata)
    }
    /// Replace `helper_metadata`.
    pub fn set_helper_metadata(&mut self, m: Map) {
        self.0.helper_metadata = serde_json::Value::Object(m).to_string();
    }
    /// The first word of the content, uppercased (`""` without content): what keyword
    /// matching wants.
    pub fn keyword(&self) -> String {
        self.0.content.as_deref().and_then(|c| c.split_whitespace().next()).unwrap_or("").to_uppercase()
    }
}

/// What to do with the message.
#[allow(clippy::large_enum_variant)] // moved once per message: a Box would only add an allocation
pub enum Verdict {
    /// Pass it on, as given.
    Pass(Message),
    /// Stop it here. A dropped outbound message is answered with a nack carrying the reason.
    Drop(String),
}

/// A middleware. Methods take no `self`: keep what must last in [`kv`]. Each direction passes
/// messages through unchanged unless you implement it.
pub trait Middleware {
    /// A message from an end user, on connector `connector`.
    fn inbound(msg: Message, _connector: &str) -> Result<Verdict> {
        Ok(Verdict::Pass(msg))
    }
    /// A message to an end user, on connector `connector`.
    fn outbound(msg: Message, _connector: &str) -> Result<Verdict> {
        Ok(Verdict::Pass(msg))
    }
}

#[doc(hidden)]
pub fn __process<M: Middleware>(
    m: raw::UserMessage,
    direction: raw::Direction,
    connector: String,
) -> std::result::Result<raw::Verdict, String> {
    let verdict = match direction {
        raw::Direction::Inbound => M::inbound(Message(m), &connector),
        raw::Direction::Outbound => M::outbound(Message(m), &connector),
    }?;
    Ok(match verdict {
        Verdict::Pass(m) => raw::Verdict::Pass(m.0),
        Verdict::Drop(reason) => raw::Verdict::Drop(reason),
    })
}

/// Export a type implementing [`Middleware`] as this component's middleware. Call it once, at
/// the crate root.
#[macro_export]
macro_rules! export_middleware {
    ($mw:ty) => {
        const _: () = {
            struct __VumiMiddleware;
            impl $crate::wit::Guest for __VumiMiddleware {
                fn process(
                    message: $crate::wit::vumi::plugin::types::UserMessage,
                    direction: $crate::wit::vumi::plugin::types::Direction,
                    connector: ::std::string::String,
                ) -> ::std::result::Result<$crate::wit::vumi::plugin::types::Verdict, ::std::string::String> {
                    $crate::__process::<$mw>(message, direction, connector)
                }
            }
            $crate::wit::__export_middleware!(__VumiMiddleware);
        };
    };
}

/// The middleware's configuration: the `[middleware.<name>.config]` table.
pub mod config {
    use std::sync::OnceLock;

    /// The whole table as your own type (derive `serde::Deserialize`), parsed on every call.
    pub fn get_as<T: serde::de::DeserializeOwned>() -> super::Result<T> {
        serde_json::from_str(&crate::wit::vumi::plugin::config::get_json()).map_err(|e| format!("invalid middleware config: {e}"))
    }

    /// The table as `T`, parsed once per instance and kept in `cell` (a `static` of yours):
    /// the config cannot change under a running instance, and middleware is on every message's
    /// path. A config error is kept too, and returned on every call.
    pub fn cached<T: serde::de::DeserializeOwned + Send + Sync>(cell: &'static OnceLock<super::Result<T>>) -> super::Result<&'static T> {
        cell.get_or_init(get_as).as_ref().map_err(Clone::clone)
    }
}

/// State private to this middleware (shared by all the connectors it is attached to).
pub mod kv {
    use crate::wit::vumi::plugin::kv as raw;

    fn text(e: raw::KvError) -> String {
        match e {
            raw::KvError::Unavailable(why) => format!("kv unavailable: {why}"),
            raw::KvError::Limit(why) => format!("kv limit: {why}"),
            raw::KvError::NotAnInteger(key) => format!("kv: value under `{key}` is not an integer"),
        }
    }
    /// The bytes under `key`.
    pub fn get(key: &str) -> super::Result<Option<Vec<u8>>> {
        raw::get(key).map_err(text)
    }
    /// Store `value` under `key`, for `ttl_seconds` if given.
    pub fn set(key: &str, value: &[u8], ttl_seconds: Option<u32>) -> super::Result<()> {
        raw::set(key, value, ttl_seconds).map_err(text)
    }
    /// Remove `key`; whether it existed.
    pub fn delete(key: &str) -> super::Result<bool> {
        raw::delete(key).map_err(text)
    }
}

/// Logging into the host's log, tagged with the middleware's name.
pub mod log {
    use crate::wit::vumi::plugin::log::{Level, log};
    /// Something worth knowing.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
}
