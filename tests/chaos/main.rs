//! The chaos suite: two app hosts on a private RabbitMQ node and a private `redis-server` (AOF
//! `always`), each on its own port and directory, so killing them touches nothing else. Each
//! run drives 50,000 inbound messages from 1,000 users through the hosts (the pooled echo, with
//! per-user ordering) and injects one fault at about 3 s under full load. Then it drains and
//! judges, as RabbitMQ's Jepsen tests do, every input by its publisher confirm:
//!
//! - **lost**: confirmed, never answered (must be 0);
//! - **unexpected**: an answer to nothing we published (must be 0);
//! - **ids**: each input's answers carry exactly one distinct `message_id` (ids are derived);
//! - **copies**: answers beyond the first, within the fault's in-flight bound;
//! - **inversions**: a user's answer arriving after a later one of the same user (0 without a
//!   fault);
//! - **recovery**: time from the fault's end until the answer rate is back to half the rate
//!   before it: ≤ 10 s after the broker or Redis answers again (both reconnect within 1.5 s of
//!   their jittered waits; measured 0.0–0.5 s), and after a host kill ≤ the sequencer's lease
//!   (its dead turns hold their users that long), plus a refresh beat, plus 1 s for a loaded
//!   2-core machine to get going (`host_kill_bound`).
//!
//! - **events**: the sink acks every fifth answer with an event 1.5 s later, as a transport's
//!   delivery report comes later; the app shares its connector with a send-API channel, so each
//!   event is routed by the origin recorded in Redis. Every event is taken and settled, and only a Redis that lost
//!   its data (restarted without its AOF) may send events to `chaos.failures`, each with the
//!   reason; nothing else may reach that queue.
//!
//! `VUMI_CHAOS_MESSAGES` (default 50,000) sizes the load; `VUMI_CHAOS_FAULTS` picks faults
//! (comma-separated: none, broker-restart, broker-kill, host-kill, redis-restart,
//! redis-restart-empty, hot-swaps, broker-restart+host-kill).
//!
//! **What the timings rest on.** Every fault is a process killed or stopped, never the
//! machine: what a process wrote is in the page cache and survives it. So the private
//! RabbitMQ node and Redis keep their data on tmpfs (`/dev/shm` where there is one), where an
//! fsync costs nothing: with Redis's `appendfsync always` on a disk, every lease refresh and
//! turn waited on a disk flush shared with the broker's, and a slow flush on a busy CI machine
//! made leases run out and users' messages invert with no fault at all. The two tests of this
//! file take turns (`SERIAL`), so the broker probe's boots and floods never overlap a run.

#![allow(clippy::unwrap_used)] // a test's unwrap is its failure report

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use vumi_host::bus::{AmqpBus, AmqpOptions, Bus, RoutingKey};
use vumi_host::message::{Event, Message, UserMessage};

const USERS: usize = 1000;
const APP_LANES: usize = 32;

/// The two tests of this binary run one at a time: each starts private brokers and loads both
/// cores, and the other's load would be part of what is measured.
static SERIAL: Mutex<()> = Mutex::new(());

/// Where the private servers keep their data: tmpfs if the machine has one (see the module
/// doc), else the temporary directory.
fn scratch() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let probe = shm.join(format!("vumi-chaos-probe-{}", std::process::id()));
    if std::fs::create_dir_all(&probe).is_ok() {
        let _ = std::fs::remove_dir_all(&probe);
        return shm.to_owned();
    }
    std::env::temp_dir()
}

