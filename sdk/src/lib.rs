//! # vumi-sdk
//!
//! Write vumi plugins in Rust. A plugin is a WebAssembly component that the vumi host runs in a
//! sandbox, built for one of three worlds of the WIT contract (`wit/`, `vumi:plugin@0.2.1`):
//!
//! - an **application** ([`app`]): campaign logic, answering users;
//! - a **router** ([`router`]): a dispatch rule between transports and apps;
//! - a **middleware** ([`middleware`]): a step every message of a connector passes.
//!
//! Implement the world's trait, export it with its macro, build for `wasm32-wasip2` (the crate
//! needs `crate-type = ["cdylib"]`; `vumi plugin build` builds every crate under `plugins/` and
//! writes the components to `plugins/dist/`). Plugins never see the channel: the same app serves
//! telnet, SMS and USSD.
//!
//! An application, echoing what it is sent:
//!
//! ```no_run
//! use vumi_sdk::app::Application;
//! use vumi_sdk::{Message, Result};
//!
//! struct Echo;
//!
//! impl Application for Echo {
//!     fn consume_user_message(msg: &Message, _config: &()) -> Result<()> {
//!         msg.reply(msg.content().unwrap_or_default())?;
//!         Ok(())
//!     }
//! }
//!
//! vumi_sdk::export_app!(Echo);
//! ```
//!
//! A router with a config (`[routers.<name>.config] app = "survey"`), parsed once per instance:
//!
//! ```no_run
//! use vumi_sdk::router::{Router, Target};
//! use vumi_sdk::{Message, Result};
//!
//! #[derive(serde::Deserialize)]
//! struct Settings {
//!     app: String,
//! }
//!
//! /// Everything from the transports to one app; replies back by the transport they came from.
//! struct OneApp;
//!
//! impl Router<Settings> for OneApp {
//!     fn route_inbound(_msg: &Message, _from: &str, s: &Settings) -> Result<Vec<Target>> {
//!         Ok(vec![Target::to(s.app.as_str())])
//!     }
//!     fn route_outbound(msg: &Message, _from: &str, _: &Settings) -> Result<Vec<Target>> {
//!         Ok(msg.transport_name().map(Target::to).into_iter().collect())
//!     }
//! }
//!
//! vumi_sdk::export_router!(OneApp, config = Settings);
//! ```
//!
//! A middleware, changing messages as they pass:
//!
//! ```no_run
//! use vumi_sdk::middleware::{Editable, Middleware, Verdict};
//! use vumi_sdk::Result;
//!
//! /// Shouting is rude: lowercase every inbound message.
//! struct Calm;
//!
//! impl Middleware for Calm {
//!     fn inbound(msg: &mut Editable, _connector: &str, _config: &()) -> Result<Verdict> {
//!         let calm = msg.content().map(str::to_lowercase);
//!         msg.set_content(calm.as_deref());
//!         Ok(Verdict::Pass)
//!     }
//! }
//!
//! vumi_sdk::export_middleware!(Calm);
//! ```
//!
//! What a plugin may do is what this crate offers: read the message ([`Message`], [`Event`]:
//! each getter asks the host for one field, so a plugin pays only for what it reads), reply or
//! send (apps: [`Message::reply`], [`app::send_to`]), change it (middleware:
//! [`middleware::Editable`]), keep state ([`kv`]), read its configuration ([`config`]) and log
//! ([`log`]). A handler's [`Error`] is a reject (to the failure path) or a retry-later (the host
//! hands the message back after a backoff); either way, nothing it sent is published.
//!
//! ## How the worlds stay apart
//!
//! A component carries the world its bindings describe, so an app must not carry a router's
//! exports. This crate generates the *imports* once, every world's, in its hidden `wit` module.
//! Each export macro expands, in the plugin's own crate, to `wit_bindgen::generate!` for its one
//! world with every import mapped (`with`) to this crate's bindings, so only that world's exports
//! are generated there. Imports a component never calls are left out of it: an app does not
//! import `edit`, a router neither `edit` nor `outbound`.

#![deny(missing_docs)]

extern crate self as vumi_sdk;

pub mod app;
pub mod config;
mod error;
pub mod http;
pub mod kv;
pub mod log;
mod message;
pub mod middleware;
pub mod router;
#[doc(hidden)]
pub mod wit;

pub use error::{Error, Result};
pub use message::{DeliveryStatus, Event, EventKind, Message, Metadata, SendError, SessionEvent};

