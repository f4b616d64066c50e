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

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPUri, AMQPUserInfo};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use futures::future::BoxFuture;
use lapin::types::{AMQPValue, LongString, ShortString};

use super::{Bus, BusError, Consumer, Delivery, RoutingKey, Settle};
use crate::message::{Message, Status, StatusLevel, Timestamp};
use crate::names::ConnectorName;
use crate::telemetry::metrics::metrics;
use crate::telemetry::throttle::Throttle;

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

/// Waits between attempts to reach the broker: doubling, jittered (so hosts restarted together
/// do not reconnect in step), from `reconnect_initial` to `reconnect_max`.
fn reconnect_schedule(opts: &AmqpOptions) -> crate::retry::Retry {
    crate::retry::Retry::forever(opts.reconnect_initial, opts.reconnect_max, "bus")
}

/// One live connection.
struct Conn {
    connection: Connection,
    /// Set by anyone who sees this connection fail: its supervisor then replaces it.
    broken: CancellationToken,
}

impl Conn {
    fn alive(&self) -> bool {
        !self.broken.is_cancelled() && self.connection.status().connected()
    }
}

/// A supervised connection: one task keeps it up; users wait on `current` for a live one.
struct Link {
    role: &'static str,
    opts: Arc<AmqpOptions>,
    current: watch::Sender<Option<Arc<Conn>>>,
    closed: CancellationToken,
    reconnects: Counter,
    /// When the link went down (`None` while up), and the last error seen.
    down: Mutex<(Option<Instant>, String)>,
}

impl Link {
    fn new(role: &'static str, opts: Arc<AmqpOptions>, closed: CancellationToken) -> Arc<Self> {
        let (current, _) = watch::channel(None);
        Arc::new(Self {
            role,
            opts,
            current,
            closed,
            reconnects: metrics().bus_reconnects(role),
            down: Mutex::new((Some(Instant::now()), "not connected yet".into())),
        })
    }

    fn lock_down(&self) -> std::sync::MutexGuard<'_, (Option<Instant>, String)> {
        self.down.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn open(&self) -> Result<Connection, lapin::Error> {
        let props = ConnectionProperties::default()
            .with_connection_name(format!("{} ({})", self.opts.connection_name, self.role).into());
        Connection::connect_uri(self.opts.uri(), props).await
    }

