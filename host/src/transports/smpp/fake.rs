//! A fake SMSC (`vumi fake-smsc`): the far end of an SMPP bind, for development, the end-to-end
//! tests and the benchmarks, so none of them needs an operator's test account or a Java
//! simulator.
//!
//! It answers binds, `enquire_link`, `unbind` and `submit_sm` as an SMSC does, and can be told to
//! misbehave as real ones do (slow responses, throttling, full queues, failures, dropped
//! connections, ids written differently in responses and receipts), with a seeded PRNG so a
//! failing run can be repeated. What it was sent is put back together (long messages by UDH,
//! SAR or `message_payload`) and decoded, with warnings for what a handset would render wrong,
//! so a test asserts on text rather than octets. An HTTP API injects inbound messages
//! (`deliver_sm`), shows what was received, and changes the behaviour mid-run.
//!
//! Speed matters as much as fidelity: benchmarks pipeline tens of thousands of `submit_sm` a
//! second at it, so responses go out through a buffered sink that is flushed only when the
//! socket has nothing more to read, and the work per submit does not grow with what is stored.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{FutureExt, SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::text::{self, Coding, Concat, Split};
use super::wire::{self, BadFrame, Bind, BindKind, Body, Codec, Frame, Pdu, Sm, Tlv, id, status, tag};

/// What the fake answers in `bind_*_resp`.
const SMSC_SYSTEM_ID: &str = "vumi-fake";
/// Large enough for a `message_payload` of 64 KiB.
const MAX_PDU: usize = 70_000;
/// Messages kept for `GET /mt`; older ones are forgotten first.
const MAX_MT: usize = 100_000;
/// Responses kept for `GET /responses`.
const MAX_RESPONSES: usize = 1_000;
/// Receipts kept while no receiver is bound, delivered when one binds (as an SMSC stores them).
const MAX_HELD: usize = 100_000;
/// How long parts of a long message may wait for the rest before the set is listed incomplete.
const ASSEMBLY_WAIT: Duration = Duration::from_secs(10);
/// How long `POST /mo` waits for the ESME's `deliver_sm_resp`s.
const MO_WAIT: Duration = Duration::from_secs(10);
/// A `deliver_sm` answered with a temporary error is tried again after this, up to
/// [`MAX_RETRIES`] times, as a real SMSC does.
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// See [`RETRY_AFTER`].
const MAX_RETRIES: u32 = 5;
/// Frames handled between flushes: responses to a long pipelined burst still go out promptly.
const DRAIN_BUDGET: usize = 256;

/// The ESME's answers to a `deliver_sm` that mean "later", not "never".
fn temporary(code: u32) -> bool {
    matches!(code, status::RX_T_APPN | status::RTHROTTLED | status::RMSGQFUL)
}

/// `command_status` 0x45: not in `wire::status`, which holds what the host itself reacts to.
const RSUBMITFAIL: u32 = 0x45;

macro_rules! named {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Its name on the command line and in `/settings`.
            pub fn name(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(format!(concat!("`{}` is not ", $what, " (one of: {})"), s, [$($name),+].join(", "))),
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }
    };
}

/// How the `message_id` in `submit_sm_resp` is written: SMSCs differ, and an ESME must match
/// receipts to messages whichever they use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdFormat {
    /// Lowercase hex, no padding (`1f`).
    Hex,
    /// Decimal (`31`).
    Decimal,
    /// Uppercase hex, zero-padded to 10 digits (`000000001F`).
    HexZeros,
    /// A UUID derived from the counter (deterministic, v4-shaped).
    Uuid,
}
named!(IdFormat, "an id format", { Hex => "hex", Decimal => "decimal", HexZeros => "hex-zeros", Uuid => "uuid" });

impl IdFormat {
    /// Message number `n` in this form.
    pub fn format(self, n: u64) -> String {
        match self {
            IdFormat::Hex => format!("{n:x}"),
            IdFormat::Decimal => n.to_string(),
            IdFormat::HexZeros => format!("{n:010X}"),
            IdFormat::Uuid => {
                let mut bytes = [0u8; 16];
                bytes[..8].copy_from_slice(&splitmix(n).to_be_bytes());
                bytes[8..].copy_from_slice(&splitmix(n ^ 0x5DEE_CE66_D1CE_4E5B).to_be_bytes());
                uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
            }
        }
    }
}

/// How the id inside a receipt is written, compared with the response's: Nexmo, for one,
/// answers in hex and receipts in decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptIdFormat {
    /// As in the `submit_sm_resp`.
    Same,
    /// The counter in decimal, whatever the response said.
    Decimal,
    /// The counter in lowercase hex.
    Hex,
}
named!(ReceiptIdFormat, "a receipt id format", { Same => "same", Decimal => "decimal", Hex => "hex" });

/// The outcome every receipt reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptStat {
    /// `DELIVRD`.
    Delivered,
    /// `UNDELIV` (as `Undeliverable`; kept as its own name for readability on the command line).
    Failed,
    /// `UNDELIV`.
    Undeliverable,
    /// `EXPIRED`.
    Expired,
    /// `REJECTD`.
    Rejected,
    /// `ENROUTE`, an intermediate state.
    Enroute,
    /// `ACCEPTD`, an intermediate state.
    Accepted,
    /// No receipts at all (`none`).
    Off,
}
named!(ReceiptStat, "a receipt outcome", {
    Delivered => "delivered", Failed => "failed", Undeliverable => "undeliverable", Expired => "expired",
    Rejected => "rejected", Enroute => "enroute", Accepted => "accepted", Off => "none",
});

impl ReceiptStat {
    /// The `stat:` word, the `message_state` value (SMPP 3.4 §5.2.28), and whether it is a
    /// failure (receipts asked for on failure only get just those). `None` for [`Self::Off`].
    fn stat(self) -> Option<(&'static str, u8, bool)> {
        Some(match self {
            ReceiptStat::Delivered => ("DELIVRD", 2, false),
            ReceiptStat::Failed | ReceiptStat::Undeliverable => ("UNDELIV", 5, true),
            ReceiptStat::Expired => ("EXPIRED", 3, true),
            ReceiptStat::Rejected => ("REJECTD", 8, true),
            ReceiptStat::Enroute => ("ENROUTE", 1, false),
            ReceiptStat::Accepted => ("ACCEPTD", 6, false),
            ReceiptStat::Off => return None,
        })
    }
}

/// Where a receipt says what happened: SMSCs use TLVs, the Appendix B text, or both, and an
/// ESME must read each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptAs {
    /// `receipted_message_id` and `message_state`, with an empty `short_message`.
    Tlv,
    /// The text only.
    Text,
    /// Both.
    Both,
}
named!(ReceiptAs, "a receipt form", { Tlv => "tlv", Text => "text", Both => "both" });

/// How the fake behaves. All but the account and the seed can be changed while it runs
/// (`POST /settings`), so a test can, say, start throttling mid-run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// The account an ESME must bind with.
    pub system_id: String,
    /// Its password.
    #[serde(skip)]
    pub password: String,
    /// Wait before each `submit_sm_resp` (responses stay in order; submits still pipeline).
    pub delay_ms: u64,
    /// Share of submits answered `ESME_RSUBMITFAIL`.
    pub error_rate: f64,
    /// Share answered `ESME_RTHROTTLED`.
    pub throttle_rate: f64,
    /// Share answered `ESME_RMSGQFUL`.
    pub queue_full_rate: f64,
    /// Close a connection, unanswered, on its Nth `submit_sm` (0: never).
    pub drop_after: u64,
    /// The form of ids in `submit_sm_resp`.
    pub id_format: IdFormat,
    /// The form of ids in receipts.
    pub receipt_id_format: ReceiptIdFormat,
    /// What receipts report (or none).
    pub receipt: ReceiptStat,
    /// TLVs, text or both.
    pub receipt_as: ReceiptAs,
    /// Wait after the `submit_sm_resp` before the receipt.
    pub receipt_delay_ms: u64,
    /// Seed of the PRNG behind the rates: each connection draws from its own stream of it, so a
    /// run repeats exactly.
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            system_id: "smppclient1".into(),
            password: "password".into(),
            delay_ms: 0,
            error_rate: 0.0,
            throttle_rate: 0.0,
            queue_full_rate: 0.0,
            drop_after: 0,
            id_format: IdFormat::Hex,
            receipt_id_format: ReceiptIdFormat::Same,
            receipt: ReceiptStat::Delivered,
            receipt_as: ReceiptAs::Both,
            receipt_delay_ms: 0,
            seed: 0,
        }
    }
}

/// Settings that make no sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    /// A rate outside 0.0–1.0.
    #[error("{name} must be a fraction from 0.0 to 1.0, not {value}")]
    Rate {
        /// Which.
        name: &'static str,
        /// What it was.
        value: f64,
    },
    /// Rates that add up to more than every submit.
    #[error(
        "error_rate + throttle_rate + queue_full_rate is {0}, but they are shares of the same submits, so together at most 1.0"
    )]
    RatesOver(f64),
}

impl Settings {
    /// Check the rates: each a fraction, and together at most all submits.
    pub fn validate(&self) -> Result<(), SettingsError> {
        for (name, value) in [
            ("error_rate", self.error_rate),
            ("throttle_rate", self.throttle_rate),
            ("queue_full_rate", self.queue_full_rate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(SettingsError::Rate { name, value });
            }
        }
        let sum = self.error_rate + self.throttle_rate + self.queue_full_rate;
        if sum > 1.0 + 1e-9 {
            return Err(SettingsError::RatesOver(sum));
        }
        Ok(())
    }
}

/// Why the fake stopped.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    /// The settings were refused.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The HTTP server failed.
    #[error("the fake SMSC's HTTP server failed: {0}")]
    Http(#[source] io::Error),
}

