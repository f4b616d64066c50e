//! The JSON codec, by hand over `serde_json::Value`: take each known key out of the object and
//! check it (so errors name the field), and keep what is left as `extra` (so a round trip loses
//! nothing a newer Vumi or a middleware added).

use serde_json::{Map, Value};

use super::{
    DeliveryStatus, Event, EventKind, MESSAGE_VERSION, Message, MessageError, Metadata, SessionEvent, Status,
    StatusLevel, Timestamp, UserMessage,
};

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

struct Fields(Map<String, Value>);

impl Fields {
    /// A key that must be present and a string.
    fn string(&mut self, field: &'static str) -> Result<String, MessageError> {
        match self.0.remove(field) {
            None => Err(MessageError::Missing(field)),
            Some(Value::String(s)) => Ok(s),
            Some(v) => Err(MessageError::Type { field, expected: "a string", got: kind(&v) }),
        }
    }

    /// A key that must be present (Vumi requires the key) but may be null.
    fn required_nullable(&mut self, field: &'static str) -> Result<Option<String>, MessageError> {
        if !self.0.contains_key(field) {
            return Err(MessageError::Missing(field));
        }
        self.optional(field)
    }

    /// A key that may be missing or null.
    fn optional(&mut self, field: &'static str) -> Result<Option<String>, MessageError> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(MessageError::Type { field, expected: "a string or null", got: kind(&v) }),
        }
    }

    /// A dictionary that defaults to `{}` when missing or null (older events lack
    /// `helper_metadata`).
    fn metadata(&mut self, field: &'static str) -> Result<Metadata, MessageError> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(Metadata::new()),
            Some(Value::Object(m)) => Ok(m),
            Some(v) => Err(MessageError::Type { field, expected: "an object", got: kind(&v) }),
        }
    }

    fn timestamp(&mut self) -> Result<Timestamp, MessageError> {
        let s = self.string("timestamp")?;
        s.parse().map_err(|e: super::TimestampError| MessageError::Value { field: "timestamp", problem: e.to_string() })
    }
}

pub(super) fn decode(bytes: &[u8]) -> Result<Message, MessageError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| MessageError::Json(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(MessageError::NotAnObject(kind(&value)));
    };
    let mut f = Fields(map);
    let version = f.string("message_version")?;
    if version != MESSAGE_VERSION {
        return Err(MessageError::Value {
            field: "message_version",
            problem: format!("must be \"{MESSAGE_VERSION}\", got \"{version}\""),
        });
    }
    let message_type = f.string("message_type")?;
    match message_type.as_str() {
        "user_message" => decode_user(f).map(Message::from),
        "event" => decode_event(f).map(Message::from),
        "status_event" => decode_status(f).map(Message::from),
        other => Err(MessageError::Value {
            field: "message_type",
            problem: format!("must be \"user_message\", \"event\" or \"status_event\", got \"{other}\""),
        }),
    }
}

fn decode_user(mut f: Fields) -> Result<UserMessage, MessageError> {
    let message_id = f.string("message_id")?;
    if message_id.is_empty() {
        return Err(MessageError::Value { field: "message_id", problem: "must not be empty".into() });
    }
    let session_event = match f.optional("session_event")? {
        None => None,
        Some(s) => Some(match s.as_str() {
            "new" => SessionEvent::New,
            "resume" => SessionEvent::Resume,
            "close" => SessionEvent::Close,
            other => {
                return Err(MessageError::Value {
                    field: "session_event",
                    problem: format!("must be null, \"new\", \"resume\" or \"close\", got \"{other}\""),
                });
            }
        }),
    };
    Ok(UserMessage {
        message_id,
        timestamp: f.timestamp()?,
        to_addr: f.required_nullable("to_addr")?,
        from_addr: f.required_nullable("from_addr")?,
        to_addr_type: f.optional("to_addr_type")?,
        from_addr_type: f.optional("from_addr_type")?,
        in_reply_to: f.optional("in_reply_to")?,
        session_event,
        content: f.optional("content")?,
        transport_name: f.required_nullable("transport_name")?,
        transport_type: f.required_nullable("transport_type")?,
        group: f.optional("group")?,
        provider: f.optional("provider")?,
        transport_metadata: f.metadata("transport_metadata")?,
        helper_metadata: f.metadata("helper_metadata")?,
        routing_metadata: f.metadata("routing_metadata")?,
        extra: f.0,
    })
}

fn decode_event(mut f: Fields) -> Result<Event, MessageError> {
    let event_id = f.string("event_id")?;
    let user_message_id = f.string("user_message_id")?;
    let event_type = f.string("event_type")?;
    let kind = match event_type.as_str() {
        "ack" => EventKind::Ack { sent_message_id: f.string("sent_message_id")? },
        "nack" => EventKind::Nack { nack_reason: f.string("nack_reason")? },
        "delivery_report" => {
            let s = f.string("delivery_status")?;
            let delivery_status = match s.as_str() {
                "pending" => DeliveryStatus::Pending,
                "failed" => DeliveryStatus::Failed,
                "delivered" => DeliveryStatus::Delivered,
                other => {
                    return Err(MessageError::Value {
                        field: "delivery_status",
                        problem: format!("must be \"pending\", \"failed\" or \"delivered\", got \"{other}\""),
                    });
                }
            };
            EventKind::DeliveryReport { delivery_status }
        }
        other => {
            return Err(MessageError::Value {
                field: "event_type",
                problem: format!("must be \"ack\", \"nack\" or \"delivery_report\", got \"{other}\""),
            });
        }
    };
    // The fields of the other event types are null on the wire: drop them rather than keep them
    // as "unknown" extras.
    for other in ["sent_message_id", "nack_reason", "delivery_status"] {
        if f.0.get(other).is_some_and(Value::is_null) {
            f.0.remove(other);
        }
    }
    Ok(Event {
        event_id,
        timestamp: f.timestamp()?,
        user_message_id,
        kind,
        transport_name: f.optional("transport_name")?,
        transport_metadata: f.metadata("transport_metadata")?,
        helper_metadata: f.metadata("helper_metadata")?,
        routing_metadata: f.metadata("routing_metadata")?,
        extra: f.0,
    })
}

