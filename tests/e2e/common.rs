//! Shared test plumbing: building plugins once, starting the host, a telnet client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long any single expected event may take. Generous: CI has two shared cores.
pub const WAIT: Duration = Duration::from_secs(20);

/// Poll `probe` every 20 ms until it gives a value; after 30 s, fail with `what` and the last
/// state it described. The one way these tests wait for something to become true.
pub fn eventually<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match probe() {
            Ok(v) => return v,
            Err(state) => assert!(Instant::now() < deadline, "waited for {what}: {state}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`eventually`] inside a runtime: polls every 20 ms without blocking it.
pub async fn eventually_async<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(state) => assert!(Instant::now() < deadline, "waited for {what}: {state}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Delete every key of the machine's shared Redis matching one of `patterns` (a test's own,
/// named after its run), so the run leaves nothing behind (`.ci/run` checks).
pub fn clean_shared_redis(patterns: &[String]) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let client = redis::Client::open("redis://127.0.0.1:6379").expect("url");
        let mut conn = client.get_multiplexed_async_connection().await.expect("connect to Redis");
        for pattern in patterns {
            let keys: Vec<String> =
                redis::cmd("KEYS").arg(pattern).query_async(&mut conn).await.expect("KEYS");
            if !keys.is_empty() {
                let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.expect("DEL");
            }
        }
    });
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ has a parent").to_owned()
}

pub fn vumi() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vumi"));
    // Compiled components are cached under target/, not in the user's home.
    c.current_dir(workspace())
        .env("VUMI_LOG", "info")
        .env("XDG_CACHE_HOME", workspace().join("target").join("test-cache"));
    c
}

/// The directory holding every plugin's `.wasm`, built once per test run through the CLI.
pub fn plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = workspace().join("target").join("test-plugins");
        let status =
            vumi().args(["plugin", "build", "--out"]).arg(&out).status().expect("run `vumi plugin build`");
        assert!(status.success(), "`vumi plugin build` failed");
        for p in ["echo", "survey", "faulty", "wrong-world", "keyword-router", "opt-out-middleware"] {
            assert!(out.join(format!("{p}.wasm")).is_file(), "{p}.wasm was not built");
        }
        out
    })
}

pub fn plugin(name: &str) -> PathBuf {
    plugins().join(format!("{name}.wasm"))
}

/// A scratch directory for one test, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let p = std::env::temp_dir().join(format!("vumi-e2e-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A config with one telnet transport on a free port and one app.
pub fn telnet_app_config(plugin: &Path, extra_app_lines: &str) -> String {
    format!(
        r#"
[transports.telnet]
kind = "telnet"
bind = "127.0.0.1:0"

[apps.app]
plugin = "{}"
connector = "telnet"
{extra_app_lines}
"#,
        plugin.display()
    )
}

/// `child`'s stdout, line by line, read on a thread of its own (so a test can wait for a
/// ready line with a deadline).
pub fn stdout_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[path = "../support/vumi_proc.rs"]
mod vumi_proc;
pub use vumi_proc::VumiProc;

/// A running `vumi run`, killed on drop. Its stderr (the log) is collected for assertions.
pub struct Host {
    proc: VumiProc,
    /// The `telnet` transport's address (`0.0.0.0:0` if the config has none).
    pub telnet: SocketAddr,
    /// The shared HTTP listener's address, if the config serves HTTP.
    pub http: Option<SocketAddr>,
    /// Every socket transport's address, by name.
    pub listening: std::collections::HashMap<String, SocketAddr>,
    /// The admin API's address, if the config has `[admin]`.
    pub admin: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
    dir: TempDir,
}

impl Host {
    /// Write `config` to a temp dir and start the host on it; waits until it says it is ready.
    pub fn start(config: &str) -> Host {
        Self::start_with(config, &[])
    }

