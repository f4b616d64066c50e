//! The app worker: a connector's inbound and event queues → a handler → its outbound queue.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::events::{Origins, RoutedEvents};
use super::failures::input_queue;
use super::settle::{Trouble, settle};
use super::{FailureLog, Handler};
use crate::bus::{Bus, BusError, Consumer, Delivery, Publish, RoutingKey};
use crate::message::Message;
use crate::names::ConnectorName;
use crate::retry::{Retry, RetryPolicy};
use crate::state::{Sequencer, Take};
use crate::tenants::Rates;
use prometheus_client::metrics::counter::Counter;

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Its queues could not be consumed.
    #[error("app `{app}` cannot consume `{key}`: {source}")]
    Consume {
        /// The app.
        app: String,
        /// The routing key.
        key: String,
        /// The bus error.
        source: BusError,
    },
}

/// Runs one handler over one connector.
///
/// Messages are spread over `concurrency` lanes by sender (`from_addr`), so one user's messages
/// are handled one at a time and in order, as a dialogue needs, while different users proceed in
/// parallel. A lane that must retry a message (the handler said `retry-later`, or a back end is
/// down) waits in place with a backoff, so the user's later messages stay behind it; after its
/// tries in place the message is set aside on the retry path's delay tiers and they go on.
pub struct AppWorker {
    handler: Arc<dyn Handler>,
    /// Where the worker's queues are consumed from.
    bus: Arc<dyn Bus>,
    /// Where the lanes publish what the handler sent.
    publish: Arc<dyn Publish>,
    connector: ConnectorName,
    failures: Arc<FailureLog>,
    concurrency: usize,
    retry: RetryPolicy,
    routed: Option<(RoutedEvents, Arc<Origins>)>,
    sequencer: Option<Arc<dyn Sequencer>>,
    tenant: Option<TenantSide>,
}

/// What an app worker is made of.
pub struct AppWorkerParts {
    /// The app.
    pub handler: Arc<dyn Handler>,
    /// Where its queues are consumed from.
    pub bus: Arc<dyn Bus>,
    /// Where what it sends is published (in the host: the message path).
    pub publish: Arc<dyn Publish>,
    /// Its connector.
    pub connector: ConnectorName,
    /// The failure path.
    pub failures: Arc<FailureLog>,
    /// Lanes.
    pub concurrency: usize,
    /// How a lane waits before retrying a message.
    pub retry: RetryPolicy,
    /// Per-user turns across hosts (`ordering = "user"` on a shared bus); `None`: the lanes
    /// alone keep each user's order, within this host.
    pub sequencer: Option<Arc<dyn Sequencer>>,
    /// The rates of the app's tenant (`None`: the operator's app, unlimited).
    pub rates: Option<Arc<Rates>>,
}

/// A tenant's app: its buckets and the counters that show them.
#[derive(Clone)]
struct TenantSide {
    tenant: String,
    rates: Arc<Rates>,
    taken: Counter,
    sent: Counter,
    waited: Counter,
    nacked: Counter,
}

impl AppWorker {
    /// A worker from its parts.
    pub fn new(p: AppWorkerParts) -> Self {
        let tenant = p.rates.map(|rates| {
            let tenant = crate::names::tenant_of(p.handler.name()).unwrap_or_default().to_owned();
            let m = crate::telemetry::metrics::metrics();
            TenantSide {
                taken: m.tenant_messages(&tenant, "inbound"),
                sent: m.tenant_messages(&tenant, "outbound"),
                waited: m.tenant_limited(&tenant, "inbound_per_sec"),
                nacked: m.tenant_limited(&tenant, "outbound_per_sec"),
                tenant,
                rates,
            }
        });
        Self {
            handler: p.handler,
            bus: p.bus,
            publish: p.publish,
            connector: p.connector,
            failures: p.failures,
            concurrency: p.concurrency.max(1),
            retry: p.retry,
            routed: None,
            sequencer: p.sequencer,
            tenant,
        }
    }

    /// For a connector shared with other components: take events from the connector's
    /// [`EventsByOrigin`](super::events::EventsByOrigin) instead of its queue, and record this app as
    /// the origin of everything it sends.
    pub fn with_routed_events(mut self, events: RoutedEvents, origins: Arc<Origins>) -> Self {
        self.routed = Some((events, origins));
        self
    }

