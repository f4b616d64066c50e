//! The plugin core and the app worker in process, on real components: how each way a call can
//! end is reported, and how the worker retries what a plugin asks to retry.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vumi_host::bus::{Bus, EmbeddedBus, RoutingKey};
use vumi_host::config::RetryPolicy;
use vumi_host::harness::PluginHarness;
use vumi_host::message::{Message, SessionEvent, UserMessage};
use vumi_host::names::ConnectorName;
use vumi_host::plugins::{
    AppPlugin, AppSlot, Engine, EngineSettings, InstancePolicy, Limits, LoadError, RouterPlugin, Settings,
};
use vumi_host::state::{MemoryStore, Namespace, Namespaced};
use vumi_host::workers::flow::Flow;
use vumi_host::workers::{AppWorker, AppWorkerParts, FailureLog};

use crate::common::plugin;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
}

fn settings(name: &str, deadline_ms: u64) -> Settings {
    Settings {
        name: name.into(),
        policy: InstancePolicy::Pooled { max_messages: 1000, max_age: Duration::from_secs(60) },
        limits: Limits {
            deadline: Duration::from_millis(deadline_ms),
            max_memory_bytes: 32 << 20,
            max_sends: 4,
            ..Limits::default()
        },
        kv: Namespaced::new(Arc::new(MemoryStore::new()), Namespace::plugin("app", name)),
        config: Default::default(),
        endpoints: vec!["default".into()],
    }
}

#[test]
fn a_guest_waiting_in_wasi_is_stopped_by_the_wall_clock_bound_and_says_so() {
    rt().block_on(async {
        let app = PluginHarness::builder(plugin("faulty"))
            .deadline(Duration::from_millis(50))
            .load()
            .await
            .expect("load");
        let user = app.user("u1");
        let e = user.say("sleep").await.expect_err("an hour's sleep must be stopped");
        assert_eq!(e.kind(), "wall_clock", "{e}");
        assert!(e.to_string().contains("wall-clock bound of 1500 ms"), "{e}");
        assert!(!e.to_string().contains("CPU deadline"), "not reported as CPU time: {e}");
        // The stopped instance is dropped; the next message gets a sound one.
        assert_eq!(user.say("after").await.expect("next")[0].content.as_deref(), Some("ok: after"));
    });
}

#[test]
fn a_component_that_fails_while_starting_is_not_called_the_wrong_world() {
    rt().block_on(async {
        // Its data needs more than 1 MiB of memory before the first message.
        let e = PluginHarness::builder(plugin("versioned-large"))
            .memory_limit_mb(1)
            .load()
            .await
            .expect_err("cannot start");
        let text = e.to_string();
        assert!(matches!(e, LoadError::Start { .. }), "{text}");
        assert!(text.contains("fails to start") && text.contains("memory cap of 1 MiB"), "{text}");
        assert!(!text.contains("is not a vumi:plugin"), "{text}");
    });
}

#[test]
fn a_component_is_loaded_for_one_world_only() {
    rt().block_on(async {
        let engine = Engine::new(&EngineSettings::default()).expect("engine");
        let e = RouterPlugin::load(&engine, &plugin("echo"), settings("echo", 100))
            .await
            .expect_err("an app is no router");
        assert!(matches!(e, LoadError::WrongWorld { .. }), "{e}");
        assert!(e.to_string().contains("is not a vumi:plugin/router@0.2.1 component"), "{e}");
        let app =
            AppPlugin::load(&engine, &plugin("echo"), settings("echo", 100)).await.expect("an app is an app");
        assert_eq!(app.world().to_string(), "vumi:plugin/application@0.2.1");
    });
}

/// An app worker running `faulty` on connector `c`, publishing through a flow; returns the
/// raw bus, the failure log and a stop token.
async fn faulty_worker(
    retry: RetryPolicy,
) -> (Arc<EmbeddedBus>, Arc<FailureLog>, CancellationToken, tokio::task::JoinHandle<()>) {
    let (bus, failures, stop, task, _slot) = faulty_worker_with_slot(retry).await;
    (bus, failures, stop, task)
}

