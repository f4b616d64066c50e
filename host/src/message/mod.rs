//! Vumi's message model and its JSON wire format (message_version `20110921`).
//!
//! Three kinds travel: [`UserMessage`] (to or from an end user), [`Event`] (ack, nack, delivery
//! report about a message the host sent) and [`Status`] (a component's health), told apart by
//! `message_type`. The codec reads what a 2014 Vumi worker writes and writes what it reads:
//! - every field of the reference, with its default when a tolerated key is missing;
//! - unknown fields (a newer Vumi's, a middleware's, `__cache__`) kept in `extra` and written back;
//! - errors name the field and say what was expected.
//!
//! Vumi's own decoder turned every timestamp-shaped string into a datetime; we parse only
//! `timestamp` and leave strings in metadata alone, which reads the same JSON and cannot choke.

mod codec;
mod timestamp;

use std::sync::Arc;

use serde_json::Value;

pub use timestamp::{Timestamp, TimestampError};

/// The only message version Vumi ever shipped.
pub const MESSAGE_VERSION: &str = "20110921";

/// A JSON object: metadata dictionaries and unknown fields.
pub type Metadata = serde_json::Map<String, Value>;

/// A new message or event id: 32 lowercase hex characters (a UUID4 without dashes), as Vumi made.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A fresh name for one test's queues and keys on shared services (RabbitMQ, Redis): the
/// suite's `VUMI_TEST_RUN` prefix, then `random` (at most 32) hex characters of a new id. `.ci/run`
/// sets the prefix, so that after the suite it can list anything of this run still present on
/// services that other runs use too. The host itself never calls this.
#[doc(hidden)]
pub fn test_run(random: usize) -> String {
    let prefix = std::env::var("VUMI_TEST_RUN").unwrap_or_default();
    assert!(
        prefix.len() <= 16 && prefix.bytes().all(|b| b.is_ascii_alphanumeric()),
        "VUMI_TEST_RUN must be at most 16 ASCII letters or digits (it goes into queue names), not {prefix:?}"
    );
    format!("{prefix}{}", &new_id()[..random.min(32)])
}

/// The id of the `index`th message `component` sent in answer to message `parent`: a UUIDv5 of
/// the three, in the same 32-hex form as [`new_id`]. Handling one message twice (a redelivery
/// after a crash, a retry) makes the same ids, so the copies are recognisable as copies.
pub fn derived_id(parent: &str, component: &str, index: usize) -> String {
    /// This project's UUIDv5 namespace (a fixed random UUID): ids derived by other software
    /// from the same names differ from ours.
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x8f1c_5a3e_2b7d_4e90_a6c4_1d3f_7e25_b0a9);
    let name = format!("{parent}\u{0}{component}\u{0}{index}");
    uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes()).simple().to_string()
}

/// Where a message stands in a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionEvent {
    /// Starts a session.
    New,
    /// Continues it.
    Resume,
    /// Ends it (user hung up, timed out, or the app ended it).
    Close,
}

impl SessionEvent {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEvent::New => "new",
            SessionEvent::Resume => "resume",
            SessionEvent::Close => "close",
        }
    }
}

/// A message to or from an end user (`message_type: "user_message"`).
#[derive(Clone, Debug, PartialEq)]
pub struct UserMessage {
    /// 32 hex characters.
    pub message_id: String,
    /// When it was made.
    pub timestamp: Timestamp,
    /// Recipient; `None` for a message to a whole group.
    pub to_addr: Option<String>,
    /// Sender.
    pub from_addr: Option<String>,
    /// Kind of `to_addr` (`msisdn`, `irc_nickname`, ...).
    pub to_addr_type: Option<String>,
    /// Kind of `from_addr`.
    pub from_addr_type: Option<String>,
    /// The `message_id` this answers.
    pub in_reply_to: Option<String>,
    /// Session state.
    pub session_event: Option<SessionEvent>,
    /// The text; `None` is legal (a session start).
    pub content: Option<String>,
    /// The connector the message belongs to.
    pub transport_name: Option<String>,
    /// The kind of channel (`sms`, `ussd`, `telnet`, ...).
    pub transport_type: Option<String>,
    /// Chat room or group.
    pub group: Option<String>,
    /// Mobile network or provider.
    pub provider: Option<String>,
    /// Opaque to all but the transport.
    pub transport_metadata: Metadata,
    /// Application-level data.
    pub helper_metadata: Metadata,
    /// Routing data; holds `endpoint_name`.
    pub routing_metadata: Metadata,
    /// Fields this version does not know, kept for the round trip.
    pub extra: Metadata,
}

