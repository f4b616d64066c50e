//! The message path inside a process: what happens between a component's `publish` and a queue.
//!
//! ```text
//! publish(key, m) ─▶ chain(key) ─▶ dispatcher owns key? ── no ──▶ enqueue(key)
//!                                        │ yes
//!                                        ▼
//!                          router decides (+ origin record)
//!                                        │ for each target
//!                                        ▼
//!                              chain(target) ─▶ enqueue(target)
//! ```
//!
//! [`Flow::publish`] is that picture as a loop over a work list, not a recursion: a message is
//! routed by at most the one dispatcher that owns the key it was published on; what a
//! dispatcher routes into another dispatcher's input waits on that queue (so a loop of
//! dispatchers in a config cannot recurse), and the other dispatcher's queue consumer routes it.
//! That consumer ([`Flow::serve`]) also takes whatever other processes publish on a dispatcher's
//! input, and what could not be routed at publish because a back end was down; it calls the same
//! routing step.
//!
//! Routing at publish, in the publisher's task, saves two queue hops per routed message
//! (13–23% more routed messages per second, BENCHMARKS.md). Transports, app lanes and channels
//! publish through a [`Publish`] handle to the flow and never see the bus, the chains or a
//! plugin: transports run no plugin code except through here.
//!
//! The flow also counts what is published per connector and queue (`vumi_messages_total`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::FailureLog;
use super::dispatcher::{Dispatcher, Failure};
use super::middleware::{Chains, Outcome};
use super::settle::{Trouble, settle};
use crate::bus::{Bus, BusError, Delivery, Publish, QueueKind, RoutingKey};
use crate::message::{Event, Message};
use crate::retry::{Retry, RetryPolicy};
use crate::telemetry::metrics::metrics;

/// The dispatchers, by the input queue each routes from.
pub type Dispatchers = HashMap<RoutingKey, Arc<Dispatcher>>;

/// The message path: middleware chains, dispatch at publish, and the bus's queues.
pub struct Flow {
    bus: Arc<dyn Bus>,
    chains: ArcSwap<Chains>,
    dispatchers: ArcSwap<Dispatchers>,
    failures: Arc<FailureLog>,
    counters: RwLock<HashMap<RoutingKey, Counter>>,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow").finish_non_exhaustive()
    }
}

/// One step of the work list.
struct Hop {
    key: RoutingKey,
    message: Message,
    /// Whether the dispatcher that owns `key` (if any) routes it here. Targets of a dispatch
    /// are not routed again: they are enqueued.
    route: bool,
}

impl Flow {
    /// A flow onto `bus`, with no chains and no dispatchers yet.
    pub fn new(bus: Arc<dyn Bus>, failures: Arc<FailureLog>) -> Self {
        Self {
            bus,
            chains: ArcSwap::default(),
            dispatchers: ArcSwap::default(),
            failures,
            counters: RwLock::default(),
        }
    }

    /// Replace every chain at once (a config reload). A message already in a chain finishes the
    /// chain it started.
    pub fn set_chains(&self, chains: Chains) {
        self.chains.store(Arc::new(chains));
    }

    /// Replace every dispatcher routed at publish (a config reload). With none, messages for
    /// dispatchers wait on their input queues.
    pub fn set_dispatchers(&self, dispatchers: Dispatchers) {
        self.dispatchers.store(Arc::new(dispatchers));
    }

    /// Publish `message` on `key`: chain, dispatch, enqueue (see the module doc).
    pub async fn publish(&self, key: &RoutingKey, message: Message) -> Result<(), BusError> {
        self.run(VecDeque::from([Hop { key: key.clone(), message, route: true }])).await
    }

    /// The loop: each hop through its chain, then to its dispatcher (adding the targets to the
    /// work list) or onto its queue.
    async fn run(&self, mut work: VecDeque<Hop>) -> Result<(), BusError> {
        while let Some(hop) = work.pop_front() {
            let Some(message) = self.chain(&hop, &mut work).await else { continue };
            self.count(&hop.key);
            let dispatcher = if hop.route { self.dispatchers.load().get(&hop.key).cloned() } else { None };
            let Some(d) = dispatcher else {
                self.bus.publish(&hop.key, message).await?;
                continue;
            };
            match d.targets(&hop.key, &message).await {
                Ok(targets) => {
                    work.extend(targets.into_iter().map(|(key, message)| Hop { key, message, route: false }))
                }
                // The consumer of the dispatcher's queue retries it, with a backoff.
                Err(Failure::Requeue(reason)) => {
                    tracing::warn!(router = d.name(), queue = %hop.key, reason, "cannot route a message now; queueing it for a retry");
                    self.bus.publish(&hop.key, message).await?;
                }
                Err(Failure::Fail { kind, reason }) => {
                    self.failures.record(d.name(), &hop.key, kind, &reason, &message).await;
                }
            }
        }
        Ok(())
    }

