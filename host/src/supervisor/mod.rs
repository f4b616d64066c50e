//! Builds a running host from a [`Config`]: the one place that names concrete back ends. Starts
//! transports and app workers, applies config reloads, and stops everything gracefully.
//!
//! A host is the long-lived parts (bus, state, engine, failure path, plugin registry, HTTP and
//! admin listeners), the **transports** (each kept across a config reload unless its own config
//! changed, so telnet sessions and pending USSD requests survive), and a **generation**: every
//! app worker, dispatcher, channel and events-by-origin splitter built from one config. A reload loads every
//! new or changed plugin first (any failure rejects the whole config, and nothing has changed),
//! then swaps the middleware chains, stops the old generation — each worker finishes the messages
//! it has taken; what it has not taken stays queued, and messages for dispatchers queue too
//! instead of being routed at publish time — and starts the new one on the same queues.
//! Plugins whose config did not change keep their slot: their version, counters and any version
//! hot-swapped in since.

mod error;
mod generation;
mod reload;
mod settings;
mod transports;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::{AdminState, Control};
use crate::bus::{AmqpBus, AmqpOptions, Bus, EmbeddedBus};
use crate::config::{BusConfig, Config, StateConfig};
use crate::message::Timestamp;
use crate::names::ConnectorName;
use crate::plugins::versions::Deployments;
use crate::plugins::{Engine, EngineSettings, Registry, Watcher};
use crate::state::{KvStore, MemoryStore, RedisOptions, RedisStore};
use crate::status::HostStatus;
use crate::workers::FailureLog;
use crate::workers::flow::{Dispatchers, Flow, Intake};

pub use error::StartError;
pub use settings::toml_to_json;

use generation::{Generation, chains};
use reload::ReloadTriggers;
use settings::largest_memory_limit;
use transports::RunningTransport;

/// How long a turn in a user's line (`ordering = "user"` across hosts) is held without a
/// refresh; its holder refreshes it every sixth of that. A dead host's turns hold their users
/// for up to this long (the recovery after a host kill); a live holder whose refresh is held
/// up longer loses its place. See the `sequencer` note where it is used.
pub const SEQUENCER_LEASE: Duration = Duration::from_millis(1_500);

/// A started host.
pub struct RunningHost {
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    bus: Arc<dyn Bus>,
    flow: Arc<Flow>,
    /// What transports and channels publish through; closed first on a graceful stop.
    intake: Arc<Intake>,
    state: Arc<dyn KvStore>,
    engine: Engine,
    engine_memory_mb: u32,
    config: Config,
    transports: BTreeMap<ConnectorName, RunningTransport>,
    generation: Option<Generation>,
    routes: Arc<ArcSwap<axum::Router>>,
    watcher: Option<Arc<Watcher>>,
    control: Option<mpsc::Receiver<Control>>,
    reloads: Option<ReloadTriggers>,
    /// Where each socket transport listens, by transport name.
    pub listening: BTreeMap<String, SocketAddr>,
    /// Where the shared HTTP listener listens, if any HTTP transport is configured.
    pub http: Option<SocketAddr>,
    /// Where the admin API listens, if `[admin]` is configured.
    pub admin: Option<SocketAddr>,
    /// The failure path, for inspection.
    pub failures: Arc<FailureLog>,
    /// Every loaded plugin (apps, routers, middleware) by name.
    pub registry: Arc<Registry>,
    /// Transports and config reload history, as the admin API shows them.
    pub status: Arc<HostStatus>,
    /// `vumi run --role`: the roles kept across config reloads.
    roles_override: Option<Vec<String>>,
    /// Per-user turns across hosts: with RabbitMQ and Redis (one host needs none: its lanes
    /// keep each user's order).
    sequencer: Option<Arc<dyn crate::state::Sequencer>>,
    /// Tenants' tokens and rate buckets, replaced on each config reload.
    pub(crate) tenants: Arc<ArcSwap<crate::tenants::Tenants>>,
    /// Which components run a deployed version instead of their configured file.
    deployments: Arc<Deployments>,
}

impl std::fmt::Debug for RunningHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningHost").field("listening", &self.listening).finish_non_exhaustive()
    }
}

/// This machine's name, for the broker's connection list (`HOSTNAME`, else `/etc/hostname`).
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

