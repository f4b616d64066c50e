//! The command line teaches: `--help` and `config check`.

use crate::common::{plugins, vumi, workspace};

#[test]
fn help_explains_the_commands() {
    let out = vumi().arg("--help").output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in ["run", "plugin", "config", "telnet 127.0.0.1 9010", "--build-plugins"] {
        assert!(text.contains(needle), "--help mentions {needle:?}:\n{text}");
    }
    let out = vumi().args(["plugin", "build", "--help"]).output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("wasm32-wasip2"), "{text}");
}

#[test]
fn the_default_config_is_valid_once_plugins_are_built() {
    // The default config points at plugins/dist; build there the way the README does.
    plugins();
    let status = vumi().args(["plugin", "build"]).status().expect("run");
    assert!(status.success());
    let out = vumi()
        .args(["config", "check", "--config"])
        .arg(workspace().join("config/vumi.toml"))
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}{}", text, String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("valid") && text.contains("survey"), "{text}");
    // Every transport reads as a sentence, not a Rust struct.
    assert!(text.contains("transport telnet: telnet on 127.0.0.1:9010"), "{text}");
    assert!(
        text.contains("transport sms: SMS over HTTP: outbound POSTed as JSON to http://127.0.0.1:9099/sms"),
        "{text}"
    );
    assert!(!text.contains("Config {"), "{text}");
    // And every other config the repository ships (checking needs no broker).
    for other in
        ["config/dispatch.toml", "config/distributed.toml", "config/smpp.toml", "config/tenants.toml"]
    {
        let out =
            vumi().args(["config", "check", "--config"]).arg(workspace().join(other)).output().expect("run");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{other}: {text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(!text.contains("Config {") && !text.contains("password"), "{other}: {text}");
        if other == "config/smpp.toml" {
            assert!(text.contains("transport smpp: SMPP 3.4 to 127.0.0.1:2775 as `smppclient1`: 1 transceiver bind(s), window 10"), "{text}");
        }
    }
}
