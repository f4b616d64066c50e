//! One bind to an SMSC: connect, bind, keep it alive, send what is queued within the window and
//! the rate, answer what the SMSC sends, and reconnect when it is lost.
//!
//! A [`Link`] outlives its TCP connections. What callers submit waits in the link's queue
//! (never in a dead socket) until a connection is bound; the transport stops taking outbound
//! messages while no link is bound, so the queue holds at most what was taken before.
//!
//! **Flow control is per bind and counted in PDUs**: a window of `submit_sm` in flight (a
//! semaphore permit per PDU, freed by its response, a `generic_nack`, a timeout or the loss of
//! the link), a rate (GCRA, `governor`), and a pause of the whole bind after `ESME_RTHROTTLED`
//! or `ESME_RMSGQFUL`, after which the refused PDUs go first, in the order they were first
//! sent. The caller sees only a final outcome, so a throttled part keeps its place and its
//! message its receipt mapping.
//!
//! **At least once, precisely**: a `submit_sm` in flight when the link drops, or whose response
//! timed out (with `on_timeout = "retry"`), is sent again after the rebind, first. The SMSC may
//! have taken the first copy, so each resend is a possible duplicate: they are bounded by the
//! window, counted (`vumi_smpp_events_total{kind="resent"}`) and logged.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use prometheus_client::metrics::counter::Counter;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::wire::{self, Bind, BindKind, Body, Codec, Frame, Pdu, Sm, status};
use crate::telemetry::throttle::Throttle;

/// How one link behaves (from the transport's table).
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Name for logs and metrics: the transport's.
    pub transport: String,
    /// Which link of the transport (`0-trx`, `1-tx`, ...).
    pub label: String,
    /// The SMSC, `host:port`.
    pub address: String,
    /// The bind's account fields.
    pub bind: Bind,
    /// Transmitter, receiver or transceiver.
    pub kind: BindKind,
    /// `submit_sm` in flight at once.
    pub window: usize,
    /// `submit_sm` per second, 0 for no limit.
    pub tps: u32,
    /// Pause after a throttling answer.
    pub throttle_delay: Duration,
    /// How long a request waits for its response.
    pub response_timeout: Duration,
    /// Resend a `submit_sm` whose response never came (else it fails).
    pub retry_on_timeout: bool,
    /// Sends of one PDU beyond the first before it fails.
    pub max_resends: u32,
    /// `enquire_link` after this long without reading anything.
    pub enquire_link: Duration,
    /// First reconnection wait.
    pub reconnect_min: Duration,
    /// Longest reconnection wait.
    pub reconnect_max: Duration,
    /// Largest PDU read.
    pub max_pdu: usize,
}

/// What became of a submitted PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The SMSC took it, under this id.
    Accepted(String),
    /// The SMSC refused it with a status that is not throttling.
    Rejected {
        /// The `command_status`.
        status: u32,
        /// How it was refused, in words.
        reason: String,
    },
    /// No response after every send allowed.
    TimedOut {
        /// How many times it was sent.
        sends: u32,
    },
    /// The link stopped for good (the host is stopping) with it unsent or unanswered.
    Stopped,
}

/// Handles what the SMSC delivers (`deliver_sm`): the `command_status` of the answer, sent only
/// once the handler returns (so `ESME_ROK` means the message is safe with us).
#[async_trait::async_trait]
pub trait Deliver: Send + Sync + 'static {
    /// Take `sm`; the status to answer it with.
    async fn deliver(&self, sm: Sm) -> u32;
}

struct Job {
    /// The `submit_sm`, encoded (its sequence number is written per send).
    pdu: Arc<[u8]>,
    /// Sends so far.
    sends: u32,
    /// Place in the order of first submission: refused and resent PDUs go back in this order.
    order: u64,
    reply: oneshot::Sender<Outcome>,
    /// Where the ids of earlier sends go if their responses come after all (see
    /// [`Link::submit_tracked`]).
    late: Option<mpsc::UnboundedSender<String>>,
}

