//! Bounded queues, over real HTTP: when an app falls behind, its inbound queue fills, and the
//! SMS transport answers `503` with `Retry-After` instead of accepting what it cannot queue.
//! Every request answered `200` is delivered: its reply reaches the aggregator.

use crate::common::{Host, Recorder, http, plugin, sms_channel_config};

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
        http()
            .post(host.url("/transports/sms/inbound"))
            .form(&[("from", "+27820000009"), ("to", "5555"), ("content", content)])
            .send()
            .unwrap()
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
    assert_eq!(
        host.log().matches("request refused with 503").count(),
        1,
        "{refused} refusals:\n{}",
        host.log()
    );
    // Everything answered 200 is delivered (the sleeping message itself fails, by its bound).
    let got = aggregator.wait_for(accepted.len());
    let mut delivered: Vec<String> =
        got.iter().map(|r| r.json()["content"].as_str().unwrap_or_default().to_owned()).collect();
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
retry = {{ max_attempts = 1 }}
"#
    ));
    let mut statuses = Vec::new();
    for i in 0..30 {
        let resp = http()
            .post(host.url("/transports/sms/inbound"))
            .form(&[("from", "+1"), ("to", "5555"), ("content", &format!("m{i}"))])
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        if status == 503 {
            assert!(resp.headers().get("retry-after").is_some());
        }
        statuses.push(status);
    }
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
    assert!(
        statuses.contains(&503),
        "intake was held back once the callbacks could not keep up: {statuses:?}"
    );
    assert!(
        !host.log().contains("callback queue is full"),
        "no accepted message is dropped for lack of room"
    );
    drop(silent);
}

