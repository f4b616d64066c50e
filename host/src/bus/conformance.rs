//! The behaviour every [`Bus`] must show, written once and run by each back end's tests against
//! the real thing (a networked back end fails, never skips, when its broker is down).

use std::time::Duration;

use super::{Bus, BusError, Later, RoutingKey};
use crate::message::{Message, UserMessage};
use crate::names::ConnectorName;

fn key(run: &str, kind: &str) -> RoutingKey {
    let connector: ConnectorName =
        format!("conf-{}-{kind}", &run[..12]).parse().expect("valid connector name");
    RoutingKey::inbound(&connector)
}

fn msg(n: usize) -> Message {
    UserMessage::inbound("conformance", "telnet", "127.0.0.1:1", "127.0.0.1:2", Some(n.to_string()), None)
        .into()
}

fn content(m: &Message) -> String {
    match m {
        Message::User(u) => u.content.clone().unwrap_or_default(),
        other => panic!("expected a user message, got {other:?}"),
    }
}

const WAIT: Duration = Duration::from_secs(10);

/// The kinds of queue each check uses, for [`keys`].
const KINDS: &[&str] = &[
    "order", "iso-a", "iso-b", "requeue", "drop", "prefetch", "compete", "close", "bounded", "retry", "text",
];

/// The delay tiers [`retry_path`] expects its bus to be built with.
pub const SHORT_TIERS: [Duration; 2] = [Duration::from_millis(300), Duration::from_millis(600)];

/// A fresh run id: every queue a run uses is named after it.
pub fn new_run() -> String {
    crate::message::test_run(32)
}

/// Every routing key a run with id `run` may have used, so a networked back end's test can
/// delete its queues afterwards.
pub fn keys(run: &str) -> Vec<RoutingKey> {
    KINDS.iter().map(|k| key(run, k)).collect()
}

/// Run every check that leaves the bus open, on queues named after `run`.
pub async fn run_all(bus: &dyn Bus, run: &str) {
    let run = run.to_owned();
    delivers_in_order_and_keeps_messages_published_before_consume(bus, &run).await;
    routing_keys_are_isolated(bus, &run).await;
    nack_with_requeue_redelivers(bus, &run).await;
    dropped_delivery_is_redelivered(bus, &run).await;
    prefetch_bounds_outstanding_deliveries(bus, &run).await;
    competing_consumers_share_without_duplicates(bus, &run).await;
    carries_any_text_unchanged(bus, &run).await;
}

/// Text is text: NUL, other controls, line breaks, astral-plane characters and a replacement
/// character cross the bus exactly as published (on RabbitMQ, as Python's ASCII-escaped JSON).
async fn carries_any_text_unchanged(bus: &dyn Bus, run: &str) {
    let k = key(run, "text");
    let texts = [
        "nul\u{0}in",
        "bel\u{7} esc\u{1b}[2J del\u{7f}",
        "two\nlines\r\n",
        "grin \u{1F600} \u{FFFD}",
        "caf\u{e9}",
    ];
    for t in texts {
        let m =
            UserMessage::inbound("conformance", "telnet", "127.0.0.1:1", "127.0.0.1:2", Some(t.into()), None);
        bus.publish(&k, m.into()).await.expect("publish");
    }
    let mut c = bus.consume(&k, 10).await.expect("consume");
    for t in texts {
        let d = tokio::time::timeout(WAIT, c.next()).await.expect("delivery in time").expect("open");
        assert_eq!(content(&d.message), t, "carried unchanged");
        d.ack();
    }
}

async fn delivers_in_order_and_keeps_messages_published_before_consume(bus: &dyn Bus, run: &str) {
    let k = key(run, "order");
    for n in 0..50 {
        bus.publish(&k, msg(n)).await.expect("publish");
    }
    let mut c = bus.consume(&k, 100).await.expect("consume");
    for n in 0..50 {
        let d = tokio::time::timeout(WAIT, c.next()).await.expect("delivery in time").expect("open");
        assert_eq!(content(&d.message), n.to_string(), "messages arrive in publish order");
        assert!(!d.redelivered);
        d.ack();
    }
}

