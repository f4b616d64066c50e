//! The HTTP send API: channels that let applications outside the host send and receive
//! messages, in the spirit of Junebug and Vumi's HTTP API.
//!
//! - `POST /api/v1/channels/<channel>/messages` sends `{to, from, content}` or answers an inbound
//!   message with `{reply_to, content}` (Vumi's reply semantics: addresses swapped, session and
//!   transport fields kept; `"session_event": "close"` ends a session). Answers `201` with the
//!   stored message.
//! - `GET /api/v1/channels/<channel>/messages/<id>` returns it with its delivery status and
//!   events so far.
//! - With `mo_url`, the channel receives its connector's inbound messages and POSTs them there;
//!   events for messages it sent are POSTed to the message's `event_url` or the channel's.
//!
//! Each request needs `Authorization: Bearer <the channel's token>`. A channel is an app-side
//! component like an app worker (it consumes a connector's inbound and events and publishes
//! outbound), which is why it lives here and not among the transports.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::FailureLog;
use super::callbacks::{Callback, Callbacks};
use super::events::Origins;
use crate::bus::{Consumer, Delivery, Publish, RoutingKey};
use crate::config::{ChannelConfig, check_url};
use crate::message::{Event, Message, SessionEvent, UserMessage};
use crate::names::ConnectorName;
use crate::retry::{GaveUp, Retry, RetryPolicy};
use crate::state::{KvStore, StateError};
use crate::web::{ApiError, FieldError, check_bearer, parse_json_object, read_body};

/// What a channel keeps of each message it sent, under `out:<id>`: text lines, the message's
/// Vumi JSON as sent, then each of its events' Vumi JSON as the codec wrote it. Recording an
/// event appends one line ([`KvStore::append`]): nothing is read back or parsed. The `GET`
/// view splices the lines in and reads its status from the last event alone. (Vumi JSON has no
/// raw newline: strings escape it.) A message's own `event_url`, when it has one, is kept
/// beside it under `url:<id>`, as Junebug did.
struct DeliveryRecord(Vec<u8>);

impl DeliveryRecord {
    fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|b| *b == b'\n')
    }

    fn message(&self) -> &[u8] {
        self.lines().next().unwrap_or(b"{}")
    }

    fn events(&self) -> impl Iterator<Item = &[u8]> {
        self.lines().skip(1)
    }

    /// The status its latest event gives it, or `queued` before any.
    fn status(&self) -> &'static str {
        self.events().last().map_or("queued", status_of_line)
    }

    /// What recording `event` appends.
    fn line(event: &Event) -> Vec<u8> {
        let json = event.to_json();
        let mut line = Vec::with_capacity(json.len() + 1);
        line.push(b'\n');
        line.extend_from_slice(&json);
        line
    }
}

/// One channel.
pub struct Channel {
    name: String,
    connector: ConnectorName,
    transport_type: Option<String>,
    config: ChannelConfig,
    kv: Arc<dyn KvStore>,
    publish: Arc<dyn Publish>,
    origins: Option<Arc<Origins>>,
    callbacks: Callbacks,
    retry: RetryPolicy,
    failures: Arc<FailureLog>,
}

/// What a channel is made of (the supervisor's part).
pub struct ChannelParts {
    /// The channel's name (its URL segment and component name).
    pub name: String,
    /// Its settings.
    pub config: ChannelConfig,
    /// The `transport_type` of its connector's transport; `None` when the connector is a
    /// router's app connector (the router picks the transport).
    pub transport_type: Option<String>,
    /// Its message store (namespaced for it).
    pub kv: Arc<dyn KvStore>,
    /// Where it publishes what callers send (the message path).
    pub publish: Arc<dyn Publish>,
    /// Set when it shares its connector with other components.
    pub origins: Option<Arc<Origins>>,
    /// Its callback sender.
    pub callbacks: Callbacks,
    /// How it waits when its store is down, before the failure path.
    pub retry: RetryPolicy,
    /// The failure path.
    pub failures: Arc<FailureLog>,
}

