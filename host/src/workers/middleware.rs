//! Middleware chains (Vumi's middleware): steps that see every message published on a connector
//! in a direction, in order, and may change it or drop it.
//!
//! The chain wraps the bus ([`MiddlewareBus`]) rather than each worker, because every component
//! — transports, apps, routers, the send API — publishes through the bus: one place sees all of a
//! connector's traffic, and nothing that publishes needs to know a chain exists. A step that fails
//! sends the message to the failure path; a dropped outbound message is answered with a nack on
//! the connector's event queue, so whoever sent it hears why.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;

use crate::bus::{Bus, BusError, Consumer, QueueKind, RoutingKey};
use crate::message::{Event, Message};
use crate::plugins::{Direction, PluginSlot, Verdict};

use super::FailureLog;
use crate::telemetry::metrics::metrics;

/// One step of a chain.
#[derive(Clone)]
pub enum Step {
    /// A `world middleware` plugin.
    Plugin(Arc<PluginSlot>),
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

/// A [`Bus`] that runs each published message through its connector's chain first, and counts
/// what is published per connector and queue (the `vumi_messages_total` metric).
pub struct MiddlewareBus {
    inner: Arc<dyn Bus>,
    chains: ArcSwap<Chains>,
    failures: Arc<FailureLog>,
    counters: RwLock<HashMap<RoutingKey, Counter>>,
}

impl MiddlewareBus {
    /// `inner`, with `chains` in front of its publishes.
    pub fn new(inner: Arc<dyn Bus>, chains: Chains, failures: Arc<FailureLog>) -> Self {
        Self { inner, chains: ArcSwap::from_pointee(chains), failures, counters: RwLock::default() }
    }

    /// Replace every chain at once (a config reload). A message already in a chain finishes the
    /// chain it started.
    pub fn set_chains(&self, chains: Chains) {
        self.chains.store(Arc::new(chains));
    }

    fn count(&self, key: &RoutingKey) {
        if let Some(c) = self.counters.read().unwrap_or_else(|p| p.into_inner()).get(key) {
            c.inc();
            return;
        }
        let c = metrics().messages(key.connector.as_str(), key.kind.as_str());
        c.inc();
        self.counters.write().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), c);
    }
}

/// Where a message ended up after the chain.
#[allow(clippy::large_enum_variant)] // moved once per message: a Box would only add an allocation
enum Outcome {
    Pass(Message),
    Dropped { by: String, reason: String },
    Failed { by: String, kind: &'static str, reason: String },
}

async fn run(chain: &[Step], key: &RoutingKey, mut message: Message) -> Outcome {
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
                match plugin.current().process(m, direction, key.connector.as_str()).await {
                    Ok(Verdict::Pass(changed)) => message = Message::User(changed),
                    Ok(Verdict::Drop(reason)) => return Outcome::Dropped { by: plugin.name().to_owned(), reason },
                    Err(f) => return Outcome::Failed { by: plugin.name().to_owned(), kind: f.kind(), reason: f.to_string() },
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

#[async_trait]
impl Bus for MiddlewareBus {
    async fn publish(&self, key: &RoutingKey, message: Message) -> Result<(), BusError> {
        let chains = self.chains.load_full();
        let Some(chain) = chains.get(key) else {
            self.count(key);
            return self.inner.publish(key, message).await;
        };
        // Kept for the nack or the failure record: what the publisher sent, before any step.
        let original = message.clone();
        match run(chain, key, message).await {
            Outcome::Pass(m) => {
                self.count(key);
                self.inner.publish(key, m).await
            }
            Outcome::Dropped { by, reason } => {
                tracing::info!(middleware = by, queue = %key, reason, "middleware dropped a message");
                if let (QueueKind::Outbound, Message::User(m)) = (key.kind, &original) {
                    let mut nack = Event::nack(&m.message_id, &format!("dropped by middleware `{by}`: {reason}"));
                    nack.transport_name = Some(key.connector.to_string());
                    nack.routing_metadata = m.routing_metadata.clone();
                    self.publish(&RoutingKey::event(&key.connector), Message::Event(nack)).await?;
                }
                Ok(())
            }
            Outcome::Failed { by, kind, reason } => {
                self.failures.record(&by, key.connector.as_str(), kind, &format!("middleware on {key}: {reason}"), &original);
                Ok(())
            }
        }
    }

    async fn consume(&self, key: &RoutingKey, prefetch: u16) -> Result<Box<dyn Consumer>, BusError> {
        self.inner.consume(key, prefetch).await
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}
