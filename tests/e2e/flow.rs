//! The message path in process (the rest of dispatch is tested through the binary in
//! `dispatch.rs`): a message published on a dispatcher's input is routed inside `publish`; one
//! that cannot be routed now waits on the queue, and the dispatcher's consumer retries it with a
//! backoff until it can; a message one dispatcher routes into another's input waits on that
//! queue instead of recursing; and a router's own keys cannot reach the origin records that send
//! events home.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vumi_host::bus::{Bus, EmbeddedBus, RoutingKey};
use vumi_host::config::RetryPolicy;
use vumi_host::message::{Event, Message, UserMessage};
use vumi_host::names::ConnectorName;
use vumi_host::plugins::{
    Engine, EngineSettings, InstancePolicy, Limits, RouterPlugin, RouterSlot, Settings,
};
use vumi_host::state::{KvStore, MemoryStore, Namespace, Namespaced, Quota, StateError, Usage};
use vumi_host::workers::FailureLog;
use vumi_host::workers::dispatcher::Dispatcher;
use vumi_host::workers::events::Origins;
use vumi_host::workers::flow::{Dispatchers, Flow};

use crate::common::plugin;

fn name(s: &str) -> ConnectorName {
    s.parse().unwrap()
}

/// Router `router` (a file in plugins/dist) named `name`, with `config`, its kv in `store`.
async fn router(
    engine: &Engine,
    file: &str,
    name: &str,
    config: serde_json::Value,
    store: Arc<dyn KvStore>,
) -> Arc<RouterSlot> {
    let serde_json::Value::Object(config) = config else { panic!("config must be an object") };
    let settings = Settings {
        name: name.into(),
        policy: InstancePolicy::Pooled { max_messages: 1000, max_age: Duration::from_secs(60) },
        limits: Limits {
            deadline: Duration::from_millis(500),
            max_memory_bytes: 32 << 20,
            max_sends: 0,
            ..Limits::default()
        },
        kv: Namespaced::new(store, Namespace::plugin("router", name)),
        config,
        endpoints: Vec::new(),
    };
    Arc::new(RouterSlot::new(RouterPlugin::load(engine, &plugin(file), settings).await.unwrap()))
}

/// The keyword router sending everything to `app`.
async fn keyword_router(engine: &Engine, app: &str) -> Arc<RouterSlot> {
    router(
        engine,
        "keyword-router",
        "keywords",
        serde_json::json!({ "default": app }),
        Arc::new(MemoryStore::new()),
    )
    .await
}

/// A state store that can be switched off, and tells each call as it happens.
struct Switch {
    inner: MemoryStore,
    down: AtomicBool,
    calls: mpsc::UnboundedSender<Instant>,
}