/// The endpoint of a message that names none.
pub const DEFAULT_ENDPOINT: &str = "default";

fn endpoint_of(routing_metadata: &Metadata) -> &str {
    routing_metadata.get("endpoint_name").and_then(Value::as_str).unwrap_or(DEFAULT_ENDPOINT)
}

impl UserMessage {
    /// A message as a transport makes it on arrival: a new id, now, no optional fields, empty
    /// metadata.
    pub fn inbound(
        transport_name: &str,
        transport_type: &str,
        from_addr: impl Into<String>,
        to_addr: impl Into<String>,
        content: Option<String>,
        session_event: Option<SessionEvent>,
    ) -> Self {
        Self {
            message_id: new_id(),
            timestamp: Timestamp::now(),
            to_addr: Some(to_addr.into()),
            from_addr: Some(from_addr.into()),
            to_addr_type: None,
            from_addr_type: None,
            in_reply_to: None,
            session_event,
            content,
            transport_name: Some(transport_name.to_owned()),
            transport_type: Some(transport_type.to_owned()),
            group: None,
            provider: None,
            transport_metadata: Metadata::new(),
            helper_metadata: Metadata::new(),
            routing_metadata: Metadata::new(),
            extra: Metadata::new(),
        }
    }

    /// A reply, by Vumi's rules: addresses (and their types) swapped, `in_reply_to` set; group,
    /// provider, the transport fields (name, type, metadata: they belong together) and — as
    /// Vumi did, for legacy reasons — helper metadata copied; session `None` to continue or
    /// `Close` to end it; it leaves by the endpoint `self` arrived on. Unknown fields are not
    /// copied: they described the inbound message, not the reply.
    pub fn reply(&self, content: Option<String>, end_session: bool) -> UserMessage {
        let mut routing_metadata = Metadata::new();
        routing_metadata.insert("endpoint_name".into(), Value::String(self.endpoint().to_owned()));
        UserMessage {
            message_id: new_id(),
            timestamp: Timestamp::now(),
            to_addr: self.from_addr.clone(),
            from_addr: self.to_addr.clone(),
            to_addr_type: self.from_addr_type.clone(),
            from_addr_type: self.to_addr_type.clone(),
            in_reply_to: Some(self.message_id.clone()),
            session_event: end_session.then_some(SessionEvent::Close),
            content,
            transport_name: self.transport_name.clone(),
            transport_type: self.transport_type.clone(),
            group: self.group.clone(),
            provider: self.provider.clone(),
            transport_metadata: self.transport_metadata.clone(),
            helper_metadata: self.helper_metadata.clone(),
            routing_metadata,
            extra: Metadata::new(),
        }
    }

    /// A reply to the whole group: as [`UserMessage::reply`], but addressed to nobody in
    /// particular (`to_addr` `None`) when `self` came from a group.
    pub fn reply_to_group(&self, content: Option<String>, end_session: bool) -> UserMessage {
        let mut r = self.reply(content, end_session);
        if self.group.is_some() {
            r.to_addr = None;
        }
        r
    }

    /// A fresh message, not a reply: `from_addr` and the transport are left for routing to fill.
    pub fn send_to(to_addr: impl Into<String>, content: Option<String>, endpoint: &str) -> UserMessage {
        let mut m = UserMessage::inbound("", "", "", "", content, None);
        m.to_addr = Some(to_addr.into());
        m.from_addr = None;
        m.transport_name = None;
        m.transport_type = None;
        m.set_endpoint(endpoint);
        m
    }

