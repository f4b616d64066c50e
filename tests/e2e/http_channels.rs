//! HTTP channels end to end, with a real HTTP client against the running binary and real
//! local HTTP servers playing the aggregator and the `mo_url`/`event_url` receivers.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Host, Recorder, http, plugin, post_json};
use crate::survey::QUESTIONS;

fn ussd_host(deadline_ms: u64, app_plugin: &str, app_extra: &str) -> Host {
    Host::start(&format!(
        r#"
[http]
bind = "127.0.0.1:0"

[transports.ussd]
kind = "ussd_at"
path = "/ussd"
response_deadline_ms = {deadline_ms}

[apps.survey]
plugin = "{}"
connector = "ussd"
{app_extra}
"#,
        plugin(app_plugin).display()
    ))
}

/// One Africa's Talking request; the response body.
pub fn ussd(host: &Host, session: &str, phone: &str, text: &str) -> String {
    let resp = http()
        .post(host.url("/ussd"))
        .form(&[("sessionId", session), ("serviceCode", "*120*7#"), ("phoneNumber", phone), ("text", text)])
        .send()
        .expect("POST /ussd");
    assert_eq!(resp.status(), 200, "USSD requests are answered 200");
    resp.text().expect("body")
}

#[test]
fn a_whole_survey_over_ussd_with_two_sessions_interleaved() {
    let host = ussd_host(10_000, "survey", &QUESTIONS.replace("apps.app", "apps.survey"));
    let a = ussd(&host, "session-a", "+27820000001", "");
    let b = ussd(&host, "session-b", "+27820000002", "");
    for first in [&a, &b] {
        assert!(first.starts_with("CON "), "a new session continues: {first:?}");
        assert!(
            first.contains("Favourite colour?") && first.contains("3. Blue"),
            "question 1 first: {first:?}"
        );
    }
    // Africa's Talking sends every input so far, joined by `*`; the app sees only the newest.
    let a2 = ussd(&host, "session-a", "+27820000001", "3");
    let b2 = ussd(&host, "session-b", "+27820000002", "9");
    assert!(a2.starts_with("CON ") && a2.contains("Favourite season?"), "A advances: {a2:?}");
    assert!(
        b2.starts_with("CON ") && b2.contains("Favourite colour?"),
        "B's invalid answer is asked again: {b2:?}"
    );
    let b3 = ussd(&host, "session-b", "+27820000002", "9*1");
    assert!(b3.contains("Favourite season?"), "B advances after a valid answer: {b3:?}");
    let a3 = ussd(&host, "session-a", "+27820000001", "3*2");
    assert!(a3.starts_with("END "), "the last answer ends the session: {a3:?}");
    assert!(a3.contains("Blue") && a3.contains("Winter"), "A's summary has A's answers: {a3:?}");
    let b4 = ussd(&host, "session-b", "+27820000002", "9*1*1");
    assert!(
        b4.starts_with("END ") && b4.contains("Red") && b4.contains("Summer"),
        "B's summary has B's: {b4:?}"
    );
    assert!(!b4.contains("Blue"), "sessions keep separate state: {b4:?}");
}

#[test]
fn a_late_app_gets_the_user_a_polite_end() {
    let host = ussd_host(300, "faulty", "deadline_ms = 3000");
    let first = ussd(&host, "slow", "+27820000003", "");
    assert_eq!(first, "CON faulty: ready");
    let started = std::time::Instant::now();
    let late = ussd(&host, "slow", "+27820000003", "loop");
    assert!(
        late.starts_with("END ") && late.contains("taking too long"),
        "a late app ends the session politely: {late:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the user is answered at the transport's deadline, not the app's"
    );
    host.wait_for_log("did not answer a USSD request in time");
    // The app is stopped at its own CPU deadline; then the session is over, and the same id
    // starts afresh (one user's messages are handled in order, so this waits for the loop).
    host.wait_for_log("message sent to the failure path");
    let again = ussd(&host, "slow", "+27820000003", "loop*x");
    assert_eq!(again, "CON faulty: ready", "a closed session's id starts a new session");
}

