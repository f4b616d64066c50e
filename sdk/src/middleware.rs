//! Middleware (`world middleware`): a step every message of a connector passes, which may change
//! it or drop it. Implement [`Middleware`], export it with [`crate::export_middleware!`].

use std::cell::OnceCell;
use std::ops::Deref;

use serde_json::Value;

use crate::wit::vumi::plugin::{edit, message as raw, types};
use crate::{Message, Metadata, Result};

/// Which way a message is passing through a connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From an end user towards the apps (`<connector>.inbound`).
    Inbound,
    /// From an app towards an end user (`<connector>.outbound`).
    Outbound,
}

/// What a middleware decided about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let it go on, with the changes made through [`Editable`].
    Pass,
    /// Stop it here, with a reason for the operator. A dropped outbound message is also answered
    /// with a nack carrying the reason, so the app hears it was not sent.
    Drop(String),
}

/// A message passing through a middleware: read it as a [`Message`] (it derefs to one), change
/// it with the `set_*` methods. Each change is made on the host at once and is what the next step
/// sees if the middleware returns [`Verdict::Pass`]. Its `message_id` cannot change (events find
/// their message by it).
///
/// Only a middleware is handed one, because only `world middleware` imports `edit`: an app or a
/// router cannot call these, so their components do not import it.
#[derive(Debug)]
pub struct Editable<'a> {
    msg: Message<'a>,
}

impl<'a> Deref for Editable<'a> {
    type Target = Message<'a>;
    fn deref(&self) -> &Message<'a> {
        &self.msg
    }
}

impl<'a> Editable<'a> {
    #[doc(hidden)]
    pub fn __from_raw(raw: &'a raw::UserMessage) -> Self {
        Self { msg: Message::__from_raw(raw) }
    }

    /// Replace the text (`None` removes it).
    pub fn set_content(&mut self, content: Option<&str>) {
        edit::set_content(self.msg.raw(), content);
        self.msg.fields.content = OnceCell::from(content.map(str::to_owned));
    }

    /// Replace the recipient's address.
    pub fn set_to_addr(&mut self, addr: Option<&str>) {
        edit::set_to_addr(self.msg.raw(), addr);
        self.msg.fields.to_addr = OnceCell::from(addr.map(str::to_owned));
    }

    /// Replace the sender's address.
    pub fn set_from_addr(&mut self, addr: Option<&str>) {
        edit::set_from_addr(self.msg.raw(), addr);
        self.msg.fields.from_addr = OnceCell::from(addr.map(str::to_owned));
    }

    /// Set `key` in one of the message's dictionaries to `value`, or remove it with `None`.
    pub fn set_metadata(&mut self, which: Metadata, key: &str, value: Option<&Value>) -> Result<()> {
        let json = value.map(Value::to_string);
        edit::set_metadata(self.msg.raw(), which.into(), key, json.as_deref())
            .map_err(|e| crate::Error::reject(format!("cannot set {which:?} metadata `{key}`: {e}")))?;
        if which == Metadata::Routing && key == "endpoint_name" {
            // The endpoint is read from there: read it again when asked.
            self.msg.fields.endpoint = OnceCell::new();
        }
        Ok(())
    }

    /// Set `key` in `helper_metadata` (what travels with the message and its replies).
    pub fn set_helper_metadata(&mut self, key: &str, value: Value) -> Result<()> {
        self.set_metadata(Metadata::Helper, key, Some(&value))
    }

    /// Remove `key` from `helper_metadata`.
    pub fn remove_helper_metadata(&mut self, key: &str) -> Result<()> {
        self.set_metadata(Metadata::Helper, key, None)
    }
}

/// A middleware. The operator attaches it to connectors and directions (`[chains.<connector>]`
/// in the host's config); it sees each message published there, in the order listed.
///
/// `C` is the middleware's config type, as for [`crate::app::Application`]: with
/// `export_middleware!(MyMiddleware, config = C)` every method receives
/// `[middleware.<name>.config]` parsed once per instance; without, `C` is `()`.
///
/// Implement [`Self::inbound`] and/or [`Self::outbound`] (each passes messages on unchanged
/// unless implemented), or [`Self::process`] to see both directions in one place. Methods take no
/// `self`: keep what must last in [`crate::kv`] (shared by every connector it is attached to).
pub trait Middleware<C = ()> {
    /// A message from an end user, on connector `connector`.
    fn inbound(_msg: &mut Editable, _connector: &str, _config: &C) -> Result<Verdict> {
        Ok(Verdict::Pass)
    }

    /// A message to an end user, on connector `connector`.
    fn outbound(_msg: &mut Editable, _connector: &str, _config: &C) -> Result<Verdict> {
        Ok(Verdict::Pass)
    }

    /// Every message, either way: by default, [`Self::inbound`] or [`Self::outbound`].
    fn process(msg: &mut Editable, direction: Direction, connector: &str, config: &C) -> Result<Verdict> {
        match direction {
            Direction::Inbound => Self::inbound(msg, connector, config),
            Direction::Outbound => Self::outbound(msg, connector, config),
        }
    }
}

#[doc(hidden)]
pub fn __process<M: Middleware<C>, C>(
    raw: &raw::UserMessage,
    direction: types::Direction,
    connector: String,
    config: Result<&C>,
) -> std::result::Result<types::Verdict, types::HandlerError> {
    let direction = match direction {
        types::Direction::Inbound => Direction::Inbound,
        types::Direction::Outbound => Direction::Outbound,
    };
    let verdict = config.and_then(|c| M::process(&mut Editable::__from_raw(raw), direction, &connector, c));
    crate::error::raw_result(verdict).map(|v| match v {
        Verdict::Pass => types::Verdict::Pass,
        Verdict::Drop(reason) => types::Verdict::Drop(reason),
    })
}