impl Switch {
    fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<Instant>) {
        let (calls, rx) = mpsc::unbounded_channel();
        (Arc::new(Self { inner: MemoryStore::new(), down: AtomicBool::new(true), calls }), rx)
    }

    fn check(&self) -> Result<(), StateError> {
        let _ = self.calls.send(Instant::now());
        if self.down.load(Ordering::SeqCst) {
            Err(StateError::Unavailable("down for the test".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl KvStore for Switch {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.check()?;
        self.inner.get(key).await
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StateError> {
        self.check()?;
        self.inner.set(key, value, ttl).await
    }
    async fn delete(&self, key: &str) -> Result<bool, StateError> {
        self.check()?;
        self.inner.delete(key).await
    }
    async fn incr(&self, key: &str, by: i64) -> Result<i64, StateError> {
        self.check()?;
        self.inner.incr(key, by).await
    }
    async fn append(&self, key: &str, value: &[u8]) -> Result<bool, StateError> {
        self.check()?;
        self.inner.append(key, value).await
    }
    async fn ping(&self) -> Result<(), StateError> {
        self.check()
    }
    async fn set_counted(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        quota: &Quota,
    ) -> Result<(), StateError> {
        self.check()?;
        self.inner.set_counted(key, value, ttl, quota).await
    }
    async fn delete_counted(&self, key: &str, quota: &Quota) -> Result<bool, StateError> {
        self.check()?;
        self.inner.delete_counted(key, quota).await
    }
    async fn incr_counted(&self, key: &str, by: i64, quota: &Quota) -> Result<i64, StateError> {
        self.check()?;
        self.inner.incr_counted(key, by, quota).await
    }
    async fn usage(&self, quota: &Quota) -> Result<Usage, StateError> {
        self.check()?;
        self.inner.usage(quota).await
    }
}

struct Wiring {
    raw: Arc<EmbeddedBus>,
    flow: Arc<Flow>,
    failures: Arc<FailureLog>,
}

fn wiring() -> Wiring {
    let raw = Arc::new(EmbeddedBus::new());
    let failures = Arc::new(FailureLog::new(10, None).unwrap());
    let flow = Arc::new(Flow::new(raw.clone(), failures.clone()));
    Wiring { raw, flow, failures }
}

impl Wiring {
    /// A dispatcher between `transport` and `app` with its origins in `origins`, routed at
    /// publish (its consumer not started: anything it routes, it routed inside `publish`).
    fn dispatcher(
        &self,
        router: Arc<RouterSlot>,
        transport: &str,
        app: &str,
        origins: Arc<dyn KvStore>,
    ) -> Arc<Dispatcher> {
        let origins = Arc::new(Origins::new(origins, Duration::from_secs(60)));
        Arc::new(Dispatcher::new(router, vec![name(transport)], vec![name(app)], origins))
    }

    fn route(&self, dispatchers: &[&Arc<Dispatcher>]) {
        let all: Dispatchers =
            dispatchers.iter().flat_map(|d| d.inputs().into_iter().map(|k| (k, (*d).clone()))).collect();
        self.flow.set_dispatchers(all);
    }

    async fn next(&self, key: &RoutingKey) -> Message {
        let mut c = self.raw.consume(key, 1).await.unwrap();
        let d = tokio::time::timeout(Duration::from_secs(10), c.next())
            .await
            .expect("a message in time")
            .expect("open");
        let m = d.message.clone();
        d.ack();
        m
    }
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy { initial_ms: 20, max_ms: 160, max_attempts: 1000, ..Default::default() }
}

#[tokio::test]
async fn a_message_for_a_dispatcher_is_routed_inside_publish_and_its_events_find_home() {
    let engine = Engine::new(&EngineSettings::default()).unwrap();
    let w = wiring();
    let d = w.dispatcher(keyword_router(&engine, "app").await, "sms", "app", Arc::new(MemoryStore::new()));
    w.route(&[&d]);
    let (sms, app) = (name("sms"), name("app"));

    let inbound = UserMessage::inbound("sms", "sms", "+27820000001", "1234", Some("hello".into()), None);
    w.flow.publish(&RoutingKey::inbound(&sms), inbound.clone().into()).await.unwrap();
    assert_eq!(w.raw.depth(&RoutingKey::inbound(&sms)), 0, "nothing waits on the dispatcher's queue");
    assert_eq!(w.raw.depth(&RoutingKey::inbound(&app)), 1, "the app's queue has it");

    let reply = inbound.reply(Some("hi".into()), false);
    w.flow.publish(&RoutingKey::outbound(&app), reply.clone().into()).await.unwrap();
    assert_eq!(
        w.raw.depth(&RoutingKey::outbound(&sms)),
        1,
        "the reply leaves by the transport it came in on"
    );

    // The reply's origin was recorded on the way out, so its ack goes back to the app.
    w.flow.publish(&RoutingKey::event(&sms), Event::ack(&reply.message_id, "smsc-1").into()).await.unwrap();
    assert_eq!(w.raw.depth(&RoutingKey::event(&app)), 1);
    assert_eq!(w.failures.total(), 0);
}

#[tokio::test]
async fn a_message_that_cannot_be_routed_now_is_retried_with_a_growing_wait_until_it_can() {
    let engine = Engine::new(&EngineSettings::default()).unwrap();
    let w = wiring();
    // Outbound routing records the message's origin first; with the store down it cannot.
    let (store, mut calls) = Switch::new();
    let d = w.dispatcher(keyword_router(&engine, "app").await, "sms", "app", store.clone());
    w.route(&[&d]);
    let (sms, app) = (name("sms"), name("app"));

    let inbound = UserMessage::inbound("sms", "sms", "+27820000001", "1234", Some("hello".into()), None);
    let reply = inbound.reply(Some("hi".into()), false);
    w.flow.publish(&RoutingKey::outbound(&app), reply.clone().into()).await.unwrap();
    assert_eq!(w.raw.depth(&RoutingKey::outbound(&app)), 1, "set aside on the dispatcher's queue, not lost");
    assert_eq!(w.raw.depth(&RoutingKey::outbound(&sms)), 0);
    assert_eq!(w.failures.total(), 0, "a back end that is down is not the message's fault");
    calls.recv().await.expect("the publish-time attempt");

    // The dispatcher's consumer retries it: four tries, each after a longer wait than the last.
    let stop = CancellationToken::new();
    let task = tokio::spawn(w.flow.clone().serve(d.clone(), quick_retries(), stop.clone()));
    let mut at = Vec::new();
    for _ in 0..4 {
        at.push(calls.recv().await.expect("another try"));
    }
    let gaps: Vec<Duration> = at.windows(2).map(|p| p[1] - p[0]).collect();
    for (i, (gap, want)) in gaps.iter().zip([20u64, 40, 80]).enumerate() {
        assert!(
            *gap >= Duration::from_millis(want),
            "wait {i} was {gap:?}: a retry must wait (doubling from 20 ms), not spin"
        );
    }
    assert_eq!(w.raw.depth(&RoutingKey::outbound(&sms)), 0, "nothing sent while the store is down");

    // The store comes back: the next try succeeds and the message goes out.
    store.down.store(false, Ordering::SeqCst);
    let Message::User(sent) = w.next(&RoutingKey::outbound(&sms)).await else { panic!("a user message") };
    assert_eq!(sent.message_id, reply.message_id);
    assert_eq!(w.failures.total(), 0);
    let metrics = vumi_host::telemetry::metrics::metrics().render();
    assert!(
        metrics.lines().any(|l| l.starts_with("vumi_retries_total{")
            && l.contains("component=\"router:keywords\"")
            && l.contains("reason=\"unavailable\"")),
        "the waits are counted:\n{metrics}"
    );
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_message_routed_into_another_dispatchers_input_waits_on_its_queue() {
    let engine = Engine::new(&EngineSettings::default()).unwrap();
    let w = wiring();
    // `front` routes sms → middle; `back` routes middle → app. Chained, or (with a config
    // mistake) a loop: each hop after the first is queued, never a publish within a publish.
    let front =
        w.dispatcher(keyword_router(&engine, "middle").await, "sms", "middle", Arc::new(MemoryStore::new()));
    let back =
        w.dispatcher(keyword_router(&engine, "app").await, "middle", "app", Arc::new(MemoryStore::new()));
    w.route(&[&front, &back]);
    let (sms, middle, app) = (name("sms"), name("middle"), name("app"));

    let inbound = UserMessage::inbound("sms", "sms", "+27820000001", "1234", Some("hello".into()), None);
    w.flow.publish(&RoutingKey::inbound(&sms), inbound.clone().into()).await.unwrap();
    assert_eq!(w.raw.depth(&RoutingKey::inbound(&middle)), 1, "the second dispatcher's queue has it");
    assert_eq!(w.raw.depth(&RoutingKey::inbound(&app)), 0);

    // The second dispatcher's consumer takes it from there.
    let stop = CancellationToken::new();
    let task = tokio::spawn(w.flow.clone().serve(back.clone(), quick_retries(), stop.clone()));
    let Message::User(got) = w.next(&RoutingKey::inbound(&app)).await else { panic!("a user message") };
    assert_eq!(got.message_id, inbound.message_id);
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_router_writing_origin_keys_cannot_misdirect_events() {
    let engine = Engine::new(&EngineSettings::default()).unwrap();
    let w = wiring();
    // One store for the router's own kv and the dispatcher's origins, as in the host.
    let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let r =
        router(&engine, "faulty-router", "x", serde_json::json!({ "write_origin_key": true }), store.clone())
            .await;
    let origins = Arc::new(Namespaced::new(store.clone(), Namespace::origins("router", "x")));
    let d = w.dispatcher(r, "sms", "app", origins);
    w.route(&[&d]);
    let (sms, app) = (name("sms"), name("app"));

    let inbound = UserMessage::inbound("sms", "sms", "+27820000001", "1234", Some("hello".into()), None);
    let reply = inbound.reply(Some("hi".into()), false);
    w.flow.publish(&RoutingKey::outbound(&app), reply.clone().into()).await.unwrap();
    let router_kv = Namespaced::new(store, Namespace::plugin("router", "x"));
    let key = format!("origin:{}", reply.message_id);
    assert_eq!(
        router_kv.get(&key).await.unwrap().as_deref(),
        Some(&b"clobbered"[..]),
        "the router wrote its key"
    );

    w.flow.publish(&RoutingKey::event(&sms), Event::ack(&reply.message_id, "smsc-1").into()).await.unwrap();
    let Message::Event(ack) = w.next(&RoutingKey::event(&app)).await else { panic!("an event") };
    assert_eq!(ack.user_message_id, reply.message_id, "the ack found the app that sent the message");
    assert_eq!(w.failures.total(), 0, "{:?}", w.failures.recent());
}
