//! SMS over HTTP with an aggregator: the shape most SMS aggregators' HTTP APIs share.
//!
//! - Inbound: the aggregator POSTs `from`, `to`, `content` (and optionally its own `message_id`)
//!   as a form or as JSON to `/transports/<name>/inbound`; the answer carries our message id.
//! - Outbound: each message is POSTed (JSON or form, per config) to `outbound_url` with
//!   `message_id`, `to`, `from`, `content`, `in_reply_to`. A `2xx` answer is an ack whose
//!   `sent_message_id` is the aggregator's id (`message_id` or `id` in a JSON answer) when it
//!   gives one; a `4xx` is a nack with the aggregator's words; an unreachable aggregator, a
//!   `5xx` or a `429` is retried with backoff, then nacked.
//! - Delivery reports: the aggregator POSTs `message_id` (its id or ours) and `status`
//!   (`delivered`, `failed` or `pending`) to `/transports/<name>/delivery-report`; each becomes a
//!   `delivery_report` event. The id mapping lives in the state store, so any host sharing it
//!   can take the callback.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{Transport, TransportContext, TransportError};
use crate::bus::{Consumer, Delivery};
use crate::config::{BodyFormat, SmsHttpConfig};
use crate::message::{DeliveryStatus, Event, Message, Metadata, UserMessage};
use crate::retry::{GaveUp, Retry, RetryPolicy};
use crate::state::KvStore;
use crate::web::{
    ApiError, FieldError, error_chain, is_json, ok_json, parse_form, parse_json_object, read_body, required,
    unavailable,
};

/// How long the aggregator-id → our-id mapping is kept for delivery reports.
const SENT_TTL: Duration = Duration::from_secs(7 * 86_400);

struct Shared {
    ctx: TransportContext,
    kv: Arc<dyn KvStore>,
    client: reqwest::Client,
    outbound_url: Option<reqwest::Url>,
    /// How an outbound message is retried while the aggregator fails it for now.
    retry: Retry,
    config: SmsHttpConfig,
    max_body_bytes: usize,
}

/// What we remember of a sent message, to turn its delivery reports into events.
#[derive(Serialize, Deserialize)]
struct Sent {
    message_id: String,
    routing_metadata: Metadata,
}

/// The transport: two HTTP routes plus an outbound sender.
#[derive(Clone)]
pub struct SmsHttpTransport {
    shared: Arc<Shared>,
}

impl SmsHttpTransport {
    /// A transport keeping its id mapping in `kv` (already namespaced for it).
    pub fn new(
        ctx: TransportContext,
        kv: Arc<dyn KvStore>,
        config: &SmsHttpConfig,
        retry: &RetryPolicy,
        max_body_bytes: usize,
    ) -> Self {
        let retry = Retry::new(retry, format!("transport:{}", ctx.connector));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.request_timeout_ms))
            // A redirected POST would silently become a GET elsewhere: a 3xx is a refusal.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        // Parsed once, not per message (config validation has checked it).
        let outbound_url = reqwest::Url::parse(&config.outbound_url).ok();
        Self {
            shared: Arc::new(Shared {
                ctx,
                kv,
                client,
                outbound_url,
                retry,
                config: config.clone(),
                max_body_bytes,
            }),
        }
    }

    /// Its HTTP routes: `/transports/<name>/inbound` and `/transports/<name>/delivery-report`.
    pub fn router(&self) -> axum::Router {
        let base = format!("/transports/{}", self.shared.ctx.connector);
        axum::Router::new()
            .route(&format!("{base}/inbound"), axum::routing::post(inbound))
            .route(&format!("{base}/delivery-report"), axum::routing::post(delivery_report))
            .with_state(self.shared.clone())
    }
}

#[async_trait::async_trait]
impl Transport for SmsHttpTransport {
    fn routes(&self) -> Option<axum::Router> {
        Some(self.router())
    }

    fn prefetch(&self) -> u16 {
        u16::try_from(usize::from(self.shared.config.concurrency) * 2).unwrap_or(u16::MAX)
    }

    /// Send outbound messages until `shutdown`, up to `concurrency` at once.
    async fn run(
        self: Box<Self>,
        mut outbound: Box<dyn Consumer>,
        shutdown: CancellationToken,
    ) -> Result<(), TransportError> {
        let concurrency = usize::from(self.shared.config.concurrency);
        let slots = Arc::new(Semaphore::new(concurrency));
        loop {
            let delivery = tokio::select! {
                () = shutdown.cancelled() => break,
                d = outbound.next() => match d { Some(d) => d, None => break },
            };
            let Ok(permit) = slots.clone().acquire_owned().await else { break };
            let shared = self.shared.clone();
            tokio::spawn(async move {
                shared.send(delivery).await;
                drop(permit);
            });
        }
        Ok(())
    }
}