#[doc(hidden)]
pub use vumi_sdk_macro::__bindings;
#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// Export a type implementing [`app::Application`] as this component's application. Call it
/// once, at the crate root.
///
/// - `export_app!(MyApp)`: no config is read; the trait's `C` is `()`.
/// - `export_app!(MyApp, config = Settings)`: `[apps.<name>.config]` is parsed into `Settings`
///   (any `serde::de::DeserializeOwned + Send + Sync`) on the first message and kept for the
///   instance's life; `MyApp` implements `Application<Settings>`. A table that does not parse
///   rejects every message with `invalid app config: <serde's error, naming the field>`.
#[macro_export]
macro_rules! export_app {
    ($app:ty $(,)?) => {
        $crate::__export_app!($app, (), { ::core::result::Result::Ok(&()) });
    };
    ($app:ty, config = $config:ty $(,)?) => {
        $crate::__export_app!($app, $config, {
            static CONFIG: ::std::sync::OnceLock<$crate::Result<$config>> = ::std::sync::OnceLock::new();
            $crate::config::__cached(&CONFIG, "app")
        });
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_app {
    ($app:ty, $config:ty, $get:block) => {
        $crate::__bindings!(application);

        const _: () = {
            fn config() -> $crate::Result<&'static $config> $get

            struct Export;

            impl __vumi_bindings::Guest for Export {
                fn handle_user_message(
                    message: &$crate::wit::vumi::plugin::message::UserMessage,
                ) -> ::core::result::Result<(), $crate::wit::vumi::plugin::types::HandlerError> {
                    $crate::app::__handle_user_message::<$app, $config>(message, config())
                }

                fn handle_event(
                    event: &$crate::wit::vumi::plugin::message::Event,
                ) -> ::core::result::Result<(), $crate::wit::vumi::plugin::types::HandlerError> {
                    $crate::app::__handle_event::<$app, $config>(event, config())
                }
            }

            __vumi_bindings::export!(Export with_types_in __vumi_bindings);
        };
    };
}

/// Export a type implementing [`router::Router`] as this component's router. Call it once, at
/// the crate root. `config = T` as for [`export_app!`] (`[routers.<name>.config]`; a bad table
/// rejects with `invalid router config: ...`).
#[macro_export]
macro_rules! export_router {
    ($router:ty $(,)?) => {
        $crate::__export_router!($router, (), { ::core::result::Result::Ok(&()) });
    };
    ($router:ty, config = $config:ty $(,)?) => {
        $crate::__export_router!($router, $config, {
            static CONFIG: ::std::sync::OnceLock<$crate::Result<$config>> = ::std::sync::OnceLock::new();
            $crate::config::__cached(&CONFIG, "router")
        });
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_router {
    ($router:ty, $config:ty, $get:block) => {
        $crate::__bindings!(router);

        const _: () = {
            fn config() -> $crate::Result<&'static $config> $get

            struct Export;

            impl __vumi_bindings::Guest for Export {
                fn route_inbound(
                    message: &$crate::wit::vumi::plugin::message::UserMessage,
                    from: ::std::string::String,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::wit::vumi::plugin::types::Target>,
                    $crate::wit::vumi::plugin::types::HandlerError,
                > {
                    $crate::router::__route_inbound::<$router, $config>(message, from, config())
                }

                fn route_outbound(
                    message: &$crate::wit::vumi::plugin::message::UserMessage,
                    from: ::std::string::String,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::wit::vumi::plugin::types::Target>,
                    $crate::wit::vumi::plugin::types::HandlerError,
                > {
                    $crate::router::__route_outbound::<$router, $config>(message, from, config())
                }

                fn route_event(
                    event: &$crate::wit::vumi::plugin::message::Event,
                    from: ::std::string::String,
                    origin: ::core::option::Option<::std::string::String>,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::wit::vumi::plugin::types::Target>,
                    $crate::wit::vumi::plugin::types::HandlerError,
                > {
                    $crate::router::__route_event::<$router, $config>(event, from, origin, config())
                }
            }

            __vumi_bindings::export!(Export with_types_in __vumi_bindings);
        };
    };
}

/// Export a type implementing [`middleware::Middleware`] as this component's middleware. Call
/// it once, at the crate root. `config = T` as for [`export_app!`]
/// (`[middleware.<name>.config]`; a bad table rejects with `invalid middleware config: ...`).
#[macro_export]
macro_rules! export_middleware {
    ($mw:ty $(,)?) => {
        $crate::__export_middleware!($mw, (), { ::core::result::Result::Ok(&()) });
    };
    ($mw:ty, config = $config:ty $(,)?) => {
        $crate::__export_middleware!($mw, $config, {
            static CONFIG: ::std::sync::OnceLock<$crate::Result<$config>> = ::std::sync::OnceLock::new();
            $crate::config::__cached(&CONFIG, "middleware")
        });
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_middleware {
    ($mw:ty, $config:ty, $get:block) => {
        $crate::__bindings!(middleware);

        const _: () = {
            fn config() -> $crate::Result<&'static $config> $get

            struct Export;

            impl __vumi_bindings::Guest for Export {
                fn process(
                    message: &$crate::wit::vumi::plugin::message::UserMessage,
                    direction: $crate::wit::vumi::plugin::types::Direction,
                    connector: ::std::string::String,
                ) -> ::core::result::Result<
                    $crate::wit::vumi::plugin::types::Verdict,
                    $crate::wit::vumi::plugin::types::HandlerError,
                > {
                    $crate::middleware::__process::<$mw, $config>(message, direction, connector, config())
                }
            }

            __vumi_bindings::export!(Export with_types_in __vumi_bindings);
        };
    };
}