#[derive(Default)]
struct Queue {
    /// To send again, first, in `order`.
    again: VecDeque<Job>,
    /// New.
    fresh: VecDeque<Job>,
    next_order: u64,
}

impl Queue {
    fn pop(&mut self) -> Option<Job> {
        self.again.pop_front().or_else(|| self.fresh.pop_front())
    }

    fn again(&mut self, job: Job) {
        let at = self.again.partition_point(|j| j.order < job.order);
        self.again.insert(at, job);
    }
}

/// Counters one link holds.
struct Counters {
    bound: Counter,
    bind_failed: Counter,
    link_lost: Counter,
    bad_frame: Counter,
    resent: Counter,
    late_response: Counter,
    throttled: Counter,
    timeout: Counter,
}

/// A bind to an SMSC, kept up until shutdown.
pub struct Link {
    config: LinkConfig,
    queue: Mutex<Queue>,
    queued: Notify,
    bound: watch::Sender<bool>,
    stopped: AtomicBool,
    counters: Counters,
}

type Rate = governor::DefaultDirectRateLimiter;

enum Ended {
    /// Lost, or unbound by the SMSC: reconnect.
    Reconnect(String),
    /// Shutdown: done.
    Shutdown,
}

impl Link {
    /// A link (not yet connected: see [`Link::run`]).
    pub fn new(config: LinkConfig) -> Arc<Self> {
        let m = crate::telemetry::metrics::metrics();
        let t = config.transport.as_str();
        let counters = Counters {
            bound: m.smpp(t, "bound"),
            bind_failed: m.smpp(t, "bind_failed"),
            link_lost: m.smpp(t, "link_lost"),
            bad_frame: m.smpp(t, "bad_frame"),
            resent: m.smpp(t, "resent"),
            late_response: m.smpp(t, "late_response"),
            throttled: m.smpp(t, "throttled"),
            timeout: m.smpp(t, "timeout"),
        };
        Arc::new(Self {
            config,
            queue: Mutex::default(),
            queued: Notify::new(),
            bound: watch::channel(false).0,
            stopped: AtomicBool::new(false),
            counters,
        })
    }

    /// Its kind of bind.
    pub fn kind(&self) -> BindKind {
        self.config.kind
    }

    /// Whether it is bound now.
    pub fn is_bound(&self) -> bool {
        *self.bound.borrow()
    }

    /// Watch its bound state.
    pub fn watch_bound(&self) -> watch::Receiver<bool> {
        self.bound.subscribe()
    }