    /// Consume until `shutdown`; messages already taken are finished first.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        let app = self.handler.name().to_owned();
        // Enough outstanding deliveries to keep every lane busy while one message per lane is in
        // a handler.
        let prefetch = u16::try_from(self.concurrency * 8).unwrap_or(u16::MAX);
        let consume = |key: RoutingKey| {
            let bus = self.bus.clone();
            let app = app.clone();
            async move {
                bus.consume(&key, prefetch).await.map_err(|source| WorkerError::Consume {
                    app,
                    key: key.to_string(),
                    source,
                })
            }
        };
        let mut inbound = consume(RoutingKey::inbound(&self.connector)).await?;
        let (mut events, origins): (Box<dyn Consumer>, _) = match self.routed {
            Some((routed, origins)) => (Box::new(routed), Some(origins)),
            None => (consume(RoutingKey::event(&self.connector)).await?, None),
        };

        let leases = self.sequencer.clone().map(Leases::start);
        // Ending a turn: a few quick tries; if the store stays down the lease ends it instead.
        let release_policy =
            RetryPolicy { initial_ms: 100, max_ms: 100, max_attempts: 3, tiers_ms: Vec::new() };
        let shared = Arc::new(Lane {
            retry: Retry::new(&self.retry, format!("app:{app}")),
            release: Retry::new(&release_policy, format!("app:{app}")),
            handler: self.handler.clone(),
            publish: self.publish.clone(),
            outbound: RoutingKey::outbound(&self.connector),
            connector: self.connector.clone(),
            failures: self.failures.clone(),
            origins,
            leases: leases.clone(),
            tenant: self.tenant.clone(),
        });
        let mut lanes = Vec::with_capacity(self.concurrency);
        let mut tasks = Vec::with_capacity(self.concurrency);
        for _ in 0..self.concurrency {
            // Unbounded is safe: the prefetch window bounds what is in flight.
            let (tx, rx) = mpsc::unbounded_channel();
            let again = tx.downgrade();
            lanes.push(tx);
            tasks.push(tokio::spawn(shared.clone().run(rx, again, shutdown.clone())));
        }
        tracing::info!(app, connector = %self.connector, lanes = self.concurrency, "app worker started");

        let taker = leases.map(|l| spawn_taker(l, self.connector.clone(), lanes.clone(), shutdown.clone()));
        loop {
            let delivery = tokio::select! {
                () = shutdown.cancelled() => break,
                d = inbound.next() => d,
                d = events.next() => d,
            };
            let Some(delivery) = delivery else { break };
            if let Some((take, _)) = &taker
                && matches!(delivery.message, Message::User(_))
            {
                if let Err(mpsc::error::SendError(d)) = take.send(delivery) {
                    d.nack(true);
                    break;
                }
                continue;
            }
            let lane = lane_of(&delivery.message, lanes.len());
            if let Err(mpsc::error::SendError(item)) = lanes[lane].send(LaneItem::Fresh(delivery)) {
                // The lane task is gone (it panicked); give the message back rather than lose it.
                item.into_delivery().nack(true);
                break;
            }
        }
        drop(lanes);
        if let Some((take, task)) = taker {
            drop(take);
            let _ = task.await;
        }
        for t in tasks {
            let _ = t.await;
        }
        tracing::info!(app, connector = %self.connector, "app worker stopped");
        Ok(())
    }
}

/// The user line of a user message (`<connector>|<from_addr>`), if it has a sender.
fn line_of(connector: &str, message: &Message) -> Option<(String, String)> {
    match message {
        Message::User(m) => {
            m.from_addr.as_deref().map(|from| (format!("{connector}|{from}"), m.message_id.clone()))
        }
        _ => None,
    }
}

/// Wait, off the lane, until `held`'s ticket is its user's turn, then hand the delivery to the
/// lane. The ticket is held (its lease refreshed) all along, from the moment it was taken.
fn wait_turn(
    delivery: Delivery,
    held: (Arc<dyn Sequencer>, Held),
    tx: mpsc::UnboundedSender<LaneItem>,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut wait = std::time::Duration::from_millis(2);
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                // Dropped unsettled: back on the queue; its lease runs out.
                () = stop.cancelled() => return,
            }
            if let Ok(true) = held.0.turn(&held.1.user, held.1.ticket).await {
                if let Err(mpsc::error::SendError(item)) = tx.send(LaneItem::Turn(delivery, held)) {
                    item.into_delivery().nack(true);
                }
                return;
            }
            wait = (wait * 2).min(std::time::Duration::from_millis(50));
        }
    });
}

