//! The RabbitMQ bus end to end, on the shared broker (127.0.0.1:5672, guest/guest): hosts that
//! split one config between them, and a legacy Vumi worker (plain AMQP through Python's `pika`,
//! installed from PyPI by the test) on the same queues in both directions. Each test names its
//! own connector, and its queues are deleted when it ends, passed or not.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{Host, Telnet, WAIT, http, plugin, workspace};

const TOKEN: &str = "amqp-test-token";

/// The shared broker must be up: a test fails, never skips, and says how to start it.
fn broker() {
    if std::net::TcpStream::connect_timeout(&"127.0.0.1:5672".parse().unwrap(), Duration::from_secs(2))
        .is_err()
    {
        panic!(
            "these tests need RabbitMQ on 127.0.0.1:5672 (guest/guest): start it with `rabbitmq-server -detached` or `systemctl start rabbitmq-server`"
        );
    }
}

/// A connector name of this test's own, and its queues, deleted on drop.
struct Connector(String);

impl Connector {
    fn new(prefix: &str) -> Self {
        broker();
        Connector(format!("{prefix}{}", vumi_host::message::test_run(10)))
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        // The sequencer's lines and done markers for this connector's users.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "redis-cli --scan --pattern 'vumi:seq:{{{}|*' | xargs -r redis-cli del >/dev/null",
                self.0
            ))
            .status();
        let queues: Vec<String> = [
            "inbound",
            "outbound",
            "event",
            "status",
            "failures",
            "inbound.retry.200ms",
            "inbound.retry.400ms",
        ]
        .iter()
        .map(|k| format!("{}.{k}", self.0))
        .collect();
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async {
            if let Ok(bus) = vumi_host::bus::AmqpBus::connect(vumi_host::bus::AmqpOptions::default()).await {
                for q in &queues {
                    let _ = bus.delete_queue(q).await;
                }
                vumi_host::bus::Bus::close(&bus).await;
            }
        });
    }
}

fn config(connector: &str, transport: bool) -> String {
    let transport = if transport {
        format!("[transports.{connector}]\nkind = \"telnet\"\nbind = \"127.0.0.1:0\"\n")
    } else {
        String::new()
    };
    format!(
        r#"
[host.bus]
kind = "amqp"

[admin]
bind = "127.0.0.1:0"
token = "{TOKEN}"

{transport}
[apps.echo]
plugin = "{}"
connector = "{connector}"
concurrency = 4
"#,
        plugin("echo").display()
    )
}

