//! Routing at publish time, in process (the rest of dispatch is tested through the binary in
//! `dispatch.rs`): a message published on a dispatcher's input is routed inside `publish`; one
//! that cannot be routed now waits on the queue for the dispatcher's consumer; and a message one
//! dispatcher routes into another's input waits on that queue instead of recursing.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use vumi_host::bus::{Bus, EmbeddedBus, RoutingKey};
use vumi_host::message::{Event, Message, UserMessage};
use vumi_host::names::ConnectorName;
use vumi_host::plugins::{AppLimits, AppSettings, Engine, EngineSettings, InstancePolicy, Plugin, PluginSlot};
use vumi_host::state::{KvStore, MemoryStore, Namespaced, StateError};
use vumi_host::workers::FailureLog;
use vumi_host::workers::dispatcher::Dispatcher;
use vumi_host::workers::events::Origins;
use vumi_host::workers::middleware::{Chains, MiddlewareBus, Routes};

use crate::common::plugin;

fn name(s: &str) -> ConnectorName {
    s.parse().unwrap()
}

/// The keyword router sending everything to `app`.
async fn keyword_router(engine: &Engine, app: &str) -> Arc<PluginSlot> {
    let mut config = serde_json::Map::new();
    config.insert("default".into(), app.into());
    let settings = AppSettings {
        name: "keywords".into(),
        policy: InstancePolicy::Pooled { max_messages: 1000, max_age: Duration::from_secs(60) },
        limits: AppLimits { deadline: Duration::from_millis(500), max_memory_bytes: 32 << 20, max_sends: 0 },
        kv: Namespaced::new(Arc::new(MemoryStore::new()), "router"),
        config,
        endpoints: Vec::new(),
    };
    Arc::new(PluginSlot::new(Plugin::load_router(engine, &plugin("keyword-router"), settings).await.unwrap()))
}

/// A state store that is down: what makes a dispatcher set a message aside for later.
struct Down;

#[async_trait]
impl KvStore for Down {
    async fn get(&self, _: &str) -> Result<Option<Vec<u8>>, StateError> {
        Err(StateError::Unavailable("down for the test".into()))
    }
    async fn set(&self, _: &str, _: &[u8], _: Option<Duration>) -> Result<(), StateError> {
        Err(StateError::Unavailable("down for the test".into()))
    }
    async fn delete(&self, _: &str) -> Result<bool, StateError> {
        Err(StateError::Unavailable("down for the test".into()))
    }
    async fn incr(&self, _: &str, _: i64) -> Result<i64, StateError> {
        Err(StateError::Unavailable("down for the test".into()))
    }
}

struct Wiring {
    raw: Arc<EmbeddedBus>,
    bus: Arc<MiddlewareBus>,
    failures: Arc<FailureLog>,
}

fn wiring() -> Wiring {
    let raw = Arc::new(EmbeddedBus::new());
    let failures = Arc::new(FailureLog::new(10, None).unwrap());
    let bus = Arc::new(MiddlewareBus::new(raw.clone(), Chains::new(), failures.clone()));
    Wiring { raw, bus, failures }
}

impl Wiring {
    /// A dispatcher between `transport` and `app`, routed at publish time (its consumer not
    /// started: anything it routes, it routed inside `publish`).
    fn dispatcher(&self, router: Arc<PluginSlot>, transport: &str, app: &str, origins: Arc<dyn KvStore>) -> Arc<Dispatcher> {
        let origins = Arc::new(Origins::new(origins, Duration::from_secs(60)));
        Arc::new(Dispatcher::new(router, self.bus.queued(), vec![name(transport)], vec![name(app)], origins, self.failures.clone()))
    }
}

fn routes(dispatchers: &[&Arc<Dispatcher>]) -> Routes {
    dispatchers.iter().flat_map(|d| d.inputs().into_iter().map(|k| (k, (*d).clone()))).collect()
}

