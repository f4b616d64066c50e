//! Dispatch rules as WASM components: a router plugin between a transport and several apps.

use std::time::Duration;

use crate::common::{Host, plugin};
use crate::survey::QUESTIONS;

/// Telnet behind the keyword router: `echo ...` to the echo app, anything else to the survey.
fn keyword_config(keywords: &str) -> String {
    format!(
        r#"
[transports.telnet]
kind = "telnet"
bind = "127.0.0.1:0"

[routers.keywords]
plugin = "{router}"
transports = ["telnet"]
apps = ["echo_app", "survey_app"]
[routers.keywords.config]
default = "survey_app"
{keywords}

[apps.echo]
plugin = "{echo}"
connector = "echo_app"

[apps.app]
plugin = "{survey}"
connector = "survey_app"
{QUESTIONS}
"#,
        router = plugin("keyword-router").display(),
        echo = plugin("echo").display(),
        survey = plugin("survey").display(),
    )
}

#[test]
fn the_first_word_picks_the_app_and_replies_come_back_through_the_router() {
    let host = Host::start(&keyword_config("[routers.keywords.config.keywords]\necho = \"echo_app\""));
    let mut t = host.connect();
    let q1 = t.until("3. Blue");
    assert!(q1.contains("Favourite colour?"), "a new session goes to the default app, the survey:\n{q1}");
    t.send("echo hello there");
    assert_eq!(t.line(), "echo hello there", "`echo ...` reaches the echo app, whose reply comes back");
    t.send("ECHO shouting");
    assert_eq!(t.line(), "ECHO shouting", "keywords match case-insensitively");
    t.send("2");
    let q2 = t.until("2. Winter");
    assert!(
        q2.contains("Favourite season?"),
        "anything else reaches the survey, which kept its place:\n{q2}"
    );
    t.send("1");
    let summary = t.until("Summer");
    assert!(summary.contains("Green"), "{summary}");
    assert!(t.closed_by_server(), "the survey's closing reply still closes the session through the router");
}

#[test]
fn a_router_naming_an_unknown_connector_costs_only_that_message() {
    let host = Host::start(&keyword_config(
        "[routers.keywords.config.keywords]\necho = \"echo_app\"\nquiz = \"quiz_app\"",
    ));
    let mut t = host.connect();
    t.until("3. Blue");
    t.send("quiz me");
    let log = host.wait_for_log("unknown_connector");
    assert!(log.contains("the router chose connector `quiz_app`, which it was not given"), "{log}");
    assert!(t.silent_for(Duration::from_millis(300)), "nothing is sent for the failed message");
    t.send("echo still routing");
    assert_eq!(t.line(), "echo still routing", "the dispatcher keeps routing other messages");
}

#[test]
fn a_router_that_refuses_a_message_sends_it_to_the_failure_path_with_its_reason() {
    let config = keyword_config("[routers.keywords.config.keywords]\necho = \"echo_app\"")
        .replace("default = \"survey_app\"\n", "");
    let host = Host::start(&config);
    let mut t = host.connect();
    t.send("hello");
    let log = host.wait_for_log("no app for keyword `hello`");
    assert!(log.contains("handler_error"), "{log}");
    t.send("echo fine");
    assert_eq!(t.line(), "echo fine");
}

#[test]
fn an_app_built_for_another_world_is_refused_as_a_router() {
    let config = keyword_config("")
        .replace(&plugin("keyword-router").display().to_string(), &plugin("echo").display().to_string());
    let dir = crate::common::TempDir::new();
    let path = dir.path().join("vumi.toml");
    std::fs::write(&path, &config).unwrap();
    let out = crate::common::vumi().args(["run", "--config"]).arg(&path).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("`routers.keywords.plugin`"), "the error names the key: {err}");
    assert!(err.contains("is not a vumi:plugin/router@0.2.1 component"), "{err}");
}

fn telnet(name: &str, to_addr: &str) -> String {
    format!("[transports.{name}]\nkind = \"telnet\"\nbind = \"127.0.0.1:0\"\nto_addr = \"{to_addr}\"\n")
}

fn app(name: &str, plugin_name: &str, connector: &str) -> String {
    format!("[apps.{name}]\nplugin = \"{}\"\nconnector = \"{connector}\"\n", plugin(plugin_name).display())
}

fn router(name: &str, plugin_name: &str, transports: &str, apps: &str, config: &str) -> String {
    format!(
        "[routers.{name}]\nplugin = \"{}\"\ntransports = {transports}\napps = {apps}\n[routers.{name}.config]\n{config}\n",
        plugin(plugin_name).display()
    )
}