    /// PDUs waiting to be sent.
    pub fn queued(&self) -> usize {
        let q = self.lock();
        q.again.len() + q.fresh.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `sm` as the octets of a `submit_sm` for [`Link::submit_encoded`] (its sequence number
    /// is written per send), or why it cannot be sent.
    pub fn encode(sm: Sm) -> Result<Arc<[u8]>, wire::EncodeError> {
        wire::encode(&Pdu::request(0, Body::SubmitSm(Box::new(sm)))).map(Arc::from)
    }

    /// Send `sm` as a `submit_sm` (when bound, within the window and rate); its final outcome.
    pub async fn submit(&self, sm: Sm) -> Outcome {
        match Self::encode(sm) {
            Ok(pdu) => self.submit_encoded(pdu).await,
            Err(e) => Outcome::Rejected { status: status::RSYSERR, reason: e.to_string() },
        }
    }

    /// [`Link::submit`] for a `submit_sm` already encoded by [`Link::encode`].
    pub async fn submit_encoded(&self, pdu: Arc<[u8]>) -> Outcome {
        self.queue(pdu, None).await
    }

    /// [`Link::submit_encoded`], with the ids of its copies: a send that timed out and was sent
    /// again may still be answered on the same connection, and then the SMSC holds two
    /// messages, each with its own id and receipt. Those late ids arrive on the receiver, which
    /// ends once no late answer can come.
    pub async fn submit_tracked(&self, pdu: Arc<[u8]>) -> (Outcome, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (self.queue(pdu, Some(tx)).await, rx)
    }

    async fn queue(&self, pdu: Arc<[u8]>, late: Option<mpsc::UnboundedSender<String>>) -> Outcome {
        let (reply, rx) = oneshot::channel();
        if self.stopped.load(Ordering::Acquire) {
            return Outcome::Stopped;
        }
        {
            let mut q = self.lock();
            let order = q.next_order;
            q.next_order += 1;
            q.fresh.push_back(Job { pdu, sends: 0, order, reply, late });
        }
        self.queued.notify_one();
        rx.await.unwrap_or(Outcome::Stopped)
    }

    /// Keep the link up until `shutdown`: connect, bind, serve, and reconnect with a jittered
    /// doubling back-off (four times longer after `ESME_RALYBND` or `ESME_RBINDFAIL`, which say
    /// the SMSC still holds our last bind or is refusing binds for now).
    pub async fn run(self: Arc<Self>, deliver: Arc<dyn Deliver>, shutdown: CancellationToken) {
        let c = &self.config;
        let schedule =
            crate::retry::Retry::forever(c.reconnect_min, c.reconnect_max, format!("smpp:{}", c.transport));
        let mut waits = schedule.delays();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let longer = match self.connect(&shutdown).await {
                Ok((reader, writer)) => {
                    waits = schedule.delays();
                    self.counters.bound.inc();
                    tracing::info!(
                        transport = c.transport,
                        link = c.label,
                        address = c.address,
                        kind = c.kind.name(),
                        "SMPP bound"
                    );
                    // `send_replace`: `send` leaves the value unchanged while nobody subscribes.
                    self.bound.send_replace(true);
                    let ended = self.serve(reader, writer, deliver.clone(), &shutdown).await;
                    self.bound.send_replace(false);
                    match ended {
                        Ended::Shutdown => break,
                        Ended::Reconnect(why) => {
                            self.counters.link_lost.inc();
                            tracing::warn!(
                                transport = c.transport,
                                link = c.label,
                                reason = why,
                                "SMPP link lost; reconnecting"
                            );
                        }
                    }
                    false
                }
                Err((why, longer)) => {
                    self.counters.bind_failed.inc();
                    static LOG: Throttle = Throttle::with_burst(Duration::from_secs(10), 5);
                    if let Some(more) = LOG.hit() {
                        tracing::warn!(
                            transport = c.transport,
                            link = c.label,
                            address = c.address,
                            reason = why,
                            more,
                            "SMPP bind failed; retrying"
                        );
                    }
                    longer
                }
            };
            // Jittered (binds of many links do not stampede together); a lengthened wait is
            // still at most the longest one.
            let wait = waits.next().unwrap_or(c.reconnect_max);
            let sleep = if longer { (wait * 4).min(c.reconnect_max.max(wait)) } else { wait };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(sleep) => {}
            }
        }
        self.stopped.store(true, Ordering::Release);
        let mut q = self.lock();
        while let Some(job) = q.pop() {
            let _ = job.reply.send(Outcome::Stopped);
        }
    }

