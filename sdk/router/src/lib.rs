//! # vumi-router-sdk
//!
//! Write a vumi **router** (a dispatch rule, `world router` in `wit/`) in Rust. A router sits
//! between transport connectors and application connectors: the host asks it where each inbound
//! message, outbound message and event goes, and publishes the message to the targets it names.
//!
//! ```no_run
//! use vumi_router_sdk::{Message, Result, Router, Target};
//!
//! /// Everything from the transports to one app, replies back by the transport they came from.
//! struct OneApp;
//!
//! impl Router for OneApp {
//!     fn route_inbound(_msg: &Message, _from: &str) -> Result<Vec<Target>> {
//!         Ok(vec![Target::to("app")])
//!     }
//!     fn route_outbound(msg: &Message, _from: &str) -> Result<Vec<Target>> {
//!         Ok(msg.transport_name().map(Target::to).into_iter().collect())
//!     }
//! }
//!
//! vumi_router_sdk::export_router!(OneApp);
//! ```
//!
//! It is a separate crate from `vumi-sdk` on purpose: a component carries the world its
//! bindings describe, and an app must not carry the router's exports (nor a router the app's).

#![deny(missing_docs)]

extern crate self as vumi_router_sdk;

/// The raw bindings generated from `wit/`; public only for [`export_router!`].
#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "vumi:plugin/router",
        pub_export_macro: true,
        export_macro_name: "__export_router",
        default_bindings_module: "::vumi_router_sdk::wit",
        runtime_path: "::vumi_router_sdk::__wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

use wit::vumi::plugin::types as raw;

/// Why a router could not route: the text is the reason on the host's failure path.
pub type Error = String;
/// `Result` with a text error.
pub type Result<T> = std::result::Result<T, Error>;

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The connector.
    pub connector: String,
    /// The endpoint to set on the message, if any.
    pub endpoint: Option<String>,
}

impl Target {
    /// To `connector`, the message's endpoint unchanged.
    pub fn to(connector: impl Into<String>) -> Self {
        Self { connector: connector.into(), endpoint: None }
    }
    /// To `connector`, arriving on `endpoint`.
    pub fn with_endpoint(connector: impl Into<String>, endpoint: impl Into<String>) -> Self {
        Self { connector: connector.into(), endpoint: Some(endpoint.into()) }
    }
}

/// A user message, read-only: routers decide where messages go, not what they say.
pub struct Message(raw::UserMessage);

impl Message {
    /// The text, if any.
    pub fn content(&self) -> Option<&str> {
        self.0.content.as_deref()
    }
    /// The sender.
    pub fn from_addr(&self) -> Option<&str> {
        self.0.from_addr.as_deref()
    }
    /// The recipient.
    pub fn to_addr(&self) -> Option<&str> {
        self.0.to_addr.as_deref()
    }
    /// The transport it came through or leaves by, as set on the message.
    pub fn transport_name(&self) -> Option<&str> {
        self.0.transport_name.as_deref()
    }
    /// `new`, `resume`, `close`, or `None` outside a session.
    pub fn session_event(&self) -> Option<&'static str> {
        self.0.session_event.map(|s| match s {
            raw::SessionEvent::New => "new",
            raw::SessionEvent::Resume => "resume",
            raw::SessionEvent::Close => "close",
        })
    }
    /// `routing_metadata.endpoint_name`, or `default`.
    pub fn endpoint(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.0.routing_metadata)
            .ok()
            .and_then(|v| v.get("endpoint_name").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| "default".to_owned())
    }
    /// The message id.
    pub fn id(&self) -> &str {
        &self.0.message_id
    }
}

/// An ack, nack or delivery report, read-only.
pub struct Event(raw::Event);

impl Event {
    /// The id of the message it is about.
    pub fn user_message_id(&self) -> &str {
        &self.0.user_message_id
    }
}

