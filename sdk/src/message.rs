//! Messages and events as every world sees them: one type each, over the host's resources.

use std::cell::OnceCell;

use serde_json::{Map, Value};

use crate::wit::vumi::plugin::{message as raw, types};

/// Where a message stands in a session (USSD, telnet, chat). A message without one is a plain
/// SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEvent {
    /// The session starts (a USSD dial-in, a telnet connect).
    New,
    /// The session continues.
    Resume,
    /// The user hung up or the session timed out.
    Close,
}

impl From<types::SessionEvent> for SessionEvent {
    fn from(s: types::SessionEvent) -> Self {
        match s {
            types::SessionEvent::New => Self::New,
            types::SessionEvent::Resume => Self::Resume,
            types::SessionEvent::Close => Self::Close,
        }
    }
}

/// What a delivery report says happened to a message the host sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// The network has it but has not delivered it yet.
    Pending,
    /// It will not be delivered.
    Failed,
    /// The handset has it.
    Delivered,
}

/// What an event says about a message the host sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The transport sent it; the far side's id for it (e.g. the SMSC's).
    Ack(String),
    /// The transport could not send it; why.
    Nack(String),
    /// The network reported on its delivery.
    DeliveryReport(DeliveryStatus),
}

impl From<types::EventKind> for EventKind {
    fn from(k: types::EventKind) -> Self {
        match k {
            types::EventKind::Ack(id) => Self::Ack(id),
            types::EventKind::Nack(why) => Self::Nack(why),
            types::EventKind::DeliveryReport(s) => Self::DeliveryReport(match s {
                types::DeliveryStatus::Pending => DeliveryStatus::Pending,
                types::DeliveryStatus::Failed => DeliveryStatus::Failed,
                types::DeliveryStatus::Delivered => DeliveryStatus::Delivered,
            }),
        }
    }
}

/// The three JSON dictionaries every message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metadata {
    /// `transport_metadata`: the transport's own (e.g. its session id). Opaque: do not rely on
    /// its keys.
    Transport,
    /// `helper_metadata`: application-level data that travels with the message (and its
    /// replies).
    Helper,
    /// `routing_metadata`: used by routing; holds `endpoint_name`.
    Routing,
}

impl From<Metadata> for raw::Metadata {
    fn from(m: Metadata) -> Self {
        match m {
            Metadata::Transport => Self::Transport,
            Metadata::Helper => Self::Helper,
            Metadata::Routing => Self::Routing,
        }
    }
}

/// Why the host refused a send. None of these gets better by retrying the same call, so `?`
/// makes it a [`crate::Error::Reject`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// This world may not send: only an application sends (routers and middleware decide where
    /// messages go).
    NotPermitted,
    /// `send_to` named an endpoint the app has not been given in the host's config.
    UnknownEndpoint(String),
    /// The handler already sent as many messages as the host allows per message handled.
    TooManySends(u32),
    /// The message would be invalid; the text says which field and why.
    Invalid(String),
}

impl From<types::SendError> for SendError {
    fn from(e: types::SendError) -> Self {
        match e {
            types::SendError::NotPermitted => Self::NotPermitted,
            types::SendError::UnknownEndpoint(ep) => Self::UnknownEndpoint(ep),
            types::SendError::TooManySends(n) => Self::TooManySends(n),
            types::SendError::Invalid(why) => Self::Invalid(why),
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotPermitted => f.write_str("send refused: only an application may send"),
            Self::UnknownEndpoint(ep) => write!(f, "send refused: unknown endpoint `{ep}`"),
            Self::TooManySends(n) => write!(f, "send refused: at most {n} sends per message"),
            Self::Invalid(why) => write!(f, "send refused: {why}"),
        }
    }
}

impl std::error::Error for SendError {}

