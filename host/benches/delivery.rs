//! Accepted versus delivered, over loopback, in one run (issue 17). Four rows, each driven by
//! `wrk` (Debian's, an external load generator) and by an in-repo one (reqwest, a fixed number
//! of keep-alive requests in flight):
//!
//! - **trivial axum handler**: parse the JSON body, answer `201`. The ceiling for this machine,
//!   this client and this HTTP stack.
//! - **send API → sink**: the host stores each message, the `sink` transport acks it, the channel
//!   records the ack.
//! - **send API → `sms_http` → aggregator**: as above, but the transport POSTs each message to a
//!   local aggregator that answers `200 {"message_id": …}` at once (MT).
//! - **`sms_http` inbound → `mo_url` → app**: an inbound SMS, form-encoded, goes through a
//!   channel to its `mo_url`, a local app that answers `200` at once (MO).
//! - **send API → SMPP → fake SMSC**: the `smpp` transport (window 100) submits each message to
//!   `vumi fake-smsc`, in process, answering at once with no receipts; delivered is what the
//!   fake counted. Its delivered/s beside the sink row's accepted/s is the SMPP leg's cost.
//!
//! For the two delivery paths it counts what reached the aggregator or the app during the
//! measured window (delivered/s) beside what the host answered `2xx` (accepted/s), then waits
//! for the rest and reports any accepted message that never arrived (dropped).
//!
//! Run: `cargo bench -p vumi-host --bench delivery` (needs `wrk` on `PATH`: `apt-get install
//! wrk`). `VUMI_BENCH_SECS` (default 10) sets each measured window, `VUMI_BENCH_CONNECTIONS`
//! (default 50) the connections of both generators; `VUMI_BENCH_ROWS` (`trivial,proxy,sink,MT,MO,SMPP`) and
//! `VUMI_BENCH_GENERATORS` (`wrk,in-repo`) pick a subset, e.g. to profile one path;
//! `VUMI_BENCH_ROUNDS` (default 3) the interleaved rounds; `VUMI_BENCH_SMS_CONCURRENCY` (32) and
//! `VUMI_BENCH_CALLBACK_CONCURRENCY` (16) the host's outbound connections (its defaults). Everything shares the machine's two cores,
//! so compare ratios within one run, not figures across runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

const WARMUP: Duration = Duration::from_secs(2);
const TRIVIAL: &str = "trivial axum handler";
const PROXY: &str = "trivial axum proxy → aggregator";
const SINK: &str = "send API → sink";
/// How long the rest of what was accepted may take to arrive after the load stops.
const DRAIN: Duration = Duration::from_secs(60);

