use super::*;

fn with_plugin(dir: &Path) -> PathBuf {
    let p = dir.join("app.wasm");
    std::fs::write(&p, b"\0asm").expect("write");
    p
}

fn load(text: &str) -> Result<Config, ConfigError> {
    let dir = std::env::temp_dir().join(format!("vumi-config-test-{}", crate::message::new_id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    with_plugin(&dir);
    Config::from_toml(text, &dir.join("vumi.toml"))
}

const GOOD: &str = r#"
[transports.telnet]
kind = "telnet"
bind = "127.0.0.1:9010"

[apps.survey]
plugin = "app.wasm"
connector = "telnet"
instances = "fresh"
[apps.survey.config]
title = "Survey"
"#;

#[test]
fn a_good_config_loads_with_defaults() {
    let c = load(GOOD).expect("valid");
    let app = &c.apps[&"survey".parse::<ComponentName>().expect("name")];
    assert_eq!(app.instances, InstancesConfig::Fresh);
    assert_eq!(app.deadline_ms, 500);
    assert_eq!(app.config["title"].as_str(), Some("Survey"));
    assert!(c.resolve(&app.plugin).is_file());
}

#[test]
fn unknown_key_names_the_key_and_line() {
    let err =
        load(&GOOD.replace("instances = \"fresh\"", "instanses = \"fresh\"")).expect_err("typo").to_string();
    assert!(err.contains("vumi.toml"), "{err}");
    assert!(err.contains("unknown field `instanses`"), "{err}");
    assert!(err.contains("line 9"), "{err}");
}

#[test]
fn missing_plugin_names_file_key_and_fix() {
    let err = load(&GOOD.replace("app.wasm", "nope.wasm")).expect_err("missing").to_string();
    assert!(err.contains("`apps.survey.plugin`"), "{err}");
    assert!(err.contains("nope.wasm"), "{err}");
    assert!(err.contains("vumi plugin build"), "{err}");
}

#[test]
fn bad_values_are_named() {
    let err = load(&GOOD.replace("instances = \"fresh\"", "deadline_ms = 0")).expect_err("zero").to_string();
    assert!(err.contains("`apps.survey.deadline_ms`: must be between 1 and 60000, got 0"), "{err}");
    let err = load(&GOOD.replace("127.0.0.1:9010", "nowhere")).expect_err("bad addr").to_string();
    assert!(err.contains("invalid socket address"), "{err}");
    let err =
        load(&GOOD.replace("connector = \"telnet\"", "connector = \"sms\"")).expect_err("conn").to_string();
    assert!(
        err.contains("`apps.survey.connector`: no transport or router app connector named `sms`"),
        "{err}"
    );
    let err = load(&GOOD.replace("[apps.survey]", "[apps.\"bad name\"]")).expect_err("name").to_string();
    assert!(err.contains("bad name"), "{err}");
    let err =
        load(&GOOD.replace("kind = \"telnet\"", "kind = \"smoke-signals\"")).expect_err("kind").to_string();
    assert!(err.contains("smoke-signals"), "{err}");
}

#[test]
fn retry_tiers_load_and_their_mistakes_are_named() {
    let c = load(GOOD).expect("defaults");
    assert_eq!(c.host.retry.tiers_ms, [1_000, 10_000, 60_000, 600_000], "the default tiers");
    let with = |tiers: &str| format!("[host.retry]\ntiers_ms = {tiers}\n{GOOD}");
    assert_eq!(
        load(&with("[]")).expect("no tiers: straight to failures").host.retry.tiers_ms,
        Vec::<u64>::new()
    );
    let err = load(&with("[1000, 500]")).expect_err("unordered").to_string();
    assert!(
        err.contains("`host.retry.tiers_ms[1]`: the tiers go shortest first: 500 is not longer than 1000"),
        "{err}"
    );
    let err = load(&with("[0]")).expect_err("zero").to_string();
    assert!(
        err.contains("`host.retry.tiers_ms[0]`: must be 1 to 86400000 milliseconds (a day), got 0"),
        "{err}"
    );
}

const HTTP: &str = r#"
[transports.sms]
kind = "sms_http"
outbound_url = "http://127.0.0.1:9099/sms"

[channels.api]
connector = "sms"
token = "long-enough"
mo_url = "http://127.0.0.1:9200/mo"
"#;

#[test]
fn http_channels_load_and_their_mistakes_are_named() {
    let c = load(HTTP).expect("valid");
    assert!(c.serves_http());
    assert_eq!(c.http.bind.port(), 8080);
    assert_eq!(c.callbacks.retry, None, "callbacks take [host.retry] unless they say otherwise");
    let err = load(&HTTP.replace("http://127.0.0.1:9200/mo", "ftp://x/mo")).expect_err("scheme").to_string();
    assert!(err.contains("`channels.api.mo_url`: must be an http:// or https:// URL"), "{err}");
    let err = load(&HTTP.replace("http://127.0.0.1:9099/sms", "not a url")).expect_err("url").to_string();
    assert!(err.contains("`transports.sms.outbound_url`: is not a URL"), "{err}");
    let err =
        load(&HTTP.replace("connector = \"sms\"", "connector = \"ussd\"")).expect_err("conn").to_string();
    assert!(
        err.contains("`channels.api.connector`: no transport or router app connector named `ussd`"),
        "{err}"
    );
    let err = load(&HTTP.replace("long-enough", "short")).expect_err("token").to_string();
    assert!(
        err.contains("token = \"short\"") && err.contains("a token must be at least 8 characters"),
        "{err}"
    );
    let both = format!("{HTTP}\n[apps.echo]\nplugin = \"app.wasm\"\nconnector = \"sms\"\n");
    let err = load(&both).expect_err("two inbound owners").to_string();
    assert!(err.contains("each connector's inbound goes to one app or one channel"), "{err}");
    let app_named_like_channel = both.replace("[apps.echo]", "[apps.api]").replace("mo_url", "event_url");
    let err = load(&app_named_like_channel).expect_err("same name").to_string();
    assert!(err.contains("names both an app and a channel"), "{err}");
    let err = load(&format!("{HTTP}\n[callbacks]\nretry = {{ max_attempts = 0 }}\n"))
        .expect_err("attempts")
        .to_string();
    assert!(err.contains("`callbacks.retry.max_attempts`: must be between 1 and 1000, got 0"), "{err}");
    let slow = HTTP.replace("outbound_url = ", "retry = { initial_ms = 500, max_ms = 100 }\noutbound_url = ");
    let err = load(&slow).expect_err("max below initial").to_string();
    assert!(err.contains("`transports.sms.retry.max_ms`: must be between 500 and 3600000, got 100"), "{err}");
}

const CHAINS: &str = r#"
[middleware.opt_out]
kind = "plugin"
plugin = "app.wasm"
config = { keywords = ["STOP"] }

[middleware.log]
kind = "log"
level = "debug"

[chains.sms]
inbound = ["log", "opt_out"]
outbound = ["opt_out"]
event = ["log"]
"#;

#[test]
fn middleware_chains_load_and_their_mistakes_are_named() {
    let c = load(&format!("{HTTP}{CHAINS}")).expect("valid");
    assert_eq!(c.chains[&"sms".parse::<ConnectorName>().expect("name")].inbound.len(), 2);
    let cases = [
        (
            CHAINS.replace("[chains.sms]", "[chains.ussd]"),
            "`chains.ussd`: no transport or router app connector named `ussd` in this config (known: `sms`)",
        ),
        (
            CHAINS.replace("outbound = [\"opt_out\"]", "outbound = [\"optout\"]"),
            "`chains.sms.outbound`: no middleware named `optout` under [middleware] (known: `log`, `opt_out`)",
        ),
        (
            CHAINS.replace("event = [\"log\"]", "event = [\"opt_out\"]"),
            "`chains.sms.event`: `opt_out` is a plugin; plugin middleware sees user messages only",
        ),
        (
            CHAINS.replace("[\"log\", \"opt_out\"]", "[\"log\", \"log\"]"),
            "`chains.sms.inbound`: `log` is listed twice",
        ),
        (
            CHAINS.replace("level = \"debug\"", "level = \"loud\""),
            "`middleware.log.level`: must be trace, debug, info, warn or error, got `loud`",
        ),
        (
            CHAINS.replace("plugin = \"app.wasm\"", "plugin = \"gone.wasm\""),
            "`middleware.opt_out.plugin`: no plugin file at",
        ),
        (
            CHAINS.replace("kind = \"plugin\"", "kind = \"plugin\"\ndeadline_ms = 0"),
            "`middleware.opt_out.deadline_ms`: must be between 1 and 60000, got 0",
        ),
        (
            CHAINS.replace("[middleware.log]", "[middleware.api]"),
            "`middleware.api.kind`: `api` also names an app, channel or router",
        ),
    ];
    for (chains, want) in cases {
        let err = load(&format!("{HTTP}{chains}")).expect_err(want).to_string();
        assert!(err.contains(want), "want {want:?} in: {err}");
    }
    let err = load(&format!("{HTTP}{}", CHAINS.replace("kind = \"log\"", "kind = \"shout\"")))
        .expect_err("kind")
        .to_string();
    assert!(err.contains("unknown variant `shout`, expected `plugin` or `log`"), "{err}");
}

/// Each `golden/<case>.toml` is refused with exactly the text in `golden/<case>.err` (the config
/// file's directory written as `<dir>`). Set `VUMI_BLESS=1` to write the `.err` files from what
/// the code says now, then review the diff like code.
#[test]
fn error_wording_matches_the_golden_files() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/golden");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&golden)
        .expect("golden dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 8, "the golden cases are missing: {}", golden.display());
    let bless = std::env::var_os("VUMI_BLESS").is_some();
    let mut wrong = Vec::new();
    for case in cases {
        let dir = std::env::temp_dir().join(format!("vumi-golden-{}", crate::message::new_id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        with_plugin(&dir);
        let text = std::fs::read_to_string(&case).expect("case");
        let err = match Config::from_toml(&text, &dir.join("vumi.toml")) {
            Ok(_) => "accepted (a golden case must be refused)".to_owned(),
            Err(e) => e.to_string().replace(&dir.display().to_string(), "<dir>"),
        };
        let expected_file = case.with_extension("err");
        if bless {
            std::fs::write(&expected_file, format!("{err}\n")).expect("bless");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_file).unwrap_or_default();
        if expected.trim_end() != err {
            wrong.push(format!(
                "{}:\n  expected: {}\n  got:      {err}",
                case.display(),
                expected.trim_end()
            ));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(
        wrong.is_empty(),
        "error wording changed (VUMI_BLESS=1 rewrites the .err files):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn a_redis_state_store_loads_with_defaults_and_its_mistakes_are_named() {
    let c = load(&format!("[host.state]\nkind = \"redis\"\n{GOOD}")).expect("valid");
    let StateConfig::Redis(r) = &c.host.state else { panic!("not redis: {:?}", c.host.state) };
    assert_eq!(
        (r.url.as_str(), r.response_timeout_ms, r.reconnect_attempts),
        ("redis://127.0.0.1:6379", 1000, 16)
    );
    let err = load(&format!("[host.state]\nkind = \"redis\"\nurl = \"http://127.0.0.1:6379\"\n{GOOD}"))
        .expect_err("scheme")
        .to_string();
    assert!(
        err.contains("`host.state.url`: must be a `redis://host:port` URL, got `http://127.0.0.1:6379`"),
        "{err}"
    );
    let err = load(&format!("[host.state]\nkind = \"redis\"\nresponse_timeout_ms = 0\n{GOOD}"))
        .expect_err("range")
        .to_string();
    assert!(err.contains("`host.state.response_timeout_ms`: must be between 1 and 600000, got 0"), "{err}");
    let err = load(&format!("[host.state]\nkind = \"redis\"\nurll = \"redis://x\"\n{GOOD}"))
        .expect_err("typo")
        .to_string();
    assert!(err.contains("urll"), "{err}");
    let err = load(&format!("[host.state]\nkind = \"mongo\"\n{GOOD}")).expect_err("kind").to_string();
    assert!(err.contains("mongo"), "{err}");
}