async fn routing_keys_are_isolated(bus: &dyn Bus, run: &str) {
    let a = key(run, "iso-a");
    let b = key(run, "iso-b");
    bus.publish(&a, msg(1)).await.expect("publish");
    bus.publish(&b, msg(2)).await.expect("publish");
    let mut cb = bus.consume(&b, 10).await.expect("consume");
    let d = tokio::time::timeout(WAIT, cb.next()).await.expect("in time").expect("open");
    assert_eq!(content(&d.message), "2");
    d.ack();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), cb.next()).await.is_err(),
        "b must not see a's message"
    );
    let mut ca = bus.consume(&a, 10).await.expect("consume");
    let d = tokio::time::timeout(WAIT, ca.next()).await.expect("in time").expect("open");
    assert_eq!(content(&d.message), "1");
    d.ack();
}

async fn nack_with_requeue_redelivers(bus: &dyn Bus, run: &str) {
    let k = key(run, "requeue");
    bus.publish(&k, msg(7)).await.expect("publish");
    let mut c = bus.consume(&k, 10).await.expect("consume");
    let d = tokio::time::timeout(WAIT, c.next()).await.expect("in time").expect("open");
    d.nack(true);
    let d = tokio::time::timeout(WAIT, c.next()).await.expect("redelivered in time").expect("open");
    assert_eq!(content(&d.message), "7");
    assert!(d.redelivered, "a requeued message is flagged redelivered");
    d.ack();
}

async fn dropped_delivery_is_redelivered(bus: &dyn Bus, run: &str) {
    let k = key(run, "drop");
    bus.publish(&k, msg(9)).await.expect("publish");
    let mut c = bus.consume(&k, 10).await.expect("consume");
    let d = tokio::time::timeout(WAIT, c.next()).await.expect("in time").expect("open");
    drop(d);
    let d = tokio::time::timeout(WAIT, c.next()).await.expect("redelivered in time").expect("open");
    assert_eq!(content(&d.message), "9", "an unsettled delivery must not be lost");
    d.ack();
}

async fn prefetch_bounds_outstanding_deliveries(bus: &dyn Bus, run: &str) {
    let k = key(run, "prefetch");
    for n in 0..5 {
        bus.publish(&k, msg(n)).await.expect("publish");
    }
    let mut c = bus.consume(&k, 2).await.expect("consume");
    let d0 = tokio::time::timeout(WAIT, c.next()).await.expect("in time").expect("open");
    let d1 = tokio::time::timeout(WAIT, c.next()).await.expect("in time").expect("open");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), c.next()).await.is_err(),
        "a third delivery must wait while two are unacked with prefetch 2"
    );
    d0.ack();
    let d2 = tokio::time::timeout(WAIT, c.next()).await.expect("in time after an ack").expect("open");
    for d in [d1, d2] {
        d.ack();
    }
    for _ in 3..5 {
        tokio::time::timeout(WAIT, c.next()).await.expect("in time").expect("open").ack();
    }
}

async fn competing_consumers_share_without_duplicates(bus: &dyn Bus, run: &str) {
    let k = key(run, "compete");
    let mut c1 = bus.consume(&k, 5).await.expect("consume");
    let mut c2 = bus.consume(&k, 5).await.expect("consume");
    let total = 200;
    for n in 0..total {
        bus.publish(&k, msg(n)).await.expect("publish");
    }
    let mut seen = std::collections::BTreeSet::new();
    let (mut from1, mut from2) = (0, 0);
    while seen.len() < total {
        tokio::select! {
            Some(d) = c1.next() => { from1 += 1; assert!(seen.insert(content(&d.message)), "duplicate delivery"); d.ack(); }
            Some(d) = c2.next() => { from2 += 1; assert!(seen.insert(content(&d.message)), "duplicate delivery"); d.ack(); }
            () = tokio::time::sleep(WAIT) => panic!("only {} of {total} messages delivered", seen.len()),
        }
    }
    assert_eq!(from1 + from2, total);
}

/// The queues a back end may have made for [`retry_path`] (its tiers'), for clean-up.
pub fn retry_queues(run: &str) -> Vec<String> {
    let k = key(run, "retry");
    SHORT_TIERS.iter().map(|d| format!("{k}.retry.{}", super::tier_label(*d))).collect()
}

