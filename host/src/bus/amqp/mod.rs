//! The RabbitMQ bus, on lapin: the same exchange, queues and bodies as legacy Vumi, so an old
//! Vumi worker can share the broker with us.
//!
//! **Topology.** Exchange `vumi`, direct, durable. Each queue is named by its routing key
//! (`<connector>.inbound|outbound|event|status`), durable, not exclusive, not auto-delete, with
//! an empty argument table, and bound to `vumi` by its own name. Those are exactly legacy
//! Vumi's flags: any other flag or argument draws 406 `PRECONDITION_FAILED` from the broker
//! against a queue a legacy worker declared first. We declare what we consume *and* what we
//! publish to (legacy publishers do not, and lose what they publish before a consumer came).
//! Tuning (queue version, length limits, dead-lettering of shared queues) goes through broker
//! policies, which never conflict with a declaration.
//!
//! **Bodies.** Vumi JSON with every non-ASCII character escaped as `\uXXXX`, as Python's
//! `json.dumps` writes it; published persistent (delivery mode 2) and `mandatory`, with no
//! other property, as legacy workers publish. Bodies in raw UTF-8 are read too.
//!
//! **Confirms.** A publish returns once the broker has confirmed it, which for a persistent
//! message on a durable queue means it is on disk. Only a plain ack is success: a returned
//! message reached no queue, and a nack or a lost connection leaves the outcome unknown (the
//! caller's input stays unacked and is tried again: at least once). At most `confirm_window`
//! publishes wait for their confirms at once.
//!
//! **Connections.** One for publishing and one for consuming, so flow control on publishes can
//! never hold up acks. The host owns reconnection (lapin's auto-recovery is young): on an error
//! the connection is dropped with everything in flight (the broker requeues unacked
//! deliveries), then reconnected with jittered, doubling waits; consumers declare and consume
//! again on the new connection. Reconnections and unknown confirms are counted in metrics,
//! reported by [`Bus::health`], and announced with a `status_event` once publishing works again.
//!
//! **The retry path.** Delay tier `d` of queue `q` is the host-only queue `q.retry.<d>` (e.g.
//! `app.inbound.retry.10s`), durable, declared with `x-message-ttl` = `d`,
//! `x-dead-letter-exchange` = `vumi` and `x-dead-letter-routing-key` = `q`: nothing consumes
//! it; an expired message goes back to `q`. One TTL per queue, because RabbitMQ expires messages
//! only from a queue's head, and a 600 s message must not hold up a 1 s one. A message set aside
//! carries the header `x-vumi-retries` (tiers passed so far; legacy readers ignore headers), is
//! published with a confirm, and only then is the original acked. Legacy workers never see these
//! queues, so their arguments cannot conflict with a legacy declaration.
//!
//! **Bodies that do not decode** are set aside, not left to stall the queue (legacy Vumi stops
//! consuming on one): they are published to `<connector>.failures` as a Vumi `failure_message`
//! with the reason, then acked.

mod consume;
mod link;
mod publish;
#[cfg(test)]
mod tests;
mod topology;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPUri, AMQPUserInfo};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{Bus, BusError, Consumer, Delivery, RoutingKey, Settle};
use crate::message::Message;
use crate::names::ConnectorName;
use crate::telemetry::metrics::metrics;

use consume::*;
use link::*;
use publish::*;
use topology::*;

/// The one exchange, as legacy Vumi names it.
pub const EXCHANGE: &str = "vumi";

/// Where and how to reach the broker. The supervisor fills it from `[host.bus] kind = "amqp"`.
#[derive(Clone)]
pub struct AmqpOptions {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Virtual host (legacy Vumi used `/develop`).
    pub vhost: String,
    /// User (legacy: `vumi`).
    pub username: String,
    /// Password (legacy: `vumi`).
    pub password: String,
    /// Heartbeat interval asked of the broker; 0 turns heartbeats off (a dead peer is then seen
    /// only when the socket fails).
    pub heartbeat_secs: u16,
    /// Publishes waiting for their confirms at once, across the host.
    pub confirm_window: usize,
    /// The largest prefetch a consumer may ask for.
    pub max_prefetch: u16,
    /// How long a publish waits for the broker to come back before it fails as unavailable.
    pub publish_wait: Duration,
    /// First wait before reconnecting; doubles, with jitter, up to `reconnect_max`.
    pub reconnect_initial: Duration,
    /// Longest wait between reconnection attempts.
    pub reconnect_max: Duration,
    /// How this host names itself to the broker (the management UI shows it) and in its status
    /// events.
    pub connection_name: String,
    /// Where reconnection `status_event`s go (`<connector>.status`); none: not published.
    pub status_connector: Option<ConnectorName>,
    /// The retry path's delays, shortest first: one tier queue each.
    pub retry_tiers: Vec<Duration>,
}

