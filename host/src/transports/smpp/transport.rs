//! The SMPP transport: outbound messages become `submit_sm`s over the links, what the SMSC
//! delivers becomes inbound messages and delivery reports.
//!
//! - **Outbound**: a message is taken only while a sending link is bound. Its text is coded
//!   (`coding`, or `helper_metadata.smpp.coding`), split (`split`), and its parts are sent **in
//!   order on one link, each after the previous one's response**: the SMSC sees a long
//!   message's parts in order even when a throttle pause or a lost link sends one again, and
//!   other messages fill the window meanwhile. Every part's SMSC id is remembered for its
//!   receipt, and so is the id of an earlier send of it answered late (a copy at the SMSC);
//!   the ack carries the first part's id. Any refusal nacks the message with the status's
//!   name and code.
//! - **Receipts**: matched by id (TLV first, then text), through the state store, so any link
//!   or host (sharing Redis) takes them; a receipt whose id is not known yet (it raced its
//!   `submit_sm_resp`) is retried for `unmatched_wait_ms`. One that still matches nothing (a
//!   copy whose answer was lost with its link, or an expired record) is about no message: it
//!   is published as a Vumi status event of type `unmatched_receipt`, logged and counted,
//!   and never put on the failure path.
//! - **Inbound**: a `deliver_sm` is answered `ESME_ROK` only once the bus has taken its message
//!   (or the state store its part); if the bus refuses, `ESME_RX_T_APPN`, so the SMSC retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::super::{Transport, TransportContext, TransportError};
use super::correlate::{Correlator, Sent};
use super::link::{Deliver, Link, LinkConfig, Outcome};
use super::parts::{Added, Reassembler};
use super::receipt::{self, IdForm};
use super::text::{self, Coding, Split};
use super::wire::{Bind, BindKind, Sm, Tlv, status, tag};
use crate::bus::{Consumer, Delivery};
use crate::config::{BindMode, OnTimeout, SmppConfig, UssdProfile};
use crate::message::{DeliveryStatus, Event, Message, SessionEvent, UserMessage};
use crate::state::KvStore;
use crate::telemetry::throttle::Throttle;

/// A `submit_sm`, encoded once (see [`Link::encode`]).
type Encoded = Arc<[u8]>;

struct Shared {
    ctx: TransportContext,
    config: SmppConfig,
    coding: Option<Coding>,
    split: Split,
    id_form: IdForm,
    correlator: Correlator,
    parts: Reassembler,
    senders: Vec<Arc<Link>>,
    next: AtomicUsize,
    reference: AtomicU16,
    unmatched: prometheus_client::metrics::counter::Counter,
    /// Control characters sent as `?` (see `text::for_sms`).
    replaced: prometheus_client::metrics::counter::Counter,
    refused: prometheus_client::metrics::counter::Counter,
}

/// An SMPP transport: its links, and the bus on either side.
pub struct SmppTransport {
    shared: Arc<Shared>,
    links: Vec<Arc<Link>>,
}

