//! Host messages into the WIT records a plugin receives. Only this direction exists: plugins
//! send through `outbound`, whose messages the host builds itself (so Vumi's reply rules live in
//! one place, `message::UserMessage::reply`).

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
