//! SMPP against implementations we did not write (issue 19): our ESME against an SMSC built on
//! the npm `smpp` package (`tests/smpp/smsc.js`), and a client on PyPI `smpplib`
//! (`tests/smpp/client.py`) against `vumi fake-smsc`. Our ESME and our fake share a codec
//! (`transports::smpp::{wire, text}`), so a bug in it would pass every test that pits one against
//! the other; here every octet on one side of the wire is encoded and decoded by someone else's
//! code.
//!
//! `tests/smpp/setup.sh` installs both packages from the registries into `target/smpp-peers/`
//! (once; later runs find them in place). Without node, npm, python3 or the registries the tests
//! fail saying so: they never pass by skipping.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};

use crate::common::{Host, Recorder, WAIT, plugin, post_json, workspace};
use crate::smpp::FakeSmsc;

/// `target/smpp-peers/`, installed once per run by `tests/smpp/setup.sh`.
fn peers() -> PathBuf {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let status = Command::new("bash").arg(workspace().join("tests/smpp/setup.sh")).status().unwrap_or_else(|e| panic!("cannot run bash tests/smpp/setup.sh: {e}"));
        assert!(
            status.success(),
            "tests/smpp/setup.sh failed (it needs node 18+ with npm, python3 with venv, and the npm and PyPI registries); its message is above"
        );
    });
    workspace().join("target/smpp-peers")
}

/// Poll `f` until it gives something, for at most [`WAIT`]; `what` and `show()` say what was
/// there when it did not.
fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>, show: impl Fn() -> String) -> T {
    crate::common::eventually(what, || f().ok_or_else(|| format!("so far:\n{}", show())))
}

/// A 200-character text in UCS-2 with two emoji, the first at UTF-16 unit 66: a splitter that
/// cuts 67 units per part regardless (smpplib's `make_parts` does) puts half of it in each
/// part, one that respects characters (ours) moves it whole to the next part.
fn long_text() -> String {
    let head: String = "Sawubona, lona ngumyalezo omude kakhulu. ".chars().cycle().take(66).collect();
    let tail: String = " Hamba kahle, ñandú ☎ ngomso. ".chars().cycle().take(132).collect();
    let text = format!("{head}👋{tail}🎉");
    assert_eq!(text.chars().count(), 200);
    assert_eq!(text.encode_utf16().position(|u| (0xD800..0xDC00).contains(&u)), Some(66));
    text
}

/// A GSM 03.38 text of 6 parts whose `€` (escape + code) sits on septets 152 and 153: a splitter
/// that cuts 153 septets regardless leaves the escape at the end of part 1. (Six parts, so that a
/// client sending it after the others gets message ids past 9, in hex `a`, `b`.)
fn long_gsm_text() -> String {
    let head: String = "Sawubona, ngiyabonga kakhulu! ".chars().cycle().take(152).collect();
    let tail: String = " Hamba kahle [ngomso] {ekuseni}.".chars().cycle().take(600).collect();
    format!("{head}€{tail}")
}

/// Most characters GSM 03.38 has, basic and extension (escape) table: one SMS in `gsm7`. Not
/// `§` (0x5F): smpplib 2.2.4's table has a backtick there, so it would send this text in UCS-2
/// (and a backtick as `§`). The MO our ESME gets from the npm SMSC has it.
const GSM_TEXT: &str =
    "Hi @home: £5 or €5? {a} [b] ~c^ |\\ ÄÖÑÜ¿ äöñüà ΔΦΓΛΩΠΨΣΘΞ ÆæßÉ _!\"#¤%&'()*+,-./:;<=>";

// --- the npm SMSC ------------------------------------------------------------------------------

