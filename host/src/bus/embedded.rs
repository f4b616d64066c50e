//! The embedded bus: queues in this process. No broker to install; messages live as long as the
//! process.
//!
//! Each queue is bounded: a publisher that finds it full waits for a consumer to take one, for
//! a bounded time, then is refused with [`BusError::Full`]. So accepting faster than consumers
//! take cannot grow memory without bound, and what was accepted is never dropped for lack of
//! room. A message put back (a nack with requeue, a dropped delivery) always goes back, whatever
//! the queue holds: it was accepted once already.
//!
//! The retry path's tiers are timers here: a message set aside goes back to its queue when its
//! delay is up (and counts as pending meanwhile, so a graceful stop waits for it within its
//! drain bound).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use futures::future::BoxFuture;

use super::{Bus, BusError, Consumer, Delivery, RoutingKey, Settle};
use crate::message::Message;
use crate::telemetry::metrics::metrics;

struct Queue {
    ready: Mutex<QueueState>,
    /// A message arrived: for consumers.
    notify: Notify,
    /// A message was taken: for publishers waiting for room.
    room: Notify,
    /// `vumi_queue_depth` for this queue.
    depth: Gauge,
    /// `vumi_queued_seconds` for this queue: publish (or requeue) to take.
    queued: Histogram,
}

#[derive(Default)]
struct QueueState {
    /// Each message with whether it was delivered before, when it was queued, and how many
    /// delay tiers it has been through.
    items: VecDeque<(Message, bool, std::time::Instant, u32)>,
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
pub struct EmbeddedBus {
    queues: Mutex<HashMap<RoutingKey, Arc<Queue>>>,
    capacity: usize,
    wait: Duration,
    /// Deliveries taken and not yet settled, across every queue, and messages waiting out a
    /// delay tier.
    taken: Arc<AtomicUsize>,
    /// The retry path's delays, shortest first.
    tiers: Arc<[Duration]>,
}

impl Default for EmbeddedBus {
    fn default() -> Self {
        Self::bounded(10_000, Duration::from_secs(2))
    }
}

impl std::fmt::Debug for EmbeddedBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBus").finish_non_exhaustive()
    }
}

impl EmbeddedBus {
    /// An empty bus with the default bounds (10,000 messages a queue, publishers wait 2 s).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty bus whose queues hold `capacity` messages each; a publisher waits up to `wait`
    /// for room in a full one.
    pub fn bounded(capacity: usize, wait: Duration) -> Self {
        Self {
            queues: Mutex::default(),
            capacity: capacity.max(1),
            wait,
            taken: Arc::default(),
            tiers: super::default_retry_tiers().into(),
        }
    }

    /// The same bus with the retry path's delays `tiers` (shortest first).
    pub fn with_retry_tiers(mut self, tiers: Vec<Duration>) -> Self {
        self.tiers = tiers.into();
        self
    }

    fn queue(&self, key: &RoutingKey) -> Arc<Queue> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = queues.get(key) {
            return q.clone();
        }
        let (depth, queued) = metrics().queue(&key.to_string(), self.capacity);
        let q = Arc::new(Queue {
            ready: Mutex::default(),
            notify: Notify::new(),
            room: Notify::new(),
            depth,
            queued,
        });
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
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            // Register for room before looking, so a take between the look and the wait wakes us.
            let room = q.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut s = q.lock();
                if s.closed {
                    return Err(BusError::Closed);
                }
                if s.items.len() < self.capacity {
                    s.items.push_back((message, false, std::time::Instant::now(), 0));
                    q.depth.set(s.items.len() as i64);
                    drop(s);
                    q.notify.notify_one();
                    return Ok(());
                }
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return Err(BusError::Full { key: key.to_string(), capacity: self.capacity });
            }
        }
    }

    async fn consume(&self, key: &RoutingKey, prefetch: u16) -> Result<Box<dyn Consumer>, BusError> {
        let queue = self.queue(key);
        if queue.lock().closed {
            return Err(BusError::Closed);
        }
        Ok(Box::new(EmbeddedConsumer {
            queue,
            window: Arc::new(Semaphore::new(usize::from(prefetch.max(1)))),
            taken: self.taken.clone(),
            tiers: self.tiers.clone(),
        }))
    }

    async fn close(&self) {
        let queues: Vec<_> =
            self.queues.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        for q in queues {
            q.lock().closed = true;
            q.notify.notify_waiters();
            q.room.notify_waiters();
        }
    }

    fn pending(&self) -> Option<usize> {
        let queues: Vec<_> =
            self.queues.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let waiting: usize = queues.iter().map(|q| q.lock().items.len()).sum();
        Some(waiting + self.taken.load(Ordering::SeqCst))
    }
}

