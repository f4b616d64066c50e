//! What one plugin call costs, on one thread with no bus: the keyword router's `route-inbound`
//! and the echo app's `handle-user-message`, each on a pooled instance, in a loop.
//!
//! Run: `cargo bench -p vumi-host --bench callcost`. The throughput benchmark shows what a call
//! costs inside the whole path; this shows the call alone, for work on the plugin runtime.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::plugin_path;
use vumi_host::message::{SessionEvent, UserMessage};
use vumi_host::plugins::{AppPlugin, Engine, EngineSettings, InstancePolicy, Limits, RouterPlugin, Settings};
use vumi_host::state::{KvStore, MemoryStore, Namespace, Namespaced};

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let engine = Engine::new(&EngineSettings::default()).expect("engine");
        let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
        let settings = |name: &'static str, config| Settings {
            name: name.into(),
            policy: InstancePolicy::Pooled { max_messages: u32::MAX, max_age: Duration::from_secs(3600) },
            limits: Limits { deadline: Duration::from_millis(100), max_memory_bytes: 32 << 20, max_sends: 4, ..Limits::default() },
            kv: Namespaced::new(store.clone(), Namespace::plugin("bench", name)),
            config,
            endpoints: vec!["default".into()],
        };
        let mut config = serde_json::Map::new();
        config.insert("default".into(), "app".into());
        let router = RouterPlugin::load(&engine, &plugin_path("keyword-router"), settings("router", config)).await.expect("router");
        let echo = AppPlugin::load(&engine, &plugin_path("echo"), settings("echo", Default::default())).await.expect("echo");
        let msg = UserMessage::inbound("bench", "telnet", "127.0.0.1:1", "127.0.0.1:9010", Some("hello there".into()), Some(SessionEvent::Resume));
        let shared = Arc::new(msg.clone());
        let n = 200_000;
        // First pass warms up; the second is reported.
        let (mut r, mut e) = (0.0, 0.0);
        for _ in 0..2 {
            let t = Instant::now();
            for _ in 0..n {
                router.route_inbound(shared.clone(), "bench").await.expect("route");
            }
            r = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
            let t = Instant::now();
            for _ in 0..n {
                echo.handle_user_message(shared.clone()).await.expect("echo");
            }
            e = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
        }
        // The same calls with 4 MiB of other memory touched between them, as the rest of a
        // message's path does in the host: how much of a call in the path is cold caches.
        let mut other = vec![0u8; 4 << 20];
        let cold = |other: &mut Vec<u8>| {
            for i in (0..other.len()).step_by(64) {
                other[i] = other[i].wrapping_add(1);
            }
        };
        let (mut rc, mut ec, mut flush) = (0.0, 0.0, 0.0);
        let m = n / 10;
        for _ in 0..2 {
            let t = Instant::now();
            for _ in 0..m {
                cold(&mut other);
            }
            flush = t.elapsed().as_secs_f64() * 1e6 / f64::from(m);
            let t = Instant::now();
            for _ in 0..m {
                cold(&mut other);
                router.route_inbound(shared.clone(), "bench").await.expect("route");
            }
            rc = t.elapsed().as_secs_f64() * 1e6 / f64::from(m) - flush;
            let t = Instant::now();
            for _ in 0..m {
                cold(&mut other);
                echo.handle_user_message(shared.clone()).await.expect("echo");
            }
            ec = t.elapsed().as_secs_f64() * 1e6 / f64::from(m) - flush;
        }
        std::hint::black_box(&other);
        println!("calls per export: {n}, one thread, pooled instances");
        println!("| call | µs per call |");
        println!("|---|---:|");
        println!("| keyword router `route-inbound` | {r:.2} |");
        println!("| echo app `handle-user-message` (reply built by the host) | {e:.2} |");
        println!("| keyword router, caches cold (4 MiB touched between calls, its {flush:.2} µs taken out) | {rc:.2} |");
        println!("| echo app, caches cold (likewise) | {ec:.2} |");
    });
}
