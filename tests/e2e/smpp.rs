//! SMPP end to end: the real `vumi` binary's SMPP transport against `vumi fake-smsc`, over real
//! TCP, with the send API, the echo app and an `event_url` recorder around them.

use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Host, Recorder, eventually, http, plugin, post_json, stdout_lines, vumi};

const WAIT: Duration = Duration::from_secs(30);

/// A running `vumi fake-smsc`, killed on drop.
pub struct FakeSmsc {
    child: Child,
    /// Its SMPP address.
    pub smpp: SocketAddr,
    /// Its HTTP interface.
    pub http: SocketAddr,
}

impl FakeSmsc {
    /// Start one on free ports with `args` (e.g. `--throttle-rate 0.3`); waits for its ready line.
    pub fn start(args: &[&str]) -> FakeSmsc {
        Self::start_on(0, args)
    }

    /// [`FakeSmsc::start`] with SMPP on `port`.
    pub fn start_on(port: u16, args: &[&str]) -> FakeSmsc {
        let mut child = vumi()
            .args(["fake-smsc", "--port", &port.to_string(), "--http", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn vumi fake-smsc");
        let rx = stdout_lines(&mut child);
        loop {
            let line = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("vumi fake-smsc printed no ready line")
            });
            // vumi: fake SMSC listening on 127.0.0.1:N (SMPP), http on 127.0.0.1:M
            if let Some(rest) = line.strip_prefix("vumi: fake SMSC listening on ") {
                let (smpp, http) = rest.split_once(" (SMPP), http on ").expect("ready line");
                return FakeSmsc {
                    child,
                    smpp: smpp.trim().parse().expect("smpp addr"),
                    http: http.trim().parse().expect("http addr"),
                };
            }
        }
    }

    /// `http://<its HTTP address><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// `GET path` as JSON.
    pub fn get(&self, path: &str) -> Value {
        http().get(self.url(path)).send().expect("fake SMSC HTTP").json().expect("JSON")
    }

    /// `POST path` with a JSON body: status and body.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = http().post(self.url(path)).json(body).send().expect("fake SMSC HTTP");
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    /// Inject an MO, waiting for an ESME to be bound first (409 until then).
    pub fn mo(&self, from: &str, to: &str, content: &str) -> Value {
        self.mo_body(json!({ "from": from, "to": to, "content": content }))
    }

    /// [`FakeSmsc::mo`] in `coding` (`gsm7`, `ascii`, `latin1`, `ucs2`).
    pub fn mo_with(&self, from: &str, to: &str, content: &str, coding: &str) -> Value {
        self.mo_body(json!({ "from": from, "to": to, "content": content, "coding": coding }))
    }

    fn mo_body(&self, body: Value) -> Value {
        eventually("a bind to take an MO", || {
            let (status, body) = self.post("/mo", &body);
            match status {
                200 => Ok(body),
                409 => Err(format!("POST /mo answered 409: {body}")),
                other => panic!("POST /mo answered {other}: {body}"),
            }
        })
    }

    /// What it received so far.
    pub fn mt(&self) -> Vec<Value> {
        let v = self.get("/mt");
        v.as_array().cloned().unwrap_or_else(|| panic!("GET /mt is not a list: {v}"))
    }

    /// What it received, once `n` messages are there (or it fails saying what did arrive).
    pub fn wait_mt(&self, n: usize) -> Vec<Value> {
        eventually(&format!("{n} messages at the fake SMSC"), || {
            let list = self.mt();
            if list.len() >= n { Ok(list) } else { Err(format!("{} so far: {list:?}", list.len())) }
        })
    }

    /// Until `pred` holds of its `/stats`.
    pub fn wait_stats(&self, what: &str, pred: impl Fn(&Value) -> bool) {
        eventually(what, || {
            let stats = self.get("/stats");
            if pred(&stats) { Ok(()) } else { Err(stats.to_string()) }
        })
    }