fn decode_status(mut f: Fields) -> Result<Status, MessageError> {
    let component = f.string("component")?;
    let level = f.string("status")?;
    let status = match level.as_str() {
        "ok" => StatusLevel::Ok,
        "degraded" => StatusLevel::Degraded,
        "down" => StatusLevel::Down,
        other => {
            return Err(MessageError::Value {
                field: "status",
                problem: format!("must be \"ok\", \"degraded\" or \"down\", got \"{other}\""),
            });
        }
    };
    let reasons = match f.0.remove("reasons") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(v) => return Err(MessageError::Type { field: "reasons", expected: "an array", got: kind(&v) }),
    };
    Ok(Status {
        component,
        status,
        status_type: f.string("type")?,
        message: f.string("message")?,
        reasons,
        details: f.metadata("details")?,
        timestamp: f.timestamp()?,
        helper_metadata: f.metadata("helper_metadata")?,
        routing_metadata: f.metadata("routing_metadata")?,
        extra: f.0,
    })
}

fn opt(v: &Option<String>) -> Value {
    v.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}

fn finish(mut m: Map<String, Value>, extra: &Metadata) -> Vec<u8> {
    for (k, v) in extra {
        // A known field always wins over a stray duplicate in extra.
        m.entry(k.clone()).or_insert_with(|| v.clone());
    }
    serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
}

fn common(message_type: &str, timestamp: &Timestamp) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("message_version".into(), MESSAGE_VERSION.into());
    m.insert("message_type".into(), message_type.into());
    m.insert("timestamp".into(), timestamp.to_string().into());
    m
}

pub(super) fn encode_user(u: &UserMessage) -> Vec<u8> {
    let mut m = common("user_message", &u.timestamp);
    m.insert("message_id".into(), u.message_id.clone().into());
    m.insert("to_addr".into(), opt(&u.to_addr));
    m.insert("from_addr".into(), opt(&u.from_addr));
    m.insert("to_addr_type".into(), opt(&u.to_addr_type));
    m.insert("from_addr_type".into(), opt(&u.from_addr_type));
    m.insert("in_reply_to".into(), opt(&u.in_reply_to));
    m.insert("session_event".into(), u.session_event.map_or(Value::Null, |s| s.as_str().into()));
    m.insert("content".into(), opt(&u.content));
    m.insert("transport_name".into(), opt(&u.transport_name));
    m.insert("transport_type".into(), opt(&u.transport_type));
    m.insert("group".into(), opt(&u.group));
    m.insert("provider".into(), opt(&u.provider));
    m.insert("transport_metadata".into(), Value::Object(u.transport_metadata.clone()));
    m.insert("helper_metadata".into(), Value::Object(u.helper_metadata.clone()));
    m.insert("routing_metadata".into(), Value::Object(u.routing_metadata.clone()));
    finish(m, &u.extra)
}

pub(super) fn encode_event(e: &Event) -> Vec<u8> {
    let mut m = common("event", &e.timestamp);
    m.insert("event_id".into(), e.event_id.clone().into());
    m.insert("event_type".into(), e.event_type().into());
    m.insert("user_message_id".into(), e.user_message_id.clone().into());
    match &e.kind {
        EventKind::Ack { sent_message_id } => m.insert("sent_message_id".into(), sent_message_id.clone().into()),
        EventKind::Nack { nack_reason } => m.insert("nack_reason".into(), nack_reason.clone().into()),
        EventKind::DeliveryReport { delivery_status } => {
            m.insert("delivery_status".into(), delivery_status.as_str().into())
        }
    };
    m.insert("transport_name".into(), opt(&e.transport_name));
    m.insert("transport_metadata".into(), Value::Object(e.transport_metadata.clone()));
    m.insert("helper_metadata".into(), Value::Object(e.helper_metadata.clone()));
    m.insert("routing_metadata".into(), Value::Object(e.routing_metadata.clone()));
    finish(m, &e.extra)
}

pub(super) fn encode_status(s: &Status) -> Vec<u8> {
    let mut m = common("status_event", &s.timestamp);
    m.insert("component".into(), s.component.clone().into());
    m.insert("status".into(), s.status.as_str().into());
    m.insert("type".into(), s.status_type.clone().into());
    m.insert("message".into(), s.message.clone().into());
    m.insert("reasons".into(), Value::Array(s.reasons.clone()));
    m.insert("details".into(), Value::Object(s.details.clone()));
    m.insert("helper_metadata".into(), Value::Object(s.helper_metadata.clone()));
    m.insert("routing_metadata".into(), Value::Object(s.routing_metadata.clone()));
    finish(m, &s.extra)
}
