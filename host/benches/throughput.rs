//! Messages per second through the embedded bus into an echo app and back out, for:
//! - the echo logic as native Rust (the baseline: same bus, same worker, no sandbox),
//! - the echo plugin as a WASM component with pooled instances,
//! - the same plugin with a fresh instance per message,
//! - the pooled plugin behind the keyword router (a dispatcher between the transport connector
//!   and the app's), to see what one router in the path costs against direct wiring: routed at
//!   publish as the host does, and through the dispatcher's queues;
//! - the same wirings with the survey app (kv read and write per message), the cost of a
//!   router beside a campaign app rather than beside the cheapest app there is.
//!
//! Run: `cargo bench -p vumi-host --bench throughput` (builds the plugins first if needed).
//! The figure that matters is the ratio to the native baseline measured in the same run: this
//! machine is shared and noisy, absolute numbers drift.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::plugin_path;
use tokio_util::sync::CancellationToken;
use vumi_host::bus::{Bus, EmbeddedBus, RoutingKey};
use vumi_host::config::RetryPolicy;
use vumi_host::message::{Event, Message, SessionEvent, UserMessage};
use vumi_host::names::ConnectorName;
use vumi_host::plugins::{
    AppPlugin, AppSlot, Engine, EngineSettings, HandlerFailure, InstancePolicy, Limits, RouterPlugin,
    RouterSlot, Settings,
};
use vumi_host::state::{KvStore, MemoryStore, Namespace, Namespaced};
use vumi_host::workers::dispatcher::Dispatcher;
use vumi_host::workers::events::Origins;
use vumi_host::workers::flow::Flow;
use vumi_host::workers::{AppWorker, AppWorkerParts, FailureLog, Handler};

/// The echo plugin's logic, natively.
struct NativeEcho;

#[async_trait]
impl Handler for NativeEcho {
    fn name(&self) -> &str {
        "native-echo"
    }
    async fn handle_user_message(&self, msg: Arc<UserMessage>) -> Result<Vec<UserMessage>, HandlerFailure> {
        Ok(vec![msg.reply(msg.content.clone(), false)])
    }
    async fn handle_event(&self, _event: Arc<Event>) -> Result<Vec<UserMessage>, HandlerFailure> {
        Ok(Vec::new())
    }
}

/// What the simulated users type: anything for the echo app; for the survey, a valid answer
/// (`1`), so every message moves a user's survey on (read state, write state, next question).
#[derive(Clone, Copy)]
enum Typing {
    Anything,
    Answers,
}

/// How the router row is wired.
#[derive(Clone, Copy)]
enum Routing {
    /// As the host runs it: routed inside `publish` (the dispatcher's consumer runs too, idle).
    AtPublish,
    /// Every message through the dispatcher's input queues, as one published by another process
    /// on RabbitMQ would be.
    Queued,
}

/// Publish `n` messages from `users` distinct senders and time until `n` replies are out.
/// With `router`, the app sits behind it on its own connector; without, on the transport's.
/// Everything publishes through the flow (no chains), as in the host.
async fn run(
    handler: Arc<dyn Handler>,
    router: Option<(Arc<RouterSlot>, Routing)>,
    n: usize,
    concurrency: usize,
    users: usize,
) -> f64 {
    run_typing(handler, router, n, concurrency, users, Typing::Anything).await
}