/// Start everything `config` names. Plugins are compiled before any transport accepts traffic, so
/// a bad plugin stops start-up instead of failing users' messages.
pub async fn start(config: &Config) -> Result<RunningHost, StartError> {
    let bus: Arc<dyn Bus> = match &config.host.bus {
        BusConfig::Embedded => Arc::new(
            EmbeddedBus::bounded(
                config.host.queues.capacity,
                Duration::from_millis(config.host.queues.publish_wait_ms),
            )
            .with_retry_tiers(config.host.retry.tiers()),
        ),
        BusConfig::Amqp(a) => {
            let name = a.name.clone().unwrap_or_else(|| format!("vumi@{}", hostname()));
            let options = AmqpOptions {
                host: a.host.clone(),
                port: a.port,
                vhost: a.vhost.clone(),
                username: a.username.clone(),
                password: a.password.clone(),
                heartbeat_secs: a.heartbeat_secs,
                confirm_window: a.confirm_window,
                max_prefetch: a.max_prefetch,
                publish_wait: Duration::from_millis(a.publish_wait_ms),
                reconnect_initial: Duration::from_millis(a.reconnect_initial_ms),
                reconnect_max: Duration::from_millis(a.reconnect_max_ms),
                // Reconnections are announced on `vumi.status`, beside the connectors' own.
                status_connector: "vumi".parse().ok(),
                connection_name: name,
                retry_tiers: config.host.retry.tiers(),
            };
            Arc::new(AmqpBus::connect(options).await.map_err(StartError::Connect)?)
        }
    };
    let mut sequencer: Option<Arc<dyn crate::state::Sequencer>> = None;
    let state: Arc<dyn KvStore> = match &config.host.state {
        StateConfig::Memory => Arc::new(MemoryStore::new()),
        StateConfig::Redis(r) => {
            let options = RedisOptions {
                url: r.url.clone(),
                response_timeout: Duration::from_millis(r.response_timeout_ms),
                connection_timeout: Duration::from_millis(r.connection_timeout_ms),
                reconnect_attempts: r.reconnect_attempts,
                reconnect_max_delay: Duration::from_millis(r.reconnect_max_delay_ms),
            };
            let store = RedisStore::connect(&options).await.map_err(StartError::State)?;
            if matches!(config.host.bus, BusConfig::Amqp(_)) {
                // Leases of 1.5 s, refreshed every sixth of that (250 ms). A dead host's turns hold
                // their users' lines until they run out, which bounds the recovery after a host
                // kill (the chaos suite's 2 s goal: leases of 2 s measured 1.7–2.1 s). A live
                // holder whose refresh is held up longer than the lease loses its turn and
                // order is inverted: 1 s leases (refreshed every 333 ms) did that 61 times in a
                // chaos run with no fault on a slow machine; 1.25 s of slack, as 2 s leases had
                // (1.33 s), did not. Done markers for a day (a redelivery later runs again).
                sequencer = Some(Arc::new(store.sequencer(SEQUENCER_LEASE, Duration::from_secs(86_400))));
            }
            Arc::new(store)
        }
    };
    if sequencer.is_none()
        && matches!(config.host.bus, BusConfig::Amqp(_))
        && config.apps.values().any(|a| a.ordering == crate::config::Ordering::User)
    {
        tracing::warn!(
            "apps with `ordering = \"user\"` keep each user's order within this host only: across hosts it needs `[host.state] kind = \"redis\"`"
        );
    }
    let failures_path = config.failures.path.as_ref().map(|p| config.resolve(p));
    let failures = Arc::new(
        FailureLog::new(config.failures.keep, failures_path.as_deref())
            .map_err(|source| StartError::FailuresFile {
                path: failures_path.map(|p| p.display().to_string()).unwrap_or_default(),
                source,
            })?
            .with_bus(bus.clone()),
    );
    let engine_memory_mb = largest_memory_limit(config).max(64);
    settings::check_map_count(config);
    let cache_dir = config.cache_dir();
    if let Some(dir) = &cache_dir {
        tracing::info!(dir = %dir.display(), "compiled-component cache");
    }
    let engine = Engine::new(&EngineSettings {
        max_memory_bytes: (engine_memory_mb as usize) << 20,
        max_instances: settings::pool_instances(config),
        max_stacks: settings::pool_stacks(config),
        cache_dir,
    })
    .map_err(StartError::Engine)?;
    let deployments_file = config.data_dir().join("deployments.json");
    let deployments = Arc::new(Deployments::open(Some(deployments_file.clone())).map_err(|e| {
        StartError::DataDir { path: deployments_file.display().to_string(), reason: e.to_string() }
    })?);
    // Everything publishes through the flow (no chains or dispatchers until the config is applied).
    let flow = Arc::new(Flow::new(bus.clone(), failures.clone()));
    let intake = Arc::new(Intake::new(flow.clone()));

    let shutdown = CancellationToken::new();
    let mut host = RunningHost {
        shutdown: shutdown.clone(),
        tasks: JoinSet::new(),
        bus,
        flow,
        intake,
        state,
        engine,
        engine_memory_mb,
        config: config.clone(),
        transports: BTreeMap::new(),
        generation: None,
        routes: Arc::new(ArcSwap::from_pointee(axum::Router::new())),
        watcher: None,
        control: None,
        reloads: None,
        listening: BTreeMap::new(),
        http: None,
        admin: None,
        failures,
        registry: Arc::new(Registry::new()),
        status: Arc::new(HostStatus::default()),
        roles_override: None,
        sequencer,
        tenants: Arc::new(ArcSwap::from_pointee(crate::tenants::Tenants::default())),
        deployments,
    };
    host.apply(None, config.clone()).await?;

    if config.plugins.watch {
        let debounce = Duration::from_millis(config.plugins.watch_debounce_ms);
        host.watcher = Some(Watcher::start(host.registry.clone(), debounce, shutdown.clone())?);
    }
    if let Some(admin) = &config.admin {
        let bind_err = |source| StartError::AdminBind { addr: admin.bind, source };
        let listener = tokio::net::TcpListener::bind(admin.bind).await.map_err(bind_err)?;
        host.admin = Some(listener.local_addr().map_err(bind_err)?);
        let (tx, rx) = mpsc::channel(4);
        host.control = Some(rx);
        let router = crate::admin::router(AdminState {
            tenants: host.tenants.clone(),
            registry: host.registry.clone(),
            failures: host.failures.clone(),
            publish: host.flow.clone(),
            dirs: config.own_dirs(),
            deployments: host.deployments.clone(),
            engine: host.engine.clone(),
            edits: Arc::default(),
            status: host.status.clone(),
            control: tx,
            max_upload_bytes: admin.max_upload_bytes,
            state: host.state.clone(),
            bus: host.bus.clone(),
        });
        let stop = shutdown.clone();
        host.tasks.spawn(async move {
            if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await
            {
                tracing::error!(error = %e, "admin listener stopped");
            }
        });
    }
    host.status.with_config(|c| c.loaded_at = Timestamp::now().to_string());
    Ok(host)
}