/// A dictionary's JSON text as an object (empty if it is not one).
fn object(json: &str) -> Map<String, Value> {
    match serde_json::from_str(json) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// The fields read so far. Each getter asks the host once, on first use, and keeps the answer:
/// a plugin pays for the fields it reads, and reading one twice costs nothing more.
#[derive(Default)]
pub(crate) struct Fields {
    pub(crate) message_id: OnceCell<String>,
    pub(crate) timestamp: OnceCell<String>,
    pub(crate) to_addr: OnceCell<Option<String>>,
    pub(crate) from_addr: OnceCell<Option<String>>,
    pub(crate) to_addr_type: OnceCell<Option<String>>,
    pub(crate) from_addr_type: OnceCell<Option<String>>,
    pub(crate) in_reply_to: OnceCell<Option<String>>,
    pub(crate) session_event: OnceCell<Option<SessionEvent>>,
    pub(crate) content: OnceCell<Option<String>>,
    pub(crate) transport_name: OnceCell<Option<String>>,
    pub(crate) transport_type: OnceCell<Option<String>>,
    pub(crate) group: OnceCell<Option<String>>,
    pub(crate) provider: OnceCell<Option<String>>,
    pub(crate) endpoint: OnceCell<String>,
}

/// An optional text field: read from the host on first use.
macro_rules! optional {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        pub fn $name(&self) -> Option<&str> {
            self.fields.$name.get_or_init(|| self.raw.$name()).as_deref()
        }
    )*};
}

/// A message to or from an end user (Vumi's `user_message`), as the handler it was passed to
/// sees it. The host keeps the message; each getter fetches one field, on first use.
///
/// Valid for the call it was passed to only (the borrow's lifetime `'a` says so): keep what you
/// need as owned values, or in [`crate::kv`].
pub struct Message<'a> {
    raw: &'a raw::UserMessage,
    pub(crate) fields: Fields,
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only what was read already: formatting must not call the host.
        f.debug_struct("Message")
            .field("message_id", &self.fields.message_id.get())
            .field("content", &self.fields.content.get())
            .finish_non_exhaustive()
    }
}

impl<'a> Message<'a> {
    #[doc(hidden)]
    pub fn __from_raw(raw: &'a raw::UserMessage) -> Self {
        Self { raw, fields: Fields::default() }
    }

