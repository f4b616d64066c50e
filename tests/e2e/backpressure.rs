//! Bounded queues, over real HTTP: when an app falls behind, its inbound queue fills, and the
//! SMS transport answers `503` with `Retry-After` instead of accepting what it cannot queue.
//! Every request answered `200` is delivered: its reply reaches the aggregator.

use crate::common::{Host, Recorder, http, plugin};

/// `sms_http` into the `faulty` app with one lane and a 50 ms CPU deadline (so `sleep` holds the
/// lane for its 1.5 s wall-clock bound), replies going to a recording aggregator; `host_table`
/// is the `[host...]` part of the config.
fn faulty_sms_host(host_table: &str) -> (Host, Recorder) {
    let aggregator = Recorder::start(0);
    let host = Host::start(&format!(
        r#"
{host_table}

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
    (host, aggregator)
}

#[test]
fn a_full_queue_is_answered_503_with_retry_after_and_everything_accepted_is_delivered() {
    let (host, aggregator) = faulty_sms_host("[host.queues]\ncapacity = 2\npublish_wait_ms = 100");
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
    // Said once, with a count, not once per refused request.
    assert_eq!(host.log().matches("request refused with 503").count(), 1, "{refused} refusals:\n{}", host.log());
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

/// An app that falls behind: its one lane sleeps until its wall-clock bound (1.5 s) on the first
/// message, and `pings` more from the same user queue behind it.
fn host_with_a_backlog(drain_timeout_ms: u64, pings: usize) -> (Host, Recorder) {
    let (host, aggregator) = faulty_sms_host(&format!("[host]\ndrain_timeout_ms = {drain_timeout_ms}"));
    for content in std::iter::once("sleep".to_owned()).chain((0..pings).map(|i| format!("ping {i}"))) {
        let resp = http().post(host.url("/transports/sms/inbound")).form(&[("from", "+27820000010"), ("to", "5555"), ("content", &content)]).send().unwrap();
        assert_eq!(resp.status(), 200);
    }
    (host, aggregator)
}

#[test]
fn a_stop_takes_nothing_new_and_delivers_what_is_queued() {
    let (mut host, aggregator) = host_with_a_backlog(20_000, 5);
    host.signal("TERM");
    host.wait_for_log("taking nothing new");
    let resp = http().post(host.url("/transports/sms/inbound")).form(&[("from", "+2"), ("to", "5555"), ("content", "late")]).send().unwrap();
    assert_eq!(resp.status(), 503, "a message arriving during the drain is refused");
    assert!(resp.headers().get("retry-after").is_some());
    assert!(host.exited_ok(std::time::Duration::from_secs(20)), "the host stops once drained:\n{}", host.log());
    let mut delivered: Vec<String> = aggregator.received().iter().map(|r| r.json()["content"].as_str().unwrap_or_default().to_owned()).collect();
    delivered.sort();
    assert_eq!(delivered, (0..5).map(|i| format!("ok: ping {i}")).collect::<Vec<_>>(), "everything queued was delivered before the stop");
    assert!(host.log().contains("drained: every queued message was delivered"), "{}", host.log());
}

#[test]
fn a_drain_that_cannot_finish_stops_at_its_bound_and_says_how_much_is_left() {
    let (mut host, _aggregator) = host_with_a_backlog(300, 5);
    let signalled = std::time::Instant::now();
    host.signal("TERM");
    let log = host.wait_for_log("not delivered after the drain bound");
    let waited = signalled.elapsed();
    assert!(waited < std::time::Duration::from_millis(300 + 1500), "the drain stopped at its 300 ms bound, not later: {waited:?}");
    let line = log.lines().find(|l| l.contains("not delivered after the drain bound")).unwrap_or_default().to_owned();
    assert!(line.contains("left=") && !line.contains("left=0"), "one line with the count: {line}");
    assert_eq!(log.matches("not delivered after the drain bound").count(), 1, "said once, not per message");
    assert!(host.exited_ok(std::time::Duration::from_secs(20)), "and the host stops:\n{}", host.log());
}