/// `node tests/smpp/smsc.js`, killed on drop. What it saw, as it reports it (JSON lines).
struct NpmSmsc {
    child: Child,
    stdin: ChildStdin,
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl NpmSmsc {
    fn start() -> NpmSmsc {
        let modules = peers().join("node/node_modules");
        let mut child = Command::new("node")
            .arg(workspace().join("tests/smpp/smsc.js"))
            .arg("--modules")
            .arg(&modules)
            .args(["--port", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node ({e}): install Node.js 18+"));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = seen.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| json!({ "event": "unparsed", "line": line }));
                if v["event"] == "ready" {
                    let _ = tx.send(v["smpp"].as_str().unwrap_or_default().to_owned());
                }
                sink.lock().expect("lock").push(v);
            }
        });
        let addr = match rx.recv_timeout(WAIT) {
            Ok(a) => a.parse().unwrap_or_else(|_| panic!("smsc.js announced a bad address {a:?}")),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "smsc.js printed no ready line within {WAIT:?} (exit: {status:?}); its stderr is above"
                )
            }
        };
        NpmSmsc { child, stdin, addr, seen }
    }

    fn seen(&self) -> Vec<Value> {
        self.seen.lock().expect("lock").clone()
    }

    fn show(&self) -> String {
        self.seen().iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
    }

    /// The first event of kind `event` that `pred` holds of, waiting for it.
    fn wait(&self, event: &str, pred: impl Fn(&Value) -> bool) -> Value {
        until(
            &format!("smsc.js to report `{event}`"),
            || self.seen().into_iter().find(|e| e["event"] == event && pred(e)),
            || self.show(),
        )
    }

    /// Every event of kind `event` so far.
    fn all(&self, event: &str) -> Vec<Value> {
        self.seen().into_iter().filter(|e| e["event"] == event).collect()
    }

    /// Have it send an MO `deliver_sm` (`data_coding` as given; `parts` UDH parts).
    fn mo(&mut self, from: &str, to: &str, text: &str, data_coding: u8, parts: u8) {
        let cmd = json!({ "cmd": "mo", "from": from, "to": to, "text": text, "data_coding": data_coding, "parts": parts });
        writeln!(self.stdin, "{cmd}").expect("write to smsc.js");
        self.stdin.flush().expect("flush");
    }
}

impl Drop for NpmSmsc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The complete message smsc.js reassembled whose text is `text` (sent from `from` to `to`).
fn npm_message(smsc: &NpmSmsc, from: &str, to: &str, text: &str) -> Value {
    // Waiting for any message to `to` first: when the text differs, the failure shows both.
    let wanted = |e: &Value| e["from"] == from && e["to"] == to && e["text"] == text;
    crate::common::eventually(&format!("the npm SMSC to decode {text:?} from {from} to {to}"), || {
        let msgs = smsc.all("message");
        if let Some(m) = msgs.iter().find(|e| wanted(e)) {
            return Ok(m.clone());
        }
        let to_them: Vec<&Value> = msgs.iter().filter(|e| e["to"] == to).collect();
        Err(format!("messages it decoded to {to}: {to_them:#?}\neverything it saw:\n{}", smsc.show()))
    })
}

/// Send `content` to `to` through the send API (with `helper_metadata`): the message id.
fn send(host: &Host, to: &str, content: &str, helper_metadata: Value) -> String {
    let body = json!({ "to": to, "content": content, "helper_metadata": helper_metadata });
    let resp = post_json(host, "/api/v1/channels/api/messages", Some("test-token-1"), &body);
    assert_eq!(resp.status(), 201, "the send API took it");
    let v: Value = resp.json().expect("JSON");
    v["result"]["message_id"].as_str().expect("an id").to_owned()
}

/// The recorder's events for `id` of kind `kind`.
fn of(events: &Recorder, id: &str, kind: &str) -> Vec<Value> {
    events
        .received()
        .iter()
        .map(|r| r.json())
        .filter(|e| e["user_message_id"] == id && e["event_type"] == kind)
        .collect()
}