    /// [`Host::start`] with more `vumi run` arguments (e.g. `--role @apps`).
    pub fn start_with(config: &str, args: &[&str]) -> Host {
        let dir = TempDir::new();
        let path = dir.path().join("vumi.toml");
        std::fs::write(&path, config).expect("write config");
        let mut cmd = vumi();
        cmd.args(["run", "--config"]).arg(&path).args(args).stderr(Stdio::piped());
        // The log, collected from the start: a host that fails to start says why in it.
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let collect = move |child: &mut Child| {
            let Some(err) = child.stderr.take() else { return };
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut l = sink.lock().expect("log lock");
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        };
        let proc = VumiProc::spawn_with(cmd, WAIT, collect).unwrap_or_else(|why| {
            // A moment for the stderr reader to take the last lines of a host that exited.
            std::thread::sleep(Duration::from_millis(100));
            panic!("{why}; log:\n{}", log.lock().expect("log"))
        });
        let telnet =
            proc.listening.get("telnet").copied().unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (http, listening, admin) = (proc.http, proc.listening.clone(), proc.admin);
        Host { proc, telnet, http, listening, admin, log, dir }
    }

    /// The config file the host runs from (tests rewrite it to reload).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("vumi.toml")
    }

    /// `http://<the admin listener><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin.expect("the config has [admin]"))
    }

    /// The admin API's `/metrics` text, asked with `token`.
    pub fn metrics(&self, token: &str) -> String {
        let resp = http().get(self.admin_url("/metrics")).bearer_auth(token).send().expect("GET /metrics");
        assert_eq!(resp.status(), 200, "GET /metrics");
        resp.text().expect("metrics text")
    }

    /// A `/proc/<pid>/status` figure of the host's memory in KiB: `VmRSS` (now) or `VmHWM` (peak).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.child.id()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"))
    }

    /// Send the host a signal (e.g. `HUP`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.proc.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// `http://<the HTTP listener><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http.expect("the config serves HTTP"))
    }

    /// A telnet client to the transport named `name`.
    pub fn connect_to(&self, name: &str) -> Telnet {
        Telnet::connect(
            *self.listening.get(name).unwrap_or_else(|| panic!("no transport `{name}` announced")),
        )
    }

    pub fn connect(&self) -> Telnet {
        Telnet::connect(self.telnet)
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    /// Wait until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str) -> String {
        eventually(&format!("the log to contain {needle:?}"), || {
            let log = self.log();
            if log.contains(needle) { Ok(log) } else { Err(format!("log:\n{log}")) }
        })
    }

    /// Whether the process is still running (it must survive every fault).
    pub fn alive(&mut self) -> bool {
        matches!(self.proc.child.try_wait(), Ok(None))
    }

    /// Wait for the process to exit by itself; whether it exited successfully within `within`.
    pub fn exited_ok(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match self.proc.child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => return false,
            }
        }
        false
    }
}

/// A line-oriented TCP client, like `telnet`.
pub struct Telnet {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Telnet {
    pub fn connect(addr: SocketAddr) -> Telnet {
        let s = TcpStream::connect(addr).expect("connect to telnet transport");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        Telnet { reader: BufReader::new(s.try_clone().expect("clone")), writer: s }
    }

    /// The reading and writing halves, for a test that reads on one thread and writes on another.
    pub fn into_parts(self) -> (BufReader<TcpStream>, TcpStream) {
        (self.reader, self.writer)
    }

    pub fn send(&mut self, line: &str) {
        self.writer.write_all(format!("{line}\r\n").as_bytes()).expect("write");
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
    }

    /// The next line, without its CR/LF. Panics if none arrives in time.
    pub fn line(&mut self) -> String {
        let mut buf = String::new();
        match self.reader.read_line(&mut buf) {
            Ok(0) => panic!("connection closed while waiting for a line"),
            Ok(_) => buf.trim_end_matches(['\r', '\n']).to_owned(),
            Err(e) => panic!("no line within {WAIT:?}: {e}"),
        }
    }

    /// Read lines until one contains `needle`; returns everything read.
    pub fn until(&mut self, needle: &str) -> String {
        let mut all = String::new();
        loop {
            let l = self.line();
            all.push_str(&l);
            all.push('\n');
            if l.contains(needle) {
                return all;
            }
        }
    }