#[test]
fn the_to_addr_router_picks_the_app_by_the_number_dialled() {
    let host = Host::start(&[
        telnet("code7", "*120*7#"),
        telnet("code8", "*120*8#"),
        router("codes", "to-addr-router", r#"["code7", "code8"]"#, r#"["survey_app", "echo_app"]"#,
            "[[routers.codes.config.routes]]\nto_addr = '^\\*120\\*7#$'\napp = \"survey_app\"\n[[routers.codes.config.routes]]\nto_addr = '^\\*120\\*8#$'\napp = \"echo_app\"\n"),
        app("echo", "echo", "echo_app"),
        app("app", "survey", "survey_app") + QUESTIONS,
    ].concat());
    let mut seven = host.connect_to("code7");
    assert!(seven.until("3. Blue").contains("Favourite colour?"), "*120*7# reaches the survey");
    let mut eight = host.connect_to("code8");
    assert_eq!(eight.line(), "echo: ready", "*120*8# reaches echo");
    eight.send("hi");
    assert_eq!(eight.line(), "hi");
}

#[test]
fn the_multiplex_router_brings_many_transports_to_one_app_and_replies_back_to_each() {
    let host = Host::start(
        &[
            telnet("left", "1"),
            telnet("right", "2"),
            router(
                "fan_in",
                "multiplex-router",
                r#"["left", "right"]"#,
                r#"["echo_app"]"#,
                "app = \"echo_app\"\n",
            ),
            app("echo", "echo", "echo_app"),
        ]
        .concat(),
    );
    let mut left = host.connect_to("left");
    let mut right = host.connect_to("right");
    assert_eq!(left.line(), "echo: ready");
    assert_eq!(right.line(), "echo: ready");
    right.send("to the right");
    left.send("to the left");
    assert_eq!(left.line(), "to the left", "each reply leaves by the transport its message came in on");
    assert_eq!(right.line(), "to the right");
}

#[test]
fn the_user_group_router_assigns_each_user_to_one_app_and_keeps_them_there() {
    let host = Host::start(
        &[
            telnet("telnet", "1"),
            router(
                "ab",
                "user-group-router",
                r#"["telnet"]"#,
                r#"["survey_app", "echo_app"]"#,
                "apps = [\"survey_app\", \"echo_app\"]\n",
            ),
            app("echo", "echo", "echo_app"),
            app("app", "survey", "survey_app") + QUESTIONS,
        ]
        .concat(),
    );
    let mut first = host.connect();
    assert!(first.until("3. Blue").contains("Favourite colour?"), "the first user goes to the first app");
    let mut second = host.connect();
    assert_eq!(second.line(), "echo: ready", "the second user to the second");
    second.send("still echo");
    assert_eq!(second.line(), "still echo", "and stays there");
    first.send("1");
    assert!(first.until("2. Winter").contains("Favourite season?"), "the first user stays with the survey");
}

#[test]
fn the_transport_to_transport_router_sends_inbound_out_by_another_transport() {
    let aggregator = crate::common::Recorder::start(0);
    let host = Host::start(&format!(
        "[http]\nbind = \"127.0.0.1:0\"\n{}{}",
        telnet("telnet", "1"),
        [
            format!(
                "[transports.sms_out]\nkind = \"sms_http\"\noutbound_url = \"{}\"\n",
                aggregator.url("/sms")
            ),
            router(
                "bridge",
                "transport-to-transport-router",
                r#"["telnet", "sms_out"]"#,
                r#"["unused"]"#,
                "[routers.bridge.config.routes]\ntelnet = \"sms_out\"\n"
            ),
        ]
        .concat()
    ));
    let mut t = host.connect();
    t.send("bridged line");
    let got = aggregator.wait_for(2);
    let contents: Vec<_> = got.iter().map(|r| r.json()["content"].clone()).collect();
    assert!(contents.contains(&serde_json::json!("bridged line")), "the line left by SMS: {contents:?}");
}

