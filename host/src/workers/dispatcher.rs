//! The dispatcher: a router plugin between transport connectors and application connectors
//! (Vumi's dispatcher worker).
//!
//! Its inputs are `<transport>.inbound` and `<transport>.event` for each of its transports and
//! `<app>.outbound` for each of its app connectors: it asks the router where each message goes,
//! and publishes it there. Outbound messages' origins (which app connector sent them) are
//! remembered with a TTL so the router can send their events home.
//!
//! A message reaches it two ways. Published in this process, it is routed inside `publish`
//! ([`Dispatcher::route_published`], called by the middleware bus), in the publisher's task: no
//! queue hop on the way in, which measured 13–23% more routed messages per second
//! (BENCHMARKS.md). Anything that does land on an input queue (a message set aside because a back
//! end failed, one published while a config reload switches dispatchers, or later one published
//! on RabbitMQ by another process) is consumed from it: each queue by its own task, one message
//! at a time. Either way one user's messages keep their order, except that a message set aside
//! can be overtaken by that user's next one.
//!
//! A router that errs, traps, runs out of time or memory, or names a connector it was not given
//! costs only that message: it goes to the failure path with the reason, and routing goes on.

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::FailureLog;
use super::events::Origins;
use crate::bus::{Bus, BusError, Consumer, Delivery, QueueKind, RoutingKey};
use crate::message::Message;
use crate::names::ConnectorName;
use crate::plugins::{PluginSlot, Target};

/// Which way a queue flows.
#[derive(Clone, Copy, Debug)]
enum Flow {
    Inbound,
    Outbound,
    Event,
}

impl Flow {
    /// The flow of one of a dispatcher's input queues (status queues are not routed).
    fn of(kind: QueueKind) -> Option<Self> {
        match kind {
            QueueKind::Inbound => Some(Flow::Inbound),
            QueueKind::Outbound => Some(Flow::Outbound),
            QueueKind::Event => Some(Flow::Event),
            QueueKind::Status => None,
        }
    }
}

/// A router plugin wired between connectors.
pub struct Dispatcher {
    router: Arc<PluginSlot>,
    bus: Arc<dyn Bus>,
    transports: Vec<ConnectorName>,
    apps: Vec<ConnectorName>,
    origins: Arc<Origins>,
    failures: Arc<FailureLog>,
    /// `apps` then `transports`: where an inbound message may go.
    both: Vec<ConnectorName>,
}

impl Dispatcher {
    /// A dispatcher running `router` between `transports` and `apps`, publishing what it routes
    /// on `bus`. In the host that is [`super::middleware::MiddlewareBus::queued`]: chains run,
    /// but a message routed into another dispatcher's input waits on its queue.
    pub fn new(
        router: Arc<PluginSlot>,
        bus: Arc<dyn Bus>,
        transports: Vec<ConnectorName>,
        apps: Vec<ConnectorName>,
        origins: Arc<Origins>,
        failures: Arc<FailureLog>,
    ) -> Self {
        let both = apps.iter().chain(&transports).cloned().collect();
        Self { router, bus, transports, apps, origins, failures, both }
    }

    /// The queues it routes from: its transports' `inbound` and `event`, its apps' `outbound`.
    pub fn inputs(&self) -> Vec<RoutingKey> {
        let from_transports = self.transports.iter().flat_map(|t| [RoutingKey::inbound(t), RoutingKey::event(t)]);
        from_transports.chain(self.apps.iter().map(RoutingKey::outbound)).collect()
    }

    /// Route `message`, just published on `key` (one of [`Dispatcher::inputs`]), right away.
    /// `Err` hands the message back when it could not be routed now for a reason that may pass (a
    /// state or bus back end failed): the caller then queues it on `key`, where the dispatcher's
    /// consumer retries it. A router's own failure is not such a reason: that message goes to the
    /// failure path, as it would from the queue.
    pub async fn route_published(&self, key: &RoutingKey, message: Message) -> Result<(), Message> {
        let Some(flow) = Flow::of(key.kind) else { return Err(message) };
        match self.route(flow, &key.connector, &message).await {
            Ok(()) => Ok(()),
            Err(Failure::Requeue(reason)) => {
                tracing::warn!(router = %self.router.name(), reason, "cannot route a message now; queueing it");
                Err(message)
            }
            Err(Failure::Fail { kind, reason }) => {
                self.failures.record(self.router.name(), key.connector.as_str(), kind, &reason, &message);
                Ok(())
            }
        }
    }