#[tokio::test]
async fn a_message_for_a_dispatcher_is_routed_inside_publish_and_its_events_find_home() {
    let engine = Engine::new(&EngineSettings::default()).unwrap();
    let w = wiring();
    let d = w.dispatcher(keyword_router(&engine, "app").await, "sms", "app", Arc::new(MemoryStore::new()));
    w.bus.set_routes(routes(&[&d]));
    let (sms, app) = (name("sms"), name("app"));

    let inbound = UserMessage::inbound("sms", "sms", "+27820000001", "1234", Some("hello".into()), None);
    w.bus.publish(&RoutingKey::inbound(&sms), Message::User(inbound.clone())).await.unwrap();
    assert_eq!(w.raw.depth(&RoutingKey::inbound(&sms)), 0, "nothing waits on the dispatcher's queue");
    assert_eq!(w.raw.depth(&RoutingKey::inbound(&app)), 1, "the app's queue has it");

    let reply = inbound.reply(Some("hi".into()), false);
    w.bus.publish(&RoutingKey::outbound(&app), Message::User(reply.clone())).await.unwrap();
    assert_eq!(w.raw.depth(&RoutingKey::outbound(&sms)), 1, "the reply leaves by the transport it came in on");

    // The reply's origin was recorded on the way out, so its ack goes back to the app.
    w.bus.publish(&RoutingKey::event(&sms), Message::Event(Event::ack(&reply.message_id, "smsc-1"))).await.unwrap();
    assert_eq!(w.raw.depth(&RoutingKey::event(&app)), 1);
    assert_eq!(w.failures.total(), 0);
}

#[tokio::test]
async fn a_message_that_cannot_be_routed_now_waits_on_the_queue_for_the_dispatcher() {
    let engine = Engine::new(&EngineSettings::default()).unwrap();
    let w = wiring();
    // Outbound routing records the message's origin first; with the store down it cannot.
    let d = w.dispatcher(keyword_router(&engine, "app").await, "sms", "app", Arc::new(Down));
    w.bus.set_routes(routes(&[&d]));
    let (sms, app) = (name("sms"), name("app"));

    let inbound = UserMessage::inbound("sms", "sms", "+27820000001", "1234", Some("hello".into()), None);
    let reply = inbound.reply(Some("hi".into()), false);
    w.bus.publish(&RoutingKey::outbound(&app), Message::User(reply.clone())).await.unwrap();
    assert_eq!(w.raw.depth(&RoutingKey::outbound(&app)), 1, "set aside on the dispatcher's queue, not lost");
    assert_eq!(w.raw.depth(&RoutingKey::outbound(&sms)), 0);
    assert_eq!(w.failures.total(), 0, "a back end that is down is not the message's fault");

    // The dispatcher's consumer keeps retrying it from the queue.
    let stop = CancellationToken::new();
    let task = tokio::spawn(d.clone().run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(w.raw.depth(&RoutingKey::outbound(&sms)), 0, "still not sent while the store is down");
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_message_routed_into_another_dispatchers_input_waits_on_its_queue() {
    let engine = Engine::new(&EngineSettings::default()).unwrap();
    let w = wiring();
    // `front` routes sms → middle; `back` routes middle → app. Chained, or (with a config
    // mistake) a loop: each hop after the first is queued, never a publish within a publish.
    let front = w.dispatcher(keyword_router(&engine, "middle").await, "sms", "middle", Arc::new(MemoryStore::new()));
    let back = w.dispatcher(keyword_router(&engine, "app").await, "middle", "app", Arc::new(MemoryStore::new()));
    w.bus.set_routes(routes(&[&front, &back]));
    let (sms, middle, app) = (name("sms"), name("middle"), name("app"));

    let inbound = UserMessage::inbound("sms", "sms", "+27820000001", "1234", Some("hello".into()), None);
    w.bus.publish(&RoutingKey::inbound(&sms), Message::User(inbound)).await.unwrap();
    assert_eq!(w.raw.depth(&RoutingKey::inbound(&middle)), 1, "the second dispatcher's queue has it");
    assert_eq!(w.raw.depth(&RoutingKey::inbound(&app)), 0);

    // The second dispatcher's consumer takes it from there.
    let stop = CancellationToken::new();
    let task = tokio::spawn(back.clone().run(stop.clone()));
    for _ in 0..100 {
        if w.raw.depth(&RoutingKey::inbound(&app)) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(w.raw.depth(&RoutingKey::inbound(&app)), 1);
    stop.cancel();
    task.await.unwrap().unwrap();
}
