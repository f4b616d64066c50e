//! The app worker: a connector's inbound and event queues → a handler → its outbound queue.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::events::{Origins, RoutedEvents};
use crate::retry::{Backoff, RetryPolicy};
use super::{FailureLog, Handler};
use crate::bus::{Bus, BusError, Consumer, Delivery, Publish, RoutingKey};
use crate::message::Message;
use crate::names::ConnectorName;

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
/// down) waits in place with a backoff, so the user's later messages stay behind it.
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
}

impl AppWorker {
    /// A worker from its parts.
    pub fn new(p: AppWorkerParts) -> Self {
        Self {
            handler: p.handler,
            bus: p.bus,
            publish: p.publish,
            connector: p.connector,
            failures: p.failures,
            concurrency: p.concurrency.max(1),
            retry: p.retry,
            routed: None,
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

        let shared = Arc::new(Lane {
            handler: self.handler.clone(),
            publish: self.publish.clone(),
            outbound: RoutingKey::outbound(&self.connector),
            connector: self.connector.to_string(),
            failures: self.failures.clone(),
            origins,
        });
        let mut lanes = Vec::with_capacity(self.concurrency);
        let mut tasks = Vec::with_capacity(self.concurrency);
        for _ in 0..self.concurrency {
            // Unbounded is safe: the prefetch window bounds what is in flight.
            let (tx, rx) = mpsc::unbounded_channel();
            lanes.push(tx);
            let backoff = Backoff::new(self.retry.clone(), format!("app:{app}"));
            tasks.push(tokio::spawn(shared.clone().run(rx, backoff, shutdown.clone())));
        }
        tracing::info!(app, connector = %self.connector, lanes = self.concurrency, "app worker started");

        loop {
            let delivery = tokio::select! {
                () = shutdown.cancelled() => break,
                d = inbound.next() => d,
                d = events.next() => d,
            };
            let Some(delivery) = delivery else { break };
            let lane = lane_of(&delivery.message, lanes.len());
            if let Err(mpsc::error::SendError(d)) = lanes[lane].send(delivery) {
                // The lane task is gone (it panicked); give the message back rather than lose it.
                d.nack(true);
                break;
            }
        }
        drop(lanes);
        for t in tasks {
            let _ = t.await;
        }
        tracing::info!(app, connector = %self.connector, "app worker stopped");
        Ok(())
    }
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
    publish: Arc<dyn Publish>,
    outbound: RoutingKey,
    connector: String,
    failures: Arc<FailureLog>,
    origins: Option<Arc<Origins>>,
}

/// How one try of a message ended.
enum Tried {
    /// Published what the handler sent (or recorded the failure): ack.
    Done,
    /// The handler said `retry-later`.
    RetryLater(String),
    /// A back end failed after the handler succeeded; what was published may be sent again.
    Unavailable(String),
}

impl Lane {
    async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Delivery>, mut backoff: Backoff, stop: CancellationToken) {
        while let Some(delivery) = rx.recv().await {
            self.handle(delivery, &mut backoff, &stop).await;
        }
    }

    /// A message taken is finished, as a reload expects; only a wait between tries gives way to
    /// `stop` (the delivery is then dropped unsettled, so it is requeued).
    async fn handle(&self, delivery: Delivery, backoff: &mut Backoff, stop: &CancellationToken) {
        let tries = backoff.max_attempts();
        for attempt in 1..=tries {
            match self.try_once(&delivery).await {
                Tried::Done => {
                    backoff.reset();
                    delivery.ack();
                    return;
                }
                Tried::RetryLater(reason) if attempt == tries => {
                    let reason = format!("{reason} (gave up after {tries} tries)");
                    self.failures.record(self.handler.name(), &self.connector, "retry_later", &reason, &delivery.message);
                    delivery.ack();
                    return;
                }
                Tried::RetryLater(reason) => {
                    tracing::debug!(app = self.handler.name(), reason, attempt, "the handler asked to retry later");
                    if Self::interrupted(backoff.wait("retry_later"), stop).await {
                        return;
                    }
                }
                Tried::Unavailable(reason) => {
                    tracing::warn!(app = self.handler.name(), reason, attempt, "cannot publish what the handler sent; retrying after a wait");
                    // Waits after the last try too, so a message put back does not spin.
                    if Self::interrupted(backoff.wait("unavailable"), stop).await {
                        return;
                    }
                }
            }
        }
        // A back end is still down: back on the queue, never dropped.
        delivery.nack(true);
    }

    /// Wait, unless `stop` comes first: whether it did.
    async fn interrupted(wait: impl std::future::Future<Output = ()>, stop: &CancellationToken) -> bool {
        tokio::select! {
            () = wait => false,
            () = stop.cancelled() => true,
        }
    }

    async fn try_once(&self, delivery: &Delivery) -> Tried {
        let result = match &delivery.message {
            Message::User(m) => self.handler.handle_user_message(m.clone()).await,
            Message::Event(e) => self.handler.handle_event(e.clone()).await,
            Message::Status(_) => Ok(Vec::new()),
        };
        let sends = match result {
            Ok(sends) => sends,
            Err(f) if f.is_retryable() => return Tried::RetryLater(f.to_string()),
            Err(f) => {
                self.failures.record(self.handler.name(), &self.connector, f.kind(), &f.to_string(), &delivery.message);
                return Tried::Done;
            }
        };
        // Plugins derive their sends' ids from the input (`message::derived_id`), so trying
        // again publishes identical copies.
        for msg in sends {
            if let Some(origins) = &self.origins
                && let Err(e) = origins.record(&msg.message_id, self.handler.name()).await
            {
                return Tried::Unavailable(format!("cannot record a reply's origin: {e}"));
            }
            // On failure the input is tried again; what was already published may be sent
            // again (at-least-once).
            if let Err(e) = self.publish.publish(&self.outbound, msg.into()).await {
                return Tried::Unavailable(format!("cannot publish a reply: {e}"));
            }
        }
        Tried::Done
    }
}