#[test]
fn bad_ussd_requests_are_400_naming_each_field() {
    let host = ussd_host(1000, "survey", &QUESTIONS.replace("apps.app", "apps.survey"));
    let resp =
        http().post(host.url("/ussd")).form(&[("sessionId", "x"), ("phoneNumber", "")]).send().unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().unwrap();
    let fields: Vec<&str> =
        body["result"]["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["serviceCode", "phoneNumber", "text"], "each bad field is named: {body}");
    let resp = http()
        .post(host.url("/ussd"))
        .body("sessionId=%FF&text=")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().unwrap().contains("UTF-8"), "invalid UTF-8 is named");
    let resp = http().post(host.url("/nowhere")).body("x").send().unwrap();
    assert_eq!(resp.status(), 404);
}

/// A host with the SMS transport sending to `aggregator` and a channel `api` on it.
fn sms_host(aggregator: &Recorder, channel_extra: &str, rest: &str) -> Host {
    Host::start(&format!(
        r#"
[http]
bind = "127.0.0.1:0"
max_body_bytes = 2048

[transports.sms]
kind = "sms_http"
outbound_url = "{}"
retry = {{ initial_ms = 200, max_ms = 5000, max_attempts = 2 }}

[channels.api]
connector = "sms"
token = "test-token-1"
default_from = "5555"
{channel_extra}

[callbacks]
retry = {{ initial_ms = 50, max_ms = 200, max_attempts = 4 }}
{rest}
"#,
        aggregator.url("/sms")
    ))
}

#[test]
fn a_message_sent_through_the_api_is_acked_and_its_events_reach_the_event_url() {
    let aggregator = Recorder::start(0);
    let events = Recorder::start(0);
    let host = sms_host(&aggregator, &format!("event_url = \"{}\"", events.url("/events")), "");

    let resp = post_json(
        &host,
        "/api/v1/channels/api/messages",
        Some("test-token-1"),
        &json!({
            "to": "+27820000009", "content": "Your code is 1234", "helper_metadata": {"campaign": "otp"}
        }),
    );
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().unwrap();
    let msg = &created["result"];
    let id = msg["message_id"].as_str().expect("an id").to_owned();
    assert_eq!(msg["to_addr"], "+27820000009");
    assert_eq!(msg["from_addr"], "5555", "`from` defaults to the channel's default_from");
    assert_eq!(msg["message_version"], "20110921");
    assert_eq!(msg["helper_metadata"]["campaign"], "otp");
    assert_eq!(msg["status"], "queued");
    assert!(msg["timestamp"].as_str().is_some());

    // The transport POSTs it to the aggregator...
    let sent = aggregator.wait_for(1);
    assert_eq!(sent[0].path, "/sms");
    let sms = sent[0].json();
    assert_eq!(
        (sms["to"].as_str(), sms["content"].as_str(), sms["message_id"].as_str()),
        (Some("+27820000009"), Some("Your code is 1234"), Some(id.as_str()))
    );
    // ... whose answer becomes an ack, POSTed to the event_url.
    let got = events.wait_for(1);
    let ack = got[0].json();
    assert_eq!(ack["event_type"], "ack");
    assert_eq!(ack["user_message_id"], id.as_str());
    assert_eq!(ack["sent_message_id"], "agg-0", "the aggregator's id is kept");

    // The aggregator reports delivery by its own id.
    let dr = http()
        .post(host.url("/transports/sms/delivery-report"))
        .form(&[("message_id", "agg-0"), ("status", "delivered")])
        .send()
        .unwrap();
    assert_eq!(dr.status(), 200);
    let got = events.wait_for(2);
    assert_eq!(got[1].json()["event_type"], "delivery_report");
    assert_eq!(got[1].json()["delivery_status"], "delivered");

    let status: Value = http()
        .get(host.url(&format!("/api/v1/channels/api/messages/{id}")))
        .bearer_auth("test-token-1")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["result"]["status"], "delivered", "{status}");
    let kinds: Vec<&str> = status["result"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ack", "delivery_report"]);
}