    /// Until some bind is up.
    pub fn wait_bound(&self) {
        self.wait_stats("a bind to the fake SMSC", |s| s["binds"].as_u64().unwrap_or(0) > 0);
    }

    /// The ESME's answer to the PDU with `sequence` that the fake sent it.
    pub fn answer_to(&self, sequence: u64) -> Value {
        eventually(&format!("an answer to sequence {sequence}"), || {
            let r = self.get("/responses");
            r.as_array()
                .and_then(|l| l.iter().find(|x| x["sequence"] == sequence))
                .cloned()
                .ok_or_else(|| r.to_string())
        })
    }
}

impl Drop for FakeSmsc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An SMPP transport `smpp` on `smsc` (with `transport_extra` lines), the echo app answering its
/// inbound, and a send-API channel `api` on it (token `test-token-1`), events to `events`.
pub fn smpp_config(smsc: SocketAddr, transport_extra: &str, events: &Recorder, head: &str) -> String {
    format!(
        r#"
{head}
[http]
bind = "127.0.0.1:0"

[transports.smpp]
kind = "smpp"
address = "{smsc}"
system_id = "smppclient1"
password = "password"
default_from = "1234"
{transport_extra}

[channels.api]
connector = "smpp"
token = "test-token-1"
default_from = "5555"
event_url = "{}"

[apps.echo]
plugin = "{}"
connector = "smpp"
"#,
        events.url("/events"),
        plugin("echo").display()
    )
}

/// Send `content` to `to` through the send API: the message id.
pub fn send(host: &Host, to: &str, content: &str) -> String {
    let resp = post_json(
        host,
        "/api/v1/channels/api/messages",
        Some("test-token-1"),
        &json!({ "to": to, "content": content }),
    );
    assert_eq!(resp.status(), 201, "the send API took it");
    let v: Value = resp.json().expect("JSON");
    v["result"]["message_id"].as_str().expect("an id").to_owned()
}

/// The events the recorder has, as JSON, once `pred` holds of them (or fail showing them).
fn wait_events(events: &Recorder, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    eventually(what, || {
        let got: Vec<Value> = events.received().iter().map(|r| r.json()).collect();
        if pred(&got) { Ok(got) } else { Err(format!("events so far: {got:#?}")) }
    })
}

fn of<'a>(events: &'a [Value], id: &str, kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["user_message_id"] == id && e["event_type"] == kind).collect()
}

#[test]
fn an_mt_is_acked_with_the_smscs_id_and_its_delivery_report_reaches_the_app_side() {
    let smsc = FakeSmsc::start(&[]);
    let events = Recorder::start(0);
    let host = Host::start(&smpp_config(smsc.smpp, "", &events, ""));
    smsc.wait_bound();
    let id = send(&host, "27820000001", "Your code is 1234");
    let mt = smsc.wait_mt(1);
    assert_eq!(mt[0]["text"], "Your code is 1234");
    assert_eq!(mt[0]["to"], "27820000001");
    assert_eq!(mt[0]["from"], "5555");
    assert_eq!(mt[0]["coding"], "gsm7");
    let smsc_id = mt[0]["message_ids"][0].as_str().expect("the fake's id").to_owned();
    let got = wait_events(&events, "an ack and a delivery report", |e| {
        !of(e, &id, "ack").is_empty() && !of(e, &id, "delivery_report").is_empty()
    });
    assert_eq!(of(&got, &id, "ack")[0]["sent_message_id"], smsc_id.as_str(), "the ack carries the SMSC's id");
    let dr = of(&got, &id, "delivery_report")[0];
    assert_eq!(dr["delivery_status"], "delivered");
    assert_eq!(dr["transport_metadata"]["smpp"]["stat"], "DELIVRD");
    assert!(of(&got, &id, "nack").is_empty());
}

