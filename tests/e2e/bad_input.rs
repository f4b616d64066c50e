//! Bad input gets a clear error and crashes nothing: configs, plugin files, telnet lines.

use crate::common::{Host, TempDir, plugin, telnet_app_config, vumi};

/// Run `vumi run` on `config`; it must fail at start-up. Returns its stderr.
fn start_fails(config: &str) -> String {
    let dir = TempDir::new();
    let path = dir.path().join("vumi.toml");
    std::fs::write(&path, config).expect("write");
    let out = vumi().args(["run", "--config"]).arg(&path).output().expect("run vumi");
    assert!(!out.status.success(), "vumi must refuse to start");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("vumi.toml"), "the error names the config file:\n{err}");
    err
}

#[test]
fn a_malformed_config_names_file_key_and_problem() {
    let err = start_fails("[transports.telnet\nkind = \"telnet\"");
    assert!(err.contains("line 1"), "{err}");
    let err = start_fails(&telnet_app_config(&plugin("echo"), "deadline_ms = \"soon\""));
    assert!(err.contains("deadline_ms") && err.contains("invalid type"), "{err}");
    let err = start_fails(&telnet_app_config(&plugin("echo"), "colour = \"blue\""));
    assert!(err.contains("unknown field `colour`"), "{err}");
}

#[test]
fn a_missing_plugin_file_is_named() {
    let err = start_fails(&telnet_app_config(std::path::Path::new("/nonexistent/app.wasm"), ""));
    assert!(err.contains("`apps.app.plugin`") && err.contains("/nonexistent/app.wasm"), "{err}");
}

#[test]
fn a_corrupt_wasm_file_is_refused_clearly() {
    let dir = TempDir::new();
    for (name, bytes) in [
        ("garbage.wasm", b"this is not wasm at all".to_vec()),
        ("truncated.wasm", std::fs::read(plugin("echo")).expect("echo.wasm")[..1000].to_vec()),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).expect("write");
        let err = start_fails(&telnet_app_config(&p, ""));
        assert!(err.contains("`apps.app.plugin`"), "{err}");
        assert!(err.contains("is not a valid WebAssembly component"), "{err}");
        assert!(err.contains(name), "{err}");
    }
}

#[test]
fn a_plugin_built_for_another_world_is_refused_clearly() {
    let err = start_fails(&telnet_app_config(&plugin("wrong-world"), ""));
    assert!(err.contains("is not a vumi:plugin/application@0.2.1 component"), "{err}");
    assert_eq!(err.matches("is not a vumi:plugin").count(), 1, "the reason is said once: {err}");
}

#[test]
fn a_one_mib_telnet_line_gets_an_error_and_the_session_goes_on() {
    let host = Host::start(&telnet_app_config(&plugin("echo"), ""));
    let mut t = host.connect();
    t.line(); // greeting
    let mut big = vec![b'x'; 1 << 20];
    big.extend_from_slice(b"\r\n");
    t.send_raw(&big);
    let err = t.line();
    assert!(err.contains("error: line of 1048576 bytes ignored"), "got {err:?}");
    assert!(err.contains("at most 4096 bytes"), "got {err:?}");
    t.send("hello");
    assert_eq!(t.line(), "hello", "the connection still works");
}

#[test]
fn invalid_utf8_on_the_socket_gets_an_error_and_the_session_goes_on() {
    let host = Host::start(&telnet_app_config(&plugin("echo"), ""));
    let mut t = host.connect();
    t.line(); // greeting
    t.send_raw(b"caf\xe9 \xff\xfe\r\n");
    assert_eq!(t.line(), "error: line ignored: it is not valid UTF-8 text");
    t.send("café");
    assert_eq!(t.line(), "café", "valid UTF-8 still goes through");
    // A barrier: the next line after those answers is the marker's echo, so the bad line
    // produced nothing else.
    t.send("marker");
    assert_eq!(t.line(), "marker", "the bad line produced nothing else");
}
