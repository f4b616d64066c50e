//! Transports: native Rust servers and clients that turn channel traffic into Vumi messages and
//! deliver outbound messages back to users. One module per transport, each a [`Transport`].
//!
//! A transport publishes through a [`Publish`] handle (the host's message path) and consumes
//! only its own outbound queue, handed to it at start: it never holds the bus or a plugin, so
//! whatever chains and routers the operator configured run on everything it publishes.

pub mod sink;
pub mod smpp;
pub mod sms_http;
pub mod telnet;
pub mod ussd_at;

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::bus::{BusError, Consumer, Delivery, Publish};
use crate::message::Message;
use crate::names::ConnectorName;
use crate::telemetry::throttle::Throttle;

/// Why a transport stopped.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The bus refused to deliver outbound messages to it.
    #[error("transport `{connector}`: bus error: {source}")]
    Bus {
        /// The transport's connector.
        connector: ConnectorName,
        /// The bus error.
        source: BusError,
    },
    /// Its listener failed.
    #[error("transport `{connector}`: {source}")]
    Io {
        /// The transport's connector.
        connector: ConnectorName,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A running transport, as the supervisor starts it.
#[async_trait]
pub trait Transport: Send + 'static {
    /// The HTTP routes it serves on the host's shared listener, if it speaks HTTP.
    fn routes(&self) -> Option<axum::Router> {
        None
    }

    /// How many outbound deliveries it wants outstanding at once.
    fn prefetch(&self) -> u16 {
        64
    }

    /// Serve until `shutdown`, delivering what arrives on `outbound` (its connector's outbound
    /// queue).
    async fn run(
        self: Box<Self>,
        outbound: Box<dyn Consumer>,
        shutdown: CancellationToken,
    ) -> Result<(), TransportError>;
}

/// What every transport is given: where to publish, and the connector it serves
/// (`<connector>.inbound` and `.event` it publishes, `.outbound` it is handed).
#[derive(Clone)]
pub struct TransportContext {
    /// Where it publishes.
    pub publish: Arc<dyn Publish>,
    /// Its connector; also the `transport_name` of the messages it makes.
    pub connector: ConnectorName,
    /// The outbound messages it has sent lately (see [`Sent`]).
    pub sent: Arc<Sent>,
    /// How it waits in place for the state store (`[host.retry]`).
    pub retry: Arc<crate::retry::Retry>,
    /// How it waits for room for an event (until it is published, or the transport stops).
    pub event_retry: Arc<crate::retry::Retry>,
    /// Its stop: a wait in place gives way to it.
    pub stop: CancellationToken,
}

/// The ids of outbound messages a transport sent lately, so a second copy of one (a redelivery,
/// or an app's retry, which derives the same reply id) is dropped instead of reaching the user
/// twice. In memory and bounded: a copy that arrives after `capacity` later messages, or at
/// another host's transport, is sent again (at least once).
#[derive(Debug)]
pub struct Sent {
    capacity: usize,
    ids: Mutex<(HashSet<String>, VecDeque<String>)>,
    dropped: prometheus_client::metrics::counter::Counter,
}

impl Sent {
    /// Remember up to `capacity` ids for `connector`.
    pub fn new(connector: &ConnectorName, capacity: usize) -> Self {
        let dropped =
            crate::telemetry::metrics::metrics().failure_counter(connector.as_str(), "duplicate_dropped");
        Self { capacity: capacity.max(1), ids: Mutex::default(), dropped }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (HashSet<String>, VecDeque<String>)> {
        self.ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `id` was sent.
    pub fn record(&self, id: &str) {
        let mut g = self.lock();
        if g.0.insert(id.to_owned()) {
            g.1.push_back(id.to_owned());
            while g.1.len() > self.capacity {
                if let Some(old) = g.1.pop_front() {
                    g.0.remove(&old);
                }
            }
        }
    }

    /// Whether `id` was sent already.
    pub fn contains(&self, id: &str) -> bool {
        self.lock().0.contains(id)
    }

    /// `outbound` without the copies of messages already sent: each is acked, counted
    /// (`vumi_failures_total{kind="duplicate_dropped"}`) and logged at debug.
    pub fn dedupe(self: &Arc<Self>, outbound: Box<dyn Consumer>) -> Box<dyn Consumer> {
        Box::new(Deduped { inner: outbound, sent: self.clone() })
    }
}

struct Deduped {
    inner: Box<dyn Consumer>,
    sent: Arc<Sent>,
}

#[async_trait]
impl Consumer for Deduped {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            let d = self.inner.next().await?;
            if let Message::User(m) = &d.message
                && self.sent.contains(&m.message_id)
            {
                self.sent.dropped.inc();
                tracing::debug!(
                    message_id = m.message_id,
                    redelivered = d.redelivered,
                    "a copy of a message already sent: dropped"
                );
                d.ack();
                continue;
            }
            return Some(d);
        }
    }
}

