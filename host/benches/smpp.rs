//! SMPP throughput in one run (issue 19), every row beside a ceiling measured in the same round:
//!
//! - **raw ceiling**: a minimal client on the same codec (`wire`) that binds and only pipelines
//!   `submit_sm`s (up to 1,000 unanswered) at `vumi fake-smsc` (in process, zero delay, no
//!   receipts): what this machine, this codec and this fake can do.
//! - **link, window 1 / 10 / 100**: the transport's [`Link`] (window, sequence numbers,
//!   timeouts, the outcome of each PDU handed back) against the same fake, driven by twice the
//!   window of concurrent submitters.
//! - **MO → echo app → reply**: a host in process (SMPP transport, echo app as WebAssembly)
//!   bound to a driver SMSC in this bench that pipelines `deliver_sm`s (100 unanswered) and
//!   counts the replies' `submit_sm`s: messages from a phone answered per second.
//!
//! The end-to-end row (send API → SMPP → fake SMSC, beside send API → sink) is in the
//! `delivery` bench, where the send API's generators are.
//!
//! Run: `cargo bench -p vumi-host --bench smpp`. `VUMI_BENCH_SECS` (default 5) sets each measured
//! window, `VUMI_BENCH_ROUNDS` (default 3) the interleaved rounds (medians are reported).
//! Everything shares the machine's two cores (client, fake and host alike): compare ratios
//! within one run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{FramedRead, FramedWrite};
use vumi_host::fakes::smsc as fake;
use vumi_host::transports::smpp::link::{Deliver, Link, LinkConfig, Outcome};
use vumi_host::transports::smpp::wire::{Bind, BindKind, Body, Codec, Frame, Pdu, Sm, status};

mod common;

const WARMUP: Duration = Duration::from_secs(1);

