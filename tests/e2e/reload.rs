//! Hot reload under load, config reload, the compiled-component cache, and the admin API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Host, Telnet, TempDir, eventually, http, plugin, telnet_app_config, vumi};

const TOKEN: &str = "test-admin-token";

/// `versioned.wasm` with its version bytes patched to `VERSION-<n>`: a different component that
/// answers `VERSION-<n> <text>`.
fn version_bytes(n: u32) -> Vec<u8> {
    let mut bytes = std::fs::read(plugin("versioned")).expect("versioned.wasm");
    let at = bytes.windows(10).position(|w| w == b"VERSION-00").expect("version marker");
    bytes[at..at + 10].copy_from_slice(format!("VERSION-{n:02}").as_bytes());
    bytes
}

/// Replace `path` as a deploy script would: write beside it, rename over it.
fn install(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("wasm.part");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A host whose app `app` runs `versioned` (version 0) from a file in its own directory, with
/// the admin API on a free port.
fn versioned_host(extra: &str) -> (Host, PathBuf, TempDir) {
    let plugins = TempDir::new();
    let wasm = plugins.path().join("app.wasm");
    std::fs::write(&wasm, version_bytes(0)).unwrap();
    let app = "instances = \"pooled\"\nconcurrency = 4";
    let config = format!(
        "{}\n[admin]\nbind = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n{extra}\n",
        telnet_app_config(&wasm, app)
    );
    (Host::start(&config), wasm, plugins)
}

fn admin_get(host: &Host, path: &str) -> Value {
    let resp = http().get(host.admin_url(path)).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(resp.status(), 200, "GET {path}");
    resp.json().unwrap()
}

fn plugin_view(host: &Host, name: &str) -> Value {
    admin_get(host, &format!("/plugins/{name}"))["result"].clone()
}

/// One telnet user sending `c<client> s<seq>` every few milliseconds while a reader records every
/// answer.
struct Load {
    sent: Arc<Mutex<u64>>,
    answers: Arc<Mutex<Vec<(u32, u64, Instant)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Set when the answer to the closing marker (`c<n> end`) arrives: nothing sent before it
    /// can be answered after it, so it is the barrier for "nothing doubled".
    ended: Arc<std::sync::atomic::AtomicBool>,
    writer: Option<std::thread::JoinHandle<()>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(host: &Host, client: usize) -> Load {
        let mut t = Telnet::connect(host.telnet);
        let greeting = t.line();
        assert!(greeting.starts_with("VERSION-"), "{greeting:?}");
        let sent = Arc::new(Mutex::new(0u64));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (reader, writer) = t.into_parts();
        let reader = {
            let (answers, ended) = (answers.clone(), ended.clone());
            let mut reader = reader;
            std::thread::spawn(move || {
                use std::io::BufRead;
                let mut line = String::new();
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    // "VERSION-07 c1 s42"
                    let mut parts = line.split_whitespace();
                    let version =
                        parts.next().and_then(|v| v.strip_prefix("VERSION-")).and_then(|v| v.parse().ok());
                    let _client = parts.next();
                    let word = parts.next();
                    if word == Some("end") {
                        ended.store(true, std::sync::atomic::Ordering::SeqCst);
                        continue;
                    }
                    let seq = word.and_then(|s| s.strip_prefix('s')).and_then(|s| s.parse().ok());
                    let (Some(v), Some(s)) = (version, seq) else { panic!("unexpected answer {line:?}") };
                    answers.lock().unwrap().push((v, s, Instant::now()));
                }
            })
        };
        let writer = {
            let (sent, stop) = (sent.clone(), stop.clone());
            let mut writer = writer;
            std::thread::spawn(move || {
                use std::io::Write;
                let mut seq = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    writer.write_all(format!("c{client} s{seq}\r\n").as_bytes()).unwrap();
                    seq += 1;
                    *sent.lock().unwrap() = seq;
                    std::thread::sleep(Duration::from_millis(3));
                }
                // One user's messages are answered in order: once this one is answered, every
                // earlier one (and any copy of one) has been.
                writer.write_all(format!("c{client} end\r\n").as_bytes()).unwrap();
                // The reader's half keeps the connection open until it has everything.
            })
        };
        Load { sent, answers, stop, ended, writer: Some(writer), reader: Some(reader) }
    }

    fn latest_version(&self) -> Option<u32> {
        self.answers.lock().unwrap().last().map(|a| a.0)
    }

    fn answered(&self) -> usize {
        self.answers.lock().unwrap().len()
    }

    /// Wait until `more` answers beyond the first `from` have arrived; their versions.
    fn versions_after(&self, from: usize, more: usize) -> Vec<u32> {
        eventually(&format!("{more} answers after {from}"), || {
            let n = self.answered();
            if n >= from + more { Ok(()) } else { Err(format!("{n} answers")) }
        });
        self.answers.lock().unwrap()[from..].iter().map(|a| a.0).collect()
    }

    /// Stop sending, send the closing marker, and wait for its answer; return every answer.
    fn finish(mut self) -> Vec<(u32, u64, Instant)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(w) = self.writer.take() {
            w.join().unwrap();
        }
        let sent = *self.sent.lock().unwrap();
        eventually("the closing marker's answer", || {
            if self.ended.load(std::sync::atomic::Ordering::SeqCst) {
                Ok(())
            } else {
                Err(format!("{} of {sent} answers", self.answered()))
            }
        });
        let _ = self.reader.take();
        let got = self.answers.lock().unwrap().clone();
        assert_eq!(got.len() as u64, sent, "every message answered once: sent {sent}, answers {}", got.len());
        got
    }
}

