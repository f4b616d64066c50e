//! The noisy neighbour: tenant B's echo app serving a closed-loop load while tenant A's app runs
//! an endless loop, a memory bomb and a reply storm over and over, beside the same load with A
//! idle, in alternating rounds of one run.
//!
//! One `vumi run` process (two tenants, each its own telnet transport; A's limits: 200 ms CPU
//! deadline, 32 MiB; its CPU limits at their defaults unless `VUMI_BENCH_A_CPU` sets
//! `cpu_ms_per_sec` or `VUMI_BENCH_A_BACKGROUND` sets `background_cpu_ms_per_sec`). B's load is
//! `VUMI_BENCH_CONNS` (default 32) telnet sessions, each sending a line and waiting for its echo;
//! A's attack is three sessions, each sending `loop`, `hog` or `storm` then `ping`, waiting for
//! `ok: ping` (the attack's message fails; the marker shows A's lane is free again), and again.
//! Each round lasts `VUMI_BENCH_SECS` (default 5); `VUMI_BENCH_ROUNDS` (default 3) of each kind,
//! interleaved; medians reported.
//!
//! `cargo bench -p vumi-host --bench noisy`

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Session {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    line: String,
}

impl Session {
    async fn open(addr: SocketAddr) -> Session {
        let (r, w) = TcpStream::connect(addr).await.expect("connect").into_split();
        let mut s = Session { reader: BufReader::new(r), writer: w, line: String::new() };
        s.next_line().await; // the app's greeting
        s
    }

    async fn next_line(&mut self) -> &str {
        self.line.clear();
        let n = self.reader.read_line(&mut self.line).await.expect("read");
        assert!(n > 0, "the host closed a session");
        self.line.trim()
    }

    async fn send(&mut self, text: &str) {
        self.writer.write_all(format!("{text}\r\n").as_bytes()).await.expect("write");
    }
}

/// B's sessions for `secs`: answers per second and the p99 answer time.
async fn load_b(addr: SocketAddr, conns: usize, secs: u64) -> (f64, Duration) {
    let stop = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..conns {
        tasks.push(tokio::spawn(async move {
            let mut s = Session::open(addr).await;
            let mut times = Vec::new();
            let mut i = 0u64;
            while Instant::now() < stop {
                let text = format!("b{c}-{i}");
                let t = Instant::now();
                s.send(&text).await;
                let got = s.next_line().await.to_owned();
                assert_eq!(got, text, "B's echo");
                times.push(t.elapsed());
                i += 1;
            }
            times
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("session"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let p99 = all.get(all.len() * 99 / 100).copied().unwrap_or_default();
    (all.len() as f64 / elapsed, p99)
}

/// A's attackers until `stop`; how many attacks were made.
fn attack(addr: SocketAddr, stop: Arc<AtomicBool>, made: Arc<AtomicU64>) -> Vec<tokio::task::JoinHandle<()>> {
    ["loop", "hog", "storm"]
        .into_iter()
        .map(|cmd| {
            let (stop, made) = (stop.clone(), made.clone());
            tokio::spawn(async move {
                let mut s = Session::open(addr).await;
                while !stop.load(Ordering::Relaxed) {
                    s.send(cmd).await;
                    s.send("ping").await;
                    while s.next_line().await != "ok: ping" {}
                    made.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let secs = env_or("VUMI_BENCH_SECS", 5);
    let rounds = env_or("VUMI_BENCH_ROUNDS", 3);
    let conns = env_or("VUMI_BENCH_CONNS", 32) as usize;
    let setting = |var: &str, key: &str| match std::env::var(var) {
        Ok(v) if !v.is_empty() => format!("{key} = {v}\n"),
        _ => String::new(),
    };
    let a_limits = setting("VUMI_BENCH_A_CPU", "cpu_ms_per_sec")
        + &setting("VUMI_BENCH_A_BACKGROUND", "background_cpu_ms_per_sec");
    let a_said =
        if a_limits.is_empty() { "defaults".to_owned() } else { a_limits.trim().replace('\n', ", ") };
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").join("target").join("bench-noisy");
    std::fs::create_dir_all(&dir).expect("dir");
    let config = format!(
        r#"
[plugins]
cache_dir = "{cache}"
[transports.a]
kind = "telnet"
bind = "127.0.0.1:0"
[transports.b]
kind = "telnet"
bind = "127.0.0.1:0"
[tenants.a]
transports = ["a"]
[tenants.a.limits]
memory_limit_mb = 32
deadline_ms = 200
{a_limits}[tenants.a.apps.faulty]
plugin = "{faulty}"
connector = "a"
deadline_ms = 200
memory_limit_mb = 32
[tenants.b]
transports = ["b"]
[tenants.b.limits]
inbound_per_sec = 1000000
outbound_per_sec = 1000000
[tenants.b.apps.echo]
plugin = "{echo}"
connector = "b"
"#,
        cache = dir.join("cache").display(),
        faulty = common::plugin_path("faulty").display(),
        echo = common::plugin_path("echo").display(),
    );
    let path = dir.join("noisy.toml");
    std::fs::write(&path, config).expect("write config");
    let host = common::HostProc::start(&path, "error", Stdio::null());
    let (a, b) = (host.listening["a"], host.listening["b"]);

    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (mut quiet, mut noisy, mut quiet_p99, mut noisy_p99, mut attacks) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    rt.block_on(async {
        // Warm up: instances started, caches hot.
        load_b(b, conns, 1).await;
        for _ in 0..rounds {
            let (tput, p99) = load_b(b, conns, secs).await;
            quiet.push(tput);
            quiet_p99.push(p99.as_secs_f64() * 1000.0);
            let stop = Arc::new(AtomicBool::new(false));
            let made = Arc::new(AtomicU64::new(0));
            let attackers = attack(a, stop.clone(), made.clone());
            let (tput, p99) = load_b(b, conns, secs).await;
            stop.store(true, Ordering::Relaxed);
            for t in attackers {
                let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
            }
            noisy.push(tput);
            noisy_p99.push(p99.as_secs_f64() * 1000.0);
            attacks.push(made.load(Ordering::Relaxed) as f64);
        }
    });
    drop(host);
    let (q, n, qp, np) =
        (median(quiet.clone()), median(noisy.clone()), median(quiet_p99.clone()), median(noisy_p99.clone()));
    println!("B alone (per round, msg/s): {quiet:.0?}; p99 ms: {quiet_p99:.2?}");
    println!(
        "B beside A's attack (per round, msg/s): {noisy:.0?}; p99 ms: {noisy_p99:.2?}; A's attacks per round: {attacks:?}"
    );
    println!("| B's load | throughput (median) | p99 (median) |");
    println!("|---|---:|---:|");
    println!("| alone | {q:.0} msg/s | {qp:.2} ms |");
    println!("| beside A's loop + hog + storm (A's CPU limits: {a_said}) | {n:.0} msg/s | {np:.2} ms |");
    println!("| ratio | **{:.2}** (goal ≥ 0.90) | **{:.2}×** (goal < 2×) |", n / q, np / qp);
}

use std::path::Path;
