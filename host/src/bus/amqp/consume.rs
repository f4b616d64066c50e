//! Consuming: a channel per consumer opened on a task of its own (cancel-safe), reopened after a lost connection; acks, nacks and the retry path; bodies that do not decode set aside.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;

use futures::future::BoxFuture;

use super::{BusError, Consumer, Delivery, RoutingKey, Settle};
use crate::message::{Message, Timestamp};

use super::*;

pub(super) struct Active {
    pub(super) conn: Arc<Conn>,
    pub(super) consumer: lapin::Consumer,
    pub(super) channel: Channel,
}

pub(super) struct AmqpConsumer {
    pub(super) inner: Arc<Inner>,
    pub(super) queue: String,
    pub(super) failures: String,
    pub(super) prefetch: u16,
    pub(super) active: Option<Active>,
    /// A channel being opened, on its own task: `next` may be dropped at any await (a
    /// `select!` over two consumers drops the one that lost), and an open dropped half-way
    /// leaves a consumer at the broker that nobody reads, holding a whole prefetch of
    /// deliveries. The chaos suite found exactly that. So the open runs to its end on a task,
    /// and whichever call of `next` comes next takes its result.
    pub(super) opening: Option<tokio::task::JoinHandle<Result<Active, BusError>>>,
    /// No new open before this (the backoff after a failed one).
    pub(super) retry_at: Option<tokio::time::Instant>,
    /// The waits between failed opens, started afresh by a successful one.
    pub(super) waits: crate::retry::Delays,
}

/// Open a consuming channel on `conn`: qos, declare, consume.
pub(super) async fn open_channel(
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
pub(super) fn abandon(a: Active, queue: String) {
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
    pub(super) fn new(inner: Arc<Inner>, key: &RoutingKey, prefetch: u16) -> Self {
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
    pub(super) fn start_open(&mut self) -> &mut tokio::task::JoinHandle<Result<Active, BusError>> {
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
    pub(super) fn set_aside(&self, delivery: lapin::message::Delivery, error: String) {
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

pub(super) struct AmqpSettle {
    pub(super) acker: lapin::Acker,
    pub(super) settling: Arc<AtomicUsize>,
    pub(super) inner: Arc<Inner>,
    pub(super) queue: String,
}

impl AmqpSettle {
    pub(super) fn send(self, requeue: Option<bool>) {
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
            let tier = format!("{}.retry.{}", self.queue, crate::bus::tier_label(delay));
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
