//! The SMPP side: accepting connections and serving each bind as an SMSC does, misbehaving as configured.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::transports::smpp::wire::{
    self, BadFrame, Bind, BindKind, Body, Codec, Frame, Pdu, Sm, id, status,
};

use super::*;

pub(super) async fn accept(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
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
                    // One repeatable stream per connection of the seed: a failing run can be repeated.
                    rng: fastrand::Rng::with_seed(settings.seed ^ id.rotate_left(32)),
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

/// A `submit_sm_resp` held back by `delay_ms`, with the receipt it triggers once sent.
pub(super) struct Delayed {
    pub(super) at: tokio::time::Instant,
    pub(super) pdu: Pdu,
    pub(super) receipt: Option<(Box<Sm>, u64)>,
}

pub(super) enum Event {
    Frame(Option<io::Result<Frame>>),
    Cmd(Option<Cmd>),
    Due,
}

/// What a connection does after an event.
pub(super) enum Flow {
    Go,
    /// Flush what is written, then close.
    Close(String),
    /// Close at once.
    Abort(String),
}

pub(super) struct Conn {
    pub(super) id: u64,
    pub(super) peer: SocketAddr,
    pub(super) shared: Arc<Shared>,
    pub(super) framed: Framed<TcpStream, Codec>,
    pub(super) kind: Option<BindKind>,
    /// The last sequence number the fake used.
    pub(super) seq: u32,
    /// `submit_sm`s received on this connection (for `drop_after`).
    pub(super) submits: u64,
    pub(super) rng: fastrand::Rng,
    pub(super) delayed: VecDeque<Delayed>,
    /// `deliver_sm`s awaiting their response, by sequence number.
    pub(super) in_flight: HashMap<u32, Outbound>,
}

impl Conn {
    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>, stop: CancellationToken) {
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

    pub(super) async fn serve(
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

    pub(super) async fn on_event(&mut self, event: Event) -> io::Result<Flow> {
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

    pub(super) fn next_seq(&mut self) -> u32 {
        self.seq = if self.seq >= 0x7FFF_FFFE { 1 } else { self.seq + 1 };
        self.seq
    }

    /// Write `pdu` to the buffer. A PDU that cannot be encoded (an address no SMPP field can
    /// hold) is logged and skipped, not a reason to drop the link; `false` says so.
    pub(super) async fn send(&mut self, pdu: &Pdu) -> io::Result<bool> {
        match self.framed.feed(pdu).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                warn!("fake SMSC: connection {}: not sent: {e}", self.id);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    pub(super) async fn respond(&mut self, sequence: u32, code: u32, body: Body) -> io::Result<Flow> {
        self.send(&Pdu::response(sequence, code, body)).await?;
        Ok(Flow::Go)
    }

    pub(super) async fn on_bad(&mut self, bad: BadFrame) -> io::Result<Flow> {
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

    pub(super) async fn on_pdu(&mut self, pdu: Pdu) -> io::Result<Flow> {
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

    pub(super) fn on_response(&mut self, pdu: &Pdu) {
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
    pub(super) fn on_delivered(&mut self, sequence: u32, code: u32) {
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

    pub(super) async fn on_bind(&mut self, sequence: u32, kind: BindKind, bind: &Bind) -> io::Result<Flow> {
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

    pub(super) async fn on_submit(&mut self, sequence: u32, sm: Box<Sm>) -> io::Result<Flow> {
        let stats = &self.shared.stats;
        if !self.kind.is_some_and(BindKind::sends) {
            return self.respond(sequence, status::RINVBNDSTS, Body::SubmitSmResp(String::new())).await;
        }
        bump(&stats.submits);
        self.submits += 1;
        let s = self.shared.settings.load_full();
        if s.drop_after > 0 && self.submits >= s.drop_after {
            bump(&stats.drops);
            if s.drop_accepts && !sm.destination_addr.is_empty() {
                let n = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
                let message_id = s.id_format.format(n);
                if let Some(receipt) = receipt_for(&sm, n, &message_id, &s) {
                    self.shared.schedule_receipt(receipt, s.receipt_delay_ms);
                }
                record_mt(&self.shared, *sm, message_id, self.id);
            }
            info!(
                "fake SMSC: connection {} dropped at submit_sm #{} (drop_after {})",
                self.id, self.submits, s.drop_after
            );
            return Ok(Flow::Close(format!("dropped at submit_sm #{} (drop_after)", self.submits)));
        }
        let code = if sm.destination_addr.is_empty() {
            status::RINVDSTADR
        } else {
            let r = self.rng.f64();
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

    pub(super) async fn send_due(&mut self) -> io::Result<()> {
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

    pub(super) async fn deliver_sm(&mut self, out: Outbound) -> io::Result<()> {
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
