//! USSD over HTTP in the protocol Africa's Talking uses.
//!
//! The aggregator POSTs a form per user input: `sessionId`, `serviceCode`, `phoneNumber`, and
//! `text`, which holds *all* of the session's inputs so far joined by `*` (empty on the first
//! request). The response body starts `CON ` to continue or `END ` to finish. We map that to Vumi
//! sessions: the first request is `new`, later ones `resume` with only the newest input as
//! content, and an app reply that closes the session is `END`.
//!
//! The request is held open until the app replies, up to a deadline; a late app gets the user a
//! polite `END` and the session closed (and the app a `close` message, so it can clean up).
//! Session state (the previous `text`, to find the newest input) lives in the state store with a
//! timeout, so any host sharing that store can take the next request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{Transport, TransportContext, TransportError};
use crate::bus::{Consumer, Delivery};
use crate::config::UssdAtConfig;
use crate::message::{Event, Message, SessionEvent, UserMessage};
use crate::state::KvStore;
use crate::web::{ApiError, FieldError, parse_form, read_body, required, unavailable};

#[derive(Debug, Serialize, Deserialize)]
struct Session {
    /// The `text` of the previous request.
    text: String,
}

struct Shared {
    ctx: TransportContext,
    kv: Arc<dyn KvStore>,
    pending: Mutex<HashMap<String, oneshot::Sender<Arc<UserMessage>>>>,
    deadline: Duration,
    session_ttl: Duration,
    late_message: String,
    max_body_bytes: usize,
}

/// The USSD transport: an HTTP route plus an outbound consumer that answers held requests.
#[derive(Clone)]
pub struct UssdAtTransport {
    shared: Arc<Shared>,
    path: String,
}

impl UssdAtTransport {
    /// A transport keeping sessions in `kv` (already namespaced for it).
    pub fn new(
        ctx: TransportContext,
        kv: Arc<dyn KvStore>,
        config: &UssdAtConfig,
        max_body_bytes: usize,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                ctx,
                kv,
                pending: Mutex::default(),
                deadline: Duration::from_millis(config.response_deadline_ms),
                session_ttl: Duration::from_secs(config.session_timeout_secs),
                late_message: config.late_reply_message.clone(),
                max_body_bytes,
            }),
            path: config.path.clone(),
        }
    }

    /// Its HTTP route.
    pub fn router(&self) -> axum::Router {
        axum::Router::new().route(&self.path, axum::routing::post(handle)).with_state(self.shared.clone())
    }

    async fn deliver(&self, delivery: Delivery) {
        let ctx = &self.shared.ctx;
        let Message::User(msg) = &delivery.message else {
            delivery.ack();
            return;
        };
        let waiter = msg
            .in_reply_to
            .as_ref()
            .and_then(|id| self.shared.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(id));
        let id = msg.message_id.clone();
        let answered = waiter.is_some_and(|tx| tx.send(msg.clone()).is_ok());
        let event = if answered {
            Event::ack(&id, &id)
        } else {
            Event::nack(
                &id,
                "No USSD request is waiting for this message: USSD can only answer a user's request, within its deadline.",
            )
        };
        ctx.report_outcome(event, msg).await;
        delivery.ack();
    }
}

#[async_trait::async_trait]
impl Transport for UssdAtTransport {
    fn routes(&self) -> Option<axum::Router> {
        Some(self.router())
    }

    /// Answer held requests with the app's replies until `shutdown`.
    async fn run(
        self: Box<Self>,
        mut outbound: Box<dyn Consumer>,
        shutdown: CancellationToken,
    ) -> Result<(), TransportError> {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                d = outbound.next() => match d {
                    Some(d) => self.deliver(d).await,
                    None => break,
                },
            }
        }
        Ok(())
    }
}