fn secs() -> Duration {
    Duration::from_secs(std::env::var("VUMI_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10))
}

fn connections() -> usize {
    std::env::var("VUMI_BENCH_CONNECTIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(50)
}

/// One request shape: where, what, how it is encoded.
#[derive(Clone)]
struct Target {
    url: String,
    content_type: &'static str,
    body: String,
    token: Option<&'static str>,
}

/// What one measured window saw.
#[derive(Default)]
struct Window {
    accepted: u64,
    refused: u64,
    other: u64,
    secs: f64,
    delivered: u64,
    /// CPU seconds this process and its reaped children (`wrk`) used over the window.
    cpu: f64,
    /// Accepted (since the warm-up began) but never arrived.
    dropped: u64,
    p50_us: Option<u64>,
    p99_us: Option<u64>,
}

/// CPU seconds used so far by this process and its reaped children: `/proc/self/stat` fields
/// 14–17 (utime, stime, cutime, cstime), in clock ticks of 10 ms.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field n is index n - 3.
    let ticks: u64 = (14..=17).map(|n| fields[n - 3].parse::<u64>().expect("tick count")).sum();
    ticks as f64 / 100.0
}

/// `wrk` against `t` for `d`; (2xx, non-2xx, seconds).
async fn wrk(t: &Target, d: Duration) -> (u64, u64, f64) {
    let dir = std::env::temp_dir().join(format!("vumi-bench-wrk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let script = dir.join("post.lua");
    let mut lua = format!(
        "wrk.method = \"POST\"\nwrk.body = {:?}\nwrk.headers[\"Content-Type\"] = {:?}\n",
        t.body, t.content_type
    );
    if let Some(token) = t.token {
        lua.push_str(&format!("wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"));
    }
    std::fs::write(&script, lua).expect("write wrk script");
    let c = connections().to_string();
    let out = tokio::process::Command::new("wrk")
        .args(["-t2", "-c", &c, "-d", &format!("{}s", d.as_secs()), "--timeout", "10s", "-s"])
        .arg(&script)
        .arg(&t.url)
        .output()
        .await
        .expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    // "123456 requests in 10.00s, 12.34MB read" and, when any, "Non-2xx or 3xx responses: 42".
    let line =
        text.lines().find(|l| l.contains(" requests in ")).unwrap_or_else(|| panic!("wrk said: {text}"));
    let mut words = line.split_whitespace();
    let total: u64 = words.next().and_then(|w| w.parse().ok()).expect("request count");
    let secs: f64 = words
        .nth(2)
        .and_then(|w| w.trim_end_matches(',').trim_end_matches('s').parse().ok())
        .expect("seconds");
    let non2xx: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .map_or(0, |n| n.trim().parse().expect("non-2xx count"));
    (total - non2xx, non2xx, secs)
}

/// The in-repo generator against `t` for `d`: `connections()` requests in flight.
async fn in_repo(client: &reqwest::Client, t: &Target, d: Duration) -> Window {
    let lat: Arc<Mutex<Vec<u32>>> = Arc::default();
    let counts: Arc<[AtomicU64; 3]> = Arc::default();
    let start = Instant::now();
    let end = start + d;
    let mut tasks = Vec::new();
    for _ in 0..connections() {
        let (client, t, lat, counts) = (client.clone(), t.clone(), lat.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let mut req = client.post(&t.url).header("content-type", t.content_type).body(t.body.clone());
                if let Some(token) = t.token {
                    req = req.bearer_auth(token);
                }
                let resp = req.send().await.expect("request");
                let status = resp.status().as_u16();
                let _ = resp.bytes().await.expect("body");
                let slot = match status {
                    200..=299 => 0,
                    429 | 503 => 1,
                    _ => 2,
                };
                counts[slot].fetch_add(1, Ordering::Relaxed);
                mine.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            lat.lock().await.extend(mine);
        }));
    }
    for task in tasks {
        task.await.expect("load task");
    }
    let secs = start.elapsed().as_secs_f64();
    let mut lat = std::mem::take(&mut *lat.lock().await);
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).map(|v| u64::from(*v))
    };
    Window {
        accepted: counts[0].load(Ordering::Relaxed),
        refused: counts[1].load(Ordering::Relaxed),
        other: counts[2].load(Ordering::Relaxed),
        secs,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        ..Window::default()
    }
}

