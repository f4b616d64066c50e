//! `vumi:plugin/message` and `vumi:plugin/edit`: the message resources.
//!
//! The host keeps the message; the guest holds a handle for one call and copies out each field
//! it reads. A message is shared (`Arc`) with the bus and the worker, so handing it to a plugin
//! copies nothing; a middleware's first edit copies it once (copy on write).

use std::sync::Arc;

use wasmtime::component::Resource;

use crate::message::{DeliveryStatus, Event, EventKind, Metadata, SessionEvent, UserMessage};
use crate::plugins::bindings::message::{self as wit, Metadata as Which};
use crate::plugins::bindings::types::{self, SendError};

use super::HostState;

/// The host side of a `user-message` handle: the message being handled.
pub struct MessageRef(pub Arc<UserMessage>);

/// The host side of an `event` handle.
pub struct EventRef(pub Arc<Event>);

type R<T> = wasmtime::Result<T>;

fn session(s: SessionEvent) -> types::SessionEvent {
    match s {
        SessionEvent::New => types::SessionEvent::New,
        SessionEvent::Resume => types::SessionEvent::Resume,
        SessionEvent::Close => types::SessionEvent::Close,
    }
}

fn pick<'a>(
    which: Which,
    transport: &'a Metadata,
    helper: &'a Metadata,
    routing: &'a Metadata,
) -> &'a Metadata {
    match which {
        Which::Transport => transport,
        Which::Helper => helper,
        Which::Routing => routing,
    }
}

fn json(m: &Metadata) -> String {
    if m.is_empty() { "{}".to_owned() } else { serde_json::to_string(m).unwrap_or_else(|_| "{}".to_owned()) }
}

fn get(m: &Metadata, key: &str) -> Option<String> {
    m.get(key).map(|v| v.to_string())
}

impl HostState {
    fn msg(&self, r: &Resource<MessageRef>) -> R<&UserMessage> {
        Ok(&self.table.get(r)?.0)
    }

    fn event_of(&self, r: &Resource<EventRef>) -> R<&Event> {
        Ok(&self.table.get(r)?.0)
    }

    /// A reply to the message behind `r`, held until the handler returns.
    fn send_reply(
        &mut self,
        r: &Resource<MessageRef>,
        content: Option<String>,
        close: bool,
        group: bool,
    ) -> R<Result<String, SendError>> {
        if let Err(e) = self.room_to_send() {
            return Ok(Err(e));
        }
        let m = self.msg(r)?;
        let reply = if group { m.reply_to_group(content, close) } else { m.reply(content, close) };
        Ok(self.push_send(reply))
    }

    /// Whether the handler may send one more message. Asked before the message is built: a
    /// plugin looping on refused sends costs no more than the refusals.
    pub(super) fn room_to_send(&self) -> Result<(), SendError> {
        if self.ctx.max_sends == 0 {
            return Err(SendError::NotPermitted);
        }
        if self.call.sends.len() >= self.ctx.max_sends as usize {
            return Err(SendError::TooManySends(self.ctx.max_sends));
        }
        Ok(())
    }

    /// Hold `msg` for publishing when the handler returns `ok`.
    pub(super) fn push_send(&mut self, mut msg: UserMessage) -> Result<String, SendError> {
        self.room_to_send()?;
        // Derived, not random: handling this input again (redelivered after a crash, or tried
        // again after a publish failed) sends identical copies, which transports drop.
        if let Some(parent) = &self.call.parent {
            msg.message_id = crate::message::derived_id(parent, &self.ctx.plugin, self.call.sends.len());
        }
        let id = msg.message_id.clone();
        self.call.sends.push(msg);
        Ok(id)
    }

    fn edit(&mut self, r: &Resource<MessageRef>) -> R<&mut UserMessage> {
        Ok(Arc::make_mut(&mut self.table.get_mut(r)?.0))
    }
}