#[test]
fn an_aggregator_refusal_is_a_nack() {
    let aggregator = Recorder::start(usize::MAX);
    let events = Recorder::start(0);
    let host = sms_host(&aggregator, &format!("event_url = \"{}\"", events.url("/events")), "");
    let resp = post_json(
        &host,
        "/api/v1/channels/api/messages",
        Some("test-token-1"),
        &json!({"to": "+1", "content": "hi"}),
    );
    assert_eq!(resp.status(), 201);
    let nack = events.wait_for(1)[0].json();
    assert_eq!(nack["event_type"], "nack");
    let reason = nack["nack_reason"].as_str().unwrap();
    assert!(reason.contains("500") && reason.contains("after 2 attempts"), "the nack says why: {reason}");
    assert_eq!(aggregator.received().len(), 2, "a 5xx is retried up to max_attempts");
}

#[test]
fn inbound_sms_reaches_the_mo_url_and_a_reply_through_the_api_reaches_the_transport() {
    let aggregator = Recorder::start(0);
    let mo = Recorder::start(0);
    let host = sms_host(&aggregator, &format!("mo_url = \"{}\"", mo.url("/mo")), "");

    let resp = http()
        .post(host.url("/transports/sms/inbound"))
        .form(&[
            ("from", "+27820000010"),
            ("to", "5555"),
            ("content", "hello there"),
            ("message_id", "their-7"),
        ])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let inbound_id = resp.json::<Value>().unwrap()["result"]["message_id"].as_str().unwrap().to_owned();

    let got = mo.wait_for(1);
    assert!(got[0].content_type.starts_with("application/json"));
    let msg = got[0].json();
    assert_eq!(msg["message_type"], "user_message", "the mo_url gets Vumi JSON");
    assert_eq!(msg["message_id"], inbound_id.as_str());
    assert_eq!(msg["content"], "hello there");
    assert_eq!(msg["from_addr"], "+27820000010");
    assert_eq!(msg["transport_name"], "sms");
    assert_eq!(msg["transport_metadata"]["aggregator_message_id"], "their-7");

    let resp = post_json(
        &host,
        "/api/v1/channels/api/messages",
        Some("test-token-1"),
        &json!({"reply_to": inbound_id, "content": "hi yourself"}),
    );
    assert_eq!(resp.status(), 201);
    let reply: Value = resp.json().unwrap();
    assert_eq!(reply["result"]["in_reply_to"], inbound_id.as_str(), "Vumi reply semantics");
    assert_eq!(reply["result"]["to_addr"], "+27820000010", "addresses swapped");
    assert_eq!(reply["result"]["from_addr"], "5555");
    let sms = aggregator.wait_for(1)[0].json();
    assert_eq!((sms["to"].as_str(), sms["content"].as_str()), (Some("+27820000010"), Some("hi yourself")));
    assert_eq!(sms["in_reply_to"], inbound_id.as_str());

    // JSON works for inbound too.
    let resp = http()
        .post(host.url("/transports/sms/inbound"))
        .json(&json!({"from": "+27820000011", "to": "5555", "content": "second"}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(mo.wait_for(2)[1].json()["content"], "second");
}

#[test]
fn callbacks_are_retried_when_the_callback_server_fails_first() {
    let aggregator = Recorder::start(0);
    let mo = Recorder::start(2);
    let host = sms_host(&aggregator, &format!("mo_url = \"{}\"", mo.url("/mo")), "");
    let resp = http()
        .post(host.url("/transports/sms/inbound"))
        .form(&[("from", "+1"), ("to", "5555"), ("content", "retry me")])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "the aggregator is answered at once, whatever the callback server does");
    let got = mo.wait_for(3);
    let ids: Vec<Value> = got.iter().map(|r| r.json()["message_id"].clone()).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "the same message is retried: {ids:?}");
    assert!(got.iter().all(|r| r.json()["content"] == "retry me"));
    // A marker after it: by the time the marker arrives, a repeat of the delivered one would have.
    http()
        .post(host.url("/transports/sms/inbound"))
        .form(&[("from", "+1"), ("to", "5555"), ("content", "marker")])
        .send()
        .unwrap();
    let got = mo.wait_for(4);
    assert_eq!(
        got[3].json()["content"],
        "marker",
        "once delivered it is not sent again: {:?}",
        got.iter().map(|r| r.json()["content"].clone()).collect::<Vec<_>>()
    );
}