/// An app that falls behind: its one lane sleeps until its wall-clock bound (1.5 s) on the first
/// message, and `pings` more from the same user queue behind it.
fn host_with_a_backlog(drain_timeout_ms: u64, pings: usize) -> (Host, Recorder) {
    let (host, aggregator) = faulty_sms_host(&format!("[host]\ndrain_timeout_ms = {drain_timeout_ms}"));
    for content in std::iter::once("sleep".to_owned()).chain((0..pings).map(|i| format!("ping {i}"))) {
        let resp = http()
            .post(host.url("/transports/sms/inbound"))
            .form(&[("from", "+27820000010"), ("to", "5555"), ("content", &content)])
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    (host, aggregator)
}

#[test]
fn a_stop_takes_nothing_new_and_delivers_what_is_queued() {
    let (mut host, aggregator) = host_with_a_backlog(20_000, 5);
    host.signal("TERM");
    host.wait_for_log("taking nothing new");
    let resp = http()
        .post(host.url("/transports/sms/inbound"))
        .form(&[("from", "+2"), ("to", "5555"), ("content", "late")])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 503, "a message arriving during the drain is refused");
    assert!(resp.headers().get("retry-after").is_some());
    assert!(
        host.exited_ok(std::time::Duration::from_secs(20)),
        "the host stops once drained:\n{}",
        host.log()
    );
    let mut delivered: Vec<String> = aggregator
        .received()
        .iter()
        .map(|r| r.json()["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    delivered.sort();
    assert_eq!(
        delivered,
        (0..5).map(|i| format!("ok: ping {i}")).collect::<Vec<_>>(),
        "everything queued was delivered before the stop"
    );
    assert!(host.log().contains("drained: every queued message was delivered"), "{}", host.log());
}

#[test]
fn a_drain_that_cannot_finish_stops_at_its_bound_and_says_how_much_is_left() {
    let (mut host, _aggregator) = host_with_a_backlog(300, 5);
    let signalled = std::time::Instant::now();
    host.signal("TERM");
    let log = host.wait_for_log("not delivered after the drain bound");
    let waited = signalled.elapsed();
    assert!(
        waited < std::time::Duration::from_millis(300 + 1500),
        "the drain stopped at its 300 ms bound, not later: {waited:?}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("not delivered after the drain bound"))
        .unwrap_or_default()
        .to_owned();
    assert!(line.contains("left=") && !line.contains("left=0"), "one line with the count: {line}");
    assert_eq!(log.matches("not delivered after the drain bound").count(), 1, "said once, not per message");
    assert!(host.exited_ok(std::time::Duration::from_secs(20)), "and the host stops:\n{}", host.log());
}

// ---- Each HTTP input overloaded ten times over its capacity ----------------------------------

/// Queue capacity in the overload tests; each sends ten times as many requests.
const CAPACITY: usize = 100;
const OVERLOAD: usize = 10 * CAPACITY;
/// Clients sending at once.
const CLIENTS: usize = 8;
/// Content size of the large messages: all of them held at once would be 47 MiB.
const BIG: usize = 48 << 10;
/// Requests [`warm_up`] sends.
const WARM_UP: usize = 2 * CLIENTS;

/// `[host.queues]`, `[callbacks]` and `[http]` for the overload tests: every queue holds `CAPACITY`.
fn bounded() -> String {
    format!(
        "[host.queues]\ncapacity = {CAPACITY}\npublish_wait_ms = 20\n\n[callbacks]\nqueue_capacity = {CAPACITY}\nconcurrency = 2\n\n[http]\nbind = \"127.0.0.1:0\"\n"
    )
}

/// Send requests `0..n` from `clients` threads at once. Every answer is `2xx`, or `503`/`429`
/// with `Retry-After` and the error envelope: anything else fails the test. The indices
/// answered `2xx` (with their bodies), and how many were refused.
fn hammer(
    clients: usize,
    n: usize,
    send: impl Fn(usize) -> reqwest::blocking::Response + Sync,
) -> (Vec<(usize, String)>, usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let accepted = std::sync::Mutex::new(Vec::new());
    let refused = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        break;
                    }
                    let resp = send(i);
                    let status = resp.status().as_u16();
                    let retry_after = resp.headers().get("retry-after").is_some();
                    let body = resp.text().unwrap_or_default();
                    match status {
                        200..=299 => accepted.lock().unwrap().push((i, body)),
                        429 | 503 => {
                            assert!(retry_after, "a {status} says when to come back: {body}");
                            assert!(
                                body.contains("\"status\":") && body.contains("try again"),
                                "and why, in the envelope: {body}"
                            );
                            refused.fetch_add(1, Ordering::SeqCst);
                        }
                        other => panic!("request {i}: every answer is 2xx, 429 or 503, got {other}: {body}"),
                    }
                }
            });
        }
    });
    let mut accepted = accepted.into_inner().unwrap();
    accepted.sort();
    let refused = refused.into_inner();
    assert!(refused > 0, "the load never filled a queue: {} accepted", accepted.len());
    assert!(!accepted.is_empty(), "nothing was accepted: every queue refused from the start");
    (accepted, refused)
}

/// `2 × CLIENTS` large requests at once, each answered `2xx`: the host's buffers and the
/// allocator's pools for this load exist before the baseline is read.
fn warm_up(send: impl Fn(usize) -> reqwest::blocking::Response + Sync) {
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            let send = &send;
            s.spawn(move || {
                for i in [2 * c, 2 * c + 1] {
                    let resp = send(i);
                    assert!(resp.status().is_success(), "warm-up request {i}: {}", resp.status());
                }
            });
        }
    });
}

/// What the host may hold of large messages with `queues` full queues on their path: three
/// copies of each (queued, stored, being encoded), plus 8 MiB for connections and pools. For
/// the paths here it is well under what accepting all [`OVERLOAD`] would take (twice 47 MiB).
fn bound_kib(queues: usize) -> u64 {
    (8 << 10) + (queues * CAPACITY * BIG * 3 / 1024) as u64
}

/// At most `queues` full queues of messages were accepted, plus those in flight: the clients'
/// requests, and what the host holds in hand (a transport's prefetch and senders, the callback
/// senders, a consumer waiting for room downstream).
fn assert_accepted_bounded(accepted: usize, queues: usize) {
    const IN_HAND: usize = 16;
    let bound = queues * CAPACITY + 2 * CLIENTS + IN_HAND;
    assert!(
        accepted <= bound,
        "{accepted} accepted: more than {queues} queue(s) of {CAPACITY} and those in flight ({bound})"
    );
}

