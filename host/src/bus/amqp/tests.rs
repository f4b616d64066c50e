use super::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

use super::{Bus, BusError, RoutingKey};
use crate::bus::conformance;
use crate::message::Message;
use crate::telemetry::metrics::metrics;

#[test]
fn json_is_escaped_to_ascii_as_python_writes_it() {
    let body = "{\"content\":\"caf\u{e9} \u{1F600}\"}".as_bytes().to_vec();
    let out = ascii_json(body);
    assert_eq!(std::str::from_utf8(&out).expect("ascii"), r#"{"content":"caf\u00e9 \ud83d\ude00"}"#);
    let back: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(back["content"], "caf\u{e9} \u{1F600}");
}

#[test]
fn the_password_never_shows() {
    let o = AmqpOptions { password: "s3cret".into(), vhost: "/develop".into(), ..Default::default() };
    assert_eq!(o.display(), "amqp://guest@127.0.0.1:5672/%2fdevelop");
    assert!(!format!("{o:?}").contains("s3cret"));
}

/// The shared broker on this machine; a test fails (never skips) when it is not running.
pub(crate) async fn shared() -> AmqpBus {
    let opts = AmqpOptions { connection_name: "vumi-test".into(), ..Default::default() };
    match AmqpBus::connect(opts).await {
        Ok(b) => b,
        Err(e) => panic!(
            "{e}\nThese tests need RabbitMQ on 127.0.0.1:5672 (guest/guest): start it with `rabbitmq-server -detached` or `systemctl start rabbitmq-server`"
        ),
    }
}

/// Run `check` and delete `queues` whether it passed or not.
async fn cleaning<F>(bus: Arc<AmqpBus>, queues: Vec<String>, check: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let outcome = tokio::spawn(check).await;
    for q in queues {
        let _ = bus.delete_queue(&q).await;
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_bus_passes_the_conformance_suite() {
    let bus = Arc::new(shared().await);
    let run = conformance::new_run();
    let queues = conformance::keys(&run).iter().map(ToString::to_string).collect();
    let (b, r) = (bus.clone(), run.clone());
    cleaning(bus.clone(), queues, async move { conformance::run_all(&*b, &r).await }).await;
}

/// The retry path's tiers are queues with a TTL that dead-letter back to the input; a
/// final failure goes to `<connector>.failures`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_path_waits_in_tier_queues_and_final_failures_go_to_the_failures_queue() {
    let opts = AmqpOptions {
        connection_name: "vumi-test-retry".into(),
        retry_tiers: conformance::SHORT_TIERS.to_vec(),
        ..Default::default()
    };
    let bus = Arc::new(
        AmqpBus::connect(opts).await.expect("RabbitMQ on 127.0.0.1:5672 (`rabbitmq-server -detached`)"),
    );
    let run = conformance::new_run();
    let failures_key = raw_key(&run, "fail");
    let failures_queue = format!("{}.failures", failures_key.connector);
    let mut queues: Vec<String> = conformance::keys(&run).iter().map(ToString::to_string).collect();
    queues.extend(conformance::retry_queues(&run));
    queues.push(failures_queue.clone());
    let b = bus.clone();
    cleaning(bus.clone(), queues, async move {
        conformance::retry_path(&*b, &run).await;
        let args = rabbitmqctl(&["list_queues", "name", "arguments"]).await;
        let tier = &conformance::retry_queues(&run)[0];
        let row = args.lines().find(|l| l.starts_with(tier.as_str())).unwrap_or_else(|| panic!("no tier queue `{tier}`: {args}"));
        for want in ["x-message-ttl", "300", "x-dead-letter-exchange", "vumi", "x-dead-letter-routing-key"] {
            assert!(row.contains(want), "the tier queue's arguments name {want}: {row}");
        }
        let failure = serde_json::json!({ "message_type": "failure_message", "failure_code": "temporary", "reason": "caf\u{e9}", "message": {} });
        b.publish_failure(failures_key.connector.as_str(), &failure).await.expect("publish a failure");
        let conn = Connection::connect("amqp://127.0.0.1:5672/%2f", ConnectionProperties::default()).await.expect("raw connection");
        let ch = conn.create_channel().await.expect("channel");
        let got = ch.basic_get(failures_queue.as_str().into(), lapin::options::BasicGetOptions { no_ack: true }).await.expect("get").expect("confirmed before it returned");
        assert!(got.delivery.data.is_ascii(), "ASCII JSON, as Vumi writes it");
        let v: serde_json::Value = serde_json::from_slice(&got.delivery.data).expect("JSON");
        assert_eq!(v, failure);
        let _ = conn.close(200, "done".into()).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_amqp_bus_ends_its_consumers() {
    let bus = Arc::new(shared().await);
    let cleaner = Arc::new(shared().await);
    let run = conformance::new_run();
    let queues = conformance::keys(&run).iter().map(ToString::to_string).collect();
    let (b, r) = (bus.clone(), run.clone());
    cleaning(cleaner, queues, async move { conformance::close_ends_consumers(&*b, &r).await }).await;
}

fn raw_key(run: &str, what: &str) -> RoutingKey {
    RoutingKey::inbound(&format!("amqp-{}-{what}", &run[..12]).parse().expect("name"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_persistent_ascii_and_a_bad_body_is_set_aside_while_the_queue_flows() {
    let bus = Arc::new(shared().await);
    let run = conformance::new_run();
    let key = raw_key(&run, "bad");
    let failures = format!("{}.failures", key.connector);
    let queues = vec![key.to_string(), failures.clone()];
    let b = bus.clone();
    cleaning(bus.clone(), queues, async move {
        let mut c = b.consume(&key, 10).await.expect("consume");
        // What a peer might publish: not JSON, then JSON that is not a message, then a good one.
        b.publish_raw(&key.to_string(), b"not json {").await.expect("publish");
        b.publish_raw(&key.to_string(), br#"{"message_type":"user_message"}"#).await.expect("publish");
        let good = crate::message::UserMessage::inbound(
            "t",
            "sms",
            "+27831234567",
            "12345",
            Some("caf\u{e9} \u{1F600}".into()),
            None,
        );
        b.publish(&key, good.clone().into()).await.expect("publish");
        let d = tokio::time::timeout(Duration::from_secs(10), c.next())
            .await
            .expect("the good one in time")
            .expect("open");
        assert_eq!(d.message.id(), good.message_id, "the bad bodies did not stall the queue");
        d.ack();
        // Both bad bodies are on the failures queue, each with its reason.
        let conn = Connection::connect("amqp://127.0.0.1:5672/%2f", ConnectionProperties::default())
            .await
            .expect("raw connection");
        let ch = conn.create_channel().await.expect("channel");
        let mut reasons = Vec::new();
        for _ in 0..2 {
            let got = loop {
                if let Some(m) = ch
                    .basic_get(failures.as_str().into(), lapin::options::BasicGetOptions { no_ack: true })
                    .await
                    .expect("get")
                {
                    break m;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            assert!(got.delivery.data.is_ascii());
            assert_eq!(got.delivery.properties.delivery_mode(), &Some(2), "persistent");
            let v: serde_json::Value =
                serde_json::from_slice(&got.delivery.data).expect("a failure message is JSON");
            assert_eq!(v["message_type"], "failure_message");
            assert_eq!(v["failure_code"], "permanent");
            reasons.push(v["reason"].as_str().expect("reason").to_owned());
        }
        assert!(
            reasons[0].contains("undecodable body") && reasons[1].contains("undecodable body"),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r.contains("missing field `message_version`")),
            "the reason names the missing field: {reasons:?}"
        );
        // And what we publish is ASCII with delivery mode 2 only.
        b.publish(&key, good.clone().into()).await.expect("publish");
        drop(c);
        let got = loop {
            if let Some(m) = ch
                .basic_get(key.to_string().as_str().into(), lapin::options::BasicGetOptions { no_ack: true })
                .await
                .expect("get")
            {
                break m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(got.delivery.data.is_ascii(), "{}", String::from_utf8_lossy(&got.delivery.data));
        assert!(String::from_utf8_lossy(&got.delivery.data).contains(r"caf\u00e9 \ud83d\ude00"));
        let p = &got.delivery.properties;
        assert_eq!(p.delivery_mode(), &Some(2));
        assert_eq!(
            (p.content_type(), p.headers(), p.message_id()),
            (&None, &None, &None),
            "no property but the delivery mode, as Vumi publishes"
        );
        let _ = conn.close(200, "done".into()).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_declared_with_other_flags_is_refused_with_the_reason() {
    let bus = Arc::new(shared().await);
    let run = conformance::new_run();
    let key = raw_key(&run, "flags");
    let b = bus.clone();
    let k = key.clone();
    cleaning(bus.clone(), vec![key.to_string()], async move {
        let conn = Connection::connect("amqp://127.0.0.1:5672/%2f", ConnectionProperties::default())
            .await
            .expect("raw connection");
        let ch = conn.create_channel().await.expect("channel");
        ch.queue_declare(
            k.to_string().as_str().into(),
            QueueDeclareOptions { durable: false, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .expect("declare transient");
        let err = b
            .publish(&k, crate::message::UserMessage::inbound("t", "sms", "a", "b", None, None).into())
            .await
            .expect_err("refused");
        assert!(matches!(err, BusError::Refused(_)) && !err.is_retryable(), "{err}");
        assert!(
            err.to_string().contains("PRECONDITION_FAILED") || err.to_string().contains("inequivalent"),
            "{err}"
        );
        // Deleted on the connection that declared it: the bus's channel was closed by the
        // refusal, so the cleaning below cannot be relied on for this one.
        ch.queue_delete(k.to_string().as_str().into(), lapin::options::QueueDeleteOptions::default())
            .await
            .expect("delete the transient queue");
        let _ = conn.close(200, "done".into()).await;
    })
    .await;
}

/// Have the broker close every connection whose name contains `name` (as a broker restart
/// or a network fault does), through `rabbitmqctl`. Touches no other client's connections.
async fn broker_closes(name: &str) -> usize {
    let out = tokio::process::Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
        .await
        .expect("rabbitmqctl (the RabbitMQ server's CLI) is needed for this test");
    let text = String::from_utf8_lossy(&out.stdout);
    let pids: Vec<&str> =
        text.lines().filter(|l| l.contains(name)).filter_map(|l| l.split_whitespace().next()).collect();
    for pid in &pids {
        let st = tokio::process::Command::new("rabbitmqctl")
            .args(["-q", "close_connection", pid, "test: broker closes"])
            .status()
            .await
            .expect("rabbitmqctl");
        assert!(st.success(), "close_connection {pid}");
    }
    pids.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_broker_drops_the_connections_the_bus_reconnects_and_what_was_in_flight_comes_back() {
    let run = conformance::new_run();
    let name = format!("vumi-reconnect-{}", &run[..8]);
    let opts = AmqpOptions {
        connection_name: name.clone(),
        reconnect_initial: Duration::from_millis(50),
        ..Default::default()
    };
    let bus = Arc::new(match AmqpBus::connect(opts).await {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    });
    let key = raw_key(&run, "reconnect");
    let b = bus.clone();
    cleaning(bus.clone(), vec![key.to_string()], async move {
        let before = (metrics().bus_reconnects("publish").get(), metrics().bus_reconnects("consume").get());
        let mut c = b.consume(&key, 10).await.expect("consume");
        let m = crate::message::UserMessage::inbound(
            "t",
            "sms",
            "+27831234567",
            "12345",
            Some("one".into()),
            None,
        );
        b.publish(&key, m.clone().into()).await.expect("publish");
        let held =
            tokio::time::timeout(Duration::from_secs(10), c.next()).await.expect("in time").expect("open");
        assert!(!held.redelivered);
        assert!(b.health().is_ok());
        assert_eq!(broker_closes(&name).await, 2, "one publishing and one consuming connection");
        // The delivery in hand was on the dropped channel: the broker put it back, and it
        // comes again, flagged; acking the stale one acks nothing.
        held.ack();
        let again = tokio::time::timeout(Duration::from_secs(20), c.next())
            .await
            .expect("redelivered after the reconnect")
            .expect("open");
        assert_eq!(again.message.id(), m.message_id);
        assert!(again.redelivered, "flagged as a redelivery");
        again.ack();
        // Publishing works again on a new connection, and consuming goes on.
        let m2 = crate::message::UserMessage::inbound(
            "t",
            "sms",
            "+27831234567",
            "12345",
            Some("two".into()),
            None,
        );
        b.publish(&key, m2.clone().into()).await.expect("publish after the reconnect");
        let d =
            tokio::time::timeout(Duration::from_secs(10), c.next()).await.expect("in time").expect("open");
        assert_eq!(d.message.id(), m2.message_id);
        d.ack();
        let after = (metrics().bus_reconnects("publish").get(), metrics().bus_reconnects("consume").get());
        assert!(after.0 > before.0 && after.1 > before.1, "counted: {before:?} -> {after:?}");
        assert!(b.health().is_ok(), "{:?}", b.health());
    })
    .await;
}

/// A caller may drop `next` at any await (an app worker waits on two consumers in one
/// `select!`): polled under constant cancellation while it reconnects, a consumer must
/// strand no delivery in a half-opened channel. Before the consumer was cancel-safe, each
/// dropped reopen left a broker-side consumer holding up to a prefetch nobody read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_dropped_mid_call_while_it_reconnects_strands_no_delivery() {
    let run = conformance::new_run();
    let name = format!("vumi-cancel-{}", &run[..8]);
    let opts = AmqpOptions {
        connection_name: name.clone(),
        reconnect_initial: Duration::from_millis(20),
        ..Default::default()
    };
    let bus = Arc::new(
        AmqpBus::connect(opts).await.expect("RabbitMQ on 127.0.0.1:5672 (`rabbitmq-server -detached`)"),
    );
    let key = raw_key(&run, "cancel");
    let b = bus.clone();
    cleaning(bus.clone(), vec![key.to_string()], async move {
        let mut c = b.consume(&key, 50).await.expect("consume");
        let n = 20;
        for i in 0..n {
            let m = crate::message::UserMessage::inbound(
                "t",
                "sms",
                "+27831234567",
                "12345",
                Some(i.to_string()),
                None,
            );
            b.publish(&key, m.into()).await.expect("publish");
        }
        assert_eq!(broker_closes(&name).await, 2, "one publishing and one consuming connection");
        let mut got = std::collections::BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while got.len() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} delivered after the reconnect: the rest are stranded",
                got.len()
            );
            // So short that nearly every call is dropped half-way, as a lost `select!` branch is.
            if let Ok(Some(d)) = tokio::time::timeout(Duration::from_micros(300), c.next()).await {
                if let Message::User(m) = &d.message {
                    got.insert(m.content.clone().unwrap_or_default());
                }
                d.ack();
            }
        }
    })
    .await;
}

async fn rabbitmqctl(args: &[&str]) -> String {
    let out =
        tokio::process::Command::new("rabbitmqctl").arg("-q").args(args).output().await.expect("rabbitmqctl");
    assert!(out.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Quorum queues for clusters without breaking legacy declarations: a vhost whose default
/// queue type is quorum (RabbitMQ 3.10.8+) turns our no-argument declarations, which are
/// legacy Vumi's, into quorum queues, and the whole conformance suite, the retry path
/// included, passes on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vhost_defaulting_to_quorum_queues_takes_legacy_declarations_and_passes_the_suite() {
    let run = conformance::new_run();
    let vhost = format!("vumi-quorum-{}", &run[..8]);
    rabbitmqctl(&["add_vhost", &vhost, "--default-queue-type", "quorum"]).await;
    rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]).await;
    let opts = AmqpOptions {
        vhost: vhost.clone(),
        connection_name: "vumi-quorum-test".into(),
        retry_tiers: conformance::SHORT_TIERS.to_vec(),
        ..Default::default()
    };
    let outcome = tokio::spawn(async move {
        let bus = AmqpBus::connect(opts).await.expect("connect to the quorum vhost");
        conformance::run_all(&bus, &run).await;
        // The retry path's tier queues are quorum queues there too, TTL and dead-lettering
        // included.
        conformance::retry_path(&bus, &run).await;
        bus.close().await;
    })
    .await;
    let types = rabbitmqctl(&["list_queues", "-p", &vhost, "name", "type"]).await;
    rabbitmqctl(&["delete_vhost", &vhost]).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
    let rows: Vec<&str> = types.lines().filter(|l| l.contains("conf-")).collect();
    assert!(rows.len() >= 6, "the suite's queues: {types}");
    assert!(
        rows.iter().all(|r| r.split_whitespace().nth(1) == Some("quorum")),
        "every queue is a quorum queue: {types}"
    );
}
