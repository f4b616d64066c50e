//! Campaign applications (`world application`): handle user messages and the events about what
//! the app sent. Implement [`Application`], export it with [`crate::export_app!`].

use crate::wit::vumi::plugin::{message as raw, outbound, types};
use crate::{Event, EventKind, Message, Result, SendError, SessionEvent};

/// A campaign application. The host calls one method per message, dispatching as Vumi's
/// application workers did: by session event for user messages, by event type for events.
///
/// `C` is the app's config type: with `export_app!(MyApp, config = C)` every method receives
/// the `[apps.<name>.config]` table parsed into `C` (once per instance); without `config =`,
/// `C` is `()` and nothing is parsed.
///
/// Methods take no `self`: an instance may be fresh for every message, or reused by many users.
/// Keep anything that must last in [`crate::kv`].
pub trait Application<C = ()> {
    /// A session starts (`session_event` `new`; a USSD dial-in, a telnet connect). By default,
    /// handled like any other message.
    fn new_session(msg: &Message, config: &C) -> Result<()> {
        Self::consume_user_message(msg, config)
    }

    /// A message within a session (`resume`) or outside one (a plain SMS).
    fn consume_user_message(msg: &Message, config: &C) -> Result<()>;

    /// The user ended the session or it timed out (`close`). Nothing can be sent back to a closed
    /// session; use this to clean up state. By default, does nothing.
    fn close_session(_msg: &Message, _config: &C) -> Result<()> {
        Ok(())
    }

    /// A message this app sent was accepted by the transport.
    fn consume_ack(_event: &Event, _config: &C) -> Result<()> {
        Ok(())
    }

    /// A message this app sent could not be sent.
    fn consume_nack(_event: &Event, _config: &C) -> Result<()> {
        Ok(())
    }

    /// The network reported on the delivery of a message this app sent.
    fn consume_delivery_report(_event: &Event, _config: &C) -> Result<()> {
        Ok(())
    }
}

/// Start a new conversation: send `content` to `to_addr` through `endpoint` (`None`: the app's
/// default endpoint). The host fills in `from_addr` and the transport by routing. Returns the new
/// message's id. Like replies, it is published only if the handler returns `Ok`.
pub fn send_to(
    to_addr: &str,
    content: &str,
    endpoint: Option<&str>,
) -> std::result::Result<String, SendError> {
    Ok(outbound::send_to(to_addr, Some(content), endpoint)?)
}

#[doc(hidden)]
pub fn __handle_user_message<A: Application<C>, C>(
    raw: &raw::UserMessage,
    config: Result<&C>,
) -> std::result::Result<(), types::HandlerError> {
    crate::error::raw_result(config.and_then(|config| {
        let msg = Message::__from_raw(raw);
        match msg.session_event() {
            Some(SessionEvent::New) => A::new_session(&msg, config),
            Some(SessionEvent::Close) => A::close_session(&msg, config),
            _ => A::consume_user_message(&msg, config),
        }
    }))
}

#[doc(hidden)]
pub fn __handle_event<A: Application<C>, C>(
    raw: &raw::Event,
    config: Result<&C>,
) -> std::result::Result<(), types::HandlerError> {
    crate::error::raw_result(config.and_then(|config| {
        let event = Event::__from_raw(raw);
        match event.kind() {
            EventKind::Ack(_) => A::consume_ack(&event, config),
            EventKind::Nack(_) => A::consume_nack(&event, config),
            EventKind::DeliveryReport(_) => A::consume_delivery_report(&event, config),
        }
    }))
}