/// The host's memory grew by less than `bound_kib` over `baseline_kib` at its peak.
fn assert_memory_bounded(host: &Host, baseline_kib: u64, bound_kib: u64) {
    let peak = host.memory_kib("VmHWM");
    let grew = peak.saturating_sub(baseline_kib);
    assert!(
        grew < bound_kib,
        "the host's memory grew by {grew} KiB under overload (bound {bound_kib} KiB; peak {peak} KiB)"
    );
}

/// What a held-then-released receiver got after its first `skip` requests, as the index each
/// carries at the start of `field` (`m<i> …`). Waits for `n` of them, then checks that a marker
/// sent afterwards is the very next one, so nothing else was still on its way.
fn delivered_indices(to: &Recorder, skip: usize, n: usize, field: &str, marker: impl FnOnce()) -> Vec<usize> {
    to.wait_for(skip + n);
    marker();
    let got = to.wait_for(skip + n + 1);
    assert_eq!(got.len(), skip + n + 1, "more arrived than was accepted");
    let got = &got[skip..];
    let index = |r: &crate::common::Received| -> Option<usize> {
        let v = r.json();
        let text = v[field].as_str()?.to_owned();
        text.strip_prefix('m')?.split(' ').next()?.parse().ok()
    };
    assert_eq!(index(&got[n]), None, "the marker came last: {:?}", got[n].json()[field]);
    let mut indices: Vec<usize> = got[..n]
        .iter()
        .map(|r| index(r).unwrap_or_else(|| panic!("not an overload message: {:?}", r.json()[field])))
        .collect();
    indices.sort();
    indices
}

/// The large-message overload run: warm up and read the host's memory, stall `receiver`, send
/// [`OVERLOAD`] messages of [`BIG`] bytes through `send`, check what was accepted against
/// `queues` full queues on the path and the memory against `memory_queues` of them, release
/// the receiver, and check that each accepted message arrived once, with a marker after them.
fn overload_with_large_messages(
    host: &Host,
    receiver: &Recorder,
    send: impl Fn(String) -> reqwest::blocking::Response + Sync,
    queues: usize,
    memory_queues: usize,
) {
    let pad = "x".repeat(BIG);
    warm_up(|i| send(format!("w{i} {pad}")));
    receiver.wait_for(WARM_UP);
    let baseline = host.memory_kib("VmRSS");
    receiver.hold();
    let (accepted, refused) = hammer(CLIENTS, OVERLOAD, |i| send(format!("m{i} {pad}")));
    assert_accepted_bounded(accepted.len(), queues);
    assert_memory_bounded(host, baseline, bound_kib(memory_queues));
    receiver.release();
    let delivered = delivered_indices(receiver, WARM_UP, accepted.len(), "content", || {
        assert!(send("marker".into()).status().is_success(), "the marker is accepted");
    });
    assert_eq!(
        delivered,
        accepted.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        "each accepted message delivered once ({refused} refused)"
    );
}

#[test]
fn the_send_api_overloaded_ten_times_answers_503_and_delivers_every_message_it_accepted() {
    let aggregator = Recorder::start(0);
    let host =
        Host::start(&(bounded() + &sms_channel_config(&aggregator.url("/sms"), "concurrency = 2", "")));
    let send = |content: String| {
        http()
            .post(host.url("/api/v1/channels/api/messages"))
            .bearer_auth("test-token-1")
            .json(&serde_json::json!({"to": "+27820000001", "content": content}))
            .send()
            .unwrap()
    };
    // One queue on the way, `sms.outbound`; the memory also holds each accepted message's
    // delivery record (the message itself, for `GET .../messages/<id>`): as if two queues.
    overload_with_large_messages(&host, &aggregator, send, 1, 2);
}

#[test]
fn sms_inbound_overloaded_ten_times_answers_503_and_every_accepted_sms_reaches_the_mo_url() {
    let mo = Recorder::start(0);
    let host = Host::start(&format!(
        r#"{}
[transports.sms]
kind = "sms_http"
outbound_url = "http://127.0.0.1:9/sms"

[channels.api]
connector = "sms"
token = "test-token-1"
mo_url = "{}"
"#,
        bounded(),
        mo.url("/mo")
    ));
    let send = |content: String| {
        http()
            .post(host.url("/transports/sms/inbound"))
            .form(&[("from", "+27820000002"), ("to", "5555"), ("content", &content)])
            .send()
            .unwrap()
    };
    // Two queues on the way: `sms.inbound` and the channel's callbacks.
    overload_with_large_messages(&host, &mo, send, 2, 2);
    assert!(
        !host.log().contains("callback queue is full"),
        "nothing accepted went to the failure path for lack of room"
    );
}