/// Serve SMPP on `smpp` and the control API on `http` until `shutdown` completes; then every
/// connection is closed. Listeners come bound so a caller can use port 0 and learn the port.
pub async fn serve(
    smpp: TcpListener,
    http: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), FakeError> {
    settings.validate()?;
    let shared = Arc::new(Shared::new(settings));
    let stop = CancellationToken::new();
    let app = router(shared.clone());
    let http_server = async {
        let result = axum::serve(http, app).with_graceful_shutdown(stop.clone().cancelled_owned()).await;
        stop.cancel();
        result
    };
    let stopper = async {
        tokio::select! {
            () = shutdown => {}
            () = stop.cancelled() => {}
        }
        stop.cancel();
    };
    let (result, (), ()) = tokio::join!(http_server, accept(smpp, shared, stop.clone()), stopper);
    result.map_err(FakeError::Http)
}

// ---------------------------------------------------------------------------------------------
// Shared state

/// What a connection is told from outside its task.
enum Cmd {
    /// Send this `deliver_sm`.
    Deliver(Outbound),
    /// Write these octets as they are (`POST /raw`).
    Raw(Vec<u8>),
    /// Close now, without unbinding (`POST /drop`).
    Close,
}

/// A `deliver_sm` on its way to the ESME.
struct Outbound {
    sm: Box<Sm>,
    /// Times it was answered with a temporary error and sent again.
    attempts: u32,
    /// A receipt: kept while no receiver is bound, where an MO is refused instead.
    receipt: bool,
    /// Who waits for the ESME's final answer (`POST /mo`): its status, or why there is none.
    reply: Option<oneshot::Sender<Result<u32, String>>>,
}

impl Outbound {
    fn give_up(self, why: &str) {
        if let Some(reply) = self.reply {
            let _ = reply.send(Err(why.to_owned()));
        }
    }
}

struct ConnEntry {
    id: u64,
    kind: Option<BindKind>,
    tx: mpsc::UnboundedSender<Cmd>,
}

#[derive(Default)]
struct Registry {
    conns: Vec<ConnEntry>,
    held: VecDeque<Outbound>,
}

impl Registry {
    fn receivers(&self) -> usize {
        self.conns.iter().filter(|c| c.kind.is_some_and(BindKind::receives)).count()
    }

    /// Hand `out` to the next receiver-capable connection, round robin; back if there is none.
    fn route(&mut self, rr: &AtomicUsize, mut out: Outbound) -> Result<(), Outbound> {
        let n = self.receivers();
        if n == 0 {
            return Err(out);
        }
        let start = rr.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let k = (start + i) % n;
            let Some(conn) = self.conns.iter().filter(|c| c.kind.is_some_and(BindKind::receives)).nth(k)
            else {
                break;
            };
            match conn.tx.send(Cmd::Deliver(out)) {
                Ok(()) => return Ok(()),
                // That connection is closing: try the next.
                Err(mpsc::error::SendError(Cmd::Deliver(back))) => out = back,
                Err(_) => return Ok(()),
            }
        }
        Err(out)
    }
}

#[derive(Default)]
struct Stats {
    binds: AtomicI64,
    binds_total: AtomicU64,
    submits: AtomicU64,
    throttled: AtomicU64,
    queue_full: AtomicU64,
    errors: AtomicU64,
    drops: AtomicU64,
    deliver_sm_sent: AtomicU64,
    generic_nacks: AtomicU64,
    bad_frames: AtomicU64,
    deliver_sm_resp: Mutex<BTreeMap<u32, u64>>,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Serialize)]
struct ResponseRecord {
    command: &'static str,
    status: u32,
    status_name: String,
    sequence: u32,
    bind: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    bad: Option<String>,
}

struct Shared {
    settings: ArcSwap<Settings>,
    /// Serialises `POST /settings` (read, change, validate, store).
    settings_update: Mutex<()>,
    next_id: AtomicU64,
    next_conn: AtomicU64,
    next_ref: AtomicU32,
    rr: AtomicUsize,
    registry: Mutex<Registry>,
    stats: Stats,
    mt: Mutex<MtStore>,
    responses: Mutex<VecDeque<ResponseRecord>>,
}

impl Shared {
    fn new(settings: Settings) -> Self {
        Self {
            settings: ArcSwap::from_pointee(settings),
            settings_update: Mutex::new(()),
            next_id: AtomicU64::new(1),
            next_conn: AtomicU64::new(1),
            next_ref: AtomicU32::new(1),
            rr: AtomicUsize::new(0),
            registry: Mutex::new(Registry::default()),
            stats: Stats::default(),
            mt: Mutex::new(MtStore::new()),
            responses: Mutex::new(VecDeque::new()),
        }
    }

    /// Send `out` to a receiver; a receipt with none bound waits for one, an MO is given up.
    fn deliver(&self, out: Outbound) {
        let mut reg = lock(&self.registry);
        if let Err(out) = reg.route(&self.rr, out) {
            if out.receipt {
                if reg.held.len() >= MAX_HELD {
                    reg.held.pop_front();
                }
                reg.held.push_back(out);
            } else {
                drop(reg);
                out.give_up("no receiver bound");
            }
        }
    }

    fn schedule_receipt(self: &Arc<Self>, sm: Box<Sm>, delay_ms: u64) {
        let out = Outbound { sm, attempts: 0, receipt: true, reply: None };
        if delay_ms == 0 {
            self.deliver(out);
        } else {
            let shared = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                shared.deliver(out);
            });
        }
    }

    fn record_response(&self, command_id: u32, code: u32, sequence: u32, bind: u64, bad: Option<String>) {
        let rec = ResponseRecord {
            command: wire::command_name(command_id),
            status: code,
            status_name: wire::status_name(code),
            sequence,
            bind,
            bad,
        };
        let mut list = lock(&self.responses);
        if list.len() >= MAX_RESPONSES {
            list.pop_front();
        }
        list.push_back(rec);
    }
}

// ---------------------------------------------------------------------------------------------
// SMPP