async fn faulty_worker_with_slot(
    retry: RetryPolicy,
) -> (Arc<EmbeddedBus>, Arc<FailureLog>, CancellationToken, tokio::task::JoinHandle<()>, Arc<AppSlot>) {
    let engine = Engine::new(&EngineSettings::default()).expect("engine");
    let slot = Arc::new(AppSlot::new(
        AppPlugin::load(&engine, &plugin("faulty"), settings("faulty", 200)).await.expect("load"),
    ));
    let bus = Arc::new(EmbeddedBus::new().with_retry_tiers(retry.tiers()));
    let failures = Arc::new(FailureLog::new(10, None).expect("log"));
    let flow = Arc::new(Flow::new(bus.clone(), failures.clone()));
    let worker = AppWorker::new(AppWorkerParts {
        handler: slot.clone(),
        bus: bus.clone(),
        publish: flow,
        connector: "c".parse().expect("name"),
        failures: failures.clone(),
        concurrency: 2,
        retry,
        sequencer: None,
        rates: None,
    });
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await.expect("worker") }
    });
    (bus, failures, stop, task, slot)
}

/// The contents of the next `n` messages on `c`'s outbound queue.
async fn replies(bus: &EmbeddedBus, c: &ConnectorName, n: usize) -> Vec<String> {
    let mut out = bus.consume(&RoutingKey::outbound(c), 10).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..n {
        let d =
            tokio::time::timeout(Duration::from_secs(20), out.next()).await.expect("in time").expect("open");
        let Message::User(m) = &d.message else { panic!("a user message") };
        got.push(m.content.clone().unwrap_or_default());
        d.ack();
    }
    got
}

fn say(from: &str, text: &str) -> Message {
    UserMessage::inbound("c", "telnet", from, "app", Some(text.into()), Some(SessionEvent::Resume)).into()
}

#[test]
fn retry_later_waits_with_backoff_keeps_the_users_order_and_then_succeeds() {
    rt().block_on(async {
        let (bus, failures, stop, task) =
            faulty_worker(RetryPolicy { initial_ms: 20, max_ms: 200, max_attempts: 8, ..Default::default() })
                .await;
        let c: ConnectorName = "c".parse().unwrap();
        let started = std::time::Instant::now();
        bus.publish(&RoutingKey::inbound(&c), say("u1", "retry 3")).await.unwrap();
        // Behind it, from the same user: must not overtake the message being retried.
        bus.publish(&RoutingKey::inbound(&c), say("u1", "next")).await.unwrap();
        let got = replies(&bus, &c, 2).await;
        assert_eq!(
            got,
            ["retried after 3", "ok: next"],
            "retried until it succeeded, and the user's order held"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(20 + 40 + 80),
            "three waits, doubling: {:?}",
            started.elapsed()
        );
        assert_eq!(failures.total(), 0);
        let metrics = vumi_host::telemetry::metrics::metrics().render();
        assert!(
            metrics.lines().any(|l| l.starts_with("vumi_retries_total{")
                && l.contains("component=\"app:faulty\"")
                && l.contains("reason=\"retry_later\"")),
            "{metrics}"
        );
        stop.cancel();
        task.await.unwrap();
    });
}

#[test]
fn without_delay_tiers_a_message_still_asking_to_retry_after_the_last_try_goes_to_the_failure_path() {
    rt().block_on(async {
        let (bus, failures, stop, task) =
            faulty_worker(RetryPolicy { initial_ms: 10, max_ms: 20, max_attempts: 3, tiers_ms: vec![] })
                .await;
        let c: ConnectorName = "c".parse().unwrap();
        bus.publish(&RoutingKey::inbound(&c), say("u2", "retry 50")).await.unwrap();
        // The marker from the same user is handled only after the first message is given up on.
        bus.publish(&RoutingKey::inbound(&c), say("u2", "marker")).await.unwrap();
        let mut out = bus.consume(&RoutingKey::outbound(&c), 10).await.unwrap();
        let d =
            tokio::time::timeout(Duration::from_secs(20), out.next()).await.expect("in time").expect("open");
        let Message::User(m) = &d.message else { panic!("a user message") };
        assert_eq!(m.content.as_deref(), Some("ok: marker"), "nothing was sent for the retried message");
        d.ack();
        assert_eq!(failures.total(), 1);
        let f = &failures.recent()[0];
        assert_eq!((f.kind.as_str(), f.failure_code.as_str()), ("retry_later", "temporary"));
        assert!(
            f.reason.contains("asked to retry (3 of 50)") && f.reason.contains("after 3 tries in place"),
            "{}",
            f.reason
        );
        assert_eq!(bus.depth(&RoutingKey::inbound(&c)), 0, "taken off the queue, not requeued");
        stop.cancel();
        task.await.unwrap();
    });
}

