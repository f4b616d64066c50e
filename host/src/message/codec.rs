//! The JSON codec, by hand over `serde_json::Value`: take each known key out of the object and
//! check it (so errors name the field), and keep what is left as `extra` (so a round trip loses
//! nothing a newer Vumi or a middleware added). Encoding streams each field straight out.

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
        s.parse().map_err(|e: super::TimestampError| MessageError::Value {
            field: "timestamp",
            problem: e.to_string(),
        })
    }
}

pub(super) fn decode(bytes: &[u8]) -> Result<Message, MessageError> {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        // Python writes a lone surrogate (`"\ud800"`: a string cut inside an emoji, say) as a
        // `\u` escape, which no Rust string can hold: it becomes U+FFFD, and the rest of the
        // message arrives, rather than the whole message being set aside.
        Err(e) => match mend_lone_surrogates(bytes) {
            Some(mended) => serde_json::from_slice(&mended).map_err(|e| MessageError::Json(e.to_string()))?,
            None => return Err(MessageError::Json(e.to_string())),
        },
    };
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

/// One known field's value, borrowed from the message: encoding copies nothing into an
/// intermediate `Value` tree, it writes straight to the output.
enum F<'a> {
    Str(&'a str),
    Opt(Option<&'a str>),
    Map(&'a Metadata),
    List(&'a [Value]),
}

impl serde::Serialize for F<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            F::Str(v) => s.serialize_str(v),
            F::Opt(Some(v)) => s.serialize_str(v),
            F::Opt(None) => s.serialize_unit(),
            F::Map(m) => m.serialize(s),
            F::List(l) => l.serialize(s),
        }
    }
}

fn opt(v: &Option<String>) -> F<'_> {
    F::Opt(v.as_deref())
}

/// The object: `fields` in order, then whatever of `extra` they do not name (a known field
/// always wins over a stray duplicate in extra).
fn write(fields: &[(&str, F<'_>)], extra: &Metadata) -> Vec<u8> {
    use serde::ser::{SerializeMap, Serializer};
    let mut out = Vec::with_capacity(512);
    let mut ser = serde_json::Serializer::new(&mut out);
    // Writing to a Vec cannot fail, and every value here is JSON already.
    let Ok(mut map) = ser.serialize_map(Some(fields.len() + extra.len())) else { return out };
    for (k, v) in fields {
        let _ = map.serialize_entry(k, v);
    }
    for (k, v) in extra {
        if !fields.iter().any(|(known, _)| known == k) {
            let _ = map.serialize_entry(k, v);
        }
    }
    let _ = map.end();
    out
}

pub(super) fn encode_user(u: &UserMessage) -> Vec<u8> {
    let ts = u.timestamp.to_string();
    write(
        &[
            ("message_version", F::Str(MESSAGE_VERSION)),
            ("message_type", F::Str("user_message")),
            ("timestamp", F::Str(&ts)),
            ("message_id", F::Str(&u.message_id)),
            ("to_addr", opt(&u.to_addr)),
            ("from_addr", opt(&u.from_addr)),
            ("to_addr_type", opt(&u.to_addr_type)),
            ("from_addr_type", opt(&u.from_addr_type)),
            ("in_reply_to", opt(&u.in_reply_to)),
            ("session_event", F::Opt(u.session_event.map(|s| s.as_str()))),
            ("content", opt(&u.content)),
            ("transport_name", opt(&u.transport_name)),
            ("transport_type", opt(&u.transport_type)),
            ("group", opt(&u.group)),
            ("provider", opt(&u.provider)),
            ("transport_metadata", F::Map(&u.transport_metadata)),
            ("helper_metadata", F::Map(&u.helper_metadata)),
            ("routing_metadata", F::Map(&u.routing_metadata)),
        ],
        &u.extra,
    )
}

pub(super) fn encode_event(e: &Event) -> Vec<u8> {
    let ts = e.timestamp.to_string();
    let detail = match &e.kind {
        EventKind::Ack { sent_message_id } => ("sent_message_id", F::Str(sent_message_id)),
        EventKind::Nack { nack_reason } => ("nack_reason", F::Str(nack_reason)),
        EventKind::DeliveryReport { delivery_status } => {
            ("delivery_status", F::Str(delivery_status.as_str()))
        }
    };
    write(
        &[
            ("message_version", F::Str(MESSAGE_VERSION)),
            ("message_type", F::Str("event")),
            ("timestamp", F::Str(&ts)),
            ("event_id", F::Str(&e.event_id)),
            ("event_type", F::Str(e.event_type())),
            ("user_message_id", F::Str(&e.user_message_id)),
            detail,
            ("transport_name", opt(&e.transport_name)),
            ("transport_metadata", F::Map(&e.transport_metadata)),
            ("helper_metadata", F::Map(&e.helper_metadata)),
            ("routing_metadata", F::Map(&e.routing_metadata)),
        ],
        &e.extra,
    )
}

pub(super) fn encode_status(s: &Status) -> Vec<u8> {
    let ts = s.timestamp.to_string();
    write(
        &[
            ("message_version", F::Str(MESSAGE_VERSION)),
            ("message_type", F::Str("status_event")),
            ("timestamp", F::Str(&ts)),
            ("component", F::Str(&s.component)),
            ("status", F::Str(s.status.as_str())),
            ("type", F::Str(&s.status_type)),
            ("message", F::Str(&s.message)),
            ("reasons", F::List(&s.reasons)),
            ("details", F::Map(&s.details)),
            ("helper_metadata", F::Map(&s.helper_metadata)),
            ("routing_metadata", F::Map(&s.routing_metadata)),
        ],
        &s.extra,
    )
}

/// `bytes` with every `\u` escape of a surrogate that is not half of a pair written as
/// `\uFFFD`, or `None` if there is none. Escapes are read as JSON reads them: only inside
/// strings, after an unescaped backslash.
fn mend_lone_surrogates(bytes: &[u8]) -> Option<Vec<u8>> {
    fn unit(b: &[u8], at: usize) -> Option<u16> {
        let hex = b.get(at..at + 6)?;
        if &hex[..2] != b"\\u" {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()
    }
    let mut out = Vec::with_capacity(bytes.len());
    let (mut i, mut in_string, mut mended) = (0, false, false);
    while i < bytes.len() {
        let b = bytes[i];
        if !in_string {
            in_string = b == b'"';
            out.push(b);
            i += 1;
            continue;
        }
        match b {
            b'"' => in_string = false,
            b'\\' => match unit(bytes, i) {
                Some(0xD800..=0xDBFF)
                    if unit(bytes, i + 6).is_some_and(|lo| (0xDC00..=0xDFFF).contains(&lo)) =>
                {
                    out.extend_from_slice(&bytes[i..i + 12]);
                    i += 12;
                    continue;
                }
                Some(0xD800..=0xDFFF) => {
                    out.extend_from_slice(b"\\uFFFD");
                    mended = true;
                    i += 6;
                    continue;
                }
                // Another escape: copy the backslash and the character it escapes.
                _ => {
                    out.extend_from_slice(&bytes[i..(i + 2).min(bytes.len())]);
                    i += 2;
                    continue;
                }
            },
            _ => {}
        }
        out.push(b);
        i += 1;
    }
    mended.then_some(out)
}