    /// `routing_metadata.endpoint_name`, or `default`.
    pub fn endpoint(&self) -> &str {
        endpoint_of(&self.routing_metadata)
    }

    /// Set `routing_metadata.endpoint_name`.
    pub fn set_endpoint(&mut self, endpoint: &str) {
        self.routing_metadata.insert("endpoint_name".into(), Value::String(endpoint.to_owned()));
    }

    /// Parse a `user_message`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, MessageError> {
        match Message::from_json(bytes)? {
            Message::User(m) => Ok(Arc::unwrap_or_clone(m)),
            other => Err(MessageError::WrongType {
                expected: "user_message",
                got: other.message_type().to_owned(),
            }),
        }
    }

    /// Vumi JSON.
    pub fn to_json(&self) -> Vec<u8> {
        codec::encode_user(self)
    }
}

/// What a delivery report says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Not delivered yet.
    Pending,
    /// Will not be delivered.
    Failed,
    /// Delivered.
    Delivered,
}

impl DeliveryStatus {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Delivered => "delivered",
        }
    }
}

/// The three event types, each with the field only it carries.
#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    /// Sent; `sent_message_id` is the far side's id for it.
    Ack {
        /// E.g. the SMSC's message id.
        sent_message_id: String,
    },
    /// Not sent.
    Nack {
        /// Why.
        nack_reason: String,
    },
    /// The network reported on delivery.
    DeliveryReport {
        /// What it said.
        delivery_status: DeliveryStatus,
    },
}

/// An event about a message the host sent (`message_type: "event"`).
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// 32 hex characters.
    pub event_id: String,
    /// When it was made.
    pub timestamp: Timestamp,
    /// The outbound message it is about.
    pub user_message_id: String,
    /// Which event, with its own field.
    pub kind: EventKind,
    /// The connector it came from.
    pub transport_name: Option<String>,
    /// Opaque to all but the transport.
    pub transport_metadata: Metadata,
    /// Application-level data.
    pub helper_metadata: Metadata,
    /// Routing data.
    pub routing_metadata: Metadata,
    /// Unknown fields, kept.
    pub extra: Metadata,
}

impl Event {
    fn new(user_message_id: &str, kind: EventKind) -> Self {
        Self {
            event_id: new_id(),
            timestamp: Timestamp::now(),
            user_message_id: user_message_id.to_owned(),
            kind,
            transport_name: None,
            transport_metadata: Metadata::new(),
            helper_metadata: Metadata::new(),
            routing_metadata: Metadata::new(),
            extra: Metadata::new(),
        }
    }
    /// An ack.
    pub fn ack(user_message_id: &str, sent_message_id: &str) -> Self {
        Self::new(user_message_id, EventKind::Ack { sent_message_id: sent_message_id.to_owned() })
    }
    /// A nack.
    pub fn nack(user_message_id: &str, reason: &str) -> Self {
        Self::new(user_message_id, EventKind::Nack { nack_reason: reason.to_owned() })
    }
    /// A delivery report.
    pub fn delivery_report(user_message_id: &str, status: DeliveryStatus) -> Self {
        Self::new(user_message_id, EventKind::DeliveryReport { delivery_status: status })
    }
    /// The wire `event_type`.
    pub fn event_type(&self) -> &'static str {
        match self.kind {
            EventKind::Ack { .. } => "ack",
            EventKind::Nack { .. } => "nack",
            EventKind::DeliveryReport { .. } => "delivery_report",
        }
    }
    /// The label for metrics and status: `ack`, `nack`, `delivery_report.delivered`, ...
    pub fn label(&self) -> String {
        match &self.kind {
            EventKind::DeliveryReport { delivery_status } => {
                format!("delivery_report.{}", delivery_status.as_str())
            }
            _ => self.event_type().to_owned(),
        }
    }
    /// `routing_metadata.endpoint_name`, or `default`.
    pub fn endpoint(&self) -> &str {
        endpoint_of(&self.routing_metadata)
    }
    /// Parse an `event`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, MessageError> {
        match Message::from_json(bytes)? {
            Message::Event(e) => Ok(Arc::unwrap_or_clone(e)),
            other => Err(MessageError::WrongType { expected: "event", got: other.message_type().to_owned() }),
        }
    }
    /// Vumi JSON.
    pub fn to_json(&self) -> Vec<u8> {
        codec::encode_event(self)
    }
}