/// The retry path, on a bus built with [`SHORT_TIERS`]: a message set aside is off its queue
/// (a message published after it is delivered first), comes back after its tier's delay counted
/// one tier further, and past the last tier is handed back, unsettled, for the failure path.
pub async fn retry_path(bus: &dyn Bus, run: &str) {
    let k = key(run, "retry");
    bus.publish(&k, msg(1)).await.expect("publish");
    let mut c = bus.consume(&k, 10).await.expect("consume");
    let mut d = tokio::time::timeout(WAIT, c.next()).await.expect("in time").expect("open");
    assert_eq!(d.retries, 0, "a fresh message has been through no tier");
    for (tier, delay) in SHORT_TIERS.iter().enumerate() {
        let set_aside = std::time::Instant::now();
        match d.retry_later().await.expect("the bus takes it") {
            Later::Deferred(got) => assert_eq!(got, *delay, "tier {tier}'s delay"),
            Later::Exhausted(_) => panic!("tier {tier} exists"),
        }
        // The marker is published after the message was set aside: it must come first.
        bus.publish(&k, msg(100 + tier)).await.expect("publish the marker");
        let marker = tokio::time::timeout(WAIT, c.next()).await.expect("in time").expect("open");
        assert_eq!(
            content(&marker.message),
            (100 + tier).to_string(),
            "the message set aside is off its queue"
        );
        marker.ack();
        d = tokio::time::timeout(WAIT, c.next()).await.expect("back from its tier in time").expect("open");
        assert_eq!(content(&d.message), "1");
        assert_eq!(d.retries, tier as u32 + 1, "counted one tier further");
        assert!(
            set_aside.elapsed() >= *delay,
            "it waited its tier's delay: {:?} < {delay:?}",
            set_aside.elapsed()
        );
    }
    match d.retry_later().await.expect("no bus call needed") {
        Later::Exhausted(d) => {
            assert_eq!(content(&d.message), "1");
            d.ack();
        }
        Later::Deferred(_) => panic!("past the last tier the delivery is handed back"),
    }
    bus.publish(&k, msg(200)).await.expect("publish the marker");
    let next = tokio::time::timeout(WAIT, c.next()).await.expect("in time").expect("open");
    assert_eq!(content(&next.message), "200", "the message handed back and acked does not come again");
    next.ack();
}

/// Closing the bus ends every consumer's stream.
pub async fn close_ends_consumers(bus: &dyn Bus, run: &str) {
    let mut c = bus.consume(&key(run, "close"), 1).await.expect("consume");
    let waiter = async { c.next().await.is_none() };
    let (ended, ()) = tokio::join!(async { tokio::time::timeout(WAIT, waiter).await }, bus.close());
    assert_eq!(ended.ok(), Some(true), "next() returns None after close");
}

/// A bounded bus (`capacity` messages a queue, publishers waiting a short time for room): a
/// publish into a full queue waits for a consumer to take one and then goes in, or, if none
/// does, is refused with [`BusError::Full`] (retryable). A message put back is never refused,
/// and nothing is lost.
pub async fn bounded_queues(bus: &dyn Bus, capacity: usize) {
    let run = new_run();
    let k = key(&run, "bounded");
    for n in 0..capacity {
        bus.publish(&k, msg(n)).await.expect("room for capacity messages");
    }
    match bus.publish(&k, msg(900)).await {
        Err(e @ BusError::Full { .. }) => {
            assert!(e.is_retryable(), "a full queue may have room later");
            assert!(e.to_string().contains("is full"), "{e}");
        }
        other => panic!("a publish into a full queue that nobody drains must be refused, got {other:?}"),
    }
    // A publisher waiting for room goes on as soon as a consumer takes one.
    let mut c = bus.consume(&k, 100).await.expect("consume");
    let (published, first) = tokio::join!(bus.publish(&k, msg(capacity)), async {
        let d = tokio::time::timeout(WAIT, c.next()).await.expect("in time").expect("open");
        let n = content(&d.message);
        d.ack();
        n
    });
    published.expect("the waiting publish went in once there was room");
    assert_eq!(first, "0");
    // Full again; a delivery put back still goes back.
    let d = tokio::time::timeout(WAIT, c.next()).await.expect("in time").expect("open");
    bus.publish(&k, msg(capacity + 1)).await.expect("room left by the delivery taken");
    d.nack(true);
    let mut seen = Vec::new();
    for _ in 0..capacity + 1 {
        let d = tokio::time::timeout(WAIT, c.next())
            .await
            .expect("every message, the requeued one too")
            .expect("open");
        seen.push(content(&d.message).parse::<usize>().expect("a number"));
        d.ack();
    }
    seen.sort_unstable();
    let expected: Vec<usize> = (1..=capacity + 1).collect();
    assert_eq!(seen, expected, "nothing lost and nothing doubled");
}
