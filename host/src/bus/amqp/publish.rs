//! Publishing with confirms: one channel per connection in confirm mode, a bounded window, fresh channels tried again while the publish waits.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation};

use lapin::types::{AMQPValue, ShortString};

use super::{BusError, RoutingKey};
use crate::message::{Message, Status, StatusLevel, Timestamp};

use super::*;

/// The publishing channel of one connection, in confirm mode, with the queues it declared.
pub(super) struct PubChannel {
    pub(super) conn: Arc<Conn>,
    pub(super) channel: Channel,
    pub(super) declared: Mutex<HashSet<String>>,
    /// One `basic.publish` at a time on the channel. lapin numbers a publish for its confirm
    /// and queues its frames in two steps; two tasks on two threads can interleave them, so
    /// the broker's tag N is another message than lapin's N, and a confirm resolves the wrong
    /// publish. Harmless until the broker dies between the two confirms: then a publish
    /// counted as confirmed was never stored. The chaos suite lost one such input in about a
    /// third of its broker kills. Held for the publish's first poll only, not for the confirm.
    pub(super) sending: tokio::sync::Mutex<()>,
}

impl Inner {
    pub(super) async fn channel(&self, deadline: tokio::time::Instant) -> Result<Arc<PubChannel>, BusError> {
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

    pub(super) fn drop_channel(&self, p: &Arc<PubChannel>, slot: &mut Option<Arc<PubChannel>>) {
        if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, p)) {
            *slot = None;
        }
        if !p.conn.connection.status().connected() {
            p.conn.broken.cancel();
        }
    }

    pub(super) async fn publish_raw(&self, queue: &str, body: &[u8]) -> Result<(), BusError> {
        self.publish_to(&Target { queue, arguments: None, retries: None }, body).await
    }

    pub(super) async fn publish_to(&self, target: &Target<'_>, body: &[u8]) -> Result<(), BusError> {
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

    pub(super) async fn publish_on(
        &self,
        p: &Arc<PubChannel>,
        target: &Target<'_>,
        body: &[u8],
    ) -> Result<(), Outcome> {
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

    pub(super) async fn announce_reconnect(&self, after: Duration) {
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
pub(super) struct Target<'a> {
    pub(super) queue: &'a str,
    pub(super) arguments: Option<FieldTable>,
    pub(super) retries: Option<u32>,
}

pub(super) enum Outcome {
    /// The message did not reach the broker: it may be tried again at once.
    NotSent(BusError),
    /// It may or may not have: the caller decides.
    Failed(BusError),
}