impl SmppTransport {
    /// A transport keeping receipts' ids and long messages' parts in `kv` (namespaced for it).
    pub fn new(ctx: TransportContext, kv: Arc<dyn KvStore>, config: &SmppConfig) -> Self {
        let name = ctx.connector.to_string();
        let bind = Bind {
            system_id: config.system_id.clone(),
            password: config.password.clone(),
            system_type: config.system_type.clone(),
            interface_version: 0x34,
            addr_ton: 0,
            addr_npi: 0,
            address_range: String::new(),
        };
        let link = |label: String, kind: BindKind| {
            Link::new(LinkConfig {
                transport: name.clone(),
                label,
                address: config.address.clone(),
                bind: bind.clone(),
                kind,
                window: usize::from(config.window),
                tps: config.tps,
                throttle_delay: Duration::from_millis(config.throttle_delay_ms),
                response_timeout: Duration::from_millis(config.response_timeout_ms),
                retry_on_timeout: config.on_timeout == OnTimeout::Retry,
                max_resends: config.max_resends,
                enquire_link: Duration::from_millis(config.enquire_link_ms),
                reconnect_min: Duration::from_millis(config.reconnect_min_ms),
                reconnect_max: Duration::from_millis(config.reconnect_max_ms),
                max_pdu: config.max_pdu_bytes,
            })
        };
        let mut links = Vec::new();
        for i in 0..config.binds {
            match config.bind_mode {
                BindMode::Transceiver => links.push(link(format!("{i}-trx"), BindKind::Transceiver)),
                BindMode::TransmitterReceiver => {
                    links.push(link(format!("{i}-tx"), BindKind::Transmitter));
                    links.push(link(format!("{i}-rx"), BindKind::Receiver));
                }
            }
        }
        let senders = links.iter().filter(|l| l.kind().sends()).cloned().collect();
        let m = crate::telemetry::metrics::metrics();
        let shared = Shared {
            coding: Coding::from_name(&config.coding),
            split: match config.split.as_str() {
                "udh16" => Split::Udh16,
                "sar" => Split::Sar,
                "payload" => Split::Payload,
                _ => Split::Udh8,
            },
            id_form: config.id_form.parse().unwrap_or_default(),
            correlator: Correlator::new(kv.clone(), Duration::from_secs(config.receipt_ttl_secs)),
            parts: Reassembler::new(kv, Duration::from_secs(config.reassembly_ttl_secs)),
            senders,
            next: AtomicUsize::new(0),
            // Start anywhere: two hosts (or a restart) rarely reuse a reference for one recipient.
            reference: AtomicU16::new(fastrand::u16(..)),
            unmatched: m.smpp(&name, "unmatched_receipt"),
            replaced: m.smpp(&name, "control_replaced"),
            refused: m.smpp(&name, "deliver_refused"),
            config: config.clone(),
            ctx,
        };
        Self { shared: Arc::new(shared), links }
    }
}

#[async_trait::async_trait]
impl Transport for SmppTransport {
    fn prefetch(&self) -> u16 {
        let window = usize::from(self.shared.config.window) * self.shared.senders.len().max(1);
        u16::try_from(window * 2).unwrap_or(u16::MAX).max(8)
    }

    async fn run(
        self: Box<Self>,
        mut outbound: Box<dyn Consumer>,
        shutdown: CancellationToken,
    ) -> Result<(), TransportError> {
        let shared = self.shared.clone();
        let links_stop = CancellationToken::new();
        let mut tasks = Vec::new();
        for link in &self.links {
            let deliver: Arc<dyn Deliver> = shared.clone();
            tasks.push(tokio::spawn(link.clone().run(deliver, links_stop.clone())));
        }
        tokio::spawn(report_incomplete(shared.clone(), shutdown.clone()));
        // Messages being sent at once: enough to keep every link's window full.
        let slots = Arc::new(Semaphore::new(usize::from(self.prefetch())));
        let mut bound: Vec<_> = shared.senders.iter().map(|l| l.watch_bound()).collect();
        'outer: loop {
            // Take nothing while no link can send: it would only wait in a queue.
            while !shared.senders.iter().any(|l| l.is_bound()) {
                let changes = futures::future::select_all(bound.iter_mut().map(|w| Box::pin(w.changed())));
                tokio::select! {
                    () = shutdown.cancelled() => break 'outer,
                    _ = changes => {}
                }
            }
            let Ok(permit) = slots.clone().acquire_owned().await else { break };
            let delivery = tokio::select! {
                () = shutdown.cancelled() => break,
                d = outbound.next() => match d { Some(d) => d, None => break },
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                shared.send(delivery).await;
                drop(permit);
            });
        }
        // Let the messages under way finish (every slot given back; their links drain, then
        // unbind), then stop.
        let all = u32::from(self.prefetch());
        let _ = tokio::time::timeout(
            Duration::from_millis(shared.config.response_timeout_ms) * 2,
            slots.acquire_many(all),
        )
        .await;
        links_stop.cancel();
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    }
}

