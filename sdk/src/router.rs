//! Dispatch rules (`world router`): between transport connectors and application connectors,
//! decide where each message goes. Implement [`Router`], export it with
//! [`crate::export_router!`].

use crate::wit::vumi::plugin::{message as raw, types};
use crate::{Event, Message, Result};

/// Where a message goes: a connector the router was given in the host's config, and optionally
/// the endpoint it arrives on there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The connector.
    pub connector: String,
    /// The endpoint to set on the message (`routing_metadata.endpoint_name`); `None` keeps the
    /// message's own.
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

/// A dispatch rule. The host publishes the message to every target returned; an empty list
/// drops it (logged).
///
/// `C` is the router's config type, as for [`crate::app::Application`]: with
/// `export_router!(MyRouter, config = C)` every method receives `[routers.<name>.config]` parsed
/// once per instance; without, `C` is `()`.
///
/// Methods take no `self`: keep what must last in [`crate::kv`]. Routers read messages; they do
/// not change or send them.
pub trait Router<C = ()> {
    /// A message from an end user arrived on transport connector `from`: which application
    /// connectors (or, to forward it, transport connectors) get it.
    fn route_inbound(msg: &Message, from: &str, config: &C) -> Result<Vec<Target>>;

    /// An application on connector `from` sent `msg`: which transport connectors send it.
    fn route_outbound(msg: &Message, from: &str, config: &C) -> Result<Vec<Target>>;

    /// An event from transport connector `from` about a message that application connector
    /// `origin` sent. By default it goes back to `origin`, which is what a router almost always
    /// wants (dropped if the host no longer remembers the origin).
    fn route_event(_event: &Event, _from: &str, origin: Option<&str>, _config: &C) -> Result<Vec<Target>> {
        Ok(origin.map(Target::to).into_iter().collect())
    }
}

fn out(r: Result<Vec<Target>>) -> std::result::Result<Vec<types::Target>, types::HandlerError> {
    crate::error::raw_result(r).map(|ts| {
        ts.into_iter().map(|t| types::Target { connector: t.connector, endpoint: t.endpoint }).collect()
    })
}

#[doc(hidden)]
pub fn __route_inbound<R: Router<C>, C>(
    raw: &raw::UserMessage,
    from: String,
    config: Result<&C>,
) -> std::result::Result<Vec<types::Target>, types::HandlerError> {
    out(config.and_then(|c| R::route_inbound(&Message::__from_raw(raw), &from, c)))
}

#[doc(hidden)]
pub fn __route_outbound<R: Router<C>, C>(
    raw: &raw::UserMessage,
    from: String,
    config: Result<&C>,
) -> std::result::Result<Vec<types::Target>, types::HandlerError> {
    out(config.and_then(|c| R::route_outbound(&Message::__from_raw(raw), &from, c)))
}

#[doc(hidden)]
pub fn __route_event<R: Router<C>, C>(
    raw: &raw::Event,
    from: String,
    origin: Option<String>,
    config: Result<&C>,
) -> std::result::Result<Vec<types::Target>, types::HandlerError> {
    out(config.and_then(|c| R::route_event(&Event::__from_raw(raw), &from, origin.as_deref(), c)))
}