impl Default for AmqpOptions {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 5672,
            vhost: "/".into(),
            username: "guest".into(),
            password: "guest".into(),
            heartbeat_secs: 20,
            confirm_window: 256,
            max_prefetch: 300,
            publish_wait: Duration::from_secs(10),
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            connection_name: "vumi".into(),
            status_connector: None,
            retry_tiers: super::default_retry_tiers(),
        }
    }
}

impl std::fmt::Debug for AmqpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpOptions")
            .field("broker", &self.display())
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl AmqpOptions {
    /// `amqp://user@host:port/vhost`, for logs (never the password).
    pub fn display(&self) -> String {
        format!("amqp://{}@{}:{}/{}", self.username, self.host, self.port, percent_vhost(&self.vhost))
    }

    fn uri(&self) -> AMQPUri {
        AMQPUri {
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo { username: self.username.clone(), password: self.password.clone() },
                host: self.host.clone(),
                port: self.port,
            },
            vhost: self.vhost.clone(),
            query: AMQPQueryString {
                heartbeat: Some(self.heartbeat_secs),
                connection_timeout: Some(self.reconnect_max.as_millis().max(1000) as u64),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

fn percent_vhost(vhost: &str) -> String {
    vhost.replace('%', "%25").replace('/', "%2f")
}

/// Vumi's JSON as Python writes it: every character beyond ASCII as `\uXXXX` (UTF-16 code
/// units, so a surrogate pair for anything beyond the BMP). Outside strings JSON is ASCII
/// already, so escaping every non-ASCII character is exact.
pub fn ascii_json(utf8: Vec<u8>) -> Vec<u8> {
    if utf8.is_ascii() {
        return utf8;
    }
    let text = String::from_utf8_lossy(&utf8);
    let mut out = Vec::with_capacity(utf8.len() + 32);
    let mut units = [0u16; 2];
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c as u8);
        } else {
            for u in c.encode_utf16(&mut units) {
                out.extend_from_slice(format!("\\u{u:04x}").as_bytes());
            }
        }
    }
    out
}

fn lapin_refused(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(a)
        if matches!(a.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED | AMQPSoftError::ACCESSREFUSED | AMQPSoftError::NOTFOUND)))
}

struct Inner {
    opts: Arc<AmqpOptions>,
    closed: CancellationToken,
    publish_link: Arc<Link>,
    consume_link: Arc<Link>,
    publisher: tokio::sync::Mutex<Option<Arc<PubChannel>>>,
    window: Semaphore,
    unknown_confirms: Counter,
    undecodable: Counter,
    /// Acks and nacks sent but not yet answered: `close` waits for them.
    settling: Arc<AtomicUsize>,
    consumer_tags: AtomicU64,
}

/// [`Bus`] on RabbitMQ. See the module documentation for the wire contract.
pub struct AmqpBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AmqpBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpBus").field("broker", &self.inner.opts.display()).finish_non_exhaustive()
    }
}