    async fn connect(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<(FramedRead<tokio::net::tcp::OwnedReadHalf, Codec>, OwnedWriteHalf), (String, bool)> {
        let c = &self.config;
        let timeout = c.response_timeout;
        let stream = tokio::select! {
            () = shutdown.cancelled() => return Err(("shutting down".into(), false)),
            r = tokio::time::timeout(timeout, TcpStream::connect(&c.address)) => match r {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err((format!("cannot connect to {}: {e}", c.address), false)),
                Err(_) => return Err((format!("no connection to {} within {} ms", c.address, timeout.as_millis()), false)),
            },
        };
        let _ = stream.set_nodelay(true);
        let (read, mut write) = stream.into_split();
        let mut reader = FramedRead::new(read, Codec::new(c.max_pdu));
        let bind = wire::encode(&Pdu::request(1, Body::Bind(c.kind, c.bind.clone())))
            .map_err(|e| (e.to_string(), false))?;
        write.write_all(&bind).await.map_err(|e| (format!("cannot send the bind: {e}"), false))?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let frame = tokio::select! {
                () = shutdown.cancelled() => return Err(("shutting down".into(), false)),
                f = tokio::time::timeout_at(deadline, reader.next()) => f,
            };
            match frame {
                Err(_) => return Err((format!("no bind response within {} ms", timeout.as_millis()), false)),
                Ok(None) => {
                    return Err(("the SMSC closed the connection before answering the bind".into(), false));
                }
                Ok(Some(Err(e))) => return Err((format!("reading the bind response: {e}"), false)),
                Ok(Some(Ok(Frame::Pdu(p)))) => match p.body {
                    Body::BindResp(..) | Body::GenericNack if p.sequence == 1 => {
                        if p.status == status::OK && matches!(p.body, Body::BindResp(..)) {
                            return Ok((reader, write));
                        }
                        let longer = matches!(p.status, status::RALYBND | status::RBINDFAIL);
                        return Err((
                            format!(
                                "the SMSC refused the bind: {} (0x{:08X})",
                                wire::status_name(p.status),
                                p.status
                            ),
                            longer,
                        ));
                    }
                    Body::EnquireLink => {
                        let resp =
                            wire::encode(&Pdu::response(p.sequence, status::OK, Body::EnquireLinkResp))
                                .unwrap_or_default();
                        let _ = write.write_all(&resp).await;
                    }
                    _ => {}
                },
                Ok(Some(Ok(Frame::Bad(b)))) => {
                    if b.sequence == 1 && b.command_id & wire::id::RESP != 0 {
                        return Err((format!("the bind response did not decode: {}", b.reason), false));
                    }
                }
            }
        }
    }

