//! Outbound HTTP from plugins (`vumi:plugin/http`, contract 0.2.1), against a real local server:
//! allowed calls answer; everything else (a host not listed, a name that resolves to loopback,
//! a redirect into the provider's network, a slow-loris callee, too many calls, a huge body) is
//! refused with its reason, and the server sees exactly the requests that were allowed.
//!
//! The calls go through the plugin harness (the same import code the host runs); the last test
//! runs them through a host with tenants, over telnet.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vumi_host::config::TenantLimits;
use vumi_host::harness::{HarnessBuilder, PluginHarness};

use crate::common::{Host, TempDir, plugin};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
}

/// A small HTTP/1.1 server on 127.0.0.1 whose paths misbehave on purpose; it records the path of
/// every request it reads.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Server {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, port, s.clone()));
            }
        });
        Self { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn entry(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(mut conn: tokio::net::TcpStream, port: u16, seen: Arc<Mutex<Vec<String>>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
    seen.lock().unwrap().push(path.clone());
    let reply = |status: &str, headers: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let out = match path.as_str() {
        "/hello" => reply("200 OK", "", "hello"),
        "/redirect-loopback" => {
            reply("302 Found", &format!("location: http://127.0.0.1:{port}/secret\r\n"), "")
        }
        "/redirect-metadata" => {
            reply("302 Found", "location: http://169.254.169.254/latest/meta-data/\r\n", "")
        }
        "/big" => reply("200 OK", "", &"x".repeat(5_000)),
        "/big-chunked" => {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await;
            for _ in 0..5 {
                let _ = conn.write_all(format!("3e8\r\n{}\r\n", "y".repeat(1_000)).as_bytes()).await;
            }
            let _ = conn.write_all(b"0\r\n\r\n").await;
            return;
        }
        "/trickle" => {
            // Headers at once, then a byte every 100 ms of a body announced as 10,000 bytes.
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10000\r\n\r\n").await;
            for _ in 0..10_000 {
                if conn.write_all(b"z").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            return;
        }
        "/silent" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
        _ => reply("404 Not Found", "", "no such page"),
    };
    let _ = conn.write_all(out.as_bytes()).await;
}

fn faulty() -> HarnessBuilder {
    PluginHarness::builder(plugin("faulty"))
}

/// The content of the plugin's one reply, or the failure's text.
async fn say(app: &PluginHarness, content: &str) -> Result<String, String> {
    match app.user("+27820000001").say(content).await {
        Ok(r) => Ok(r.first().and_then(|m| m.content.clone()).unwrap_or_default()),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn an_allowed_call_returns_the_response_and_a_404_is_a_response() {
    rt().block_on(async {
        let server = Server::start().await;
        let app = faulty().http_allow(&[&server.entry()]).load().await.expect("load");
        assert_eq!(say(&app, &format!("http {}", server.url("/hello"))).await.unwrap(), "http 200 hello");
        assert_eq!(
            say(&app, &format!("http {}", server.url("/missing"))).await.unwrap(),
            "http 404 no such page"
        );
        assert_eq!(server.seen(), ["/hello", "/missing"]);
    });
}

#[test]
fn a_host_not_on_the_list_is_refused_before_any_request() {
    rt().block_on(async {
        let server = Server::start().await;
        let app = faulty().http_allow(&["api.example.org"]).load().await.expect("load");
        let e = say(&app, &format!("http {}", server.url("/hello"))).await.unwrap_err();
        assert!(
            e.contains(&format!("not allowed: `127.0.0.1:{}` is not on the allow-list", server.port))
                && e.contains("api.example.org"),
            "{e}"
        );
        // The same port, another spelling of the address, or the right address on another port.
        for url in [
            format!("http://2130706433:{}/hello", server.port),
            format!("http://[::ffff:127.0.0.1]:{}/hello", server.port),
        ] {
            let e = say(&app, &format!("http {url}")).await.unwrap_err();
            assert!(e.contains("is not on the allow-list"), "{url}: {e}");
        }
        // Nothing listed at all: a plugin gets no network.
        let bare = faulty().load().await.expect("load");
        let e = say(&bare, &format!("http {}", server.url("/hello"))).await.unwrap_err();
        assert!(e.contains("the list is empty"), "{e}");
        // The marker: the next request the server sees is an allowed one, so none came before.
        let allowed = faulty().http_allow(&[&server.entry()]).load().await.expect("load");
        say(&allowed, &format!("http {}", server.url("/hello"))).await.unwrap();
        assert_eq!(server.seen(), ["/hello"], "refused calls reached the server");
    });
}

#[test]
fn a_listed_name_that_resolves_to_loopback_is_refused() {
    rt().block_on(async {
        let server = Server::start().await;
        // `localhost` is on the list by name; it resolves to 127.0.0.1 (and ::1), which a name may
        // never lead to: the DNS answer is checked, not just the name.
        let app = faulty().http_allow(&[&format!("localhost:{}", server.port)]).load().await.expect("load");
        let e = say(&app, &format!("http http://localhost:{}/hello", server.port)).await.unwrap_err();
        assert!(
            e.contains("not allowed: `localhost` resolves only to addresses a plugin may not reach")
                && e.contains("127.0.0.1 (loopback)"),
            "{e}"
        );
        let allowed = faulty().http_allow(&[&server.entry()]).load().await.expect("load");
        say(&allowed, &format!("http {}", server.url("/hello"))).await.unwrap();
        assert_eq!(server.seen(), ["/hello"]);
    });
}

#[test]
fn redirects_to_loopback_or_the_metadata_service_are_not_followed() {
    rt().block_on(async {
        let server = Server::start().await;
        let app = faulty().http_allow(&[&server.entry()]).load().await.expect("load");
        // Handed back as they are: following one would have fetched /secret or the metadata.
        assert_eq!(
            say(&app, &format!("http {}", server.url("/redirect-loopback"))).await.unwrap(),
            "http 302 "
        );
        assert_eq!(
            say(&app, &format!("http {}", server.url("/redirect-metadata"))).await.unwrap(),
            "http 302 "
        );
        assert_eq!(server.seen(), ["/redirect-loopback", "/redirect-metadata"], "the redirect was followed");
        // And a plugin that follows the location itself meets the list.
        let e = say(&app, "http http://169.254.169.254/latest/meta-data/").await.unwrap_err();
        assert!(e.contains("`169.254.169.254:80` is not on the allow-list"), "{e}");
    });
}

#[test]
fn a_slow_loris_callee_is_cut_off_at_the_timeout() {
    rt().block_on(async {
        let server = Server::start().await;
        let limits = TenantLimits { http_timeout_ms: 600, ..TenantLimits::default() };
        let app = faulty().http_limits(&[&server.entry()], &limits).load().await.expect("load");
        for path in ["/trickle", "/silent"] {
            let started = Instant::now();
            let e = say(&app, &format!("http {}", server.url(path))).await.unwrap_err();
            assert!(e.contains("timed out: no whole response from `127.0.0.1` within 600 ms"), "{path}: {e}");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{path}: cut off only after {:?}",
                started.elapsed()
            );
        }
        // The time spent waiting is not CPU: the deadline (500 ms) did not fire, the timeout did.
        assert_eq!(server.seen(), ["/trickle", "/silent"]);
    });
}

#[test]
fn calls_per_message_and_per_second_are_bounded() {
    rt().block_on(async {
        let server = Server::start().await;
        let limits =
            TenantLimits { http_calls_per_message: 2, http_calls_per_sec: 1_000, ..TenantLimits::default() };
        let app = faulty().http_limits(&[&server.entry()], &limits).load().await.expect("load");
        let e = say(&app, &format!("http-times 3 {}", server.url("/hello"))).await.unwrap_err();
        assert!(e.contains("http call 3: http over a limit: this message already made 2 HTTP calls"), "{e}");
        // The count is per message: the next one may make its two.
        assert_eq!(say(&app, &format!("http-times 2 {}", server.url("/hello"))).await.unwrap(), "made 2");
        // The handler failed, so its sends were discarded; its calls were made (and logged).
        assert_eq!(server.seen().len(), 4);

        let limits =
            TenantLimits { http_calls_per_message: 10, http_calls_per_sec: 3, ..TenantLimits::default() };
        let app = faulty().http_limits(&[&server.entry()], &limits).load().await.expect("load");
        let e = say(&app, &format!("http-times 10 {}", server.url("/hello"))).await.unwrap_err();
        assert!(e.contains("over the tenant's 3 HTTP calls per second"), "{e}");
    });
}

#[test]
fn a_response_over_the_size_cap_is_refused_whether_announced_or_chunked() {
    rt().block_on(async {
        let server = Server::start().await;
        let limits = TenantLimits { http_max_response_bytes: 4_096, ..TenantLimits::default() };
        let app = faulty().http_limits(&[&server.entry()], &limits).load().await.expect("load");
        let e = say(&app, &format!("http {}", server.url("/big"))).await.unwrap_err();
        assert!(
            e.contains(
                "response too large: `127.0.0.1` announced a body of 5000 bytes, over the cap of 4096"
            ),
            "{e}"
        );
        let e = say(&app, &format!("http {}", server.url("/big-chunked"))).await.unwrap_err();
        assert!(e.contains("response too large: `127.0.0.1` sent a body over the cap of 4096 bytes"), "{e}");
    });
}

#[test]
fn a_component_built_for_contract_0_2_0_loads_and_runs_unchanged() {
    rt().block_on(async {
        let fixture = crate::common::workspace().join("tests/e2e/fixtures/echo-contract-0.2.0.wasm");
        let app =
            PluginHarness::builder(fixture).load().await.expect("a 0.2.0 component loads in a 0.2.1 host");
        assert_eq!(app.plugin().world().to_string(), "vumi:plugin/application@0.2.1");
        let r = app.user("+27820000001").say("hi").await.expect("it answers");
        assert_eq!(r[0].content.as_deref(), Some("hi"));
    });
}

/// Through a host: tenant acme may call the local server and nothing else; its calls are
/// logged, counted per tenant, and a refused one is a failure record with the reason.
#[test]
fn a_tenants_calls_go_to_its_allow_list_only_and_are_logged_and_counted() {
    let server_rt = rt();
    let server = server_rt.block_on(Server::start());
    let dir = TempDir::new();
    let config = crate::tenants::hostile_config_with(
        dir.path(),
        &format!("http_allow = [\"{}\"]", server.entry()),
        "",
        "",
    );
    let host = Host::start(&config);
    let mut acme = host.connect_to("acme-telnet");
    assert_eq!(acme.line(), "faulty: ready");
    acme.send(&format!("http {}", server.url("/hello")));
    assert_eq!(acme.line(), "http 200 hello");
    acme.send("http http://169.254.169.254/latest/meta-data/");
    let failure = crate::tenants::failure_of(&host, "handler_error");
    assert_eq!(failure["tenant"], "acme");
    assert!(
        failure["reason"]
            .as_str()
            .unwrap()
            .contains("`169.254.169.254:80` is not on the allow-list (`tenants.acme.http_allow`"),
        "{failure}"
    );
    host.wait_for_log("plugin HTTP call");
    let metrics = host.metrics(crate::tenants::OPERATOR);
    assert!(metrics.contains(r#"vumi_http_calls_total{tenant="acme",outcome="ok"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"vumi_http_calls_total{tenant="acme",outcome="not_allowed"} 1"#), "{metrics}");
    assert_eq!(server.seen(), ["/hello"]);
}