/// A dispatch rule. Methods take no `self`: keep what must last in [`kv`].
pub trait Router {
    /// A message from an end user arrived on transport connector `from`.
    fn route_inbound(msg: &Message, from: &str) -> Result<Vec<Target>>;
    /// An application on connector `from` sent `msg`.
    fn route_outbound(msg: &Message, from: &str) -> Result<Vec<Target>>;
    /// An event from transport connector `from` about a message application connector
    /// `origin` sent. By default it goes back to `origin` (dropped if the host forgot it).
    fn route_event(_event: &Event, _from: &str, origin: Option<&str>) -> Result<Vec<Target>> {
        Ok(origin.map(Target::to).into_iter().collect())
    }
}

fn out(r: Result<Vec<Target>>) -> std::result::Result<Vec<raw::Target>, String> {
    r.map(|ts| ts.into_iter().map(|t| raw::Target { connector: t.connector, endpoint: t.endpoint }).collect())
}

#[doc(hidden)]
pub fn __inbound<R: Router>(m: raw::UserMessage, from: String) -> std::result::Result<Vec<raw::Target>, String> {
    out(R::route_inbound(&Message(m), &from))
}
#[doc(hidden)]
pub fn __outbound<R: Router>(m: raw::UserMessage, from: String) -> std::result::Result<Vec<raw::Target>, String> {
    out(R::route_outbound(&Message(m), &from))
}
#[doc(hidden)]
pub fn __event<R: Router>(e: raw::Event, from: String, origin: Option<String>) -> std::result::Result<Vec<raw::Target>, String> {
    out(R::route_event(&Event(e), &from, origin.as_deref()))
}

/// Export a type implementing [`Router`] as this component's router. Call it once, at the crate
/// root.
#[macro_export]
macro_rules! export_router {
    ($router:ty) => {
        const _: () = {
            struct __VumiRouter;
            impl $crate::wit::Guest for __VumiRouter {
                fn route_inbound(
                    message: $crate::wit::vumi::plugin::types::UserMessage,
                    from: ::std::string::String,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::wit::vumi::plugin::types::Target>, ::std::string::String> {
                    $crate::__inbound::<$router>(message, from)
                }
                fn route_outbound(
                    message: $crate::wit::vumi::plugin::types::UserMessage,
                    from: ::std::string::String,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::wit::vumi::plugin::types::Target>, ::std::string::String> {
                    $crate::__outbound::<$router>(message, from)
                }
                fn route_event(
                    event: $crate::wit::vumi::plugin::types::Event,
                    from: ::std::string::String,
                    origin: ::std::option::Option<::std::string::String>,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::wit::vumi::plugin::types::Target>, ::std::string::String> {
                    $crate::__event::<$router>(event, from, origin)
                }
            }
            $crate::wit::__export_router!(__VumiRouter);
        };
    };
}

/// The router's configuration: the `[routers.<name>.config]` table.
pub mod config {
    use std::sync::OnceLock;

    /// The whole table as your own type (derive `serde::Deserialize`), parsed on every call.
    /// A router on the message path should parse once, with [`cached`].
    pub fn get_as<T: serde::de::DeserializeOwned>() -> super::Result<T> {
        serde_json::from_str(&crate::wit::vumi::plugin::config::get_json()).map_err(|e| format!("invalid router config: {e}"))
    }

    /// The table as `T`, parsed once per instance and kept in `cell` (a `static` of your
    /// router's): the config cannot change under a running instance, and routing is on every
    /// message's path. A config error is kept too, and returned on every call.
    pub fn cached<T: serde::de::DeserializeOwned + Send + Sync>(cell: &'static OnceLock<super::Result<T>>) -> super::Result<&'static T> {
        cell.get_or_init(get_as).as_ref().map_err(Clone::clone)
    }
}

/// State private to this router (e.g. sticky user assignments).
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
    /// Add `by` to the integer under `key`; the new value.
    pub fn incr(key: &str, by: i64) -> super::Result<i64> {
        raw::incr(key, by).map_err(text)
    }
}

/// Logging into the host's log, tagged with the router's name.
pub mod log {
    use crate::wit::vumi::plugin::log::{Level, log};
    /// Something worth knowing.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    /// Something wrong, but handled.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
}
