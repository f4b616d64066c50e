//! Middleware chains (Vumi's middleware): steps that see every message published on a connector
//! in a direction, in order, and may change it or drop it.
//!
//! A chain belongs to the message path ([`super::flow::Flow`]) rather than to each worker,
//! because every component — transports, apps, routers, the send API — publishes through it:
//! one place sees all of a connector's traffic, and nothing that publishes needs to know a chain
//! exists. A step that fails sends the message to the failure path; a dropped outbound message is
//! answered with a nack on the connector's event queue, so whoever sent it hears why.

use std::collections::HashMap;
use std::sync::Arc;

use crate::bus::{QueueKind, RoutingKey};
use crate::message::Message;
use crate::plugins::{Direction, MiddlewareSlot, Verdict};

/// One step of a chain.
#[derive(Clone)]
pub enum Step {
    /// A `world middleware` plugin.
    Plugin(Arc<MiddlewareSlot>),
    /// The native logging middleware: logs each message (Vumi JSON) at `level`, changes nothing.
    Log {
        /// The middleware's name in config.
        name: String,
        /// The `tracing` level to log at.
        level: tracing::Level,
    },
}

impl Step {
    fn name(&self) -> &str {
        match self {
            Step::Plugin(p) => p.name(),
            Step::Log { name, .. } => name,
        }
    }
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The chains, by connector and queue. Only `inbound` and `outbound` take plugin steps; `event`
/// takes native ones (config validation sees to that).
pub type Chains = HashMap<RoutingKey, Vec<Step>>;

/// Where a message ended up after the chain.
pub(super) enum Outcome {
    Pass(Message),
    Dropped { by: String, reason: String },
    Failed { by: String, kind: &'static str, reason: String },
}

/// Run `message`, published on `key`, through `chain`.
pub(super) async fn run(chain: &[Step], key: &RoutingKey, mut message: Message) -> Outcome {
    for step in chain {
        match step {
            Step::Log { name, level } => log(name, *level, key, &message),
            Step::Plugin(plugin) => {
                let Message::User(m) = &message else { continue };
                let direction = match key.kind {
                    QueueKind::Inbound => Direction::Inbound,
                    QueueKind::Outbound => Direction::Outbound,
                    QueueKind::Event | QueueKind::Status => continue,
                };
                match plugin.current().process(m.clone(), direction, key.connector.as_str()).await {
                    Ok(Verdict::Pass(changed)) => message = Message::User(changed),
                    Ok(Verdict::Drop(reason)) => {
                        return Outcome::Dropped { by: plugin.name().to_owned(), reason };
                    }
                    Err(f) => {
                        return Outcome::Failed {
                            by: plugin.name().to_owned(),
                            kind: f.kind(),
                            reason: f.to_string(),
                        };
                    }
                }
            }
        }
    }
    Outcome::Pass(message)
}

fn log(name: &str, level: tracing::Level, key: &RoutingKey, message: &Message) {
    let json = message.to_json();
    let json = String::from_utf8_lossy(&json);
    // `tracing` levels are compile-time per call site, hence one arm each.
    macro_rules! at {
        ($lvl:expr) => {
            tracing::event!(target: "vumi::middleware::log", $lvl, middleware = name, queue = %key, json = %json, "message passed")
        };
    }
    match level {
        tracing::Level::TRACE => at!(tracing::Level::TRACE),
        tracing::Level::DEBUG => at!(tracing::Level::DEBUG),
        tracing::Level::INFO => at!(tracing::Level::INFO),
        tracing::Level::WARN => at!(tracing::Level::WARN),
        tracing::Level::ERROR => at!(tracing::Level::ERROR),
    }
}