async fn accept(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = mpsc::unbounded_channel();
                lock(&shared.registry).conns.push(ConnEntry { id, kind: None, tx });
                debug!("fake SMSC: connection {id} from {peer}");
                let settings = shared.settings.load();
                let conn = Conn {
                    id,
                    peer,
                    rng: Rng::new(settings.seed, id),
                    shared: shared.clone(),
                    framed: Framed::new(stream, Codec::new(MAX_PDU)),
                    kind: None,
                    seq: 0,
                    submits: 0,
                    delayed: VecDeque::new(),
                    in_flight: HashMap::new(),
                };
                tokio::spawn(conn.run(rx, stop.clone()));
            }
            Err(e) => {
                // Out of file descriptors, mostly: wait rather than spin.
                warn!("fake SMSC: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A tiny xorshift64*: the rates need repeatable draws, not quality, and no new crate.
struct Rng(u64);

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// Stream `stream` (a connection number) of `seed`.
    fn new(seed: u64, stream: u64) -> Self {
        let z = splitmix(seed ^ splitmix(stream));
        Rng(if z == 0 { 1 } else { z })
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A `submit_sm_resp` held back by `delay_ms`, with the receipt it triggers once sent.
struct Delayed {
    at: tokio::time::Instant,
    pdu: Pdu,
    receipt: Option<(Box<Sm>, u64)>,
}

enum Event {
    Frame(Option<io::Result<Frame>>),
    Cmd(Option<Cmd>),
    Due,
}

/// What a connection does after an event.
enum Flow {
    Go,
    /// Flush what is written, then close.
    Close(String),
    /// Close at once.
    Abort(String),
}

struct Conn {
    id: u64,
    peer: SocketAddr,
    shared: Arc<Shared>,
    framed: Framed<TcpStream, Codec>,
    kind: Option<BindKind>,
    /// The last sequence number the fake used.
    seq: u32,
    /// `submit_sm`s received on this connection (for `drop_after`).
    submits: u64,
    rng: Rng,
    delayed: VecDeque<Delayed>,
    /// `deliver_sm`s awaiting their response, by sequence number.
    in_flight: HashMap<u32, Outbound>,
}

impl Conn {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>, stop: CancellationToken) {
        let why = match self.serve(&mut rx, &stop).await {
            Ok(why) => why,
            Err(e) => format!("connection error: {e}"),
        };
        // Unregistered first, so nothing more is routed here; what was, goes elsewhere.
        let shared = self.shared.clone();
        {
            let mut reg = lock(&shared.registry);
            reg.conns.retain(|c| c.id != self.id);
        }
        rx.close();
        while let Ok(cmd) = rx.try_recv() {
            if let Cmd::Deliver(out) = cmd {
                shared.deliver(out);
            }
        }
        for (_, out) in self.in_flight.drain() {
            shared.deliver(out);
        }
        if let Some(kind) = self.kind {
            shared.stats.binds.fetch_sub(1, Ordering::Relaxed);
            info!(
                "fake SMSC: connection {} ({kind}, {}) closed: {why}",
                self.id,
                self.peer,
                kind = kind.name()
            );
        } else {
            debug!("fake SMSC: connection {} ({}) closed unbound: {why}", self.id, self.peer);
        }
    }

    async fn serve(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Cmd>,
        stop: &CancellationToken,
    ) -> io::Result<String> {
        loop {
            let due = self.delayed.front().map(|d| d.at);
            let event = tokio::select! {
                () = stop.cancelled() => return Ok("the fake SMSC stopped".into()),
                cmd = rx.recv() => Event::Cmd(cmd),
                frame = self.framed.next() => Event::Frame(frame),
                () = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => Event::Due,
            };
            let mut flow = self.on_event(event).await?;
            // Take whatever else is ready without waiting, then write the answers in one go.
            for _ in 0..DRAIN_BUDGET {
                if !matches!(flow, Flow::Go) {
                    break;
                }
                if let Some(frame) = self.framed.next().now_or_never() {
                    flow = self.on_event(Event::Frame(frame)).await?;
                } else if let Ok(cmd) = rx.try_recv() {
                    flow = self.on_event(Event::Cmd(Some(cmd))).await?;
                } else {
                    break;
                }
            }
            if matches!(flow, Flow::Go) {
                self.send_due().await?;
            }
            match flow {
                Flow::Go => self.framed.flush().await?,
                Flow::Close(why) => {
                    let _ = self.framed.flush().await;
                    return Ok(why);
                }
                Flow::Abort(why) => return Ok(why),
            }
        }
    }

    async fn on_event(&mut self, event: Event) -> io::Result<Flow> {
        match event {
            Event::Frame(None) => Ok(Flow::Abort("the ESME closed the connection".into())),
            Event::Frame(Some(Err(e))) => Err(e),
            Event::Frame(Some(Ok(Frame::Bad(bad)))) => self.on_bad(bad).await,
            Event::Frame(Some(Ok(Frame::Pdu(pdu)))) => self.on_pdu(pdu).await,
            Event::Cmd(None) => Ok(Flow::Abort("unregistered".into())),
            Event::Cmd(Some(Cmd::Deliver(out))) => {
                self.deliver_sm(out).await?;
                Ok(Flow::Go)
            }
            Event::Cmd(Some(Cmd::Raw(octets))) => {
                self.framed.write_buffer_mut().extend_from_slice(&octets);
                Ok(Flow::Go)
            }
            Event::Cmd(Some(Cmd::Close)) => {
                bump(&self.shared.stats.drops);
                Ok(Flow::Abort("dropped by POST /drop".into()))
            }
            Event::Due => {
                self.send_due().await?;
                Ok(Flow::Go)
            }
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = if self.seq >= 0x7FFF_FFFE { 1 } else { self.seq + 1 };
        self.seq
    }

    /// Write `pdu` to the buffer. A PDU that cannot be encoded (an address no SMPP field can
    /// hold) is logged and skipped, not a reason to drop the link; `false` says so.
    async fn send(&mut self, pdu: &Pdu) -> io::Result<bool> {
        match self.framed.feed(pdu).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                warn!("fake SMSC: connection {}: not sent: {e}", self.id);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn respond(&mut self, sequence: u32, code: u32, body: Body) -> io::Result<Flow> {
        self.send(&Pdu::response(sequence, code, body)).await?;
        Ok(Flow::Go)
    }

    async fn on_bad(&mut self, bad: BadFrame) -> io::Result<Flow> {
        bump(&self.shared.stats.bad_frames);
        warn!(
            "fake SMSC: connection {}: undecodable {} seq {}: {}",
            self.id,
            wire::command_name(bad.command_id),
            bad.sequence,
            bad.reason
        );
        if bad.command_id & id::RESP != 0 {
            self.shared.record_response(bad.command_id, bad.status, bad.sequence, self.id, Some(bad.reason));
            if bad.command_id == id::DELIVER_SM | id::RESP {
                *lock(&self.shared.stats.deliver_sm_resp).entry(bad.status).or_default() += 1;
                self.on_delivered(bad.sequence, bad.status);
            }
        }
        if let Some(reply) = bad.reply {
            self.send(&reply).await?;
        }
        Ok(Flow::Go)
    }

    async fn on_pdu(&mut self, pdu: Pdu) -> io::Result<Flow> {
        let sequence = pdu.sequence;
        if pdu.is_response() {
            self.on_response(&pdu);
            return Ok(Flow::Go);
        }
        match pdu.body {
            Body::Bind(kind, bind) => self.on_bind(sequence, kind, &bind).await,
            Body::EnquireLink => self.respond(sequence, status::OK, Body::EnquireLinkResp).await,
            Body::Unbind if self.kind.is_none() => {
                self.respond(sequence, status::RINVBNDSTS, Body::UnbindResp).await
            }
            Body::Unbind => {
                self.respond(sequence, status::OK, Body::UnbindResp).await?;
                Ok(Flow::Close("unbound by the ESME".into()))
            }
            Body::SubmitSm(sm) => self.on_submit(sequence, sm).await,
            _ => self.respond(sequence, status::RINVCMDID, Body::GenericNack).await,
        }
    }

    fn on_response(&mut self, pdu: &Pdu) {
        self.shared.record_response(pdu.body.command_id(), pdu.status, pdu.sequence, self.id, None);
        match pdu.body {
            Body::DeliverSmResp => {
                *lock(&self.shared.stats.deliver_sm_resp).entry(pdu.status).or_default() += 1;
                self.on_delivered(pdu.sequence, pdu.status);
            }
            Body::GenericNack => {
                bump(&self.shared.stats.generic_nacks);
                if self.in_flight.contains_key(&pdu.sequence) {
                    let code = if pdu.status == status::OK { status::RUNKNOWNERR } else { pdu.status };
                    self.on_delivered(pdu.sequence, code);
                }
            }
            _ => {}
        }
    }

    /// The ESME answered `deliver_sm` `sequence` with `code`: done, or try again later.
    fn on_delivered(&mut self, sequence: u32, code: u32) {
        let Some(mut out) = self.in_flight.remove(&sequence) else { return };
        if temporary(code) && out.attempts < MAX_RETRIES {
            out.attempts += 1;
            let shared = self.shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(RETRY_AFTER).await;
                shared.deliver(out);
            });
        } else if let Some(reply) = out.reply {
            let _ = reply.send(Ok(code));
        }
    }

    async fn on_bind(&mut self, sequence: u32, kind: BindKind, bind: &Bind) -> io::Result<Flow> {
        let resp = |code| (code, Body::BindResp(kind, SMSC_SYSTEM_ID.into()));
        let (code, body) = if self.kind.is_some() {
            resp(status::RALYBND)
        } else {
            let s = self.shared.settings.load();
            if bind.system_id != s.system_id {
                resp(status::RINVSYSID)
            } else if bind.password != s.password {
                resp(status::RINVPASWD)
            } else {
                resp(status::OK)
            }
        };
        self.respond(sequence, code, body).await?;
        if code != status::OK {
            info!(
                "fake SMSC: connection {} ({}): bind_{} refused: {}",
                self.id,
                self.peer,
                kind.name(),
                wire::status_name(code)
            );
            return Ok(Flow::Go);
        }
        self.kind = Some(kind);
        let stats = &self.shared.stats;
        stats.binds.fetch_add(1, Ordering::Relaxed);
        bump(&stats.binds_total);
        info!(
            "fake SMSC: connection {} ({}) bound as {} `{}`",
            self.id,
            self.peer,
            kind.name(),
            bind.system_id
        );
        let mut reg = lock(&self.shared.registry);
        if let Some(entry) = reg.conns.iter_mut().find(|c| c.id == self.id) {
            entry.kind = Some(kind);
        }
        if kind.receives() {
            // Receipts that waited for a receiver.
            let held = std::mem::take(&mut reg.held);
            for out in held {
                if let Err(out) = reg.route(&self.shared.rr, out) {
                    reg.held.push_back(out);
                }
            }
        }
        Ok(Flow::Go)
    }

    async fn on_submit(&mut self, sequence: u32, sm: Box<Sm>) -> io::Result<Flow> {
        let stats = &self.shared.stats;
        if !self.kind.is_some_and(BindKind::sends) {
            return self.respond(sequence, status::RINVBNDSTS, Body::SubmitSmResp(String::new())).await;
        }
        bump(&stats.submits);
        self.submits += 1;
        let s = self.shared.settings.load_full();
        if s.drop_after > 0 && self.submits >= s.drop_after {
            bump(&stats.drops);
            info!(
                "fake SMSC: connection {} dropped at submit_sm #{} (drop_after {})",
                self.id, self.submits, s.drop_after
            );
            return Ok(Flow::Close(format!("dropped at submit_sm #{} (drop_after)", self.submits)));
        }
        let code = if sm.destination_addr.is_empty() {
            status::RINVDSTADR
        } else {
            let r = self.rng.next_f64();
            if r < s.throttle_rate {
                bump(&stats.throttled);
                status::RTHROTTLED
            } else if r < s.throttle_rate + s.queue_full_rate {
                bump(&stats.queue_full);
                status::RMSGQFUL
            } else if r < s.throttle_rate + s.queue_full_rate + s.error_rate {
                bump(&stats.errors);
                RSUBMITFAIL
            } else {
                status::OK
            }
        };
        let (message_id, receipt) = if code == status::OK {
            let n = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
            let message_id = s.id_format.format(n);
            let receipt = receipt_for(&sm, n, &message_id, &s).map(|r| (r, s.receipt_delay_ms));
            record_mt(&self.shared, *sm, message_id.clone(), self.id);
            (message_id, receipt)
        } else {
            (String::new(), None)
        };
        let pdu = Pdu::response(sequence, code, Body::SubmitSmResp(message_id));
        if s.delay_ms == 0 && self.delayed.is_empty() {
            self.send(&pdu).await?;
            if let Some((sm, delay)) = receipt {
                self.shared.schedule_receipt(sm, delay);
            }
        } else {
            let at = tokio::time::Instant::now() + Duration::from_millis(s.delay_ms);
            self.delayed.push_back(Delayed { at, pdu, receipt });
        }
        Ok(Flow::Go)
    }

    async fn send_due(&mut self) -> io::Result<()> {
        let now = tokio::time::Instant::now();
        while self.delayed.front().is_some_and(|d| d.at <= now) {
            let Some(d) = self.delayed.pop_front() else { break };
            self.send(&d.pdu).await?;
            if let Some((sm, delay)) = d.receipt {
                self.shared.schedule_receipt(sm, delay);
            }
        }
        Ok(())
    }

    async fn deliver_sm(&mut self, out: Outbound) -> io::Result<()> {
        let sequence = self.next_seq();
        let Outbound { sm, attempts, receipt, reply } = out;
        let pdu = Pdu::request(sequence, Body::DeliverSm(sm));
        let sent = self.send(&pdu).await?;
        if let Body::DeliverSm(sm) = pdu.body {
            let out = Outbound { sm, attempts, receipt, reply };
            if sent {
                bump(&self.shared.stats.deliver_sm_sent);
                self.in_flight.insert(sequence, out);
            } else {
                out.give_up("the deliver_sm cannot be encoded");
            }
        }
        Ok(())
    }
}

/// The body of a part's text: after the user data header, or in `message_payload`.
fn body_of(sm: &Sm) -> &[u8] {
    let octets = sm.tlv(tag::MESSAGE_PAYLOAD).unwrap_or(&sm.short_message);
    if sm.udhi() { text::read_header(octets).map_or(octets, |h| h.body) } else { octets }
}

/// Octets in `data_coding` as text; what is not a text coding is shown as Latin-1, flagged.
fn decode_any(octets: &[u8], data_coding: u8) -> (String, usize, bool) {
    match Coding::from_data_coding(data_coding) {
        Some(c) => {
            let (s, bad) = text::decode(octets, c);
            (s, bad, true)
        }
        None => (text::decode(octets, Coding::Latin1).0, 0, false),
    }
}

/// The receipt a submit earns under `s`, if it asked for one.
fn receipt_for(sm: &Sm, n: u64, message_id: &str, s: &Settings) -> Option<Box<Sm>> {
    let (word, state, failure) = s.receipt.stat()?;
    let asked = match sm.registered_delivery & 0x03 {
        1 | 3 => true,
        2 => failure,
        _ => false,
    };
    if !asked {
        return None;
    }
    let rid = match s.receipt_id_format {
        ReceiptIdFormat::Same => message_id.to_owned(),
        ReceiptIdFormat::Decimal => n.to_string(),
        ReceiptIdFormat::Hex => format!("{n:x}"),
    };
    let short_message = if s.receipt_as == ReceiptAs::Tlv {
        Vec::new()
    } else {
        let snippet: String = decode_any(body_of(sm), sm.data_coding).0.chars().take(20).collect();
        let date = chrono::Utc::now().format("%y%m%d%H%M");
        let dlvrd = if word == "DELIVRD" { "001" } else { "000" };
        let err = if failure { "001" } else { "000" };
        gsm_lossy(&format!(
            "id:{rid} sub:001 dlvrd:{dlvrd} submit date:{date} done date:{date} stat:{word} err:{err} text:{snippet}"
        ))
    };
    let tlvs = if s.receipt_as == ReceiptAs::Text {
        Vec::new()
    } else {
        vec![Tlv::c_string(tag::RECEIPTED_MESSAGE_ID, &rid), Tlv::new(tag::MESSAGE_STATE, vec![state])]
    };
    Some(Box::new(Sm {
        source_addr_ton: sm.dest_addr_ton,
        source_addr_npi: sm.dest_addr_npi,
        source_addr: sm.destination_addr.clone(),
        dest_addr_ton: sm.source_addr_ton,
        dest_addr_npi: sm.source_addr_npi,
        destination_addr: sm.source_addr.clone(),
        esm_class: 0x04,
        data_coding: 0,
        short_message,
        tlvs,
        ..Sm::default()
    }))
}

/// `s` in GSM 03.38, with `?` for what it cannot write (a receipt quoting an emoji).
fn gsm_lossy(s: &str) -> Vec<u8> {
    text::encode(s, Coding::Gsm7).unwrap_or_else(|_| {
        let mut out = Vec::with_capacity(s.len());
        let mut buf = [0u8; 4];
        for ch in s.chars() {
            match text::encode(ch.encode_utf8(&mut buf), Coding::Gsm7) {
                Ok(o) => out.extend(o),
                Err(_) => out.push(b'?'),
            }
        }
        out
    })
}

// ---------------------------------------------------------------------------------------------
// What was received

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Method {
    Single,
    Udh8,
    Udh16,
    Sar,
    Payload,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Single => "single",
            Method::Udh8 => "udh8",
            Method::Udh16 => "udh16",
            Method::Sar => "sar",
            Method::Payload => "payload",
        }
    }
}