impl wit::HostUserMessage for HostState {
    fn message_id(&mut self, r: Resource<MessageRef>) -> R<String> {
        Ok(self.msg(&r)?.message_id.clone())
    }
    fn timestamp(&mut self, r: Resource<MessageRef>) -> R<String> {
        Ok(self.msg(&r)?.timestamp.to_string())
    }
    fn to_addr(&mut self, r: Resource<MessageRef>) -> R<Option<String>> {
        Ok(self.msg(&r)?.to_addr.clone())
    }
    fn from_addr(&mut self, r: Resource<MessageRef>) -> R<Option<String>> {
        Ok(self.msg(&r)?.from_addr.clone())
    }
    fn to_addr_type(&mut self, r: Resource<MessageRef>) -> R<Option<String>> {
        Ok(self.msg(&r)?.to_addr_type.clone())
    }
    fn from_addr_type(&mut self, r: Resource<MessageRef>) -> R<Option<String>> {
        Ok(self.msg(&r)?.from_addr_type.clone())
    }
    fn in_reply_to(&mut self, r: Resource<MessageRef>) -> R<Option<String>> {
        Ok(self.msg(&r)?.in_reply_to.clone())
    }
    fn session_event(&mut self, r: Resource<MessageRef>) -> R<Option<types::SessionEvent>> {
        Ok(self.msg(&r)?.session_event.map(session))
    }
    fn content(&mut self, r: Resource<MessageRef>) -> R<Option<String>> {
        Ok(self.msg(&r)?.content.clone())
    }
    fn transport_name(&mut self, r: Resource<MessageRef>) -> R<Option<String>> {
        Ok(self.msg(&r)?.transport_name.clone())
    }
    fn transport_type(&mut self, r: Resource<MessageRef>) -> R<Option<String>> {
        Ok(self.msg(&r)?.transport_type.clone())
    }
    fn group(&mut self, r: Resource<MessageRef>) -> R<Option<String>> {
        Ok(self.msg(&r)?.group.clone())
    }
    fn provider(&mut self, r: Resource<MessageRef>) -> R<Option<String>> {
        Ok(self.msg(&r)?.provider.clone())
    }
    fn endpoint(&mut self, r: Resource<MessageRef>) -> R<String> {
        Ok(self.msg(&r)?.endpoint().to_owned())
    }
    fn metadata_json(&mut self, r: Resource<MessageRef>, which: Which) -> R<String> {
        let m = self.msg(&r)?;
        Ok(json(pick(which, &m.transport_metadata, &m.helper_metadata, &m.routing_metadata)))
    }
    fn metadata_get(&mut self, r: Resource<MessageRef>, which: Which, key: String) -> R<Option<String>> {
        let m = self.msg(&r)?;
        Ok(get(pick(which, &m.transport_metadata, &m.helper_metadata, &m.routing_metadata), &key))
    }
    fn reply(&mut self, r: Resource<MessageRef>, content: Option<String>) -> R<Result<String, SendError>> {
        self.send_reply(&r, content, false, false)
    }
    fn reply_and_close(
        &mut self,
        r: Resource<MessageRef>,
        content: Option<String>,
    ) -> R<Result<String, SendError>> {
        self.send_reply(&r, content, true, false)
    }
    fn reply_to_group(
        &mut self,
        r: Resource<MessageRef>,
        content: Option<String>,
        end_session: bool,
    ) -> R<Result<String, SendError>> {
        self.send_reply(&r, content, end_session, true)
    }
    fn drop(&mut self, r: Resource<MessageRef>) -> R<()> {
        // Handles are only lent (`borrow`); the host removes the entry after the call. A guest
        // cannot own one, so this runs only if the host lent an owned handle by mistake.
        self.table.delete(r)?;
        Ok(())
    }
}

impl wit::HostEvent for HostState {
    fn event_id(&mut self, r: Resource<EventRef>) -> R<String> {
        Ok(self.event_of(&r)?.event_id.clone())
    }
    fn timestamp(&mut self, r: Resource<EventRef>) -> R<String> {
        Ok(self.event_of(&r)?.timestamp.to_string())
    }
    fn user_message_id(&mut self, r: Resource<EventRef>) -> R<String> {
        Ok(self.event_of(&r)?.user_message_id.clone())
    }
    fn kind(&mut self, r: Resource<EventRef>) -> R<types::EventKind> {
        Ok(match &self.event_of(&r)?.kind {
            EventKind::Ack { sent_message_id } => types::EventKind::Ack(sent_message_id.clone()),
            EventKind::Nack { nack_reason } => types::EventKind::Nack(nack_reason.clone()),
            EventKind::DeliveryReport { delivery_status } => {
                types::EventKind::DeliveryReport(match delivery_status {
                    DeliveryStatus::Pending => types::DeliveryStatus::Pending,
                    DeliveryStatus::Failed => types::DeliveryStatus::Failed,
                    DeliveryStatus::Delivered => types::DeliveryStatus::Delivered,
                })
            }
        })
    }
    fn transport_name(&mut self, r: Resource<EventRef>) -> R<Option<String>> {
        Ok(self.event_of(&r)?.transport_name.clone())
    }
    fn metadata_json(&mut self, r: Resource<EventRef>, which: Which) -> R<String> {
        let e = self.event_of(&r)?;
        Ok(json(pick(which, &e.transport_metadata, &e.helper_metadata, &e.routing_metadata)))
    }
    fn metadata_get(&mut self, r: Resource<EventRef>, which: Which, key: String) -> R<Option<String>> {
        let e = self.event_of(&r)?;
        Ok(get(pick(which, &e.transport_metadata, &e.helper_metadata, &e.routing_metadata), &key))
    }
    fn drop(&mut self, r: Resource<EventRef>) -> R<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

impl wit::Host for HostState {}

impl crate::plugins::bindings::middleware::edit::Host for HostState {
    fn set_content(&mut self, r: Resource<MessageRef>, content: Option<String>) -> R<()> {
        self.edit(&r)?.content = content;
        Ok(())
    }
    fn set_to_addr(&mut self, r: Resource<MessageRef>, addr: Option<String>) -> R<()> {
        self.edit(&r)?.to_addr = addr;
        Ok(())
    }
    fn set_from_addr(&mut self, r: Resource<MessageRef>, addr: Option<String>) -> R<()> {
        self.edit(&r)?.from_addr = addr;
        Ok(())
    }
    fn set_metadata(
        &mut self,
        r: Resource<MessageRef>,
        which: Which,
        key: String,
        value_json: Option<String>,
    ) -> R<Result<(), String>> {
        let value = match value_json.as_deref().map(serde_json::from_str::<serde_json::Value>) {
            Some(Err(e)) => return Ok(Err(format!("the value for `{key}` is not valid JSON: {e}"))),
            Some(Ok(v)) => Some(v),
            None => None,
        };
        let m = self.edit(&r)?;
        let dict = match which {
            Which::Transport => &mut m.transport_metadata,
            Which::Helper => &mut m.helper_metadata,
            Which::Routing => &mut m.routing_metadata,
        };
        match value {
            Some(v) => {
                dict.insert(key, v);
            }
            None => {
                dict.remove(&key);
            }
        }
        Ok(Ok(()))
    }
}