    pub(crate) fn raw(&self) -> &'a raw::UserMessage {
        self.raw
    }

    /// The message's id: 32 lowercase hex characters.
    pub fn message_id(&self) -> &str {
        self.fields.message_id.get_or_init(|| self.raw.message_id())
    }

    /// When it was made, in Vumi's text form `YYYY-MM-DD HH:MM:SS.ffffff` (UTC).
    pub fn timestamp(&self) -> &str {
        self.fields.timestamp.get_or_init(|| self.raw.timestamp())
    }

    optional! {
        /// Who it is for (e.g. the short code); `None` for a message to a whole group.
        to_addr;
        /// Who sent it: for inbound, the end user (an MSISDN, a telnet peer, a chat handle).
        from_addr;
        /// Kind of [`Self::to_addr`]: `msisdn`, `irc_nickname`, ...
        to_addr_type;
        /// Kind of [`Self::from_addr`].
        from_addr_type;
        /// The id of the message this one answers, if it is a reply.
        in_reply_to;
        /// The text. `None` is legal: a USSD or telnet session starts with none.
        content;
        /// The connector (transport) it came through or leaves by.
        transport_name;
        /// The kind of channel: `sms`, `ussd`, `telnet`, `http_api`, ...
        transport_type;
        /// The chat room or group it belongs to, if any.
        group;
        /// The mobile network or provider, if the transport knows it.
        provider;
    }

    /// Session state; `None` for a plain SMS.
    pub fn session_event(&self) -> Option<SessionEvent> {
        *self.fields.session_event.get_or_init(|| self.raw.session_event().map(SessionEvent::from))
    }

    /// The endpoint it arrived on or leaves by (`routing_metadata.endpoint_name`; `default` when
    /// none is set).
    pub fn endpoint(&self) -> &str {
        self.fields.endpoint.get_or_init(|| self.raw.endpoint())
    }

    /// The first word of the content, uppercased (`""` without content): what keyword matching
    /// wants.
    pub fn keyword(&self) -> String {
        self.content().and_then(|c| c.split_whitespace().next()).unwrap_or("").to_uppercase()
    }

    /// One of the message's dictionaries, whole (empty if it is not an object). Not kept: call
    /// [`Self::metadata_get`] for one key, which copies less.
    pub fn metadata(&self, which: Metadata) -> Map<String, Value> {
        object(&self.raw.metadata_json(which.into()))
    }

    /// One key of one dictionary, or `None` if it is absent.
    pub fn metadata_get(&self, which: Metadata, key: &str) -> Option<Value> {
        self.raw.metadata_get(which.into(), key).and_then(|json| serde_json::from_str(&json).ok())
    }

    /// `helper_metadata`, whole.
    pub fn helper_metadata(&self) -> Map<String, Value> {
        self.metadata(Metadata::Helper)
    }

    /// One key of `helper_metadata`.
    pub fn helper_metadata_get(&self, key: &str) -> Option<Value> {
        self.metadata_get(Metadata::Helper, key)
    }

    /// Reply with Vumi's reply rules (addresses swapped, `in_reply_to` set, transport fields and
    /// helper metadata kept, leaving by the endpoint it arrived on); the session continues.
    /// Returns the reply's message id. Only an application may send: elsewhere the host answers
    /// [`SendError::NotPermitted`].
    pub fn reply(&self, text: impl AsRef<str>) -> Result<String, SendError> {
        Ok(self.raw.reply(Some(text.as_ref()))?)
    }

    /// As [`Self::reply`], and the session ends once it is delivered (a USSD `END`, a telnet
    /// hang-up).
    pub fn reply_and_close(&self, text: impl AsRef<str>) -> Result<String, SendError> {
        Ok(self.raw.reply_and_close(Some(text.as_ref()))?)
    }

    /// As [`Self::reply`] (or [`Self::reply_and_close`] with `end_session`), but to the whole
    /// group (chat room) when the message came from one; without a group, the same as `reply`.
    pub fn reply_to_group(&self, text: impl AsRef<str>, end_session: bool) -> Result<String, SendError> {
        Ok(self.raw.reply_to_group(Some(text.as_ref()), end_session)?)
    }
}

/// An ack, nack or delivery report about a message the host sent (Vumi's `event`), read
/// through the host like [`Message`].
pub struct Event<'a> {
    raw: &'a raw::Event,
    user_message_id: OnceCell<String>,
    kind: OnceCell<EventKind>,
}

impl std::fmt::Debug for Event<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("user_message_id", &self.user_message_id.get())
            .field("kind", &self.kind.get())
            .finish_non_exhaustive()
    }
}

impl<'a> Event<'a> {
    #[doc(hidden)]
    pub fn __from_raw(raw: &'a raw::Event) -> Self {
        Self { raw, user_message_id: OnceCell::new(), kind: OnceCell::new() }
    }

    /// The event's own id.
    pub fn event_id(&self) -> String {
        self.raw.event_id()
    }

    /// When it was made, in Vumi's text form (UTC).
    pub fn timestamp(&self) -> String {
        self.raw.timestamp()
    }

    /// The id of the message it is about, as `reply` or `send_to` returned it.
    pub fn user_message_id(&self) -> &str {
        self.user_message_id.get_or_init(|| self.raw.user_message_id())
    }

    /// What happened.
    pub fn kind(&self) -> &EventKind {
        self.kind.get_or_init(|| self.raw.kind().into())
    }

    /// The connector it came from.
    pub fn transport_name(&self) -> Option<String> {
        self.raw.transport_name()
    }

    /// One of the event's dictionaries, whole.
    pub fn metadata(&self, which: Metadata) -> Map<String, Value> {
        object(&self.raw.metadata_json(which.into()))
    }

    /// One key of one dictionary, or `None`.
    pub fn metadata_get(&self, which: Metadata, key: &str) -> Option<Value> {
        self.raw.metadata_get(which.into(), key).and_then(|json| serde_json::from_str(&json).ok())
    }

    /// `helper_metadata`, whole.
    pub fn helper_metadata(&self) -> Map<String, Value> {
        self.metadata(Metadata::Helper)
    }
}
