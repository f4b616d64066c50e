//! The message bus: named queues addressed by Vumi routing keys.
//!
//! [`Bus`] is the seam between workers/transports and back ends. The embedded bus (`embedded.rs`)
//! runs in this process; a RabbitMQ bus implements the same trait with Vumi's exchange and queue
//! names so old Vumi workers can join. Both must pass `conformance.rs`.
//!
//! Delivery is at-least-once: a consumer acks a delivery after it has published what it caused;
//! a delivery that is nacked with requeue comes back (flagged `redelivered`); one that is dropped
//! without an ack or nack is requeued too.
//!
//! **The retry path.** A message held up by a back end that stays down is not put back at the
//! head of its queue (it would come straight back: a hot loop) but set aside for a delay and
//! then returned to the same queue: [`Delivery::retry_later`]. The delays are tiers, shortest
//! first (by default 1 s, 10 s, 60 s, 600 s); a message that has been through every tier is
//! handed back to its caller for the failure path. On RabbitMQ a tier is a host-only queue
//! `<queue>.retry.<delay>` whose TTL dead-letters back to the queue; in the embedded bus it is a
//! timer.

pub mod amqp;
pub mod conformance;
pub mod embedded;

use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;

use crate::message::Message;
use crate::names::ConnectorName;

pub use amqp::{AmqpBus, AmqpOptions};
pub use embedded::EmbeddedBus;

/// The four queues of a connector, as Vumi names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueueKind {
    /// User messages from a transport towards applications.
    Inbound,
    /// User messages from applications towards a transport.
    Outbound,
    /// Events (ack, nack, delivery report) towards applications.
    Event,
    /// Status messages about a component's health.
    Status,
}

impl QueueKind {
    /// The routing-key suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueKind::Inbound => "inbound",
            QueueKind::Outbound => "outbound",
            QueueKind::Event => "event",
            QueueKind::Status => "status",
        }
    }
}

/// A routing key, `<connector>.<kind>`: also the queue name on RabbitMQ.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoutingKey {
    /// The connector (a transport's name, or a dispatcher's connector).
    pub connector: ConnectorName,
    /// Which of its queues.
    pub kind: QueueKind,
}

impl RoutingKey {
    /// `<connector>.inbound`.
    pub fn inbound(connector: &ConnectorName) -> Self {
        Self { connector: connector.clone(), kind: QueueKind::Inbound }
    }
    /// `<connector>.outbound`.
    pub fn outbound(connector: &ConnectorName) -> Self {
        Self { connector: connector.clone(), kind: QueueKind::Outbound }
    }
    /// `<connector>.event`.
    pub fn event(connector: &ConnectorName) -> Self {
        Self { connector: connector.clone(), kind: QueueKind::Event }
    }
    /// `<connector>.status`.
    pub fn status(connector: &ConnectorName) -> Self {
        Self { connector: connector.clone(), kind: QueueKind::Status }
    }
}

impl std::fmt::Display for RoutingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.connector, self.kind.as_str())
    }
}

/// The retry path's delays when config does not say: 1 s, 10 s, 60 s, 600 s.
pub fn default_retry_tiers() -> Vec<Duration> {
    [1, 10, 60, 600].into_iter().map(Duration::from_secs).collect()
}

/// How a tier's delay appears in its queue's name: `1s`, `600s`, `250ms`.
pub fn tier_label(delay: Duration) -> String {
    let ms = delay.as_millis();
    if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{ms}ms") }
}

/// Why a bus operation failed. [`BusError::is_retryable`] says whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus has been shut down; nothing more will be delivered or accepted.
    #[error("the bus is closed")]
    Closed,
    /// The broker could not be reached, or dropped the connection.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// The broker refused what was asked (a declaration that conflicts with an existing
    /// queue's flags, a user without rights on the vhost): trying again will not help.
    #[error("the broker refused: {0}")]
    Refused(String),
    /// The queue stayed full for as long as a publisher may wait: its consumers are behind.
    #[error("queue `{key}` is full ({capacity} messages waiting): its consumers are behind")]
    Full {
        /// The queue.
        key: String,
        /// Its capacity.
        capacity: usize,
    },
}

impl crate::retry::Transient for BusError {
    fn retry_as(&self) -> Option<&'static str> {
        self.is_retryable().then_some("unavailable")
    }
}

impl BusError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, BusError::Unavailable(_) | BusError::Full { .. })
    }
}

/// Where a component publishes: the one method transports, app lanes and channels are given.
/// In the host it is the message path (`workers::flow::Flow`), which runs middleware chains and
/// routes through dispatchers before anything reaches a queue; components never hold the bus
/// itself, so none can skip the chains. A plain [`Bus`] is a `Publish` too (tests, tools).
#[async_trait]
pub trait Publish: Send + Sync + 'static {
    /// Publish `message` on `key`. Returns once it is queued (or routed, or set aside on the
    /// failure path by a chain): a caller that acks its input afterwards loses nothing.
    async fn publish(&self, key: &RoutingKey, message: Message) -> Result<(), BusError>;
}

#[async_trait]
impl<B: Bus> Publish for B {
    async fn publish(&self, key: &RoutingKey, message: Message) -> Result<(), BusError> {
        Bus::publish(self, key, message).await
    }
}