impl AmqpBus {
    /// Connect both links (failing at once if the broker cannot be reached: a host that starts
    /// against a wrong address should say so, not wait), then keep them up.
    pub async fn connect(opts: AmqpOptions) -> Result<Self, BusError> {
        let opts = Arc::new(opts);
        let closed = CancellationToken::new();
        let publish_link = Link::new("publish", opts.clone(), closed.clone());
        let consume_link = Link::new("consume", opts.clone(), closed.clone());
        let unreachable = |e: lapin::Error| {
            BusError::Unavailable(format!(
                "cannot reach RabbitMQ at {}: {e} (is it running? `rabbitmq-server -detached`, or `[host] bus = {{ kind = \"embedded\" }}`)",
                opts.display()
            ))
        };
        let first_pub = publish_link.open().await.map_err(unreachable)?;
        let first_con = consume_link.open().await.map_err(unreachable)?;
        // Declaring the exchange now surfaces a 403 (user, vhost) or 406 at start-up.
        let ch = first_pub.create_channel().await.map_err(unreachable)?;
        declare_exchange(&ch).await.map_err(|e| {
            BusError::Refused(format!("declaring exchange `{EXCHANGE}` on {}: {e}", opts.display()))
        })?;
        let _ = ch.close(200, "declared".into()).await;
        let inner = Arc::new(Inner {
            opts: opts.clone(),
            closed,
            publish_link: publish_link.clone(),
            consume_link: consume_link.clone(),
            publisher: tokio::sync::Mutex::new(None),
            window: Semaphore::new(opts.confirm_window.max(1)),
            unknown_confirms: metrics().bus_unknown_confirms(),
            undecodable: metrics().bus_undecodable(),
            settling: Arc::default(),
            consumer_tags: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&inner);
        let announce: Arc<dyn Fn(Duration) + Send + Sync> = Arc::new(move |after: Duration| {
            if let Some(inner) = weak.upgrade() {
                tokio::spawn(async move { inner.announce_reconnect(after).await });
            }
        });
        tokio::spawn(publish_link.supervise(first_pub, announce));
        tokio::spawn(consume_link.supervise(first_con, Arc::new(|_| {})));
        tracing::info!(broker = %opts.display(), "connected to RabbitMQ");
        Ok(Self { inner })
    }

    /// The broker this bus talks to, for logs.
    pub fn broker(&self) -> String {
        self.inner.opts.display()
    }

    /// Delete a queue and what it holds (tests clean up with it; operators retire connectors).
    pub async fn delete_queue(&self, queue: &str) -> Result<u32, BusError> {
        let deadline = tokio::time::Instant::now() + self.inner.opts.publish_wait;
        let p = self.inner.channel(deadline).await?;
        let n = p
            .channel
            .queue_delete(queue.into(), lapin::options::QueueDeleteOptions::default())
            .await
            .map_err(|e| BusError::Unavailable(format!("deleting `{queue}`: {e}")))?;
        p.declared.lock().unwrap_or_else(|e| e.into_inner()).remove(queue);
        Ok(n)
    }

    /// Publish an already-encoded body on `queue` (declared first), with a confirm.
    pub async fn publish_raw(&self, queue: &str, body: &[u8]) -> Result<(), BusError> {
        self.inner.publish_raw(queue, body).await
    }
}

#[async_trait]
impl Bus for AmqpBus {
    async fn publish(&self, key: &RoutingKey, message: Message) -> Result<(), BusError> {
        if self.inner.closed.is_cancelled() {
            return Err(BusError::Closed);
        }
        self.inner.publish_raw(&key.to_string(), &ascii_json(message.to_json())).await
    }

    async fn consume(&self, key: &RoutingKey, prefetch: u16) -> Result<Box<dyn Consumer>, BusError> {
        if self.inner.closed.is_cancelled() {
            return Err(BusError::Closed);
        }
        let mut c = AmqpConsumer::new(self.inner.clone(), key, prefetch);
        // Declared and consuming before this returns, so a message published next is not
        // missed; a broker that is down now is waited for in `next`.
        let deadline = tokio::time::Instant::now() + self.inner.opts.publish_wait;
        let conn = self.inner.consume_link.connected(Some(deadline)).await?;
        // On a task, held by `c`: if this call is dropped half-way, `c`'s drop closes it.
        let opened = c
            .opening
            .insert(tokio::spawn(open_channel(self.inner.clone(), c.queue.clone(), c.prefetch, conn)))
            .await;
        c.opening = None;
        if let Ok(active) = opened {
            c.active = Some(active?);
        }
        Ok(Box::new(c))
    }

    async fn close(&self) {
        self.inner.closed.cancel();
        // Acks already sent should reach the broker before the connections close; otherwise
        // those messages come back to the next consumer.
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.inner.settling.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn publish_failure(&self, connector: &str, failure: &serde_json::Value) -> Result<(), BusError> {
        let body = ascii_json(serde_json::to_vec(failure).unwrap_or_default());
        self.inner.publish_raw(&format!("{connector}.failures"), &body).await
    }

    fn health(&self) -> Result<(), String> {
        self.inner.publish_link.health().and(self.inner.consume_link.health())
    }
}
