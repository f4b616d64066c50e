//! The Redis state store, through the binary: a USSD session and the survey's answers outlive
//! the host that started them, because both live in Redis (`[host.state] kind = "redis"`),
//! against this machine's Redis at 127.0.0.1:6379.

use crate::common::{Host, plugin};
use crate::http_channels::ussd;
use crate::survey::QUESTIONS;

const REDIS: &str = "127.0.0.1:6379";

/// Fail, saying how to start it, if Redis is not there: never pass silently.
fn require_redis() {
    if std::net::TcpStream::connect(REDIS).is_err() {
        panic!(
            "this test needs Redis at {REDIS}: start one with `redis-server --port 6379 --save '' --appendonly no`"
        );
    }
}

/// The survey over USSD on the shared Redis, its app named after the run (`survey_<run>`), so
/// every key it writes names the run.
fn ussd_on_redis(run: &str) -> Host {
    Host::start(&format!(
        r#"
[host.state]
kind = "redis"
url = "redis://{REDIS}"

[http]
bind = "127.0.0.1:0"

[transports.ussd]
kind = "ussd_at"
path = "/ussd"
response_deadline_ms = 10000

[apps.survey_{run}]
plugin = "{}"
connector = "ussd"
{}
"#,
        plugin("survey").display(),
        QUESTIONS.replace("[apps.app.", &format!("[apps.survey_{run}."))
    ))
}

/// Delete what the run left in the shared Redis: every key naming its session, its user or its
/// app.
fn clean(run: &str, session: &str, phone: &str) {
    crate::common::clean_shared_redis(&[format!("*{session}*"), format!("*{phone}*"), format!("*{run}*")]);
}

#[test]
fn a_ussd_survey_continues_on_a_new_host_when_state_is_in_redis() {
    require_redis();
    let run = &vumi_host::message::test_run(12);
    let session = format!("session-{run}");
    // A phone number unique to the run, so no earlier run's answers are found.
    let digits: String = run.bytes().rev().take(12).map(|b| char::from(b'0' + b % 10)).collect();
    let phone = format!("+27{digits}");

    let first = ussd_on_redis(run);
    let q1 = ussd(&first, &session, &phone, "");
    assert!(q1.starts_with("CON ") && q1.contains("Favourite colour?"), "{q1:?}");
    let q2 = ussd(&first, &session, &phone, "3");
    assert!(q2.contains("Favourite season?"), "{q2:?}");
    drop(first);

    // Another host process, the same Redis: the aggregator's next request for the session
    // carries every input so far. The transport finds the session (so the app is given only
    // `2`), and the survey finds its answers: the last answer ends it. On a fresh in-memory
    // store this would be a new session, and the survey would start again.
    let second = ussd_on_redis(run);
    let end = ussd(&second, &session, &phone, "3*2");
    clean(run, &session, &phone);
    assert!(end.starts_with("END "), "the survey ended on the second host: {end:?}");
    assert!(end.contains("Blue") && end.contains("Winter"), "with both answers, one from each host: {end:?}");
}

/// A `redis-server` of the test's own, on its own port and directory, so that stopping it
/// touches nothing else. Killed on drop.
struct PrivateRedis {
    child: std::process::Child,
    port: u16,
    /// Its data; handed back by [`PrivateRedis::stop`] for a restart in the same place.
    dir: Option<crate::common::TempDir>,
}

impl PrivateRedis {
    /// On `port`, in `dir`; `durable` keeps every write in an append-only file (`appendfsync
    /// always`), so a restart in the same directory loses nothing.
    fn start_on(port: u16, dir: crate::common::TempDir, durable: bool) -> PrivateRedis {
        let aof = if durable {
            ["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            ["--appendonly", "no", "--appendfsync", "no"]
        };
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(aof)
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("run redis-server (Debian's redis-server package)");
        crate::common::eventually(&format!("redis-server to listen on port {port}"), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).map(drop).map_err(|e| e.to_string())
        });
        PrivateRedis { child, port, dir: Some(dir) }
    }

    fn start(durable: bool) -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::start_on(port, crate::common::TempDir::new(), durable)
    }

    /// Stop it; the port and directory are kept for [`PrivateRedis::start_on`].
    fn stop(mut self) -> (u16, crate::common::TempDir) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        (self.port, self.dir.take().expect("a running instance has its directory"))
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The admin token of the outage tests.
const TOKEN: &str = "test-admin-token";