#[test]
fn our_esme_against_an_smsc_built_on_npm_smpp() {
    let mut smsc = NpmSmsc::start();
    let events = Recorder::start(0);
    let host = Host::start(&format!(
        r#"
[http]
bind = "127.0.0.1:0"

[transports.smpp]
kind = "smpp"
address = "{}"
system_id = "smppclient1"
password = "password"
default_from = "1234"
reconnect_min_ms = 100
reconnect_max_ms = 1000

[channels.api]
connector = "smpp"
token = "test-token-1"
default_from = "1234"
event_url = "{}"

[apps.echo]
plugin = "{}"
connector = "smpp"
"#,
        smsc.addr,
        events.url("/events"),
        plugin("echo").display()
    ));
    let bind = smsc.wait("bind", |_| true);
    assert_eq!(
        (bind["command"].as_str(), bind["ok"].as_bool()),
        (Some("bind_transceiver"), Some(true)),
        "{bind}"
    );

    // MT: what the npm package decodes is exactly what was sent, in every way we split.
    let long = long_text();
    let gsm_id = send(&host, "27820000001", GSM_TEXT, json!({}));
    let gsm = npm_message(&smsc, "1234", "27820000001", GSM_TEXT);
    assert_eq!(
        (gsm["data_coding"].as_u64(), gsm["parts"].as_u64(), gsm["method"].as_str()),
        (Some(0), Some(1), Some("single")),
        "one GSM 03.38 SMS: {gsm}"
    );
    let long_id = send(&host, "27820000002", &long, json!({}));
    let big = npm_message(&smsc, "1234", "27820000002", &long);
    assert_eq!(
        (big["data_coding"].as_u64(), big["method"].as_str()),
        (Some(8), Some("udh8")),
        "UCS-2 in UDH parts: {big}"
    );
    assert!(big["parts"].as_u64().unwrap_or(0) >= 3, "202 UTF-16 units need 4 parts of at most 67: {big}");
    assert_eq!(
        big["split_surrogate"], false,
        "no part ends or begins inside an emoji's surrogate pair: {big}"
    );
    for part in smsc.all("submit_sm").iter().filter(|s| s["destination_addr"] == "27820000002") {
        assert_eq!(
            part["esm_class"].as_u64().map(|c| c & 0x40),
            Some(0x40),
            "UDHI set on every part: {part}"
        );
        assert_eq!(part["registered_delivery"], 1, "{part}");
    }
    let gsm_long = long_gsm_text();
    let gsm_long_id = send(&host, "27820000003", &gsm_long, json!({}));
    let m = npm_message(&smsc, "1234", "27820000003", &gsm_long);
    assert_eq!(
        (m["data_coding"].as_u64(), m["method"].as_str()),
        (Some(0), Some("udh8")),
        "GSM 03.38 in UDH parts: {m}"
    );
    let mut sent = vec![(gsm_id, gsm), (long_id, big), (gsm_long_id, m)];
    for (split, to) in [("udh16", "27820000004"), ("sar", "27820000005"), ("payload", "27820000006")] {
        let id = send(&host, to, &long, json!({ "smpp": { "split": split } }));
        let m = npm_message(&smsc, "1234", to, &long);
        assert_eq!((m["data_coding"].as_u64(), m["method"].as_str()), (Some(8), Some(split)), "{m}");
        assert_eq!(m["split_surrogate"], false, "{m}");
        sent.push((id, m));
    }
    for (_, m) in &sent {
        assert_eq!(m["replacement_chars"], 0, "{m}");
    }

    // Acks carry the npm SMSC's ids (a long message's: its first part's, and every part's in
    // transport_metadata); its receipts become delivery reports, matched.
    let show = || format!("{:#?}", events.received().iter().map(|r| r.json()).collect::<Vec<_>>());
    for (id, m) in &sent {
        let ack = until(&format!("an ack for {id}"), || of(&events, id, "ack").pop(), show);
        assert_eq!(
            ack["sent_message_id"], m["message_ids"][0],
            "the ack carries the npm SMSC's id: {ack}\n{m}"
        );
        if m["parts"] != 1 {
            assert_eq!(
                ack["transport_metadata"]["smpp"]["message_ids"], m["message_ids"],
                "and every part's id, in order: {ack}\n{m}"
            );
        }
        let dr =
            until(&format!("a delivery report for {id}"), || of(&events, id, "delivery_report").pop(), show);
        assert_eq!(dr["delivery_status"], "delivered", "{dr}");
        assert_eq!(dr["transport_metadata"]["smpp"]["stat"], "DELIVRD", "{dr}");
        assert!(of(&events, id, "nack").is_empty());
    }

    // MO: a GSM one (data_coding 0, escapes included) and a UCS-2 one in two UDH parts built by
    // the npm package; the echo app's replies reach it with the same text. The data_coding is
    // given: left to itself, npm smpp 0.5.1 writes GSM 03.38 octets under data_coding 1, which
    // SMPP 3.4 (5.2.19) and we read as IA5/ASCII, so `@` (GSM 0x00) would arrive as NUL.
    smsc.mo("27820000013", "1234", "Ping @ {€} §5 ok", 0, 1);
    npm_message(&smsc, "1234", "27820000013", "Ping @ {€} §5 ok");
    let mo_long = "Molo 👋 lo myalezo ufika ngamacandelo amabini, ñandú ☎, kwaye impendulo kufuneka ifane ncam nawo. 🎉";
    smsc.mo("27820000014", "1234", mo_long, 8, 2);
    let echoed = npm_message(&smsc, "1234", "27820000014", mo_long);
    assert_eq!(echoed["data_coding"], 8, "{echoed}");

    // Everything the npm SMSC sent was taken: MO parts and receipts answered ESME_ROK.
    let resps = until(
        "three MO parts answered",
        || Some(smsc.all("mo_resp")).filter(|r| r.len() >= 3),
        || smsc.show(),
    );
    assert_eq!(resps.len(), 3, "{resps:?}");
    assert!(resps.iter().all(|r| r["command_status"] == 0), "our ESME refused an MO part: {resps:?}");
    let receipts = until(
        "a receipt answered for every submit_sm",
        || {
            let r = smsc.all("receipt");
            (r.len() >= smsc.all("submit_sm").len()).then_some(r)
        },
        || smsc.show(),
    );
    assert!(receipts.iter().all(|r| r["command_status"] == 0), "our ESME refused a receipt: {receipts:?}");
    let errors = smsc.all("error");
    assert!(errors.is_empty(), "the npm SMSC saw protocol errors: {errors:#?}");
    let log = host.log();
    assert!(!log.contains("unmatched receipt"), "every receipt matched its message:\n{log}");
}