#[test]
fn events_find_the_app_that_sent_the_message_through_a_router() {
    let aggregator = crate::common::Recorder::start(0);
    let events = crate::common::Recorder::start(0);
    let host = Host::start(&format!(
        r#"
[http]
bind = "127.0.0.1:0"

[transports.sms]
kind = "sms_http"
outbound_url = "{agg}"

{router}
[channels.api]
connector = "api_app"
token = "api-token-1"
default_from = "777"
event_url = "{events}"
"#,
        agg = aggregator.url("/sms"),
        events = events.url("/ev"),
        router = router(
            "out",
            "redirect-outbound-router",
            r#"["sms"]"#,
            r#"["api_app"]"#,
            "app = \"api_app\"\n[routers.out.config.endpoints]\ndefault = \"sms\"\n"
        ),
    ));
    let resp = crate::common::http()
        .post(host.url("/api/v1/channels/api/messages"))
        .bearer_auth("api-token-1")
        .json(&serde_json::json!({"to": "+5", "content": "via the router"}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201);
    let id = resp.json::<serde_json::Value>().unwrap()["result"]["message_id"].as_str().unwrap().to_owned();
    let sms = aggregator.wait_for(1)[0].json();
    assert_eq!(sms["content"], "via the router", "the router sent it by the transport its endpoint names");
    let ack = events.wait_for(1)[0].json();
    assert_eq!(
        (ack["event_type"].as_str(), ack["user_message_id"].as_str()),
        (Some("ack"), Some(id.as_str())),
        "the ack came home"
    );
}

#[test]
fn the_seed_scenario_runs_from_config_dispatch_toml() {
    let aggregator = crate::common::Recorder::start(0);
    let shipped = std::fs::read_to_string(crate::common::workspace().join("config/dispatch.toml")).unwrap();
    let config = shipped
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9010", "127.0.0.1:0")
        .replace("http://127.0.0.1:9099/sms", &aggregator.url("/sms"))
        .replace("../plugins/dist/", &format!("{}/", crate::common::plugins().display()));
    let host = Host::start(&config);
    let http = crate::common::http();
    let ussd = |text: &str| {
        let form = [
            ("sessionId", "seed-1"),
            ("serviceCode", "*120#"),
            ("phoneNumber", "0820000001"),
            ("text", text),
        ];
        http.post(host.url("/ussd")).form(&form).send().unwrap().text().unwrap()
    };

    // USSD through the `mobile` dispatcher to the survey; the last answer also sends an SMS.
    assert!(ussd("").starts_with("CON Vumi survey\nHow did you hear about us?"));
    assert!(ussd("1").contains("How old are you?"));
    assert!(ussd("1*2").contains("Would you recommend"));
    let end = ussd("1*2*1");
    assert!(end.starts_with("END Thank you!"), "{end}");
    // It reached the SMS aggregator: it left by the SMS transport, as endpoint `sms` says.
    let sms = aggregator.wait_for(1)[0].json();
    assert_eq!(sms["to"], "+27820000001", "to the same user, in E.164 (msisdn middleware)");
    assert_eq!(sms["content"], "Thank you for taking the Vumi survey. You answered: Radio, 18-35, Yes");
    assert_eq!(sms["from"], "1234", "an app-started SMS leaves from the transport's default_from");
    assert!(host.log().contains("queue=sms.outbound"), "the log middleware saw it");

    // SMS reaches the same survey through the same dispatcher, and its reply leaves by SMS.
    let form = [("from", "0820000002"), ("to", "1234"), ("content", "hi")];
    assert_eq!(http.post(host.url("/transports/sms/inbound")).form(&form).send().unwrap().status(), 200);
    let reply = aggregator.wait_for(2)[1].json();
    assert_eq!(reply["to"], "+27820000002");
    assert!(reply["content"].as_str().unwrap().contains("How did you hear about us?"), "{reply}");

    // Telnet behind the keyword router.
    let mut t = host.connect_to("telnet");
    let first = t.until("4. Other");
    assert!(first.contains("Vumi survey (telnet)"), "a new session reaches the survey: {first}");
    t.send("echo hello");
    assert_eq!(t.line(), "echo hello", "`echo ...` reaches the echo app");
    t.send("2");
    assert!(t.until("4. Over 60").contains("How old are you?"), "anything else reaches the survey");
}

#[test]
fn a_router_that_traps_loops_or_hoards_memory_costs_only_that_message() {
    let host = Host::start(&format!(
        "{}[routers.faulty]\nplugin = \"{}\"\ntransports = [\"telnet\"]\napps = [\"app\"]\ndeadline_ms = 50\nmemory_limit_mb = 16\n\n{}",
        telnet("telnet", "1"),
        plugin("faulty-router").display(),
        app("echo", "echo", "app"),
    ));
    let mut t = host.connect();
    assert_eq!(t.line(), "echo: ready");
    for (bad, kind) in [("trap", "kind=\"trap\""), ("loop", "kind=\"deadline\""), ("grow", "kind=\"memory\"")]
    {
        t.send(bad);
        let log = host.wait_for_log(kind);
        assert!(log.contains("component=\"faulty\""), "the failure names the router: {log}");
        t.send(&format!("after {bad}"));
        assert_eq!(t.line(), format!("after {bad}"), "the dispatcher keeps routing after a {bad}");
    }
    assert!(
        host.log().contains("faulty router: asked to trap"),
        "a trap's reason includes the router's panic message"
    );
}