fn meta_str<'a>(msg: &'a UserMessage, key: &str) -> Option<&'a str> {
    msg.helper_metadata.get("smpp").and_then(|v| v.get(key)).and_then(|v| v.as_str())
}

impl Shared {
    fn name(&self) -> &str {
        self.ctx.connector.as_str()
    }

    /// The next link to send on: round robin among the bound ones (any, if none is bound: it
    /// holds the message until it binds).
    fn pick(&self) -> Arc<Link> {
        let n = self.senders.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.senders[(start + i) % n])
            .find(|l| l.is_bound())
            .unwrap_or(&self.senders[start % n])
            .clone()
    }

    /// The `submit_sm`s that carry `msg`, encoded, and whether it asks for receipts; or why it
    /// cannot be sent (caught here, as a nack naming the field, before any part is sent).
    fn pdus(&self, msg: &UserMessage) -> Result<(Vec<Encoded>, bool), String> {
        let to = msg.to_addr.as_deref().filter(|t| !t.is_empty()).ok_or("the message has no `to_addr`")?;
        let from = msg
            .from_addr
            .as_deref()
            .filter(|f| !f.is_empty())
            .or(self.config.default_from.as_deref())
            .unwrap_or("");
        let (content, replaced) = text::for_sms(msg.content.as_deref().unwrap_or(""));
        if replaced > 0 {
            tracing::debug!(
                connector = self.name(),
                message_id = msg.message_id,
                replaced,
                "control characters sent as `?`"
            );
            self.replaced.inc_by(replaced as u64);
        }
        let content = content.as_ref();
        let coding = match meta_str(msg, "coding") {
            Some(name) => Coding::from_name(name).ok_or_else(|| {
                format!("helper_metadata.smpp.coding `{name}` is not gsm7, ascii, latin1 or ucs2")
            })?,
            None => self.coding.unwrap_or_else(|| text::choose(content)),
        };
        let split = match meta_str(msg, "split") {
            Some("udh8") => Split::Udh8,
            Some("udh16") => Split::Udh16,
            Some("sar") => Split::Sar,
            Some("payload") => Split::Payload,
            Some(other) => {
                return Err(format!(
                    "helper_metadata.smpp.split `{other}` is not udh8, udh16, sar or payload"
                ));
            }
            None => self.split,
        };
        let reference = self.reference.fetch_add(1, Ordering::Relaxed);
        let parts = text::split(content, coding, split, reference).map_err(|e| e.to_string())?;
        let ussd = self.config.ussd.map(|p| ussd_out(p, msg));
        let receipts = self.config.delivery_reports && ussd.is_none();
        let mut out = Vec::with_capacity(parts.len());
        for part in parts {
            let mut sm = Sm {
                source_addr_ton: self.config.source_ton_npi[0],
                source_addr_npi: self.config.source_ton_npi[1],
                source_addr: from.to_owned(),
                dest_addr_ton: self.config.dest_ton_npi[0],
                dest_addr_npi: self.config.dest_ton_npi[1],
                destination_addr: to.to_owned(),
                esm_class: if part.udhi { 0x40 } else { 0 },
                registered_delivery: u8::from(receipts),
                data_coding: coding.data_coding(),
                ..Sm::default()
            };
            if part.payload {
                sm.tlvs.push(Tlv::new(tag::MESSAGE_PAYLOAD, part.octets));
            } else {
                sm.short_message = part.octets;
            }
            if let Some(c) = part.sar {
                sm.tlvs.push(Tlv::new(tag::SAR_MSG_REF_NUM, c.reference.to_be_bytes().to_vec()));
                sm.tlvs.push(Tlv::new(tag::SAR_TOTAL_SEGMENTS, vec![c.total]));
                sm.tlvs.push(Tlv::new(tag::SAR_SEGMENT_SEQNUM, vec![c.seq]));
            }
            if let Some(tlvs) = &ussd {
                sm.tlvs.extend(tlvs.iter().cloned());
            }
            out.push(Link::encode(sm).map_err(|e| e.to_string())?);
        }
        Ok((out, receipts))
    }

    async fn send(self: &Arc<Self>, delivery: Delivery) {
        let Message::User(msg) = &delivery.message else {
            delivery.ack();
            return;
        };
        let (pdus, receipts) = match self.pdus(msg) {
            Ok(p) => p,
            Err(reason) => {
                tracing::warn!(
                    connector = self.name(),
                    message_id = msg.message_id,
                    reason,
                    "outbound SMS not sent"
                );
                self.ctx.report_outcome(Event::nack(&msg.message_id, &reason), msg).await;
                delivery.ack();
                return;
            }
        };
        let total = pdus.len() as u8;
        tracing::debug!(connector = self.name(), message_id = msg.message_id, parts = total, "submitting");
        let mut ids = Vec::with_capacity(pdus.len());
        let mut link = self.pick();
        for (i, sm) in pdus.into_iter().enumerate() {
            if !link.is_bound() {
                link = self.pick();
            }
            let (outcome, late) = link.submit_tracked(sm).await;
            let failed = match outcome {
                Outcome::Accepted(id) => {
                    // Remembered only when a receipt will come to look for it: this send's id,
                    // and those of earlier sends of it answered late (copies at the SMSC, whose
                    // receipts would otherwise match nothing).
                    if receipts {
                        let sent = Sent { message_id: msg.message_id.clone(), part: i as u8 + 1, total };
                        if !id.is_empty() {
                            self.remember(&receipt::normalise(&id, self.id_form, true), &sent).await;
                        }
                        self.remember_late(late, sent);
                    }
                    ids.push(id);
                    None
                }
                Outcome::Rejected { reason, .. } => Some(reason),
                Outcome::TimedOut { sends } => {
                    Some(format!("no submit_sm_resp from the SMSC after {sends} sends"))
                }
                Outcome::Stopped => {
                    // The host is stopping: the message goes back to its queue.
                    delivery.nack(true);
                    return;
                }
            };
            if let Some(mut reason) = failed {
                if total > 1 {
                    reason = format!("{reason} (part {} of {total}; {} sent before it)", i + 1, ids.len());
                }
                tracing::warn!(
                    connector = self.name(),
                    message_id = msg.message_id,
                    reason,
                    "outbound SMS not sent"
                );
                self.ctx.report_outcome(Event::nack(&msg.message_id, &reason), msg).await;
                delivery.ack();
                return;
            }
        }
        let first = ids.first().cloned().unwrap_or_default();
        let mut event = Event::ack(&msg.message_id, if first.is_empty() { &msg.message_id } else { &first });
        if ids.len() > 1 {
            event.transport_metadata.insert("smpp".into(), json!({ "message_ids": ids }));
        }
        self.ctx.report_outcome(event, msg).await;
        delivery.ack();
    }

    /// Remember an SMSC id for its receipt, waiting in place for a state store that is down
    /// (the message is with the SMSC: forgetting it would orphan its receipt).
    async fn remember(&self, id: &str, sent: &Sent) {
        if let Err(e) = self.ctx.persist("an SMSC id", || self.correlator.remember(id, sent)).await {
            tracing::warn!(connector = self.name(), error = %e, smsc_id = id, "cannot remember an SMSC id; its receipt will be unmatched");
        }
    }

    /// Remember the ids of a part's copies as their late answers arrive.
    fn remember_late(self: &Arc<Self>, mut late: tokio::sync::mpsc::UnboundedReceiver<String>, sent: Sent) {
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(id) = late.recv().await {
                tracing::debug!(
                    connector = me.name(),
                    smsc_id = id,
                    message_id = sent.message_id,
                    "a copy's id, answered late"
                );
                me.remember(&receipt::normalise(&id, me.id_form, true), &sent).await;
            }
        });
    }

    /// A receipt that matches no message sent here: most often a copy's (sent again after a
    /// lost link, its first answer never read), or one whose record expired. Not an event
    /// about any message, and nothing failed: it is counted
    /// (`vumi_smpp_events_total{kind="unmatched_receipt"}`) and published as a Vumi status event
    /// of type `unmatched_receipt` on `<connector>.status`, which the admin API lists under the
    /// transport. Never on the failure path.
    async fn unmatched(&self, details: serde_json::Value) {
        self.unmatched.inc();
        let mut status = crate::message::Status {
            component: self.name().to_owned(),
            status: crate::message::StatusLevel::Ok,
            status_type: "unmatched_receipt".into(),
            message: "a delivery receipt names no message sent here (a copy's, or one whose record expired)"
                .into(),
            reasons: Vec::new(),
            details: Default::default(),
            timestamp: crate::message::Timestamp::now(),
            helper_metadata: Default::default(),
            routing_metadata: Default::default(),
            extra: Default::default(),
        };
        if let serde_json::Value::Object(d) = details {
            status.details = d;
        }
        let key = crate::bus::RoutingKey::status(&self.ctx.connector);
        if let Err(e) = self.ctx.publish.publish(&key, status.into()).await {
            tracing::debug!(connector = self.name(), error = %e, "cannot publish an unmatched_receipt status event; it is counted");
        }
    }

    /// The text of `octets` in `data_coding` (GSM when unknown, as SMSCs default).
    fn decode(octets: &[u8], data_coding: u8) -> String {
        text::decode(octets, Coding::from_data_coding(data_coding).unwrap_or(Coding::Gsm7)).0
    }

    async fn receipt(&self, sm: Sm) -> u32 {
        let body =
            sm.tlv(tag::MESSAGE_PAYLOAD).map(<[u8]>::to_vec).unwrap_or_else(|| sm.short_message.clone());
        let text = Self::decode(&body, sm.data_coding);
        let parsed = receipt::parse_text(&text).unwrap_or_default();
        // The TLVs first (an SMSC that sends both means them), the text for what they lack.
        let tlv_id = sm.tlv_str(tag::RECEIPTED_MESSAGE_ID).filter(|s| !s.is_empty());
        let stat = sm
            .tlv_int(tag::MESSAGE_STATE)
            .map(|s| receipt::state_name(s as u8).to_owned())
            .or(parsed.stat.clone());
        let err = parsed.err.clone().or_else(|| {
            sm.tlv(tag::NETWORK_ERROR_CODE).map(|v| v.iter().map(|b| format!("{b:02X}")).collect())
        });
        let Some(raw_id) = tlv_id.clone().or(parsed.id.clone()) else {
            tracing::warn!(
                connector = self.name(),
                text,
                "a delivery receipt with no message id; answered, not matched"
            );
            self.unmatched(json!({ "smsc_id": null, "stat": stat, "err": err, "text": text })).await;
            return status::OK;
        };
        let outcome = stat.as_deref().map(receipt::outcome).unwrap_or(receipt::Outcome::Pending);
        // The TLV carries the id as the submit_sm_resp wrote it; the text often in decimal.
        let forms = [
            receipt::normalise(&raw_id, self.id_form, tlv_id.is_some()),
            receipt::normalise(&raw_id, self.id_form, tlv_id.is_none()),
        ];
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.config.unmatched_wait_ms);
        let found = loop {
            let mut found = None;
            for id in &forms {
                match self.correlator.lookup(id).await {
                    Ok(Some(s)) => {
                        found = Some(s);
                        break;
                    }
                    Ok(None) => {}
                    Err(_) => return status::RX_T_APPN,
                }
            }
            if found.is_some() || tokio::time::Instant::now() >= deadline {
                break found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let details = json!({ "smsc_id": raw_id, "stat": stat, "err": err });
        let Some(sent) = found else {
            static LOG: Throttle = Throttle::with_burst(Duration::from_secs(10), 10);
            if let Some(more) = LOG.hit() {
                tracing::warn!(
                    connector = self.name(),
                    smsc_id = raw_id,
                    stat,
                    more,
                    "a delivery receipt names no message sent here (a copy's, or one whose record expired); published as an unmatched_receipt status event"
                );
            }
            self.unmatched(details).await;
            return status::OK;
        };
        let decided = match self.correlator.settle(&sent, outcome).await {
            Ok(d) => d,
            Err(_) => return status::RX_T_APPN,
        };
        let Some(outcome) = decided else { return status::OK };
        let mut event = Event::delivery_report(&sent.message_id, to_status(outcome));
        let mut d = details;
        d["part"] = json!(sent.part);
        d["parts"] = json!(sent.total);
        event.transport_metadata.insert("smpp".into(), d);
        let mut about = UserMessage::inbound("", "", "", "", None, None);
        about.message_id = sent.message_id.clone();
        match self.ctx.publish_event(event, &about).await {
            Ok(()) => status::OK,
            Err(_) => {
                // Not passed on: give a final decision back, so the SMSC's next try (it was
                // answered with a temporary error) makes it again. A pending report claimed
                // nothing.
                let claimed = !matches!(outcome, receipt::Outcome::Pending);
                if claimed && let Err(e) = self.correlator.reopen(&sent).await {
                    tracing::warn!(connector = self.name(), error = %e, message_id = sent.message_id, "cannot reopen a delivery report not passed on; it is lost");
                }
                status::RX_T_APPN
            }
        }
    }

    async fn mo(&self, sm: Sm) -> u32 {
        let from = sm.source_addr.clone();
        let to = sm.destination_addr.clone();
        // A long message: UDH concatenation, or SAR TLVs.
        let (concat, body) = if sm.udhi() {
            match text::read_header(&sm.short_message) {
                Ok(h) => (h.concat, h.body.to_vec()),
                Err(e) => {
                    tracing::warn!(connector = self.name(), error = %e, "an inbound message's user data header does not read; refused");
                    return status::RINVESMCLASS;
                }
            }
        } else if let (Some(r), Some(t), Some(s)) = (
            sm.tlv_int(tag::SAR_MSG_REF_NUM),
            sm.tlv_int(tag::SAR_TOTAL_SEGMENTS),
            sm.tlv_int(tag::SAR_SEGMENT_SEQNUM),
        ) {
            (Some(text::Concat { reference: r, total: t as u8, seq: s as u8 }), sm.short_message.clone())
        } else {
            (
                None,
                sm.tlv(tag::MESSAGE_PAYLOAD).map(<[u8]>::to_vec).unwrap_or_else(|| sm.short_message.clone()),
            )
        };
        let long = concat.filter(|c| c.total > 1);
        let octets = match long {
            None => body,
            Some(c) => match self.parts.add(&from, &to, c, &body).await {
                Ok(Added::Complete(all)) => all,
                Ok(Added::Waiting { .. } | Added::Taken) => return status::OK,
                Err(super::parts::PartError::Numbering { .. }) => return status::RINVOPTPARAMVAL,
                Err(_) => return status::RX_T_APPN,
            },
        };
        let content = Self::decode(&octets, sm.data_coding);
        let kind = if self.config.ussd.is_some() { "ussd" } else { "sms" };
        let mut msg = UserMessage::inbound(self.name(), kind, from.clone(), to.clone(), Some(content), None);
        msg.from_addr_type = Some("msisdn".into());
        msg.transport_metadata.insert("smpp".into(), json!({ "data_coding": sm.data_coding }));
        if let Some(profile) = self.config.ussd {
            ussd_in(profile, &sm, &mut msg);
        }
        match self.ctx.publish_inbound(msg).await {
            Ok(()) => status::OK,
            Err(e) => {
                self.refused.inc();
                // A long message's parts were claimed: give them back for the SMSC's retry.
                if let Some(c) = long
                    && let Err(e) = self.parts.unclaim(&from, &to, c, &octets).await
                {
                    tracing::warn!(connector = self.name(), error = %e, "cannot give back a refused long message's parts; the SMSC's retry will not find them");
                }
                static LOG: Throttle = Throttle::with_burst(Duration::from_secs(10), 5);
                if let Some(more) = LOG.hit() {
                    tracing::warn!(connector = self.name(), error = %e, more, "the bus refused an inbound message; answered ESME_RX_T_APPN so the SMSC retries");
                }
                status::RX_T_APPN
            }
        }
    }
}

