//! # vumi-sdk
//!
//! Write a vumi campaign application in Rust. Your app is a WebAssembly component that the vumi
//! host runs in a sandbox; it sees Vumi messages, never the channel they came through, so the same
//! app serves telnet, SMS and USSD.
//!
//! Implement [`Application`] (only [`Application::consume_user_message`] is required), export it
//! with [`export_app!`], and build for `wasm32-wasip2`:
//!
//! ```no_run
//! use vumi_sdk::{Application, Message, Result};
//!
//! struct Echo;
//!
//! impl Application for Echo {
//!     fn consume_user_message(msg: &Message) -> Result<()> {
//!         msg.reply(msg.content().unwrap_or_default())?;
//!         Ok(())
//!     }
//! }
//!
//! vumi_sdk::export_app!(Echo);
//! ```
//!
//! The crate needs `crate-type = ["cdylib"]`; `vumi plugin build` builds every crate under
//! `plugins/` and writes the components to `plugins/dist/`.
//!
//! What an app may do is exactly what this crate offers: reply or send ([`Message::reply`],
//! [`send_to`]), keep state ([`kv`]), read its configuration ([`config`]) and log ([`log`]).
//! Sends are transactional: the host publishes them only if your handler returns `Ok`. Returning
//! an [`Error`] (or panicking, or running out of time or memory) publishes nothing and puts the
//! message on the host's failure path with the error's text as the reason.

#![deny(missing_docs)]

extern crate self as vumi_sdk;

pub mod config;
pub mod kv;
pub mod log;
mod message;

pub use message::{DeliveryStatus, Event, EventKind, Message, SessionEvent, send_to};

/// The raw bindings generated from `wit/`. Use the wrappers in this crate instead; this is public
/// only for the [`export_app!`] macro.
#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit",
        world: "vumi:plugin/application",
        pub_export_macro: true,
        export_macro_name: "__export_application",
        default_bindings_module: "::vumi_sdk::wit",
        runtime_path: "::vumi_sdk::__wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// The error an app returns: its text is the reason the host records on the failure path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    /// An error with this reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
    /// The reason.
    pub fn reason(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<&str> for Error {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for Error {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self(format!("JSON: {e}"))
    }
}

impl From<wit::vumi::plugin::outbound::SendError> for Error {
    fn from(e: wit::vumi::plugin::outbound::SendError) -> Self {
        use wit::vumi::plugin::outbound::SendError as E;
        Self(match e {
            E::NothingToReplyTo => "send refused: there is no user message to reply to".to_owned(),
            E::UnknownEndpoint(ep) => format!("send refused: unknown endpoint `{ep}`"),
            E::TooManySends(n) => format!("send refused: at most {n} sends per message"),
            E::Invalid(why) => format!("send refused: {why}"),
        })
    }
}

impl From<wit::vumi::plugin::kv::KvError> for Error {
    fn from(e: wit::vumi::plugin::kv::KvError) -> Self {
        use wit::vumi::plugin::kv::KvError as E;
        Self(match e {
            E::Unavailable(why) => format!("kv unavailable: {why}"),
            E::Limit(why) => format!("kv limit: {why}"),
            E::NotAnInteger(key) => format!("kv: value under `{key}` is not an integer"),
        })
    }
}

/// `Result` with the SDK's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// A campaign application. The host calls one method per message, dispatching as Vumi's
/// application workers did: by session event for user messages, by event type for events.
///
/// Methods take no `self`: an instance may be fresh for every message, or reused by many users.
/// Keep anything that must last in [`kv`].
pub trait Application {
    /// A session starts (`session_event` `new`; a USSD dial-in, a telnet connect). By default,
    /// handled like any other message.
    fn new_session(msg: &Message) -> Result<()> {
        Self::consume_user_message(msg)
    }

    /// A message within a session (`resume`) or outside one (a plain SMS).
    fn consume_user_message(msg: &Message) -> Result<()>;

    /// The user ended the session or it timed out (`close`). Nothing can be sent back to a closed
    /// session; use this to clean up state. By default, does nothing.
    fn close_session(_msg: &Message) -> Result<()> {
        Ok(())
    }

    /// A message this app sent was accepted by the transport.
    fn consume_ack(_event: &Event) -> Result<()> {
        Ok(())
    }

    /// A message this app sent could not be sent.
    fn consume_nack(_event: &Event) -> Result<()> {
        Ok(())
    }

    /// The network reported on the delivery of a message this app sent.
    fn consume_delivery_report(_event: &Event) -> Result<()> {
        Ok(())
    }
}

#[doc(hidden)]
pub fn __dispatch_user_message<A: Application>(raw: wit::vumi::plugin::types::UserMessage) -> std::result::Result<(), String> {
    let msg = Message::from_raw(raw);
    let r = match msg.session_event() {
        Some(SessionEvent::New) => A::new_session(&msg),
        Some(SessionEvent::Close) => A::close_session(&msg),
        _ => A::consume_user_message(&msg),
    };
    r.map_err(|e| e.0)
}

#[doc(hidden)]
pub fn __dispatch_event<A: Application>(raw: wit::vumi::plugin::types::Event) -> std::result::Result<(), String> {
    let event = Event::from_raw(raw);
    let r = match event.kind() {
        EventKind::Ack(_) => A::consume_ack(&event),
        EventKind::Nack(_) => A::consume_nack(&event),
        EventKind::DeliveryReport(_) => A::consume_delivery_report(&event),
    };
    r.map_err(|e| e.0)
}

/// Export a type implementing [`Application`] as this component's app. Call it once, at the
/// crate root.
#[macro_export]
macro_rules! export_app {
    ($app:ty) => {
        const _: () = {
            struct __VumiApplication;

            impl $crate::wit::Guest for __VumiApplication {
                fn handle_user_message(
                    message: $crate::wit::vumi::plugin::types::UserMessage,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__dispatch_user_message::<$app>(message)
                }

                fn handle_event(
                    event: $crate::wit::vumi::plugin::types::Event,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__dispatch_event::<$app>(event)
                }
            }

            $crate::wit::__export_application!(__VumiApplication with_types_in $crate::wit);
        };
    };
}