    /// Serve one bound connection until it is lost, unbound, or the host stops.
    async fn serve(
        &self,
        mut reader: FramedRead<tokio::net::tcp::OwnedReadHalf, Codec>,
        writer: OwnedWriteHalf,
        deliver: Arc<dyn Deliver>,
        shutdown: &CancellationToken,
    ) -> Ended {
        let c = &self.config;
        let (out, out_rx) = mpsc::unbounded_channel::<Out>();
        let write_task = tokio::spawn(write_loop(writer, out_rx, c.transport.clone()));
        let mut s = Session {
            link: self,
            out,
            deliver,
            window: Arc::new(Semaphore::new(c.window.max(1))),
            rate: NonZeroU32::new(c.tps)
                .map(|n| governor::RateLimiter::direct(governor::Quota::per_second(n))),
            inflight: HashMap::new(),
            stale: HashMap::new(),
            next_seq: 1,
            paused_until: None,
            last_read: Instant::now(),
            enquiring: None,
            draining: false,
        };
        let mut tick = tokio::time::interval(
            Duration::from_millis(50).min(c.response_timeout / 2).max(Duration::from_millis(5)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ended = loop {
            let can_send = c.kind.sends() && !s.draining;
            let step = tokio::select! {
                biased;
                () = shutdown.cancelled(), if !s.draining => {
                    // Let what is in flight be answered, then unbind.
                    s.draining = true;
                    None
                }
                frame = reader.next() => {
                    // Take every frame already read in one go: one pass of this loop per
                    // burst, not per PDU.
                    let mut step = s.on_frame(frame);
                    while step.is_none() {
                        match reader.next().now_or_never() {
                            Some(frame) => step = s.on_frame(frame),
                            None => break,
                        }
                    }
                    step
                }
                job = self.next_job(&s.window, s.rate.as_ref(), s.paused_until), if can_send => s.send(job),
                _ = tick.tick() => {
                    if write_task.is_finished() {
                        Some(Ended::Reconnect("write error".into()))
                    } else {
                        s.on_tick()
                    }
                }
            };
            if let Some(ended) = step {
                break ended;
            }
            if s.draining && s.inflight.is_empty() {
                let seq = s.seq();
                break self.unbind(&mut reader, &s.out, seq).await;
            }
        };
        let Session { out, inflight, .. } = s;
        drop(out);
        // In flight on a connection that is gone: sent again after the rebind, first, unless
        // sent too often already. (At shutdown the drain above left nothing here, or the
        // link is stopping and they are answered `Stopped`.)
        let mut requeued = 0;
        for (_, (job, _permit, _)) in inflight {
            if matches!(ended, Ended::Shutdown) {
                let _ = job.reply.send(Outcome::Stopped);
            } else if job.sends > c.max_resends {
                let _ = job.reply.send(Outcome::TimedOut { sends: job.sends });
            } else {
                requeued += 1;
                self.lock().again(job);
            }
        }
        if requeued > 0 {
            tracing::warn!(
                transport = c.transport,
                link = c.label,
                requeued,
                "submit_sm in flight when the link ended: they are sent again after the rebind (possible duplicates, at most the window)"
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), write_task).await;
        ended
    }

    /// The next PDU to send, once the bind is not paused, the window has room and the rate
    /// allows: cancel-safe (a permit taken without a job is given back when dropped, and a job
    /// is taken only at the last, synchronous step).
    async fn next_job(
        &self,
        window: &Arc<Semaphore>,
        rate: Option<&Rate>,
        paused_until: Option<tokio::time::Instant>,
    ) -> (Job, OwnedSemaphorePermit) {
        if let Some(until) = paused_until {
            tokio::time::sleep_until(until).await;
        }
        let Ok(permit) = window.clone().acquire_owned().await else { return std::future::pending().await };
        loop {
            let notified = self.queued.notified();
            if self.queued() > 0 {
                if let Some(rate) = rate {
                    rate.until_ready().await;
                }
                if let Some(job) = self.lock().pop() {
                    return (job, permit);
                }
            }
            notified.await;
        }
    }

    async fn unbind(
        &self,
        reader: &mut FramedRead<tokio::net::tcp::OwnedReadHalf, Codec>,
        out: &mpsc::UnboundedSender<Out>,
        seq: u32,
    ) -> Ended {
        let _ = out.send(Out::Pdu(Pdu::request(seq, Body::Unbind)));
        let _ = tokio::time::timeout(self.config.response_timeout, async {
            while let Some(Ok(f)) = reader.next().await {
                if matches!(f, Frame::Pdu(Pdu { body: Body::UnbindResp, .. })) {
                    break;
                }
            }
        })
        .await;
        tracing::info!(transport = self.config.transport, link = self.config.label, "SMPP unbound");
        Ended::Shutdown
    }
}

/// What the writer task writes: a PDU to encode, or a `submit_sm` encoded when it was
/// submitted (on the caller's task, so encoding spreads over the cores), whose sequence
/// number is written over its header's.
enum Out {
    Pdu(Pdu),
    Submit(Arc<[u8]>, u32),
}

/// One bound connection's state, driven by [`Link::serve`]'s loop.
struct Session<'a> {
    link: &'a Link,
    out: mpsc::UnboundedSender<Out>,
    deliver: Arc<dyn Deliver>,
    window: Arc<Semaphore>,
    rate: Option<Rate>,
    inflight: HashMap<u32, (Job, OwnedSemaphorePermit, Instant)>,
    /// Sends given up on after a timeout (the PDU went again), in case their answer comes
    /// late: where its id goes, and until when it is waited for.
    stale: HashMap<u32, (mpsc::UnboundedSender<String>, Instant)>,
    next_seq: u32,
    /// The whole bind waits until then (throttling).
    paused_until: Option<tokio::time::Instant>,
    last_read: Instant,
    /// An `enquire_link` awaiting its response, and by when.
    enquiring: Option<(u32, Instant)>,
    /// Stopping: nothing new is sent.
    draining: bool,
}

impl Session<'_> {
    fn seq(&mut self) -> u32 {
        self.next_seq = if self.next_seq >= 0x7FFF_FFFF { 1 } else { self.next_seq + 1 };
        self.next_seq
    }

    fn reply(&self, pdu: Pdu) {
        let _ = self.out.send(Out::Pdu(pdu));
    }