/// Redis on `port` with short timeouts, retries patient enough to outlast the outage, the
/// admin API (for `/metrics` and `/health`) and HTTP.
fn outage_header(port: u16) -> String {
    format!(
        r#"
[host.state]
kind = "redis"
url = "redis://127.0.0.1:{port}"
response_timeout_ms = 200
connection_timeout_ms = 200
reconnect_max_delay_ms = 200

[host.retry]
initial_ms = 100
max_ms = 500
max_attempts = 200

[admin]
bind = "127.0.0.1:0"
token = "{TOKEN}"

[http]
bind = "127.0.0.1:0"
"#
    )
}

/// Wait until `/metrics` counts at least two retries for `reason`: the outage was met.
fn wait_for_retries(host: &Host, token: &str, reason: &str) {
    let retries = || {
        let text = host.metrics(token);
        text.lines()
            .filter(|l| l.starts_with("vumi_retries_total") && l.contains(reason))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    crate::common::eventually(&format!("retries ({reason}) while Redis is down"), || {
        if retries() >= 2.0 { Ok(()) } else { Err(host.log()) }
    });
}

#[test]
fn a_message_that_meets_redis_down_waits_and_is_answered_once_redis_is_back() {
    const DURABLE: bool = false;
    let redis = PrivateRedis::start(DURABLE);
    let aggregator = crate::common::Recorder::start(0);
    let host = Host::start(&format!(
        r#"{}

[transports.sms]
kind = "sms_http"
outbound_url = "{}"

[apps.app]
plugin = "{}"
connector = "sms"
{QUESTIONS}
"#,
        outage_header(redis.port),
        aggregator.url("/sms"),
        plugin("survey").display()
    ));
    let sms = |content: &str| {
        let resp = crate::common::http()
            .post(host.url("/transports/sms/inbound"))
            .form(&[("from", "+27820000077"), ("to", "5555"), ("content", content)])
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200, "the SMS is accepted: the transport needs no state to take it");
    };
    sms("hi");
    assert!(
        aggregator.wait_for(1)[0].json()["content"]
            .as_str()
            .unwrap_or_default()
            .contains("Favourite colour?")
    );

    let (port, dir) = redis.stop();
    sms("3");
    // The survey's kv read fails: the lane waits and retries, visibly.
    wait_for_retries(&host, TOKEN, "retry_later");
    assert_eq!(aggregator.received().len(), 1, "nothing was answered while Redis was down");
    let health = crate::common::http().get(host.admin_url("/health")).send().unwrap();
    assert_eq!(health.status(), 503, "/health says the state store is down");
    let body: serde_json::Value = health.json().unwrap();
    assert!(body["result"]["state"].as_str().unwrap_or_default().contains("unavailable"), "{body}");

    let _redis = PrivateRedis::start_on(port, dir, DURABLE);
    // Redis came back empty (no persistence): the survey has forgotten the user, so the waiting
    // message is answered as a first one. It is answered, once, and not failed.
    let got = aggregator.wait_for(2);
    assert_eq!(
        crate::common::http().get(host.admin_url("/health")).send().unwrap().status(),
        200,
        "and that it is back"
    );
    assert!(
        got[1].json()["content"].as_str().unwrap_or_default().contains("Favourite colour?"),
        "{:?}",
        got[1].json()
    );
    sms("3");
    let got = aggregator.wait_for(3);
    assert!(
        got[2].json()["content"].as_str().unwrap_or_default().contains("Favourite season?"),
        "and the survey goes on: {:?}",
        got[2].json()
    );
    assert_eq!(got.len(), 3, "one answer per message");
    assert!(!host.log().contains("failure path"), "nothing went to the failure path:\n{}", host.log());
}