async fn run_typing(
    handler: Arc<dyn Handler>,
    router: Option<(Arc<RouterSlot>, Routing)>,
    n: usize,
    concurrency: usize,
    users: usize,
    typing: Typing,
) -> f64 {
    let failures = Arc::new(FailureLog::new(10, None).expect("failure log"));
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new());
    let flow = Arc::new(Flow::new(bus.clone(), failures.clone()));
    let connector: ConnectorName = "bench".parse().expect("name");
    let stop = CancellationToken::new();
    let app_connector: ConnectorName =
        if router.is_some() { "app".parse().expect("name") } else { connector.clone() };
    let worker = AppWorker::new(AppWorkerParts {
        handler,
        bus: bus.clone(),
        publish: flow.clone(),
        connector: app_connector.clone(),
        failures: failures.clone(),
        concurrency,
        retry: RetryPolicy::default(),
        sequencer: None,
        rates: None,
    });
    let w = tokio::spawn(worker.run(stop.clone()));
    let d = router.map(|(r, routing)| {
        let origins = Arc::new(Origins::new(Arc::new(MemoryStore::new()), Duration::from_secs(3600)));
        let transports = vec![connector.clone()];
        let dispatcher = Arc::new(Dispatcher::new(r, transports, vec![app_connector], origins));
        if let Routing::AtPublish = routing {
            flow.set_dispatchers(dispatcher.inputs().into_iter().map(|k| (k, dispatcher.clone())).collect());
        }
        tokio::spawn(flow.clone().serve(dispatcher, RetryPolicy::default(), stop.clone()))
    });
    // Let the consumers subscribe before the first publish.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut sink = bus.consume(&RoutingKey::outbound(&connector), 1000).await.expect("consume");
    let inbound = RoutingKey::inbound(&connector);
    let msgs: Vec<Message> = (0..n)
        .map(|i| {
            Message::from(UserMessage::inbound(
                "bench",
                "telnet",
                format!("127.0.0.1:{}", 10_000 + i % users),
                "127.0.0.1:9010",
                Some(match typing {
                    Typing::Anything => format!("message number {i}"),
                    Typing::Answers => "1".to_owned(),
                }),
                Some(SessionEvent::Resume),
            ))
        })
        .collect();
    // `VUMI_BENCH_PUBLISHERS` (default 1) publishers share the messages, as a host's many
    // connections and HTTP requests publish at once.
    let publishers: usize =
        std::env::var("VUMI_BENCH_PUBLISHERS").ok().and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
    let mut batches: Vec<Vec<Message>> =
        (0..publishers).map(|_| Vec::with_capacity(n / publishers + 1)).collect();
    for (i, m) in msgs.into_iter().enumerate() {
        batches[i % publishers].push(m);
    }
    let start = Instant::now();
    let publishers: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            let (flow, inbound) = (flow.clone(), inbound.clone());
            tokio::spawn(async move {
                for m in batch {
                    flow.publish(&inbound, m).await.expect("publish");
                }
            })
        })
        .collect();
    for _ in 0..n {
        let d = tokio::time::timeout(Duration::from_secs(60), sink.next())
            .await
            .expect("reply in time")
            .expect("open");
        d.ack();
    }
    let elapsed = start.elapsed();
    for p in publishers {
        p.await.expect("publisher");
    }
    stop.cancel();
    let _ = w.await;
    if let Some(d) = d {
        let _ = d.await;
    }
    assert_eq!(failures.total(), 0, "no message may fail in a benchmark run");
    n as f64 / elapsed.as_secs_f64()
}

async fn load_echo(engine: &Engine, policy: InstancePolicy) -> Arc<dyn Handler> {
    let path = echo_path();
    let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let settings = Settings {
        name: "echo".into(),
        policy,
        limits: Limits {
            deadline: Duration::from_millis(500),
            max_memory_bytes: 64 << 20,
            max_sends: 16,
            ..Limits::default()
        },
        kv: Namespaced::new(store, Namespace::plugin("app", "echo")),
        config: Default::default(),
        endpoints: vec!["default".into()],
    };
    // In a slot, as the host runs it: one atomic load per message picks the current version.
    Arc::new(AppSlot::new(AppPlugin::load(engine, &path, settings).await.expect("load echo.wasm")))
}

/// The survey app (`plugins/survey`) with the three questions of `config/vumi.toml`: each
/// message reads the user's place in the survey from kv and writes the next one.
async fn load_survey(engine: &Engine) -> Arc<dyn Handler> {
    let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let config = serde_json::json!({
        "title": "Vumi survey",
        "session_ttl_seconds": 600,
        "questions": [
            {"prompt": "How did you hear about us?", "options": ["Radio", "A friend", "SMS", "Other"]},
            {"prompt": "How old are you?", "options": ["Under 18", "18-35", "36-60", "Over 60"]},
            {"prompt": "Would you recommend this service?", "options": ["Yes", "No", "Not sure"]},
        ],
    });
    let settings = Settings {
        name: "survey".into(),
        policy: InstancePolicy::Pooled { max_messages: 1_000_000, max_age: Duration::from_secs(3600) },
        limits: Limits {
            deadline: Duration::from_millis(500),
            max_memory_bytes: 64 << 20,
            max_sends: 16,
            ..Limits::default()
        },
        kv: Namespaced::new(store, Namespace::plugin("app", "survey")),
        config: config.as_object().expect("an object").clone(),
        endpoints: vec!["default".into()],
    };
    let plugin = AppPlugin::load(engine, &plugin_path("survey"), settings).await.expect("load survey.wasm");
    Arc::new(AppSlot::new(plugin))
}

/// The keyword router with everything going to connector `app`.
async fn load_router(engine: &Engine) -> Arc<RouterSlot> {
    let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let mut config = serde_json::Map::new();
    config.insert("default".into(), "app".into());
    let settings = Settings {
        name: "keywords".into(),
        policy: InstancePolicy::Pooled { max_messages: 1_000_000, max_age: Duration::from_secs(3600) },
        limits: Limits {
            deadline: Duration::from_millis(100),
            max_memory_bytes: 32 << 20,
            max_sends: 0,
            ..Limits::default()
        },
        kv: Namespaced::new(store, Namespace::plugin("router", "keywords")),
        config,
        endpoints: Vec::new(),
    };
    Arc::new(RouterSlot::new(
        RouterPlugin::load(engine, &plugin_path("keyword-router"), settings)
            .await
            .expect("load keyword-router.wasm"),
    ))
}