/// After a host kill, how long until the answer rate may be back to half: the dead host's
/// turns hold their users until their leases run out, the survivor finds out within a refresh
/// beat, and a loaded 2-core machine needs about a second more to get going.
fn host_kill_bound() -> Duration {
    let lease = vumi_host::supervisor::SEQUENCER_LEASE;
    lease + lease / 6 + Duration::from_secs(1)
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

fn wait_port(port: u16, open: bool, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while port_open(port) != open {
        assert!(
            Instant::now() < deadline,
            "{what}: port {port} not {} within {within:?}",
            if open { "open" } else { "closed" }
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A RabbitMQ node of our own: its own name, ports, config and data directory.
struct Broker {
    node: String,
    port: u16,
    dir: PathBuf,
    env: Vec<(String, String)>,
    /// The `rabbitmq-server` scripts started so far (each exits with its node), reaped on drop.
    servers: std::sync::Mutex<Vec<Child>>,
}

impl Broker {
    fn start() -> Broker {
        let port = free_port();
        let node = format!("vumichaos{port}@localhost");
        let dir = scratch().join(format!("vumi-chaos-rabbit-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["mnesia", "log"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        // The machine's own config pins the shared broker's listener: ours has its own.
        std::fs::write(dir.join("rabbitmq.conf"), format!("listeners.tcp.default = 127.0.0.1:{port}\n"))
            .unwrap();
        // The server runs as the `rabbitmq` user where the package installs it so.
        let _ = Command::new("chown").args(["-R", "rabbitmq:rabbitmq"]).arg(&dir).status();
        let d = |p: &str| dir.join(p).display().to_string();
        let env = vec![
            ("RABBITMQ_NODENAME".into(), node.clone()),
            ("RABBITMQ_NODE_PORT".into(), port.to_string()),
            ("RABBITMQ_DIST_PORT".into(), free_port().to_string()),
            ("RABBITMQ_CONFIG_FILE".into(), d("rabbitmq.conf")),
            ("RABBITMQ_MNESIA_BASE".into(), d("mnesia")),
            ("RABBITMQ_LOG_BASE".into(), d("log")),
            ("RABBITMQ_PID_FILE".into(), d("pid")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE".into(), d("plugins")),
        ];
        let b = Broker { node, port, dir, env, servers: Default::default() };
        b.launch();
        b
    }

    fn launch(&self) {
        let log = std::fs::File::create(self.dir.join("server.out")).unwrap();
        let mut cmd = Command::new("rabbitmq-server");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v))).stdout(log.try_clone().unwrap()).stderr(log);
        let server = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start rabbitmq-server ({e}): the chaos suite needs RabbitMQ installed")
        });
        self.servers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(server);
        wait_port(self.port, true, Duration::from_secs(60), "private RabbitMQ node");
    }

    fn ctl(&self, args: &[&str]) {
        let st = Command::new("rabbitmqctl").arg("-q").args(["-n", &self.node]).args(args).status().unwrap();
        assert!(st.success(), "rabbitmqctl {args:?}");
    }

    /// The node's `beam.smp`: its name is in its environment, not its command line.
    fn pid(&self) -> Option<u32> {
        let out = Command::new("pgrep").args(["-f", "beam.smp"]).output().ok()?;
        let wanted = format!("RABBITMQ_NODENAME={}", self.node);
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse::<u32>().ok()).find(
            |pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|e| e.split(|b| *b == 0).any(|v| v == wanted.as_bytes()))
            },
        )
    }

    fn kill9(&self) {
        let pid = self.pid().expect("the node's beam.smp");
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        wait_port(self.port, false, Duration::from_secs(10), "killed RabbitMQ node");
    }

    /// Every queue with its ready and unacked counts, for a report.
    fn list_queues(&self) -> String {
        let out = Command::new("rabbitmqctl")
            .args([
                "-q",
                "-n",
                &self.node,
                "list_queues",
                "name",
                "messages_ready",
                "messages_unacknowledged",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every channel with its consumers and unacked deliveries, for a report.
    fn list_channels(&self) -> String {
        let out = Command::new("rabbitmqctl")
            .args([
                "-q",
                "-n",
                &self.node,
                "list_channels",
                "name",
                "consumer_count",
                "messages_unacknowledged",
                "prefetch_count",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Messages on `queue`, ready and unacked.
    fn queue_count(&self, queue: &str) -> usize {
        let out = Command::new("rabbitmqctl")
            .args(["-q", "-n", &self.node, "list_queues", "name", "messages", "messages_unacknowledged"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                (f.next()? == queue).then(|| f.map(|n| n.parse::<usize>().unwrap_or(0)).sum::<usize>())
            })
            .sum()
    }

    fn options(&self, name: &str) -> AmqpOptions {
        AmqpOptions {
            port: self.port,
            connection_name: name.into(),
            reconnect_max: Duration::from_secs(1),
            publish_wait: Duration::from_secs(30),
            ..Default::default()
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").args(["-q", "-n", &self.node, "stop"]).status();
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        for mut server in self.servers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..) {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `redis-server` of our own, appending every write to its file before answering.
struct Redis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Redis {
        let port = free_port();
        let dir = scratch().join(format!("vumi-chaos-redis-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = Redis { port, dir, child: None };
        r.launch();
        r
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(&self.dir)
            // Its log is kept for the report of a run that goes wrong (fsync stalls show there).
            .args(["--latency-monitor-threshold", "100"])
            .stdout(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join("redis.log"))
                    .unwrap(),
            )
            .spawn()
            .expect("redis-server is needed for the chaos suite");
        self.child = Some(child);
        wait_port(self.port, true, Duration::from_secs(10), "private Redis");
    }

    /// Kill it and start it again; with `empty`, its data (the AOF) is gone first, as if it
    /// had run without persistence.
    fn restart(&mut self, empty: bool) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        wait_port(self.port, false, Duration::from_secs(10), "stopped Redis");
        if empty {
            let _ = std::fs::remove_dir_all(&self.dir);
            std::fs::create_dir_all(&self.dir).unwrap();
        }
        self.launch();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[path = "../support/vumi_proc.rs"]
mod vumi_proc;
use vumi_proc::VumiProc;

/// One `vumi run`, killed on drop.
struct HostProc {
    /// Held: dropping it kills the host.
    _proc: VumiProc,
    admin: String,
}

impl HostProc {
    fn start(config: &Path) -> HostProc {
        let log = config.with_file_name("hosts.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vumi"));
        cmd.args(["run", "--config"])
            .arg(config)
            .current_dir(workspace())
            .env("VUMI_LOG", "warn")
            .env("XDG_CACHE_HOME", workspace().join("target").join("test-cache"))
            // Its warnings, kept beside the config for a report when a run goes wrong.
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap());
        // A host that never says it is ready fails the run after a minute instead of hanging it.
        let proc = VumiProc::spawn(cmd, Duration::from_secs(60))
            .unwrap_or_else(|why| panic!("a chaos host: {why} (its log: {})", log.display()));
        let admin = proc.admin.map(|a| format!("http://{a}")).expect("a chaos host said no admin address");
        HostProc { _proc: proc, admin }
    }

    /// `vumi_reloads_total{plugin="echo", outcome="swapped"}` on this host.
    fn swaps(&self) -> u64 {
        let out = Command::new("curl")
            .args(["-sf", "-H", "Authorization: Bearer chaos-admin-token"])
            .arg(format!("{}/metrics", self.admin))
            .output()
            .unwrap();
        assert!(out.status.success(), "a chaos host's /metrics");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                l.starts_with("vumi_reloads_total{")
                    && l.contains("plugin=\"echo\"")
                    && l.contains("outcome=\"swapped\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

fn echo_plugin() -> PathBuf {
    let out = workspace().join("target").join("test-plugins");
    if !out.join("echo.wasm").is_file() {
        let st = Command::new(env!("CARGO_BIN_EXE_vumi"))
            .current_dir(workspace())
            .args(["plugin", "build", "--out"])
            .arg(&out)
            .status()
            .unwrap();
        assert!(st.success(), "`vumi plugin build` failed");
    }
    out.join("echo.wasm")
}

#[derive(Default)]
struct Record {
    /// Input id → (user, seq), for every input whose publish was confirmed.
    confirmed: HashMap<String, (usize, usize)>,
    /// Input ids whose publish failed or went unconfirmed: outcome unknown.
    unknown: HashSet<String>,
    /// Every id we tried to publish.
    published: HashSet<String>,
    /// Input id → the answer ids seen, with repeats.
    answers: HashMap<String, Vec<String>>,
    /// Per user: the highest seq answered so far; and inversions seen.
    highest: HashMap<usize, usize>,
    inversions: usize,
    /// Answer arrival times.
    times: Vec<Duration>,
    /// When each input's publish was confirmed.
    confirmed_at: HashMap<String, Duration>,
    /// Events published (confirmed) and unknown.
    events: usize,
    events_unknown: usize,
}

struct Verdict {
    fault: String,
    confirmed: usize,
    unknown: usize,
    lost: usize,
    unexpected: usize,
    bad_ids: usize,
    copies: usize,
    copy_bound: usize,
    inversions: usize,
    recovery: Option<Duration>,
    recovery_bound: Option<Duration>,
    secs: f64,
    events: usize,
    /// Events on `chaos.failures` because their origin was forgotten, with that reason.
    unroutable: usize,
    /// Anything else on `chaos.failures`.
    other_failures: Vec<String>,
    /// Messages left on `chaos.event` (ready or unacked) after the drain.
    events_left: usize,
    /// Swaps each host made (hot-swaps only).
    swaps: Vec<u64>,
    /// Consuming channels the hosts could not close and so replaced the connection of.
    replaced: usize,
    /// The hosts' warnings, one line of each kind with its count: for a run that went wrong.
    warnings: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    BrokerRestart,
    BrokerKill,
    HostKill,
    RedisRestart,
    RedisRestartEmpty,
    HotSwaps,
    BrokerRestartAndHostKill,
}

impl Fault {
    fn parse(s: &str) -> Fault {
        match s {
            "none" => Fault::None,
            "broker-restart" => Fault::BrokerRestart,
            "broker-kill" => Fault::BrokerKill,
            "host-kill" => Fault::HostKill,
            "redis-restart" => Fault::RedisRestart,
            "redis-restart-empty" => Fault::RedisRestartEmpty,
            "hot-swaps" => Fault::HotSwaps,
            "broker-restart+host-kill" => Fault::BrokerRestartAndHostKill,
            other => panic!("unknown fault {other}"),
        }
    }
}

async fn run(fault_name: &str, n: usize) -> Verdict {
    let fault = Fault::parse(fault_name);
    let broker = Broker::start();
    let mut redis = Redis::start();
    let dir = scratch().join(format!("vumi-chaos-cfg-{}", broker.port));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("vumi.toml");
    // The hosts' own copy of the plugin: hot swaps rewrite it.
    let echo = dir.join("echo.wasm");
    std::fs::copy(echo_plugin(), &echo).unwrap();
    std::fs::write(
        &config,
        format!(
            r#"
[host.bus]
kind = "amqp"
port = {}
reconnect_max_ms = 1000
publish_wait_ms = 30000

[host.state]
kind = "redis"
url = "redis://127.0.0.1:{}"
reconnect_max_delay_ms = 1000

# Waits in place of at most 2 s a step, and short delay tiers: the drain below waits out the
# longest a held-up message can take (`quiet`).
[host.retry]
max_ms = 2000
tiers_ms = [1000, 5000]

[admin]
bind = "127.0.0.1:0"
token = "chaos-admin-token"

# The hosts run the app and a send-API channel on one connector, so events are split between
# them by the origin recorded in Redis. The transport is the test's publisher and sink.
[host]
roles = ["@apps", "@channels"]

[transports.chaos]
kind = "telnet"
bind = "127.0.0.1:0"

[http]
bind = "127.0.0.1:0"

[channels.api]
connector = "chaos"
token = "chaos-channel-token"

[apps.echo]
plugin = "{echo}"
connector = "chaos"
concurrency = {APP_LANES}
ordering = "user"
"#,
            broker.port,
            redis.port,
            echo = echo.display(),
        ),
    )
    .unwrap();
    let mut hosts = vec![HostProc::start(&config), HostProc::start(&config)];
    let bus = Arc::new(AmqpBus::connect(broker.options("chaos-publisher")).await.unwrap());
    let sink_bus = AmqpBus::connect(broker.options("chaos-sink")).await.unwrap();
    let connector = "chaos".parse().unwrap();
    let (inbound, outbound) = (RoutingKey::inbound(&connector), RoutingKey::outbound(&connector));
    let record = Arc::new(Mutex::new(Record::default()));
    let t0 = Instant::now();

    // The sink: every answer, as it arrives; every fifth first answer is acked with an event
    // 1.5 s later.
    let mut answers = sink_bus.consume(&outbound, 256).await.unwrap();
    let rec = record.clone();
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, String)>();
    let (ev_bus, ev_rec, ev_key) = (bus.clone(), record.clone(), RoutingKey::event(&connector));
    let eventer = tokio::spawn(async move {
        let window = Arc::new(Semaphore::new(64));
        while let Some((at, id)) = ack_rx.recv().await {
            tokio::time::sleep_until((at + Duration::from_millis(1500)).into()).await;
            let permit = window.clone().acquire_owned().await.unwrap();
            let (b, r, key) = (ev_bus.clone(), ev_rec.clone(), ev_key.clone());
            tokio::spawn(async move {
                let ok = b.publish(&key, Event::ack(&id, &id).into()).await.is_ok();
                let mut r = r.lock().unwrap();
                if ok {
                    r.events += 1
                } else {
                    r.events_unknown += 1
                }
                drop(permit);
            });
        }
        // Every publish answered.
        let _ = window.acquire_many(64).await;
    });
    let sink = tokio::spawn(async move {
        while let Some(d) = answers.next().await {
            if let Message::User(m) = &d.message {
                let mut r = rec.lock().unwrap();
                let input = m.in_reply_to.clone().unwrap_or_default();
                let first = !r.answers.contains_key(&input);
                if first && r.answers.len() % 5 == 0 {
                    let _ = ack_tx.send((Instant::now(), m.message_id.clone()));
                }
                r.answers.entry(input).or_default().push(m.message_id.clone());
                r.times.push(t0.elapsed());
                if first && let Some((user, seq)) = m.content.as_deref().and_then(parse_content) {
                    let top = r.highest.entry(user).or_insert(seq);
                    if seq < *top {
                        r.inversions += 1;
                    } else {
                        *top = seq;
                    }
                }
            }
            d.ack();
        }
    });

    // The generator: 1,000 users, one message each in turn, 256 publishes awaiting confirms.
    let rec = record.clone();
    let pub_bus = bus.clone();
    let generator = tokio::spawn(async move {
        let window = Arc::new(Semaphore::new(256));
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let (user, seq) = (i % USERS, i / USERS);
            let m = UserMessage::inbound(
                "chaos",
                "sms",
                format!("+27{user:09}"),
                "12345",
                Some(format!("{user}:{seq}")),
                None,
            );
            let id = m.message_id.clone();
            rec.lock().unwrap().published.insert(id.clone());
            let permit = window.clone().acquire_owned().await.unwrap();
            let (b, r, key) = (pub_bus.clone(), rec.clone(), inbound.clone());
            tasks.push(tokio::spawn(async move {
                match b.publish(&key, m.into()).await {
                    Ok(()) => {
                        let mut r = r.lock().unwrap();
                        r.confirmed_at.insert(id.clone(), t0.elapsed());
                        r.confirmed.insert(id, (user, seq));
                    }
                    Err(_) => {
                        r.lock().unwrap().unknown.insert(id);
                    }
                }
                drop(permit);
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });

    // Under full load: the fault.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !generator.is_finished(),
        "{fault_name}: the load ended before the fault (raise VUMI_CHAOS_MESSAGES): it would test nothing"
    );
    let before = rate(
        &record.lock().unwrap().times,
        t0.elapsed().saturating_sub(Duration::from_secs(2)),
        t0.elapsed(),
    );
    let fault_at = t0.elapsed();
    let (fault_end, bound) = inject(fault, &broker, &mut redis, &mut hosts, &config, &echo).await;

    tokio::time::timeout(Duration::from_secs(300), generator)
        .await
        .expect("the generator finished within 300 s (a publish hung)")
        .unwrap();
    // Drain: until every confirmed input is answered, or nothing new comes for as long as a
    // held-up message can take: its tries in place (8, each step up to 2 s and half again),
    // then the longest delay tier, and 2 s of slack.
    let quiet = Duration::from_millis((100 + 200 + 400 + 800 + 1600 + 2000 + 2000) * 3 / 2)
        + Duration::from_secs(5)
        + Duration::from_secs(2);
    let mut last = (record.lock().unwrap().times.len(), Instant::now());
    loop {
        let (answered_all, count) = {
            let r = record.lock().unwrap();
            (r.confirmed.keys().all(|id| r.answers.contains_key(id)), r.times.len())
        };
        if answered_all {
            // A little longer, for copies still on their way.
            tokio::time::sleep(Duration::from_secs(2)).await;
            break;
        }
        if count != last.0 {
            last = (count, Instant::now());
        } else if last.1.elapsed() > quiet {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The events still due go out, then the event queue must drain.
    sink.abort();
    let _ = sink.await;
    let _ = tokio::time::timeout(Duration::from_secs(30), eventer).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut events_left = broker.queue_count("chaos.event");
    while events_left > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        events_left = broker.queue_count("chaos.event");
    }
    let swaps: Vec<u64> =
        if fault == Fault::HotSwaps { hosts.iter().map(HostProc::swaps).collect() } else { Vec::new() };
    let (unroutable, other_failures) = failures(&broker).await;
    let queues = broker.list_queues();
    let channels = broker.list_channels();
    let secs = t0.elapsed().as_secs_f64();
    drop(hosts);
    let hosts_log = std::fs::read_to_string(dir.join("hosts.log")).unwrap_or_default();
    let warnings = summarise(&hosts_log);
    let _ = std::fs::remove_dir_all(&dir);
    let r = record.lock().unwrap();
    let lost = r.confirmed.keys().filter(|id| !r.answers.contains_key(*id)).count();
    if lost > 0 {
        // Where the lost ones might be: every queue of the private node, as the run ended.
        println!(
            "chaos {fault_name}: {lost} lost; the node's queues (name, ready, unacked):\n{queues}\nchannels:\n{channels}"
        );
        println!(
            "the fault at {:.2} s; the first lost inputs (id, user:seq, confirmed at, the user's highest answered seq):",
            fault_at.as_secs_f64()
        );
        for id in r.confirmed.keys().filter(|id| !r.answers.contains_key(*id)).take(5) {
            let (user, seq) = r.confirmed[id];
            println!(
                "  {id} {user}:{seq} confirmed at {:.2} s, highest answered {:?}",
                r.confirmed_at.get(id).map_or(0.0, |d| d.as_secs_f64()),
                r.highest.get(&user)
            );
        }
    }
    let unexpected = r.answers.keys().filter(|id| !r.published.contains(*id)).count();
    let bad_ids = r.answers.values().filter(|v| v.iter().collect::<HashSet<_>>().len() != 1).count();
    let copies: usize = r.answers.values().map(|v| v.len() - 1).sum();
    // In flight at a fault: each killed host's prefetch, plus the publisher's window for a
    // broker fault (unconfirmed publishes the app may have handled before the broker died).
    let prefetch = APP_LANES * 8;
    let copy_bound = match fault {
        Fault::None | Fault::RedisRestart | Fault::HotSwaps => 0,
        // Done markers forgotten: inputs redelivered around the restart run again.
        Fault::RedisRestartEmpty => 2 * prefetch,
        Fault::HostKill => prefetch,
        // Both hosts' deliveries, the sink's own (256), the publisher's window (256).
        Fault::BrokerRestart | Fault::BrokerKill | Fault::BrokerRestartAndHostKill => 2 * prefetch + 512,
    };
    let recovery = fault_end.and_then(|end| recovered(&r.times, end.duration_since(t0), before));
    Verdict {
        fault: fault_name.to_owned(),
        confirmed: r.confirmed.len(),
        unknown: r.unknown.len(),
        lost,
        unexpected,
        bad_ids,
        copies,
        copy_bound,
        inversions: r.inversions,
        recovery,
        recovery_bound: bound,
        secs,
        events: r.events,
        unroutable,
        other_failures,
        events_left,
        swaps,
        replaced: hosts_log.lines().filter(|l| l.contains("could not be closed")).count(),
        warnings,
    }
}

/// One line of each kind in a log, with how many there were.
fn summarise(log: &str) -> String {
    let mut kinds: Vec<(String, usize, String)> = Vec::new();
    for l in log.lines() {
        let key: String = l.split_whitespace().skip(2).take(8).collect::<Vec<_>>().join(" ");
        match kinds.iter_mut().find(|(k, _, _)| *k == key) {
            Some(kind) => kind.1 += 1,
            None => kinds.push((key, 1, l.chars().take(400).collect())),
        }
    }
    kinds.into_iter().map(|(_, n, line)| format!("  {n:>5} × {line}\n")).collect()
}

/// Every check `v` fails, in words.
fn problems(v: &Verdict) -> Vec<String> {
    let mut p = Vec::new();
    let f = &v.fault;
    let mut check = |ok: bool, what: String| {
        if !ok {
            p.push(format!("{f}: {what}"));
        }
    };
    check(v.lost == 0, format!("{} confirmed inputs lost", v.lost));
    check(v.unexpected == 0, format!("{} answers to nothing published", v.unexpected));
    check(v.bad_ids == 0, format!("{} inputs answered under more than one id", v.bad_ids));
    check(
        v.copies <= v.copy_bound,
        format!("{} copies, more than the in-flight bound {}", v.copies, v.copy_bound),
    );
    if v.fault == "none" {
        check(v.inversions == 0, format!("{} per-user inversions without a fault", v.inversions));
    }
    if let (Some(bound), Some(took)) = (v.recovery_bound, v.recovery) {
        check(took <= bound, format!("throughput back to half after {took:?}, more than {bound:?}"));
    }
    if v.recovery_bound.is_some() {
        check(v.recovery.is_some(), "throughput never came back to half its rate before the fault".into());
    }
    check(v.events > 0, "no events were sent".into());
    check(v.events_left == 0, format!("{} events neither taken nor settled", v.events_left));
    check(
        v.other_failures.is_empty(),
        format!("something other than forgotten origins on chaos.failures: {:?}", v.other_failures),
    );
    if v.fault == "redis-restart-empty" {
        check(
            v.unroutable > 0,
            "events whose origin Redis forgot did not reach chaos.failures with the reason".into(),
        );
    } else {
        check(v.unroutable == 0, format!("{} events unroutable with no origin forgotten", v.unroutable));
    }
    if v.fault == "hot-swaps" {
        check(
            v.swaps.iter().all(|n| *n == 10),
            format!("each host swapped the plugin 10 times: {:?}", v.swaps),
        );
    }
    p
}

/// What is on `chaos.failures`: events whose origin was forgotten (with that reason), and a
/// description of anything else.
async fn failures(broker: &Broker) -> (usize, Vec<String>) {
    let uri = format!("amqp://127.0.0.1:{}/%2f", broker.port);
    let conn = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let (mut unroutable, mut other) = (0, Vec::new());
    loop {
        let got =
            ch.basic_get("chaos.failures".into(), lapin::options::BasicGetOptions { no_ack: true }).await;
        let Ok(Some(m)) = got else { break };
        let v: serde_json::Value = serde_json::from_slice(&m.delivery.data).unwrap_or_default();
        let reason = v["reason"].as_str().unwrap_or_default();
        if v["message_type"] == "failure_message"
            && v["kind"] == "unroutable_event"
            && reason.contains("no component here recorded sending message")
        {
            unroutable += 1;
        } else if other.len() < 5 {
            other.push(String::from_utf8_lossy(&m.delivery.data).chars().take(300).collect());
        } else {
            other.push(String::new());
        }
    }
    let _ = conn.close(200, "done".into()).await;
    (unroutable, other)
}

/// Inject `fault`; when it ended (the broker answering again, the host killed) and the
/// recovery bound that applies, measured from `t0`'s clock by the caller.
async fn inject(
    fault: Fault,
    broker: &Broker,
    redis: &mut Redis,
    hosts: &mut Vec<HostProc>,
    config: &Path,
    echo: &Path,
) -> (Option<Instant>, Option<Duration>) {
    match fault {
        Fault::None => (None, None),
        Fault::BrokerRestart => {
            broker.ctl(&["stop_app"]);
            broker.ctl(&["start_app"]);
            (Some(Instant::now()), Some(Duration::from_secs(10)))
        }
        Fault::BrokerKill => {
            broker.kill9();
            broker.launch();
            (Some(Instant::now()), Some(Duration::from_secs(10)))
        }
        Fault::HostKill => {
            drop(hosts.remove(0));
            let end = Instant::now();
            // Restarted a few seconds later, as a supervisor would.
            tokio::time::sleep(Duration::from_secs(5)).await;
            hosts.push(HostProc::start(config));
            (Some(end), Some(host_kill_bound()))
        }
        Fault::RedisRestart | Fault::RedisRestartEmpty => {
            redis.restart(fault == Fault::RedisRestartEmpty);
            (Some(Instant::now()), Some(Duration::from_secs(10)))
        }
        Fault::HotSwaps => {
            // The same component each time with a different custom section: a new content
            // hash (so a real swap), the same behaviour. Written beside it, then renamed over
            // it, as a deploy does.
            let original = std::fs::read(echo).unwrap();
            for i in 0..10u8 {
                let name = b"vumi-chaos-swap";
                let mut section = vec![0u8, (1 + name.len() + 1) as u8, name.len() as u8];
                section.extend_from_slice(name);
                section.push(i);
                let mut bytes = original.clone();
                bytes.extend_from_slice(&section);
                let tmp = echo.with_extension("wasm.new");
                std::fs::write(&tmp, &bytes).unwrap();
                std::fs::rename(&tmp, echo).unwrap();
                // Each swap taken by every host before the next.
                let deadline = Instant::now() + Duration::from_secs(60);
                while hosts.iter().any(|h| h.swaps() < u64::from(i) + 1) {
                    assert!(Instant::now() < deadline, "swap {} not taken by every host within 60 s", i + 1);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            (None, None)
        }
        Fault::BrokerRestartAndHostKill => {
            drop(hosts.remove(0));
            broker.ctl(&["stop_app"]);
            broker.ctl(&["start_app"]);
            let end = Instant::now();
            hosts.push(HostProc::start(config));
            (Some(end), Some(Duration::from_secs(10)))
        }
    }
}

fn parse_content(c: &str) -> Option<(usize, usize)> {
    let (u, s) = c.split_once(':')?;
    Some((u.parse().ok()?, s.parse().ok()?))
}

/// Answers per second between `from` and `to`.
fn rate(times: &[Duration], from: Duration, to: Duration) -> f64 {
    let n = times.iter().filter(|t| **t >= from && **t < to).count();
    n as f64 / (to - from).as_secs_f64().max(0.001)
}

/// How long after `end` (an offset from the run's start) a 500 ms window first carried at
/// least half the rate `before`.
fn recovered(times: &[Duration], end: Duration, before: f64) -> Option<Duration> {
    let last = *times.last()?;
    let mut at = end;
    while at < last {
        if rate(times, at, at + Duration::from_millis(500)) >= before / 2.0 {
            return Some(at - end);
        }
        at += Duration::from_millis(100);
    }
    None
}

#[test]
fn chaos_no_confirmed_input_is_lost_and_copies_stay_within_bounds() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for tool in ["rabbitmq-server", "rabbitmqctl", "redis-server"] {
        assert!(
            Command::new("sh").arg("-c").arg(format!("command -v {tool}")).status().unwrap().success(),
            "the chaos suite needs `{tool}` installed (it starts private instances; the shared ones are not touched)"
        );
    }
    let n: usize = std::env::var("VUMI_CHAOS_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);
    let faults = std::env::var("VUMI_CHAOS_FAULTS")
        .unwrap_or_else(|_| "none,broker-restart,broker-kill,host-kill,redis-restart,redis-restart-empty,hot-swaps,broker-restart+host-kill".into());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut verdicts = Vec::new();
    for f in faults.split(',') {
        let v = rt.block_on(run(f, n));
        println!(
            "chaos {:<26} {:>6} confirmed {:>4} unknown | lost {} unexpected {} bad-ids {} | copies {:>4} (bound {:>4}) | inversions {:>3} | recovery {} (bound {}) | events {} unroutable {} other-failures {} left {} | swaps {:?} | stuck channels replaced {} | {:.1} s",
            v.fault,
            v.confirmed,
            v.unknown,
            v.lost,
            v.unexpected,
            v.bad_ids,
            v.copies,
            v.copy_bound,
            v.inversions,
            v.recovery.map_or("–".into(), |d| format!("{:.1} s", d.as_secs_f64())),
            v.recovery_bound.map_or("–".into(), |d| format!("{:.2} s", d.as_secs_f64())),
            v.events,
            v.unroutable,
            v.other_failures.len(),
            v.events_left,
            v.swaps,
            v.replaced,
            v.secs
        );
        verdicts.push(v);
    }
    let mut all = Vec::new();
    for v in &verdicts {
        let p = problems(v);
        if !p.is_empty() {
            println!(
                "chaos {}: the hosts' warnings, one of each kind with its count:\n{}",
                v.fault, v.warnings
            );
        }
        all.extend(p);
    }
    assert!(all.is_empty(), "the chaos suite's checks failed:\n{}", all.join("\n"));
}

/// The broker on its own, no host: publish persistent messages with confirms to a queue nobody
/// consumes, kill the node with -9 mid-stream, restart it, and count what survived. Every
/// confirmed message must still be there; if not, a "lost" in the runs above is the broker's.
#[test]
fn probe_the_broker_alone_keeps_what_it_confirmed_through_a_kill() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        for round in 0..1 {
            let broker = Broker::start();
            let bus = Arc::new(AmqpBus::connect(broker.options("probe")).await.unwrap());
            let key = RoutingKey::inbound(&"probe".parse().unwrap());
            let confirmed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let window = Arc::new(Semaphore::new(256));
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (b, c, w, s) = (bus.clone(), confirmed.clone(), window.clone(), stop.clone());
            let generator = tokio::spawn(async move {
                let mut i = 0u64;
                while !s.load(std::sync::atomic::Ordering::Relaxed) {
                    let permit = w.clone().acquire_owned().await.unwrap();
                    let (b, c, key) = (b.clone(), c.clone(), key.clone());
                    let m =
                        UserMessage::inbound("probe", "sms", "+27000000000", "1", Some(i.to_string()), None);
                    i += 1;
                    tokio::spawn(async move {
                        if b.publish(&key, m.into()).await.is_ok() {
                            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        drop(permit);
                    });
                }
            });
            tokio::time::sleep(Duration::from_secs(2)).await;
            broker.kill9();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = generator.await;
            let _ = window.acquire_many(256).await;
            let n = confirmed.load(std::sync::atomic::Ordering::SeqCst);
            broker.launch();
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut stored = broker.queue_count("probe.inbound");
            while stored < n && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(500)).await;
                stored = broker.queue_count("probe.inbound");
            }
            println!("probe round {round}: confirmed {n}, on the queue after the restart {stored}");
            assert!(stored >= n, "the broker lost {} confirmed messages through kill -9", n - stored);
        }
    });
}
