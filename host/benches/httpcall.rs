//! What a plugin's outbound HTTP call costs (`vumi:plugin/http`), beside the same call made
//! natively with reqwest, in the same run against the same local server.
//!
//! Rows, each a loop of sequential GETs of a 2-byte body over keep-alive, alternating over
//! rounds so that a noisy machine touches all of them alike:
//! - `native`: reqwest, as a host-side Rust service would call;
//! - `plugin`: the faulty test plugin's `http <url>`, one message (a pooled instance) making one
//!   call and replying with the body, through the harness (the host's own import code);
//! - `plugin, no call`: the same message path with no call (`ok`), to separate what the call
//!   adds from what a message costs anyway;
//! - `host egress, no plugin`: the host's side of the call alone (`egress::fetch`: the checks,
//!   the resolver-guarded client, the timeout, the capped read), to split the added cost between
//!   it and the WebAssembly boundary.
//!
//! Run: `cargo bench -p vumi-host --bench httpcall` (`VUMI_BENCH_CALLS`, default 5,000 a round).

mod common;

use std::time::{Duration, Instant};

use common::plugin_path;
use vumi_host::config::TenantLimits;
use vumi_host::harness::PluginHarness;

fn main() {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let app = axum::Router::new().route("/x", axum::routing::get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        let url = format!("http://{addr}/x");

        let limits = TenantLimits { http_calls_per_sec: 10_000_000, ..TenantLimits::default() };
        let plugin = PluginHarness::builder(plugin_path("faulty"))
            .http_limits(&[&addr.to_string()], &limits)
            .load()
            .await
            .expect("load faulty");
        let user = plugin.user("+27820000001");
        let native = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("client");
        let n: u32 = std::env::var("VUMI_BENCH_CALLS").ok().and_then(|s| s.parse().ok()).unwrap_or(5_000);
        let with_call = format!("http {url}");

        let grant = vumi_host::egress::HttpGrant::new(
            vec![vumi_host::config::AllowedHost::parse(&addr.to_string()).expect("entry")],
            "bench".into(),
            &limits,
            None,
        );
        let mut rows = [
            ("native reqwest", Vec::new()),
            ("plugin http", Vec::new()),
            ("plugin, no call", Vec::new()),
            ("host egress, no plugin", Vec::new()),
        ];
        // Round 0 warms up (connections, instance, caches); rounds 1..=5 are reported.
        for round in 0..=5 {
            let t = Instant::now();
            for _ in 0..n {
                let body = native.get(&url).send().await.expect("native call").bytes().await.expect("body");
                assert_eq!(&body[..], b"ok");
            }
            let native_us = per_call(t.elapsed(), n);
            let t = Instant::now();
            for _ in 0..n {
                let r = user.say(&with_call).await.expect("plugin call");
                assert_eq!(r[0].content.as_deref(), Some("http 200 ok"));
            }
            let plugin_us = per_call(t.elapsed(), n);
            let t = Instant::now();
            for _ in 0..n {
                user.say("no call").await.expect("plugin message");
            }
            let bare_us = per_call(t.elapsed(), n);
            let t = Instant::now();
            for _ in 0..n {
                let req = vumi_host::egress::Request {
                    method: "GET".into(),
                    url: url.clone(),
                    headers: Vec::new(),
                    body: None,
                    timeout: None,
                };
                let r = vumi_host::egress::fetch(&grant, req).await.expect("egress call");
                assert_eq!(r.body, b"ok");
            }
            let egress_us = per_call(t.elapsed(), n);
            if round > 0 {
                for (row, v) in rows.iter_mut().zip([native_us, plugin_us, bare_us, egress_us]) {
                    row.1.push(v);
                }
            }
        }
        let median = |v: &[f64]| {
            let mut s = v.to_vec();
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        };
        let base = median(&rows[0].1);
        println!("| row | µs per call (median of 5 rounds of {n}) | × native |");
        println!("|---|---|---|");
        for (name, v) in &rows {
            println!("| {name} | {:.1} | {:.2} |", median(v), median(v) / base);
        }
        let added = median(&rows[1].1) - median(&rows[2].1);
        println!("what the call adds to a message: {added:.1} µs = {:.2}× the native call", added / base);
    });
}

fn per_call(d: Duration, n: u32) -> f64 {
    d.as_secs_f64() * 1e6 / f64::from(n)
}