/// USSD TLVs of a submit.
#[derive(Debug, Clone, Copy, Serialize)]
struct UssdInfo {
    op: u8,
    session: Option<u16>,
}

/// One message (or incomplete set of parts) as `GET /mt` lists it.
#[derive(Debug, Clone, Serialize)]
struct MtEntry {
    from: String,
    to: String,
    text: String,
    data_coding: u8,
    coding: &'static str,
    parts: usize,
    total_parts: usize,
    method: &'static str,
    message_ids: Vec<String>,
    registered_delivery: u8,
    warnings: Vec<String>,
    bind: u64,
    incomplete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ussd: Option<UssdInfo>,
}

struct PartRec {
    data_coding: u8,
    body: Vec<u8>,
    message_id: String,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct PartKey {
    from: String,
    to: String,
    method: Method,
    reference: u16,
    total: u8,
}

/// A message being put together (or a single one on its way to the list).
struct Assembly {
    first_at: Instant,
    bind: u64,
    from: String,
    to: String,
    method: Method,
    registered_delivery: u8,
    ussd: Option<UssdInfo>,
    parts: Vec<Option<PartRec>>,
    count: usize,
    max_seq: u8,
    out_of_order: bool,
    duplicates: BTreeSet<u8>,
    warnings: Vec<String>,
}

impl Assembly {
    fn finish(self, incomplete: bool) -> MtEntry {
        let present: Vec<(usize, &PartRec)> =
            self.parts.iter().enumerate().filter_map(|(i, p)| p.as_ref().map(|p| (i + 1, p))).collect();
        let mut warnings = self.warnings.clone();
        if self.out_of_order {
            warnings.push("parts arrived out of order".into());
        }
        for n in &self.duplicates {
            warnings.push(format!("part {n} received twice"));
        }
        let data_coding = present.first().map_or(0, |(_, p)| p.data_coding);
        for (n, p) in &present {
            let high_surrogate_last =
                p.body.len() % 2 == 0 && matches!(p.body.as_slice(), [.., 0xD8..=0xDB, _]);
            match Coding::from_data_coding(p.data_coding) {
                Some(Coding::Ucs2) if high_surrogate_last => {
                    warnings.push(format!("part {n} ends inside a surrogate pair"))
                }
                Some(Coding::Gsm7) if p.body.iter().rev().take_while(|o| **o == 0x1B).count() % 2 == 1 => {
                    warnings.push(format!("part {n} ends inside an escape pair"));
                }
                _ => {}
            }
        }
        let mixed = present.iter().any(|(_, p)| p.data_coding != data_coding);
        let (text, bad, is_text) = if mixed {
            warnings.push("mixed coding".into());
            let mut out = (String::new(), 0, true);
            for (_, p) in &present {
                let (s, bad, t) = decode_any(&p.body, p.data_coding);
                out.0.push_str(&s);
                out.1 += bad;
                out.2 &= t;
            }
            out
        } else {
            let octets: Vec<u8> = present.iter().flat_map(|(_, p)| p.body.iter().copied()).collect();
            decode_any(&octets, data_coding)
        };
        if !is_text {
            warnings.push(format!("data_coding 0x{data_coding:02X} is not a text coding; shown as Latin-1"));
        }
        if bad > 0 {
            warnings.push(format!("{bad} octets could not be decoded"));
        }
        MtEntry {
            text,
            data_coding,
            coding: Coding::from_data_coding(data_coding).map_or("other", Coding::name),
            parts: present.len(),
            total_parts: self.parts.len(),
            method: self.method.name(),
            message_ids: present.iter().map(|(_, p)| p.message_id.clone()).collect(),
            registered_delivery: self.registered_delivery,
            warnings,
            bind: self.bind,
            incomplete,
            ussd: self.ussd,
            from: self.from,
            to: self.to,
        }
    }
}

struct MtStore {
    list: VecDeque<MtEntry>,
    /// Entries forgotten from the front since the last clear: `?since=N` counts from the first
    /// entry ever listed, so a poller never misses one or sees one twice.
    evicted: u64,
    /// Sets still missing parts. A part is a duplicate only while its set is here: once complete,
    /// the same reference with the same octets is a new message (8-bit references wrap after
    /// 256, and benchmarks send one text again and again).
    pending: HashMap<PartKey, Assembly>,
    last_sweep: Instant,
}

impl MtStore {
    fn new() -> Self {
        Self { list: VecDeque::new(), evicted: 0, pending: HashMap::new(), last_sweep: Instant::now() }
    }

    fn push(&mut self, entry: MtEntry) {
        if self.list.len() >= MAX_MT {
            self.list.pop_front();
            self.evicted += 1;
        }
        self.list.push_back(entry);
    }

    /// List sets that waited too long as incomplete.
    fn sweep(&mut self, now: Instant) {
        self.last_sweep = now;
        let old: Vec<PartKey> = self
            .pending
            .iter()
            .filter(|(_, a)| now.duration_since(a.first_at) >= ASSEMBLY_WAIT)
            .map(|(k, _)| k.clone())
            .collect();
        let mut expired: Vec<Assembly> = old.iter().filter_map(|k| self.pending.remove(k)).collect();
        expired.sort_by_key(|a| a.first_at);
        for a in expired {
            self.push(a.finish(true));
        }
    }

    fn clear(&mut self) {
        *self = Self::new();
    }