    /// Send `first`, then whatever else is queued while the window, the rate and no pause
    /// allow, without another pass of the loop.
    fn send(&mut self, first: (Job, OwnedSemaphorePermit)) -> Option<Ended> {
        let mut next = Some(first);
        while let Some((mut job, permit)) = next.take() {
            let s = self.seq();
            job.sends += 1;
            if job.sends > 1 {
                self.link.counters.resent.inc();
            }
            if self.out.send(Out::Submit(job.pdu.clone(), s)).is_err() {
                self.link.lock().again(job);
                return Some(Ended::Reconnect("the connection's writer stopped".into()));
            }
            self.inflight.insert(s, (job, permit, Instant::now() + self.link.config.response_timeout));
            if self.paused_until.is_some_and(|p| p > tokio::time::Instant::now()) {
                break;
            }
            let Ok(permit) = self.window.clone().try_acquire_owned() else { break };
            if self.rate.as_ref().is_some_and(|r| r.check().is_err()) {
                break;
            }
            next = self.link.lock().pop().map(|job| (job, permit));
        }
        None
    }

    fn on_frame(&mut self, frame: Option<Result<Frame, std::io::Error>>) -> Option<Ended> {
        let c = &self.link.config;
        self.last_read = Instant::now();
        let frame = match frame {
            None => return Some(Ended::Reconnect("the SMSC closed the connection".into())),
            Some(Err(e)) => return Some(Ended::Reconnect(format!("read error: {e}"))),
            Some(Ok(f)) => f,
        };
        let p = match frame {
            Frame::Bad(b) => {
                self.link.counters.bad_frame.inc();
                static LOG: Throttle = Throttle::with_burst(Duration::from_secs(10), 10);
                if let Some(more) = LOG.hit() {
                    tracing::warn!(
                        transport = c.transport,
                        link = c.label,
                        command = wire::command_name(b.command_id),
                        sequence = b.sequence,
                        reason = b.reason,
                        more,
                        "a PDU from the SMSC did not decode; answered, the link stays up"
                    );
                }
                match b.reply {
                    Some(reply) => self.reply(reply),
                    None => {
                        if let Some((job, _, _)) = self.inflight.remove(&b.sequence) {
                            // A response we cannot read: its status still says what happened.
                            let outcome = if b.status == status::OK {
                                Outcome::Accepted(String::new())
                            } else {
                                Outcome::Rejected {
                                    status: b.status,
                                    reason: format!(
                                        "{} (0x{:08X}), in a response that did not decode: {}",
                                        wire::status_name(b.status),
                                        b.status,
                                        b.reason
                                    ),
                                }
                            };
                            let _ = job.reply.send(outcome);
                        }
                    }
                }
                return None;
            }
            Frame::Pdu(p) => p,
        };
        if let Body::SubmitSmResp(id) = &p.body
            && let Some((late, _)) = self.stale.remove(&p.sequence)
        {
            // The answer to a send given up on: the SMSC has that copy too, under this id.
            self.link.counters.late_response.inc();
            if p.status == status::OK && !id.is_empty() {
                let _ = late.send(id.clone());
            }
            return None;
        }
        match p.body {
            Body::SubmitSmResp(_) | Body::GenericNack if self.inflight.contains_key(&p.sequence) => {
                let (mut job, permit, _) = self.inflight.remove(&p.sequence)?;
                drop(permit);
                match p.status {
                    status::OK => {
                        let id = if let Body::SubmitSmResp(id) = p.body { id } else { String::new() };
                        let _ = job.reply.send(Outcome::Accepted(id));
                    }
                    status::RTHROTTLED | status::RMSGQFUL => {
                        self.link.counters.throttled.inc();
                        let until = tokio::time::Instant::now() + c.throttle_delay;
                        if self.paused_until.is_none_or(|p| p < until) {
                            static LOG: Throttle = Throttle::new(Duration::from_secs(10));
                            if let Some(more) = LOG.hit() {
                                tracing::info!(
                                    transport = c.transport,
                                    link = c.label,
                                    status = wire::status_name(p.status),
                                    pause_ms = c.throttle_delay.as_millis() as u64,
                                    more,
                                    "SMSC throttling: the bind pauses, then re-sends the refused PDUs first"
                                );
                            }
                            self.paused_until = Some(until);
                        }
                        // Not a resend of a possibly delivered copy: the SMSC refused it.
                        job.sends = job.sends.saturating_sub(1);
                        self.link.lock().again(job);
                    }
                    st => {
                        let what = if matches!(p.body, Body::GenericNack) {
                            "PDU (generic_nack)"
                        } else {
                            "submit_sm"
                        };
                        let reason =
                            format!("{} (0x{st:08X}): the SMSC refused the {what}", wire::status_name(st));
                        let _ = job.reply.send(Outcome::Rejected { status: st, reason });
                    }
                }
            }
            Body::EnquireLinkResp => {
                if self.enquiring.is_some_and(|(s, _)| s == p.sequence) {
                    self.enquiring = None;
                }
            }
            Body::EnquireLink => self.reply(Pdu::response(p.sequence, status::OK, Body::EnquireLinkResp)),
            Body::DeliverSm(sm) => {
                if !c.kind.receives() {
                    self.reply(Pdu::response(p.sequence, status::RINVBNDSTS, Body::DeliverSmResp));
                    return None;
                }
                let (deliver, out, seq) = (self.deliver.clone(), self.out.clone(), p.sequence);
                tokio::spawn(async move {
                    let st = deliver.deliver(*sm).await;
                    // If the link died meanwhile, the SMSC delivers it again.
                    let _ = out.send(Out::Pdu(Pdu::response(seq, st, Body::DeliverSmResp)));
                });
            }
            Body::Unbind => {
                self.reply(Pdu::response(p.sequence, status::OK, Body::UnbindResp));
                return Some(Ended::Reconnect("the SMSC unbound".into()));
            }
            Body::UnbindResp
            | Body::SubmitSmResp(_)
            | Body::GenericNack
            | Body::DeliverSmResp
            | Body::BindResp(..) => {
                tracing::debug!(transport = c.transport, link = c.label, pdu = %p, "a response to nothing in flight; ignored");
            }
            Body::Bind(..) => self.reply(Pdu::response(p.sequence, status::RALYBND, Body::GenericNack)),
            Body::SubmitSm(_) | Body::Other(_) => {
                if !p.is_response() {
                    self.reply(Pdu::response(p.sequence, status::RINVCMDID, Body::GenericNack));
                }
            }
        }
        None
    }