#[test]
fn delivery_reports_overloaded_ten_times_answer_503_and_every_accepted_one_reaches_the_event_url() {
    let aggregator = Recorder::start(0);
    let events = Recorder::start(0);
    let event_url = format!("event_url = \"{}\"", events.url("/events"));
    let host = Host::start(&(bounded() + &sms_channel_config(&aggregator.url("/sms"), "", &event_url)));
    // One message sent, and acked: the aggregator knows it as `agg-0`.
    let resp = http()
        .post(host.url("/api/v1/channels/api/messages"))
        .bearer_auth("test-token-1")
        .json(&serde_json::json!({"to": "+27820000003", "content": "hello"}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(events.wait_for(1)[0].json()["event_type"], "ack");
    let baseline = host.memory_kib("VmRSS");
    events.hold();
    let report = |status: &str| {
        http()
            .post(host.url("/transports/sms/delivery-report"))
            .form(&[("message_id", "agg-0"), ("status", status)])
            .send()
            .unwrap()
    };
    let (accepted, refused) = hammer(CLIENTS, OVERLOAD, |_| report("pending"));
    // Two queues on the way: `sms.event` and the channel's callbacks. Reports are small.
    assert_accepted_bounded(accepted.len(), 2);
    assert_memory_bounded(&host, baseline, 12 << 10);
    events.release();
    let n = accepted.len();
    events.wait_for(1 + n);
    assert_eq!(report("delivered").status(), 200, "the marker report");
    let got = events.wait_for(2 + n);
    assert_eq!(got.len(), 2 + n, "more reports arrived than were accepted ({refused} refused)");
    let statuses: Vec<String> = got[1..]
        .iter()
        .map(|r| r.json()["delivery_status"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        statuses[..n].iter().all(|s| s == "pending"),
        "each accepted report delivered once: {statuses:?}"
    );
    assert_eq!(statuses[n], "delivered", "and the marker came next");
}

#[test]
fn ussd_overloaded_ten_times_answers_503_and_every_accepted_request_gets_the_apps_reply() {
    const USSD_CAPACITY: usize = 4;
    let host = Host::start(&format!(
        r#"
[host.queues]
capacity = {USSD_CAPACITY}
publish_wait_ms = 20

[http]
bind = "127.0.0.1:0"

[transports.ussd]
kind = "ussd_at"
path = "/ussd"
response_deadline_ms = 4000

[apps.app]
plugin = "{}"
connector = "ussd"
concurrency = 1
deadline_ms = 50
"#,
        plugin("faulty").display()
    ));
    let ussd = |session: String, text: &str| {
        http()
            .post(host.url("/ussd"))
            .form(&[
                ("sessionId", session.as_str()),
                ("serviceCode", "*120#"),
                ("phoneNumber", "+27820000004"),
                ("text", text),
            ])
            .send()
            .unwrap()
    };
    let baseline = host.memory_kib("VmRSS");
    // The app's one lane sleeps until its wall-clock bound (1.5 s): requests queue behind it.
    std::thread::scope(|s| {
        // A new session is answered `faulty: ready`; its next input is the command.
        assert_eq!(ussd("sleeper".into(), "").text().unwrap(), "CON faulty: ready");
        let sleeper = s.spawn(|| ussd("sleeper".into(), "sleep"));
        // A probe the lane does not answer at once means the sleeper holds it. (At most one
        // probe stays queued behind it.)
        let quick = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_millis(300))
            .build()
            .unwrap();
        for attempt in 0.. {
            assert!(attempt < 100, "the sleeper never reached the app");
            let probe = quick
                .post(host.url("/ussd"))
                .form(&[
                    ("sessionId", format!("probe{attempt}").as_str()),
                    ("serviceCode", "*120#"),
                    ("phoneNumber", "+27820000005"),
                    ("text", "probe"),
                ])
                .send();
            if probe.is_err() {
                break;
            }
        }
        let (accepted, refused) =
            hammer(10 * USSD_CAPACITY, 10 * USSD_CAPACITY, |i| ussd(format!("s{i}"), ""));
        assert_memory_bounded(&host, baseline, 12 << 10);
        for (_, body) in &accepted {
            assert_eq!(
                body, "CON faulty: ready",
                "an accepted request is answered by the app, in time ({refused} refused)"
            );
        }
        assert!(sleeper.join().unwrap().status().is_success());
    });
}

#[test]
fn a_stop_mid_drain_of_the_send_api_delivers_what_it_accepted_once_the_aggregator_answers() {
    let aggregator = Recorder::start(0);
    let host_table = "[host]\ndrain_timeout_ms = 20000\n\n[http]\nbind = \"127.0.0.1:0\"\n";
    let mut host = Host::start(
        &(host_table.to_owned() + &sms_channel_config(&aggregator.url("/sms"), "concurrency = 2", "")),
    );
    aggregator.hold();
    for i in 0..20 {
        let resp = http()
            .post(host.url("/api/v1/channels/api/messages"))
            .bearer_auth("test-token-1")
            .json(&serde_json::json!({"to": "+27820000006", "content": format!("m{i}")}))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    host.signal("TERM");
    host.wait_for_log("taking nothing new");
    let late = http()
        .post(host.url("/api/v1/channels/api/messages"))
        .bearer_auth("test-token-1")
        .json(&serde_json::json!({"to": "+27820000006", "content": "late"}))
        .send()
        .unwrap();
    assert_eq!(late.status(), 503, "nothing new is accepted while draining");
    assert!(late.headers().get("retry-after").is_some());
    let released = std::time::Instant::now();
    aggregator.release();
    assert!(
        host.exited_ok(std::time::Duration::from_secs(20)),
        "the host stops once drained:\n{}",
        host.log()
    );
    assert!(released.elapsed() < std::time::Duration::from_secs(20), "within the drain bound");
    let mut delivered: Vec<String> = aggregator
        .received()
        .iter()
        .map(|r| r.json()["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    delivered.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    expected.sort();
    assert_eq!(
        delivered, expected,
        "every accepted message was delivered before the stop, the late one was not"
    );
    assert!(host.log().contains("drained: every queued message was delivered"), "{}", host.log());
}

#[test]
fn acks_wait_for_room_when_the_event_url_is_stalled_and_none_is_lost() {
    // The aggregator answers at once; the channel's event_url holds every request. Acks fill the
    // event queue and the callbacks; then the transport waits to report, its outbound queue
    // fills, and the send API answers 503. Every accepted message's ack reaches the event_url.
    let aggregator = Recorder::start(0);
    let events = Recorder::start(0);
    let event_url = format!("event_url = \"{}\"", events.url("/events"));
    let host = Host::start(
        &(bounded() + &sms_channel_config(&aggregator.url("/sms"), "concurrency = 2", &event_url)),
    );
    events.hold();
    let send = |content: String| {
        http()
            .post(host.url("/api/v1/channels/api/messages"))
            .bearer_auth("test-token-1")
            .json(&serde_json::json!({"to": "+27820000007", "content": content}))
            .send()
            .unwrap()
    };
    let (accepted, refused) = hammer(CLIENTS, OVERLOAD, |i| send(format!("m{i}")));
    // Three queues on the way to the event_url: `sms.outbound`, `sms.event`, the callbacks.
    assert_accepted_bounded(accepted.len(), 3);
    events.release();
    let ids: Vec<String> = accepted
        .iter()
        .map(|(_, body)| {
            serde_json::from_str::<serde_json::Value>(body).unwrap()["result"]["message_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let got = events.wait_for(ids.len());
    let mut acked: Vec<String> = got
        .iter()
        .filter(|r| r.json()["event_type"] == "ack")
        .map(|r| r.json()["user_message_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    acked.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(acked, expected, "one ack per accepted message ({refused} refused), none lost");
    assert!(!host.log().contains("was not published"), "no event was given up:\n{}", host.log());
    assert!(host.log().contains("events wait for room"), "the wait was said:\n{}", host.log());
}