struct EmbeddedConsumer {
    queue: Arc<Queue>,
    /// One permit per outstanding delivery: the prefetch window.
    window: Arc<Semaphore>,
    taken: Arc<AtomicUsize>,
    tiers: Arc<[Duration]>,
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
                if let Some((message, redelivered, since, retries)) = s.items.pop_front() {
                    // Counted as taken while the queue is still locked, so `pending` never sees
                    // the message in neither place.
                    self.taken.fetch_add(1, Ordering::SeqCst);
                    let more = !s.items.is_empty();
                    self.queue.depth.set(s.items.len() as i64);
                    drop(s);
                    self.queue.queued.observe(since.elapsed().as_secs_f64());
                    // One taken: one waiting publisher may go on.
                    self.queue.room.notify_one();
                    if more {
                        // Pass the wake-up on: another consumer may be waiting for the rest.
                        self.queue.notify.notify_one();
                    }
                    let settle = Box::new(EmbeddedSettle {
                        queue: self.queue.clone(),
                        taken: self.taken.clone(),
                        tiers: self.tiers.clone(),
                        _permit: permit,
                    });
                    return Some(Delivery::new(message, redelivered, settle).with_retries(retries));
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
    taken: Arc<AtomicUsize>,
    tiers: Arc<[Duration]>,
    // Released when settled: frees a slot in the consumer's prefetch window.
    _permit: OwnedSemaphorePermit,
}

impl Settle for EmbeddedSettle {
    fn ack(self: Box<Self>) {
        self.taken.fetch_sub(1, Ordering::SeqCst);
    }

    fn nack(self: Box<Self>, message: Option<Message>) {
        match message {
            Some(m) => {
                // Back it goes, full or not: it was accepted once, and refusing it now would lose
                // it. Uncounted only once it is queued again (see `pending`).
                let mut s = self.queue.lock();
                s.items.push_front((m, true, std::time::Instant::now(), 0));
                self.taken.fetch_sub(1, Ordering::SeqCst);
                self.queue.depth.set(s.items.len() as i64);
                drop(s);
                self.queue.notify.notify_one();
            }
            None => {
                self.taken.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    fn defer<'a>(
        &'a self,
        message: &'a Message,
        retries: u32,
    ) -> BoxFuture<'a, Result<Option<Duration>, BusError>> {
        let Some(&delay) = self.tiers.get(retries as usize) else { return Box::pin(async { Ok(None) }) };
        let (queue, taken, message) = (self.queue.clone(), self.taken.clone(), message.clone());
        // Pending while it waits; back at the tail, full or not (it was accepted once).
        taken.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut s = queue.lock();
            s.items.push_back((message, false, std::time::Instant::now(), retries + 1));
            taken.fetch_sub(1, Ordering::SeqCst);
            queue.depth.set(s.items.len() as i64);
            drop(s);
            queue.notify.notify_one();
        });
        Box::pin(async move { Ok(Some(delay)) })
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn embedded_bus_passes_the_conformance_suite() {
        crate::bus::conformance::run_all(&super::EmbeddedBus::new(), &crate::bus::conformance::new_run())
            .await;
    }

    #[tokio::test]
    async fn close_ends_consumers() {
        crate::bus::conformance::close_ends_consumers(
            &super::EmbeddedBus::new(),
            &crate::bus::conformance::new_run(),
        )
        .await;
    }

    #[tokio::test]
    async fn pending_counts_what_waits_and_what_is_taken_until_it_is_settled() {
        use crate::bus::Bus;
        let bus = super::EmbeddedBus::new();
        let key = crate::bus::RoutingKey::inbound(&"pending".parse().expect("name"));
        let msg = || crate::message::UserMessage::inbound("t", "telnet", "a", "b", None, None).into();
        bus.publish(&key, msg()).await.expect("publish");
        bus.publish(&key, msg()).await.expect("publish");
        assert_eq!(bus.pending(), Some(2));
        let mut c = bus.consume(&key, 10).await.expect("consume");
        let d = c.next().await.expect("one");
        assert_eq!(bus.pending(), Some(2), "taken but unsettled is still pending");
        d.nack(true);
        assert_eq!(bus.pending(), Some(2), "requeued");
        c.next().await.expect("again").ack();
        assert_eq!(bus.pending(), Some(1));
        drop(c.next().await.expect("the other"));
        assert_eq!(bus.pending(), Some(1), "a dropped delivery goes back");
        c.next().await.expect("back").ack();
        assert_eq!(bus.pending(), Some(0));
    }

    #[tokio::test]
    async fn the_retry_path_sets_a_message_aside_for_each_tier_then_hands_it_back() {
        let bus = super::EmbeddedBus::new().with_retry_tiers(crate::bus::conformance::SHORT_TIERS.to_vec());
        crate::bus::conformance::retry_path(&bus, &crate::bus::conformance::new_run()).await;
    }

    #[tokio::test]
    async fn a_full_queue_makes_publishers_wait_for_room_then_refuses_but_always_takes_a_requeue() {
        crate::bus::conformance::bounded_queues(
            &super::EmbeddedBus::bounded(2, std::time::Duration::from_millis(200)),
            2,
        )
        .await;
    }
}
