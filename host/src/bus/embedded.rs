//! The embedded bus: queues in this process. No broker to install; messages live as long as the
//! process.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::{Bus, BusError, Consumer, Delivery, RoutingKey, Settle};
use crate::message::Message;

#[derive(Default)]
struct Queue {
    ready: Mutex<QueueState>,
    notify: Notify,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<(Message, bool)>,
    closed: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // Each critical section is one VecDeque operation: a poisoned lock holds consistent data.
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// In-process [`Bus`]. Queues exist from first use (publish or consume) and keep messages until
/// a consumer takes them, like durable queues declared up front on RabbitMQ.
#[derive(Default)]
pub struct EmbeddedBus {
    queues: Mutex<HashMap<RoutingKey, Arc<Queue>>>,
}

impl std::fmt::Debug for EmbeddedBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBus").finish_non_exhaustive()
    }
}

impl EmbeddedBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    fn queue(&self, key: &RoutingKey) -> Arc<Queue> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = queues.get(key) {
            return q.clone();
        }
        let q = Arc::new(Queue::default());
        queues.insert(key.clone(), q.clone());
        q
    }

    /// Messages waiting (not yet delivered) on `key`: for tests and metrics.
    pub fn depth(&self, key: &RoutingKey) -> usize {
        self.queue(key).lock().items.len()
    }
}

#[async_trait]
impl Bus for EmbeddedBus {
    async fn publish(&self, key: &RoutingKey, message: Message) -> Result<(), BusError> {
        let q = self.queue(key);
        {
            let mut s = q.lock();
            if s.closed {
                return Err(BusError::Closed);
            }
            s.items.push_back((message, false));
        }
        q.notify.notify_one();
        Ok(())
    }

    async fn consume(&self, key: &RoutingKey, prefetch: u16) -> Result<Box<dyn Consumer>, BusError> {
        let queue = self.queue(key);
        if queue.lock().closed {
            return Err(BusError::Closed);
        }
        Ok(Box::new(EmbeddedConsumer { queue, window: Arc::new(Semaphore::new(usize::from(prefetch.max(1)))) }))
    }

    async fn close(&self) {
        let queues: Vec<_> = self.queues.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        for q in queues {
            q.lock().closed = true;
            q.notify.notify_waiters();
        }
    }
}

struct EmbeddedConsumer {
    queue: Arc<Queue>,
    /// One permit per outstanding delivery: the prefetch window.
    window: Arc<Semaphore>,
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    async fn next(&mut self) -> Option<Delivery> {
        let permit = self.window.clone().acquire_owned().await.ok()?;
        loop {
            // Register interest before looking, so a publish between the look and the wait is
            // not missed.
            let notified = self.queue.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.queue.lock();
                if let Some((message, redelivered)) = s.items.pop_front() {
                    let more = !s.items.is_empty();
                    drop(s);
                    if more {
                        // Pass the wake-up on: another consumer may be waiting for the rest.
                        self.queue.notify.notify_one();
                    }
                    let settle = Box::new(EmbeddedSettle { queue: self.queue.clone(), _permit: permit });
                    return Some(Delivery::new(message, redelivered, settle));
                }
                if s.closed {
                    return None;
                }
            }
            notified.await;
        }
    }
}

struct EmbeddedSettle {
    queue: Arc<Queue>,
    // Released when settled: frees a slot in the consumer's prefetch window.
    _permit: OwnedSemaphorePermit,
}

impl Settle for EmbeddedSettle {
    fn ack(self: Box<Self>) {}

    fn nack(self: Box<Self>, message: Option<Message>) {
        if let Some(m) = message {
            self.queue.lock().items.push_front((m, true));
            self.queue.notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn embedded_bus_passes_the_conformance_suite() {
        crate::bus::conformance::run_all(&super::EmbeddedBus::new()).await;
    }

    #[tokio::test]
    async fn close_ends_consumers() {
        crate::bus::conformance::close_ends_consumers(&super::EmbeddedBus::new()).await;
    }
}