impl Channel {
    /// A channel from its parts.
    pub fn new(p: ChannelParts) -> Self {
        Self {
            name: p.name,
            connector: p.config.connector.clone(),
            transport_type: p.transport_type,
            config: p.config,
            kv: p.kv,
            publish: p.publish,
            origins: p.origins,
            callbacks: p.callbacks,
            retry: p.retry,
            failures: p.failures,
        }
    }

    fn ttl(&self) -> Option<Duration> {
        Some(Duration::from_secs(self.config.message_ttl_secs))
    }

    /// Take inbound messages (if it has an `mo_url`, `inbound` is its connector's inbound queue)
    /// and events until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        mut inbound: Option<Box<dyn Consumer>>,
        mut events: Box<dyn Consumer>,
        shutdown: CancellationToken,
    ) {
        let retry = Retry::new(&self.retry, format!("channel:{}", self.name));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                d = async { match inbound.as_mut() { Some(c) => c.next().await, None => std::future::pending().await } } => match d {
                    Some(d) => self.on_inbound(d, &retry, &shutdown).await,
                    None => break,
                },
                d = events.next() => match d {
                    Some(d) => self.on_event(d, &retry, &shutdown).await,
                    None => break,
                },
            }
        }
    }

    /// Run `op` against the store, waiting in place while the store is down (the channel takes
    /// nothing new meanwhile), up to the retry policy's attempts. `None` if a stop came first.
    async fn stored<T, F, Fut>(
        &self,
        retry: &Retry,
        stop: &CancellationToken,
        op: F,
    ) -> Option<Result<T, StateError>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StateError>>,
    {
        match retry.run("reach the state store", stop, op).await {
            Ok(v) => Some(Ok(v)),
            Err(GaveUp::Stopped) => None,
            Err(GaveUp::Failed(e) | GaveUp::Spent { last: e, .. }) => Some(Err(e)),
        }
    }

    async fn on_inbound(&self, delivery: Delivery, retry: &Retry, stop: &CancellationToken) {
        let Message::User(msg) = &delivery.message else {
            delivery.ack();
            return;
        };
        let (key, json) = (format!("in:{}", msg.message_id), msg.to_json());
        match self.stored(retry, stop, || self.kv.set(&key, &json, self.ttl())).await {
            None => return delivery.nack(true),
            Some(Ok(())) => {}
            Some(Err(e)) => {
                // Still delivered to the mo_url; only a `reply_to` it will fail.
                let reason = format!("cannot store an inbound message, so a `reply_to` it will fail: {e}");
                self.failures
                    .record(
                        &self.name,
                        &super::failures::input_queue(&self.connector, &delivery.message),
                        "state_unavailable",
                        &reason,
                        &delivery.message,
                    )
                    .await;
            }
        }
        if let Some(url) = &self.config.mo_url {
            self.callbacks.send(Callback { url: url.clone(), message: delivery.message.clone() }).await;
        }
        delivery.ack();
    }

    async fn on_event(&self, delivery: Delivery, retry: &Retry, stop: &CancellationToken) {
        let Message::Event(event) = &delivery.message else {
            delivery.ack();
            return;
        };
        let id = &event.user_message_id;
        let (record, line, url_key) = (format!("out:{id}"), DeliveryRecord::line(event), format!("url:{id}"));
        match self.stored(retry, stop, || self.kv.append(&record, &line)).await {
            None => return delivery.nack(true),
            Some(Ok(true)) => {}
            Some(Ok(false)) => {
                tracing::debug!(channel = self.name, id, "event for a message no longer stored")
            }
            Some(Err(e)) => {
                let reason = format!("cannot record an event in its message's record: {e}");
                self.failures
                    .record(
                        &self.name,
                        &super::failures::input_queue(&self.connector, &delivery.message),
                        "state_unavailable",
                        &reason,
                        &delivery.message,
                    )
                    .await;
            }
        }
        let url = match self.stored(retry, stop, || self.kv.get(&url_key)).await {
            None => return delivery.nack(true),
            Some(Ok(Some(url))) => Some(String::from_utf8_lossy(&url).into_owned()),
            Some(Ok(None)) => self.config.event_url.clone(),
            Some(Err(e)) => {
                tracing::warn!(channel = self.name, error = %e, "cannot load a message's event_url; using the channel's");
                self.config.event_url.clone()
            }
        };
        if let Some(url) = url {
            self.callbacks.send(Callback { url, message: delivery.message.clone() }).await;
        }
        delivery.ack();
    }

    /// Build the outbound message a send request asks for.
    async fn build(
        &self,
        mut body: serde_json::Map<String, Value>,
    ) -> Result<(UserMessage, Option<String>), ApiError> {
        const KNOWN: [&str; 7] =
            ["to", "from", "content", "reply_to", "event_url", "helper_metadata", "session_event"];
        let named = |k: &str| body.get(k).is_some_and(|v| !v.is_null());
        let (named_to, named_reply_to) = (named("to"), named("reply_to"));
        let mut errors = Vec::new();
        let mut err = |field: &str, message: String| errors.push(FieldError { field: field.into(), message });
        let text = |body: &mut serde_json::Map<String, Value>,
                    field: &str,
                    err: &mut dyn FnMut(&str, String)| match body.remove(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                err(field, format!("must be a string, got {other}"));
                None
            }
        };
        let to = text(&mut body, "to", &mut err);
        let from = text(&mut body, "from", &mut err);
        let reply_to = text(&mut body, "reply_to", &mut err);
        let event_url = text(&mut body, "event_url", &mut err);
        let session = text(&mut body, "session_event", &mut err);
        let content = match body.remove("content") {
            None => {
                err("content", "is required (`null` for none, e.g. to close a session)".into());
                None
            }
            Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                err("content", format!("must be a string or null, got {other}"));
                None
            }
        };
        let helper_metadata = match body.remove("helper_metadata") {
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(Value::Object(m)) => m,
            Some(other) => {
                err("helper_metadata", format!("must be a JSON object, got {other}"));
                serde_json::Map::new()
            }
        };
        for unknown in body.keys() {
            err(unknown, format!("is not a field of a message; the fields are {}", KNOWN.join(", ")));
        }
        if let Some(u) = &event_url {
            if u.chars().any(char::is_control) {
                err("event_url", "must not contain control characters (a newline, a tab)".into());
            } else if let Err(problem) = check_url(u) {
                err("event_url", problem);
            }
        }
        let session_event = match session.as_deref() {
            None => None,
            Some("new") => Some(SessionEvent::New),
            Some("resume") => Some(SessionEvent::Resume),
            Some("close") => Some(SessionEvent::Close),
            Some(other) => {
                err("session_event", format!("must be `new`, `resume` or `close`, got `{other}`"));
                None
            }
        };
        match (&to, &reply_to) {
            (Some(_), Some(_)) => {
                err("to", "give `to` or `reply_to`, not both (a reply goes to the sender)".into())
            }
            (None, None) if !named_to && !named_reply_to => {
                err("to", "is required (or `reply_to`, to answer an inbound message)".into());
            }
            (Some(t), None) if t.trim().is_empty() => err("to", "must not be empty".into()),
            _ => {}
        }
        if reply_to.is_some() && from.is_some() {
            err(
                "from",
                "must not be given with `reply_to` (a reply comes from the address it answers)".into(),
            );
        }
        if to.is_some() && from.is_none() && self.config.default_from.is_none() {
            err("from", "is required (this channel has no `default_from`)".into());
        }
        if !errors.is_empty() {
            return Err(ApiError::bad_fields(errors));
        }

        let mut msg = match reply_to {
            Some(id) => {
                let inbound = self
                    .kv
                    .get(&format!("in:{id}"))
                    .await
                    .map_err(unavailable)?
                    .and_then(|b| UserMessage::from_json(&b).ok())
                    .ok_or_else(|| {
                        ApiError::bad_field(
                            "reply_to",
                            format!("no inbound message `{id}` on this channel (unknown, older than `message_ttl_secs`, or the channel has no `mo_url`)"),
                        )
                    })?;
                inbound.reply(content, session_event == Some(SessionEvent::Close))
            }
            None => {
                let from = from.or_else(|| self.config.default_from.clone()).unwrap_or_default();
                let mut m = UserMessage::inbound(
                    self.connector.as_str(),
                    "",
                    from,
                    to.unwrap_or_default(),
                    content,
                    session_event,
                );
                (m.transport_name, m.transport_type) = match &self.transport_type {
                    Some(t) => (Some(self.connector.to_string()), Some(t.clone())),
                    None => (None, None),
                };
                m
            }
        };
        msg.helper_metadata.extend(helper_metadata);
        Ok((msg, event_url))
    }

    async fn send(&self, body: serde_json::Map<String, Value>) -> Result<Response, ApiError> {
        let (msg, event_url) = self.build(body).await?;
        let record = DeliveryRecord(msg.to_json());
        let (out, url) = (format!("out:{}", msg.message_id), format!("url:{}", msg.message_id));
        self.kv.set(&out, &record.0, self.ttl()).await.map_err(unavailable)?;
        if let Some(event_url) = &event_url {
            self.kv.set(&url, event_url.as_bytes(), self.ttl()).await.map_err(unavailable)?;
        }
        if let Some(origins) = &self.origins {
            origins.record(&msg.message_id, &self.name).await.map_err(unavailable)?;
        }
        if let Err(e) = self.publish.publish(&RoutingKey::outbound(&self.connector), msg.into()).await {
            let _ = self.kv.delete(&out).await;
            if event_url.is_some() {
                let _ = self.kv.delete(&url).await;
            }
            return Err(crate::web::unavailable("message bus", &e));
        }
        Ok(ok_view(StatusCode::CREATED, "message submitted", &record))
    }

    async fn get(&self, id: &str) -> Result<Response, ApiError> {
        match self.kv.get(&format!("out:{id}")).await.map_err(unavailable)? {
            Some(record) => Ok(ok_view(StatusCode::OK, "message found", &DeliveryRecord(record))),
            None => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no message `{id}` was sent through this channel (or it is older than `message_ttl_secs`)"
                ),
            )),
        }
    }
}