#[test]
fn an_mo_is_answered_by_the_app() {
    let smsc = FakeSmsc::start(&["--receipt", "none"]);
    let events = Recorder::start(0);
    let _host = Host::start(&smpp_config(smsc.smpp, "", &events, ""));
    smsc.mo("27820000002", "1234", "ping");
    let mt = smsc.wait_mt(1);
    assert_eq!(
        (mt[0]["text"].as_str(), mt[0]["to"].as_str(), mt[0]["from"].as_str()),
        (Some("ping"), Some("27820000002"), Some("1234"))
    );
}

/// 400 characters with emoji and GSM escapes: UCS-2, split into parts.
fn long_text() -> String {
    let mut s = String::new();
    while s.chars().count() < 392 {
        s.push_str("Sawubona 👋🏽 {ñandú} € ");
    }
    s.chars().take(400).collect()
}

#[test]
fn a_400_character_message_with_emoji_is_split_and_reassembled_exactly_both_ways() {
    let smsc = FakeSmsc::start(&["--receipt", "none"]);
    let events = Recorder::start(0);
    let host = Host::start(&smpp_config(smsc.smpp, "", &events, ""));
    smsc.wait_bound();
    let text = long_text();
    // Out: send API → transport → parts → the fake reassembles.
    send(&host, "27820000003", &text);
    let mt = smsc.wait_mt(1);
    assert_eq!(mt[0]["text"].as_str(), Some(text.as_str()), "the text arrives exactly");
    assert_eq!(mt[0]["coding"], "ucs2");
    assert_eq!(mt[0]["method"], "udh8");
    assert!(
        mt[0]["parts"].as_u64().unwrap_or(0) >= 7,
        "400 UTF-16 units with surrogates need 7+ parts of 67: {}",
        mt[0]
    );
    assert_eq!(mt[0]["warnings"], json!([]), "no pair split, no mixed coding");
    // In: the fake splits it, the transport reassembles, the echo app sends it back.
    smsc.mo("27820000004", "1234", &text);
    let mt = smsc.wait_mt(2);
    assert_eq!(mt[1]["text"].as_str(), Some(text.as_str()), "reassembled inbound, echoed back exactly");
    assert_eq!(mt[1]["to"], "27820000004");
}

#[test]
fn controls_go_out_as_question_marks_and_emoji_as_they_are_both_ways() {
    let smsc = FakeSmsc::start(&["--receipt", "none"]);
    let events = Recorder::start(0);
    let host = Host::start(&smpp_config(smsc.smpp, "", &events, ""));
    smsc.wait_bound();
    // A NUL alone does not force UCS-2: it is sent as `?`, in GSM.
    send(&host, "27820000005", "nul\u{0}in bel\u{7}");
    let mt = smsc.wait_mt(1);
    assert_eq!((mt[0]["text"].as_str(), mt[0]["coding"].as_str()), (Some("nul?in bel?"), Some("gsm7")));
    // An inbound NUL (UCS-2 can carry it from a phone) reaches the app; the echo goes out with
    // `?`, and the emoji as it came.
    smsc.mo_with("27820000006", "1234", "esc\u{1b} nul\u{0} \u{1F600}", "ucs2");
    let mt = smsc.wait_mt(2);
    assert_eq!(
        (mt[1]["text"].as_str(), mt[1]["coding"].as_str()),
        (Some("esc? nul? \u{1F600}"), Some("ucs2")),
        "{}",
        mt[1]
    );
}

#[test]
fn receipt_ids_in_hex_and_decimal_are_matched() {
    // Hex in submit_sm_resp, decimal in the receipt's text (as Nexmo does); no TLVs.
    let smsc =
        FakeSmsc::start(&["--id-format", "hex", "--receipt-id-format", "decimal", "--receipt-as", "text"]);
    let events = Recorder::start(0);
    let host = Host::start(&smpp_config(
        smsc.smpp,
        "id_form = \"hex_decimal\"\nunmatched_wait_ms = 500",
        &events,
        "",
    ));
    smsc.wait_bound();
    let ids: Vec<String> = (0..12).map(|i| send(&host, "27820000005", &format!("m{i}"))).collect();
    let got = wait_events(&events, "twelve delivery reports", |e| {
        ids.iter().all(|id| !of(e, id, "delivery_report").is_empty())
    });
    for id in &ids {
        assert_eq!(of(&got, id, "delivery_report")[0]["delivery_status"], "delivered");
    }
    assert!(
        got.iter().all(|e| e["transport_metadata"]["smpp"]["unmatched_receipt"].is_null()),
        "none unmatched"
    );
}

