//! Workers: consume a connector's queues, hand each message to a handler (a plugin), publish what
//! it sent, then ack. The only module that sees both the bus and the plugins. Also the other
//! app-side components: send-API channels, their callbacks, the event router that hands each
//! event to the component that sent its message, and the middleware chains in front of the bus.

mod app;
pub mod callbacks;
pub mod dispatcher;
pub mod events;
mod failures;
pub mod http_api;
pub mod middleware;

use std::sync::Arc;

use async_trait::async_trait;

use crate::message::{Event, UserMessage};
use crate::plugins::{HandlerFailure, Plugin, PluginSlot};

pub use app::{AppWorker, WorkerError};
pub use failures::{FailureLog, FailureRecord};

/// What an app worker runs messages through. A WASM [`Plugin`] in production; benchmarks also
/// run native Rust handlers through the same worker to measure what the sandbox costs.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Name for logs and failure records.
    fn name(&self) -> &str;
    /// Handle a user message; return the messages to publish.
    async fn handle_user_message(&self, msg: Arc<UserMessage>) -> Result<Vec<UserMessage>, HandlerFailure>;
    /// Handle an event; return the messages to publish.
    async fn handle_event(&self, event: &Event) -> Result<Vec<UserMessage>, HandlerFailure>;
}

#[async_trait]
impl Handler for Plugin {
    fn name(&self) -> &str {
        Plugin::name(self)
    }
    async fn handle_user_message(&self, msg: Arc<UserMessage>) -> Result<Vec<UserMessage>, HandlerFailure> {
        Plugin::handle_user_message(self, msg).await
    }
    async fn handle_event(&self, event: &Event) -> Result<Vec<UserMessage>, HandlerFailure> {
        Plugin::handle_event(self, event).await
    }
}

/// A slot serves each message with the version current when the message arrives; a reload
/// swaps the version between messages, never under one.
#[async_trait]
impl Handler for PluginSlot {
    fn name(&self) -> &str {
        PluginSlot::name(self)
    }
    async fn handle_user_message(&self, msg: Arc<UserMessage>) -> Result<Vec<UserMessage>, HandlerFailure> {
        self.current().handle_user_message(msg).await
    }
    async fn handle_event(&self, event: &Event) -> Result<Vec<UserMessage>, HandlerFailure> {
        self.current().handle_event(event).await
    }
}