    /// `hop`'s message after its key's chain, or `None` if a step dropped it (an outbound one is
    /// answered with a nack, added to `work`) or failed (the failure path).
    async fn chain(&self, hop: &Hop, work: &mut VecDeque<Hop>) -> Option<Message> {
        let chains = self.chains.load();
        let Some(chain) = chains.get(&hop.key) else { return Some(hop.message.clone()) };
        match super::middleware::run(chain, &hop.key, hop.message.clone()).await {
            Outcome::Pass(m) => Some(m),
            Outcome::Dropped { by, reason } => {
                tracing::info!(middleware = by, queue = %hop.key, reason, "middleware dropped a message");
                if let (QueueKind::Outbound, Message::User(m)) = (hop.key.kind, &hop.message) {
                    let mut nack =
                        Event::nack(&m.message_id, &format!("dropped by middleware `{by}`: {reason}"));
                    nack.transport_name = Some(hop.key.connector.to_string());
                    nack.routing_metadata = m.routing_metadata.clone();
                    work.push_back(Hop {
                        key: RoutingKey::event(&hop.key.connector),
                        message: nack.into(),
                        route: true,
                    });
                }
                None
            }
            Outcome::Failed { by, kind, reason } => {
                let reason = format!("middleware on {}: {reason}", hop.key);
                self.failures.record(&by, &hop.key, kind, &reason, &hop.message).await;
                None
            }
        }
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

    /// Consume `dispatcher`'s input queues until `shutdown`: each queue by its own task, one
    /// message at a time (so one user's messages keep their order), routed by the same step as at
    /// publish. A message that cannot be routed because a back end is down is retried in place
    /// with a backoff; after `retry.max_attempts` it is set aside on the retry path's delay
    /// tiers (`settle`), and past the last one it is a temporary failure.
    pub async fn serve(
        self: Arc<Self>,
        dispatcher: Arc<Dispatcher>,
        retry: RetryPolicy,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        let mut consumers = Vec::new();
        for key in dispatcher.inputs() {
            consumers.push((key.clone(), self.bus.consume(&key, 64).await?));
        }
        tracing::info!(router = dispatcher.name(), inputs = consumers.len(), "dispatcher started");
        let mut tasks = JoinSet::new();
        let retry = Arc::new(Retry::new(&retry, format!("router:{}", dispatcher.name())));
        for (key, mut queue) in consumers {
            let (flow, d, stop, retry) = (self.clone(), dispatcher.clone(), shutdown.clone(), retry.clone());
            tasks.spawn(async move {
                loop {
                    let delivery = tokio::select! {
                        () = stop.cancelled() => break,
                        d = queue.next() => match d { Some(d) => d, None => break },
                    };
                    // A message taken is finished (as a reload expects); only a wait between
                    // tries gives way to a stop.
                    flow.route_delivery(&d, &key, delivery, &retry, &stop).await;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }

    async fn route_delivery(
        &self,
        d: &Dispatcher,
        key: &RoutingKey,
        delivery: Delivery,
        retry: &Retry,
        stop: &CancellationToken,
    ) {
        let outcome = retry
            .run("route a message", stop, || async {
                match d.targets(key, &delivery.message).await {
                    Ok(targets) => {
                        let hops =
                            targets.into_iter().map(|(key, message)| Hop { key, message, route: false });
                        self.run(hops.collect())
                            .await
                            .map_err(|e| Trouble::again("unavailable", format!("cannot route: {e}")))
                    }
                    Err(Failure::Requeue(reason)) => {
                        Err(Trouble::again("unavailable", format!("cannot route: {reason}")))
                    }
                    Err(Failure::Fail { kind, reason }) => Err(Trouble::fail(kind, reason)),
                }
            })
            .await;
        settle(&self.failures, d.name(), key, delivery, outcome).await;
    }
}

/// The flow as intake sees it: what transports and send-API channels publish through. A
/// graceful stop closes it first, so new user messages are refused (an HTTP input answers `503`
/// with `Retry-After`) while what is already queued is delivered; events about deliveries (acks,
/// delivery reports) still pass, and so does everything published inside the host.
pub struct Intake {
    flow: Arc<Flow>,
    closed: std::sync::atomic::AtomicBool,
}

impl Intake {
    /// Intake into `flow`, open.
    pub fn new(flow: Arc<Flow>) -> Self {
        Self { flow, closed: std::sync::atomic::AtomicBool::new(false) }
    }

    /// Refuse new user messages from now on.
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait]
impl Publish for Intake {
    async fn publish(&self, key: &RoutingKey, message: Message) -> Result<(), BusError> {
        let new_work = matches!(key.kind, QueueKind::Inbound | QueueKind::Outbound);
        if new_work && self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(BusError::Unavailable("the host is stopping: it takes no new messages".into()));
        }
        self.flow.publish(key, message).await
    }
}

#[async_trait]
impl Publish for Flow {
    async fn publish(&self, key: &RoutingKey, message: Message) -> Result<(), BusError> {
        Flow::publish(self, key, message).await
    }
}