/// `plugins/echo`, or the component `VUMI_BENCH_ECHO` names (to compare another build of echo,
/// e.g. one with fewer calls across the boundary, in the same harness).
fn echo_path() -> std::path::PathBuf {
    std::env::var_os("VUMI_BENCH_ECHO").map_or_else(|| plugin_path("echo"), std::path::PathBuf::from)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    // `VUMI_BENCH_THREADS` (default: one per core) sets the runtime's worker threads, to tell
    // what crossing cores costs from what the path itself costs.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(t) = std::env::var("VUMI_BENCH_THREADS").ok().and_then(|s| s.parse().ok()) {
        builder.worker_threads(t);
    }
    let rt = builder.enable_all().build().expect("runtime");
    let n: usize = std::env::var("VUMI_BENCH_MESSAGES").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let rounds = 5;
    let concurrency = 2;
    let users = 1000;
    rt.block_on(async {
        let engine = Engine::new(&EngineSettings::default()).expect("engine");
        let native: Arc<dyn Handler> = Arc::new(NativeEcho);
        let pooled = load_echo(&engine, InstancePolicy::Pooled { max_messages: 1_000_000, max_age: Duration::from_secs(3600) }).await;
        let fresh = load_echo(&engine, InstancePolicy::Fresh).await;
        let router = load_router(&engine).await;
        let survey = load_survey(&engine).await;
        // Warm up each path once (allocator, instance pool, caches).
        for h in [&native, &pooled, &fresh] {
            run(h.clone(), None, 5_000, concurrency, users).await;
        }
        let at_publish = Some((router.clone(), Routing::AtPublish));
        let queued = Some((router.clone(), Routing::Queued));
        for r in [None, at_publish.clone(), queued.clone()] {
            run(pooled.clone(), r.clone(), 5_000, concurrency, users).await;
            run_typing(survey.clone(), r, 5_000, concurrency, users, Typing::Answers).await;
        }
        // `VUMI_BENCH_PROFILE=<path>` runs only that path, once, for `perf record` (and for
        // host/benches/experiments/router-ceiling.sh).
        if let Ok(path) = std::env::var("VUMI_BENCH_PROFILE") {
            let answers = |r| run_typing(survey.clone(), r, n, concurrency, users, Typing::Answers);
            let r = match path.as_str() {
                "native" => run(native.clone(), None, n, concurrency, users).await,
                "direct" => run(pooled.clone(), None, n, concurrency, users).await,
                "fresh" => run(fresh.clone(), None, n, concurrency, users).await,
                "router" => run(pooled.clone(), at_publish, n, concurrency, users).await,
                "router-queued" => run(pooled.clone(), queued, n, concurrency, users).await,
                "survey-direct" => answers(None).await,
                "survey-router" => answers(at_publish).await,
                "survey-router-queued" => answers(queued).await,
                other => panic!(
                    "VUMI_BENCH_PROFILE must be one of native, direct, fresh, router, router-queued, survey-direct, survey-router, survey-router-queued; not `{other}`"
                ),
            };
            println!("{path}: {r:.0} messages/s");
            // What each plugin call took inside the path, from the host's own histogram.
            for line in vumi_host::telemetry::metrics::metrics().render().lines() {
                if line.starts_with("vumi_handler_seconds_sum") || line.starts_with("vumi_handler_seconds_count") {
                    println!("{line}");
                }
            }
            return;
        }
        // Interleave rounds so drift on a shared machine hits every path alike.
        let mut runs: [Vec<f64>; 8] = Default::default();
        for _ in 0..rounds {
            runs[0].push(run(native.clone(), None, n, concurrency, users).await);
            runs[1].push(run(pooled.clone(), None, n, concurrency, users).await);
            runs[2].push(run(fresh.clone(), None, n, concurrency, users).await);
            runs[3].push(run(pooled.clone(), at_publish.clone(), n, concurrency, users).await);
            runs[4].push(run(pooled.clone(), queued.clone(), n, concurrency, users).await);
            let answers = |r| run_typing(survey.clone(), r, n, concurrency, users, Typing::Answers);
            runs[5].push(answers(None).await);
            runs[6].push(answers(at_publish.clone()).await);
            runs[7].push(answers(queued.clone()).await);
        }
        let [n_, p, f, r, rq, s_d, s_r, s_rq] = runs.map(median);
        println!("messages per run: {n}, rounds: {rounds} (median), worker lanes: {concurrency}, distinct users: {users}");
        println!("| path | messages/s | vs native |");
        println!("|---|---:|---:|");
        println!("| native Rust echo (baseline) | {n_:.0} | 1.00 |");
        println!("| WASM echo, pooled instances | {p:.0} | {:.2} |", p / n_);
        println!("| WASM echo, fresh instance per message | {f:.0} | {:.2} |", f / n_);
        for (app, direct, routed, queued) in [("echo", p, r, rq), ("survey: kv read and write per message", s_d, s_r, s_rq)] {
            println!();
            println!("| wiring (WASM {app}, pooled) | messages/s | vs direct |");
            println!("|---|---:|---:|");
            println!("| direct: transport connector -> app (baseline) | {direct:.0} | 1.00 |");
            println!("| keyword router (WASM), routed at publish (as the host runs it) | {routed:.0} | {:.2} |", routed / direct);
            println!("| keyword router (WASM), through the dispatcher's queues | {queued:.0} | {:.2} |", queued / direct);
        }
    });
}