#[async_trait::async_trait]
impl Deliver for Shared {
    async fn deliver(&self, sm: Sm) -> u32 {
        if sm.is_receipt() { self.receipt(sm).await } else { self.mo(sm).await }
    }
}

fn to_status(o: receipt::Outcome) -> DeliveryStatus {
    match o {
        receipt::Outcome::Delivered => DeliveryStatus::Delivered,
        receipt::Outcome::Pending => DeliveryStatus::Pending,
        receipt::Outcome::Failed => DeliveryStatus::Failed,
    }
}

/// Report long inbound messages whose parts did not all arrive within the TTL: logged with
/// what did arrive, and counted, so the text does not vanish silently.
async fn report_incomplete(shared: Arc<Shared>, shutdown: CancellationToken) {
    let every = Duration::from_secs(shared.config.reassembly_ttl_secs.max(4) / 4);
    let counter = crate::telemetry::metrics::metrics().smpp(shared.name(), "incomplete_message");
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let Ok(sets) = shared.parts.expired().await else { continue };
        for set in sets {
            counter.inc();
            let have: Vec<u8> = set.parts.iter().map(|(n, _)| *n).collect();
            tracing::warn!(connector = shared.name(), from = set.key.from, to = set.key.to, reference = set.key.reference, total = set.key.total, parts_received = ?have, "a long inbound message never completed; its parts are dropped");
        }
    }
}