    /// Whether the server closed the connection (reads EOF in time).
    pub fn closed_by_server(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(e) => panic!("server did not close the connection within {WAIT:?}: {e}; got {rest:?}"),
        }
    }

    /// Nothing arrives within `d` (used after the host answered something else, never as sync).
    pub fn silent_for(&mut self, d: Duration) -> bool {
        self.writer.set_read_timeout(Some(d)).expect("timeout");
        let mut buf = String::new();
        let r = self.reader.read_line(&mut buf);
        self.writer.set_read_timeout(Some(WAIT)).expect("timeout");
        match r {
            Err(_) => true,
            Ok(_) => {
                eprintln!("unexpected line: {buf:?}");
                false
            }
        }
    }
}

/// An `sms_http` transport `sms` posting to `outbound_url`, and a send-API channel `api` on it
/// (token `test-token-1`, sending from `5555`), each with its `extra` config lines.
pub fn sms_channel_config(outbound_url: &str, transport_extra: &str, channel_extra: &str) -> String {
    format!(
        r#"
[transports.sms]
kind = "sms_http"
outbound_url = "{outbound_url}"
{transport_extra}

[channels.api]
connector = "sms"
token = "test-token-1"
default_from = "5555"
{channel_extra}
"#
    )
}

/// A blocking HTTP client with the suite's timeout.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(WAIT).build().expect("http client")
}

/// One request a [`Recorder`] received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A real HTTP server on a free port that records every request: it plays the SMS aggregator
/// and the `mo_url`/`event_url` callback receivers. It answers `500` to the first `fail_first`
/// requests, then `200 {"message_id": "agg-<n>"}`.
pub struct Recorder {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    /// Open: requests are answered. Held: each request waits (unanswered) until released.
    gate: tokio::sync::watch::Sender<bool>,
    _stop: std::sync::mpsc::Sender<()>,
}

impl Recorder {
    pub fn start(fail_first: usize) -> Recorder {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let sink = got.clone();
        let (gate, gate_rx) = tokio::sync::watch::channel(true);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind recorder");
                addr_tx.send(listener.local_addr().expect("addr")).expect("send addr");
                let count = Arc::new(AtomicUsize::new(0));
                let app = axum::Router::new().fallback(
                    move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                        let sink = sink.clone();
                        let count = count.clone();
                        let mut gate = gate_rx.clone();
                        async move {
                            let _ = gate.wait_for(|open| *open).await;
                            let n = count.fetch_add(1, Ordering::SeqCst);
                            let content_type = headers
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned();
                            sink.lock().expect("lock").push(Received {
                                path: uri.path().to_owned(),
                                content_type,
                                body: body.to_vec(),
                            });
                            if n < fail_first {
                                (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "try again".to_owned())
                            } else {
                                (axum::http::StatusCode::OK, format!("{{\"message_id\": \"agg-{n}\"}}"))
                            }
                        }
                    },
                );
                let stop = async move {
                    let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
                };
                axum::serve(listener, app).with_graceful_shutdown(stop).await.expect("serve");
            });
        });
        let addr = addr_rx.recv_timeout(WAIT).expect("recorder started");
        Recorder { addr, got, gate, _stop: stop_tx }
    }

    /// From now on, hold every request unanswered (a stalled aggregator or callback server),
    /// until [`Recorder::release`]. A held request is recorded once it is answered.
    pub fn hold(&self) {
        self.gate.send_replace(false);
    }

    /// Answer the held requests, and every one after.
    pub fn release(&self) {
        self.gate.send_replace(true);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Wait until at least `n` requests arrived; all of them so far.
    pub fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.got.lock().expect("lock").clone();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "expected {n} requests, got {}: {got:#?}", got.len());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }
}

/// POST `body` as JSON to the host's `path`, with a bearer `token` if given.
pub fn post_json(
    host: &Host,
    path: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> reqwest::blocking::Response {
    let mut req = http().post(host.url(path)).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().expect("POST")
}