    /// Timeouts and keep-alive.
    fn on_tick(&mut self) -> Option<Ended> {
        let c = &self.link.config;
        let now = Instant::now();
        if let Some((_, deadline)) = self.enquiring
            && now > deadline
        {
            return Some(Ended::Reconnect(format!(
                "no enquire_link_resp within {} ms",
                c.response_timeout.as_millis()
            )));
        }
        if self.enquiring.is_none() && now.duration_since(self.last_read) >= c.enquire_link {
            let s = self.seq();
            self.reply(Pdu::request(s, Body::EnquireLink));
            self.enquiring = Some((s, now + c.response_timeout));
        }
        // A late answer is waited for ten times as long as an answer: past that, its copy's
        // receipt will be unmatched (and counted as such).
        self.stale.retain(|_, (_, until)| *until > now);
        let late: Vec<u32> =
            self.inflight.iter().filter(|(_, (_, _, d))| *d <= now).map(|(s, _)| *s).collect();
        for s in late {
            let Some((job, _permit, _)) = self.inflight.remove(&s) else { continue };
            self.link.counters.timeout.inc();
            if c.retry_on_timeout && job.sends <= c.max_resends && !self.draining {
                if let Some(tx) = &job.late {
                    self.stale.insert(s, (tx.clone(), now + c.response_timeout * 10));
                }
                static LOG: Throttle = Throttle::with_burst(Duration::from_secs(10), 5);
                if let Some(more) = LOG.hit() {
                    tracing::warn!(
                        transport = c.transport,
                        link = c.label,
                        sequence = s,
                        sends = job.sends,
                        more,
                        "no submit_sm_resp in time; sending it again (a possible duplicate)"
                    );
                }
                self.link.lock().again(job);
                self.link.queued.notify_one();
            } else {
                let _ = job.reply.send(Outcome::TimedOut { sends: job.sends });
            }
        }
        None
    }
}