    fn add(&mut self, part: PartIn, now: Instant) {
        if now.duration_since(self.last_sweep) >= Duration::from_secs(1) {
            self.sweep(now);
        }
        let PartIn {
            from,
            to,
            method,
            concat,
            data_coding,
            registered_delivery,
            body,
            message_id,
            bind,
            ussd,
            warnings,
        } = part;
        let Some(c) = concat else {
            let rec = PartRec { data_coding, body, message_id };
            let a = Assembly {
                first_at: now,
                bind,
                from,
                to,
                method,
                registered_delivery,
                ussd,
                parts: vec![Some(rec)],
                count: 1,
                max_seq: 1,
                out_of_order: false,
                duplicates: BTreeSet::new(),
                warnings,
            };
            self.push(a.finish(false));
            return;
        };
        let key = PartKey { from, to, method, reference: c.reference, total: c.total };
        let slot = usize::from(c.seq) - 1;
        let rec = PartRec { data_coding, body, message_id };
        if let Some(a) = self.pending.get_mut(&key)
            && let Some(Some(existing)) = a.parts.get(slot)
        {
            if existing.body == rec.body && existing.data_coding == rec.data_coding {
                a.duplicates.insert(c.seq);
                return;
            }
            // The same reference reused for another message: list the old set as it is.
            if let Some(old) = self.pending.remove(&key) {
                self.push(old.finish(true));
            }
        }
        let a = self.pending.entry(key.clone()).or_insert_with(|| Assembly {
            first_at: now,
            bind,
            from: key.from.clone(),
            to: key.to.clone(),
            method,
            registered_delivery,
            ussd,
            parts: (0..c.total).map(|_| None).collect(),
            count: 0,
            max_seq: 0,
            out_of_order: false,
            duplicates: BTreeSet::new(),
            warnings: Vec::new(),
        });
        for w in warnings {
            if !a.warnings.contains(&w) {
                a.warnings.push(w);
            }
        }
        if c.seq < a.max_seq {
            a.out_of_order = true;
        }
        a.max_seq = a.max_seq.max(c.seq);
        if let Some(s) = a.parts.get_mut(slot) {
            *s = Some(rec);
            a.count += 1;
        }
        if a.count == a.parts.len()
            && let Some(done) = self.pending.remove(&key)
        {
            self.push(done.finish(false));
        }
    }
}

/// One accepted `submit_sm`, classified.
struct PartIn {
    from: String,
    to: String,
    method: Method,
    concat: Option<Concat>,
    data_coding: u8,
    registered_delivery: u8,
    body: Vec<u8>,
    message_id: String,
    bind: u64,
    ussd: Option<UssdInfo>,
    warnings: Vec<String>,
}

/// Which concatenation IE a user data header holds (the last one, as `text::read_header` reads).
fn concat_iei(octets: &[u8]) -> Option<u8> {
    let len = usize::from(*octets.first()?);
    let mut ies = octets.get(1..1 + len)?;
    let mut found = None;
    while let [iei, n, rest @ ..] = ies {
        let n = usize::from(*n);
        if rest.len() < n {
            break;
        }
        if (*iei == 0x00 && n == 3) || (*iei == 0x08 && n == 4) {
            found = Some(*iei);
        }
        ies = &rest[n..];
    }
    found
}

fn record_mt(shared: &Shared, mut sm: Sm, message_id: String, bind: u64) {
    let mut warnings = Vec::new();
    let ussd = sm
        .tlv(tag::USSD_SERVICE_OP)
        .and_then(|v| v.first().copied())
        .map(|op| UssdInfo { op, session: sm.tlv_int(tag::ITS_SESSION_INFO) });
    let payload =
        sm.tlvs.iter().position(|t| t.tag == tag::MESSAGE_PAYLOAD).map(|i| sm.tlvs.swap_remove(i).value);
    let (mut method, octets) = match payload {
        Some(p) => (Method::Payload, p),
        None => (Method::Single, std::mem::take(&mut sm.short_message)),
    };
    let mut concat = None;
    let body = if sm.udhi() {
        match text::read_header(&octets) {
            Ok(h) => {
                if method == Method::Single
                    && let Some(c) = h.concat
                {
                    concat = Some(c);
                    method = if concat_iei(&octets) == Some(0x08) { Method::Udh16 } else { Method::Udh8 };
                }
                h.body.to_vec()
            }
            Err(e) => {
                warnings.push(format!("user data header: {e}"));
                octets
            }
        }
    } else {
        octets
    };
    if method == Method::Single
        && let (Some(reference), Some(total), Some(seq)) = (
            sm.tlv_int(tag::SAR_MSG_REF_NUM),
            sm.tlv_int(tag::SAR_TOTAL_SEGMENTS),
            sm.tlv_int(tag::SAR_SEGMENT_SEQNUM),
        )
    {
        method = Method::Sar;
        // Out of range reads as 0, which is refused below with the rest.
        concat = Some(Concat {
            reference,
            total: u8::try_from(total).unwrap_or(0),
            seq: u8::try_from(seq).unwrap_or(0),
        });
    }
    if let Some(c) = concat
        && (c.total == 0 || c.seq == 0 || c.seq > c.total)
    {
        warnings.push(format!("concatenation says part {} of {}", c.seq, c.total));
        concat = None;
    }
    let part = PartIn {
        from: std::mem::take(&mut sm.source_addr),
        to: std::mem::take(&mut sm.destination_addr),
        method,
        concat,
        data_coding: sm.data_coding,
        registered_delivery: sm.registered_delivery,
        body,
        message_id,
        bind,
        ussd,
        warnings,
    };
    lock(&shared.mt).add(part, Instant::now());
}

// ---------------------------------------------------------------------------------------------
// HTTP

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/mo", post(mo))
        .route("/mt", get(mt_list).delete(mt_clear))
        .route("/stats", get(stats))
        .route("/settings", get(settings_get).post(settings_post))
        .route("/raw", post(raw))
        .route("/drop", post(drop_all))
        .route("/responses", get(responses))
        .fallback(not_found)
        .with_state(shared)
}

fn reply(code: StatusCode, body: Value) -> Response {
    (code, axum::Json(body)).into_response()
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    reply(code, json!({ "error": message.into() }))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("the body must be JSON: {e}"))
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint; there are POST /mo, GET|DELETE /mt, GET /stats, GET|POST /settings, POST /raw, POST /drop, GET /responses",
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoRequest {
    from: String,
    to: String,
    content: String,
    coding: Option<String>,
    split: Option<String>,
    ussd: Option<UssdRequest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UssdRequest {
    op: u8,
    session: u16,
}

/// TON and NPI for an address as written: international digits, short codes, or alphanumeric.
fn ton_npi(addr: &str) -> (u8, u8) {
    let digits = addr.strip_prefix('+').unwrap_or(addr);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if addr.starts_with('+') || digits.len() > 8 { (1, 1) } else { (0, 1) }
    } else {
        (5, 0)
    }
}

async fn mo(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let req: MoRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if req.from.is_empty() || req.to.is_empty() {
        return error(StatusCode::BAD_REQUEST, "`from` and `to` must not be empty");
    }
    let coding = match req.coding.as_deref() {
        None => text::choose(&req.content),
        Some(name) => match Coding::from_name(name) {
            Some(c) => c,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("`coding` `{name}` is not one of gsm7, ascii, latin1, ucs2"),
                );
            }
        },
    };
    let split = match req.split.as_deref().unwrap_or("udh8") {
        "udh8" => Split::Udh8,
        "udh16" => Split::Udh16,
        "sar" => Split::Sar,
        "payload" => Split::Payload,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("`split` `{other}` is not one of udh8, udh16, sar, payload"),
            );
        }
    };
    let reference = shared.next_ref.fetch_add(1, Ordering::Relaxed) as u16;
    let parts = match text::split(&req.content, coding, split, reference) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("`content`: {e}")),
    };
    let (source_addr_ton, source_addr_npi) = ton_npi(&req.from);
    let (dest_addr_ton, dest_addr_npi) = ton_npi(&req.to);
    let mut sms = Vec::with_capacity(parts.len());
    for part in parts {
        let mut tlvs = Vec::new();
        if let Some(c) = part.sar {
            tlvs.push(Tlv::new(tag::SAR_MSG_REF_NUM, c.reference.to_be_bytes().to_vec()));
            tlvs.push(Tlv::new(tag::SAR_TOTAL_SEGMENTS, vec![c.total]));
            tlvs.push(Tlv::new(tag::SAR_SEGMENT_SEQNUM, vec![c.seq]));
        }
        if let Some(u) = &req.ussd {
            tlvs.push(Tlv::new(tag::USSD_SERVICE_OP, vec![u.op]));
            tlvs.push(Tlv::new(tag::ITS_SESSION_INFO, u.session.to_be_bytes().to_vec()));
        }
        let short_message = if part.payload {
            tlvs.push(Tlv::new(tag::MESSAGE_PAYLOAD, part.octets));
            Vec::new()
        } else {
            part.octets
        };
        let sm = Sm {
            source_addr_ton,
            source_addr_npi,
            source_addr: req.from.clone(),
            dest_addr_ton,
            dest_addr_npi,
            destination_addr: req.to.clone(),
            esm_class: if part.udhi { 0x40 } else { 0 },
            data_coding: coding.data_coding(),
            short_message,
            tlvs,
            ..Sm::default()
        };
        // Refused here, with the reason, rather than skipped on the connection.
        if let Err(e) = wire::encode(&Pdu::request(1, Body::DeliverSm(Box::new(sm.clone())))) {
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
        sms.push(sm);
    }
    if lock(&shared.registry).receivers() == 0 {
        return error(StatusCode::CONFLICT, "no receiver bound");
    }
    let n = sms.len();
    let mut waits = Vec::with_capacity(n);
    for sm in sms {
        let (tx, rx) = oneshot::channel();
        shared.deliver(Outbound { sm: Box::new(sm), attempts: 0, receipt: false, reply: Some(tx) });
        waits.push(rx);
    }
    let deadline = tokio::time::Instant::now() + MO_WAIT;
    let (mut statuses, mut all_ok, mut timed_out) = (Vec::with_capacity(n), true, false);
    for rx in waits {
        let name = match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Ok(code))) => {
                all_ok &= code == status::OK;
                wire::status_name(code)
            }
            Ok(Ok(Err(why))) => {
                all_ok = false;
                why
            }
            Ok(Err(_)) => {
                all_ok = false;
                "the fake SMSC stopped".into()
            }
            Err(_) => {
                (all_ok, timed_out) = (false, true);
                "no deliver_sm_resp within 10 s".into()
            }
        };
        statuses.push(name);
    }
    if timed_out {
        return reply(
            StatusCode::GATEWAY_TIMEOUT,
            json!({ "error": "the ESME did not answer every deliver_sm within 10 s", "parts": n, "statuses": statuses }),
        );
    }
    if all_ok {
        reply(StatusCode::OK, json!({ "parts": n }))
    } else {
        reply(StatusCode::OK, json!({ "parts": n, "statuses": statuses }))
    }
}