impl RunningHost {
    /// Make the running host match `new`, given that it matches `old` (`None`: nothing runs yet).
    pub(super) async fn apply(&mut self, old: Option<&Config>, new: Config) -> Result<String, StartError> {
        // The part of the config this host runs (`host.roles`); the rest runs elsewhere.
        let new = new.for_roles();
        let mut summary = Vec::new();
        // 1. Every plugin the new config names, loaded before anything stops: a failure here
        //    rejects the whole config with nothing changed.
        // Tokens and rate buckets first (kept where a tenant's limits did not change): plugins
        // and workers take their tenant's buckets from here. Put back if the config is rejected.
        let previous = self.tenants.load_full();
        self.tenants.store(Arc::new(previous.update(&new)));
        let slots = match self.load_plugins(old, &new, &mut summary).await {
            Ok(slots) => slots,
            Err(e) => {
                self.tenants.store(previous);
                return Err(e);
            }
        };

        // 2. Transports that go or change stop; their replacements are bound before the app side
        //    switches, so a bind failure at start-up stops start-up.
        let mut gone: Vec<ConnectorName> = Vec::new();
        for (name, t) in &self.transports {
            if new.transports.get(name) != Some(&t.config) {
                gone.push(name.clone());
            }
        }
        for name in &gone {
            if let Some(t) = self.transports.remove(name) {
                t.stop.cancel();
                let _ = t.task.await;
                self.listening.remove(name.as_str());
                summary.push(format!("transport {name} stopped"));
            }
        }
        for (name, tc) in &new.transports {
            if self.transports.contains_key(name) {
                continue;
            }
            match self.start_transport(&new, name, tc).await {
                Ok(t) => {
                    summary.push(format!("transport {name} started"));
                    if let Some(addr) = t.listening {
                        self.listening.insert(name.to_string(), addr);
                    }
                    self.transports.insert(name.clone(), t);
                }
                Err(e) if old.is_none() => return Err(e),
                Err(e) => {
                    tracing::error!(transport = %name, error = %e, "transport could not start");
                    summary.push(format!("transport {name} FAILED: {e}"));
                }
            }
        }

        // 3. The app side: chains first (what publishes next goes through the new ones), then the
        //    old generation finishes what it holds, then the new one takes over the queues.
        //    Routing at publish time stops with the old generation: until the new one starts,
        //    messages for dispatchers wait on their queues, and the new dispatchers take them.
        self.flow.set_chains(chains(&new, &slots));
        self.flow.set_dispatchers(Dispatchers::new());
        if let Some(g) = self.generation.take() {
            g.stop.cancel();
            let mut tasks = g.tasks;
            while tasks.join_next().await.is_some() {}
        }
        let generation = self.start_generation(&new, slots).await?;
        self.flow.set_dispatchers(generation.dispatch.clone());
        let mut routes = generation.routes.clone();
        self.registry.replace_all(generation.slots.all());
        self.generation = Some(generation);
        if let Some(w) = &self.watcher
            && let Err(e) = w.sync()
        {
            // Everything runs; only automatic reload of a new plugin directory is missing.
            tracing::warn!(error = %e, "cannot watch a new plugin directory; reload those plugins with `vumi plugins reload`");
        }

        // 4. HTTP: one listener, serving whatever the transports and channels of now route.
        for t in self.transports.values() {
            if let Some(r) = &t.routes {
                routes = routes.merge(r.clone());
            }
        }
        self.routes.store(Arc::new(routes.fallback(crate::web::not_found)));
        if new.serves_http() && self.http.is_none() {
            match self.start_http(new.http.bind).await {
                Ok(()) => {}
                Err(e) if old.is_none() => return Err(e),
                // The rest of the config is in place; what HTTP serves waits for a retry.
                Err(e) => {
                    tracing::error!(error = %e, "the HTTP listener could not start");
                    summary.push(format!("HTTP listener FAILED: {e}"));
                }
            }
        }
        self.status
            .set_transports(self.transports.iter().map(|(n, t)| (n.to_string(), t.status.clone())).collect());
        self.config = new;
        Ok(if summary.is_empty() { "nothing changed".into() } else { summary.join("; ") })
    }

