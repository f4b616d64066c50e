//! Hot reload and restart, measured end to end through the library:
//!
//! 1. **Swap**: time from a new version's file landing (write + rename) to the first message
//!    answered by it, through the file watcher, for a small component and a large one. The
//!    baseline, measured in the same run, is loading the same component directly (compile +
//!    first instance): the ratio is what watching, debouncing and swapping add.
//! 2. **Restart with 50 plugins**: `supervisor::start` on a config of 50 apps (50 distinct
//!    components), with an empty compiled-component cache (cold) and then with the cache it
//!    left (warm).
//!
//! Run: `cargo bench -p vumi-host --bench reload`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::plugin_path;
use tokio_util::sync::CancellationToken;
use vumi_host::config::Config;
use vumi_host::message::{SessionEvent, UserMessage};
use vumi_host::plugins::{
    AppPlugin, AppSlot, Engine, EngineSettings, InstancePolicy, Limits, Registry, Settings, Watcher,
};
use vumi_host::state::{KvStore, MemoryStore, Namespace, Namespaced};

/// `name`.wasm with its `VERSION-00` marker patched to version `n`: a distinct component.
fn version(name: &str, n: u32) -> Vec<u8> {
    let mut bytes = std::fs::read(plugin_path(name)).expect("read plugin");
    let at = bytes.windows(10).position(|w| w == b"VERSION-00").expect("version marker");
    bytes[at..at + 10].copy_from_slice(format!("VERSION-{n:02}").as_bytes());
    bytes
}

fn settings(store: &Arc<dyn KvStore>) -> Settings {
    Settings {
        name: "app".into(),
        policy: InstancePolicy::Pooled { max_messages: u32::MAX, max_age: Duration::from_secs(3600) },
        limits: Limits {
            deadline: Duration::from_millis(500),
            max_memory_bytes: 64 << 20,
            max_sends: 4,
            ..Limits::default()
        },
        kv: Namespaced::new(store.clone(), Namespace::plugin("app", "app")),
        config: Default::default(),
        endpoints: vec!["default".into()],
    }
}

fn stats(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn swap(name: &str, label: &str) {
    let dir = std::env::temp_dir().join(format!("vumi-bench-reload-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let wasm = dir.join("app.wasm");
    std::fs::write(&wasm, version(name, 0)).expect("write");
    let engine = Engine::new(&EngineSettings::default()).expect("engine");
    let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());

    // Baseline: load a new version directly, as the watcher's reload does after the debounce.
    let mut direct = Vec::new();
    for n in 50..55 {
        let path = dir.join(format!("direct-{n}.wasm"));
        std::fs::write(&path, version(name, n)).expect("write");
        let t = Instant::now();
        let _p = AppPlugin::load(&engine, &path, settings(&store)).await.expect("load");
        direct.push(t.elapsed());
    }

    let slot = Arc::new(AppSlot::new(AppPlugin::load(&engine, &wasm, settings(&store)).await.expect("load")));
    let registry = Arc::new(Registry::new());
    registry.insert("app".into(), slot.clone());
    let stop = CancellationToken::new();
    let _watcher = Watcher::start(registry, Duration::from_millis(50), stop.clone()).expect("watch");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let msg = Arc::new(UserMessage::inbound(
        "bench",
        "telnet",
        "u",
        "app",
        Some("ping".into()),
        Some(SessionEvent::Resume),
    ));
    let mut visible = Vec::new();
    for n in 1..=10 {
        let bytes = version(name, n);
        let want = format!("VERSION-{n:02}");
        let tmp = dir.join("app.wasm.part");
        std::fs::write(&tmp, &bytes).expect("write");
        let t0 = Instant::now();
        std::fs::rename(&tmp, &wasm).expect("rename");
        loop {
            let sends = slot.current().handle_user_message(msg.clone()).await.expect("answer");
            if sends[0].content.as_deref().is_some_and(|c| c.starts_with(&want)) {
                visible.push(t0.elapsed());
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "version {n} never answered");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    stop.cancel();
    let size = std::fs::metadata(&wasm).expect("size").len();
    let (d_med, _, _) = stats(direct);
    let (v_med, v_min, v_max) = stats(visible);
    println!(
        "| {label} ({:.2} MB) | {} (min {}, max {}) | {} | {:.2} |",
        size as f64 / 1e6,
        ms(v_med),
        ms(v_min),
        ms(v_max),
        ms(d_med),
        v_med.as_secs_f64() / d_med.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

async fn restart(plugins: usize) {
    let dir = std::env::temp_dir().join(format!("vumi-bench-restart-{}", std::process::id()));
    let cache = dir.join("cache");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut config = format!("[plugins]\nwatch = false\ncache_dir = \"{}\"\n", cache.display());
    for i in 0..plugins {
        let path = dir.join(format!("app{i}.wasm"));
        std::fs::write(&path, version("versioned", i as u32)).expect("write");
        config.push_str(&format!(
            "\n[transports.c{i}]\nkind = \"sink\"\n\n[apps.app{i}]\nplugin = \"{}\"\nconnector = \"c{i}\"\n",
            path.display()
        ));
    }
    let config = Config::from_toml(&config, &dir.join("vumi.toml")).expect("config");
    let start = || async {
        let t = Instant::now();
        let host = vumi_host::supervisor::start(&config).await.expect("start");
        let took = t.elapsed();
        host.shutdown(Duration::from_secs(5)).await;
        took
    };
    let _ = std::fs::remove_dir_all(&cache);
    let cold = start().await;
    let mut warm = Vec::new();
    for _ in 0..3 {
        warm.push(start().await);
    }
    let (w_med, w_min, w_max) = stats(warm);
    println!(
        "| {plugins} apps | {} | {} (min {}, max {}) | {:.3} |",
        ms(cold),
        ms(w_med),
        ms(w_min),
        ms(w_max),
        w_med.as_secs_f64() / cold.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        println!(
            "Swap: file renamed into place -> first message answered by the new version (10 swaps each)\n"
        );
        println!(
            "| component | swap visible (median) | baseline: load directly (median of 5) | swap / baseline |"
        );
        println!("|---|---|---|---|");
        swap("versioned", "small").await;
        swap("versioned-large", "large").await;
        println!(
            "\nRestart: supervisor::start, cold (empty compiled-component cache) vs warm (median of 3)\n"
        );
        println!("| plugins | cold start | warm start | warm / cold |");
        println!("|---|---|---|---|");
        restart(50).await;
    });
}