async fn mt_list(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let mut since = 0u64;
    for pair in query.as_deref().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("since", v)) => match v.parse() {
                Ok(n) => since = n,
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("`since` must be a count of entries, not `{v}`"),
                    );
                }
            },
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter `{pair}` (there is `since=N`)"),
                );
            }
        }
    }
    let mut mt = lock(&shared.mt);
    mt.sweep(Instant::now());
    let skip = usize::try_from(since.saturating_sub(mt.evicted)).unwrap_or(usize::MAX);
    let list: Vec<&MtEntry> = mt.list.iter().skip(skip).collect();
    (StatusCode::OK, axum::Json(list)).into_response()
}

async fn mt_clear(State(shared): State<Arc<Shared>>) -> Response {
    lock(&shared.mt).clear();
    reply(StatusCode::OK, json!({ "cleared": true }))
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let s = &shared.stats;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let resp: serde_json::Map<String, Value> =
        lock(&s.deliver_sm_resp).iter().map(|(code, n)| (wire::status_name(*code), json!(n))).collect();
    let (connections, held) = {
        let reg = lock(&shared.registry);
        (reg.conns.len(), reg.held.len())
    };
    reply(
        StatusCode::OK,
        json!({
            "binds": s.binds.load(Ordering::Relaxed).max(0),
            "binds_total": get(&s.binds_total),
            "submits": get(&s.submits),
            "throttled": get(&s.throttled),
            "queue_full": get(&s.queue_full),
            "errors": get(&s.errors),
            "drops": get(&s.drops),
            "deliver_sm_sent": get(&s.deliver_sm_sent),
            "deliver_sm_resp": resp,
            "generic_nacks_received": get(&s.generic_nacks),
            "bad_frames_received": get(&s.bad_frames),
            "connections": connections,
            "held_receipts": held,
        }),
    )
}

