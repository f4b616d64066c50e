//! An idle host's resident memory and start time with 1, 100, 1,000 and 10,000 tenants, each
//! with one small app (echo, pooled, concurrency 1) on a transport of its own (`sink`: no
//! socket), with a warm compiled-component cache.
//!
//! Each row starts `vumi run` as its own process (the figures are that process's alone), times
//! it from spawn to its `vumi: ready` line, lets it idle for `VUMI_BENCH_IDLE_MS` (default
//! 2,000), then reads `VmRSS` (resident now) and `VmHWM` (peak) from `/proc/<pid>/status`. The
//! first row is preceded by an untimed start that fills the cache.
//!
//! `cargo bench -p vumi-host --bench tenants`; `VUMI_BENCH_TENANTS=1,100,1000` picks rows.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

fn config(n: usize, echo: &Path, cache: &Path) -> String {
    let mut c = format!("[plugins]\nwatch = true\ncache_dir = \"{}\"\n", cache.display());
    for i in 0..n {
        c.push_str(&format!(
            "[transports.t{i}]\nkind = \"sink\"\n[tenants.t{i}]\ntransports = [\"t{i}\"]\n[tenants.t{i}.apps.echo]\nplugin = \"{}\"\nconnector = \"t{i}\"\nconcurrency = 1\n",
            echo.display()
        ));
    }
    c
}

/// Start a host on `path`; the time to its ready line, and its memory after idling.
fn run(path: &Path, idle: Duration) -> (Duration, u64, u64) {
    let host = common::HostProc::start(path, "warn", Stdio::inherit());
    std::thread::sleep(idle);
    (host.ready_after, host.status_kib("VmRSS"), host.status_kib("VmHWM"))
}

fn main() {
    let rows: Vec<usize> = std::env::var("VUMI_BENCH_TENANTS")
        .unwrap_or_else(|_| "1,100,1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let idle = Duration::from_millis(
        std::env::var("VUMI_BENCH_IDLE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000),
    );
    let echo = common::plugin_path("echo");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .join("target")
        .join("bench-tenants");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let cache = dir.join("cache");
    // Warm the cache (every tenant runs the same component: one entry).
    let warm = dir.join("warm.toml");
    std::fs::write(&warm, config(1, &echo, &cache)).expect("write config");
    run(&warm, Duration::ZERO);
    println!("| tenants | start to ready | resident (idle) | peak resident | resident per tenant |");
    println!("|---:|---:|---:|---:|---:|");
    for n in rows {
        let path = dir.join(format!("tenants-{n}.toml"));
        std::fs::write(&path, config(n, &echo, &cache)).expect("write config");
        let (ready, rss, hwm) = run(&path, idle);
        println!(
            "| {n} | {:.2} s | {:.1} MiB | {:.1} MiB | {:.1} KiB |",
            ready.as_secs_f64(),
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0,
            rss as f64 / n as f64
        );
    }
}