/// The tickets a worker holds, their leases refreshed together by one task (one round trip
/// for all of them) from the moment each turn comes until its message is done.
pub(crate) struct Leases {
    seq: Arc<dyn Sequencer>,
    held: std::sync::Mutex<HashMap<u64, (String, u64)>>,
    next: std::sync::atomic::AtomicU64,
}

impl Leases {
    /// A keeper for `seq`'s tickets; its refresher stops when the keeper is dropped.
    fn start(seq: Arc<dyn Sequencer>) -> Arc<Self> {
        let leases = Arc::new(Self { seq, held: Default::default(), next: Default::default() });
        let weak = Arc::downgrade(&leases);
        // Often, so a busy host's late refresh still lands inside the lease; on a fixed
        // beat, each refresh on its own task, so a slow one does not delay the next.
        let mut every = tokio::time::interval(leases.seq.lease() / 6);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tokio::spawn(async move {
            loop {
                every.tick().await;
                let Some(leases) = weak.upgrade() else { return };
                let held: Vec<(String, u64)> = leases
                    .held
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .values()
                    .cloned()
                    .collect();
                let seq = leases.seq.clone();
                drop(leases);
                tokio::spawn(async move {
                    static LOG: crate::telemetry::throttle::Throttle =
                        crate::telemetry::throttle::Throttle::new(std::time::Duration::from_secs(10));
                    match seq.refresh(&held).await {
                        Ok(0) => {}
                        Ok(lost) => {
                            if let Some(more) = LOG.hit() {
                                tracing::warn!(
                                    lost,
                                    more,
                                    "leases of turns this host holds had run out: those users' messages may have gone out of order"
                                );
                            }
                        }
                        Err(e) => {
                            if let Some(more) = LOG.hit() {
                                tracing::warn!(error = %e, tickets = held.len(), more, "cannot refresh the leases of the turns this host holds; they run out if this goes on");
                            }
                        }
                    }
                });
            }
        });
        leases
    }

    /// Hold `ticket` in `user`'s line until the guard is dropped.
    fn hold(self: &Arc<Self>, user: String, ticket: u64) -> (Arc<dyn Sequencer>, Held) {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, (user.clone(), ticket));
        (self.seq.clone(), Held { user, ticket, id, leases: self.clone() })
    }
}

/// Take tickets in the order deliveries arrive, as soon as they arrive (not when a lane gets
/// to them: a busy lane would let another host's later message take an earlier ticket), with
/// up to 256 takes in flight and their answers in order; then route each to its lane, now or
/// once its turn comes.
fn spawn_taker(
    leases: Arc<Leases>,
    connector: ConnectorName,
    lanes: Vec<mpsc::UnboundedSender<LaneItem>>,
    stop: CancellationToken,
) -> (mpsc::UnboundedSender<Delivery>, tokio::task::JoinHandle<()>) {
    use futures::StreamExt;
    let (tx, rx) = mpsc::unbounded_channel::<Delivery>();
    let task = tokio::spawn(async move {
        let deliveries =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|d| (d, rx)) });
        let taken = deliveries
            .map(|d| {
                let leases = leases.clone();
                let line = line_of(connector.as_str(), &d.message);
                async move {
                    // A ticket is held (its lease refreshed) from the moment it is taken, not
                    // from when the answers before it in this buffer are in: a slow take ahead
                    // of it must not let its lease run out.
                    let r = match &line {
                        Some((user, id)) => Some(leases.seq.take(user, id).await.map(|t| match t {
                            Take::Ticket { ticket, go } => Ok((leases.hold(user.clone(), ticket), go)),
                            Take::Done => Err(()),
                        })),
                        None => None,
                    };
                    (d, r)
                }
            })
            .buffered(256);
        let mut taken = std::pin::pin!(taken);
        while let Some((d, r)) = taken.next().await {
            let lane = &lanes[lane_of(&d.message, lanes.len())];
            let item = match r {
                Some(Ok(Err(()))) => {
                    tracing::debug!(
                        message_id = d.message.id(),
                        "already handled (a redelivery): acked, not handled again"
                    );
                    crate::telemetry::metrics::metrics().failure(connector.as_str(), "duplicate_input");
                    d.ack();
                    continue;
                }
                Some(Ok(Ok((held, true)))) => LaneItem::Turn(d, held),
                Some(Ok(Ok((held, false)))) => {
                    wait_turn(d, held, lane.clone(), stop.clone());
                    continue;
                }
                // The store is down (the lane retries with its backoff; taking again returns
                // the same ticket), or no user to order.
                _ => LaneItem::Fresh(d),
            };
            if let Err(mpsc::error::SendError(item)) = lane.send(item) {
                item.into_delivery().nack(true);
            }
        }
    });
    (tx, task)
}