#[test]
fn after_its_tries_in_place_a_message_waits_out_delay_tiers_off_its_queue_while_the_user_goes_on() {
    rt().block_on(async {
        let retry = RetryPolicy { initial_ms: 10, max_ms: 20, max_attempts: 2, tiers_ms: vec![150, 300] };
        let (bus, failures, stop, task) = faulty_worker(retry).await;
        let c: ConnectorName = "c".parse().unwrap();
        let started = std::time::Instant::now();
        // Refused 5 times: 2 tries in place, 2 after the first tier, and the 6th (after the
        // second tier) is answered.
        bus.publish(&RoutingKey::inbound(&c), say("u4", "retry 5")).await.unwrap();
        bus.publish(&RoutingKey::inbound(&c), say("u4", "marker")).await.unwrap();
        let got = replies(&bus, &c, 2).await;
        assert_eq!(
            got,
            ["ok: marker", "retried after 5"],
            "the marker went on while the first message was set aside"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(150 + 300),
            "both tiers waited out: {:?}",
            started.elapsed()
        );
        assert_eq!(failures.total(), 0);
        // Past the last tier: the failure path, temporary, with the last reason.
        bus.publish(&RoutingKey::inbound(&c), say("u5", "retry 50")).await.unwrap();
        crate::common::eventually_async("the message on the failure path", || async {
            if failures.total() > 0 { Ok(()) } else { Err("nothing recorded".into()) }
        })
        .await;
        let f = &failures.recent()[0];
        assert_eq!((f.kind.as_str(), f.failure_code.as_str()), ("retry_later", "temporary"));
        assert!(
            f.reason.contains("asked to retry (6 of 50)") && f.reason.contains("2 delay tiers"),
            "{}",
            f.reason
        );
        let metrics = vumi_host::telemetry::metrics::metrics().render();
        for tier in ["150ms", "300ms"] {
            assert!(
                metrics.lines().any(|l| l.starts_with("vumi_retry_path_total{")
                    && l.contains("component=\"faulty\"")
                    && l.contains(&format!("tier=\"{tier}\""))),
                "{metrics}"
            );
        }
        assert_eq!(bus.pending(), Some(0), "nothing left set aside or unsettled");
        stop.cancel();
        task.await.unwrap();
    });
}

#[test]
fn a_stop_does_not_wait_out_a_backoff_and_the_message_goes_back_on_its_queue() {
    rt().block_on(async {
        // A minute's wait after the first try: a reload or shutdown must not sit it out.
        let (bus, failures, stop, task, slot) = faulty_worker_with_slot(RetryPolicy {
            initial_ms: 60_000,
            max_ms: 60_000,
            max_attempts: 3,
            ..Default::default()
        })
        .await;
        let c: ConnectorName = "c".parse().unwrap();
        bus.publish(&RoutingKey::inbound(&c), say("u3", "retry 50")).await.unwrap();
        crate::common::eventually_async("the first try", || async {
            let tried = slot.current().stats().failed.load(std::sync::atomic::Ordering::Relaxed) > 0;
            if tried { Ok(()) } else { Err("not yet".into()) }
        })
        .await;
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the worker stopped without waiting out the backoff")
            .unwrap();
        assert_eq!(
            bus.depth(&RoutingKey::inbound(&c)),
            1,
            "the message is back on its queue for the next worker"
        );
        assert_eq!(failures.total(), 0, "and not on the failure path");
    });
}
