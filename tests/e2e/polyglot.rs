//! Contract 0.2 from other languages: an echo app written in Python (componentize-py) and one in
//! JavaScript (componentize-js) load in the host and answer through the same harness the Rust
//! plugins use. A smoke test of the contract, not an SDK: `tests/polyglot/build.sh` installs the
//! tools from PyPI and npm (into `target/polyglot/`) and builds both components.

use std::path::PathBuf;
use std::sync::OnceLock;

use vumi_host::harness::PluginHarness;

use crate::common::workspace;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
}

/// `target/polyglot/<name>.wasm`, built once per run by `tests/polyglot/build.sh`.
fn component(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = std::process::Command::new("bash")
            .arg(workspace().join("tests/polyglot/build.sh"))
            // The Node smoke run is the script's own check; the host loads them here.
            .env("POLYGLOT_SMOKE", "0")
            .status()
            .expect("run tests/polyglot/build.sh");
        assert!(
            status.success(),
            "tests/polyglot/build.sh failed (it needs python3 with venv, node and npm, and the PyPI and npm registries); its output is above"
        );
    });
    workspace().join("target/polyglot").join(format!("{name}.wasm"))
}

fn echoes(name: &str) {
    rt().block_on(async {
        let app = PluginHarness::builder(component(name))
            .load()
            .await
            .unwrap_or_else(|e| panic!("load {name}: {e}"));
        let user = app.user("+27820000001");
        let r = user.start().await.expect("new session");
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].content.as_deref(), Some("echo: ready"));
        assert_eq!(r[0].to_addr.as_deref(), Some("+27820000001"), "a reply goes back to the sender");
        for text in ["hello", "sawubona, ñandú ☎"] {
            let r = user.say(text).await.expect("resume");
            assert_eq!(r.len(), 1, "{r:?}");
            assert_eq!(r[0].content.as_deref(), Some(text));
            assert_eq!(r[0].session_event, None, "the session continues");
        }
        // Many calls on the pooled instance: the handles lent per call do not pile up.
        for i in 0..200 {
            let text = format!("n{i}");
            assert_eq!(user.say(&text).await.expect("resume")[0].content.as_deref(), Some(text.as_str()));
        }
        assert_eq!(app.plugin().stats().failed.load(std::sync::atomic::Ordering::Relaxed), 0);
    });
}

#[test]
fn a_python_echo_component_answers_through_the_host() {
    echoes("echo-py");
}

#[test]
fn a_javascript_echo_component_answers_through_the_host() {
    echoes("echo-js");
}