#[test]
fn a_channel_waits_for_redis_before_handing_an_inbound_message_on_so_reply_to_still_works() {
    const DURABLE: bool = false;
    let redis = PrivateRedis::start(DURABLE);
    let (mo, aggregator) = (crate::common::Recorder::start(0), crate::common::Recorder::start(0));
    let host = Host::start(&format!(
        r#"{}

[transports.sms]
kind = "sms_http"
outbound_url = "{}"

[channels.api]
connector = "sms"
token = "test-token-1"
mo_url = "{}"
"#,
        outage_header(redis.port),
        aggregator.url("/sms"),
        mo.url("/mo")
    ));
    let (port, dir) = redis.stop();
    let resp = crate::common::http()
        .post(host.url("/transports/sms/inbound"))
        .form(&[("from", "+27820000088"), ("to", "5555"), ("content", "hello")])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    wait_for_retries(&host, TOKEN, "unavailable");
    assert!(mo.received().is_empty(), "not handed on before it is stored");
    let _redis = PrivateRedis::start_on(port, dir, DURABLE);
    let inbound = mo.wait_for(1)[0].json();
    assert_eq!(inbound["content"], "hello");
    // It was stored, so the app behind the mo_url can answer it.
    let reply = crate::common::post_json(
        &host,
        "/api/v1/channels/api/messages",
        Some("test-token-1"),
        &serde_json::json!({"reply_to": inbound["message_id"], "content": "hi back"}),
    );
    assert_eq!(reply.status(), 201, "{}", reply.text().unwrap());
    let sent = aggregator.wait_for(1)[0].json();
    assert_eq!((sent["to"].as_str(), sent["content"].as_str()), (Some("+27820000088"), Some("hi back")));
    assert!(!host.log().contains("failure path"), "nothing went to the failure path:\n{}", host.log());
}

#[test]
fn a_sent_sms_is_remembered_once_redis_is_back_so_its_delivery_report_is_taken() {
    // With an append-only file, as in production: the send API's record survives the restart.
    const DURABLE: bool = true;
    let redis = PrivateRedis::start(DURABLE);
    let aggregator = crate::common::Recorder::start(0);
    let host = Host::start(
        &(outage_header(redis.port) + &crate::common::sms_channel_config(&aggregator.url("/sms"), "", "")),
    );
    // Stored by the send API while Redis is up; the aggregator holds the POST.
    aggregator.hold();
    let resp = crate::common::post_json(
        &host,
        "/api/v1/channels/api/messages",
        Some("test-token-1"),
        &serde_json::json!({"to": "+27820000099", "content": "hello"}),
    );
    assert_eq!(resp.status(), 201);
    let id = resp.json::<serde_json::Value>().unwrap()["result"]["message_id"].as_str().unwrap().to_owned();
    // Redis goes down while the aggregator has the message; then the aggregator answers
    // `agg-0`, and the transport cannot store what its delivery reports need: it waits.
    let (port, dir) = redis.stop();
    aggregator.release();
    aggregator.wait_for(1);
    wait_for_retries(&host, TOKEN, "unavailable");
    let _redis = PrivateRedis::start_on(port, dir, DURABLE);
    // Redis is back, with what it had. The ack is published only after the record is stored: once the
    // message shows `sent`, its delivery report must be taken.
    crate::common::eventually("the message acked", || {
        let got = crate::common::http()
            .get(host.url(&format!("/api/v1/channels/api/messages/{id}")))
            .bearer_auth("test-token-1")
            .send()
            .unwrap();
        if got.status() == 200 && got.json::<serde_json::Value>().unwrap()["result"]["status"] == "sent" {
            Ok(())
        } else {
            Err(host.log())
        }
    });
    let dr = crate::common::http()
        .post(host.url("/transports/sms/delivery-report"))
        .form(&[("message_id", "agg-0"), ("status", "delivered")])
        .send()
        .unwrap();
    let (status, body) = (dr.status(), dr.text().unwrap());
    assert_eq!(status, 200, "the report found its message: {body}");
    assert!(body.contains(&id), "ours, {id}: {body}");
    assert!(!host.log().contains("its delivery reports will be refused"), "{}", host.log());
}