/// A message's status as the API reports it, from its latest event (its Vumi JSON).
fn status_of_line(event: &[u8]) -> &'static str {
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        #[serde(borrow)]
        event_type: std::borrow::Cow<'a, str>,
        #[serde(borrow, default)]
        delivery_status: Option<std::borrow::Cow<'a, str>>,
    }
    match serde_json::from_slice::<Kind<'_>>(event) {
        Ok(k) => match (&*k.event_type, k.delivery_status.as_deref()) {
            ("ack", _) => "sent",
            ("nack", _) => "rejected",
            ("delivery_report", Some("delivered")) => "delivered",
            ("delivery_report", Some("failed")) => "delivery_failed",
            ("delivery_report", _) => "delivery_pending",
            _ => "unknown",
        },
        Err(_) => "unknown",
    }
}

fn unavailable(e: StateError) -> ApiError {
    crate::web::unavailable("state store", &e)
}

/// The API's view of a stored message: its Vumi fields as stored, plus `status` (from its
/// latest event) and `events`, written into `out`. Spliced as bytes: the stored message is a
/// JSON object written by our codec, so it is never parsed again.
fn write_view(out: &mut Vec<u8>, record: &DeliveryRecord) {
    let message = record.message().trim_ascii_end();
    let fields = message.strip_suffix(b"}").unwrap_or(b"{");
    out.extend_from_slice(fields);
    if !fields.trim_ascii_end().ends_with(b"{") {
        out.push(b',');
    }
    out.extend_from_slice(b"\"status\":\"");
    out.extend_from_slice(record.status().as_bytes());
    out.extend_from_slice(b"\",\"events\":[");
    for (i, event) in record.events().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(event);
    }
    out.extend_from_slice(b"]}");
}