async fn settings_get(State(shared): State<Arc<Shared>>) -> Response {
    reply(StatusCode::OK, json!(*shared.settings.load_full()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsPatch {
    delay_ms: Option<u64>,
    error_rate: Option<f64>,
    throttle_rate: Option<f64>,
    queue_full_rate: Option<f64>,
    drop_after: Option<u64>,
    receipt: Option<String>,
    receipt_as: Option<String>,
    receipt_delay_ms: Option<u64>,
    id_format: Option<String>,
    receipt_id_format: Option<String>,
}

fn apply(s: &mut Settings, p: SettingsPatch) -> Result<(), String> {
    fn set<T: Copy>(slot: &mut T, v: Option<T>) {
        if let Some(v) = v {
            *slot = v;
        }
    }
    fn named<T: std::str::FromStr<Err = String>>(
        field: &str,
        slot: &mut T,
        v: Option<String>,
    ) -> Result<(), String> {
        if let Some(v) = v {
            *slot = v.parse().map_err(|e| format!("`{field}`: {e}"))?;
        }
        Ok(())
    }
    set(&mut s.delay_ms, p.delay_ms);
    set(&mut s.error_rate, p.error_rate);
    set(&mut s.throttle_rate, p.throttle_rate);
    set(&mut s.queue_full_rate, p.queue_full_rate);
    set(&mut s.drop_after, p.drop_after);
    set(&mut s.receipt_delay_ms, p.receipt_delay_ms);
    named("receipt", &mut s.receipt, p.receipt)?;
    named("receipt_as", &mut s.receipt_as, p.receipt_as)?;
    named("id_format", &mut s.id_format, p.id_format)?;
    named("receipt_id_format", &mut s.receipt_id_format, p.receipt_id_format)?;
    s.validate().map_err(|e| e.to_string())
}

async fn settings_post(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let patch: SettingsPatch = match parse(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let _guard = lock(&shared.settings_update);
    let mut s = (*shared.settings.load_full()).clone();
    if let Err(e) = apply(&mut s, patch) {
        return error(StatusCode::BAD_REQUEST, e);
    }
    let out = json!(s);
    info!("fake SMSC: settings now {out}");
    shared.settings.store(Arc::new(s));
    reply(StatusCode::OK, out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    hex: String,
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.is_empty() || digits.len() % 2 == 1 {
        return Err(format!("`hex` must hold an even, non-zero number of hex digits, not {}", digits.len()));
    }
    let nibble = |b: u8| {
        char::from(b)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or_else(|| format!("`{}` is not a hex digit", char::from(b)))
    };
    digits.chunks_exact(2).map(|p| Ok(nibble(p[0])? << 4 | nibble(p[1])?)).collect()
}

async fn raw(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let req: RawRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let octets = match unhex(&req.hex) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let reg = lock(&shared.registry);
    let mut sent = 0;
    for c in reg.conns.iter().filter(|c| c.kind.is_some_and(BindKind::receives)) {
        if c.tx.send(Cmd::Raw(octets.clone())).is_ok() {
            sent += 1;
        }
    }
    drop(reg);
    if sent == 0 {
        return error(StatusCode::CONFLICT, "no receiver bound");
    }
    reply(StatusCode::OK, json!({ "sent_to": sent, "octets": octets.len() }))
}

async fn drop_all(State(shared): State<Arc<Shared>>) -> Response {
    let reg = lock(&shared.registry);
    let n = reg.conns.iter().filter(|c| c.tx.send(Cmd::Close).is_ok()).count();
    drop(reg);
    info!("fake SMSC: dropping {n} connections (POST /drop)");
    reply(StatusCode::OK, json!({ "dropped": n }))
}

async fn responses(State(shared): State<Arc<Shared>>) -> Response {
    let list = lock(&shared.responses);
    (StatusCode::OK, axum::Json(&*list)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        smpp: SocketAddr,
        http: String,
        client: reqwest::Client,
        _stop: oneshot::Sender<()>,
    }

    async fn start(settings: Settings) -> Fake {
        let smpp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (smpp_addr, http_addr) = (smpp.local_addr().unwrap(), http.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            serve(smpp, http, settings, async {
                let _ = rx.await;
            })
            .await
            .unwrap()
        });
        Fake {
            smpp: smpp_addr,
            http: format!("http://{http_addr}"),
            client: reqwest::Client::new(),
            _stop: tx,
        }
    }

    impl Fake {
        async fn get(&self, path: &str) -> Value {
            let r = self.client.get(format!("{}{path}", self.http)).send().await.unwrap();
            assert_eq!(r.status(), 200, "GET {path}");
            r.json().await.unwrap()
        }

        async fn post(&self, path: &str, body: Value) -> (u16, Value) {
            let r = self.client.post(format!("{}{path}", self.http)).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json().await.unwrap())
        }

        async fn esme(&self, kind: BindKind) -> Esme {
            let mut esme = Esme::connect(self.smpp).await;
            let resp = esme.bind(kind, "smppclient1", "password").await;
            assert_eq!(resp.status, status::OK, "{resp}");
            esme
        }
    }

    struct Esme {
        framed: Framed<TcpStream, Codec>,
        seq: u32,
    }

    impl Esme {
        async fn connect(addr: SocketAddr) -> Self {
            Esme { framed: Framed::new(TcpStream::connect(addr).await.unwrap(), Codec::new(MAX_PDU)), seq: 0 }
        }

        async fn send(&mut self, body: Body) -> u32 {
            self.seq += 1;
            self.framed.send(&Pdu::request(self.seq, body)).await.unwrap();
            self.seq
        }

        async fn answer(&mut self, sequence: u32, code: u32, body: Body) {
            self.framed.send(&Pdu::response(sequence, code, body)).await.unwrap();
        }

        async fn frame(&mut self) -> Option<io::Result<Frame>> {
            tokio::time::timeout(Duration::from_secs(5), self.framed.next())
                .await
                .expect("nothing from the fake in 5 s")
        }

        async fn pdu(&mut self) -> Pdu {
            match self.frame().await {
                Some(Ok(Frame::Pdu(p))) => p,
                other => panic!("expected a PDU, got {other:?}"),
            }
        }

        /// The fake closed the connection (EOF or reset).
        async fn closed(&mut self) {
            match self.frame().await {
                None | Some(Err(_)) => {}
                Some(Ok(f)) => panic!("expected the connection closed, got {f:?}"),
            }
        }

        async fn bind(&mut self, kind: BindKind, system_id: &str, password: &str) -> Pdu {
            let b = Bind {
                system_id: system_id.into(),
                password: password.into(),
                interface_version: 0x34,
                ..Bind::default()
            };
            self.send(Body::Bind(kind, b)).await;
            self.pdu().await
        }

        async fn submit(&mut self, sm: Sm) -> Pdu {
            let seq = self.send(Body::SubmitSm(Box::new(sm))).await;
            let resp = self.pdu().await;
            assert_eq!(resp.sequence, seq);
            resp
        }
    }

    fn sm(short_message: &[u8]) -> Sm {
        Sm {
            source_addr: "27820000001".into(),
            destination_addr: "1234".into(),
            short_message: short_message.to_vec(),
            ..Sm::default()
        }
    }

    fn udh_sm(part: &text::Part, coding: Coding) -> Sm {
        Sm {
            esm_class: if part.udhi { 0x40 } else { 0 },
            data_coding: coding.data_coding(),
            ..sm(&part.octets)
        }
    }

    #[tokio::test]
    async fn binds_are_checked() {
        let fake = start(Settings::default()).await;
        let mut esme = fake.esme(BindKind::Transceiver).await;
        let again = esme.bind(BindKind::Transceiver, "smppclient1", "password").await;
        assert_eq!(again.status, status::RALYBND);
        esme.send(Body::Other(id::QUERY_SM)).await;
        let nack = esme.pdu().await;
        assert_eq!((nack.body, nack.status), (Body::GenericNack, status::RINVCMDID));
        esme.send(Body::EnquireLink).await;
        assert_eq!(esme.pdu().await.body, Body::EnquireLinkResp);

        let mut other = Esme::connect(fake.smpp).await;
        assert_eq!(other.bind(BindKind::Transmitter, "smppclient1", "wrong").await.status, status::RINVPASWD);
        assert_eq!(other.bind(BindKind::Transmitter, "nobody", "password").await.status, status::RINVSYSID);
        let early = other.submit(sm(b"hi")).await;
        assert_eq!(early.status, status::RINVBNDSTS, "a submit before bind");
        other.send(Body::EnquireLink).await;
        assert_eq!(other.pdu().await.status, status::OK, "enquire_link in any state");
        let resp = other.bind(BindKind::Receiver, "smppclient1", "password").await;
        assert_eq!(
            (resp.status, resp.body),
            (status::OK, Body::BindResp(BindKind::Receiver, SMSC_SYSTEM_ID.into()))
        );
        assert_eq!(other.submit(sm(b"hi")).await.status, status::RINVBNDSTS, "a receiver may not submit");

        let stats = fake.get("/stats").await;
        assert_eq!((stats["binds"].as_i64(), stats["binds_total"].as_u64()), (Some(2), Some(2)));
        esme.send(Body::Unbind).await;
        assert_eq!(esme.pdu().await.body, Body::UnbindResp);
        esme.closed().await;
    }

    #[tokio::test]
    async fn a_submit_is_answered_with_a_hex_id() {
        let fake = start(Settings::default()).await;
        let mut esme = fake.esme(BindKind::Transmitter).await;
        let mut ids = Vec::new();
        for _ in 0..11 {
            let resp = esme.submit(sm(b"hello")).await;
            assert_eq!(resp.status, status::OK);
            let Body::SubmitSmResp(id) = resp.body else { panic!("{resp}") };
            ids.push(id);
        }
        assert_eq!(ids.first().map(String::as_str), Some("1"));
        assert_eq!(ids.last().map(String::as_str), Some("b"), "11 in hex");
        let mt = fake.get("/mt").await;
        assert_eq!(mt.as_array().map(Vec::len), Some(11));
        assert_eq!(mt[0]["text"], "hello");
        assert_eq!(mt[0]["method"], "single");
        assert_eq!(mt[0]["coding"], "gsm7");
        assert_eq!(mt[0]["message_ids"], json!(["1"]));
        assert_eq!(fake.get("/mt?since=10").await.as_array().map(Vec::len), Some(1));
        let _ = fake.client.delete(format!("{}/mt", fake.http)).send().await.unwrap();
        assert_eq!(fake.get("/mt").await, json!([]));
    }

    #[tokio::test]
    async fn a_two_part_udh_message_is_listed_once_with_its_text() {
        let fake = start(Settings::default()).await;
        let mut esme = fake.esme(BindKind::Transceiver).await;
        let t: String = (0..200).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let parts = text::split(&t, Coding::Gsm7, Split::Udh8, 7).unwrap();
        assert_eq!(parts.len(), 2);
        for p in &parts {
            assert_eq!(esme.submit(udh_sm(p, Coding::Gsm7)).await.status, status::OK);
        }
        let mt = fake.get("/mt").await;
        assert_eq!(mt.as_array().map(Vec::len), Some(1), "{mt}");
        let e = &mt[0];
        assert_eq!(e["text"], t.as_str());
        assert_eq!((e["parts"].as_u64(), e["method"].as_str()), (Some(2), Some("udh8")));
        assert_eq!(e["message_ids"], json!(["1", "2"]));
        assert_eq!((e["warnings"].clone(), e["incomplete"].clone()), (json!([]), json!(false)));
    }

    #[tokio::test]
    async fn broken_parts_are_reassembled_with_warnings() {
        let fake = start(Settings::default()).await;
        let mut esme = fake.esme(BindKind::Transmitter).await;
        // "ab😀cd" cut inside the surrogate pair; part 2 first, and twice.
        let p1 = [5, 0x00, 3, 9, 2, 1, 0x00, 0x61, 0x00, 0x62, 0xD8, 0x3D];
        let p2 = [5, 0x00, 3, 9, 2, 2, 0xDE, 0x00, 0x00, 0x63, 0x00, 0x64];
        for p in [&p2[..], &p2, &p1] {
            let resp = esme.submit(Sm { esm_class: 0x40, data_coding: 8, ..sm(p) }).await;
            assert_eq!(resp.status, status::OK);
        }
        // SAR, with parts in different codings.
        let sar = |seq: u8, dc: u8, body: &[u8]| Sm {
            data_coding: dc,
            tlvs: vec![
                Tlv::new(tag::SAR_MSG_REF_NUM, vec![0x12, 0x34]),
                Tlv::new(tag::SAR_TOTAL_SEGMENTS, vec![2]),
                Tlv::new(tag::SAR_SEGMENT_SEQNUM, vec![seq]),
            ],
            ..sm(body)
        };
        esme.submit(sar(1, 0, b"abc")).await;
        esme.submit(sar(2, 3, b"d\xe9")).await;
        let mt = fake.get("/mt").await;
        let e = &mt[0];
        assert_eq!(e["text"], "ab😀cd");
        let warnings: Vec<&str> =
            e["warnings"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        for w in
            ["part 1 ends inside a surrogate pair", "parts arrived out of order", "part 2 received twice"]
        {
            assert!(warnings.contains(&w), "{w:?} in {warnings:?}");
        }
        assert_eq!(e["message_ids"].as_array().map(Vec::len), Some(2));
        assert_eq!((mt[1]["text"].as_str(), mt[1]["method"].as_str()), (Some("abcdé"), Some("sar")));
        assert_eq!(mt[1]["warnings"], json!(["mixed coding"]));
    }

    #[tokio::test]
    async fn throttle_rate_one_throttles_every_submit_until_changed() {
        let fake = start(Settings { throttle_rate: 1.0, ..Settings::default() }).await;
        let mut esme = fake.esme(BindKind::Transmitter).await;
        for _ in 0..3 {
            let resp = esme.submit(sm(b"x")).await;
            assert_eq!((resp.status, resp.body), (status::RTHROTTLED, Body::SubmitSmResp(String::new())));
        }
        assert_eq!(fake.get("/mt").await, json!([]), "nothing refused is listed");
        let (code, body) = fake.post("/settings", json!({ "throttle_rate": 2.0 })).await;
        assert_eq!(code, 400, "{body}");
        let (code, body) = fake.post("/settings", json!({ "id_format": "octal" })).await;
        assert_eq!(code, 400);
        assert!(body["error"].as_str().unwrap().contains("hex-zeros"), "{body}");
        let (code, body) =
            fake.post("/settings", json!({ "throttle_rate": 0.0, "id_format": "hex-zeros" })).await;
        assert_eq!((code, body["throttle_rate"].as_f64()), (200, Some(0.0)), "{body}");
        let resp = esme.submit(sm(b"x")).await;
        assert_eq!((resp.status, resp.body), (status::OK, Body::SubmitSmResp("0000000001".into())));
        let stats = fake.get("/stats").await;
        assert_eq!((stats["submits"].as_u64(), stats["throttled"].as_u64()), (Some(4), Some(3)));
    }

    #[tokio::test]
    async fn drop_after_closes_the_connection_each_time() {
        let fake = start(Settings { drop_after: 3, ..Settings::default() }).await;
        for _ in 0..2 {
            let mut esme = fake.esme(BindKind::Transceiver).await;
            assert_eq!(esme.submit(sm(b"1")).await.status, status::OK);
            assert_eq!(esme.submit(sm(b"2")).await.status, status::OK);
            esme.send(Body::SubmitSm(Box::new(sm(b"3")))).await;
            esme.closed().await;
        }
        let stats = fake.get("/stats").await;
        assert_eq!((stats["drops"].as_u64(), stats["binds_total"].as_u64()), (Some(2), Some(2)));
        assert_eq!(
            fake.get("/mt").await.as_array().map(Vec::len),
            Some(4),
            "the unanswered submits are not listed"
        );
    }

    #[tokio::test]
    async fn mo_with_nothing_bound_is_refused() {
        let fake = start(Settings::default()).await;
        let (code, body) =
            fake.post("/mo", json!({ "from": "27820000001", "to": "1234", "content": "hi" })).await;
        assert_eq!((code, body), (409, json!({ "error": "no receiver bound" })));
        let _tx = fake.esme(BindKind::Transmitter).await;
        let (code, _) =
            fake.post("/mo", json!({ "from": "27820000001", "to": "1234", "content": "hi" })).await;
        assert_eq!(code, 409, "a transmitter cannot receive");
        let (code, body) =
            fake.post("/mo", json!({ "from": "1", "to": "2", "content": "hi", "coding": "ebcdic" })).await;
        assert_eq!(code, 400, "{body}");
        let (code, body) =
            fake.post("/mo", json!({ "from": "1", "to": "2", "content": "😀", "coding": "gsm7" })).await;
        assert_eq!(code, 400, "{body}");
    }

    #[tokio::test]
    async fn a_long_ucs2_mo_with_an_emoji_arrives_as_udh_parts() {
        let fake = start(Settings::default()).await;
        let mut esme = fake.esme(BindKind::Receiver).await;
        let content: String =
            (0..150).map(|i| if i == 66 { '😀' } else { char::from(b'a' + (i % 26) as u8) }).collect();
        let inject = fake.post("/mo", json!({ "from": "27820000001", "to": "1234", "content": content }));
        let receive = async {
            let mut parts: BTreeMap<u8, String> = BTreeMap::new();
            loop {
                let pdu = esme.pdu().await;
                let Body::DeliverSm(d) = &pdu.body else { panic!("{pdu}") };
                assert_eq!((d.esm_class, d.data_coding), (0x40, 8));
                let h = text::read_header(&d.short_message).unwrap();
                let c = h.concat.unwrap();
                let (s, bad) = text::decode(h.body, Coding::Ucs2);
                assert_eq!(bad, 0, "no part cuts the emoji");
                parts.insert(c.seq, s);
                esme.answer(pdu.sequence, status::OK, Body::DeliverSmResp).await;
                if parts.len() == usize::from(c.total) {
                    return parts.into_values().collect::<String>();
                }
            }
        };
        let ((code, body), text) = tokio::join!(inject, receive);
        assert_eq!(text, content);
        assert_eq!((code, body), (200, json!({ "parts": 3 })));
        let stats = fake.get("/stats").await;
        assert_eq!(stats["deliver_sm_resp"], json!({ "ESME_ROK": 3 }));
    }

    #[tokio::test]
    async fn a_receipt_follows_the_response_and_a_temporary_error_is_retried() {
        let settings = Settings {
            receipt_id_format: ReceiptIdFormat::Decimal,
            id_format: IdFormat::HexZeros,
            ..Settings::default()
        };
        let fake = start(settings).await;
        let mut esme = fake.esme(BindKind::Transceiver).await;
        for _ in 0..11 {
            esme.submit(sm(b"no receipt")).await;
        }
        let resp = esme.submit(Sm { registered_delivery: 1, ..sm(b"hello receipt") }).await;
        assert_eq!(resp.body, Body::SubmitSmResp("000000000C".into()));
        let first = esme.pdu().await;
        let Body::DeliverSm(d) = &first.body else { panic!("{first}") };
        assert_eq!(
            (d.esm_class, d.source_addr.as_str(), d.destination_addr.as_str()),
            (0x04, "1234", "27820000001")
        );
        assert_eq!(d.tlv_str(tag::RECEIPTED_MESSAGE_ID).as_deref(), Some("12"), "decimal, as Nexmo does");
        assert_eq!(d.tlv_int(tag::MESSAGE_STATE), Some(2));
        let receipt =
            super::super::receipt::parse_text(&text::decode(&d.short_message, Coding::Gsm7).0).unwrap();
        assert_eq!((receipt.id.as_deref(), receipt.stat.as_deref()), (Some("12"), Some("DELIVRD")));
        // "Try later": the same receipt comes again after 200 ms.
        esme.answer(first.sequence, status::RX_T_APPN, Body::DeliverSmResp).await;
        let again = esme.pdu().await;
        assert_ne!(again.sequence, first.sequence);
        assert_eq!(again.body, first.body);
        esme.answer(again.sequence, status::OK, Body::DeliverSmResp).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stats = fake.get("/stats").await;
        assert_eq!(stats["deliver_sm_resp"], json!({ "ESME_ROK": 1, "ESME_RX_T_APPN": 1 }));
        let responses = fake.get("/responses").await;
        assert_eq!(responses[0]["status_name"], "ESME_RX_T_APPN");
    }

    #[tokio::test]
    async fn raw_octets_reach_the_esme_and_its_answer_is_recorded() {
        let fake = start(Settings::default()).await;
        let (code, _) = fake.post("/raw", json!({ "hex": "00000010" })).await;
        assert_eq!(code, 409);
        let mut esme = fake.esme(BindKind::Transceiver).await;
        let (code, body) = fake.post("/raw", json!({ "hex": "zz" })).await;
        assert_eq!(code, 400, "{body}");
        // A deliver_sm whose body stops after service_type.
        let (code, body) =
            fake.post("/raw", json!({ "hex": "00000011 00000005 00000000 00000042 00" })).await;
        assert_eq!((code, body["sent_to"].as_u64()), (200, Some(1)));
        let Some(Ok(Frame::Bad(bad))) = esme.frame().await else { panic!("expected a bad frame") };
        let reply = bad.reply.unwrap();
        esme.framed.send(&reply).await.unwrap();
        esme.send(Body::EnquireLink).await;
        assert_eq!(esme.pdu().await.body, Body::EnquireLinkResp, "the link is up");
        let responses = fake.get("/responses").await;
        assert_eq!(responses[0]["sequence"], 0x42);
        assert_eq!(responses[0]["command"], wire::command_name(reply.body.command_id()));
        let (code, body) = fake.post("/drop", json!({})).await;
        assert_eq!((code, body["dropped"].as_u64()), (200, Some(1)));
        esme.closed().await;
    }

    #[test]
    fn a_set_missing_parts_is_listed_incomplete_after_ten_seconds() {
        let mut mt = MtStore::new();
        let t0 = Instant::now();
        let part = |seq: u8, body: &[u8]| PartIn {
            from: "a".into(),
            to: "b".into(),
            method: Method::Udh8,
            concat: Some(Concat { reference: 1, total: 3, seq }),
            data_coding: 0,
            registered_delivery: 1,
            body: body.to_vec(),
            message_id: format!("id{seq}"),
            bind: 4,
            ussd: None,
            warnings: Vec::new(),
        };
        mt.add(part(1, b"one "), t0);
        mt.add(part(3, b"three"), t0 + Duration::from_secs(2));
        mt.sweep(t0 + Duration::from_secs(9));
        assert!(mt.list.is_empty(), "still waiting");
        mt.sweep(t0 + Duration::from_secs(10));
        let e = serde_json::to_value(&mt.list[0]).unwrap();
        assert_eq!(
            (e["incomplete"].as_bool(), e["parts"].as_u64(), e["total_parts"].as_u64()),
            (Some(true), Some(2), Some(3))
        );
        assert_eq!((e["text"].as_str(), e["bind"].as_u64()), (Some("one three"), Some(4)));
        assert_eq!(e["message_ids"], json!(["id1", "id3"]));
        assert!(mt.pending.is_empty());
    }

    #[tokio::test]
    async fn ussd_tlvs_go_both_ways() {
        let fake = start(Settings::default()).await;
        let mut esme = fake.esme(BindKind::Transceiver).await;
        let inject = fake.post("/mo", json!({ "from": "27820000001", "to": "*120#", "content": "1", "ussd": { "op": 1, "session": 0x0102 } }));
        let receive = async {
            let pdu = esme.pdu().await;
            let Body::DeliverSm(d) = &pdu.body else { panic!("{pdu}") };
            assert_eq!(
                (d.tlv(tag::USSD_SERVICE_OP), d.tlv(tag::ITS_SESSION_INFO)),
                (Some(&[1u8][..]), Some(&[1u8, 2][..]))
            );
            assert_eq!((d.destination_addr.as_str(), d.short_message.as_slice()), ("*120#", &b"1"[..]));
            esme.answer(pdu.sequence, status::OK, Body::DeliverSmResp).await;
        };
        let ((code, _), ()) = tokio::join!(inject, receive);
        assert_eq!(code, 200);
        let tlvs =
            vec![Tlv::new(tag::USSD_SERVICE_OP, vec![17]), Tlv::new(tag::ITS_SESSION_INFO, vec![1, 2])];
        esme.submit(Sm { tlvs, ..sm(b"Menu") }).await;
        assert_eq!(fake.get("/mt").await[0]["ussd"], json!({ "op": 17, "session": 0x0102 }));
    }

    #[tokio::test]
    async fn delayed_responses_keep_their_order_while_submits_pipeline() {
        let fake = start(Settings { delay_ms: 400, ..Settings::default() }).await;
        let mut esme = fake.esme(BindKind::Transmitter).await;
        let started = Instant::now();
        let a = esme.send(Body::SubmitSm(Box::new(sm(b"a")))).await;
        let b = esme.send(Body::SubmitSm(Box::new(sm(b"b")))).await;
        assert_eq!(esme.pdu().await.sequence, a);
        assert_eq!(esme.pdu().await.sequence, b);
        let took = started.elapsed();
        // One after the other would take 800 ms.
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_millis(780),
            "{took:?}: both waited, side by side"
        );
    }

    /// Not a test of correctness: how many pipelined submits a second one connection gets
    /// answered (run with `--ignored --nocapture`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn throughput() {
        let fake = start(Settings::default()).await;
        let esme = fake.esme(BindKind::Transmitter).await;
        let (read, mut write) = esme.framed.into_inner().into_split();
        let mut stream = tokio_util::codec::FramedRead::new(read, Codec::new(MAX_PDU));
        let n = 100_000u32;
        let started = Instant::now();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut buf = tokio_util::bytes::BytesMut::new();
            for seq in 1..=n {
                wire::encode_into(
                    &Pdu::request(seq, Body::SubmitSm(Box::new(sm(b"hello benchmark")))),
                    &mut buf,
                )
                .unwrap();
                if buf.len() > 64 * 1024 {
                    write.write_all(&buf).await.unwrap();
                    buf.clear();
                }
            }
            write.write_all(&buf).await.unwrap();
            write
        });
        let mut got = 0;
        while got < n {
            match stream.next().await {
                Some(Ok(Frame::Pdu(p))) if p.status == status::OK => got += 1,
                other => panic!("{other:?}"),
            }
        }
        writer.await.unwrap();
        let secs = started.elapsed().as_secs_f64();
        println!("{n} submits answered in {secs:.2} s: {:.0}/s", f64::from(n) / secs);
    }
}