fn lane_of(message: &Message, lanes: usize) -> usize {
    let mut h = DefaultHasher::new();
    match message {
        Message::User(m) => (&m.transport_name, &m.from_addr).hash(&mut h),
        Message::Event(e) => e.user_message_id.hash(&mut h),
        Message::Status(s) => s.component.hash(&mut h),
    }
    (h.finish() % lanes as u64) as usize
}

struct Lane {
    handler: Arc<dyn Handler>,
    /// Tries of a message in place (shared by the lanes: one warning per 10 s for all).
    retry: Retry,
    /// Tries of ending a turn in its user's line.
    release: Retry,
    publish: Arc<dyn Publish>,
    outbound: RoutingKey,
    connector: ConnectorName,
    failures: Arc<FailureLog>,
    origins: Option<Arc<Origins>>,
    leases: Option<Arc<Leases>>,
    tenant: Option<TenantSide>,
}

/// What a lane is handed.
enum LaneItem {
    /// A delivery just taken from the queue.
    Fresh(Delivery),
    /// A delivery whose turn has come in its user's line, its ticket held (lease refreshed)
    /// since.
    Turn(Delivery, (Arc<dyn Sequencer>, Held)),
}

impl LaneItem {
    fn into_delivery(self) -> Delivery {
        match self {
            LaneItem::Fresh(d) | LaneItem::Turn(d, _) => d,
        }
    }
}

/// A ticket in a user's line, held while its message runs: its lease is refreshed until the
/// guard is dropped.
struct Held {
    user: String,
    ticket: u64,
    id: u64,
    leases: Arc<Leases>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.leases.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.id);
    }
}

impl Lane {
    async fn run(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<LaneItem>,
        again: mpsc::WeakUnboundedSender<LaneItem>,
        stop: CancellationToken,
    ) {
        while let Some(item) = rx.recv().await {
            match (item, &self.leases) {
                (LaneItem::Fresh(d), Some(leases)) if matches!(d.message, Message::User(_)) => {
                    self.take_turn(leases.clone(), d, &again, &stop).await;
                }
                (LaneItem::Turn(d, held), Some(_)) => self.handle(d, &stop, Some(held)).await,
                (item, _) => self.handle(item.into_delivery(), &stop, None).await,
            }
        }
    }

    /// Take a ticket in the user's line: run now if it is the user's turn, else wait for it
    /// off the lane (so other users' messages go on), then come back.
    async fn take_turn(
        &self,
        leases: Arc<Leases>,
        delivery: Delivery,
        again: &mpsc::WeakUnboundedSender<LaneItem>,
        stop: &CancellationToken,
    ) {
        let Some((user, message_id)) = line_of(&self.connector, &delivery.message) else {
            // No user to keep in order.
            return self.handle(delivery, stop, None).await;
        };
        let take = self
            .retry
            .run("take a turn in the user's line", stop, || async {
                leases.seq.take(&user, &message_id).await.map_err(|e| {
                    Trouble::again("state_unavailable", format!("cannot take a turn in the user's line: {e}"))
                })
            })
            .await;
        let take = match take {
            Ok(take) => take,
            Err(gave_up) => {
                let queue = input_queue(&self.connector, &delivery.message);
                return settle(&self.failures, self.handler.name(), &queue, delivery, Err(gave_up)).await;
            }
        };
        match take {
            Take::Done => {
                tracing::debug!(
                    app = self.handler.name(),
                    message_id,
                    "already handled (a redelivery): acked, not handled again"
                );
                crate::telemetry::metrics::metrics().failure(self.handler.name(), "duplicate_input");
                delivery.ack();
            }
            Take::Ticket { ticket, go: true } => {
                let held = leases.hold(user, ticket);
                self.handle(delivery, stop, Some(held)).await;
            }
            Take::Ticket { ticket, go: false } => {
                let Some(tx) = again.upgrade() else { return };
                wait_turn(delivery, leases.hold(user, ticket), tx, stop.clone());
            }
        }
    }