/// A local HTTP server answering every request `status` with `body` at once, counting them.
async fn counting_server(status: u16, body: &'static str) -> (SocketAddr, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    let app = axum::Router::new().fallback(move |_body: axum::body::Bytes| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::Relaxed);
            (
                axum::http::StatusCode::from_u16(status).expect("status"),
                [("content-type", "application/json")],
                body,
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (addr, count)
}

/// The ceilings: `/api/v1/channels/bench/messages` parses the JSON body and answers `201`;
/// `/proxy` does the same after one form POST of it to `aggregator` (the least a delivery path
/// can do: one more HTTP exchange per message, on the same two cores).
async fn trivial_server(aggregator: SocketAddr) -> SocketAddr {
    async fn handler(body: axum::body::Bytes) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        (
            axum::http::StatusCode::CREATED,
            axum::Json(serde_json::json!({"status": 201, "result": {"to_addr": v["to"]}})),
        )
    }
    let client = reqwest::Client::new();
    let upstream: reqwest::Url = format!("http://{aggregator}/send").parse().expect("url");
    let proxy = move |body: axum::body::Bytes| {
        let (client, upstream) = (client.clone(), upstream.clone());
        async move {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let to = v["to"].as_str().unwrap_or_default().to_owned();
            let content = v["content"].as_str().unwrap_or_default().to_owned();
            let sent = client
                .post(upstream)
                .form(&[("to", to.as_str()), ("content", content.as_str())])
                .send()
                .await;
            let ok = matches!(&sent, Ok(r) if r.status().is_success());
            if let Ok(r) = sent {
                let _ = r.bytes().await;
            }
            let status =
                if ok { axum::http::StatusCode::CREATED } else { axum::http::StatusCode::BAD_GATEWAY };
            (status, axum::Json(serde_json::json!({"status": status.as_u16(), "result": {"to_addr": to}})))
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .route("/api/v1/channels/bench/messages", axum::routing::post(handler))
        .route("/proxy", axum::routing::post(proxy));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

/// One host with the three paths: channel `bench` on a sink, channel `mt` on `sms_http` towards
/// `aggregator`, channel `mo` on a second `sms_http` whose inbound goes to `app`.
async fn vumi_host(
    aggregator: SocketAddr,
    app: SocketAddr,
    smsc: SocketAddr,
) -> (vumi_host::supervisor::RunningHost, SocketAddr) {
    let dir = std::env::temp_dir().join(format!("vumi-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let knob =
        |name: &str, default: u16| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (sms_concurrency, callback_concurrency) =
        (knob("VUMI_BENCH_SMS_CONCURRENCY", 32), knob("VUMI_BENCH_CALLBACK_CONCURRENCY", 16));
    let config = vumi_host::config::Config::from_toml(
        &format!(
            r#"
[http]
bind = "127.0.0.1:0"

[transports.sink]
kind = "sink"

[transports.sms]
kind = "sms_http"
outbound_url = "http://{aggregator}/send"
concurrency = {sms_concurrency}

[transports.mo]
kind = "sms_http"
outbound_url = "http://127.0.0.1:9/unused"

[transports.smpp]
kind = "smpp"
address = "{smsc}"
system_id = "smppclient1"
password = "password"
window = 100
delivery_reports = false

[channels.smpp]
connector = "smpp"
token = "bench-token"
default_from = "1234"
message_ttl_secs = 60

[channels.bench]
connector = "sink"
token = "bench-token"
default_from = "1234"
message_ttl_secs = 60

[channels.mt]
connector = "sms"
token = "bench-token"
default_from = "1234"
message_ttl_secs = 60

[channels.mo]
connector = "mo"
token = "bench-token"
mo_url = "http://{app}/mo"
message_ttl_secs = 60

[callbacks]
concurrency = {callback_concurrency}
"#
        ),
        &dir.join("bench.toml"),
    )
    .expect("config");
    let host = vumi_host::supervisor::start(&config).await.expect("start");
    let addr = host.http.expect("http listener");
    (host, addr)
}

/// Run `t` with `generator` (warm-up first), counting `delivered` (if the row delivers
/// anywhere) over the measured window, then waiting for the rest of what was accepted.
async fn row(
    name: &str,
    generator: &str,
    client: &reqwest::Client,
    t: &Target,
    delivered: Option<&AtomicU64>,
) -> Window {
    let run = |d: Duration| async move {
        if generator == "wrk" {
            let (accepted, refused, secs) = wrk(t, d).await;
            Window { accepted, refused, secs, ..Window::default() }
        } else {
            in_repo(client, t, d).await
        }
    };
    let before_warmup = delivered.map(|c| c.load(Ordering::Relaxed));
    let warm = run(WARMUP).await;
    let before = delivered.map(|c| c.load(Ordering::Relaxed));
    let cpu0 = cpu_seconds();
    let mut w = run(secs()).await;
    w.cpu = cpu_seconds() - cpu0;
    if let (Some(c), Some(b0), Some(b)) = (delivered, before_warmup, before) {
        w.delivered = c.load(Ordering::Relaxed) - b;
        // Everything accepted since the warm-up began must arrive.
        let expected = warm.accepted + w.accepted;
        let deadline = Instant::now() + DRAIN;
        while c.load(Ordering::Relaxed) - b0 < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let arrived = c.load(Ordering::Relaxed) - b0;
        let dropped = expected.saturating_sub(arrived);
        w.dropped = dropped;
        if dropped > 0 {
            println!("  {name} ({generator}): {expected} accepted, {arrived} arrived, {dropped} DROPPED");
        }
    }
    w
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One table of medians over the rounds. Ratios compare CPU per message (this process, which
/// runs host, servers and the in-repo generator, plus `wrk`), per round, then take the median:
/// at saturation on two cores the throughput ratio is the inverse CPU ratio, and CPU per message
/// does not move when a neighbour on this shared machine steals time, as throughput does.
fn print_table(generator: &str, rows: &[(&str, Vec<Window>)]) {
    let rate = |w: &Window| w.accepted as f64 / w.secs;
    let delivered = |w: &Window| w.delivered as f64 / w.secs;
    // CPU per message that went all the way: delivered where the row delivers, else accepted.
    let cpu_per = |w: &Window| w.cpu / (if w.delivered > 0 { w.delivered } else { w.accepted }) as f64;
    let of = |name: &str| rows.iter().find(|(n, _)| *n == name).map(|(_, ws)| ws);
    let ratio_to = |ws: &[Window], base: Option<&Vec<Window>>| -> String {
        base.map_or("–".into(), |b| {
            format!("{:.2}", median(ws.iter().zip(b).map(|(w, b)| cpu_per(b) / cpu_per(w)).collect()))
        })
    };
    println!();
    println!(
        "{generator}, {} connections, {} s measured, median of {} interleaved rounds:",
        connections(),
        secs().as_secs(),
        rows[0].1.len()
    );
    println!(
        "| path | accepted/s | refused/s | delivered/s | delivered ÷ accepted | dropped | CPU µs/msg | CPU busy | vs send API → sink | vs trivial handler | vs trivial proxy | p50 | p99 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, ws) in rows {
        let delivers = ws.iter().any(|w| w.delivered > 0);
        let med = |f: &dyn Fn(&Window) -> f64| median(ws.iter().map(f).collect());
        let us = |v: Option<u64>| v.map_or("–".to_owned(), |v| format!("{v} µs"));
        println!(
            "| {name} | {:.0} | {:.0} | {} | {} | {} | {:.1} | {:.0}% | {} | {} | {} | {} | {} |",
            med(&rate),
            med(&|w| w.refused as f64 / w.secs),
            if delivers { format!("{:.0}", med(&delivered)) } else { "–".into() },
            if delivers {
                format!("{:.2}", median(ws.iter().map(|w| delivered(w) / rate(w)).collect()))
            } else {
                "–".into()
            },
            if delivers { ws.iter().map(|w| w.dropped).sum::<u64>().to_string() } else { "–".into() },
            med(&|w| cpu_per(w) * 1e6),
            med(&|w| w.cpu / w.secs / 2.0 * 100.0),
            ratio_to(ws, of(SINK)),
            ratio_to(ws, of(TRIVIAL)),
            ratio_to(ws, of(PROXY)),
            us(ws[ws.len() / 2].p50_us),
            us(ws[ws.len() / 2].p99_us),
        );
        assert!(ws.iter().all(|w| w.other == 0), "{name}: answers other than 2xx, 429 or 503");
    }
    // The SMPP goal: the SMPP leg is not the bottleneck (delivered/s against the sink row's
    // accepted/s, round by round).
    if let (Some(smpp), Some(sink)) = (rows.iter().find(|(n, _)| n.starts_with("send API → smpp")), of(SINK))
    {
        let r = median(smpp.1.iter().zip(sink).map(|(m, s)| delivered(m) / rate(s)).collect());
        println!(
            "send API → smpp → fake SMSC, delivered/s ÷ send API → sink, accepted/s (median of rounds): {r:.2}"
        );
    }
}

/// `vumi fake-smsc` in process (zero delay, no receipts), and the count of `submit_sm`s it has
/// answered, read from its `/stats` every 10 ms.
async fn fake_smsc() -> (SocketAddr, Arc<AtomicU64>) {
    use vumi_host::fakes::smsc as fake;
    let smpp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (addr, stats) =
        (smpp.local_addr().expect("addr"), format!("http://{}/stats", http.local_addr().expect("addr")));
    let settings = fake::Settings { receipt: fake::ReceiptStat::Off, ..fake::Settings::default() };
    tokio::spawn(async move { fake::serve(smpp, http, settings, std::future::pending()).await });
    let submits = Arc::new(AtomicU64::new(0));
    let count = submits.clone();
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(&stats).send().await
                && let Ok(v) = r.json::<serde_json::Value>().await
                && let Some(n) = v["submits"].as_u64()
            {
                count.store(n, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    (addr, submits)
}

#[tokio::main]
async fn main() {
    // As the `vumi` binary does.
    vumi_host::disable_transparent_huge_pages();
    let client = reqwest::Client::builder().pool_max_idle_per_host(connections()).build().expect("client");
    let (aggregator, aggregated) = counting_server(200, r#"{"message_id": "agg"}"#).await;
    let (app, answered) = counting_server(200, "{}").await;
    let trivial_addr = trivial_server(aggregator).await;
    let (smsc, submitted) = fake_smsc().await;
    let (host, addr) = vumi_host(aggregator, app, smsc).await;
    let json =
        serde_json::json!({"to": "+27820000001", "content": "Hello from the load generator"}).to_string();
    let send = |host: SocketAddr, channel: &str| Target {
        url: format!("http://{host}/api/v1/channels/{channel}/messages"),
        content_type: "application/json",
        body: json.clone(),
        token: Some("bench-token"),
    };
    let mo = Target {
        url: format!("http://{addr}/transports/mo/inbound"),
        content_type: "application/x-www-form-urlencoded",
        body: "from=%2B27820000001&to=1234&content=Hello+from+the+load+generator".into(),
        token: None,
    };
    let trivial = send(trivial_addr, "bench");
    let proxy = Target { url: format!("http://{trivial_addr}/proxy"), ..trivial.clone() };
    let (sink, mt, smpp) = (send(addr, "bench"), send(addr, "mt"), send(addr, "smpp"));
    let wanted =
        |list: &str, name: &str| std::env::var(list).map_or(true, |v| v.split(',').any(|w| w == name));
    let rounds: usize = std::env::var("VUMI_BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    for generator in ["wrk", "in-repo"].into_iter().filter(|g| wanted("VUMI_BENCH_GENERATORS", g)) {
        println!("{generator}:");
        let mut rows: Vec<(&str, Vec<Window>)> = Vec::new();
        for round in 1..=rounds {
            for (i, (short, name, target, delivered)) in [
                ("trivial", TRIVIAL, &trivial, None),
                ("proxy", PROXY, &proxy, Some(&*aggregated)),
                ("sink", SINK, &sink, None),
                ("MT", "send API → sms_http → aggregator (MT)", &mt, Some(&*aggregated)),
                ("MO", "sms_http inbound → mo_url → app (MO)", &mo, Some(&*answered)),
                ("SMPP", "send API → smpp → fake SMSC (MT)", &smpp, Some(&*submitted)),
            ]
            .into_iter()
            .filter(|(short, ..)| wanted("VUMI_BENCH_ROWS", short))
            .enumerate()
            {
                let w = row(&format!("{short} round {round}"), generator, &client, target, delivered).await;
                println!(
                    "  round {round}: {name}: {:.0} accepted/s, {:.0} delivered/s",
                    w.accepted as f64 / w.secs,
                    w.delivered as f64 / w.secs
                );
                if round == 1 {
                    rows.push((name, Vec::new()));
                }
                rows[i].1.push(w);
            }
        }
        print_table(generator, &rows);
        println!();
    }
    host.shutdown(Duration::from_secs(5)).await;
}