#[test]
fn throttling_and_queue_full_are_honoured_with_part_order_kept() {
    let smsc = FakeSmsc::start(&[
        "--throttle-rate",
        "0.25",
        "--queue-full-rate",
        "0.1",
        "--receipt",
        "none",
        "--seed",
        "7",
    ]);
    let events = Recorder::start(0);
    let host = Host::start(&smpp_config(smsc.smpp, "throttle_delay_ms = 20\nwindow = 5", &events, ""));
    smsc.wait_bound();
    let text = "A long message that takes three parts. ".repeat(10);
    let ids: Vec<String> = (0..15).map(|i| send(&host, &format!("2782000{i:04}"), &text)).collect();
    let got =
        wait_events(&events, "every message acked", |e| ids.iter().all(|id| !of(e, id, "ack").is_empty()));
    assert!(ids.iter().all(|id| of(&got, id, "nack").is_empty()), "throttling never nacks: {got:#?}");
    let stats = smsc.get("/stats");
    assert!(
        stats["throttled"].as_u64().unwrap_or(0) > 0 && stats["queue_full"].as_u64().unwrap_or(0) > 0,
        "both refusals happened: {stats}"
    );
    let mt = smsc.wait_mt(15);
    for m in &mt {
        assert_eq!(m["text"].as_str(), Some(text.as_str()));
        assert_eq!(m["warnings"], json!([]), "parts in order, none twice: {m}");
    }
}

#[test]
fn the_smsc_drops_the_link_mid_load_and_every_message_is_acked_after_the_rebind() {
    let window = 10;
    let smsc = FakeSmsc::start(&["--drop-after", "40", "--receipt", "none"]);
    let events = Recorder::start(0);
    let host = Host::start(&smpp_config(
        smsc.smpp,
        &format!("window = {window}\nreconnect_min_ms = 50\nreconnect_max_ms = 200"),
        &events,
        "",
    ));
    smsc.wait_bound();
    let ids: Vec<String> = (0..100).map(|i| send(&host, "27820000006", &format!("load {i}"))).collect();
    let got = wait_events(&events, "all 100 acked", |e| ids.iter().all(|id| !of(e, id, "ack").is_empty()));
    assert!(ids.iter().all(|id| of(&got, id, "nack").is_empty()), "none nacked");
    host.wait_for_log("SMPP link lost");
    let stats = smsc.get("/stats");
    let drops = stats["drops"].as_u64().expect("drops");
    assert!(drops >= 2, "the link was dropped at least twice: {stats}");
    // Every message reached the SMSC; copies of ones in flight at a drop are bounded by the window.
    let mt = smsc.get("/mt");
    let texts: Vec<&str> = mt.as_array().unwrap().iter().filter_map(|m| m["text"].as_str()).collect();
    for i in 0..100 {
        assert!(texts.contains(&format!("load {i}").as_str()), "load {i} reached the SMSC");
    }
    let copies = texts.len() - 100;
    assert!(copies as u64 <= window * drops, "{copies} copies after {drops} drops, window {window}");
}

const ADMIN: &str = "[admin]\nbind = \"127.0.0.1:0\"\ntoken = \"smpp-admin-token\"\n";

/// The `smpp` transport as `GET /transports` shows it.
fn transport_view(host: &Host) -> Value {
    let v: Value = http()
        .get(host.admin_url("/transports"))
        .bearer_auth("smpp-admin-token")
        .send()
        .expect("admin")
        .json()
        .expect("JSON");
    v["result"]["transports"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "smpp"))
        .cloned()
        .unwrap_or_default()
}

