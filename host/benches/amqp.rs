//! Messages per second over RabbitMQ (the shared broker on 127.0.0.1:5672), in one run:
//! - (A) a raw lapin one-hop ceiling: publish with confirms (window 256) → consume (prefetch
//!   256) → ack, a ~600-byte Vumi body;
//! - (B) a raw lapin relay with the host's two hops: generator → `in` → relay (consume, publish
//!   confirmed to `out`, then ack) → `out` → sink, with the host's window and prefetch;
//! - (C) the host (`vumi run`, a separate process) with the pooled WASM echo between `in` and
//!   `out`, on the same generator and sink;
//! - (D) the same host with per-user ordering across hosts (`ordering = "user"`, the Redis
//!   sequencer on the shared Redis, 127.0.0.1:6379): two Lua calls per message;
//! - (E) two such hosts as in C sharing the queues (competing consumers).
//!
//! Each row reports msg/s (median of the rounds), its ratio to B measured in the same run,
//! p50/p99 latency from publish to reply taken, and CPU per process (broker, this process's
//! generator+sink, each host) as % of one core.
//!
//! Run: `cargo build --release && cargo bench -p vumi-host --bench amqp`
//! Env: `VUMI_BENCH_MESSAGES` (default 20000), `VUMI_BENCH_ROUNDS` (3), `VUMI_BENCH_ROWS`
//! (`A,B,C,D,E`).

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Semaphore;

const URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const WINDOW: usize = 256;
const PREFETCH: u16 = 256;

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

/// A Vumi user message of about 600 bytes whose content carries its sequence number.
fn body(connector: &str, seq: usize) -> Vec<u8> {
    let mut m = vumi_host::message::UserMessage::inbound(
        connector,
        "sms",
        format!("+2783{:07}", seq % 1000),
        "*120*8864#",
        Some(format!("s{seq} {}", "x".repeat(180))),
        None,
    );
    m.transport_metadata.insert("aggregator".into(), serde_json::json!({"id": "a1b2c3d4e5f6", "network": "MTN-ZA", "received": "2026-12-01 12:00:00.000000"}));
    vumi_host::bus::amqp::ascii_json(vumi_host::message::Message::from(m).to_json())
}

fn seq_of(data: &[u8]) -> usize {
    let v: serde_json::Value = serde_json::from_slice(data).expect("json");
    let c = v["content"].as_str().expect("content");
    c[1..].split(' ').next().expect("seq").parse().expect("number")
}