/// The Mica profile's session TLVs for a reply: `ussd_service_op` 2 (USSR request: the
/// session goes on) or 17 (PSSR response: the last screen), `its_session_info` echoed with
/// its end bit set on the last one.
fn ussd_out(_profile: UssdProfile, msg: &UserMessage) -> Vec<Tlv> {
    let close = msg.session_event == Some(SessionEvent::Close);
    let session = msg
        .transport_metadata
        .get("smpp")
        .and_then(|v| v.get("its_session_info"))
        .and_then(|v| v.as_u64())
        .unwrap_or(0) as u16;
    let info = if close { session | 1 } else { session & !1 };
    vec![
        Tlv::new(tag::USSD_SERVICE_OP, vec![if close { 17 } else { 2 }]),
        Tlv::new(tag::ITS_SESSION_INFO, info.to_be_bytes().to_vec()),
    ]
}

/// The Mica profile's reading of an inbound USSD `deliver_sm`: `ussd_service_op` 1 (PSSR
/// indication) starts a session, 18 (USSR confirm) resumes it, 17/0x81 (release) closes it;
/// `its_session_info` (its end bit also closes) is kept so replies can echo it.
fn ussd_in(_profile: UssdProfile, sm: &Sm, msg: &mut UserMessage) {
    let op = sm.tlv_int(tag::USSD_SERVICE_OP).unwrap_or(1);
    let info = sm.tlv_int(tag::ITS_SESSION_INFO).unwrap_or(0);
    msg.session_event = Some(match op {
        _ if info & 1 == 1 => SessionEvent::Close,
        1 => SessionEvent::New,
        17 | 0x81 => SessionEvent::Close,
        _ => SessionEvent::Resume,
    });
    if msg.session_event == Some(SessionEvent::New) {
        msg.content = msg.content.take().filter(|c| !c.is_empty());
    }
    if let Some(meta) = msg.transport_metadata.get_mut("smpp") {
        meta["its_session_info"] = json!(info);
        meta["ussd_service_op"] = json!(op);
    }
}
