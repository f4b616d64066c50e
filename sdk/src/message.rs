//! Messages and events, as an app sees them.

use crate::wit::vumi::plugin::{outbound, types};
use crate::Result;

/// Where a message stands in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// The session starts.
    New,
    /// The session continues.
    Resume,
    /// The session ended.
    Close,
}

/// A message from an end user (Vumi's `user_message`).
#[derive(Debug, Clone)]
pub struct Message(types::UserMessage);

fn parse(json: &str) -> serde_json::Value {
    serde_json::from_str(json).unwrap_or(serde_json::Value::Null)
}

impl Message {
    pub(crate) fn from_raw(raw: types::UserMessage) -> Self {
        Self(raw)
    }

    /// The text, if any (a session start has none).
    pub fn content(&self) -> Option<&str> {
        self.0.content.as_deref()
    }
    /// Who sent it: the end user's address (MSISDN, telnet peer, chat handle).
    pub fn from_addr(&self) -> Option<&str> {
        self.0.from_addr.as_deref()
    }
    /// Who it was sent to (e.g. the short code).
    pub fn to_addr(&self) -> Option<&str> {
        self.0.to_addr.as_deref()
    }
    /// Session state, if the channel has sessions.
    pub fn session_event(&self) -> Option<SessionEvent> {
        self.0.session_event.map(|s| match s {
            types::SessionEvent::New => SessionEvent::New,
            types::SessionEvent::Resume => SessionEvent::Resume,
            types::SessionEvent::Close => SessionEvent::Close,
        })
    }
    /// The message's id (32 hex characters).
    pub fn message_id(&self) -> &str {
        &self.0.message_id
    }
    /// When it was made, in Vumi's text form (UTC).
    pub fn timestamp(&self) -> &str {
        &self.0.timestamp
    }
    /// The id of the message this one answers, if any.
    pub fn in_reply_to(&self) -> Option<&str> {
        self.0.in_reply_to.as_deref()
    }
    /// The transport (connector) it came through.
    pub fn transport_name(&self) -> Option<&str> {
        self.0.transport_name.as_deref()
    }
    /// The kind of channel: `sms`, `ussd`, `telnet`, ...
    pub fn transport_type(&self) -> Option<&str> {
        self.0.transport_type.as_deref()
    }
    /// The chat room or group, if any.
    pub fn group(&self) -> Option<&str> {
        self.0.group.as_deref()
    }
    /// The mobile network, if the transport knows it.
    pub fn provider(&self) -> Option<&str> {
        self.0.provider.as_deref()
    }
    /// Application-level metadata, parsed.
    pub fn helper_metadata(&self) -> serde_json::Value {
        parse(&self.0.helper_metadata)
    }
    /// Transport metadata, parsed (opaque: do not rely on its keys).
    pub fn transport_metadata(&self) -> serde_json::Value {
        parse(&self.0.transport_metadata)
    }
    /// Routing metadata, parsed.
    pub fn routing_metadata(&self) -> serde_json::Value {
        parse(&self.0.routing_metadata)
    }
    /// The endpoint the message arrived on (`default` if none).
    pub fn endpoint(&self) -> String {
        self.routing_metadata()["endpoint_name"].as_str().unwrap_or("default").to_owned()
    }

    /// Reply and keep the session open. Returns the reply's message id.
    pub fn reply(&self, text: impl Into<String>) -> Result<String> {
        Ok(outbound::reply(Some(&text.into()), false)?)
    }
    /// Reply and end the session (a USSD `END`; a telnet hang-up).
    pub fn reply_and_close(&self, text: impl Into<String>) -> Result<String> {
        Ok(outbound::reply(Some(&text.into()), true)?)
    }
    /// Reply to the whole group the message came from (or to the sender, if none).
    pub fn reply_to_group(&self, text: impl Into<String>) -> Result<String> {
        Ok(outbound::reply_to_group(Some(&text.into()), false)?)
    }
}

/// Start a new conversation with `to_addr` through `endpoint` (`None`: the app's default).
/// Returns the new message's id.
pub fn send_to(to_addr: &str, content: &str, endpoint: Option<&str>) -> Result<String> {
    Ok(outbound::send_to(to_addr, Some(content), endpoint)?)
}

/// What a delivery report says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not delivered yet.
    Pending,
    /// Will not be delivered.
    Failed,
    /// Delivered.
    Delivered,
}

/// What an event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// Sent; the far side's id for it.
    Ack(String),
    /// Not sent; why.
    Nack(String),
    /// The network's report.
    DeliveryReport(DeliveryStatus),
}

/// An event about a message this app sent.
#[derive(Debug, Clone)]
pub struct Event(types::Event);

impl Event {
    pub(crate) fn from_raw(raw: types::Event) -> Self {
        Self(raw)
    }
    /// The event's id.
    pub fn event_id(&self) -> &str {
        &self.0.event_id
    }
    /// The id of the message it is about (as returned by `reply` / `send_to`).
    pub fn user_message_id(&self) -> &str {
        &self.0.user_message_id
    }
    /// What happened.
    pub fn kind(&self) -> EventKind {
        match &self.0.kind {
            types::EventKind::Ack(id) => EventKind::Ack(id.clone()),
            types::EventKind::Nack(why) => EventKind::Nack(why.clone()),
            types::EventKind::DeliveryReport(s) => EventKind::DeliveryReport(match s {
                types::DeliveryStatus::Pending => DeliveryStatus::Pending,
                types::DeliveryStatus::Failed => DeliveryStatus::Failed,
                types::DeliveryStatus::Delivered => DeliveryStatus::Delivered,
            }),
        }
    }
    /// The transport it came from.
    pub fn transport_name(&self) -> Option<&str> {
        self.0.transport_name.as_deref()
    }
    /// Application-level metadata, parsed.
    pub fn helper_metadata(&self) -> serde_json::Value {
        parse(&self.0.helper_metadata)
    }
}
