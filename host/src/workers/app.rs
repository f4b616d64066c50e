//! The app worker: a connector's inbound and event queues → a handler → its outbound queue.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::events::{Origins, RoutedEvents};
use super::{FailureLog, Handler};
use crate::bus::{Bus, BusError, Consumer, Delivery, RoutingKey};
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
/// parallel.
pub struct AppWorker {
    handler: Arc<dyn Handler>,
    bus: Arc<dyn Bus>,
    connector: ConnectorName,
    failures: Arc<FailureLog>,
    concurrency: usize,
    routed: Option<(RoutedEvents, Arc<Origins>)>,
}

impl AppWorker {
    /// A worker for `handler` on `connector`.
    pub fn new(
        handler: Arc<dyn Handler>,
        bus: Arc<dyn Bus>,
        connector: ConnectorName,
        failures: Arc<FailureLog>,
        concurrency: usize,
    ) -> Self {
        Self { handler, bus, connector, failures, concurrency: concurrency.max(1), routed: None }
    }

    /// For a connector shared with other components: take events from the connector's
    /// [`EventRouter`](super::events::EventRouter) instead of its queue, and record this app as
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
            bus: self.bus.clone(),
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
            tasks.push(tokio::spawn(shared.clone().run(rx)));
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
    bus: Arc<dyn Bus>,
    outbound: RoutingKey,
    connector: String,
    failures: Arc<FailureLog>,
    origins: Option<Arc<Origins>>,
}

impl Lane {
    async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Delivery>) {
        while let Some(delivery) = rx.recv().await {
            self.handle(delivery).await;
        }
    }

    async fn handle(&self, delivery: Delivery) {
        let result = match &delivery.message {
            Message::User(m) => self.handler.handle_user_message(Arc::new(m.clone())).await,
            Message::Event(e) => self.handler.handle_event(e).await,
            Message::Status(_) => Ok(Vec::new()),
        };
        match result {
            Ok(sends) => {
                for msg in sends {
                    if let Some(origins) = &self.origins
                        && let Err(e) = origins.record(&msg.message_id, self.handler.name()).await
                    {
                        tracing::error!(app = self.handler.name(), error = %e, "cannot record a reply's origin; requeueing its message");
                        delivery.nack(true);
                        return;
                    }
                    if let Err(e) = self.bus.publish(&self.outbound, Message::User(msg)).await {
                        // Requeue the input rather than lose what it would have caused; what was
                        // already published may be sent again (at-least-once).
                        tracing::error!(app = self.handler.name(), error = %e, "cannot publish a reply; requeueing its message");
                        delivery.nack(true);
                        return;
                    }
                }
                delivery.ack();
            }
            Err(failure) => {
                self.failures.record(
                    self.handler.name(),
                    &self.connector,
                    failure.kind(),
                    &failure.to_string(),
                    &delivery.message,
                );
                delivery.ack();
            }
        }
    }
}
