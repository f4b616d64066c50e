//! Host messages into the WIT records a plugin receives, and back for the one case a plugin hands
//! a message back: a middleware's `pass`. Apps send through `outbound`, whose messages the host
//! builds itself (so Vumi's reply rules live in one place, `message::UserMessage::reply`).

use crate::message::{DeliveryStatus, Event, EventKind, Metadata, SessionEvent, UserMessage};

use super::bindings::types as wit;

fn json(m: &Metadata) -> String {
    if m.is_empty() {
        return "{}".to_owned();
    }
    serde_json::Value::Object(m.clone()).to_string()
}

pub(crate) fn user_message(m: &UserMessage) -> wit::UserMessage {
    wit::UserMessage {
        message_id: m.message_id.clone(),
        timestamp: m.timestamp.to_string(),
        to_addr: m.to_addr.clone(),
        from_addr: m.from_addr.clone(),
        to_addr_type: m.to_addr_type.clone(),
        from_addr_type: m.from_addr_type.clone(),
        in_reply_to: m.in_reply_to.clone(),
        session_event: m.session_event.map(|s| match s {
            SessionEvent::New => wit::SessionEvent::New,
            SessionEvent::Resume => wit::SessionEvent::Resume,
            SessionEvent::Close => wit::SessionEvent::Close,
        }),
        content: m.content.clone(),
        transport_name: m.transport_name.clone(),
        transport_type: m.transport_type.clone(),
        group: m.group.clone(),
        provider: m.provider.clone(),
        transport_metadata: json(&m.transport_metadata),
        helper_metadata: json(&m.helper_metadata),
        routing_metadata: json(&m.routing_metadata),
    }
}

pub(crate) fn event(e: &Event) -> wit::Event {
    wit::Event {
        event_id: e.event_id.clone(),
        timestamp: e.timestamp.to_string(),
        user_message_id: e.user_message_id.clone(),
        kind: match &e.kind {
            EventKind::Ack { sent_message_id } => wit::EventKind::Ack(sent_message_id.clone()),
            EventKind::Nack { nack_reason } => wit::EventKind::Nack(nack_reason.clone()),
            EventKind::DeliveryReport { delivery_status } => wit::EventKind::DeliveryReport(match delivery_status {
                DeliveryStatus::Pending => wit::DeliveryStatus::Pending,
                DeliveryStatus::Failed => wit::DeliveryStatus::Failed,
                DeliveryStatus::Delivered => wit::DeliveryStatus::Delivered,
            }),
        },
        transport_name: e.transport_name.clone(),
        transport_metadata: json(&e.transport_metadata),
        helper_metadata: json(&e.helper_metadata),
        routing_metadata: json(&e.routing_metadata),
    }
}

fn metadata(field: &str, text: &str) -> Result<Metadata, String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(other) => Err(format!("field `{field}` must be a JSON object, got {}", kind(&other))),
        Err(e) => Err(format!("field `{field}` is not valid JSON: {e}")),
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The message a middleware passed on, on top of `original`: fields a plugin cannot see
/// (`extra`) are kept; the id may not change (events find their message by it).
pub(crate) fn changed_user_message(original: &UserMessage, m: wit::UserMessage) -> Result<UserMessage, String> {
    if m.message_id != original.message_id {
        return Err(format!(
            "field `message-id` may not be changed by middleware (was `{}`, got `{}`)",
            original.message_id, m.message_id
        ));
    }
    // Unchanged text keeps the original's full precision.
    let timestamp = if m.timestamp == original.timestamp.to_string() {
        original.timestamp
    } else {
        m.timestamp.parse().map_err(|e| format!("field `timestamp`: {e}"))?
    };
    Ok(UserMessage {
        message_id: m.message_id,
        timestamp,
        to_addr: m.to_addr,
        from_addr: m.from_addr,
        to_addr_type: m.to_addr_type,
        from_addr_type: m.from_addr_type,
        in_reply_to: m.in_reply_to,
        session_event: m.session_event.map(|s| match s {
            wit::SessionEvent::New => SessionEvent::New,
            wit::SessionEvent::Resume => SessionEvent::Resume,
            wit::SessionEvent::Close => SessionEvent::Close,
        }),
        content: m.content,
        transport_name: m.transport_name,
        transport_type: m.transport_type,
        group: m.group,
        provider: m.provider,
        transport_metadata: metadata("transport-metadata", &m.transport_metadata)?,
        helper_metadata: metadata("helper-metadata", &m.helper_metadata)?,
        routing_metadata: metadata("routing-metadata", &m.routing_metadata)?,
        extra: original.extra.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> UserMessage {
        let mut m = UserMessage::inbound("sms", "sms", "+27820000000", "1234", Some("hi".into()), None);
        m.extra.insert("future_field".into(), serde_json::json!(1));
        m
    }

    #[test]
    fn an_unchanged_round_trip_is_the_same_message() {
        let m = sample();
        assert_eq!(changed_user_message(&m, user_message(&m)), Ok(m));
    }

    #[test]
    fn changes_are_kept_and_bad_ones_name_the_field() {
        let m = sample();
        let mut w = user_message(&m);
        w.from_addr = Some("+27821111111".into());
        w.helper_metadata = r#"{"session":{"start":"x"}}"#.into();
        let back = changed_user_message(&m, w.clone()).unwrap();
        assert_eq!(back.from_addr.as_deref(), Some("+27821111111"));
        assert_eq!(back.helper_metadata["session"]["start"], "x");
        assert_eq!(back.extra, m.extra);

        let mut bad = w.clone();
        bad.helper_metadata = "[1]".into();
        assert!(changed_user_message(&m, bad).unwrap_err().contains("`helper-metadata` must be a JSON object"));
        let mut bad = w.clone();
        bad.timestamp = "yesterday".into();
        assert!(changed_user_message(&m, bad).unwrap_err().contains("`timestamp`"));
        let mut bad = w;
        bad.message_id = "f".repeat(32);
        assert!(changed_user_message(&m, bad).unwrap_err().contains("`message-id` may not be changed"));
    }
}
