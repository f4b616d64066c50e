//! Middleware chains end to end: plugins and the native logger on real transports.

use serde_json::{Value, json};

use crate::common::{Host, Recorder, http, plugin};
use crate::survey::QUESTIONS;

/// `[middleware.<name>]` for a plugin with an inline config table.
fn mw(name: &str, plugin_name: &str, config: &str) -> String {
    format!(
        "[middleware.{name}]\nkind = \"plugin\"\nplugin = \"{}\"\nconfig = {config}\n\n",
        plugin(plugin_name).display()
    )
}

/// The send API of the test's channel `api`.
fn send(host: &Host, body: &Value) -> reqwest::blocking::Response {
    crate::common::post_json(host, "/api/v1/channels/api/messages", Some("mw-token-1"), body)
}

fn inbound_sms(host: &Host, from: &str, content: &str) -> String {
    let resp = http()
        .post(host.url("/transports/sms/inbound"))
        .form(&[("from", from), ("to", "5555"), ("content", content)])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().unwrap()["result"]["message_id"].as_str().unwrap().to_owned()
}

#[test]
fn an_opted_out_user_gets_nothing_and_the_sender_hears_why() {
    let aggregator = Recorder::start(0);
    let mo = Recorder::start(0);
    let events = Recorder::start(0);
    let host = Host::start(&format!(
        r#"
[http]
bind = "127.0.0.1:0"

[transports.sms]
kind = "sms_http"
outbound_url = "{agg}"

[channels.api]
connector = "sms"
token = "mw-token-1"
default_from = "5555"
mo_url = "{mo}"
event_url = "{events}"

{msisdn}{optout}
[chains.sms]
inbound = ["msisdn", "opt_out"]
outbound = ["msisdn", "opt_out"]
"#,
        agg = aggregator.url("/sms"),
        mo = mo.url("/mo"),
        events = events.url("/ev"),
        msisdn = mw("msisdn", "msisdn-middleware", r#"{ country_code = "27" }"#),
        optout = mw("opt_out", "opt-out-middleware", r#"{ keywords = ["STOP", "UNSUBSCRIBE"] }"#),
    ));

    // MSISDN normalisation runs first: the app and the opt-out list see E.164.
    inbound_sms(&host, "082 123 4567", "hello");
    let hello = mo.wait_for(1)[0].json();
    assert_eq!(hello["from_addr"], "+27821234567", "the national form became E.164");
    assert_eq!(hello["helper_metadata"]["optout"], json!({"optout": false}));

    let stop_id = inbound_sms(&host, "0821234567", "stop please");
    let stop = mo.wait_for(2)[1].json();
    assert_eq!(
        stop["helper_metadata"]["optout"],
        json!({"optout": true, "optout_keyword": "stop"}),
        "STOP passes on, marked"
    );

    // The app may confirm, once, by replying to the opt-out itself.
    let resp = send(&host, &json!({"reply_to": stop_id, "content": "You will hear no more from us"}));
    assert_eq!(resp.status(), 201);
    assert_eq!(aggregator.wait_for(1)[0].json()["content"], "You will hear no more from us");

    // Anything else to that user, in whatever form the app writes the number, is dropped.
    let resp = send(&host, &json!({"to": "0027821234567", "content": "Buy now!"}));
    assert_eq!(resp.status(), 201);
    let blocked = resp.json::<Value>().unwrap()["result"]["message_id"].as_str().unwrap().to_owned();
    let nack = events
        .wait_for(2)
        .into_iter()
        .map(|r| r.json())
        .find(|e| e["user_message_id"] == blocked.as_str())
        .unwrap();
    assert_eq!(nack["event_type"], "nack");
    let reason = nack["nack_reason"].as_str().unwrap();
    assert!(
        reason.contains("opt_out") && reason.contains("`+27821234567` has opted out (sent STOP)"),
        "{reason}"
    );
    let status = http()
        .get(host.url(&format!("/api/v1/channels/api/messages/{blocked}")))
        .bearer_auth("mw-token-1")
        .send()
        .unwrap();
    assert_eq!(status.json::<Value>().unwrap()["result"]["status"], "rejected");

    // Other users are unaffected; the blocked message never reached the aggregator.
    let resp = send(&host, &json!({"to": "+27829999999", "content": "Hello other"}));
    assert_eq!(resp.status(), 201);
    let sent: Vec<Value> = aggregator.wait_for(2).iter().map(|r| r.json()).collect();
    assert_eq!(sent[1]["to"], "+27829999999");
    assert!(sent.iter().all(|s| s["content"] != "Buy now!"), "{sent:?}");

    // START opts back in.
    inbound_sms(&host, "+27821234567", "START");
    assert_eq!(
        mo.wait_for(3)[2].json()["helper_metadata"]["optout"],
        json!({"optout": false, "optin_keyword": "start"})
    );
    send(&host, &json!({"to": "0821234567", "content": "Welcome back"}));
    let back = aggregator.wait_for(3)[2].json();
    assert_eq!((back["to"].as_str(), back["content"].as_str()), (Some("+27821234567"), Some("Welcome back")));
}

#[test]
fn session_length_is_recorded_and_the_log_middleware_shows_each_message() {
    let host = Host::start(&format!(
        r#"
[http]
bind = "127.0.0.1:0"

[transports.ussd]
kind = "ussd_at"
path = "/ussd"

[apps.app]
plugin = "{survey}"
connector = "ussd"
{QUESTIONS}

{session}
[middleware.log]
kind = "log"
level = "info"

[chains.ussd]
inbound = ["session_length", "log"]
outbound = ["session_length", "log"]
event = ["log"]
"#,
        survey = plugin("survey").display(),
        session = mw("session_length", "session-length-middleware", "{}"),
    ));
    let ussd = |text: &str| {
        let resp = http()
            .post(host.url("/ussd"))
            .form(&[
                ("sessionId", "s-1"),
                ("serviceCode", "*120#"),
                ("phoneNumber", "+27820000031"),
                ("text", text),
            ])
            .send()
            .unwrap();
        resp.text().unwrap()
    };
    let dialogue = std::time::Instant::now();
    assert!(ussd("").starts_with("CON "));
    assert!(ussd("1").starts_with("CON "));
    let end = ussd("1*1");
    assert!(end.starts_with("END "), "{end}");
    let took = dialogue.elapsed();

    // The logger runs after session_length, so the JSON it logs carries the annotation. Wait for
    // the closing answer's (the last line logged): the stderr reader may lag the HTTP answer, and
    // the middleware's name alone is already in the start-up lines.
    let log = host.wait_for_log("\"session_length\":");
    let logged: Vec<Value> = log
        .lines()
        .filter(|l| l.contains("vumi::middleware::log"))
        .filter_map(|l| l.split_once(" json=").map(|(_, json)| serde_json::from_str(json.trim()).unwrap()))
        .collect();
    let users: Vec<&Value> = logged.iter().filter(|m| m["message_type"] == "user_message").collect();
    assert_eq!(users.len(), 6, "three requests and three answers are logged: {logged:#?}\n{log}");
    let start = users[0]["helper_metadata"]["session"]["session_start"].as_str().unwrap().to_owned();
    assert_eq!(users[0]["timestamp"], start.as_str(), "the session starts with its first message");
    for m in &users[..5] {
        assert_eq!(
            m["helper_metadata"]["session"],
            json!({"session_start": start}),
            "every message carries the start"
        );
    }
    let closing = &users[5]["helper_metadata"]["session"];
    assert_eq!(users[5]["session_event"], "close", "the survey's END closes it");
    assert_eq!(closing["session_start"], start.as_str());
    assert_eq!(closing["session_end"], users[5]["timestamp"]);
    // The length is the time between the session's first and last messages' own timestamps,
    // and no longer than the dialogue took.
    let at = |v: &Value| {
        chrono::NaiveDateTime::parse_from_str(v.as_str().unwrap(), "%Y-%m-%d %H:%M:%S%.f").unwrap()
    };
    let between = (at(&closing["session_end"]) - at(&closing["session_start"])).as_seconds_f64();
    let length = closing["session_length"].as_f64().unwrap();
    assert!(
        (length - between).abs() < 1e-6,
        "the session's length is its end less its start: {length} vs {between}"
    );
    assert!(
        length > 0.0 && length <= took.as_secs_f64(),
        "the session lasted as long as the dialogue: {length} s of {took:?}"
    );
    assert!(logged.iter().any(|m| m["message_type"] == "event"), "the event chain logs the transport's acks");
}

#[test]
fn a_failing_middleware_costs_only_its_messages() {
    let host = Host::start(&format!(
        r#"
[transports.telnet]
kind = "telnet"
bind = "127.0.0.1:0"

[transports.other]
kind = "telnet"
bind = "127.0.0.1:0"

[admin]
bind = "127.0.0.1:0"
token = "middleware-admin-token"

[apps.echo]
plugin = "{echo}"
connector = "telnet"

[apps.echo2]
plugin = "{echo}"
connector = "other"

{broken}
[chains.telnet]
inbound = ["broken"]
"#,
        echo = plugin("echo").display(),
        // No `country_code`: every message fails with the plugin's config error.
        broken = mw("broken", "msisdn-middleware", "{}"),
    ));
    let mut t = host.connect_to("telnet");
    t.send("hello");
    let log = host.wait_for_log("message sent to the failure path");
    assert!(
        log.contains("middleware on telnet.inbound: ")
            && log.contains("invalid middleware config: missing field `country_code`"),
        "{log}"
    );
    // The session's opening and its line both failed in the chain, recorded before either
    // could be queued: once both records exist, neither ever reaches the app.
    let failures = crate::common::eventually("both messages on the failure path", || {
        let v: Value = http()
            .get(host.admin_url("/failures"))
            .bearer_auth("middleware-admin-token")
            .send()
            .unwrap()
            .json()
            .unwrap();
        if v["result"]["matching"] == 2 { Ok(v) } else { Err(v.to_string()) }
    });
    assert!(
        failures["result"]["failures"].as_array().unwrap().iter().all(|f| f["queue"] == "telnet.inbound"),
        "{failures}"
    );
    let metrics = host.metrics("middleware-admin-token");
    assert!(
        !metrics.lines().any(|l| l.starts_with("vumi_messages_total{")
            && l.contains("connector=\"telnet\"")
            && l.contains("queue=\"inbound\"")),
        "the failed messages went no further: nothing was queued for the app:\n{metrics}"
    );
    let mut o = host.connect_to("other");
    o.send("still here");
    assert_eq!(o.line(), "echo: ready", "other connectors keep flowing: the session opens...");
    assert_eq!(o.line(), "still here", "...and the line is echoed");
}

#[test]
fn a_component_of_another_world_is_refused_as_middleware() {
    let dir = crate::common::TempDir::new();
    let path = dir.path().join("vumi.toml");
    let config = format!(
        "[transports.telnet]\nkind = \"telnet\"\nbind = \"127.0.0.1:0\"\n\n{}[chains.telnet]\ninbound = [\"wrong\"]\n",
        mw("wrong", "echo", "{}")
    );
    std::fs::write(&path, config).unwrap();
    let out = crate::common::vumi().args(["run", "--config"]).arg(&path).output().unwrap();
    assert!(!out.status.success(), "start-up stops");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`middleware.wrong.plugin`")
            && err.contains("is not a vumi:plugin/middleware@0.2.1 component"),
        "{err}"
    );
}
