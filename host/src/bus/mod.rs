//! The message bus: named queues addressed by Vumi routing keys.
//!
//! [`Bus`] is the seam between workers/transports and back ends. The embedded bus (`embedded.rs`)
//! runs in this process; a RabbitMQ bus implements the same trait with Vumi's exchange and queue
//! names so old Vumi workers can join. Both must pass `conformance.rs`.
//!
//! Delivery is at-least-once: a consumer acks a delivery after it has published what it caused;
//! a delivery that is nacked with requeue comes back (flagged `redelivered`); one that is dropped
//! without an ack or nack is requeued too.

pub mod amqp;
pub mod conformance;
pub mod embedded;

use async_trait::async_trait;

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
    settle: Option<Box<dyn Settle>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").field("message", &self.message.id()).field("redelivered", &self.redelivered).finish()
    }
}

/// How a back end settles a delivery.
pub trait Settle: Send + Sync {
    /// Done with the message: remove it from the queue.
    fn ack(self: Box<Self>);
    /// Put `message` back (at the head of the queue) for another delivery, or drop it.
    fn nack(self: Box<Self>, message: Option<Message>);
}

impl Delivery {
    /// A delivery settled through `settle`.
    pub fn new(message: Message, redelivered: bool, settle: Box<dyn Settle>) -> Self {
        Self { message, redelivered, settle: Some(settle) }
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
