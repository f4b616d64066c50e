//! Middleware chains (Vumi's middleware): steps that see every message published on a connector
//! in a direction, in order, and may change it or drop it.
//!
//! The chain wraps the bus ([`MiddlewareBus`]) rather than each worker, because every component
//! — transports, apps, routers, the send API — publishes through the bus: one place sees all of a
//! connector's traffic, and nothing that publishes needs to know a chain exists. A step that fails
//! sends the message to the failure path; a dropped outbound message is answered with a nack on
//! the connector's event queue, so whoever sent it hears why.
//!
//! For the same reason the dispatchers' routing happens here too: a message published on a
//! dispatcher's input (after that connector's chain) is routed at once, in the publisher's task,
//! and what the router chose is published in turn (through the target connector's chain). See
//! [`super::dispatcher`] for why, and for what still goes through the queue.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;

use crate::bus::{Bus, BusError, Consumer, QueueKind, RoutingKey};
use crate::message::{Event, Message};
use crate::plugins::{Direction, PluginSlot, Verdict};

use super::FailureLog;
use super::dispatcher::Dispatcher;
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

/// The dispatchers, by the input queue each routes from.
pub type Routes = HashMap<RoutingKey, Arc<Dispatcher>>;

/// A [`Bus`] that runs each published message through its connector's chain first, routes it if
/// a dispatcher takes that queue, and counts what is published per connector and queue (the
/// `vumi_messages_total` metric).
pub struct MiddlewareBus {
    inner: Arc<dyn Bus>,
    chains: ArcSwap<Chains>,
    routes: ArcSwap<Routes>,
    failures: Arc<FailureLog>,
    counters: RwLock<HashMap<RoutingKey, Counter>>,
}

impl MiddlewareBus {
    /// `inner`, with `chains` in front of its publishes.
    pub fn new(inner: Arc<dyn Bus>, chains: Chains, failures: Arc<FailureLog>) -> Self {
        Self {
            inner,
            chains: ArcSwap::from_pointee(chains),
            routes: ArcSwap::default(),
            failures,
            counters: RwLock::default(),
        }
    }

    /// Replace every chain at once (a config reload). A message already in a chain finishes the
    /// chain it started.
    pub fn set_chains(&self, chains: Chains) {
        self.chains.store(Arc::new(chains));
    }

    /// Replace every dispatcher routed at publish time (a config reload). With none, messages
    /// for dispatchers wait on their input queues.
    pub fn set_routes(&self, routes: Routes) {
        self.routes.store(Arc::new(routes));
    }

    /// This bus without routing at publish time (chains and counting only): what a dispatcher
    /// publishes through. A message one dispatcher routes into another's input then waits on
    /// that queue instead of being routed within the first one's publish, so a loop of
    /// dispatchers in a config cannot recurse without end.
    pub fn queued(self: &Arc<Self>) -> Arc<dyn Bus> {
        Arc::new(Queued(Arc::downgrade(self)))
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

impl MiddlewareBus {
    async fn publish_routed(&self, key: &RoutingKey, message: Message, route: bool) -> Result<(), BusError> {
        let chains = self.chains.load_full();
        let Some(chain) = chains.get(key) else {
            return self.deliver(key, message, route).await;
        };
        // Kept for the nack or the failure record: what the publisher sent, before any step.
        let original = message.clone();
        match run(chain, key, message).await {
            Outcome::Pass(m) => self.deliver(key, m, route).await,
            Outcome::Dropped { by, reason } => {
                tracing::info!(middleware = by, queue = %key, reason, "middleware dropped a message");
                if let (QueueKind::Outbound, Message::User(m)) = (key.kind, &original) {
                    let mut nack = Event::nack(&m.message_id, &format!("dropped by middleware `{by}`: {reason}"));
                    nack.transport_name = Some(key.connector.to_string());
                    nack.routing_metadata = m.routing_metadata.clone();
                    Box::pin(self.publish_routed(&RoutingKey::event(&key.connector), Message::Event(nack), route)).await?;
                }
                Ok(())
            }
            Outcome::Failed { by, kind, reason } => {
                self.failures.record(&by, key.connector.as_str(), kind, &format!("middleware on {key}: {reason}"), &original);
                Ok(())
            }
        }
    }

    /// After the chain: to the dispatcher that takes `key`, if any (and `route`), else (or if it
    /// hands the message back) onto the queue.
    async fn deliver(&self, key: &RoutingKey, message: Message, route: bool) -> Result<(), BusError> {
        self.count(key);
        let dispatcher = if route { self.routes.load().get(key).cloned() } else { None };
        let message = match dispatcher {
            Some(d) => match d.route_published(key, message).await {
                Ok(()) => return Ok(()),
                Err(set_aside) => set_aside,
            },
            None => message,
        };
        self.inner.publish(key, message).await
    }
}

#[async_trait]
impl Bus for MiddlewareBus {
    async fn publish(&self, key: &RoutingKey, message: Message) -> Result<(), BusError> {
        self.publish_routed(key, message, true).await
    }

    async fn consume(&self, key: &RoutingKey, prefetch: u16) -> Result<Box<dyn Consumer>, BusError> {
        self.inner.consume(key, prefetch).await
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

/// [`MiddlewareBus::queued`]. Holds the bus weakly: the bus holds the dispatchers that hold this.
struct Queued(Weak<MiddlewareBus>);

impl Queued {
    fn bus(&self) -> Result<Arc<MiddlewareBus>, BusError> {
        self.0.upgrade().ok_or(BusError::Closed)
    }
}

#[async_trait]
impl Bus for Queued {
    async fn publish(&self, key: &RoutingKey, message: Message) -> Result<(), BusError> {
        self.bus()?.publish_routed(key, message, false).await
    }

    async fn consume(&self, key: &RoutingKey, prefetch: u16) -> Result<Box<dyn Consumer>, BusError> {
        self.bus()?.consume(key, prefetch).await
    }

    async fn close(&self) {
        if let Ok(bus) = self.bus() {
            bus.close().await;
        }
    }
}