/// Every failure the host recorded.
fn failures(host: &Host) -> Value {
    http()
        .get(host.admin_url("/failures"))
        .bearer_auth("smpp-admin-token")
        .send()
        .expect("admin")
        .json::<Value>()
        .expect("JSON")["result"]["failures"]
        .clone()
}

#[test]
fn receipts_of_copies_after_a_dropped_link_are_unmatched_events_never_failures() {
    let window = 10;
    // At each drop the SMSC takes the submit_sm (its receipt will come) but the link dies
    // before its answer: the host sends it again and never learns the first copy's id.
    let smsc = FakeSmsc::start(&["--drop-after", "40", "--drop-accepts"]);
    let events = Recorder::start(0);
    let host = Host::start(&smpp_config(
        smsc.smpp,
        &format!("window = {window}\nreconnect_min_ms = 50\nreconnect_max_ms = 200"),
        &events,
        ADMIN,
    ));
    smsc.wait_bound();
    let ids: Vec<String> = (0..100).map(|i| send(&host, "27820000016", &format!("load {i}"))).collect();
    wait_events(&events, "every message delivered", |e| {
        ids.iter().all(|id| of(e, id, "delivery_report").iter().any(|d| d["delivery_status"] == "delivered"))
    });
    let texts = smsc.get("/mt").as_array().map(Vec::len).unwrap_or(0);
    let copies = texts - 100;
    assert!(copies >= 1, "each drop left a copy at the SMSC: {texts} stored");
    // Every receipt of a copy is an unmatched_receipt status event, listed for the operator...
    // (A receipt in flight at a drop comes again: count the copies by their ids.)
    let view = eventually("every copy's receipt reported", || {
        let v = transport_view(&host);
        let ids: std::collections::BTreeSet<&str> = v["status_events"]["recent"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["details"]["smsc_id"].as_str())
            .collect();
        if ids.len() == copies { Ok(v.clone()) } else { Err(format!("{} of {copies}: {v}", ids.len())) }
    });
    let recent = &view["status_events"]["recent"];
    assert_eq!(recent[0]["type"], "unmatched_receipt", "{view}");
    assert_eq!(recent[0]["message_type"], "status_event", "a Vumi status event: {view}");
    assert!(recent[0]["details"]["smsc_id"].is_string(), "{view}");
    // ... and counted; and nothing is on the failure path.
    let metrics = host.metrics("smpp-admin-token");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("vumi_smpp_events_total{") && l.contains("kind=\"unmatched_receipt\"")),
        "{metrics}"
    );
    assert_eq!(failures(&host), json!([]), "a receipt of a copy is not a failure");
}

#[test]
fn a_late_answer_to_a_send_given_up_on_is_kept_and_its_copys_receipt_matches() {
    // The first answer takes 300 ms; the host waits 200 ms, then sends again, and that one is
    // answered at once (after the first): the SMSC holds two copies, and answers both.
    let smsc = FakeSmsc::start(&["--delay-ms", "300"]);
    let events = Recorder::start(0);
    let host = Host::start(&smpp_config(
        smsc.smpp,
        "response_timeout_ms = 200\non_timeout = \"retry\"\nmax_resends = 3",
        &events,
        ADMIN,
    ));
    smsc.wait_bound();
    let id = send(&host, "27820000017", "late");
    smsc.wait_stats("the first submit", |s| s["submits"].as_u64() >= Some(1));
    assert_eq!(smsc.post("/settings", &json!({ "delay_ms": 0 })).0, 200);
    wait_events(&events, "its delivery report", |e| !of(e, &id, "delivery_report").is_empty());
    let copies = smsc.get("/mt").as_array().map(Vec::len).unwrap_or(0);
    assert!(copies >= 2, "copies at the SMSC: {copies}");
    // Both copies' receipts are answered; neither is unmatched: the late answer's id was kept.
    smsc.wait_stats("every copy's receipt answered", |s| {
        s["deliver_sm_resp"]["ESME_ROK"].as_u64() >= Some(copies as u64)
    });
    let view = transport_view(&host);
    assert!(view["status_events"]["counts"]["unmatched_receipt"].is_null(), "{view}");
    assert_eq!(failures(&host), json!([]));
}