/// Write what is queued, encoding into one buffer and flushing once the queue is empty, so a
/// burst becomes few writes.
async fn write_loop(mut writer: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Out>, transport: String) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Some(o) = rx.recv().await {
        let mut next = Some(o);
        while let Some(o) = next {
            match o {
                Out::Pdu(p) => {
                    if let Err(e) = wire::encode_into(&p, &mut buf) {
                        tracing::warn!(transport, error = %e, "a PDU could not be encoded; not sent");
                    }
                }
                Out::Submit(octets, seq) => {
                    buf.extend_from_slice(&octets[..12]);
                    buf.extend_from_slice(&seq.to_be_bytes());
                    buf.extend_from_slice(&octets[16..]);
                }
            }
            next = if buf.len() < 256 * 1024 { rx.try_recv().ok() } else { None };
        }
        if writer.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
    }
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::smsc as fake;

    struct Nothing;

    #[async_trait::async_trait]
    impl Deliver for Nothing {
        async fn deliver(&self, _sm: Sm) -> u32 {
            status::OK
        }
    }

    async fn fake_smsc(settings: fake::Settings) -> String {
        let smpp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = smpp.local_addr().unwrap().to_string();
        tokio::spawn(fake::serve(smpp, http, settings, std::future::pending()));
        addr
    }

    fn config(address: String, window: usize) -> LinkConfig {
        LinkConfig {
            transport: "test".into(),
            label: "0-trx".into(),
            address,
            bind: Bind {
                system_id: "smppclient1".into(),
                password: "password".into(),
                interface_version: 0x34,
                ..Bind::default()
            },
            kind: BindKind::Transceiver,
            window,
            tps: 0,
            throttle_delay: Duration::from_millis(10),
            response_timeout: Duration::from_secs(5),
            retry_on_timeout: true,
            max_resends: 3,
            enquire_link: Duration::from_secs(30),
            reconnect_min: Duration::from_millis(10),
            reconnect_max: Duration::from_millis(50),
            max_pdu: 65536,
        }
    }

    fn sm(i: usize) -> Sm {
        Sm {
            source_addr: "1234".into(),
            destination_addr: format!("2782{i:07}"),
            short_message: b"hi".to_vec(),
            ..Sm::default()
        }
    }

    #[tokio::test]
    async fn a_link_that_binds_before_anyone_watches_still_says_so() {
        // `watch::Sender::send` keeps the old value while there is no receiver: a link bound
        // before the transport subscribed once looked unbound forever.
        let link = Link::new(config(fake_smsc(fake::Settings::default()).await, 4));
        let stop = CancellationToken::new();
        tokio::spawn(link.clone().run(Arc::new(Nothing), stop.clone()));
        let bound = tokio::time::timeout(Duration::from_secs(10), async {
            while !link.is_bound() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        assert!(bound.await.is_ok(), "is_bound() never turned true");
        assert!(matches!(link.submit(sm(0)).await, Outcome::Accepted(id) if !id.is_empty()));
        stop.cancel();
    }

    #[tokio::test]
    async fn throttled_submits_are_all_accepted_in_the_end() {
        let settings =
            fake::Settings { throttle_rate: 0.3, queue_full_rate: 0.1, seed: 3, ..fake::Settings::default() };
        let link = Link::new(config(fake_smsc(settings).await, 5));
        let stop = CancellationToken::new();
        tokio::spawn(link.clone().run(Arc::new(Nothing), stop.clone()));
        let outcomes = futures::future::join_all((0..40).map(|i| {
            let link = link.clone();
            async move { link.submit(sm(i)).await }
        }))
        .await;
        assert!(outcomes.iter().all(|o| matches!(o, Outcome::Accepted(_))), "{outcomes:?}");
        assert!(link.counters.throttled.get() > 0, "the fake throttled some");
        stop.cancel();
    }
}
