//! Event routing: an ack, nack or delivery report goes to the component that sent the message.
//!
//! Vumi gives each connector one `.event` queue. When one component (an app, or a send-API
//! channel) owns a connector, it consumes that queue directly. When several share one (say an
//! echo app answering SMS and a send-API channel on the same SMS transport), each records
//! itself as the *origin* of every outbound message before publishing it, in the state store
//! with a TTL; one [`EventsByOrigin`] then consumes the connector's `.event` queue and hands each
//! event to its origin's in-process queue.
//!
//! With a shared state store and every host running the same config (the scaling model), any
//! host's router can route any event: the origin is a component name, and every host runs every
//! component. An event whose origin is unknown (never recorded, or older than the TTL) goes to
//! the failure path.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::FailureLog;
use super::settle::{Trouble, settle};
use crate::bus::{Bus, BusError, Consumer, Delivery, RoutingKey};
use crate::message::Message;
use crate::names::ConnectorName;
use crate::retry::{GaveUp, Retry, RetryPolicy};
use crate::state::{KvStore, StateError};

/// Which component sent each outbound message on one connector.
pub struct Origins {
    kv: Arc<dyn KvStore>,
    ttl: Duration,
}

impl Origins {
    /// Origins kept in `kv` (namespaced for the connector) for `ttl`.
    pub fn new(kv: Arc<dyn KvStore>, ttl: Duration) -> Self {
        Self { kv, ttl }
    }

    /// Remember that `component` sent `message_id`. Call before publishing the message, so its
    /// events cannot overtake the record.
    pub async fn record(&self, message_id: &str, component: &str) -> Result<(), StateError> {
        self.kv.set(message_id, component.as_bytes(), Some(self.ttl)).await
    }

    /// Who sent `message_id`, if remembered.
    pub async fn lookup(&self, message_id: &str) -> Result<Option<String>, StateError> {
        Ok(self.kv.get(message_id).await?.and_then(|b| String::from_utf8(b).ok()))
    }
}

/// Events routed to one component: a [`Consumer`] like a bus queue, so a component takes them
/// the same way whether it shares its connector or not.
pub struct RoutedEvents {
    rx: mpsc::Receiver<Delivery>,
}

#[async_trait]
impl Consumer for RoutedEvents {
    async fn next(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }
}

/// Consumes one connector's `.event` queue and hands each event to the component that sent the
/// message it is about.
pub struct EventsByOrigin {
    connector: ConnectorName,
    bus: Arc<dyn Bus>,
    origins: Arc<Origins>,
    failures: Arc<FailureLog>,
    retry: RetryPolicy,
    routes: HashMap<String, mpsc::Sender<Delivery>>,
}

impl EventsByOrigin {
    /// A router for `connector` with no components yet.
    pub fn new(
        connector: ConnectorName,
        bus: Arc<dyn Bus>,
        origins: Arc<Origins>,
        failures: Arc<FailureLog>,
        retry: RetryPolicy,
    ) -> Self {
        Self { connector, bus, origins, failures, retry, routes: HashMap::new() }
    }

    /// Where the components record their messages' origins.
    pub fn origins(&self) -> Arc<Origins> {
        self.origins.clone()
    }

    /// Register `component`: its events arrive on the returned consumer.
    pub fn subscribe(&mut self, component: &str) -> RoutedEvents {
        // A small buffer: a slow component holds the router back (backpressure to the bus)
        // rather than piling events up in memory.
        let (tx, rx) = mpsc::channel(256);
        self.routes.insert(component.to_owned(), tx);
        RoutedEvents { rx }
    }

    /// Route until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BusError> {
        let mut events = self.bus.consume(&RoutingKey::event(&self.connector), 256).await?;
        let me = format!("event-router:{}", self.connector);
        let retry = Retry::new(&self.retry, me.clone());
        let queue = RoutingKey::event(&self.connector);
        loop {
            let delivery = tokio::select! {
                () = shutdown.cancelled() => break,
                d = events.next() => match d { Some(d) => d, None => break },
            };
            let Message::Event(event) = &delivery.message else {
                delivery.ack();
                continue;
            };
            // Retried in place while the store is down: the events behind it wait, and nothing
            // spins; then the retry path.
            let origin = retry
                .run("look up an event's origin", &shutdown, || async {
                    self.origins.lookup(&event.user_message_id).await.map_err(|e| {
                        let reason = format!("cannot look up the event's origin: {e}");
                        if e.is_retryable() {
                            Trouble::again("state_unavailable", reason)
                        } else {
                            Trouble::fail("unroutable_event", reason)
                        }
                    })
                })
                .await;
            let origin = match origin {
                Ok(o) => o,
                Err(gave_up) => {
                    settle(&self.failures, &me, &queue, delivery, Err(gave_up)).await;
                    continue;
                }
            };
            match origin.as_deref().and_then(|o| self.routes.get(o)) {
                Some(tx) => {
                    if let Err(mpsc::error::SendError(d)) = tx.send(delivery).await {
                        // The component stopped: leave the event on the queue for a later run.
                        d.nack(true);
                        break;
                    }
                }
                None => {
                    let reason = match origin {
                        Some(o) => format!("the message was sent by `{o}`, which does not run here"),
                        None => format!(
                            "no component here recorded sending message `{}` (unknown, or older than host.event_origin_ttl_secs)",
                            event.user_message_id
                        ),
                    };
                    settle(
                        &self.failures,
                        &me,
                        &queue,
                        delivery,
                        Err(GaveUp::Failed(Trouble::fail("unroutable_event", reason))),
                    )
                    .await;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::EmbeddedBus;
    use crate::message::{Event, UserMessage};
    use crate::state::MemoryStore;

    #[tokio::test]
    async fn each_event_reaches_the_component_that_sent_its_message() {
        let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new());
        let connector: ConnectorName = "sms".parse().unwrap();
        let origins = Arc::new(Origins::new(Arc::new(MemoryStore::new()), Duration::from_secs(60)));
        let failures = Arc::new(FailureLog::new(10, None).unwrap());
        let mut router = EventsByOrigin::new(
            connector.clone(),
            bus.clone(),
            origins.clone(),
            failures.clone(),
            RetryPolicy::default(),
        );
        let mut app = router.subscribe("app");
        let mut channel = router.subscribe("channel");
        let stop = CancellationToken::new();
        let task = tokio::spawn(router.run(stop.clone()));

        let a = UserMessage::inbound("sms", "sms", "1", "2", None, None);
        let c = UserMessage::inbound("sms", "sms", "1", "2", None, None);
        origins.record(&a.message_id, "app").await.unwrap();
        origins.record(&c.message_id, "channel").await.unwrap();
        let key = RoutingKey::event(&connector);
        for id in [&c.message_id, &a.message_id, &"unknown".to_owned()] {
            bus.publish(&key, Event::ack(id, id).into()).await.unwrap();
        }
        let got = channel.next().await.unwrap();
        assert_eq!(got.message.id().len(), 32);
        let Message::Event(e) = &got.message else { panic!() };
        assert_eq!(e.user_message_id, c.message_id);
        got.ack();
        let got = app.next().await.unwrap();
        let Message::Event(e) = &got.message else { panic!() };
        assert_eq!(e.user_message_id, a.message_id);
        got.ack();
        for _ in 0..100 {
            if failures.total() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(failures.recent()[0].kind, "unroutable_event");
        stop.cancel();
        task.await.unwrap().unwrap();
    }
}