async fn channel(conn: &Connection) -> Channel {
    let ch = conn.create_channel().await.expect("channel");
    ch.exchange_declare(
        "vumi".into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions { durable: true, ..Default::default() },
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    ch
}

async fn declare(ch: &Channel, q: &str) {
    ch.queue_declare(
        q.into(),
        QueueDeclareOptions { durable: true, ..Default::default() },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    ch.queue_bind(q.into(), "vumi".into(), q.into(), QueueBindOptions::default(), FieldTable::default())
        .await
        .expect("bind");
}

async fn connect() -> Connection {
    Connection::connect(URI, ConnectionProperties::default()).await.unwrap_or_else(|e| {
        panic!("RabbitMQ on 127.0.0.1:5672: {e} (start it with `rabbitmq-server -detached`)")
    })
}

/// Publish `n` bodies to `queue` with confirms, at most `WINDOW` unconfirmed; `sent[seq]` gets
/// each publish's time (ns since `t0`).
async fn generate(
    conn: &Connection,
    queue: &str,
    connector: &str,
    n: usize,
    sent: Arc<Vec<AtomicU64>>,
    t0: Instant,
) {
    let ch = channel(conn).await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
    declare(&ch, queue).await;
    let window = Arc::new(Semaphore::new(WINDOW));
    let bodies: Vec<Vec<u8>> = (0..n).map(|s| body(connector, s)).collect();
    let mut confirms = Vec::with_capacity(n);
    for (seq, b) in bodies.iter().enumerate() {
        let permit = window.clone().acquire_owned().await.expect("window");
        sent[seq].store(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let c = ch
            .basic_publish(
                "vumi".into(),
                queue.into(),
                BasicPublishOptions { mandatory: true, immediate: false },
                b,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish");
        confirms.push(tokio::spawn(async move {
            let ok = matches!(c.await, Ok(Confirmation::Ack(None)));
            drop(permit);
            ok
        }));
    }
    for c in confirms {
        assert!(c.await.expect("confirm task"), "a publish was not confirmed");
    }
}

/// Take `n` messages from `queue`, ack each; returns the latencies (ns) of each from `sent`.
async fn sink(conn: &Connection, queue: &str, n: usize, sent: Arc<Vec<AtomicU64>>, t0: Instant) -> Vec<u64> {
    let ch = channel(conn).await;
    declare(&ch, queue).await;
    ch.basic_qos(PREFETCH, BasicQosOptions::default()).await.expect("qos");
    let mut c = ch
        .basic_consume(queue.into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .expect("consume");
    let mut lat = Vec::with_capacity(n);
    while lat.len() < n {
        let d = tokio::time::timeout(Duration::from_secs(60), c.next())
            .await
            .expect("a message within 60 s")
            .expect("open")
            .expect("delivery");
        let seq = seq_of(&d.data);
        lat.push((t0.elapsed().as_nanos() as u64).saturating_sub(sent[seq].load(Ordering::Relaxed)));
        d.acker.ack(BasicAckOptions::default()).await.expect("ack");
    }
    lat
}

/// (B)'s relay: consume `from`, publish each confirmed to `to`, then ack.
async fn relay(conn: Connection, from: String, to: String) {
    let pub_ch = channel(&conn).await;
    pub_ch.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
    declare(&pub_ch, &to).await;
    let ch = channel(&conn).await;
    declare(&ch, &from).await;
    ch.basic_qos(PREFETCH, BasicQosOptions::default()).await.expect("qos");
    let mut c = ch
        .basic_consume(from.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .expect("consume");
    let window = Arc::new(Semaphore::new(WINDOW));
    while let Some(Ok(d)) = c.next().await {
        let permit = window.clone().acquire_owned().await.expect("window");
        let pc = pub_ch.clone();
        let to = to.clone();
        tokio::spawn(async move {
            let confirm = pc
                .basic_publish(
                    "vumi".into(),
                    to.as_str().into(),
                    BasicPublishOptions { mandatory: true, immediate: false },
                    &d.data,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .expect("publish");
            if matches!(confirm.await, Ok(Confirmation::Ack(None))) {
                let _ = d.acker.ack(BasicAckOptions::default()).await;
            }
            drop(permit);
        });
    }
}

fn ticks(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime, stime (fields 14, 15; 12, 13 after the name)
    (t(11) + t(12)) / 100.0
}

fn broker_pid() -> Option<u32> {
    pid_of("beam.smp")
}

fn pid_of(name: &str) -> Option<u32> {
    let out = Command::new("pgrep").args(["-f", name]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().next()?.trim().parse().ok()
}

struct Outcome {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu: Vec<(String, f64)>,
}

async fn row(name: &str, n: usize, hosts: usize) -> Outcome {
    let run = &vumi_host::message::new_id()[..8];
    let connector = format!("bench{run}");
    let (inq, outq) = (format!("{connector}.inbound"), format!("{connector}.outbound"));
    let dir = std::env::temp_dir().join(format!("vumi-bench-amqp-{run}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("vumi.toml");
    let (state, ordering) =
        if name == "D" { ("[host.state]\nkind = \"redis\"\n", "user") } else { ("", "none") };
    std::fs::write(
        &config,
        format!(
            "[host.bus]\nkind = \"amqp\"\n{state}\n[apps.echo]\nplugin = \"{}\"\nconnector = \"{connector}\"\nconcurrency = 128\ninstances = \"pooled\"\nordering = \"{ordering}\"\n",
            common::plugin_path("echo").display()
        ),
    )
    .expect("config");
    let procs: Vec<common::HostProc> = if matches!(name, "C" | "D" | "E") {
        (0..hosts).map(|_| common::HostProc::start(&config, "warn", Stdio::inherit())).collect()
    } else {
        Vec::new()
    };
    let gen_conn = connect().await;
    let sink_conn = connect().await;
    // Declared before the load starts, so nothing is unroutable.
    let ch = channel(&gen_conn).await;
    for q in [&inq, &outq] {
        declare(&ch, q).await;
    }
    let relay_task = if name == "B" {
        Some(tokio::spawn(relay(connect().await, inq.clone(), outq.clone())))
    } else {
        None
    };
    let target = if name == "A" { inq.clone() } else { outq.clone() };
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let redis = if name == "D" { pid_of("redis-server") } else { None };
    let pids: Vec<(String, u32)> = broker_pid()
        .map(|p| ("broker".to_owned(), p))
        .into_iter()
        .chain(redis.map(|p| ("redis".to_owned(), p)))
        .chain(std::iter::once(("bench".to_owned(), std::process::id())))
        .chain(procs.iter().enumerate().map(|(i, p)| (format!("host{}", i + 1), p.child_id)))
        .collect();
    let cpu0: Vec<f64> = pids.iter().map(|(_, p)| ticks(*p)).collect();
    let t0 = Instant::now();
    let (_, mut lat) = tokio::join!(
        generate(&gen_conn, &inq, &connector, n, sent.clone(), t0),
        sink(&sink_conn, &target, n, sent.clone(), t0)
    );
    let secs = t0.elapsed().as_secs_f64();
    let cpu: Vec<(String, f64)> =
        pids.iter().zip(cpu0).map(|((n, p), c0)| (n.clone(), (ticks(*p) - c0) / secs * 100.0)).collect();
    if let Some(t) = relay_task {
        t.abort();
    }
    drop(procs);
    for q in [&inq, &outq, &format!("{connector}.event"), &format!("{connector}.status")] {
        let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    if name == "D" {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("redis-cli --scan --pattern 'vumi:seq:{{{connector}|*' | xargs -r -n 500 redis-cli del >/dev/null"))
            .status();
    }
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1e6;
    Outcome { rate: n as f64 / secs, p50_ms: pct(0.5), p99_ms: pct(0.99), cpu }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_or("VUMI_BENCH_MESSAGES", 20_000usize);
    let rounds = env_or("VUMI_BENCH_ROUNDS", 3usize);
    let rows: Vec<String> = std::env::var("VUMI_BENCH_ROWS")
        .unwrap_or_else(|_| "A,B,C,D,E".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    println!(
        "{n} messages a round, {rounds} rounds, body {} bytes; window {WINDOW}, prefetch {PREFETCH}",
        body("bench0000000", 0).len()
    );
    let mut results: Vec<(String, Vec<Outcome>)> = Vec::new();
    // Interleaved rounds: a noisy moment hits every row alike.
    for _ in 0..rounds {
        for r in &rows {
            let hosts = if r == "E" { 2 } else { 1 };
            let o = row(r, n, hosts).await;
            match results.iter_mut().find(|(name, _)| name == r) {
                Some((_, v)) => v.push(o),
                None => results.push((r.clone(), vec![o])),
            }
        }
    }
    let rate_of = |name: &str| {
        results.iter().find(|(r, _)| r == name).map(|(_, v)| median(v.iter().map(|o| o.rate).collect()))
    };
    let b = rate_of("B");
    let c = rate_of("C");
    println!("\n| row | msg/s | ÷ B | ÷ C | p50 ms | p99 ms | CPU % of a core (median) |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for (name, v) in &results {
        let rate = median(v.iter().map(|o| o.rate).collect());
        let ratio = |base: Option<f64>| base.map_or("–".to_owned(), |x| format!("{:.2}", rate / x));
        let mut cpu = String::new();
        for (i, (who, _)) in v[0].cpu.iter().enumerate() {
            cpu.push_str(&format!("{who} {:.0} ", median(v.iter().map(|o| o.cpu[i].1).collect())));
        }
        println!(
            "| {name} | {rate:.0} | {} | {} | {:.1} | {:.1} | {} |",
            ratio(b),
            ratio(c),
            median(v.iter().map(|o| o.p50_ms).collect()),
            median(v.iter().map(|o| o.p99_ms).collect()),
            cpu.trim()
        );
    }
}