impl Shared {
    async fn send(&self, delivery: Delivery) {
        let Message::User(msg) = &delivery.message else {
            delivery.ack();
            return;
        };
        let event = match self.post_with_retries(msg).await {
            // The host is stopping before the aggregator took it: back on its queue.
            Err(None) => return drop(delivery),
            Ok(sent_id) => {
                let sent = Sent {
                    message_id: msg.message_id.clone(),
                    routing_metadata: msg.routing_metadata.clone(),
                };
                let value = serde_json::to_vec(&sent).unwrap_or_default();
                for id in [&sent_id, &msg.message_id] {
                    self.remember(&format!("sent:{id}"), &value).await;
                }
                Event::ack(&msg.message_id, &sent_id)
            }
            Err(Some(reason)) => {
                tracing::warn!(connector = %self.ctx.connector, message_id = msg.message_id, reason, "outbound SMS not sent");
                Event::nack(&msg.message_id, &reason)
            }
        };
        self.ctx.report_outcome(event, msg).await;
        delivery.ack();
    }

    /// Store what a delivery report needs to find its message. The message is already with the
    /// aggregator, so a store that is down is waited on in place (this sender takes nothing new
    /// meanwhile), with the host's retry policy; only after its last attempt is the record
    /// given up, and then that message's delivery reports are refused.
    async fn remember(&self, key: &str, value: &[u8]) {
        if let Err(e) = self.ctx.persist("a sent message", || self.kv.set(key, value, Some(SENT_TTL))).await {
            tracing::warn!(connector = %self.ctx.connector, error = %e, "cannot remember a sent message; its delivery reports will be refused");
        }
    }

    /// POST `msg` to the aggregator, tried again while it is unreachable or answers `5xx` or
    /// `429`; the aggregator's id for it, or why it was not sent (`None`: the host is stopping).
    async fn post_with_retries(&self, msg: &UserMessage) -> Result<String, Option<String>> {
        let mut fields: Vec<(&str, String)> = vec![("message_id", msg.message_id.clone())];
        let from = msg.from_addr.clone().or_else(|| self.config.default_from.clone());
        let optional = [
            ("to", &msg.to_addr),
            ("from", &from),
            ("content", &msg.content),
            ("in_reply_to", &msg.in_reply_to),
        ];
        fields.extend(optional.into_iter().filter_map(|(k, v)| v.clone().map(|v| (k, v))));
        let Some(_) = msg.to_addr.as_deref().filter(|t| !t.is_empty()) else {
            return Err(Some("the message has no `to_addr`".into()));
        };
        let post = || async {
            let mut req = match &self.outbound_url {
                Some(url) => self.client.post(url.clone()),
                None => self.client.post(&self.config.outbound_url),
            };
            if let Some(token) = &self.config.outbound_token {
                req = req.bearer_auth(token);
            }
            req = match self.config.outbound_format {
                BodyFormat::Json => req.json(&fields.iter().cloned().collect::<HashMap<_, _>>()),
                BodyFormat::Form => req.form(&fields),
            };
            match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    let body = resp.bytes().await.unwrap_or_default();
                    Ok(aggregator_id(&body).unwrap_or_else(|| msg.message_id.clone()))
                }
                Ok(resp) => {
                    let status = resp.status();
                    let body = resp.text().await.unwrap_or_default();
                    let why = format!("the aggregator answered {status}: {}", truncate(body.trim(), 200));
                    let again = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
                    Err(if again { Refused::Again(why) } else { Refused::Final(why) })
                }
                Err(e) => Err(Refused::Again(format!(
                    "cannot reach the aggregator at {}: {}",
                    self.config.outbound_url,
                    error_chain(&e)
                ))),
            }
        };
        match self.retry.run("send an SMS to the aggregator", &self.ctx.stop, post).await {
            Ok(id) => Ok(id),
            Err(GaveUp::Stopped) => Err(None),
            Err(GaveUp::Failed(e)) => Err(Some(e.to_string())),
            Err(GaveUp::Spent { last, attempts }) => Err(Some(format!("{last} (after {attempts} attempts)"))),
        }
    }
}