#[cfg(test)]
fn view(record: &DeliveryRecord) -> String {
    let mut out = Vec::new();
    write_view(&mut out, record);
    String::from_utf8(out).expect("UTF-8")
}

/// A `2xx` in the API's envelope around the view of `record`, written in one buffer.
fn ok_view(status: StatusCode, description: &str, record: &DeliveryRecord) -> Response {
    let mut body = Vec::with_capacity(record.0.len() + 128);
    body.extend_from_slice(b"{\"status\":");
    body.extend_from_slice(status.as_str().as_bytes());
    body.extend_from_slice(b",\"code\":");
    body.extend_from_slice(Value::from(status.canonical_reason().unwrap_or("OK")).to_string().as_bytes());
    body.extend_from_slice(b",\"description\":");
    body.extend_from_slice(Value::from(description).to_string().as_bytes());
    body.extend_from_slice(b",\"result\":");
    write_view(&mut body, record);
    body.push(b'}');
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Every channel, served under `/api/v1/channels`.
pub struct SendApi {
    channels: HashMap<String, Arc<Channel>>,
    max_body_bytes: usize,
}

impl SendApi {
    /// The API over `channels`.
    pub fn new(channels: impl IntoIterator<Item = Arc<Channel>>, max_body_bytes: usize) -> Self {
        Self { channels: channels.into_iter().map(|c| (c.name.clone(), c)).collect(), max_body_bytes }
    }

    /// Its routes.
    pub fn router(self) -> axum::Router {
        axum::Router::new()
            .route("/api/v1/channels/{channel}/messages", axum::routing::post(post_message))
            .route("/api/v1/channels/{channel}/messages/{id}", axum::routing::get(get_message))
            .with_state(Arc::new(self))
    }

    fn channel(&self, name: &str, headers: &HeaderMap) -> Result<&Arc<Channel>, ApiError> {
        let channel = self
            .channels
            .get(name)
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no channel named `{name}`")))?;
        check_bearer(headers, |t| channel.config.token.matches(t))?;
        Ok(channel)
    }
}

async fn post_message(
    State(api): State<Arc<SendApi>>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let channel = api.channel(&channel, &headers)?;
    let bytes = read_body(body, api.max_body_bytes).await?;
    channel.send(parse_json_object(&bytes)?).await
}

async fn get_message(
    State(api): State<Arc<SendApi>>,
    Path((channel, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.channel(&channel, &headers)?.get(&id).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::DeliveryStatus;

    #[test]
    fn the_view_is_the_stored_message_plus_status_and_events() {
        let msg = UserMessage::inbound("sms", "sms", "1", "2", Some("hi".into()), None);
        let queued = DeliveryRecord(msg.to_json());
        assert_eq!((queued.status(), queued.events().count()), ("queued", 0));
        let v: Value = serde_json::from_str(&view(&queued)).unwrap();
        assert_eq!(
            (v["message_id"].as_str(), v["content"].as_str(), v["status"].as_str()),
            (Some(msg.message_id.as_str()), Some("hi"), Some("queued"))
        );
        assert_eq!(v["events"], serde_json::json!([]));

        let mut record = queued.0.clone();
        record.extend(DeliveryRecord::line(&Event::ack(&msg.message_id, "x")));
        let acked = DeliveryRecord(record.clone());
        let v: Value = serde_json::from_str(&view(&acked)).unwrap();
        assert_eq!(
            (v["status"].as_str(), v["events"][0]["event_type"].as_str()),
            (Some("sent"), Some("ack"))
        );

        record.extend(DeliveryRecord::line(&Event::delivery_report(
            &msg.message_id,
            DeliveryStatus::Delivered,
        )));
        let v: Value = serde_json::from_str(&view(&DeliveryRecord(record))).unwrap();
        assert_eq!(
            (v["status"].as_str(), v["events"].as_array().map(Vec::len)),
            (Some("delivered"), Some(2)),
            "the latest event sets the status"
        );
        let nack = DeliveryRecord::line(&Event::nack(&msg.message_id, "no"));
        assert_eq!(status_of_line(&nack[1..]), "rejected");
        assert_eq!(
            serde_json::from_str::<Value>(&view(&DeliveryRecord(b"{}".to_vec()))).unwrap()["status"],
            "queued"
        );
    }
}