#[test]
fn a_dead_callback_server_never_blocks_message_flow_and_ends_on_the_failure_path() {
    let aggregator = Recorder::start(0);
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/mo", dead.local_addr().unwrap());
    drop(dead);
    let host = sms_host(&aggregator, &format!("mo_url = \"{dead_url}\""), "");
    let started = std::time::Instant::now();
    for i in 0..20 {
        let resp = http()
            .post(host.url("/transports/sms/inbound"))
            .form(&[("from", "+1"), ("to", "5555"), ("content", &format!("m{i}"))])
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "inbound flow is not held up by the dead callback server"
    );
    // Sends keep working too.
    let resp = post_json(
        &host,
        "/api/v1/channels/api/messages",
        Some("test-token-1"),
        &json!({"to": "+2", "content": "still here"}),
    );
    assert_eq!(resp.status(), 201);
    aggregator.wait_for(1);
    let log = host.wait_for_log("after 4 attempts");
    assert!(log.contains("message sent to the failure path") && log.contains("callback"), "{log}");
}

#[test]
fn the_send_api_refuses_bad_requests_clearly() {
    let aggregator = Recorder::start(0);
    let host = sms_host(&aggregator, "", "");
    let path = "/api/v1/channels/api/messages";
    let body = json!({"to": "+1", "content": "x"});
    assert_eq!(post_json(&host, path, None, &body).status(), 401, "no token");
    assert_eq!(post_json(&host, path, Some("wrong-token"), &body).status(), 403, "wrong token");
    assert_eq!(
        post_json(&host, "/api/v1/channels/nope/messages", Some("test-token-1"), &body).status(),
        404,
        "unknown channel"
    );
    let get = http()
        .get(host.url("/api/v1/channels/api/messages/0123"))
        .bearer_auth("test-token-1")
        .send()
        .unwrap();
    assert_eq!(get.status(), 404, "unknown message");

    let resp = post_json(
        &host,
        path,
        Some("test-token-1"),
        &json!({"to": 7, "content": ["x"], "colour": "red", "event_url": "ftp://x"}),
    );
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().unwrap();
    let fields: Vec<&str> =
        body["result"]["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    for f in ["to", "content", "colour", "event_url"] {
        assert_eq!(fields.iter().filter(|x| **x == f).count(), 1, "`{f}` is named once in {body}");
    }
    let resp = post_json(&host, path, Some("test-token-1"), &json!({"reply_to": "nosuchid", "content": "x"}));
    assert_eq!(resp.status(), 400);
    assert!(resp.text().unwrap().contains("reply_to"));
    // A URL parser drops a newline silently; the delivery record keeps the URL as one line.
    let resp = post_json(
        &host,
        path,
        Some("test-token-1"),
        &json!({"to": "+1", "content": "x", "event_url": "http://example.org/\nev"}),
    );
    assert_eq!(resp.status(), 400);
    assert!(resp.text().unwrap().contains("control characters"));

    let resp = http()
        .post(host.url(path))
        .bearer_auth("test-token-1")
        .header("content-type", "application/json")
        .body("{\"to\": ")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().unwrap().contains("not valid JSON"));
    let resp = http()
        .post(host.url(path))
        .bearer_auth("test-token-1")
        .body(vec![b'"', 0xff, 0xfe, b'"'])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().unwrap().contains("UTF-8"));
    let big = json!({"to": "+1", "content": "x".repeat(4096)});
    assert_eq!(
        post_json(&host, path, Some("test-token-1"), &big).status(),
        413,
        "a body over max_body_bytes"
    );
    let resp = http()
        .post(host.url("/transports/sms/inbound"))
        .json(&json!({"from": 1, "content": "x"}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().unwrap();
    let fields: Vec<&str> =
        body["result"]["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["from"], "{body}");
    let resp = http()
        .post(host.url("/transports/sms/delivery-report"))
        .form(&[("message_id", "nope"), ("status", "lost")])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().unwrap().contains("`delivered`, `failed` or `pending`"));
    let resp = http()
        .post(host.url("/transports/sms/delivery-report"))
        .form(&[("message_id", "nope"), ("status", "failed")])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    let mut host = host;
    assert!(host.alive());
}

#[test]
fn an_app_and_a_channel_sharing_a_transport_each_get_their_own_events() {
    let aggregator = Recorder::start(0);
    let events = Recorder::start(0);
    let host = sms_host(
        &aggregator,
        &format!("event_url = \"{}\"", events.url("/events")),
        &format!("[apps.echo]\nplugin = \"{}\"\nconnector = \"sms\"\n", plugin("echo").display()),
    );
    // An inbound SMS goes to the echo app, whose reply the transport sends.
    let resp = http()
        .post(host.url("/transports/sms/inbound"))
        .form(&[("from", "+3"), ("to", "5555"), ("content", "ping")])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echoed = aggregator.wait_for(1)[0].json();
    assert_eq!(echoed["to"], "+3");
    // A message sent through the API on the same transport: its ack goes to the channel.
    let resp = post_json(
        &host,
        "/api/v1/channels/api/messages",
        Some("test-token-1"),
        &json!({"to": "+4", "content": "from the api"}),
    );
    let id = resp.json::<Value>().unwrap()["result"]["message_id"].as_str().unwrap().to_owned();
    aggregator.wait_for(2);
    let got = events.wait_for(1);
    assert_eq!(got[0].json()["user_message_id"], id.as_str());
    // A second API message as the marker: the echo reply's ack, had it come here, was published
    // before this message was even sent, so the next event seen must be the marker's.
    let resp = post_json(
        &host,
        "/api/v1/channels/api/messages",
        Some("test-token-1"),
        &json!({"to": "+5", "content": "marker"}),
    );
    let marker = resp.json::<Value>().unwrap()["result"]["message_id"].as_str().unwrap().to_owned();
    let got = events.wait_for(2);
    assert_eq!(
        got[1].json()["user_message_id"],
        marker.as_str(),
        "the echo reply's ack is not the channel's business"
    );
    assert!(!host.log().contains("unroutable_event"), "every event found its sender:\n{}", host.log());
}

#[test]
fn the_default_config_serves_the_readme_sessions() {
    let aggregator = Recorder::start(0);
    let default = std::fs::read_to_string(crate::common::workspace().join("config/vumi.toml")).unwrap();
    let config = default
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9010", "127.0.0.1:0")
        .replace("127.0.0.1:8081", "127.0.0.1:0")
        .replace("http://127.0.0.1:9099/sms", &aggregator.url("/sms"))
        .replace("../plugins/dist/", &format!("{}/", crate::common::plugins().display()));
    let host = Host::start(&config);
    let first = ussd(&host, "readme", "+27820000001", "");
    assert!(first.starts_with("CON Vumi survey"), "{first:?}");
    let resp = http()
        .post(host.url("/transports/sms/inbound"))
        .form(&[("from", "+27820000002"), ("to", "1234"), ("content", "ping")])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echoed = aggregator.wait_for(1)[0].json();
    assert_eq!(
        (echoed["to"].as_str(), echoed["content"].as_str()),
        (Some("+27820000002"), Some("ping")),
        "echo answers SMS"
    );
    let resp = post_json(
        &host,
        "/api/v1/channels/sms/messages",
        Some("dev-token"),
        &json!({"to": "+27820000001", "content": "Hello from the API"}),
    );
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().unwrap()["result"]["message_id"].as_str().unwrap().to_owned();
    crate::common::eventually("the message acked", || {
        let got: Value = http()
            .get(host.url(&format!("/api/v1/channels/sms/messages/{id}")))
            .bearer_auth("dev-token")
            .send()
            .unwrap()
            .json()
            .unwrap();
        if got["result"]["status"] == "sent" { Ok(()) } else { Err(got.to_string()) }
    });
}

#[test]
fn an_external_app_answers_ussd_through_the_send_api_with_session_handling() {
    let mo = Recorder::start(0);
    let host = Host::start(&format!(
        r#"
[http]
bind = "127.0.0.1:0"

[transports.ussd]
kind = "ussd_at"
response_deadline_ms = 10000

[channels.ext]
connector = "ussd"
token = "ext-token-123"
mo_url = "{}"
"#,
        mo.url("/mo")
    ));
    let url = host.url("/ussd");
    let dial = move |text: &'static str| {
        let url = url.clone();
        std::thread::spawn(move || {
            let resp = http()
                .post(url)
                .form(&[
                    ("sessionId", "ext-1"),
                    ("serviceCode", "*99#"),
                    ("phoneNumber", "+27820000020"),
                    ("text", text),
                ])
                .send()
                .unwrap();
            resp.text().unwrap()
        })
    };
    let reply = |host: &Host, to: &Value, content: &str, session_event: Option<&str>| {
        let mut body = json!({"reply_to": to["message_id"], "content": content});
        if let Some(s) = session_event {
            body["session_event"] = json!(s);
        }
        let resp = post_json(host, "/api/v1/channels/ext/messages", Some("ext-token-123"), &body);
        assert_eq!(resp.status(), 201);
        resp.json::<Value>().unwrap()
    };

    let pending = dial("");
    let new = mo.wait_for(1)[0].json();
    assert_eq!(new["session_event"], "new");
    assert_eq!(new["transport_type"], "ussd");
    let sent = reply(&host, &new, "Welcome! Reply 1 for news", None);
    assert_eq!(sent["result"]["session_event"], Value::Null, "a reply without close continues the session");
    assert_eq!(pending.join().unwrap(), "CON Welcome! Reply 1 for news");

    let pending = dial("1");
    let resume = mo.wait_for(2)[1].json();
    assert_eq!((resume["session_event"].as_str(), resume["content"].as_str()), (Some("resume"), Some("1")));
    let sent = reply(&host, &resume, "No news today. Bye!", Some("close"));
    assert_eq!(sent["result"]["session_event"], "close");
    assert_eq!(pending.join().unwrap(), "END No news today. Bye!");
}

#[test]
fn any_text_is_sent_as_it_was_given_nul_controls_and_emoji_included() {
    let aggregator = Recorder::start(0);
    let host = sms_host(&aggregator, "", "");
    let text = "nul\u{0} grin \u{1F600} esc\u{1b}[2J";
    let resp = post_json(
        &host,
        "/api/v1/channels/api/messages",
        Some("test-token-1"),
        &json!({"to": "+27820000010", "content": text}),
    );
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().unwrap();
    assert_eq!(created["result"]["content"], text);
    let id = created["result"]["message_id"].as_str().unwrap().to_owned();
    // The aggregator's wire (JSON or a form) carries any character: it gets the text as given.
    let sent = aggregator.wait_for(1);
    assert_eq!(sent[0].json()["content"], text);
    let status: Value = http()
        .get(host.url(&format!("/api/v1/channels/api/messages/{id}")))
        .bearer_auth("test-token-1")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["result"]["content"], text, "{status}");
}
