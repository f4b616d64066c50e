//! The control API: inject MO messages and USSD, list what was received, stats, settings, raw PDUs, dropped links.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tracing::info;

use crate::transports::smpp::text::{self, Coding, Split};
use crate::transports::smpp::wire::{self, BindKind, Body, Pdu, Sm, Tlv, status, tag};

use super::*;

pub(super) fn router(shared: Arc<Shared>) -> Router {
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

pub(super) fn reply(code: StatusCode, body: Value) -> Response {
    (code, axum::Json(body)).into_response()
}

pub(super) fn error(code: StatusCode, message: impl Into<String>) -> Response {
    reply(code, json!({ "error": message.into() }))
}

pub(super) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("the body must be JSON: {e}"))
}

pub(super) async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint; there are POST /mo, GET|DELETE /mt, GET /stats, GET|POST /settings, POST /raw, POST /drop, GET /responses",
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MoRequest {
    pub(super) from: String,
    pub(super) to: String,
    pub(super) content: String,
    pub(super) coding: Option<String>,
    pub(super) split: Option<String>,
    pub(super) ussd: Option<UssdRequest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UssdRequest {
    pub(super) op: u8,
    pub(super) session: u16,
}

/// TON and NPI for an address as written: international digits, short codes, or alphanumeric.
pub(super) fn ton_npi(addr: &str) -> (u8, u8) {
    let digits = addr.strip_prefix('+').unwrap_or(addr);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if addr.starts_with('+') || digits.len() > 8 { (1, 1) } else { (0, 1) }
    } else {
        (5, 0)
    }
}

pub(super) async fn mo(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
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

pub(super) async fn mt_list(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
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

pub(super) async fn mt_clear(State(shared): State<Arc<Shared>>) -> Response {
    lock(&shared.mt).clear();
    reply(StatusCode::OK, json!({ "cleared": true }))
}

pub(super) async fn stats(State(shared): State<Arc<Shared>>) -> Response {
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

pub(super) async fn settings_get(State(shared): State<Arc<Shared>>) -> Response {
    reply(StatusCode::OK, json!(*shared.settings.load_full()))
}

pub(super) async fn settings_post(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
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
pub(super) struct RawRequest {
    pub(super) hex: String,
}

pub(super) fn unhex(s: &str) -> Result<Vec<u8>, String> {
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

pub(super) async fn raw(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
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

pub(super) async fn drop_all(State(shared): State<Arc<Shared>>) -> Response {
    let reg = lock(&shared.registry);
    let n = reg.conns.iter().filter(|c| c.tx.send(Cmd::Close).is_ok()).count();
    drop(reg);
    info!("fake SMSC: dropping {n} connections (POST /drop)");
    reply(StatusCode::OK, json!({ "dropped": n }))
}

pub(super) async fn responses(State(shared): State<Arc<Shared>>) -> Response {
    let list = lock(&shared.responses);
    (StatusCode::OK, axum::Json(&*list)).into_response()
}
