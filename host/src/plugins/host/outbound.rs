//! `vumi:plugin/outbound`: sends are collected in the call state, not published. The worker
//! publishes them only if the handler returns `ok`.

use crate::message::UserMessage;
use crate::plugins::bindings::outbound::{Host, SendError};

use super::HostState;

impl HostState {
    fn push(&mut self, msg: UserMessage) -> Result<String, SendError> {
        if self.call.sends.len() >= self.ctx.max_sends as usize {
            return Err(SendError::TooManySends(self.ctx.max_sends));
        }
        let id = msg.message_id.clone();
        self.call.sends.push(msg);
        Ok(id)
    }

    fn check_content(content: &Option<String>) -> Result<(), SendError> {
        // Transports write text to users; a NUL would end a C string at the SMSC or terminal.
        match content {
            Some(c) if c.contains('\0') => Err(SendError::Invalid("content: contains a NUL character".into())),
            _ => Ok(()),
        }
    }
}

impl Host for HostState {
    fn reply(&mut self, content: Option<String>, end_session: bool) -> Result<String, SendError> {
        Self::check_content(&content)?;
        let msg = self.call.current.as_ref().ok_or(SendError::NothingToReplyTo)?.reply(content, end_session);
        self.push(msg)
    }

    fn reply_to_group(&mut self, content: Option<String>, end_session: bool) -> Result<String, SendError> {
        Self::check_content(&content)?;
        let msg =
            self.call.current.as_ref().ok_or(SendError::NothingToReplyTo)?.reply_to_group(content, end_session);
        self.push(msg)
    }

    fn send_to(
        &mut self,
        to_addr: String,
        content: Option<String>,
        endpoint: Option<String>,
    ) -> Result<String, SendError> {
        Self::check_content(&content)?;
        if to_addr.is_empty() {
            return Err(SendError::Invalid("to-addr: must not be empty".into()));
        }
        let endpoint = endpoint.unwrap_or_else(|| "default".to_owned());
        if !self.ctx.endpoints.contains(&endpoint) {
            return Err(SendError::UnknownEndpoint(endpoint));
        }
        self.push(UserMessage::send_to(to_addr, content, &endpoint))
    }
}