/// A message bus: plain queues. What runs between a publisher and a queue (chains, routing)
/// is the message path's business, not the bus's.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publish `message` to the queue named by `key`. Returns once the bus has accepted it
    /// (for a broker: once it is confirmed), so a caller that acks its input afterwards loses
    /// nothing. A full queue makes the publisher wait for room, for a bounded time, then
    /// refuses with [`BusError::Full`]: memory stays bounded, and nothing accepted is dropped.
    async fn publish(&self, key: &RoutingKey, message: Message) -> Result<(), BusError>;

    /// Start consuming `key`. Consumers of the same key compete: each message goes to one of
    /// them. At most `prefetch` deliveries are outstanding (unacked) per consumer.
    async fn consume(&self, key: &RoutingKey, prefetch: u16) -> Result<Box<dyn Consumer>, BusError>;

    /// Stop delivering: consumers' `next` returns `None` once they have drained nothing more.
    async fn close(&self);

    /// Messages not yet done with: waiting in a queue, or taken and not yet settled. `None` if
    /// the back end cannot tell (a broker keeps them anyway). A graceful stop waits for zero.
    fn pending(&self) -> Option<usize> {
        None
    }

    /// Keep a final failure (a Vumi `failure_message`) where the back end's users look for
    /// one: a broker puts it on `<connector>.failures`, confirmed. The embedded bus keeps none
    /// (nothing would drain such a queue): the failure log and the admin API are its record.
    async fn publish_failure(&self, connector: &str, failure: &serde_json::Value) -> Result<(), BusError> {
        let _ = (connector, failure);
        Ok(())
    }

    /// Whether the bus can carry messages now, for `/health`: the reason when it cannot.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A stream of deliveries from one queue.
#[async_trait]
pub trait Consumer: Send {
    /// The next delivery, or `None` when the bus is closed.
    async fn next(&mut self) -> Option<Delivery>;
}

/// One message handed to a consumer, to be settled with [`Delivery::ack`] or
/// [`Delivery::nack`]. Dropping it unsettled requeues it.
pub struct Delivery {
    /// The message.
    pub message: Message,
    /// Whether this message was delivered before and not acked.
    pub redelivered: bool,
    /// How many delay tiers of the retry path it has been through (0: none).
    pub retries: u32,
    settle: Option<Box<dyn Settle>>,
}

/// Where [`Delivery::retry_later`] put a message.
#[derive(Debug)]
pub enum Later {
    /// Set aside for this long, then back on its queue; the delivery is acked.
    Deferred(Duration),
    /// It has been through every tier: the delivery is handed back, for the failure path.
    Exhausted(Delivery),
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message.id())
            .field("redelivered", &self.redelivered)
            .field("retries", &self.retries)
            .finish()
    }
}

/// How a back end settles a delivery.
pub trait Settle: Send + Sync {
    /// Done with the message: remove it from the queue.
    fn ack(self: Box<Self>);
    /// Put `message` back (at the head of the queue) for another delivery, or drop it.
    fn nack(self: Box<Self>, message: Option<Message>);
    /// Set `message` aside in delay tier `retries` (0 is the first), to come back to this
    /// queue with `retries + 1`; `Ok(None)` if there is no such tier. Returns once the copy set
    /// aside is safe (on a broker: confirmed), so the caller may then ack.
    fn defer<'a>(
        &'a self,
        message: &'a Message,
        retries: u32,
    ) -> BoxFuture<'a, Result<Option<Duration>, BusError>>;
}

impl Delivery {
    /// A delivery settled through `settle`.
    pub fn new(message: Message, redelivered: bool, settle: Box<dyn Settle>) -> Self {
        Self { message, redelivered, retries: 0, settle: Some(settle) }
    }

    /// The same delivery, counted as having been through `retries` delay tiers.
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The retry path, for a message a back end keeps from being handled after its tries in
    /// place: set aside in the next delay tier (confirmed first, then this delivery is acked),
    /// or, past the last tier, handed back for the failure path. If the bus cannot take it
    /// either, the delivery is requeued and the error returned: the caller has waited already,
    /// so that does not spin.
    pub async fn retry_later(self) -> Result<Later, BusError> {
        let Some(settle) = self.settle.as_ref() else { return Ok(Later::Exhausted(self)) };
        match settle.defer(&self.message, self.retries).await {
            Ok(Some(delay)) => {
                self.ack();
                Ok(Later::Deferred(delay))
            }
            Ok(None) => Ok(Later::Exhausted(self)),
            Err(e) => {
                self.nack(true);
                Err(e)
            }
        }
    }

    /// Acknowledge: the message is done with.
    pub fn ack(mut self) {
        if let Some(s) = self.settle.take() {
            s.ack();
        }
    }

    /// Reject: with `requeue` the message is delivered again, otherwise it is dropped (the
    /// caller is expected to have set it aside on the failure path first). A caller that
    /// requeues because a back end is down waits first (`retry`): a requeued message
    /// comes straight back.
    pub fn nack(mut self, requeue: bool) {
        if let Some(s) = self.settle.take() {
            let message = requeue.then(|| self.message.clone());
            s.nack(message);
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(s) = self.settle.take() {
            s.nack(Some(self.message.clone()));
        }
    }
}