#[test]
fn ten_swaps_under_load_answer_every_message_exactly_once() {
    let (mut host, wasm, _plugins) = versioned_host("");
    let loads: Vec<Load> = (0..3).map(|c| Load::start(&host, c)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let bound = Duration::from_secs(3);
    let mut visible_after = Vec::new();

    let wait_for_version = |v: u32| -> Duration {
        let t0 = Instant::now();
        loop {
            if loads.iter().all(|l| l.latest_version() == Some(v)) {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < bound,
                "version {v} not answering {bound:?} after its file was written; log:\n{}",
                host.log()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    };

    for v in 1..=10u32 {
        if v == 4 {
            // Half a component, as a slow copy leaves it: refused, version 3 keeps answering.
            let half = version_bytes(99);
            std::fs::write(&wasm, &half[..half.len() / 2]).unwrap();
            host.wait_for_log("not a valid WebAssembly component");
            let view = plugin_view(&host, "app");
            assert!(
                view["rejected"]["reason"].as_str().unwrap().contains("not a valid WebAssembly component"),
                "{view}"
            );
            let marks: Vec<usize> = loads.iter().map(Load::answered).collect();
            for (l, m) in loads.iter().zip(marks) {
                assert!(l.versions_after(m, 5).iter().all(|v| *v == 3), "the old version keeps answering");
            }
        }
        if v == 7 {
            // A component of another world (a router): refused, version 6 keeps answering.
            install(&wasm, &std::fs::read(plugin("keyword-router")).unwrap());
            host.wait_for_log("is not a vumi:plugin/application@0.2.1 component");
            let marks: Vec<usize> = loads.iter().map(Load::answered).collect();
            for (l, m) in loads.iter().zip(marks) {
                assert!(l.versions_after(m, 5).iter().all(|v| *v == 6), "the old version keeps answering");
            }
        }
        // Alternate an atomic replace with a plain overwrite (truncate, then write).
        if v % 2 == 0 {
            install(&wasm, &version_bytes(v));
        } else {
            std::fs::write(&wasm, version_bytes(v)).unwrap();
        }
        visible_after.push(wait_for_version(v));
        std::thread::sleep(Duration::from_millis(100));
    }

    for (client, load) in loads.into_iter().enumerate() {
        let answers = load.finish();
        let mut seen = BTreeMap::new();
        let mut last_version = 0;
        for (i, (v, seq, _)) in answers.iter().enumerate() {
            assert_eq!(*seq, i as u64, "client {client}: answers in order, none lost or doubled");
            assert!(
                *v >= last_version,
                "client {client}: seq {seq} answered by version {v} after version {last_version}"
            );
            last_version = *v;
            *seen.entry(*v).or_insert(0u64) += 1;
        }
        assert_eq!(last_version, 10);
        assert!(!seen.contains_key(&99), "the half-written file never answered");
    }
    let view = plugin_view(&host, "app");
    assert_eq!(view["reloads"], 10, "{view}");
    assert!(view["rejected"].is_null(), "a later good version clears the rejection: {view}");
    assert!(host.alive());
    eprintln!(
        "swap visible after (file written -> every client answered by the new version): {visible_after:?}"
    );
}

#[test]
fn a_removed_plugin_file_keeps_the_loaded_version_serving() {
    let (host, wasm, _plugins) = versioned_host("");
    let mut t = host.connect();
    assert!(t.line().starts_with("VERSION-00"));
    std::fs::remove_file(&wasm).unwrap();
    host.wait_for_log("plugin file removed");
    t.send("still there?");
    assert_eq!(t.line(), "VERSION-00 still there?");
    assert_eq!(plugin_view(&host, "app")["file_missing"], true);
    // A new file brings a new version.
    install(&wasm, &version_bytes(5));
    eventually("the new file loaded", || {
        t.send("now?");
        let line = t.line();
        if line == "VERSION-05 now?" { Ok(()) } else { Err(line) }
    });
    assert_eq!(plugin_view(&host, "app")["file_missing"], false);
}

#[test]
fn the_admin_api_wants_its_token_refuses_bad_uploads_and_serves_metrics() {
    let (host, _wasm, _plugins) = versioned_host("");
    let mut t = host.connect();
    assert!(t.line().starts_with("VERSION-00"));

    // Health needs no token; everything else does.
    assert_eq!(http().get(host.admin_url("/health")).send().unwrap().status(), 200);
    for path in ["/plugins", "/metrics", "/transports", "/failures"] {
        assert_eq!(http().get(host.admin_url(path)).send().unwrap().status(), 401, "{path} without a token");
        let wrong = http().get(host.admin_url(path)).bearer_auth("nope").send().unwrap();
        assert_eq!(wrong.status(), 403, "{path} with a wrong token");
    }
    let put = |body: Vec<u8>| {
        http().put(host.admin_url("/plugins/app")).bearer_auth(TOKEN).body(body).send().unwrap()
    };
    assert_eq!(
        http().put(host.admin_url("/plugins/app")).body(version_bytes(1)).send().unwrap().status(),
        401
    );

    // Bad uploads: 422 with the reason; the old version keeps serving and the file is untouched.
    let garbage = put(b"\0asm not really".to_vec());
    assert_eq!(garbage.status(), 422);
    let why = garbage.json::<Value>().unwrap()["description"].as_str().unwrap().to_owned();
    assert!(why.contains("not a valid WebAssembly component"), "{why}");
    let wrong_world = put(std::fs::read(plugin("keyword-router")).unwrap());
    assert_eq!(wrong_world.status(), 422);
    let why = wrong_world.json::<Value>().unwrap()["description"].as_str().unwrap().to_owned();
    assert!(why.contains("is not a vumi:plugin/application@0.2.1 component"), "{why}");
    t.send("after bad uploads");
    assert_eq!(t.line(), "VERSION-00 after bad uploads");

    // A good upload swaps in.
    let ok = put(version_bytes(3));
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().unwrap();
    assert_eq!(body["result"]["outcome"], "swapped", "{body}");
    t.send("after deploy");
    assert_eq!(t.line(), "VERSION-03 after deploy");
    // The same bytes again change nothing.
    assert_eq!(put(version_bytes(3)).json::<Value>().unwrap()["result"]["outcome"], "unchanged");

    let plugins = admin_get(&host, "/plugins");
    let app = &plugins["result"]["plugins"][0];
    assert_eq!(app["name"], "app");
    assert_eq!(app["world"], "vumi:plugin/application@0.2.1");
    assert_eq!(app["hash"].as_str().unwrap().len(), 64);
    assert!(app["handled"].as_u64().unwrap() >= 3, "{app}");
    assert_eq!(app["reloads"], 1);

    let transports = admin_get(&host, "/transports");
    assert_eq!(transports["result"]["transports"][0]["name"], "telnet");
    assert_eq!(transports["result"]["transports"][0]["state"], "running");

    // Metrics: valid Prometheus text with the families operators graph.
    let resp = http().get(host.admin_url("/metrics")).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines)
        .unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{text}"));
    let names: std::collections::BTreeSet<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for needed in [
        "vumi_messages_total",
        "vumi_handler_seconds",
        "vumi_reloads_total",
        "vumi_queue_depth",
        "vumi_queue_capacity",
        "vumi_queued_seconds",
    ] {
        assert!(names.contains(needed), "{needed} missing from /metrics:\n{text}");
    }
    let capacity = scrape
        .samples
        .iter()
        .find(|s| s.metric == "vumi_queue_capacity" && s.labels.get("queue") == Some("telnet.inbound"))
        .unwrap();
    assert!(
        matches!(capacity.value, prometheus_parse::Value::Gauge(v) if v == 10_000.0),
        "each queue's capacity: {capacity:?}"
    );
    let latency = scrape.samples.iter().find(|s| s.metric == "vumi_handler_seconds").unwrap();
    assert!(
        matches!(&latency.value, prometheus_parse::Value::Histogram(b) if !b.is_empty()),
        "a histogram: {latency:?}"
    );
    let inbound = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "vumi_messages_total"
                && s.labels.get("connector") == Some("telnet")
                && s.labels.get("queue") == Some("inbound")
        })
        .unwrap_or_else(|| panic!("no telnet inbound counter:\n{text}"));
    let count = match inbound.value {
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("a counter, not {other:?}"),
    };
    assert!(count >= 3.0, "{inbound:?}");
}