// --- smpplib against the fake SMSC -------------------------------------------------------------

/// The `id:` of an Appendix B receipt text.
fn text_id(receipt: &str) -> Option<&str> {
    receipt.split_whitespace().find_map(|w| w.strip_prefix("id:"))
}

/// What a receiver should warn about `parts` (smpplib's part bodies, hex) in `data_coding`: a
/// part cut inside a UCS-2 surrogate pair or a GSM escape pair. Worked out from the octets
/// smpplib sent, not by the fake's code.
fn cut_parts(parts: &[Value], data_coding: u64) -> Vec<String> {
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate().take(parts.len().saturating_sub(1)) {
        let hex = p["body_hex"].as_str().expect("body_hex");
        let body: Vec<u8> =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect();
        match data_coding {
            8 if body.len() >= 2 && (0xD8..0xDC).contains(&body[body.len() - 2]) => {
                out.push(format!("part {} ends inside a surrogate pair", i + 1))
            }
            0 if body.iter().rev().take_while(|o| **o == 0x1B).count() % 2 == 1 => {
                out.push(format!("part {} ends inside an escape pair", i + 1))
            }
            _ => {}
        }
    }
    out
}

#[test]
fn an_smpplib_client_against_vumi_fake_smsc() {
    let python = peers().join("venv/bin/python");
    let fake = FakeSmsc::start(&[]);
    let (long, gsm_long) = (long_text(), long_gsm_text());
    let out = Command::new(&python)
        .arg(workspace().join("tests/smpp/client.py"))
        .arg(fake.smpp.to_string())
        .args(["--send", GSM_TEXT, "--send", &long, "--send", &gsm_long])
        .args(["--from", "1234", "--to", "27820000005"])
        .args(["--deadline", &WAIT.as_secs().to_string()])
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}): run tests/smpp/setup.sh", python.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "client.py failed ({}); stdout: {stdout}", out.status);
    let got: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("client.py printed no JSON ({e}): {stdout}"));
    let messages = got["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 3, "{got:#}");
    let parts = |i: usize| messages[i]["parts"].as_array().expect("parts").clone();
    assert_eq!(
        (messages[0]["data_coding"].as_u64(), parts(0).len()),
        (Some(0), 1),
        "smpplib sent the GSM text as one GSM SMS: {got:#}"
    );
    assert_eq!(messages[1]["data_coding"], 8, "smpplib sent the emoji text in UCS-2: {got:#}");
    assert_eq!(messages[2]["data_coding"], 0, "and the long GSM text in GSM: {got:#}");
    assert!(
        parts(1).len() >= 3 && parts(2).len() >= 3,
        "smpplib split the long texts into UDH parts: {got:#}"
    );
    assert!(
        got["complete"].as_bool().unwrap_or(false),
        "client.py did not get a response and a receipt for every submit_sm within {WAIT:?}: {got:#}"
    );

    // Every submit_sm was accepted with an id (past 9: hex digits show), and its receipt names
    // that same id, in the TLV and in the text.
    let receipts: Vec<&Value> = got["deliver_sm"]
        .as_array()
        .expect("deliver_sm")
        .iter()
        .filter(|d| d["esm_class"].as_u64().unwrap_or(0) & 0x3C == 0x04)
        .collect();
    let mut ids = Vec::new();
    for m in messages {
        for p in m["parts"].as_array().expect("parts") {
            assert_eq!(p["status"], 0, "a submit_sm was refused: {p}");
            let id = p["message_id"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| panic!("a submit_sm_resp with no id: {p}"));
            let r = receipts
                .iter()
                .find(|r| r["receipted_message_id"] == id)
                .unwrap_or_else(|| panic!("no receipt whose receipted_message_id is the submit_sm_resp's id {id:?}; receipts: {receipts:#?}"));
            assert_eq!(r["message_state"], 2, "DELIVERED: {r}");
            let body = r["short_message"].as_str().unwrap_or_default();
            assert_eq!(text_id(body), Some(id), "the receipt text's id: {body:?}");
            assert!(body.contains("stat:DELIVRD"), "{body:?}");
            ids.push(id.to_owned());
        }
    }
    assert!(ids.len() >= 10, "{ids:?}");
    assert_eq!(receipts.len(), ids.len(), "one receipt per submit_sm: {receipts:#?}");

    // The fake decoded the three texts exactly, the long ones put together from smpplib's parts.
    let mt = until(
        "the fake SMSC to list the three messages",
        || {
            let mt = fake.mt();
            (mt.len() >= 3).then_some(mt)
        },
        || format!("{:#?}", fake.mt()),
    );
    assert_eq!(mt.len(), 3, "{mt:#?}");
    let find = |dc: u64, single: bool| {
        mt.iter().find(|m| m["data_coding"] == dc && (m["parts"] == 1) == single).unwrap_or_else(|| {
            panic!(
                "no message with data_coding {dc} in {} part(s): {mt:#?}",
                if single { "one" } else { "several" }
            )
        })
    };
    let gsm = find(0, true);
    assert_eq!(gsm["text"], GSM_TEXT, "{gsm:#}");
    assert_eq!(
        (gsm["coding"].as_str(), gsm["from"].as_str(), gsm["to"].as_str()),
        (Some("gsm7"), Some("1234"), Some("27820000005")),
        "{gsm:#}"
    );
    assert_eq!(gsm["warnings"], json!([]), "{gsm:#}");
    // smpplib cuts 134 octets (UCS-2) or 153 septets (GSM) per part regardless of characters
    // (its make_parts says so in a FIXME): the test's texts put both emoji and one `€` across
    // its cuts. The fake must put the octets together before decoding (the texts), and say
    // which parts were cut there, and warn of nothing else.
    for (m, text, dc, sent) in
        [(find(8, false), &long, 8, parts(1)), (find(0, false), &gsm_long, 0, parts(2))]
    {
        assert_eq!(m["text"], text.as_str(), "the long text put together from smpplib's parts: {m:#}");
        assert_eq!(m["method"], "udh8", "{m:#}");
        assert_eq!(m["coding"], if dc == 8 { "ucs2" } else { "gsm7" }, "{m:#}");
        assert_eq!(m["parts"].as_u64(), Some(sent.len() as u64), "{m:#}");
        let cut = cut_parts(&sent, dc);
        assert!(
            !cut.is_empty() && cut[0].starts_with("part 1 "),
            "the test's text is cut at part 1 by smpplib: {cut:?}"
        );
        assert_eq!(m["warnings"], json!(cut), "the fake's warnings are the cut pairs, no others: {m:#}");
    }
    let listed: Vec<&str> = mt
        .iter()
        .flat_map(|m| m["message_ids"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(listed, ids, "the fake lists the ids it answered, in order: {mt:#?}");
}
