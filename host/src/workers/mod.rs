//! Workers: consume a connector's queues, hand each message to a handler (a plugin), publish what
//! it sent, then settle the input (`settle`: ack, the retry path or the failure path). Below the
//! admin API and the supervisor, the only module that sees both the bus and the plugins. Also the
//! message path itself (`flow`: middleware chains and dispatch at publish), the other app-side
//! components (send-API channels, their callbacks, `events`, which hands each event to the
//! component that sent its message, `statuses`), and the failure path.

mod app;
pub mod callbacks;
pub mod dispatcher;
pub mod events;
mod failures;
pub mod flow;
pub mod http_api;
pub mod middleware;
mod settle;
pub mod statuses;

use std::sync::Arc;

use async_trait::async_trait;

use crate::message::{Event, UserMessage};
use crate::plugins::{AppPlugin, AppSlot, HandlerFailure};

pub use app::{AppWorker, AppWorkerParts, WorkerError};
pub use failures::{FailureFilter, FailureLog, FailureRecord, Replay};

/// What an app worker runs messages through. A WASM application in production; benchmarks also
/// run native Rust handlers through the same worker to measure what the sandbox costs.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Name for logs and failure records.
    fn name(&self) -> &str;
    /// Handle a user message; return the messages to publish.
    async fn handle_user_message(&self, msg: Arc<UserMessage>) -> Result<Vec<UserMessage>, HandlerFailure>;
    /// Handle an event; return the messages to publish.
    async fn handle_event(&self, event: Arc<Event>) -> Result<Vec<UserMessage>, HandlerFailure>;
}

#[async_trait]
impl Handler for AppPlugin {
    fn name(&self) -> &str {
        AppPlugin::name(self)
    }
    async fn handle_user_message(&self, msg: Arc<UserMessage>) -> Result<Vec<UserMessage>, HandlerFailure> {
        AppPlugin::handle_user_message(self, msg).await
    }
    async fn handle_event(&self, event: Arc<Event>) -> Result<Vec<UserMessage>, HandlerFailure> {
        AppPlugin::handle_event(self, event).await
    }
}

/// A slot serves each message with the version current when the message arrives; a reload
/// swaps the version between messages, never under one.
#[async_trait]
impl Handler for AppSlot {
    fn name(&self) -> &str {
        AppSlot::name(self)
    }
    async fn handle_user_message(&self, msg: Arc<UserMessage>) -> Result<Vec<UserMessage>, HandlerFailure> {
        self.current().handle_user_message(msg).await
    }
    async fn handle_event(&self, event: Arc<Event>) -> Result<Vec<UserMessage>, HandlerFailure> {
        self.current().handle_event(event).await
    }
}