#[test]
fn a_malformed_pdu_is_answered_while_the_link_stays_up() {
    let smsc = FakeSmsc::start(&["--receipt", "none"]);
    let events = Recorder::start(0);
    let _host = Host::start(&smpp_config(smsc.smpp, "", &events, ""));
    smsc.wait_bound();
    // deliver_sm, sequence 0x4242, whose source_addr runs to the frame's end with no NUL.
    let mut body = hex(b"\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x42\x42\x00\x01\x01");
    body.push_str(&hex(b"2782000000700000000000000000000"));
    let len = body.len() / 2;
    let pdu = format!("{len:08x}{}", &body[8..]);
    let (status, resp) = smsc.post("/raw", &json!({ "hex": pdu }));
    assert_eq!(status, 200, "{resp}");
    let answer = smsc.answer_to(0x4242);
    assert_ne!(answer["status"], 0, "answered with an error status: {answer}");
    assert!(answer["command"] == "deliver_sm_resp" || answer["command"] == "generic_nack", "{answer}");
    // The same link goes on: an MO is answered, and nothing rebound.
    smsc.mo("27820000008", "1234", "still there?");
    assert_eq!(smsc.wait_mt(1)[0]["text"], "still there?");
    assert_eq!(smsc.get("/stats")["binds_total"], 1, "the link never dropped");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn receipts_find_their_message_across_a_host_restart_on_redis() {
    const REDIS: &str = "127.0.0.1:6379";
    if std::net::TcpStream::connect(REDIS).is_err() {
        panic!(
            "this test needs Redis at {REDIS}: start one with `redis-server --port 6379 --save '' --appendonly no`"
        );
    }
    // Receipts come 3 s after each submit: by then the host that sent it is gone.
    let smsc = FakeSmsc::start(&["--receipt-delay-ms", "3000"]);
    let events = Recorder::start(0);
    let head = format!("[host.state]\nkind = \"redis\"\nurl = \"redis://{REDIS}\"\n");
    let run = vumi_host::message::test_run(10);
    // A transport name of its own: its keys in the shared Redis are this run's only.
    let config = smpp_config(smsc.smpp, "", &events, &head)
        .replace("transports.smpp", &format!("transports.smpp{run}"))
        .replace("connector = \"smpp\"", &format!("connector = \"smpp{run}\""));
    let first = Host::start(&config);
    smsc.wait_bound();
    let id = send(&first, "27820000009", "remember me");
    wait_events(&events, "the ack", |e| !of(e, &id, "ack").is_empty());
    drop(first);
    let _second = Host::start(&config);
    let got = wait_events(&events, "the delivery report, taken by the second host", |e| {
        !of(e, &id, "delivery_report").is_empty()
    });
    assert_eq!(of(&got, &id, "delivery_report")[0]["delivery_status"], "delivered");
    // Leave nothing of this run in the shared Redis: its transport's keys, and the channel's
    // record of the message (named by its id).
    crate::common::clean_shared_redis(&[format!("*{run}*"), format!("*{id}*")]);
}

#[test]
fn a_refused_submit_is_nacked_with_the_status_name_and_code() {
    let smsc = FakeSmsc::start(&["--error-rate", "1.0", "--receipt", "none"]);
    let events = Recorder::start(0);
    let host = Host::start(&smpp_config(smsc.smpp, "", &events, ""));
    smsc.wait_bound();
    let id = send(&host, "27820000010", "refused");
    let got = wait_events(&events, "a nack", |e| !of(e, &id, "nack").is_empty());
    let reason = of(&got, &id, "nack")[0]["nack_reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("ESME_RSUBMITFAIL") && reason.contains("0x00000045"), "{reason}");
}

#[test]
fn a_response_that_never_comes_is_nacked_when_so_configured() {
    let smsc = FakeSmsc::start(&["--delay-ms", "3000", "--receipt", "none"]);
    let events = Recorder::start(0);
    let host =
        Host::start(&smpp_config(smsc.smpp, "response_timeout_ms = 200\non_timeout = \"nack\"", &events, ""));
    smsc.wait_bound();
    let id = send(&host, "27820000011", "slow");
    let got = wait_events(&events, "a nack", |e| !of(e, &id, "nack").is_empty());
    let reason = of(&got, &id, "nack")[0]["nack_reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("no submit_sm_resp"), "{reason}");
}

#[test]
fn transmitter_and_receiver_binds_carry_mt_mo_and_receipts() {
    let smsc = FakeSmsc::start(&[]);
    let events = Recorder::start(0);
    let host =
        Host::start(&smpp_config(smsc.smpp, "bind_mode = \"transmitter_receiver\"\nbinds = 2", &events, ""));
    smsc.wait_stats("two transmitters and two receivers bound", |s| s["binds"] == 4);
    let ids: Vec<String> = (0..6).map(|i| send(&host, "27820000012", &format!("rr {i}"))).collect();
    // Receipts come back on the receivers (the fake sends them only there), and still match.
    let got = wait_events(&events, "six delivery reports", |e| {
        ids.iter().all(|id| !of(e, id, "delivery_report").is_empty())
    });
    assert!(ids.iter().all(|id| of(&got, id, "delivery_report")[0]["delivery_status"] == "delivered"));
    let binds: std::collections::HashSet<u64> =
        smsc.wait_mt(6).iter().filter_map(|m| m["bind"].as_u64()).collect();
    assert_eq!(binds.len(), 2, "outbound went round robin over both transmitters: {binds:?}");
    smsc.mo("27820000013", "1234", "over the receiver");
    eventually("the MO answered", || {
        let mt = smsc.mt();
        if mt.iter().any(|m| m["text"] == "over the receiver") { Ok(()) } else { Err(format!("{mt:?}")) }
    });
}

#[test]
fn an_smscs_enquire_link_and_unbind_are_answered_and_the_link_rebinds() {
    let smsc = FakeSmsc::start(&["--receipt", "none"]);
    let events = Recorder::start(0);
    let host = Host::start(&smpp_config(smsc.smpp, "reconnect_min_ms = 50", &events, ""));
    smsc.wait_bound();
    assert_eq!(smsc.post("/raw", &json!({ "hex": "0000001000000015000000000000e001" })).0, 200);
    let a = smsc.answer_to(0xe001);
    assert_eq!((a["command"].as_str(), a["status"].as_u64()), (Some("enquire_link_resp"), Some(0)));
    assert_eq!(smsc.post("/raw", &json!({ "hex": "0000001000000006000000000000e002" })).0, 200);
    let a = smsc.answer_to(0xe002);
    assert_eq!((a["command"].as_str(), a["status"].as_u64()), (Some("unbind_resp"), Some(0)));
    host.wait_for_log("the SMSC unbound");
    smsc.wait_stats("the ESME bound again", |s| s["binds_total"] == 2 && s["binds"] == 1);
    let id = send(&host, "27820000014", "after the rebind");
    wait_events(&events, "its ack", |e| !of(e, &id, "ack").is_empty());
}

#[test]
fn nothing_is_taken_while_unbound_and_everything_goes_once_bound() {
    // A port with no SMSC behind it yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let events = Recorder::start(0);
    let admin = "[admin]\nbind = \"127.0.0.1:0\"\ntoken = \"smpp-admin-token\"\n";
    let host =
        Host::start(&smpp_config(addr, "reconnect_min_ms = 50\nreconnect_max_ms = 100", &events, admin));
    host.wait_for_log("SMPP bind failed");
    let ids: Vec<String> = (0..20).map(|i| send(&host, "27820000015", &format!("queued {i}"))).collect();
    // They wait on the bus, not in the transport: the outbound queue holds all twenty.
    eventually("smpp.outbound to hold 20", || {
        let metrics = host.metrics("smpp-admin-token");
        let depth: Vec<&str> = metrics.lines().filter(|l| l.starts_with("vumi_queue_depth{")).collect();
        if depth.iter().any(|l| l.contains("smpp.outbound") && l.ends_with(" 20")) {
            Ok(())
        } else {
            Err(depth.join("\n"))
        }
    });
    assert!(events.received().is_empty(), "nothing was nacked meanwhile");
    let smsc = FakeSmsc::start_on(port, &["--receipt", "none"]);
    let got = wait_events(&events, "twenty acks", |e| ids.iter().all(|id| !of(e, id, "ack").is_empty()));
    assert!(ids.iter().all(|id| of(&got, id, "nack").is_empty()));
    assert_eq!(smsc.wait_mt(20).len(), 20);
}

#[test]
fn ussd_over_smpp_follows_the_mica_profile() {
    let smsc = FakeSmsc::start(&["--receipt", "none"]);
    let events = Recorder::start(0);
    let _host = Host::start(&smpp_config(smsc.smpp, "ussd = \"mica\"", &events, ""));
    smsc.wait_bound();
    let ussd = |content: &str, op: u8| {
        let (status, body) = smsc.post("/mo", &json!({ "from": "27820000016", "to": "*120#", "content": content, "ussd": { "op": op, "session": 0x0204 } }));
        assert_eq!(status, 200, "{body}");
    };
    // PSSR indication: a new session; the echo app greets it, continuing (USSR request, 2).
    ussd("", 1);
    let mt = smsc.wait_mt(1);
    assert_eq!(mt[0]["text"], "echo: ready");
    assert_eq!(mt[0]["ussd"], json!({ "op": 2, "session": 0x0204 }), "{}", mt[0]);
    // USSR confirm: the session resumes with the user's answer.
    ussd("hello", 18);
    let mt = smsc.wait_mt(2);
    assert_eq!(mt[1]["text"], "hello");
    assert_eq!(mt[1]["ussd"]["op"], 2);
}

#[test]
fn an_mo_the_bus_refuses_is_answered_rx_t_appn_and_arrives_on_the_smscs_retry() {
    let smsc = FakeSmsc::start(&["--receipt", "none"]);
    // The faulty app, one lane, behind a queue of one: a nap fills it.
    let host = Host::start(&format!(
        r#"
[host.queues]
capacity = 1
publish_wait_ms = 20

[transports.smpp]
kind = "smpp"
address = "{}"
system_id = "smppclient1"
password = "password"

[apps.app]
plugin = "{}"
connector = "smpp"
concurrency = 1
deadline_ms = 50
"#,
        smsc.smpp,
        plugin("faulty").display()
    ));
    smsc.mo("27820000017", "1234", "nap 500 napped");
    for i in 0..30 {
        let (status, body) =
            smsc.post("/mo", &json!({ "from": "27820000017", "to": "1234", "content": format!("m{i}") }));
        assert_eq!(status, 200, "{body}");
    }
    let stats = smsc.get("/stats");
    let refused = stats["deliver_sm_resp"]["ESME_RX_T_APPN"].as_u64().unwrap_or(0);
    assert!(refused > 0, "the full queue refused some MOs with ESME_RX_T_APPN: {stats}\n{}", host.log());
    host.wait_for_log("answered ESME_RX_T_APPN so the SMSC retries");
    // The fake retries them (as an SMSC does) and, once the nap is over, each gets its answer.
    eventually(&format!("every MO answered in the end ({refused} refused at first)"), || {
        let texts: Vec<String> =
            smsc.mt().iter().filter_map(|m| m["text"].as_str().map(str::to_owned)).collect();
        let all =
            (0..30).all(|i| texts.contains(&format!("ok: m{i}"))) && texts.contains(&"napped".to_owned());
        if all { Ok(()) } else { Err(format!("{texts:?}\n{}", host.log())) }
    });
}