/// `vumi_messages_total{connector, queue="outbound"}` on `host`: the replies it published.
fn replies(host: &Host, connector: &str) -> f64 {
    let text = host.metrics(TOKEN);
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "vumi_messages_total"
                && s.labels.get("connector") == Some(connector)
                && s.labels.get("queue") == Some("outbound")
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn one_transport_host_and_two_app_hosts_answer_a_load_together() {
    let c = Connector::new("scale");
    let cfg = config(&c.0, true);
    // The app hosts first: they declare the app's queues (the transport host declares them too).
    let apps1 = Host::start_with(&cfg, &["--role", "@apps"]);
    let apps2 = Host::start_with(&cfg, &["--role", "echo"]);
    let transport = Host::start_with(&cfg, &["--role", "@transports"]);
    assert!(apps1.listening.is_empty() && apps2.listening.is_empty(), "app hosts run no transport");
    let mut t = Telnet::connect(transport.listening[&c.0]);
    t.line(); // the app's greeting, through the broker
    let n = 300;
    for i in 0..n {
        t.send(&format!("m{i}"));
    }
    let mut got = std::collections::BTreeSet::new();
    while got.len() < n {
        let l = t.line();
        assert!(l.starts_with('m'), "only echoes: {l:?}");
        assert!(got.insert(l.clone()), "one answer per line: {l} twice");
    }
    let (h1, h2) = (replies(&apps1, &c.0), replies(&apps2, &c.0));
    assert_eq!(h1 + h2, n as f64 + 1.0, "every message answered once (and the greeting)");
    assert!(h1 >= 10.0 && h2 >= 10.0, "both app hosts take part as competing consumers: {h1} and {h2}");
    for h in [&apps1, &apps2, &transport] {
        let health: serde_json::Value = http().get(h.admin_url("/health")).send().unwrap().json().unwrap();
        assert_eq!(health["result"]["bus"], "ok", "{health}");
    }
}

/// `pika` for the legacy worker, installed once per target directory from PyPI.
fn pika() -> std::path::PathBuf {
    let dir = workspace().join("target").join("py-pika");
    if !dir.join("pika").exists() {
        let out = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
            .arg(&dir)
            .arg("pika==1.3.2")
            .output()
            .expect("python3 is needed for the legacy-interop tests");
        assert!(
            out.status.success(),
            "cannot install pika from PyPI: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

/// The legacy worker, started; returns once it has declared its queues.
struct Legacy {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Legacy {
    fn start(mode: &str, connector: &str, n: usize) -> Legacy {
        let mut child = Command::new("python3")
            .arg(workspace().join("tests/e2e/legacy_vumi.py"))
            .args([mode, connector, &n.to_string()])
            .env("PYTHONPATH", pika())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let mut l = Legacy { child, lines };
        assert_eq!(l.next()["ready"], true);
        l
    }

    fn next(&mut self) -> serde_json::Value {
        let line = self.lines.recv_timeout(WAIT * 2).expect("a line from the legacy worker in time");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(v.get("error").is_none(), "legacy worker: {v}");
        v
    }
}

impl Drop for Legacy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_legacy_vumi_transport_is_answered_by_our_app_and_its_bad_body_set_aside() {
    let c = Connector::new("legacyt");
    // Our app host alone: the transport is the legacy worker.
    let app = Host::start(&config(&c.0, false));
    let n = 20;
    let mut legacy = Legacy::start("transport", &c.0, n);
    for _ in 0..n {
        let r = legacy.next();
        let asked = &r["asked"];
        assert!(asked.is_object(), "every reply answers a message the legacy transport sent: {r}");
        let reply = &r["reply"];
        // NUL, controls and emoji among them: the model, the plugin and the bus pass text as
        // it is (Vumi 0.6 sends all of these; NUL once got no reply).
        assert_eq!(reply["content"], asked["content"], "echoed, é, NUL, ESC and 😀 and all");
        assert_eq!(reply["to_addr"], asked["from_addr"]);
        assert_eq!(reply["transport_name"], c.0.as_str());
        assert_eq!(reply["transport_metadata"], asked["transport_metadata"], "kept for the transport");
        let id = reply["message_id"].as_str().unwrap();
        assert!(
            id.len() == 32 && id.chars().all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase()),
            "a Vumi id: {id}"
        );
        assert_eq!(r["ascii"], true, "bodies are ASCII JSON, as Vumi writes them");
        assert_eq!(r["delivery_mode"], 2);
    }
    // The undecodable body went to the failures queue, with the reason.
    let failures = app.wait_for_log("set aside on the failures queue");
    assert!(failures.contains(&format!("{}.failures", c.0)), "{failures}");
}

#[test]
fn our_telnet_transport_feeds_a_legacy_vumi_application() {
    let c = Connector::new("legacya");
    let mut cfg = config(&c.0, true);
    // Only the transport here: the application is the legacy worker.
    cfg = cfg.replace("[apps.echo]", "[apps.unused]");
    // Typed at the terminal, as the legacy app gets it, and as our telnet shows its answer.
    let lines = [
        ("hi", "hi", "hi"),
        ("nul\0in", "nul\0in", "nul\u{2400}in"),
        ("grin \u{1F600}", "grin \u{1F600}", "grin \u{1F600}"),
        ("esc\u{1b}[2J bel\u{7}", "esc\u{1b}[2J bel\u{7}", "esc\u{241B}[2J bel\u{2407}"),
        ("caf\u{e9}", "caf\u{e9}", "caf\u{e9}"),
    ];
    let n = lines.len();
    let mut legacy = Legacy::start("app", &c.0, n);
    let host = Host::start_with(&cfg, &["--role", "@transports"]);
    let mut t = Telnet::connect(host.listening[&c.0]);
    for (i, (typed, content, shown)) in lines.iter().enumerate() {
        t.send(&format!("{typed} {i}"));
        let l = t.until("legacy: ");
        assert!(l.contains(&format!("legacy: {shown} {i}")), "{l:?}");
        let asked = legacy.next();
        assert_eq!(asked["answered"]["content"], format!("{content} {i}"), "the bus carried it as typed");
        assert_eq!(asked["answered"]["transport_type"], "telnet");
    }
}

#[test]
fn one_users_messages_stay_in_order_across_two_app_hosts() {
    let c = Connector::new("order");
    // Redis holds the per-user lines; the app hosts compete for the inbound queue. The app
    // takes 120 ms over every other message and 5 ms over the rest, so without per-user order
    // a quick message on one host overtakes a slow one on the other.
    let cfg = config(&c.0, true)
        .replace("[admin]", "[host.state]\nkind = \"redis\"\n\n[admin]")
        .replace(&plugin("echo").display().to_string(), &plugin("faulty").display().to_string());
    let apps1 = Host::start_with(&cfg, &["--role", "@apps"]);
    let apps2 = Host::start_with(&cfg, &["--role", "@apps"]);
    let transport = Host::start_with(&cfg, &["--role", "@transports"]);
    let mut t = Telnet::connect(transport.listening[&c.0]);
    t.line(); // greeting
    let n = 40;
    // One user (one telnet session) typing quickly, 40 ms between lines: far more than a Redis
    // round trip (the documented exception), far less than the slow messages take.
    for i in 0..n {
        t.send(&format!("nap {} m{i}", if i % 2 == 0 { 120 } else { 5 }));
        std::thread::sleep(Duration::from_millis(40));
    }
    for i in 0..n {
        assert_eq!(t.line(), format!("m{i}"), "answers in the order typed");
    }
    let (h1, h2) = (replies(&apps1, &c.0), replies(&apps2, &c.0));
    assert_eq!(h1 + h2, n as f64 + 1.0);
    assert!(h1 >= 5.0 && h2 >= 5.0, "both app hosts took part: {h1} and {h2}");
}

/// The next body on `queue`, taken with a raw AMQP client, as JSON (waits up to `WAIT`).
fn take_json(queue: &str) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let conn =
            lapin::Connection::connect("amqp://127.0.0.1:5672/%2f", lapin::ConnectionProperties::default())
                .await
                .expect("raw connection");
        let ch = conn.create_channel().await.expect("channel");
        let got = crate::common::eventually_async(&format!("a message on `{queue}`"), || async {
            let opts = lapin::options::BasicGetOptions { no_ack: true };
            ch.basic_get(queue.into(), opts).await.expect("basic.get").ok_or_else(|| "nothing yet".to_owned())
        })
        .await;
        let _ = conn.close(200, "done".into()).await;
        assert!(got.delivery.data.is_ascii(), "ASCII JSON");
        serde_json::from_slice(&got.delivery.data).expect("JSON")
    })
}

#[test]
fn a_message_held_up_waits_in_delay_tier_queues_and_final_failures_reach_the_failures_queue() {
    let c = Connector::new("retry");
    let cfg = config(&c.0, true)
        .replace(
            "[admin]",
            "[host.retry]\ninitial_ms = 10\nmax_ms = 20\nmax_attempts = 2\ntiers_ms = [200, 400]\n\n[admin]",
        )
        .replace(&plugin("echo").display().to_string(), &plugin("faulty").display().to_string());
    let host = Host::start(&cfg);
    let mut t = Telnet::connect(host.listening[&c.0]);
    t.line(); // greeting
    // Refused 5 times: twice in place, twice after the 200 ms tier, answered after the 400 ms
    // one. The same user's next message goes on while it waits off the queue.
    let started = std::time::Instant::now();
    t.send("retry 5");
    t.send("marker");
    assert_eq!(t.line(), "ok: marker");
    assert_eq!(t.line(), "retried after 5");
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "both tiers waited out: {:?}",
        started.elapsed()
    );
    // A deterministic failure goes straight to `<connector>.failures`; one still held up after
    // the last tier goes there as temporary.
    t.send("trap");
    t.send("retry 50");
    t.send("after");
    assert_eq!(t.line(), "ok: after", "the queue flowed past both");
    let failures = format!("{}.failures", c.0);
    let first = take_json(&failures);
    assert_eq!(
        (first["message_type"].as_str(), first["failure_code"].as_str(), first["kind"].as_str()),
        (Some("failure_message"), Some("permanent"), Some("trap")),
        "{first}"
    );
    assert_eq!(first["message"]["content"], "trap", "the whole message: {first}");
    assert!(first["reason"].as_str().unwrap().contains("plugin trapped"), "{first}");
    let second = take_json(&failures);
    assert_eq!(
        (second["failure_code"].as_str(), second["kind"].as_str()),
        (Some("temporary"), Some("retry_later")),
        "{second}"
    );
    let reason = second["reason"].as_str().unwrap();
    assert!(reason.contains("asked to retry (6 of 50)") && reason.contains("2 delay tiers"), "{reason}");
    assert_eq!(second["message"]["content"], "retry 50");
    // And the admin API lists both.
    let listed: serde_json::Value =
        http().get(host.admin_url("/failures")).bearer_auth(TOKEN).send().unwrap().json().unwrap();
    let kinds: Vec<&str> = listed["result"]["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["trap", "retry_later"], "{listed}");
    let out = crate::common::vumi()
        .args(["failures", "--admin-url", &host.admin_url(""), "--token", TOKEN])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("[trap, permanent]") && text.contains("[retry_later, temporary]"),
        "`vumi failures` shows each code: {text}"
    );
}
