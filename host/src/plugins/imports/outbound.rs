//! `vumi:plugin/outbound`: `send-to`. Sends are collected in the call state, not published: the
//! worker publishes them only if the handler returns `ok`. (Replies are methods of the message:
//! `message.rs`.)

use crate::message::UserMessage;
use crate::plugins::bindings::outbound::Host;
use crate::plugins::bindings::types::SendError;

use super::HostState;

impl Host for HostState {
    fn send_to(
        &mut self,
        to_addr: String,
        content: Option<String>,
        endpoint: Option<String>,
    ) -> wasmtime::Result<Result<String, SendError>> {
        if let Err(e) = self.room_to_send() {
            return Ok(Err(e));
        }
        if to_addr.is_empty() {
            return Ok(Err(SendError::Invalid("to-addr: must not be empty".into())));
        }
        let endpoint = endpoint.unwrap_or_else(|| "default".to_owned());
        if !self.ctx.endpoints.contains(&endpoint) {
            return Ok(Err(SendError::UnknownEndpoint(endpoint)));
        }
        Ok(self.push_send(UserMessage::send_to(to_addr, content, &endpoint)))
    }
}