    /// Connect, wait for the connection to fail, drop it, wait, connect again: until closed.
    /// `on_up` runs after each connection that follows a failure.
    async fn supervise(self: Arc<Self>, first: Connection, on_up: Arc<dyn Fn(Duration) + Send + Sync>) {
        let mut next = Some(first);
        let schedule = reconnect_schedule(&self.opts);
        let mut delays = schedule.delays();
        let mut generation = 0u64;
        let warned = Throttle::new(Duration::from_secs(10));
        loop {
            let connection = match next.take() {
                Some(c) => Ok(c),
                None => tokio::select! {
                    c = self.open() => c,
                    () = self.closed.cancelled() => return,
                },
            };
            match connection {
                Ok(connection) => {
                    generation += 1;
                    let mut events = connection.events_listener();
                    let conn = Arc::new(Conn { connection, broken: CancellationToken::new() });
                    let was_down = self.lock_down().0.take();
                    if generation > 1 {
                        self.reconnects.inc();
                        let after = was_down.map(|t| t.elapsed()).unwrap_or_default();
                        tracing::info!(link = self.role, broker = %self.opts.display(), down_ms = after.as_millis() as u64, "reconnected to the broker");
                        on_up(after);
                    }
                    self.current.send_replace(Some(conn.clone()));
                    delays = schedule.delays();
                    // Errors arrive as events; the status poll is a backstop for a failure
                    // that sends none.
                    let mut poll = tokio::time::interval(Duration::from_millis(500));
                    let why = loop {
                        tokio::select! {
                            ev = events.next() => match ev {
                                Some(lapin::Event::Error(e)) => break e.to_string(),
                                Some(_) => {}
                                None => break "the connection ended".to_owned(),
                            },
                            _ = poll.tick() => if !conn.connection.status().connected() {
                                break "the connection is no longer connected".to_owned();
                            },
                            () = conn.broken.cancelled() => break "an operation on it failed".to_owned(),
                            () = self.closed.cancelled() => {
                                self.current.send_replace(None);
                                let _ = tokio::time::timeout(Duration::from_secs(2), conn.connection.close(200, "host stopping".into())).await;
                                return;
                            }
                        }
                    };
                    conn.broken.cancel();
                    self.current.send_replace(None);
                    *self.lock_down() = (Some(Instant::now()), why.clone());
                    tracing::warn!(link = self.role, broker = %self.opts.display(), reason = why, "lost the broker connection; what was in flight is redelivered by the broker; reconnecting");
                    // Best effort: the socket is likely gone already.
                    let stale = conn.clone();
                    tokio::spawn(async move {
                        if !matches!(
                            tokio::time::timeout(
                                Duration::from_secs(5),
                                stale.connection.close(320, "replaced".into())
                            )
                            .await,
                            Ok(Ok(()))
                        ) {
                            tracing::debug!(
                                "a replaced connection did not close cleanly (likely gone already)"
                            );
                        }
                    });
                }
                Err(e) => {
                    let since = {
                        let mut d = self.lock_down();
                        d.1 = e.to_string();
                        d.0.map(|t| t.elapsed()).unwrap_or_default()
                    };
                    if let Some(more) = warned.hit() {
                        tracing::warn!(link = self.role, broker = %self.opts.display(), error = %e, down_ms = since.as_millis() as u64, more, "cannot reach the broker; retrying");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(delays.next().unwrap_or(self.opts.reconnect_max)) => {}
                () = self.closed.cancelled() => return,
            }
        }
    }

    /// A live connection, waiting for one until `deadline` (forever: `None`).
    async fn connected(&self, deadline: Option<tokio::time::Instant>) -> Result<Arc<Conn>, BusError> {
        let mut rx = self.current.subscribe();
        loop {
            if self.closed.is_cancelled() {
                return Err(BusError::Closed);
            }
            if let Some(c) = rx.borrow_and_update().clone()
                && c.alive()
            {
                return Ok(c);
            }
            let until = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = rx.changed() => if r.is_err() { return Err(BusError::Closed) },
                () = self.closed.cancelled() => return Err(BusError::Closed),
                () = until => return Err(BusError::Unavailable(self.down_reason())),
                // A connection may fail without a change of `current` yet: look again soon.
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    fn down_reason(&self) -> String {
        let d = self.lock_down();
        match d.0 {
            Some(t) => format!(
                "the {} connection to {} is down ({} ms): {}",
                self.role,
                self.opts.display(),
                t.elapsed().as_millis(),
                d.1
            ),
            None => format!("the {} connection to {} is up", self.role, self.opts.display()),
        }
    }

    fn health(&self) -> Result<(), String> {
        if self.lock_down().0.is_some() { Err(self.down_reason()) } else { Ok(()) }
    }
}

/// The publishing channel of one connection, in confirm mode, with the queues it declared.
struct PubChannel {
    conn: Arc<Conn>,
    channel: Channel,
    declared: Mutex<HashSet<String>>,
    /// One `basic.publish` at a time on the channel. lapin numbers a publish for its confirm
    /// and queues its frames in two steps; two tasks on two threads can interleave them, so
    /// the broker's tag N is another message than lapin's N, and a confirm resolves the wrong
    /// publish. Harmless until the broker dies between the two confirms: then a publish
    /// counted as confirmed was never stored. The chaos suite lost one such input in about a
    /// third of its broker kills. Held for the publish's first poll only, not for the confirm.
    sending: tokio::sync::Mutex<()>,
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

async fn declare_exchange(channel: &Channel) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            EXCHANGE.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
}

/// The header that counts the delay tiers a message has been through.
pub const RETRIES_HEADER: &str = "x-vumi-retries";

/// Declare `queue` exactly as legacy Vumi does, and bind it by its name.
async fn declare_queue(channel: &Channel, queue: &str) -> Result<(), lapin::Error> {
    declare_with(channel, queue, FieldTable::default()).await
}

/// The arguments of `input`'s delay tier of `delay`: expire after it, back to `input`.
fn tier_arguments(input: &str, delay: Duration) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(ShortString::from("x-message-ttl"), AMQPValue::LongLongInt(delay.as_millis() as i64));
    args.insert(
        ShortString::from("x-dead-letter-exchange"),
        AMQPValue::LongString(LongString::from(EXCHANGE)),
    );
    args.insert(
        ShortString::from("x-dead-letter-routing-key"),
        AMQPValue::LongString(LongString::from(input)),
    );
    args
}

/// The tiers a delivery has been through, from its header (absent: none).
fn retries_of(properties: &BasicProperties) -> u32 {
    let Some(headers) = properties.headers() else { return 0 };
    match headers.inner().get(RETRIES_HEADER) {
        Some(AMQPValue::LongUInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => (*n).max(0) as u32,
        Some(AMQPValue::LongLongInt(n)) => (*n).clamp(0, i64::from(u32::MAX)) as u32,
        Some(AMQPValue::ShortShortUInt(n)) => u32::from(*n),
        Some(AMQPValue::ShortUInt(n)) => u32::from(*n),
        _ => 0,
    }
}

/// Declare `queue` durable with `arguments`, and bind it by its name.
async fn declare_with(channel: &Channel, queue: &str, arguments: FieldTable) -> Result<(), lapin::Error> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions { durable: true, exclusive: false, auto_delete: false, ..Default::default() },
            arguments,
        )
        .await?;
    channel
        .queue_bind(
            queue.into(),
            EXCHANGE.into(),
            queue.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
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

impl Inner {
    async fn channel(&self, deadline: tokio::time::Instant) -> Result<Arc<PubChannel>, BusError> {
        let mut slot = self.publisher.lock().await;
        if let Some(p) = slot.as_ref()
            && p.conn.alive()
            && p.channel.status().connected()
        {
            return Ok(p.clone());
        }
        *slot = None;
        let conn = self.publish_link.connected(Some(deadline)).await?;
        let open = async {
            let channel = conn.connection.create_channel().await?;
            channel.confirm_select(ConfirmSelectOptions::default()).await?;
            declare_exchange(&channel).await?;
            Ok::<_, lapin::Error>(channel)
        };
        // A connection the broker dropped without a word can leave a request unanswered:
        // never wait past the publish's own deadline for one.
        let Ok(opened) = tokio::time::timeout_at(deadline, open).await else {
            conn.broken.cancel();
            return Err(BusError::Unavailable("opening a publishing channel timed out; reconnecting".into()));
        };
        match opened {
            Ok(channel) => {
                let p = Arc::new(PubChannel {
                    conn,
                    channel,
                    declared: Mutex::default(),
                    sending: tokio::sync::Mutex::new(()),
                });
                *slot = Some(p.clone());
                Ok(p)
            }
            Err(e) if lapin_refused(&e) => {
                Err(BusError::Refused(format!("the broker refused a publishing channel: {e}")))
            }
            Err(e) => {
                if !conn.connection.status().connected() {
                    conn.broken.cancel();
                }
                Err(BusError::Unavailable(format!("cannot open a publishing channel: {e}")))
            }
        }
    }

    fn drop_channel(&self, p: &Arc<PubChannel>, slot: &mut Option<Arc<PubChannel>>) {
        if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, p)) {
            *slot = None;
        }
        if !p.conn.connection.status().connected() {
            p.conn.broken.cancel();
        }
    }

    async fn publish_raw(&self, queue: &str, body: &[u8]) -> Result<(), BusError> {
        self.publish_to(&Target { queue, arguments: None, retries: None }, body).await
    }

    async fn publish_to(&self, target: &Target<'_>, body: &[u8]) -> Result<(), BusError> {
        let queue = target.queue;
        let _permit = self.window.acquire().await.map_err(|_| BusError::Closed)?;
        let deadline = tokio::time::Instant::now() + self.opts.publish_wait;
        // Fresh channels, tried again quickly (the broker is up; a channel failed).
        let mut waits =
            crate::retry::Retry::forever(Duration::from_millis(50), Duration::from_secs(1), "bus").delays();
        loop {
            let p = self.channel(deadline).await?;
            // At least a few seconds for the confirm, even late in the wait: the broker batches
            // its disk writes.
            let confirm_by = deadline.max(tokio::time::Instant::now() + Duration::from_secs(5));
            let outcome = match tokio::time::timeout_at(confirm_by, self.publish_on(&p, target, body)).await {
                Ok(o) => o,
                Err(_) => {
                    // No answer at all: the connection is as good as dead.
                    self.unknown_confirms.inc();
                    p.conn.broken.cancel();
                    self.drop_channel(&p, &mut *self.publisher.lock().await);
                    Err(Outcome::Failed(BusError::Unavailable(format!(
                        "no confirm for `{queue}` in time: the outcome is unknown; reconnecting"
                    ))))
                }
            };
            match outcome {
                Ok(()) => return Ok(()),
                Err(Outcome::Failed(e)) => return Err(e),
                Err(Outcome::NotSent(e)) => {
                    // Nothing reached the broker: safe to try again on a fresh channel.
                    self.drop_channel(&p, &mut *self.publisher.lock().await);
                    let wait = waits.next().unwrap_or(Duration::from_secs(1));
                    if tokio::time::Instant::now() + wait >= deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn publish_on(&self, p: &Arc<PubChannel>, target: &Target<'_>, body: &[u8]) -> Result<(), Outcome> {
        let queue = target.queue;
        let fresh = !p.declared.lock().unwrap_or_else(|e| e.into_inner()).contains(queue);
        if fresh {
            match declare_with(&p.channel, queue, target.arguments.clone().unwrap_or_default()).await {
                Ok(()) => {
                    p.declared.lock().unwrap_or_else(|e| e.into_inner()).insert(queue.to_owned());
                }
                Err(e) if lapin_refused(&e) => {
                    self.drop_channel(p, &mut *self.publisher.lock().await);
                    let how = if target.arguments.is_some() {
                        "a host-only delay tier"
                    } else {
                        "durable, no arguments, as Vumi declares it"
                    };
                    return Err(Outcome::Failed(BusError::Refused(format!(
                        "the broker refused declaring queue `{queue}` ({how}): {e}"
                    ))));
                }
                Err(e) => {
                    return Err(Outcome::NotSent(BusError::Unavailable(format!(
                        "declaring queue `{queue}`: {e}"
                    ))));
                }
            }
        }
        let mut properties = BasicProperties::default().with_delivery_mode(2);
        if let Some(n) = target.retries {
            let mut headers = FieldTable::default();
            headers.insert(ShortString::from(RETRIES_HEADER), AMQPValue::LongUInt(n));
            properties = properties.with_headers(headers);
        }
        let publish = p.channel.basic_publish(
            EXCHANGE.into(),
            queue.into(),
            BasicPublishOptions { mandatory: true, immediate: false },
            body,
            properties,
        );
        let mut publish = std::pin::pin!(publish);
        // Its first poll numbers it and queues its frames (lapin 4.12 does both before its
        // first await): that is the step that must not interleave with another publish's.
        let first = {
            let _one_at_a_time = p.sending.lock().await;
            futures::poll!(publish.as_mut())
        };
        let sent = match first {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => publish.await,
        };
        let confirm = sent
            .map_err(|e| Outcome::NotSent(BusError::Unavailable(format!("publishing to `{queue}`: {e}"))))?;
        match confirm.await {
            Ok(Confirmation::Ack(None)) => Ok(()),
            Ok(Confirmation::Ack(Some(_))) => {
                // Someone deleted the queue or its binding: declare it again next time.
                p.declared.lock().unwrap_or_else(|e| e.into_inner()).remove(queue);
                Err(Outcome::Failed(BusError::Unavailable(format!(
                    "`{queue}` reached no queue (returned by the broker); it is declared again on the next try"
                ))))
            }
            Ok(Confirmation::Nack(_)) => {
                self.unknown_confirms.inc();
                Err(Outcome::Failed(BusError::Unavailable(format!(
                    "the broker could not store a message for `{queue}` (nack)"
                ))))
            }
            Ok(Confirmation::NotRequested) => Err(Outcome::Failed(BusError::Unavailable(
                "the publishing channel is not in confirm mode".into(),
            ))),
            Err(e) => {
                self.unknown_confirms.inc();
                self.drop_channel(p, &mut *self.publisher.lock().await);
                Err(Outcome::Failed(BusError::Unavailable(format!(
                    "no confirm for `{queue}` ({e}): the outcome is unknown"
                ))))
            }
        }
    }

    async fn announce_reconnect(&self, after: Duration) {
        let Some(connector) = &self.opts.status_connector else { return };
        let mut details = crate::message::Metadata::new();
        details.insert("down_ms".into(), serde_json::json!(after.as_millis() as u64));
        details.insert("reconnects".into(), serde_json::json!(self.publish_link.reconnects.get()));
        let status = Status {
            component: format!("{}.bus", self.opts.connection_name),
            status: StatusLevel::Ok,
            status_type: "bus_reconnected".into(),
            message: format!("reconnected to {} after {} ms", self.opts.display(), after.as_millis()),
            reasons: Vec::new(),
            details,
            timestamp: Timestamp::now(),
            helper_metadata: Default::default(),
            routing_metadata: Default::default(),
            extra: Default::default(),
        };
        let key = RoutingKey::status(connector).to_string();
        if let Err(e) = self.publish_raw(&key, &ascii_json(Message::from(status).to_json())).await {
            tracing::debug!(error = %e, "could not announce the reconnection");
        }
    }
}

/// Where a publish goes: a queue, declared with `arguments` (none: as legacy Vumi declares),
/// the message carrying `retries` in its header if set.
struct Target<'a> {
    queue: &'a str,
    arguments: Option<FieldTable>,
    retries: Option<u32>,
}

enum Outcome {
    /// The message did not reach the broker: it may be tried again at once.
    NotSent(BusError),
    /// It may or may not have: the caller decides.
    Failed(BusError),
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

struct Active {
    conn: Arc<Conn>,
    consumer: lapin::Consumer,
    channel: Channel,
}

struct AmqpConsumer {
    inner: Arc<Inner>,
    queue: String,
    failures: String,
    prefetch: u16,
    active: Option<Active>,
    /// A channel being opened, on its own task: `next` may be dropped at any await (a
    /// `select!` over two consumers drops the one that lost), and an open dropped half-way
    /// leaves a consumer at the broker that nobody reads, holding a whole prefetch of
    /// deliveries. The chaos suite found exactly that. So the open runs to its end on a task,
    /// and whichever call of `next` comes next takes its result.
    opening: Option<tokio::task::JoinHandle<Result<Active, BusError>>>,
    /// No new open before this (the backoff after a failed one).
    retry_at: Option<tokio::time::Instant>,
    /// The waits between failed opens, started afresh by a successful one.
    waits: crate::retry::Delays,
}

/// Open a consuming channel on `conn`: qos, declare, consume.
async fn open_channel(
    inner: Arc<Inner>,
    queue: String,
    prefetch: u16,
    conn: Arc<Conn>,
) -> Result<Active, BusError> {
    let tag =
        format!("{}-{}", inner.opts.connection_name, inner.consumer_tags.fetch_add(1, Ordering::Relaxed));
    let attempt = async {
        let channel = conn.connection.create_channel().await?;
        channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
        declare_exchange(&channel).await?;
        declare_queue(&channel, &queue).await?;
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                tag.into(),
                // Not exclusive: legacy workers and other hosts compete for the same queue.
                BasicConsumeOptions { no_ack: false, exclusive: false, ..Default::default() },
                FieldTable::default(),
            )
            .await?;
        Ok::<_, lapin::Error>((channel, consumer))
    };
    let Ok(attempt) = tokio::time::timeout(Duration::from_secs(10), attempt).await else {
        // Whatever the broker made of it, the connection goes, and everything on it.
        conn.broken.cancel();
        return Err(BusError::Unavailable(format!("consuming `{queue}` timed out; reconnecting")));
    };
    match attempt {
        Ok((channel, consumer)) => Ok(Active { conn, consumer, channel }),
        Err(e) if lapin_refused(&e) => Err(BusError::Refused(format!(
            "the broker refused consuming `{queue}` (declared durable, no arguments, as Vumi declares it): {e}"
        ))),
        Err(e) => {
            if !conn.connection.status().connected() {
                conn.broken.cancel();
            }
            Err(BusError::Unavailable(format!("cannot consume `{queue}`: {e}")))
        }
    }
}

/// Give up `a` before consuming on a new channel. A channel the broker still holds open keeps
/// its unacked deliveries (a whole prefetch) from every other consumer for as long as the
/// connection lives, so it is closed, and if that does not succeed at once, the whole
/// connection is replaced, which gives its deliveries back. On a task of its own, so that no
/// caller's cancellation can stop it half-way.
fn abandon(a: Active, queue: String) {
    tokio::spawn(async move {
        if !a.conn.connection.status().connected() {
            a.conn.broken.cancel();
            return;
        }
        let closed = a.channel.status().connected()
            && matches!(
                tokio::time::timeout(Duration::from_secs(2), a.channel.close(200, "reopening".into())).await,
                Ok(Ok(()))
            );
        if !closed {
            tracing::warn!(
                queue,
                "a consuming channel could not be closed; replacing its connection so that its deliveries go back to the queue"
            );
            a.conn.broken.cancel();
        }
    });
}

impl AmqpConsumer {
    fn new(inner: Arc<Inner>, key: &RoutingKey, prefetch: u16) -> Self {
        let waits = reconnect_schedule(&inner.opts).delays();
        let prefetch = prefetch.clamp(1, inner.opts.max_prefetch.max(1));
        Self {
            inner,
            queue: key.to_string(),
            failures: format!("{}.failures", key.connector),
            prefetch,
            active: None,
            opening: None,
            retry_at: None,
            waits,
        }
    }

    /// The open under way, or a new one (once the backoff allows and a connection is up).
    fn start_open(&mut self) -> &mut tokio::task::JoinHandle<Result<Active, BusError>> {
        let (inner, queue, prefetch, retry_at) =
            (self.inner.clone(), self.queue.clone(), self.prefetch, self.retry_at);
        self.opening.get_or_insert_with(|| {
            tokio::spawn(async move {
                if let Some(at) = retry_at {
                    tokio::time::sleep_until(at).await;
                }
                let conn = inner.consume_link.connected(None).await?;
                open_channel(inner, queue, prefetch, conn).await
            })
        })
    }

    /// A body that is not a Vumi message: to `<connector>.failures` with the reason, then
    /// acked, so the queue keeps flowing. On its own task, like every settlement that awaits.
    fn set_aside(&self, delivery: lapin::message::Delivery, error: String) {
        self.inner.undecodable.inc();
        tracing::warn!(
            queue = self.queue,
            failures = self.failures,
            error,
            bytes = delivery.data.len(),
            "a body that is not a Vumi message: set aside on the failures queue"
        );
        let failure = serde_json::json!({
            "message_type": "failure_message",
            "message": String::from_utf8_lossy(&delivery.data),
            "failure_code": "permanent",
            "reason": format!("undecodable body on `{}`: {error}", self.queue),
            "routing_key": self.queue,
            "timestamp": Timestamp::now().to_string(),
        });
        let body = ascii_json(serde_json::to_vec(&failure).unwrap_or_default());
        let (inner, failures, queue) = (self.inner.clone(), self.failures.clone(), self.queue.clone());
        tokio::spawn(async move {
            match inner.publish_raw(&failures, &body).await {
                Ok(()) => {
                    let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                }
                Err(e) => {
                    tracing::warn!(queue, error = %e, "cannot set an undecodable body aside; it stays on its queue");
                    let _ = delivery.acker.nack(BasicNackOptions { requeue: true, multiple: false }).await;
                }
            }
        });
    }
}

impl Drop for AmqpConsumer {
    fn drop(&mut self) {
        // Stopped consuming: the channel goes (and its unsettled deliveries back to the queue),
        // including one still being opened.
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        if let Some(a) = self.active.take() {
            abandon(a, self.queue.clone());
        }
        if let Some(opening) = self.opening.take() {
            let queue = self.queue.clone();
            rt.spawn(async move {
                if let Ok(Ok(a)) = opening.await {
                    abandon(a, queue);
                }
            });
        }
    }
}

#[async_trait]
impl Consumer for AmqpConsumer {
    async fn next(&mut self) -> Option<Delivery> {
        // Every await here may be where a caller's `select!` drops this call: state lives in
        // `self`, and work that must finish runs on tasks.
        loop {
            if self.inner.closed.is_cancelled() {
                return None;
            }
            if self.active.is_none() {
                let closed = self.inner.closed.clone();
                let opened = tokio::select! {
                    r = self.start_open() => r,
                    () = closed.cancelled() => return None,
                };
                self.opening = None;
                match opened {
                    Ok(Ok(a)) => {
                        self.waits = reconnect_schedule(&self.inner.opts).delays();
                        self.retry_at = None;
                        self.active = Some(a);
                    }
                    Ok(Err(BusError::Closed)) => return None,
                    Ok(Err(e)) => {
                        tracing::warn!(queue = self.queue, error = %e, "cannot consume yet; trying again");
                        let wait = self.waits.next().unwrap_or(self.inner.opts.reconnect_max);
                        self.retry_at = Some(tokio::time::Instant::now() + wait);
                        continue;
                    }
                    Err(_) => continue,
                }
            }
            let Some(active) = self.active.as_mut() else { continue };
            let item = tokio::select! {
                d = active.consumer.next() => d,
                () = self.inner.closed.cancelled() => return None,
                () = active.conn.broken.cancelled() => None,
            };
            match item {
                Some(Ok(d)) => match Message::from_json(&d.data) {
                    Ok(message) => {
                        let retries = retries_of(&d.properties);
                        let settle = AmqpSettle {
                            acker: d.acker,
                            settling: self.inner.settling.clone(),
                            inner: self.inner.clone(),
                            queue: self.queue.clone(),
                        };
                        return Some(
                            Delivery::new(message, d.redelivered, Box::new(settle)).with_retries(retries),
                        );
                    }
                    Err(e) => self.set_aside(d, e.to_string()),
                },
                Some(Err(e)) => {
                    tracing::warn!(queue = self.queue, error = %e, "the consuming channel failed; deliveries in flight come back from the broker");
                    if let Some(a) = self.active.take() {
                        abandon(a, self.queue.clone());
                    }
                }
                None => {
                    // Cancelled by the broker (queue deleted) or the connection went: again.
                    if let Some(a) = self.active.take() {
                        abandon(a, self.queue.clone());
                    }
                }
            }
        }
    }
}

struct AmqpSettle {
    acker: lapin::Acker,
    settling: Arc<AtomicUsize>,
    inner: Arc<Inner>,
    queue: String,
}

impl AmqpSettle {
    fn send(self, requeue: Option<bool>) {
        // `Settle` is synchronous (the embedded bus settles in place); the broker's answer is
        // awaited on a task. An ack whose channel is gone acks nothing (lapin poisons it): the
        // broker has requeued that delivery already.
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        self.settling.fetch_add(1, Ordering::SeqCst);
        rt.spawn(async move {
            let r = match requeue {
                None => self.acker.ack(BasicAckOptions::default()).await,
                Some(requeue) => self.acker.nack(BasicNackOptions { requeue, multiple: false }).await,
            };
            match r {
                Ok(true) => {}
                Ok(false) => tracing::debug!("not settled: its channel is gone, so the broker redelivers it"),
                Err(e) => tracing::debug!(error = %e, "not settled; the broker redelivers it"),
            }
            self.settling.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

impl Settle for AmqpSettle {
    fn ack(self: Box<Self>) {
        self.send(None);
    }

    fn nack(self: Box<Self>, message: Option<Message>) {
        // A requeue puts back the body as the broker holds it; without requeue the caller set
        // the message aside already, so it is done with (an ack, not a dead-letter).
        match message {
            Some(_) => self.send(Some(true)),
            None => self.send(None),
        }
    }

    fn defer<'a>(
        &'a self,
        message: &'a Message,
        retries: u32,
    ) -> BoxFuture<'a, Result<Option<Duration>, BusError>> {
        Box::pin(async move {
            let Some(&delay) = self.inner.opts.retry_tiers.get(retries as usize) else { return Ok(None) };
            let tier = format!("{}.retry.{}", self.queue, super::tier_label(delay));
            let target = Target {
                queue: &tier,
                arguments: Some(tier_arguments(&self.queue, delay)),
                retries: Some(retries + 1),
            };
            self.inner.publish_to(&target, &ascii_json(message.to_json())).await?;
            Ok(Some(delay))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::conformance;

    #[test]
    fn json_is_escaped_to_ascii_as_python_writes_it() {
        let body = "{\"content\":\"caf\u{e9} \u{1F600}\"}".as_bytes().to_vec();
        let out = ascii_json(body);
        assert_eq!(std::str::from_utf8(&out).expect("ascii"), r#"{"content":"caf\u00e9 \ud83d\ude00"}"#);
        let back: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(back["content"], "caf\u{e9} \u{1F600}");
    }

    #[test]
    fn the_password_never_shows() {
        let o = AmqpOptions { password: "s3cret".into(), vhost: "/develop".into(), ..Default::default() };
        assert_eq!(o.display(), "amqp://guest@127.0.0.1:5672/%2fdevelop");
        assert!(!format!("{o:?}").contains("s3cret"));
    }

    /// The shared broker on this machine; a test fails (never skips) when it is not running.
    pub(crate) async fn shared() -> AmqpBus {
        let opts = AmqpOptions { connection_name: "vumi-test".into(), ..Default::default() };
        match AmqpBus::connect(opts).await {
            Ok(b) => b,
            Err(e) => panic!(
                "{e}\nThese tests need RabbitMQ on 127.0.0.1:5672 (guest/guest): start it with `rabbitmq-server -detached` or `systemctl start rabbitmq-server`"
            ),
        }
    }

    /// Run `check` and delete `queues` whether it passed or not.
    async fn cleaning<F>(bus: Arc<AmqpBus>, queues: Vec<String>, check: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let outcome = tokio::spawn(check).await;
        for q in queues {
            let _ = bus.delete_queue(&q).await;
        }
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn amqp_bus_passes_the_conformance_suite() {
        let bus = Arc::new(shared().await);
        let run = conformance::new_run();
        let queues = conformance::keys(&run).iter().map(ToString::to_string).collect();
        let (b, r) = (bus.clone(), run.clone());
        cleaning(bus.clone(), queues, async move { conformance::run_all(&*b, &r).await }).await;
    }

    /// The retry path's tiers are queues with a TTL that dead-letter back to the input; a
    /// final failure goes to `<connector>.failures`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_retry_path_waits_in_tier_queues_and_final_failures_go_to_the_failures_queue() {
        let opts = AmqpOptions {
            connection_name: "vumi-test-retry".into(),
            retry_tiers: conformance::SHORT_TIERS.to_vec(),
            ..Default::default()
        };
        let bus = Arc::new(
            AmqpBus::connect(opts).await.expect("RabbitMQ on 127.0.0.1:5672 (`rabbitmq-server -detached`)"),
        );
        let run = conformance::new_run();
        let failures_key = raw_key(&run, "fail");
        let failures_queue = format!("{}.failures", failures_key.connector);
        let mut queues: Vec<String> = conformance::keys(&run).iter().map(ToString::to_string).collect();
        queues.extend(conformance::retry_queues(&run));
        queues.push(failures_queue.clone());
        let b = bus.clone();
        cleaning(bus.clone(), queues, async move {
            conformance::retry_path(&*b, &run).await;
            let args = rabbitmqctl(&["list_queues", "name", "arguments"]).await;
            let tier = &conformance::retry_queues(&run)[0];
            let row = args.lines().find(|l| l.starts_with(tier.as_str())).unwrap_or_else(|| panic!("no tier queue `{tier}`: {args}"));
            for want in ["x-message-ttl", "300", "x-dead-letter-exchange", "vumi", "x-dead-letter-routing-key"] {
                assert!(row.contains(want), "the tier queue's arguments name {want}: {row}");
            }
            let failure = serde_json::json!({ "message_type": "failure_message", "failure_code": "temporary", "reason": "caf\u{e9}", "message": {} });
            b.publish_failure(failures_key.connector.as_str(), &failure).await.expect("publish a failure");
            let conn = Connection::connect("amqp://127.0.0.1:5672/%2f", ConnectionProperties::default()).await.expect("raw connection");
            let ch = conn.create_channel().await.expect("channel");
            let got = ch.basic_get(failures_queue.as_str().into(), lapin::options::BasicGetOptions { no_ack: true }).await.expect("get").expect("confirmed before it returned");
            assert!(got.delivery.data.is_ascii(), "ASCII JSON, as Vumi writes it");
            let v: serde_json::Value = serde_json::from_slice(&got.delivery.data).expect("JSON");
            assert_eq!(v, failure);
            let _ = conn.close(200, "done".into()).await;
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closing_the_amqp_bus_ends_its_consumers() {
        let bus = Arc::new(shared().await);
        let cleaner = Arc::new(shared().await);
        let run = conformance::new_run();
        let queues = conformance::keys(&run).iter().map(ToString::to_string).collect();
        let (b, r) = (bus.clone(), run.clone());
        cleaning(cleaner, queues, async move { conformance::close_ends_consumers(&*b, &r).await }).await;
    }

    fn raw_key(run: &str, what: &str) -> RoutingKey {
        RoutingKey::inbound(&format!("amqp-{}-{what}", &run[..12]).parse().expect("name"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bodies_are_persistent_ascii_and_a_bad_body_is_set_aside_while_the_queue_flows() {
        let bus = Arc::new(shared().await);
        let run = conformance::new_run();
        let key = raw_key(&run, "bad");
        let failures = format!("{}.failures", key.connector);
        let queues = vec![key.to_string(), failures.clone()];
        let b = bus.clone();
        cleaning(bus.clone(), queues, async move {
            let mut c = b.consume(&key, 10).await.expect("consume");
            // What a peer might publish: not JSON, then JSON that is not a message, then a good one.
            b.publish_raw(&key.to_string(), b"not json {").await.expect("publish");
            b.publish_raw(&key.to_string(), br#"{"message_type":"user_message"}"#).await.expect("publish");
            let good = crate::message::UserMessage::inbound(
                "t",
                "sms",
                "+27831234567",
                "12345",
                Some("caf\u{e9} \u{1F600}".into()),
                None,
            );
            b.publish(&key, good.clone().into()).await.expect("publish");
            let d = tokio::time::timeout(Duration::from_secs(10), c.next())
                .await
                .expect("the good one in time")
                .expect("open");
            assert_eq!(d.message.id(), good.message_id, "the bad bodies did not stall the queue");
            d.ack();
            // Both bad bodies are on the failures queue, each with its reason.
            let conn = Connection::connect("amqp://127.0.0.1:5672/%2f", ConnectionProperties::default())
                .await
                .expect("raw connection");
            let ch = conn.create_channel().await.expect("channel");
            let mut reasons = Vec::new();
            for _ in 0..2 {
                let got = loop {
                    if let Some(m) = ch
                        .basic_get(failures.as_str().into(), lapin::options::BasicGetOptions { no_ack: true })
                        .await
                        .expect("get")
                    {
                        break m;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                };
                assert!(got.delivery.data.is_ascii());
                assert_eq!(got.delivery.properties.delivery_mode(), &Some(2), "persistent");
                let v: serde_json::Value =
                    serde_json::from_slice(&got.delivery.data).expect("a failure message is JSON");
                assert_eq!(v["message_type"], "failure_message");
                assert_eq!(v["failure_code"], "permanent");
                reasons.push(v["reason"].as_str().expect("reason").to_owned());
            }
            assert!(
                reasons[0].contains("undecodable body") && reasons[1].contains("undecodable body"),
                "{reasons:?}"
            );
            assert!(
                reasons.iter().any(|r| r.contains("missing field `message_version`")),
                "the reason names the missing field: {reasons:?}"
            );
            // And what we publish is ASCII with delivery mode 2 only.
            b.publish(&key, good.clone().into()).await.expect("publish");
            drop(c);
            let got = loop {
                if let Some(m) = ch
                    .basic_get(
                        key.to_string().as_str().into(),
                        lapin::options::BasicGetOptions { no_ack: true },
                    )
                    .await
                    .expect("get")
                {
                    break m;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            assert!(got.delivery.data.is_ascii(), "{}", String::from_utf8_lossy(&got.delivery.data));
            assert!(String::from_utf8_lossy(&got.delivery.data).contains(r"caf\u00e9 \ud83d\ude00"));
            let p = &got.delivery.properties;
            assert_eq!(p.delivery_mode(), &Some(2));
            assert_eq!(
                (p.content_type(), p.headers(), p.message_id()),
                (&None, &None, &None),
                "no property but the delivery mode, as Vumi publishes"
            );
            let _ = conn.close(200, "done".into()).await;
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queue_declared_with_other_flags_is_refused_with_the_reason() {
        let bus = Arc::new(shared().await);
        let run = conformance::new_run();
        let key = raw_key(&run, "flags");
        let b = bus.clone();
        let k = key.clone();
        cleaning(bus.clone(), vec![key.to_string()], async move {
            let conn = Connection::connect("amqp://127.0.0.1:5672/%2f", ConnectionProperties::default())
                .await
                .expect("raw connection");
            let ch = conn.create_channel().await.expect("channel");
            ch.queue_declare(
                k.to_string().as_str().into(),
                QueueDeclareOptions { durable: false, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .expect("declare transient");
            let err = b
                .publish(&k, crate::message::UserMessage::inbound("t", "sms", "a", "b", None, None).into())
                .await
                .expect_err("refused");
            assert!(matches!(err, BusError::Refused(_)) && !err.is_retryable(), "{err}");
            assert!(
                err.to_string().contains("PRECONDITION_FAILED") || err.to_string().contains("inequivalent"),
                "{err}"
            );
            let _ = conn.close(200, "done".into()).await;
        })
        .await;
    }

    /// Have the broker close every connection whose name contains `name` (as a broker restart
    /// or a network fault does), through `rabbitmqctl`. Touches no other client's connections.
    async fn broker_closes(name: &str) -> usize {
        let out = tokio::process::Command::new("rabbitmqctl")
            .args(["-q", "list_connections", "pid", "client_properties"])
            .output()
            .await
            .expect("rabbitmqctl (the RabbitMQ server's CLI) is needed for this test");
        let text = String::from_utf8_lossy(&out.stdout);
        let pids: Vec<&str> =
            text.lines().filter(|l| l.contains(name)).filter_map(|l| l.split_whitespace().next()).collect();
        for pid in &pids {
            let st = tokio::process::Command::new("rabbitmqctl")
                .args(["-q", "close_connection", pid, "test: broker closes"])
                .status()
                .await
                .expect("rabbitmqctl");
            assert!(st.success(), "close_connection {pid}");
        }
        pids.len()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_the_broker_drops_the_connections_the_bus_reconnects_and_what_was_in_flight_comes_back() {
        let run = conformance::new_run();
        let name = format!("vumi-reconnect-{}", &run[..8]);
        let opts = AmqpOptions {
            connection_name: name.clone(),
            reconnect_initial: Duration::from_millis(50),
            ..Default::default()
        };
        let bus = Arc::new(match AmqpBus::connect(opts).await {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        });
        let key = raw_key(&run, "reconnect");
        let b = bus.clone();
        cleaning(bus.clone(), vec![key.to_string()], async move {
            let before =
                (metrics().bus_reconnects("publish").get(), metrics().bus_reconnects("consume").get());
            let mut c = b.consume(&key, 10).await.expect("consume");
            let m = crate::message::UserMessage::inbound(
                "t",
                "sms",
                "+27831234567",
                "12345",
                Some("one".into()),
                None,
            );
            b.publish(&key, m.clone().into()).await.expect("publish");
            let held = tokio::time::timeout(Duration::from_secs(10), c.next())
                .await
                .expect("in time")
                .expect("open");
            assert!(!held.redelivered);
            assert!(b.health().is_ok());
            assert_eq!(broker_closes(&name).await, 2, "one publishing and one consuming connection");
            // The delivery in hand was on the dropped channel: the broker put it back, and it
            // comes again, flagged; acking the stale one acks nothing.
            held.ack();
            let again = tokio::time::timeout(Duration::from_secs(20), c.next())
                .await
                .expect("redelivered after the reconnect")
                .expect("open");
            assert_eq!(again.message.id(), m.message_id);
            assert!(again.redelivered, "flagged as a redelivery");
            again.ack();
            // Publishing works again on a new connection, and consuming goes on.
            let m2 = crate::message::UserMessage::inbound(
                "t",
                "sms",
                "+27831234567",
                "12345",
                Some("two".into()),
                None,
            );
            b.publish(&key, m2.clone().into()).await.expect("publish after the reconnect");
            let d = tokio::time::timeout(Duration::from_secs(10), c.next())
                .await
                .expect("in time")
                .expect("open");
            assert_eq!(d.message.id(), m2.message_id);
            d.ack();
            let after =
                (metrics().bus_reconnects("publish").get(), metrics().bus_reconnects("consume").get());
            assert!(after.0 > before.0 && after.1 > before.1, "counted: {before:?} -> {after:?}");
            assert!(b.health().is_ok(), "{:?}", b.health());
        })
        .await;
    }

    /// A caller may drop `next` at any await (an app worker waits on two consumers in one
    /// `select!`): polled under constant cancellation while it reconnects, a consumer must
    /// strand no delivery in a half-opened channel. Before the consumer was cancel-safe, each
    /// dropped reopen left a broker-side consumer holding up to a prefetch nobody read.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_consumer_dropped_mid_call_while_it_reconnects_strands_no_delivery() {
        let run = conformance::new_run();
        let name = format!("vumi-cancel-{}", &run[..8]);
        let opts = AmqpOptions {
            connection_name: name.clone(),
            reconnect_initial: Duration::from_millis(20),
            ..Default::default()
        };
        let bus = Arc::new(
            AmqpBus::connect(opts).await.expect("RabbitMQ on 127.0.0.1:5672 (`rabbitmq-server -detached`)"),
        );
        let key = raw_key(&run, "cancel");
        let b = bus.clone();
        cleaning(bus.clone(), vec![key.to_string()], async move {
            let mut c = b.consume(&key, 50).await.expect("consume");
            let n = 20;
            for i in 0..n {
                let m = crate::message::UserMessage::inbound(
                    "t",
                    "sms",
                    "+27831234567",
                    "12345",
                    Some(i.to_string()),
                    None,
                );
                b.publish(&key, m.into()).await.expect("publish");
            }
            assert_eq!(broker_closes(&name).await, 2, "one publishing and one consuming connection");
            let mut got = std::collections::BTreeSet::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while got.len() < n {
                assert!(
                    Instant::now() < deadline,
                    "only {} of {n} delivered after the reconnect: the rest are stranded",
                    got.len()
                );
                // So short that nearly every call is dropped half-way, as a lost `select!` branch is.
                if let Ok(Some(d)) = tokio::time::timeout(Duration::from_micros(300), c.next()).await {
                    if let Message::User(m) = &d.message {
                        got.insert(m.content.clone().unwrap_or_default());
                    }
                    d.ack();
                }
            }
        })
        .await;
    }

    async fn rabbitmqctl(args: &[&str]) -> String {
        let out = tokio::process::Command::new("rabbitmqctl")
            .arg("-q")
            .args(args)
            .output()
            .await
            .expect("rabbitmqctl");
        assert!(out.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Quorum queues for clusters without breaking legacy declarations: a vhost whose default
    /// queue type is quorum (RabbitMQ 3.10.8+) turns our no-argument declarations, which are
    /// legacy Vumi's, into quorum queues, and the whole conformance suite, the retry path
    /// included, passes on them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_vhost_defaulting_to_quorum_queues_takes_legacy_declarations_and_passes_the_suite() {
        let run = conformance::new_run();
        let vhost = format!("vumi-quorum-{}", &run[..8]);
        rabbitmqctl(&["add_vhost", &vhost, "--default-queue-type", "quorum"]).await;
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]).await;
        let opts = AmqpOptions {
            vhost: vhost.clone(),
            connection_name: "vumi-quorum-test".into(),
            retry_tiers: conformance::SHORT_TIERS.to_vec(),
            ..Default::default()
        };
        let outcome = tokio::spawn(async move {
            let bus = AmqpBus::connect(opts).await.expect("connect to the quorum vhost");
            conformance::run_all(&bus, &run).await;
            // The retry path's tier queues are quorum queues there too, TTL and dead-lettering
            // included.
            conformance::retry_path(&bus, &run).await;
            bus.close().await;
        })
        .await;
        let types = rabbitmqctl(&["list_queues", "-p", &vhost, "name", "type"]).await;
        rabbitmqctl(&["delete_vhost", &vhost]).await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
        let rows: Vec<&str> = types.lines().filter(|l| l.contains("conf-")).collect();
        assert!(rows.len() >= 6, "the suite's queues: {types}");
        assert!(
            rows.iter().all(|r| r.split_whitespace().nth(1) == Some("quorum")),
            "every queue is a quorum queue: {types}"
        );
    }
}