    /// Route what arrives on its input queues until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), BusError> {
        let mut queues: Vec<(Flow, ConnectorName, Box<dyn Consumer>)> = Vec::new();
        for key in self.inputs() {
            let Some(flow) = Flow::of(key.kind) else { continue };
            queues.push((flow, key.connector.clone(), self.bus.consume(&key, 64).await?));
        }
        tracing::info!(router = %self.router.name(), transports = ?self.transports, apps = ?self.apps, "dispatcher started");
        let mut tasks = JoinSet::new();
        for (flow, from, mut queue) in queues {
            let (me, stop) = (self.clone(), shutdown.clone());
            tasks.spawn(async move {
                loop {
                    let d = tokio::select! {
                        () = stop.cancelled() => break,
                        d = queue.next() => match d { Some(d) => d, None => break },
                    };
                    me.handle(flow, &from, d).await;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }

    async fn handle(&self, flow: Flow, from: &ConnectorName, delivery: Delivery) {
        match self.route(flow, from, &delivery.message).await {
            Ok(()) => delivery.ack(),
            Err(Failure::Requeue(reason)) => {
                tracing::warn!(router = %self.router.name(), reason, "requeueing a message");
                delivery.nack(true);
            }
            Err(Failure::Fail { kind, reason }) => {
                self.failures.record(self.router.name(), from.as_str(), kind, &reason, &delivery.message);
                delivery.ack();
            }
        }
    }

    async fn route(&self, flow: Flow, from: &ConnectorName, message: &Message) -> Result<(), Failure> {
        let fail = |f: crate::plugins::HandlerFailure| Failure::Fail { kind: f.kind(), reason: f.to_string() };
        let (targets, allowed) = match (flow, message) {
            // Inbound may also go straight out by another transport (transport-to-transport).
            (Flow::Inbound, Message::User(m)) => (self.router.current().route_inbound(m, from).await.map_err(fail)?, &self.both),
            (Flow::Outbound, Message::User(m)) => (self.router.current().route_outbound(m, from).await.map_err(fail)?, &self.transports),
            (Flow::Event, Message::Event(e)) => {
                let origin = self.origins.lookup(&e.user_message_id).await.map_err(|e| Failure::Requeue(e.to_string()))?;
                (self.router.current().route_event(e, from, origin.as_deref()).await.map_err(fail)?, &self.apps)
            }
            // Status messages and misfiled messages are not routed.
            _ => return Ok(()),
        };
        let resolved = resolve(&targets, allowed).map_err(|reason| Failure::Fail { kind: "unknown_connector", reason })?;
        if resolved.is_empty() {
            tracing::info!(router = %self.router.name(), from = %from, id = message.id(), ?flow, "router dropped a message (no targets)");
        }
        for (connector, endpoint) in resolved {
            let mut out = message.clone();
            if let (Some(ep), Message::User(m)) = (endpoint, &mut out) {
                m.set_endpoint(ep);
            }
            let to_transport = self.transports.contains(connector);
            let key = match flow {
                Flow::Inbound if !to_transport => RoutingKey::inbound(connector),
                Flow::Inbound | Flow::Outbound => {
                    if let Message::User(m) = &mut out {
                        m.transport_name = Some(connector.to_string());
                    }
                    // Remember who sent it before it can be acked, so its events find home
                    // (for a message forwarded between transports, nobody: its events stop here).
                    if matches!(flow, Flow::Outbound) {
                        self.origins.record(message.id(), from.as_str()).await.map_err(|e| Failure::Requeue(e.to_string()))?;
                    }
                    RoutingKey::outbound(connector)
                }
                Flow::Event => RoutingKey::event(connector),
            };
            self.bus.publish(&key, out).await.map_err(|e| Failure::Requeue(e.to_string()))?;
        }
        Ok(())
    }
}

enum Failure {
    /// A back end failed: try again later.
    Requeue(String),
    /// The router's decision cannot be carried out: the failure path.
    Fail { kind: &'static str, reason: String },
}

/// Each target's connector among `allowed`, with its endpoint; an unknown one is an error
/// naming it and what was allowed.
fn resolve<'a>(targets: &'a [Target], allowed: &'a [ConnectorName]) -> Result<Vec<(&'a ConnectorName, Option<&'a str>)>, String> {
    targets
        .iter()
        .map(|t| match allowed.iter().find(|c| c.as_str() == t.connector) {
            Some(c) => Ok((c, t.endpoint.as_deref())),
            None => Err(format!(
                "the router chose connector `{}`, which it was not given (allowed here: {})",
                t.connector,
                allowed.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
            )),
        })
        .collect()
}