impl TransportContext {
    /// A context publishing on `publish` for `connector`, remembering what it sent in `sent`,
    /// waiting for the state store by the default `[host.retry]` until `stop`.
    pub fn new(
        publish: Arc<dyn Publish>,
        connector: ConnectorName,
        sent: Arc<Sent>,
        stop: CancellationToken,
    ) -> Self {
        let retry =
            crate::retry::Retry::new(&crate::retry::RetryPolicy::default(), format!("transport:{connector}"));
        let event_retry = Arc::new(Self::event_retry(&connector));
        Self { publish, connector, sent, retry: Arc::new(retry), event_retry, stop }
    }

    /// The waits for room for an event: short, since the bus's publish already waited for room.
    pub fn event_retry(connector: &ConnectorName) -> crate::retry::Retry {
        use std::time::Duration;
        let component = format!("transport:{connector}");
        crate::retry::Retry::forever(Duration::from_millis(100), Duration::from_secs(2), component)
    }

    /// Record `what` in the state store with `op`, for a message that cannot be taken back (the
    /// far end has it already, and its delivery reports will look for the record). While the
    /// store is down the caller waits in place (`[host.retry]`'s jittered backoff, one warning
    /// per 10 s), taking nothing new; after the policy's last attempt, at once for an error that
    /// retrying cannot mend, or when the transport is stopped, the error is returned for the
    /// caller to say what is lost.
    pub async fn persist<F, Fut>(
        &self,
        what: &str,
        op: F,
    ) -> Result<(), crate::retry::GaveUp<crate::state::StateError>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), crate::state::StateError>>,
    {
        self.retry.run(&format!("remember {what}"), &self.stop, op).await
    }

    /// Publish a message from an end user on `<connector>.inbound`.
    pub async fn publish_inbound(&self, message: crate::message::UserMessage) -> Result<(), BusError> {
        self.publish.publish(&crate::bus::RoutingKey::inbound(&self.connector), message.into()).await
    }

    /// Publish `event` about one of this transport's outbound messages on `<connector>.event`,
    /// carrying the message's routing metadata back (so routers can follow it home). One
    /// attempt, with the bus's bounded wait for room: an HTTP input answers a failure `503`.
    pub async fn publish_event(
        &self,
        event: crate::message::Event,
        about: &crate::message::UserMessage,
    ) -> Result<(), BusError> {
        self.publish
            .publish(&crate::bus::RoutingKey::event(&self.connector), self.event_message(event, about))
            .await
    }

    fn event_message(
        &self,
        mut event: crate::message::Event,
        about: &crate::message::UserMessage,
    ) -> crate::message::Message {
        event.transport_name = Some(self.connector.to_string());
        event.routing_metadata = about.routing_metadata.clone();
        event.into()
    }

    /// Report the outcome of an outbound message the transport has already handled (its ack or
    /// nack). The message cannot be taken back, so a full event queue, or a bus that is down,
    /// is waited on for as long as it lasts (the bus's own bounded wait for room, then a
    /// jittered wait, one warning per 10 s), holding the transport's outbound delivery (and so
    /// its intake) back. Only a bus that refuses or is closed, or the transport's stop, makes it
    /// give the event up, counted in one summarised line. (A cycle, an app whose event handler
    /// sends through this transport, does not hang: the app's own publish has a bounded wait
    /// and its retries end on the failure path, which takes its event off the queue.)
    pub async fn report_outcome(&self, event: crate::message::Event, about: &crate::message::UserMessage) {
        static LOST: Throttle = Throttle::with_burst(std::time::Duration::from_secs(10), 10);
        if matches!(event.kind, crate::message::EventKind::Ack { .. }) {
            self.sent.record(&about.message_id);
        }
        let key = crate::bus::RoutingKey::event(&self.connector);
        let message = self.event_message(event, about);
        // A message is an `Arc`: a retry copies nothing.
        let published = self
            .event_retry
            .run(
                "publish an event (events wait for room; the transport sends nothing more meanwhile)",
                &self.stop,
                || self.publish.publish(&key, message.clone()),
            )
            .await;
        if let Err(e) = published {
            crate::telemetry::metrics::metrics().refused("event");
            if let Some(more) = LOST.hit() {
                tracing::warn!(connector = %self.connector, error = %e, more, message_id = about.message_id, "an event about a sent message was not published; the message itself was handled");
            }
        }
    }
}
