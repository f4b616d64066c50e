//! Bounded queues, over real HTTP: when an app falls behind, its inbound queue fills, and the
//! SMS transport answers `503` with `Retry-After` instead of accepting what it cannot queue.
//! Every request answered `200` is delivered: its reply reaches the aggregator.

use crate::common::{Host, Recorder, http, plugin};

#[test]
fn a_full_queue_is_answered_503_with_retry_after_and_everything_accepted_is_delivered() {
    let aggregator = Recorder::start(0);
    let host = Host::start(&format!(
        r#"
[host.queues]
capacity = 2
publish_wait_ms = 100

[http]
bind = "127.0.0.1:0"

[transports.sms]
kind = "sms_http"
outbound_url = "{}"

[apps.app]
plugin = "{}"
connector = "sms"
concurrency = 1
deadline_ms = 50
"#,
        aggregator.url("/sms"),
        plugin("faulty").display()
    ));
    let post = |content: &str| {
        http().post(host.url("/transports/sms/inbound")).form(&[("from", "+27820000009"), ("to", "5555"), ("content", content)]).send().unwrap()
    };
    // The app's one lane sleeps until its wall-clock bound (1.5 s): its queue stops draining.
    assert_eq!(post("sleep").status(), 200);
    let (mut accepted, mut refused) = (Vec::new(), 0);
    for i in 0..30 {
        let text = format!("ping {i}");
        let resp = post(&text);
        match resp.status().as_u16() {
            200 => accepted.push(format!("ok: {text}")),
            503 => {
                assert!(resp.headers().get("retry-after").is_some(), "a 503 says when to come back");
                let body = resp.text().unwrap();
                assert!(body.contains("is full"), "and why: {body}");
                refused += 1;
            }
            other => panic!("every request is answered 200 or 503, got {other}: {}", resp.text().unwrap()),
        }
    }
    assert!(refused > 0, "the queue never filled: {} accepted", accepted.len());
    // Everything answered 200 is delivered (the sleeping message itself fails, by its bound).
    let got = aggregator.wait_for(accepted.len());
    let mut delivered: Vec<String> = got.iter().map(|r| r.json()["content"].as_str().unwrap_or_default().to_owned()).collect();
    delivered.sort();
    accepted.sort();
    assert_eq!(delivered, accepted, "each accepted message answered once, none of the refused ones");
    assert!(host.log().contains("kind=\"wall_clock\""), "the sleeper was stopped by its bound");
}

#[test]
fn a_full_callback_queue_holds_intake_back_instead_of_dropping_what_was_accepted() {
    // A callback server that accepts connections and never answers (until the request
    // timeout): the channel's one callback sender is busy, its queue of one is full.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mo = format!("http://{}/mo", silent.local_addr().unwrap());
    let host = Host::start(&format!(
        r#"
[host.queues]
capacity = 2
publish_wait_ms = 100

[http]
bind = "127.0.0.1:0"

[transports.sms]
kind = "sms_http"
outbound_url = "http://127.0.0.1:9/sms"

[channels.api]
connector = "sms"
token = "test-token-1"
mo_url = "{mo}"

[callbacks]
queue_capacity = 1
concurrency = 1
timeout_ms = 5000
max_attempts = 1
"#
    ));
    let mut statuses = Vec::new();
    for i in 0..30 {
        let resp = http().post(host.url("/transports/sms/inbound")).form(&[("from", "+1"), ("to", "5555"), ("content", &format!("m{i}"))]).send().unwrap();
        let status = resp.status().as_u16();
        if status == 503 {
            assert!(resp.headers().get("retry-after").is_some());
        }
        statuses.push(status);
    }
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
    assert!(statuses.contains(&503), "intake was held back once the callbacks could not keep up: {statuses:?}");
    assert!(!host.log().contains("callback queue is full"), "no accepted message is dropped for lack of room");
    drop(silent);
}