    /// The shared HTTP listener. It serves the routes current at each request, so a config
    /// reload changes what it serves without closing it.
    pub(super) async fn start_http(&mut self, addr: SocketAddr) -> Result<(), StartError> {
        let bind_err = |source| StartError::HttpBind { addr, source };
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind_err)?;
        self.http = Some(listener.local_addr().map_err(bind_err)?);
        let routes = self.routes.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let current = routes.load_full();
            async move {
                use tower::ServiceExt;
                match current.as_ref().clone().oneshot(req).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
        });
        let stop = self.shutdown.clone();
        self.tasks.spawn(async move {
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
                tracing::error!(error = %e, "HTTP listener stopped");
            }
        });
        Ok(())
    }

    /// Take nothing new, deliver what is queued for up to `host.drain_timeout_ms`, then stop:
    /// let workers finish the messages they hold, and close the bus.
    pub async fn shutdown(mut self, grace: Duration) {
        self.drain().await;
        self.shutdown.cancel();
        let generation = self.generation.take();
        let transports = std::mem::take(&mut self.transports);
        let drained = tokio::time::timeout(grace, async {
            if let Some(g) = generation {
                let mut tasks = g.tasks;
                while tasks.join_next().await.is_some() {}
            }
            for t in transports.into_values() {
                let _ = t.task.await;
            }
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "tasks still running after the grace period; stopping them"
            );
            self.tasks.abort_all();
        }
        self.bus.close().await;
    }

    /// Close intake, then wait until nothing is pending on the bus or the drain bound passes.
    /// What is left is reported once, as a count.
    async fn drain(&self) {
        self.intake.close();
        let bound = Duration::from_millis(self.config.host.drain_timeout_ms);
        let Some(mut pending) = self.bus.pending() else { return };
        if pending == 0 {
            return;
        }
        tracing::info!(
            pending,
            bound_ms = bound.as_millis() as u64,
            "stopping: taking nothing new, delivering what is queued"
        );
        let started = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + bound;
        while pending > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            pending = self.bus.pending().unwrap_or(0);
        }
        let took_ms = started.elapsed().as_millis() as u64;
        if pending == 0 {
            tracing::info!(took_ms, "drained: every queued message was delivered");
        } else {
            tracing::warn!(
                left = pending,
                bound_ms = bound.as_millis() as u64,
                "stopping with {pending} messages not delivered after the drain bound (the embedded bus keeps them in memory only: they are lost)"
            );
        }
    }
}
