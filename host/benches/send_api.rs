//! Send-API throughput and latency over loopback: an in-repo load generator (a pool of
//! keep-alive HTTP/1.1 connections, a fixed number of requests in flight) POSTs messages to
//! `/api/v1/channels/bench/messages`; the host stores each, publishes it to a `sink` transport
//! that acks it, and the channel records the ack. Beside it, in the same run, the same load
//! against a trivial HTTP handler (parse the JSON body, answer `201` with a small JSON body) on
//! the same HTTP stack: the ceiling for this machine and this client.
//!
//! Run: `cargo bench -p vumi-host --bench send_api`. Load generator and servers share the
//! machine's two cores, so the ratio to the ceiling is the figure to compare across runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

const IN_FLIGHT: usize = 64;
const WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);
const ROUNDS: usize = 3;

struct Figures {
    per_sec: f64,
    p50_us: u64,
    p99_us: u64,
}

/// Drive `url` with `IN_FLIGHT` requests at a time: warm up, then measure.
async fn load(client: &reqwest::Client, url: &str) -> Figures {
    let body = serde_json::json!({"to": "+27820000001", "content": "Hello from the load generator"}).to_string();
    let lat: Arc<Mutex<Vec<u32>>> = Arc::default();
    let start = Instant::now();
    let measure_from = start + WARMUP;
    let end = measure_from + MEASURE;
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (client, url, body, lat) = (client.clone(), url.to_owned(), body.clone(), lat.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let resp = client
                    .post(&url)
                    .bearer_auth("bench-token")
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("request");
                assert_eq!(resp.status(), 201, "the server refused a request");
                let _ = resp.bytes().await.expect("body");
                if t0 >= measure_from {
                    mine.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                }
            }
            lat.lock().await.extend(mine);
        }));
    }
    for t in tasks {
        t.await.expect("load task");
    }
    let mut lat = std::mem::take(&mut *lat.lock().await);
    lat.sort_unstable();
    let pct = |p: f64| u64::from(lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)]);
    Figures { per_sec: lat.len() as f64 / MEASURE.as_secs_f64(), p50_us: pct(0.50), p99_us: pct(0.99) }
}

async fn trivial_server() -> std::net::SocketAddr {
    async fn handler(body: axum::body::Bytes) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        (axum::http::StatusCode::CREATED, axum::Json(serde_json::json!({"status": 201, "result": {"to_addr": v["to"]}})))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route("/api/v1/channels/bench/messages", axum::routing::post(handler));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

async fn vumi_host() -> (vumi_host::supervisor::RunningHost, std::net::SocketAddr) {
    let dir = std::env::temp_dir().join(format!("vumi-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let config = vumi_host::config::Config::from_toml(
        r#"
[http]
bind = "127.0.0.1:0"

[transports.sink]
kind = "sink"

[channels.bench]
connector = "sink"
token = "bench-token"
default_from = "1234"
message_ttl_secs = 600
"#,
        &dir.join("bench.toml"),
    )
    .expect("config");
    let host = vumi_host::supervisor::start(&config).await.expect("start");
    let addr = host.http.expect("http listener");
    (host, addr)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let client = reqwest::Client::builder().pool_max_idle_per_host(IN_FLIGHT).build().expect("client");
    let trivial = format!("http://{}/api/v1/channels/bench/messages", trivial_server().await);
    let (host, addr) = vumi_host().await;
    let api = format!("http://{addr}/api/v1/channels/bench/messages");

    let (mut ceiling, mut send) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        for (name, url, out) in [("trivial handler", &trivial, &mut ceiling), ("send API", &api, &mut send)] {
            let f = load(&client, url).await;
            println!(
                "round {round}: {name:<16} {:>9.0} req/s  p50 {:>6} µs  p99 {:>6} µs",
                f.per_sec, f.p50_us, f.p99_us
            );
            out.push(f);
        }
    }
    let summary = |v: &[Figures]| {
        (
            median(v.iter().map(|f| f.per_sec).collect()),
            median(v.iter().map(|f| f.p50_us as f64).collect()),
            median(v.iter().map(|f| f.p99_us as f64).collect()),
        )
    };
    let (c, c50, c99) = summary(&ceiling);
    let (s, s50, s99) = summary(&send);
    println!();
    println!("| path | requests/s | p50 | p99 | vs ceiling |");
    println!("|---|---:|---:|---:|---:|");
    println!("| trivial axum handler (ceiling) | {c:.0} | {c50:.0} µs | {c99:.0} µs | 1.00 |");
    println!("| send API → sink transport | {s:.0} | {s50:.0} µs | {s99:.0} µs | {:.2} |", s / c);
    println!("({IN_FLIGHT} requests in flight, {}s measured per round, median of {ROUNDS} interleaved rounds)", MEASURE.as_secs());
    host.shutdown(Duration::from_secs(2)).await;
}