    /// The line moves on past `held`; with `done`, the message is marked finished. A few tries:
    /// if Redis stays down the lease runs out instead, and the next message goes after it.
    async fn release(
        &self,
        held: Option<(Arc<dyn Sequencer>, Held)>,
        done: Option<&str>,
        stop: &CancellationToken,
    ) {
        let Some((seq, held)) = held else { return };
        let ended = self
            .release
            .run("end a turn in the user's line", stop, || seq.finish(&held.user, held.ticket, done))
            .await;
        if let Err(e) = ended {
            tracing::warn!(app = self.handler.name(), error = %e, "cannot end a turn in the user's line; its lease will");
        }
    }

    /// A message taken is finished, as a reload expects; only a wait between tries gives way to
    /// `stop` (the delivery is then dropped unsettled, so it is requeued). A message that is
    /// still held up after its tries in place goes to the retry path, and its user's later
    /// messages go on meanwhile.
    async fn handle(
        &self,
        delivery: Delivery,
        stop: &CancellationToken,
        held: Option<(Arc<dyn Sequencer>, Held)>,
    ) {
        // Over its tenant's inbound rate, the message waits here, and the ones behind it on
        // their queue (the prefetch bounds what is taken): late, never lost.
        if let Some(t) = &self.tenant {
            if !t.rates.inbound_ready() {
                t.waited.inc();
                t.rates.inbound().await;
            }
            t.taken.inc();
        }
        let outcome = self.retry.run("handle a message", stop, || self.try_once(&delivery)).await;
        // Marked done before the ack: a redelivery after a crash between the two is not handled
        // again.
        let done = outcome.is_ok().then(|| delivery.message.id());
        self.release(held, done, stop).await;
        let queue = input_queue(&self.connector, &delivery.message);
        settle(&self.failures, self.handler.name(), &queue, delivery, outcome).await;
    }

    /// One try: the handler, then the publishing of what it sent. A handler's failure that no
    /// retry mends is recorded on the failure path here (the message is then done).
    async fn try_once(&self, delivery: &Delivery) -> Result<(), Trouble> {
        let result = match &delivery.message {
            Message::User(m) => self.handler.handle_user_message(m.clone()).await,
            Message::Event(e) => self.handler.handle_event(e.clone()).await,
            Message::Status(_) => Ok(Vec::new()),
        };
        let sends = match result {
            Ok(sends) => sends,
            Err(f) if f.is_retryable() => return Err(Trouble::again("retry_later", f.to_string())),
            Err(f) => {
                self.failures
                    .record(
                        self.handler.name(),
                        &input_queue(&self.connector, &delivery.message),
                        f.kind(),
                        &f.to_string(),
                        &delivery.message,
                    )
                    .await;
                return Ok(());
            }
        };
        // Plugins derive their sends' ids from the input (`message::derived_id`), so trying
        // again publishes identical copies.
        for msg in sends {
            if let Some(origins) = &self.origins
                && let Err(e) = origins.record(&msg.message_id, self.handler.name()).await
            {
                return Err(Trouble::again("unavailable", format!("cannot record a reply's origin: {e}")));
            }
            if let Some(t) = &self.tenant {
                if !t.rates.outbound() {
                    t.nacked.inc();
                    if let Err(e) = self.over_quota(t, msg).await {
                        return Err(Trouble::again(
                            "unavailable",
                            format!("cannot nack a send over the tenant's rate: {e}"),
                        ));
                    }
                    continue;
                }
                t.sent.inc();
            }
            // On failure the input is tried again; what was already published may be sent
            // again (at-least-once).
            if let Err(e) = self.publish.publish(&self.outbound, msg.into()).await {
                return Err(Trouble::again("unavailable", format!("cannot publish a reply: {e}")));
            }
        }
        Ok(())
    }

    /// A send over the tenant's outbound rate: not published; the app gets a nack naming the
    /// limit, and the send is kept on the failure path (replayable once the rate allows).
    async fn over_quota(
        &self,
        t: &TenantSide,
        msg: crate::message::UserMessage,
    ) -> Result<(), crate::bus::BusError> {
        let limit = t.rates.limits().outbound_per_sec;
        let reason = format!(
            "tenant `{}` is over its outbound rate of {limit} messages/s (`tenants.{}.limits.outbound_per_sec`)",
            t.tenant, t.tenant
        );
        let mut nack = crate::message::Event::nack(&msg.message_id, &reason);
        nack.transport_name = msg.transport_name.clone();
        nack.routing_metadata = msg.routing_metadata.clone();
        let message: Message = msg.into();
        self.failures.record(self.handler.name(), &self.outbound, "over_quota", &reason, &message).await;
        self.publish.publish(&RoutingKey::event(&self.connector), nack.into()).await
    }
}