/// A component's health level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusLevel {
    /// Working.
    Ok,
    /// Working, but not fully.
    Degraded,
    /// Not working.
    Down,
}

impl StatusLevel {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusLevel::Ok => "ok",
            StatusLevel::Degraded => "degraded",
            StatusLevel::Down => "down",
        }
    }
}

/// A status message (`message_type: "status_event"`).
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// Which component.
    pub component: String,
    /// Its health.
    pub status: StatusLevel,
    /// A short machine label (`bound`, `connection_lost`, ...): the JSON key `type`.
    pub status_type: String,
    /// Human text.
    pub message: String,
    /// Details of why.
    pub reasons: Vec<Value>,
    /// Anything else.
    pub details: Metadata,
    /// When it was made.
    pub timestamp: Timestamp,
    /// Application-level data.
    pub helper_metadata: Metadata,
    /// Routing data.
    pub routing_metadata: Metadata,
    /// Unknown fields, kept.
    pub extra: Metadata,
}

/// Any message on the bus. Each variant is shared (`Arc`): a queue, a lane, a fan-out to
/// several targets, a requeue and a plugin call all hold the same message, and cloning one is a
/// pointer bump. Change one with `Arc::make_mut`, which copies only if it is shared.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// `user_message`.
    User(Arc<UserMessage>),
    /// `event`.
    Event(Arc<Event>),
    /// `status_event`.
    Status(Arc<Status>),
}

impl From<UserMessage> for Message {
    fn from(m: UserMessage) -> Self {
        Message::User(Arc::new(m))
    }
}

impl From<Event> for Message {
    fn from(e: Event) -> Self {
        Message::Event(Arc::new(e))
    }
}

impl From<Status> for Message {
    fn from(s: Status) -> Self {
        Message::Status(Arc::new(s))
    }
}

impl Message {
    /// Parse any Vumi message.
    pub fn from_json(bytes: &[u8]) -> Result<Message, MessageError> {
        codec::decode(bytes)
    }
    /// Vumi JSON.
    pub fn to_json(&self) -> Vec<u8> {
        match self {
            Message::User(m) => codec::encode_user(m),
            Message::Event(e) => codec::encode_event(e),
            Message::Status(s) => codec::encode_status(s),
        }
    }
    /// The message or event id (a status has none: its component).
    pub fn id(&self) -> &str {
        match self {
            Message::User(m) => &m.message_id,
            Message::Event(e) => &e.event_id,
            Message::Status(s) => &s.component,
        }
    }
    /// The wire `message_type`.
    pub fn message_type(&self) -> &'static str {
        match self {
            Message::User(_) => "user_message",
            Message::Event(_) => "event",
            Message::Status(_) => "status_event",
        }
    }
}

/// Why bytes are not a valid Vumi message. Every variant names the field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MessageError {
    /// Not JSON at all.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// JSON, but not an object.
    #[error("a message must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    /// A required key is absent.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A key has the wrong JSON type.
    #[error("field `{field}`: expected {expected}, got {got}")]
    Type {
        /// The field.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
        /// What it is.
        got: &'static str,
    },
    /// A key has a value outside its allowed set or form.
    #[error("field `{field}`: {problem}")]
    Value {
        /// The field.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// A message of another type than the caller wanted.
    #[error("field `message_type`: expected `{expected}`, got `{got}`")]
    WrongType {
        /// Wanted.
        expected: &'static str,
        /// Got.
        got: String,
    },
}

#[cfg(test)]
mod tests;