#[test]
fn the_cli_lists_and_deploys_plugins() {
    let (host, _wasm, plugins) = versioned_host("");
    let admin = ["--admin-url", &host.admin_url(""), "--token", TOKEN];
    let out = vumi().args(["plugins", "list"]).args(admin).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("app") && stdout.contains("application"), "{stdout}");

    let next = plugins.path().join("next.wasm");
    std::fs::write(&next, version_bytes(8)).unwrap();
    let out = vumi().args(["plugins", "deploy", "app"]).arg(&next).args(admin).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("now serving"));
    let mut t = host.connect();
    assert!(t.line().starts_with("VERSION-08"));

    std::fs::write(&next, b"not wasm").unwrap();
    let out = vumi().args(["plugins", "deploy", "app"]).arg(&next).args(admin).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("422") && err.contains("not a valid WebAssembly component"), "{err}");
}

#[test]
fn config_reload_adds_changes_and_removes_and_rejects_an_invalid_config_whole() {
    let (host, wasm, _plugins) = versioned_host("");
    let mut first = host.connect();
    assert!(first.line().starts_with("VERSION-00"));
    let original = std::fs::read_to_string(host.config_path()).unwrap();

    // Add a transport and an app on it; the first connection survives the reload.
    let added = format!(
        "{original}\n[transports.second]\nkind = \"telnet\"\nbind = \"127.0.0.1:0\"\n\n[apps.echo]\nplugin = \"{}\"\nconnector = \"second\"\n",
        plugin("echo").display()
    );
    std::fs::write(host.config_path(), &added).unwrap();
    host.wait_for_log("config reloaded");
    let transports = admin_get(&host, "/transports");
    let second = transports["result"]["transports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "second")
        .unwrap_or_else(|| panic!("{transports}"))["listening"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut s = Telnet::connect(second);
    s.line();
    s.send("hello second");
    assert_eq!(s.line(), "hello second");
    first.send("still here");
    assert_eq!(first.line(), "VERSION-00 still here");

    // An invalid config is rejected whole: the running one stays, and the reason is reported.
    std::fs::write(host.config_path(), format!("{added}\n[apps.echo.typo]\n")).unwrap();
    host.wait_for_log("config rejected");
    let status = admin_get(&host, "/transports")["result"]["config"].clone();
    assert!(status["rejected"]["reason"].as_str().unwrap().contains("apps.echo"), "{status}");
    s.send("after a bad config");
    assert_eq!(s.line(), "after a bad config");

    // Re-configure the app (its config table changes) and remove the echo app and its transport.
    let changed = original.replace("concurrency = 4", "concurrency = 2");
    std::fs::write(host.config_path(), changed).unwrap();
    eventually("the second transport removed", || {
        let t = admin_get(&host, "/transports");
        if t["result"]["transports"].as_array().unwrap().len() == 1 { Ok(()) } else { Err(t.to_string()) }
    });
    first.send("after re-configuring");
    assert_eq!(first.line(), "VERSION-00 after re-configuring");
    let plugins = admin_get(&host, "/plugins");
    assert_eq!(plugins["result"]["plugins"].as_array().unwrap().len(), 1, "{plugins}");
    let _ = wasm;
}

#[test]
fn sighup_reloads_the_config() {
    let (host, _wasm, _plugins) = versioned_host("[plugins]\nwatch = false\n");
    let original = std::fs::read_to_string(host.config_path()).unwrap();
    let added = format!(
        "{original}\n[transports.second]\nkind = \"telnet\"\nbind = \"127.0.0.1:0\"\n\n[apps.echo]\nplugin = \"{}\"\nconnector = \"second\"\n",
        plugin("echo").display()
    );
    // With watch = false the host says it does not watch the file, and the only reload is the
    // one asked for after the write.
    host.wait_for_log("not watching the config file");
    std::fs::write(host.config_path(), &added).unwrap();
    host.signal("HUP");
    let log = host.wait_for_log("config reloaded");
    assert!(log.contains("SIGHUP"), "{log}");
    // (That the write alone reloads nothing with watch = false is shown where it is decided:
    // `supervisor::reload`'s test, without waiting for a watcher that might have fired.)
    assert_eq!(admin_get(&host, "/plugins")["result"]["plugins"].as_array().unwrap().len(), 2);
    // The admin API's reload does the same, and reports a rejection as 422.
    std::fs::write(host.config_path(), format!("{added}\nbogus = 1\n")).unwrap();
    let resp = http().post(host.admin_url("/reload")).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(resp.status(), 422);
    assert!(resp.text().unwrap().contains("bogus"));
}

#[test]
fn compiled_components_are_cached_and_a_corrupt_entry_is_rebuilt() {
    let cache = TempDir::new();
    let extra = format!("[plugins]\ncache_dir = \"{}\"\n", cache.path().display());
    let cold = {
        let (host, _wasm, _plugins) = versioned_host(&extra);
        plugin_view(&host, "app")
    };
    assert_eq!(cold["cache"], "compiled", "{cold}");
    let entries: Vec<PathBuf> = std::fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].file_name().unwrap().to_str().unwrap().starts_with(cold["hash"].as_str().unwrap()));

    let (host, _wasm, _plugins) = versioned_host(&extra);
    let warm = plugin_view(&host, "app");
    assert_eq!(warm["cache"], "hit", "{warm}");
    drop(host);

    // Flip one byte in the middle of the entry: detected by its checksum, rebuilt, and served.
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&entries[0], &bytes).unwrap();
    let (host, _wasm, _plugins) = versioned_host(&extra);
    let rebuilt = plugin_view(&host, "app");
    assert!(
        rebuilt["cache"].as_str().unwrap().starts_with("rebuilt: its checksum does not match"),
        "{rebuilt}"
    );
    let mut t = host.connect();
    assert!(t.line().starts_with("VERSION-00"));
    // Rebuilt means replaced: the next start is a hit again.
    drop(host);
    let (host, _wasm, _plugins) = versioned_host(&extra);
    assert_eq!(plugin_view(&host, "app")["cache"], "hit");
}