/// How the aggregator refused a message.
#[derive(Debug)]
enum Refused {
    /// For now (unreachable, `5xx`, `429`): worth another try.
    Again(String),
    /// For good (`4xx`): a nack.
    Final(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Again(s) | Refused::Final(s) => f.write_str(s),
        }
    }
}

impl crate::retry::Transient for Refused {
    fn retry_as(&self) -> Option<&'static str> {
        matches!(self, Refused::Again(_)).then_some("unavailable")
    }
}

/// The aggregator's id in a JSON answer (`message_id` or `id`, string or number).
fn aggregator_id(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let id = v.get("message_id").or_else(|| v.get("id"))?;
    match id {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A form or JSON body as text fields. JSON values must be strings (or `null`, read as absent).
fn fields(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, ApiError> {
    if !is_json(headers) {
        return parse_form(body);
    }
    let mut out = HashMap::new();
    let mut errors = Vec::new();
    for (k, v) in parse_json_object(body)? {
        match v {
            serde_json::Value::String(s) => {
                out.insert(k, s);
            }
            serde_json::Value::Null => {}
            other => errors.push(FieldError { field: k, message: format!("must be a string, got {other}") }),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(ApiError::bad_fields(errors)) }
}

async fn inbound(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(body, s.max_body_bytes).await?;
    let mut form = fields(&headers, &bytes)?;
    let mut errors = Vec::new();
    let from = required(&form, "from", &mut errors).to_owned();
    let to = required(&form, "to", &mut errors).to_owned();
    let content = form.remove("content");
    if content.is_none() {
        errors.push(FieldError { field: "content".into(), message: "is required (it may be empty)".into() });
    }
    if !errors.is_empty() {
        return Err(ApiError::bad_fields(errors));
    }
    let mut msg = UserMessage::inbound(s.ctx.connector.as_str(), "sms", from, to, content, None);
    msg.from_addr_type = Some("msisdn".into());
    if let Some(id) = form.remove("message_id") {
        msg.transport_metadata.insert("aggregator_message_id".into(), id.into());
    }
    let id = msg.message_id.clone();
    s.ctx.publish_inbound(msg).await.map_err(|e| unavailable("message bus", &e))?;
    Ok(ok_json(StatusCode::OK, "message received", serde_json::json!({ "message_id": id })))
}

async fn delivery_report(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, s.max_body_bytes).await?;
    let form = fields(&headers, &bytes)?;
    let mut errors = Vec::new();
    let id = required(&form, "message_id", &mut errors).to_owned();
    let status_text = required(&form, "status", &mut errors).to_owned();
    let status = match status_text.to_ascii_lowercase().as_str() {
        "delivered" => Some(DeliveryStatus::Delivered),
        "failed" => Some(DeliveryStatus::Failed),
        "pending" => Some(DeliveryStatus::Pending),
        "" => None,
        other => {
            errors.push(FieldError {
                field: "status".into(),
                message: format!("must be `delivered`, `failed` or `pending`, got `{other}`"),
            });
            None
        }
    };
    let Some(status) = status.filter(|_| errors.is_empty()) else {
        return Err(ApiError::bad_fields(errors));
    };
    let sent: Option<Sent> =
        s.kv.get(&format!("sent:{id}"))
            .await
            .map_err(|e| unavailable("state store", &e))?
            .and_then(|b| serde_json::from_slice(&b).ok());
    let Some(sent) = sent else {
        return Err(ApiError::bad_field(
            "message_id",
            format!("no message with id `{id}` was sent through this transport (or its record has expired)"),
        ));
    };
    let mut about = UserMessage::inbound("", "", "", "", None, None);
    about.message_id = sent.message_id.clone();
    about.routing_metadata = sent.routing_metadata;
    s.ctx
        .publish_event(Event::delivery_report(&sent.message_id, status), &about)
        .await
        .map_err(|e| unavailable("message bus", &e))?;
    Ok(ok_json(
        StatusCode::OK,
        "delivery report received",
        serde_json::json!({ "message_id": sent.message_id }),
    ))
}

#[cfg(test)]
mod tests {
    use super::aggregator_id;

    #[test]
    fn the_aggregators_id_comes_from_message_id_or_id() {
        assert_eq!(aggregator_id(br#"{"message_id":"abc"}"#).as_deref(), Some("abc"));
        assert_eq!(aggregator_id(br#"{"id":42}"#).as_deref(), Some("42"));
        assert_eq!(aggregator_id(b"OK"), None);
        assert_eq!(aggregator_id(br#"{"id":""}"#), None);
    }
}