fn text_response(body: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

async fn handle(State(s): State<Arc<Shared>>, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(body, s.max_body_bytes).await?;
    let form = parse_form(&bytes)?;
    let mut errors: Vec<FieldError> = Vec::new();
    let session_id = required(&form, "sessionId", &mut errors).to_owned();
    let service_code = required(&form, "serviceCode", &mut errors).to_owned();
    let phone = required(&form, "phoneNumber", &mut errors).to_owned();
    let text = match form.get("text") {
        Some(t) => t.clone(),
        None => {
            errors.push(FieldError {
                field: "text".into(),
                message: "is required (empty on the first request)".into(),
            });
            String::new()
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::bad_fields(errors));
    }

    let key = format!("session:{session_id}");
    let previous: Option<Session> =
        s.kv.get(&key)
            .await
            .map_err(|e| unavailable("session store", &e))?
            .and_then(|b| serde_json::from_slice(&b).ok());
    let (session_event, content) = match &previous {
        None => (SessionEvent::New, (!text.is_empty()).then(|| text.clone())),
        Some(prev) => (SessionEvent::Resume, Some(newest_input(&prev.text, &text))),
    };
    let saved = serde_json::to_vec(&Session { text: text.clone() }).unwrap_or_default();
    s.kv.set(&key, &saved, Some(s.session_ttl)).await.map_err(|e| unavailable("session store", &e))?;

    let mut msg = UserMessage::inbound(
        s.ctx.connector.as_str(),
        "ussd",
        phone,
        service_code,
        content,
        Some(session_event),
    );
    msg.from_addr_type = Some("msisdn".into());
    msg.transport_metadata.insert("session_id".into(), session_id.clone().into());
    let id = msg.message_id.clone();
    let (tx, rx) = oneshot::channel();
    s.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), tx);
    if let Err(e) = s.ctx.publish_inbound(msg.clone()).await {
        s.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        return Err(unavailable("message bus", &e));
    }

    match tokio::time::timeout(s.deadline, rx).await {
        Ok(Ok(reply)) => {
            let body = reply.content.clone().unwrap_or_default();
            if reply.session_event == Some(SessionEvent::Close) {
                let _ = s.kv.delete(&key).await;
                Ok(text_response(format!("END {body}")))
            } else {
                Ok(text_response(format!("CON {body}")))
            }
        }
        _ => {
            s.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            tracing::warn!(connector = %s.ctx.connector, session_id, deadline_ms = s.deadline.as_millis() as u64, "app did not answer a USSD request in time; ending the session");
            let _ = s.kv.delete(&key).await;
            // Tell the app the session is over, so it can forget the dialogue.
            let mut close = msg;
            close.message_id = crate::message::new_id();
            close.timestamp = crate::message::Timestamp::now();
            close.session_event = Some(SessionEvent::Close);
            close.content = None;
            let _ = s.ctx.publish_inbound(close).await;
            Ok(text_response(format!("END {}", s.late_message)))
        }
    }
}

/// The input the user just typed, given the previous request's `text` and this one's.
fn newest_input(previous: &str, text: &str) -> String {
    if previous.is_empty() {
        return text.to_owned();
    }
    match text.strip_prefix(previous).and_then(|rest| rest.strip_prefix('*')) {
        Some(newest) => newest.to_owned(),
        // The aggregator's history does not extend ours (it should): the last segment is the
        // best guess at what was typed.
        None => text.rsplit('*').next().unwrap_or_default().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::newest_input;

    #[test]
    fn the_newest_input_is_what_extends_the_previous_text() {
        assert_eq!(newest_input("", "1"), "1");
        assert_eq!(newest_input("1", "1*2"), "2");
        assert_eq!(newest_input("1*2", "1*2*"), "", "an empty input");
        assert_eq!(newest_input("1*2", "1*2*3*4"), "3*4", "an input containing `*` is kept whole");
        assert_eq!(newest_input("9", "1*5"), "5", "an inconsistent history falls back to the last segment");
    }
}