fn secs() -> Duration {
    Duration::from_secs(std::env::var("VUMI_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5))
}

fn bind() -> Bind {
    Bind {
        system_id: "smppclient1".into(),
        password: "password".into(),
        interface_version: 0x34,
        ..Bind::default()
    }
}

fn sm() -> Sm {
    Sm {
        source_addr_ton: 1,
        source_addr_npi: 1,
        source_addr: "1234".into(),
        dest_addr_ton: 1,
        dest_addr_npi: 1,
        destination_addr: "27820000001".into(),
        short_message: b"Hello from the load generator".to_vec(),
        ..Sm::default()
    }
}

/// The fake SMSC in process, zero delay, no receipts: its SMPP address.
async fn start_fake() -> SocketAddr {
    let smpp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = smpp.local_addr().expect("addr");
    let settings = fake::Settings { receipt: fake::ReceiptStat::Off, ..fake::Settings::default() };
    tokio::spawn(async move { fake::serve(smpp, http, settings, std::future::pending()).await });
    addr
}

/// Bind a raw connection as `kind`.
async fn raw_bind(
    addr: SocketAddr,
) -> (FramedRead<tokio::net::tcp::OwnedReadHalf, Codec>, FramedWrite<tokio::net::tcp::OwnedWriteHalf, Codec>)
{
    let s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let (r, w) = s.into_split();
    let (mut r, mut w) = (FramedRead::new(r, Codec::new(65536)), FramedWrite::new(w, Codec::new(65536)));
    w.send(&Pdu::request(1, Body::Bind(BindKind::Transceiver, bind()))).await.expect("bind");
    match r.next().await {
        Some(Ok(Frame::Pdu(p))) if p.status == status::OK => {}
        other => panic!("bind refused: {other:?}"),
    }
    (r, w)
}

/// The raw ceiling: pipeline submits for `d`, at most 1,000 unanswered; answered per second.
async fn raw(addr: SocketAddr, d: Duration) -> f64 {
    let (mut r, mut w) = raw_bind(addr).await;
    let answered = Arc::new(AtomicU64::new(0));
    let reader = {
        let answered = answered.clone();
        tokio::spawn(async move {
            while let Some(Ok(Frame::Pdu(p))) = r.next().await {
                if matches!(p.body, Body::SubmitSmResp(_)) {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let start = Instant::now();
    let (mut sent, mut seq) = (0u64, 1u32);
    let pdu = Body::SubmitSm(Box::new(sm()));
    while start.elapsed() < d {
        // Keep 1,000 in flight; feed many per flush.
        while sent - answered.load(Ordering::Relaxed) < 1_000 {
            seq += 1;
            w.feed(&Pdu::request(seq, pdu.clone())).await.expect("feed");
            sent += 1;
        }
        w.flush().await.expect("flush");
        tokio::task::yield_now().await;
    }
    let n = answered.load(Ordering::Relaxed);
    let rate = n as f64 / start.elapsed().as_secs_f64();
    reader.abort();
    rate
}

struct NoDeliveries;

#[async_trait::async_trait]
impl Deliver for NoDeliveries {
    async fn deliver(&self, _sm: Sm) -> u32 {
        status::OK
    }
}

/// A bound link with `window` against `addr`.
async fn link(addr: SocketAddr, window: usize) -> (Arc<Link>, tokio_util::sync::CancellationToken) {
    let link = Link::new(LinkConfig {
        transport: "bench".into(),
        label: format!("w{window}"),
        address: addr.to_string(),
        bind: bind(),
        kind: BindKind::Transceiver,
        window,
        tps: 0,
        throttle_delay: Duration::from_secs(1),
        response_timeout: Duration::from_secs(10),
        retry_on_timeout: true,
        max_resends: 3,
        enquire_link: Duration::from_secs(30),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_secs(1),
        max_pdu: 65536,
    });
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(link.clone().run(Arc::new(NoDeliveries), stop.clone()));
    let mut bound = link.watch_bound();
    while !*bound.borrow_and_update() {
        bound.changed().await.expect("link");
    }
    (link, stop)
}

/// Submits accepted per second through `link` for `d`, with twice its window of submitters.
async fn through_link(link: &Arc<Link>, window: usize, d: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + d;
    let tasks: Vec<_> = (0..window * 2)
        .map(|_| {
            let (link, done) = (link.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    match link.submit(sm()).await {
                        Outcome::Accepted(_) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("a submit failed: {other:?}"),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("submitter");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// A driver SMSC for the MO row: accepts one bind, then keeps `window` `deliver_sm`s unanswered,
/// answering every `submit_sm` (the app's replies) at once and counting them.
async fn driver_smsc(window: u64) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let replies = Arc::new(AtomicU64::new(0));
    let counted = replies.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else { return };
            let replies = counted.clone();
            tokio::spawn(async move {
                s.set_nodelay(true).expect("nodelay");
                let (r, w) = s.into_split();
                let (mut r, mut w) =
                    (FramedRead::new(r, Codec::new(65536)), FramedWrite::new(w, Codec::new(65536)));
                // The bind.
                let Some(Ok(Frame::Pdu(p))) = r.next().await else { return };
                let Body::Bind(kind, _) = p.body else { return };
                w.send(&Pdu::response(p.sequence, status::OK, Body::BindResp(kind, "driver".into())))
                    .await
                    .expect("bind resp");
                let answered = Arc::new(AtomicU64::new(0));
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Pdu>();
                let reader = {
                    let (answered, replies, tx) = (answered.clone(), replies.clone(), tx.clone());
                    tokio::spawn(async move {
                        let mut id = 0u64;
                        while let Some(Ok(Frame::Pdu(p))) = r.next().await {
                            match p.body {
                                Body::DeliverSmResp => {
                                    answered.fetch_add(1, Ordering::Relaxed);
                                }
                                Body::SubmitSm(_) => {
                                    id += 1;
                                    replies.fetch_add(1, Ordering::Relaxed);
                                    let _ = tx.send(Pdu::response(
                                        p.sequence,
                                        status::OK,
                                        Body::SubmitSmResp(format!("{id:x}")),
                                    ));
                                }
                                Body::EnquireLink => {
                                    let _ =
                                        tx.send(Pdu::response(p.sequence, status::OK, Body::EnquireLinkResp));
                                }
                                _ => {}
                            }
                        }
                    })
                };
                // 1,000 phones: one user's messages are answered in order, so one phone
                // alone would measure a single lane.
                let mos: Vec<Body> = (0..1000)
                    .map(|u| {
                        Body::DeliverSm(Box::new(Sm {
                            source_addr: format!("2782{u:07}"),
                            destination_addr: "1234".into(),
                            ..sm()
                        }))
                    })
                    .collect();
                let (mut sent, mut seq) = (0u64, 1u32);
                loop {
                    while sent - answered.load(Ordering::Relaxed) < window {
                        seq = if seq >= 0x7FFF_0000 { 2 } else { seq + 1 };
                        if w.feed(&Pdu::request(seq, mos[sent as usize % mos.len()].clone())).await.is_err() {
                            reader.abort();
                            return;
                        }
                        sent += 1;
                    }
                    while let Ok(p) = rx.try_recv() {
                        if w.feed(&p).await.is_err() {
                            return;
                        }
                    }
                    if w.flush().await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            });
        }
    });
    (addr, replies)
}

/// A host in process: an SMPP transport bound to `smsc`, the echo app on it.
async fn mo_host(smsc: SocketAddr) -> vumi_host::supervisor::RunningHost {
    let dir = std::env::temp_dir().join(format!("vumi-bench-smpp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let config = vumi_host::config::Config::from_toml(
        &format!(
            r#"
[transports.smpp]
kind = "smpp"
address = "{smsc}"
system_id = "smppclient1"
password = "password"
window = 100
delivery_reports = false

[apps.echo]
plugin = "{}"
connector = "smpp"
instances = "pooled"
"#,
            common::plugin_path("echo").display()
        ),
        &dir.join("bench.toml"),
    )
    .expect("config");
    vumi_host::supervisor::start(&config).await.expect("start")
}

async fn rate_of(counter: &AtomicU64, d: Duration) -> f64 {
    tokio::time::sleep(WARMUP).await;
    let (n0, t0) = (counter.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(d).await;
    (counter.load(Ordering::Relaxed) - n0) as f64 / t0.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    vumi_host::disable_transparent_huge_pages();
    let rounds: usize = std::env::var("VUMI_BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let d = secs();
    let fake = start_fake().await;
    let windows = [1usize, 10, 100];
    let mut links = Vec::new();
    for w in windows {
        links.push((w, link(fake, w).await));
    }
    let names = [
        "raw ceiling (pipelined, same codec)",
        "link, window 1",
        "link, window 10",
        "link, window 100",
        "MO → echo app → reply submitted",
    ];
    let mut rows: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for round in 1..=rounds {
        let _ = raw(fake, WARMUP).await;
        let ceiling = raw(fake, d).await;
        rows[0].push(ceiling);
        ratios[0].push(1.0);
        println!("round {round}: {}: {ceiling:.0} submit_sm/s", names[0]);
        for (i, (w, (l, _))) in links.iter().enumerate() {
            let _ = through_link(l, *w, WARMUP).await;
            let r = through_link(l, *w, d).await;
            rows[i + 1].push(r);
            ratios[i + 1].push(r / ceiling);
            println!(
                "round {round}: {}: {r:.0} submit_sm/s ({:.2} of the ceiling)",
                names[i + 1],
                r / ceiling
            );
        }
        // MO: a fresh driver and host per round (the host's lanes and pools start cold alike).
        let (driver, replies) = driver_smsc(100).await;
        let host = mo_host(driver).await;
        let mo = rate_of(&replies, d).await;
        host.shutdown(Duration::from_secs(5)).await;
        rows[4].push(mo);
        ratios[4].push(mo / ceiling);
        println!("round {round}: {}: {mo:.0} msg/s ({:.2} of the submit ceiling)", names[4], mo / ceiling);
    }
    for (_, (_, stop)) in &links {
        stop.cancel();
    }
    println!();
    println!("{} s measured, median of {rounds} interleaved rounds:", d.as_secs());
    println!("| row | per second | ÷ raw ceiling (same round) |");
    println!("|---|---:|---:|");
    for (i, name) in names.iter().enumerate() {
        println!("| {name} | {:.0} | {:.2} |", median(rows[i].clone()), median(ratios[i].clone()));
    }
}
