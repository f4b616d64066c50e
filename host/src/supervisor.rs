//! Builds a running host from a [`Config`]: the one place that names concrete back ends. Starts
//! transports and app workers, applies config reloads, and stops everything gracefully.
//!
//! A host is the long-lived parts (bus, state, engine, failure path, plugin registry, HTTP and
//! admin listeners), the **transports** (each kept across a config reload unless its own config
//! changed, so telnet sessions and pending USSD requests survive), and a **generation**: every
//! app worker, dispatcher, channel and event router built from one config. A reload loads every
//! new or changed plugin first (any failure rejects the whole config, and nothing has changed),
//! then swaps the middleware chains, stops the old generation — each worker finishes the messages
//! it has taken; what it has not taken stays queued, and messages for dispatchers queue too
//! instead of being routed at publish time — and starts the new one on the same queues.
//! Plugins whose config did not change keep their slot: their version, counters and any version
//! hot-swapped in since.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::admin::{AdminState, Control, HostStatus, TransportStatus};
use crate::message::Timestamp;

use crate::bus::{Bus, Consumer, EmbeddedBus, RoutingKey};
use crate::config::{BusConfig, Config, InstancesConfig, MiddlewareConfig, StateConfig, TransportConfig};
use crate::plugins::{
    AnySlot, AppSlot, Engine, EngineSettings, Face, InstancePolicy, Limits, LoadError, MiddlewareSlot, Plugin, PluginSlot, Registry,
    RouterSlot, Settings, Watcher,
};
use crate::state::{KvStore, MemoryStore, Namespace, Namespaced};
use crate::names::{AppName, ConnectorName};
use crate::transports::{Transport, TransportContext};
use crate::transports::sink::SinkTransport;
use crate::transports::sms_http::SmsHttpTransport;
use crate::transports::telnet::TelnetTransport;
use crate::transports::ussd_at::UssdAtTransport;
use crate::workers::callbacks::Callbacks;
use crate::workers::dispatcher::Dispatcher;
use crate::workers::events::{EventRouter, Origins};
use crate::workers::http_api::{Channel, ChannelParts, SendApi};
use crate::workers::flow::{Dispatchers, Flow};
use crate::workers::middleware::{Chains, Step};
use crate::workers::{AppWorker, AppWorkerParts, FailureLog};

/// Why the host could not start. Each names the config key at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A transport could not listen.
    #[error("`transports.{name}.bind`: cannot listen on {addr}: {source}")]
    Bind {
        /// The transport.
        name: String,
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The shared HTTP listener could not listen.
    #[error("`http.bind`: cannot listen on {addr}: {source}")]
    HttpBind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An app's plugin could not be loaded.
    #[error("`{key}`: {source}")]
    Plugin {
        /// The config key naming the plugin, e.g. `apps.survey.plugin`.
        key: String,
        /// Why.
        source: LoadError,
    },
    /// A queue could not be consumed.
    #[error("cannot consume `{key}`: {source}")]
    Bus {
        /// The routing key.
        key: String,
        /// The bus error.
        source: crate::bus::BusError,
    },
    /// The engine could not be made.
    #[error(transparent)]
    Engine(LoadError),
    /// The admin listener could not listen.
    #[error("`admin.bind`: cannot listen on {addr}: {source}")]
    AdminBind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Plugin files cannot be watched.
    #[error(transparent)]
    Watch(#[from] crate::plugins::WatchError),
    /// A reloaded config asks for what only a restart can change.
    #[error("`{key}`: {problem}")]
    NeedsRestart {
        /// The key.
        key: String,
        /// Why.
        problem: String,
    },
    /// The failures file could not be opened.
    #[error("`failures.path`: cannot open `{path}`: {source}")]
    FailuresFile {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A started host.
pub struct RunningHost {
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    bus: Arc<dyn Bus>,
    flow: Arc<Flow>,
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
}

impl std::fmt::Debug for RunningHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningHost").field("listening", &self.listening).finish_non_exhaustive()
    }
}

/// What asks for a config reload besides the admin API: `SIGHUP`, and the config file changing.
struct ReloadTriggers {
    path: std::path::PathBuf,
    hup: mpsc::UnboundedReceiver<()>,
    file: mpsc::UnboundedReceiver<()>,
    _watch: Option<ConfigWatch>,
}

type ConfigWatch = notify_debouncer_full::Debouncer<notify::RecommendedWatcher, notify_debouncer_full::RecommendedCache>;

/// A transport and how to stop it.
struct RunningTransport {
    config: TransportConfig,
    stop: CancellationToken,
    task: JoinHandle<()>,
    routes: Option<axum::Router>,
    listening: Option<SocketAddr>,
    status: Arc<Mutex<TransportStatus>>,
}

/// Everything built from one config on the app side of the bus.
struct Generation {
    stop: CancellationToken,
    tasks: JoinSet<()>,
    routes: axum::Router,
    /// Its dispatchers by input queue, for routing at publish time.
    dispatch: Dispatchers,
    /// The plugins it runs, kept for the next config where theirs is unchanged.
    slots: Slots,
}

/// Every plugin of a config, in a slot of its world.
#[derive(Default, Clone)]
struct Slots {
    apps: BTreeMap<AppName, Arc<AppSlot>>,
    routers: BTreeMap<AppName, Arc<RouterSlot>>,
    middleware: BTreeMap<AppName, Arc<MiddlewareSlot>>,
}

impl Slots {
    /// For the admin API, by name.
    fn all(&self) -> BTreeMap<String, Arc<dyn AnySlot>> {
        let apps = self.apps.iter().map(|(k, s)| (k.to_string(), s.clone() as Arc<dyn AnySlot>));
        let routers = self.routers.iter().map(|(k, s)| (k.to_string(), s.clone() as Arc<dyn AnySlot>));
        let middleware = self.middleware.iter().map(|(k, s)| (k.to_string(), s.clone() as Arc<dyn AnySlot>));
        apps.chain(routers).chain(middleware).collect()
    }
}

/// Start everything `config` names. Plugins are compiled before any transport accepts traffic, so
/// a bad plugin stops start-up instead of failing users' messages.
pub async fn start(config: &Config) -> Result<RunningHost, StartError> {
    let bus: Arc<dyn Bus> = match config.host.bus {
        BusConfig::Embedded => Arc::new(EmbeddedBus::new()),
    };
    let state: Arc<dyn KvStore> = match config.host.state {
        StateConfig::Memory => Arc::new(MemoryStore::new()),
    };
    let failures_path = config.failures.path.as_ref().map(|p| config.resolve(p));
    let failures = Arc::new(FailureLog::new(config.failures.keep, failures_path.as_deref()).map_err(|source| {
        StartError::FailuresFile { path: failures_path.map(|p| p.display().to_string()).unwrap_or_default(), source }
    })?);
    let engine_memory_mb = largest_memory_limit(config).max(64);
    let cache_dir = config.cache_dir();
    if let Some(dir) = &cache_dir {
        tracing::info!(dir = %dir.display(), "compiled-component cache");
    }
    let engine = Engine::new(&EngineSettings {
        max_memory_bytes: (engine_memory_mb as usize) << 20,
        cache_dir,
        ..Default::default()
    })
    .map_err(StartError::Engine)?;
    // Everything publishes through the flow (no chains or dispatchers until the config is applied).
    let flow = Arc::new(Flow::new(bus.clone(), failures.clone()));

    let shutdown = CancellationToken::new();
    let mut host = RunningHost {
        shutdown: shutdown.clone(),
        tasks: JoinSet::new(),
        bus,
        flow,
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
            token: admin.token.as_str().into(),
            registry: host.registry.clone(),
            failures: host.failures.clone(),
            status: host.status.clone(),
            control: tx,
            max_upload_bytes: admin.max_upload_bytes,
        });
        let stop = shutdown.clone();
        host.tasks.spawn(async move {
            if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await {
                tracing::error!(error = %e, "admin listener stopped");
            }
        });
    }
    host.status.with_config(|c| c.loaded_at = Timestamp::now().to_string());
    Ok(host)
}

/// The largest memory cap any plugin in `config` asks for.
fn largest_memory_limit(config: &Config) -> u32 {
    config
        .apps
        .values()
        .map(|a| a.memory_limit_mb)
        .chain(config.routers.values().map(|r| r.memory_limit_mb))
        .chain(config.middleware.values().filter_map(|m| match m {
            MiddlewareConfig::Plugin(p) => Some(p.memory_limit_mb),
            MiddlewareConfig::Log(_) => None,
        }))
        .max()
        .unwrap_or(64)
}

impl RunningHost {
    /// Take config reloads from `config_path`: on `SIGHUP` and (with `plugins.watch`) when the
    /// file changes. Call it before telling anyone the host is ready, so no change or signal
    /// falls between start-up and [`RunningHost::serve`].
    pub fn reload_on_change(&mut self, config_path: &Path) {
        let (file_tx, file) = mpsc::unbounded_channel();
        let watch = if self.config.plugins.watch { watch_config(config_path, file_tx) } else { None };
        self.reloads = Some(ReloadTriggers { path: config_path.to_owned(), hup: hangup(), file, _watch: watch });
        self.status.with_config(|c| c.path = config_path.display().to_string());
    }

    /// Serve until `until` resolves, applying the config reloads asked for (see
    /// [`RunningHost::reload_on_change`]; the admin API's `POST /reload` too). Then stop
    /// gracefully.
    pub async fn serve(mut self, until: impl std::future::Future<Output = ()>) {
        tokio::pin!(until);
        let mut control = self.control.take();
        let mut triggers = self.reloads.take();
        let path = triggers.as_ref().map(|t| t.path.clone());
        loop {
            let reason = tokio::select! {
                () = &mut until => break,
                Some(reason) = next_trigger(&mut triggers) => reason,
                Some(Control::ReloadConfig(reply)) = recv(&mut control) => {
                    let result = match &path {
                        Some(p) => self.reload_from(p, "the admin API").await,
                        None => Err("this host was not started from a config file".to_owned()),
                    };
                    let _ = reply.send(result);
                    continue;
                }
            };
            if let Some(p) = &path {
                let _ = self.reload_from(p, reason).await;
            }
        }
        tracing::info!("shutting down");
        self.shutdown(Duration::from_secs(5)).await;
    }

    /// Load `path` and apply it; an invalid config is rejected whole and the running one stays.
    pub async fn reload_from(&mut self, path: &Path, why: &str) -> Result<String, String> {
        tracing::info!(config = %path.display(), why, "reloading config");
        let result = match Config::load(path) {
            Ok(new) => self.reload(new).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match &result {
            Ok(summary) => {
                crate::telemetry::metrics::metrics().reload("config", "swapped");
                tracing::info!(config = %path.display(), summary, "config reloaded");
                self.status.with_config(|c| {
                    c.reloads += 1;
                    c.loaded_at = Timestamp::now().to_string();
                    c.rejected = None;
                });
            }
            Err(reason) => {
                crate::telemetry::metrics::metrics().reload("config", "rejected");
                tracing::error!(config = %path.display(), reason, "config rejected; the running config stays");
                self.status.with_config(|c| {
                    c.rejected = Some(crate::plugins::Rejection { at: Timestamp::now().to_string(), reason: reason.clone() });
                });
            }
        }
        result
    }

    /// Apply `new` in place of the running config: a summary of what changed, or why nothing did.
    pub async fn reload(&mut self, new: Config) -> Result<String, StartError> {
        for (key, changed) in [
            ("host", self.config.host != new.host),
            ("failures", self.config.failures != new.failures),
            ("plugins", self.config.plugins != new.plugins),
            ("admin", self.config.admin != new.admin),
            ("http.bind", self.config.http.bind != new.http.bind && self.http.is_some()),
        ] {
            if changed {
                return Err(StartError::NeedsRestart {
                    key: key.into(),
                    problem: "changed, and only a restart applies it; revert it to reload the rest".into(),
                });
            }
        }
        let limit = largest_memory_limit(&new);
        if limit > self.engine_memory_mb {
            return Err(StartError::NeedsRestart {
                key: "memory_limit_mb".into(),
                problem: format!("{limit} MiB is over the {} MiB the engine reserved at start; restart to raise it", self.engine_memory_mb),
            });
        }
        let old = self.config.clone();
        self.apply(Some(&old), new).await
    }

    /// Make the running host match `new`, given that it matches `old` (`None`: nothing runs yet).
    async fn apply(&mut self, old: Option<&Config>, new: Config) -> Result<String, StartError> {
        let mut summary = Vec::new();
        // 1. Every plugin the new config names, loaded before anything stops: a failure here
        //    rejects the whole config with nothing changed.
        let slots = self.load_plugins(old, &new, &mut summary).await?;

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
        self.status.set_transports(self.transports.iter().map(|(n, t)| (n.to_string(), t.status.clone())).collect());
        self.config = new;
        Ok(if summary.is_empty() { "nothing changed".into() } else { summary.join("; ") })
    }

    /// Slots for every plugin in `new`: kept from the running generation where the plugin's
    /// config is unchanged, loaded otherwise.
    async fn load_plugins(&self, old: Option<&Config>, new: &Config, summary: &mut Vec<String>) -> Result<Slots, StartError> {
        let running = self.generation.as_ref().map(|g| g.slots.clone()).unwrap_or_default();
        let mut slots = Slots::default();
        for (name, app) in &new.apps {
            let same = old.is_some_and(|o| o.apps.get(name) == Some(app));
            let kept = running.apps.get(name).filter(|_| same).cloned();
            let settings = self.app_settings(name, app);
            let slot = self.slot(kept, "apps", name, new.resolve(&app.plugin), settings, summary).await?;
            slots.apps.insert(name.clone(), slot);
        }
        for (name, rc) in &new.routers {
            let same = old.is_some_and(|o| o.routers.get(name) == Some(rc));
            let kept = running.routers.get(name).filter(|_| same).cloned();
            let kv = Namespaced::new(self.state.clone(), Namespace::plugin("router", name.as_str()));
            let settings = rule_settings(name, rc.instances, rc.deadline_ms, rc.memory_limit_mb, kv, &rc.config);
            let slot = self.slot(kept, "routers", name, new.resolve(&rc.plugin), settings, summary).await?;
            slots.routers.insert(name.clone(), slot);
        }
        for (name, m) in &new.middleware {
            let MiddlewareConfig::Plugin(p) = m else { continue };
            let same = old.is_some_and(|o| o.middleware.get(name) == Some(m));
            let kept = running.middleware.get(name).filter(|_| same).cloned();
            let kv = Namespaced::new(self.state.clone(), Namespace::plugin("middleware", name.as_str()));
            let settings = rule_settings(name, p.instances, p.deadline_ms, p.memory_limit_mb, kv, &p.config);
            let slot = self.slot(kept, "middleware", name, new.resolve(&p.plugin), settings, summary).await?;
            slots.middleware.insert(name.clone(), slot);
        }
        if let Some(o) = old {
            let now = slots.all();
            let removed: Vec<String> = o
                .apps
                .keys()
                .chain(o.routers.keys())
                .chain(o.middleware.iter().filter(|(_, m)| matches!(m, MiddlewareConfig::Plugin(_))).map(|(n, _)| n))
                .filter(|n| !now.contains_key(n.as_str()))
                .map(|n| format!("{n} removed"))
                .collect();
            summary.extend(removed);
        }
        Ok(slots)
    }

    /// `kept`, or a new slot with `path` loaded as a plugin of world `F`.
    async fn slot<F: Face>(
        &self,
        kept: Option<Arc<PluginSlot<F>>>,
        section: &str,
        name: &AppName,
        path: std::path::PathBuf,
        settings: Settings,
        summary: &mut Vec<String>,
    ) -> Result<Arc<PluginSlot<F>>, StartError> {
        if let Some(s) = kept {
            return Ok(s);
        }
        let plugin = Plugin::<F>::load(&self.engine, &path, settings)
            .await
            .map_err(|source| StartError::Plugin { key: format!("{section}.{name}.plugin"), source })?;
        tracing::info!(plugin = %name, section, file = %path.display(), hash = %&plugin.version().hash[..12], "plugin loaded");
        summary.push(format!("{name} loaded"));
        Ok(Arc::new(PluginSlot::new(plugin)))
    }

    fn app_settings(&self, name: &AppName, app: &crate::config::AppConfig) -> Settings {
        let policy = policy_of(app.instances, app.max_messages_per_instance, Duration::from_secs(app.max_instance_age_secs));
        let mut endpoints: Vec<String> = app.endpoints.iter().map(|e| e.to_string()).collect();
        if !endpoints.iter().any(|e| e == "default") {
            endpoints.push("default".to_owned());
        }
        Settings {
            name: name.to_string(),
            policy,
            limits: Limits {
                deadline: Duration::from_millis(app.deadline_ms),
                max_memory_bytes: (app.memory_limit_mb as usize) << 20,
                max_sends: app.max_sends_per_message,
            },
            kv: Namespaced::new(self.state.clone(), Namespace::plugin("app", name.as_str())),
            config: toml_to_json(&app.config),
            endpoints,
        }
    }

    async fn start_transport(&self, config: &Config, name: &ConnectorName, t: &TransportConfig) -> Result<RunningTransport, StartError> {
        let ctx = TransportContext { publish: self.flow.clone(), connector: name.clone() };
        let kv = || -> Arc<dyn KvStore> { Arc::new(Namespaced::new(self.state.clone(), Namespace::Transport(name.as_str()))) };
        let mut listening = None;
        let transport: Box<dyn Transport> = match t {
            TransportConfig::UssdAt(uc) => Box::new(UssdAtTransport::new(ctx, kv(), uc, config.http.max_body_bytes)),
            TransportConfig::SmsHttp(sc) => Box::new(SmsHttpTransport::new(ctx, kv(), sc, config.http.max_body_bytes)),
            TransportConfig::Sink(_) => Box::new(SinkTransport::new(ctx)),
            TransportConfig::Telnet(tc) => {
                let bind_err = |source| StartError::Bind { name: name.to_string(), addr: tc.bind, source };
                let listener = tokio::net::TcpListener::bind(tc.bind).await.map_err(bind_err)?;
                listening = Some(listener.local_addr().map_err(bind_err)?);
                Box::new(TelnetTransport::new(ctx, listener, tc).map_err(bind_err)?)
            }
        };
        let key = RoutingKey::outbound(name);
        let outbound = self
            .bus
            .consume(&key, transport.prefetch())
            .await
            .map_err(|source| StartError::Bus { key: key.to_string(), source })?;
        let status = Arc::new(Mutex::new(TransportStatus {
            name: name.to_string(),
            kind: t.transport_type().to_owned(),
            listening: listening.map(|a| a.to_string()),
            state: "running".into(),
            since: Timestamp::now().to_string(),
        }));
        let stop = self.shutdown.child_token();
        let routes = transport.routes();
        let task = {
            let (status, tname, token) = (status.clone(), name.to_string(), stop.clone());
            tokio::spawn(async move {
                let r = transport.run(outbound, token).await;
                let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
                s.since = Timestamp::now().to_string();
                match r {
                    Ok(()) => s.state = "stopped".into(),
                    Err(e) => {
                        tracing::error!(transport = tname, error = %e, "transport stopped");
                        s.state = format!("failed: {e}");
                    }
                }
            })
        };
        Ok(RunningTransport { config: t.clone(), stop, task, routes, listening, status })
    }

    /// Every app-side component of `config`, on the plugins in `slots`.
    async fn start_generation(&mut self, config: &Config, slots: Slots) -> Result<Generation, StartError> {
        let bus = self.bus.clone();
        let (state, failures) = (self.state.clone(), self.failures.clone());
        let retry = config.host.retry.clone();
        let stop = self.shutdown.child_token();
        let mut tasks = JoinSet::new();

        // Connectors shared by several app-side components get an event router (see workers::events).
        let mut sharers: BTreeMap<&ConnectorName, usize> = BTreeMap::new();
        for c in config.apps.values().map(|a| &a.connector).chain(config.channels.values().map(|c| &c.connector)) {
            *sharers.entry(c).or_default() += 1;
        }
        let mut routers: BTreeMap<ConnectorName, EventRouter> = sharers
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(c, _)| {
                let kv = Arc::new(Namespaced::new(state.clone(), Namespace::origins("connector", c.as_str())));
                let origins = Arc::new(Origins::new(kv, Duration::from_secs(config.host.event_origin_ttl_secs)));
                (c.clone(), EventRouter::new(c.clone(), bus.clone(), origins, failures.clone(), retry.clone()))
            })
            .collect();

        for (name, app) in &config.apps {
            let Some(slot) = slots.apps.get(name) else { continue };
            let mut worker = AppWorker::new(AppWorkerParts {
                handler: slot.clone(),
                bus: bus.clone(),
                publish: self.flow.clone(),
                connector: app.connector.clone(),
                failures: failures.clone(),
                concurrency: usize::from(app.concurrency),
                retry: retry.clone(),
            });
            if let Some(router) = routers.get_mut(&app.connector) {
                worker = worker.with_routed_events(router.subscribe(name), router.origins());
            }
            let (stop, app_name) = (stop.clone(), name.to_string());
            tasks.spawn(async move {
                if let Err(e) = worker.run(stop).await {
                    tracing::error!(app = app_name, error = %e, "app worker stopped");
                }
            });
        }

        let mut dispatch = Dispatchers::new();
        for (name, rc) in &config.routers {
            let Some(slot) = slots.routers.get(name) else { continue };
            let origins_kv = Arc::new(Namespaced::new(state.clone(), Namespace::origins("router", name.as_str())));
            let origins = Arc::new(Origins::new(origins_kv, Duration::from_secs(config.host.event_origin_ttl_secs)));
            let dispatcher = Arc::new(Dispatcher::new(slot.clone(), rc.transports.clone(), rc.apps.clone(), origins));
            for input in dispatcher.inputs() {
                dispatch.insert(input, dispatcher.clone());
            }
            let (flow, stop, rname, retry) = (self.flow.clone(), stop.clone(), name.to_string(), retry.clone());
            tasks.spawn(async move {
                if let Err(e) = flow.serve(dispatcher, retry, stop).await {
                    tracing::error!(router = rname, error = %e, "dispatcher stopped");
                }
            });
        }

        let mut routes = axum::Router::new();
        let mut channels = Vec::new();
        for (name, ch) in &config.channels {
            let kv: Arc<dyn KvStore> = Arc::new(Namespaced::new(state.clone(), Namespace::Channel(name.as_str())));
            let callbacks = Callbacks::start(&config.callbacks, name, &ch.connector, failures.clone(), stop.clone());
            let router = routers.get_mut(&ch.connector);
            let channel = Arc::new(Channel::new(ChannelParts {
                name: name.to_string(),
                config: ch.clone(),
                transport_type: config.transports.get(&ch.connector).map(|t| t.transport_type().to_owned()),
                kv,
                publish: self.flow.clone(),
                origins: router.as_ref().map(|r| r.origins()),
                callbacks,
            }));
            let consume = |key: RoutingKey| {
                let bus = bus.clone();
                async move { bus.consume(&key, 64).await.map_err(|source| StartError::Bus { key: key.to_string(), source }) }
            };
            let events: Box<dyn Consumer> = match router {
                Some(r) => Box::new(r.subscribe(name)),
                None => consume(RoutingKey::event(&ch.connector)).await?,
            };
            let inbound = match ch.mo_url {
                Some(_) => Some(consume(RoutingKey::inbound(&ch.connector)).await?),
                None => None,
            };
            tasks.spawn(channel.clone().run(inbound, events, stop.clone()));
            channels.push(channel);
        }
        if !channels.is_empty() {
            routes = routes.merge(SendApi::new(channels, config.http.max_body_bytes).router());
        }
        for (connector, router) in routers {
            let stop = stop.clone();
            tasks.spawn(async move {
                if let Err(e) = router.run(stop).await {
                    tracing::error!(connector = %connector, error = %e, "event router stopped");
                }
            });
        }
        Ok(Generation { stop, tasks, routes, dispatch, slots })
    }

    /// The shared HTTP listener. It serves the routes current at each request, so a config
    /// reload changes what it serves without closing it.
    async fn start_http(&mut self, addr: SocketAddr) -> Result<(), StartError> {
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

    /// Stop accepting, let workers finish the messages they hold, then close the bus.
    pub async fn shutdown(mut self, grace: Duration) {
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
            tracing::warn!(grace_ms = grace.as_millis() as u64, "tasks still running after the grace period; stopping them");
            self.tasks.abort_all();
        }
        self.bus.close().await;
    }
}

async fn recv(control: &mut Option<mpsc::Receiver<Control>>) -> Option<Control> {
    match control {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_trigger(triggers: &mut Option<ReloadTriggers>) -> Option<&'static str> {
    let Some(t) = triggers else { return std::future::pending().await };
    tokio::select! {
        Some(()) = t.hup.recv() => Some("SIGHUP"),
        Some(()) = t.file.recv() => Some("the config file changed"),
        else => std::future::pending().await,
    }
}

/// `SIGHUP`s, as a stream of `()`.
fn hangup() -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        if tx.send(()).is_err() {
                            return;
                        }
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP; reload through the admin API instead"),
        }
    }
    rx
}

/// Watch the config file's directory for changes to the file. Editors save by writing a new
/// file and renaming it over the old one, which a watch on the file itself would miss.
fn watch_config(path: &Path, tx: mpsc::UnboundedSender<()>) -> Option<ConfigWatch> {
    let target = crate::plugins::normalize_path(path);
    let dir = target.parent()?.to_owned();
    let file = target.clone();
    let debouncer = notify_debouncer_full::new_debouncer(Duration::from_millis(200), None, move |r: notify_debouncer_full::DebounceEventResult| {
        let Ok(events) = r else { return };
        let touched = events.iter().any(|e| {
            !matches!(e.event.kind, notify::EventKind::Access(_)) && e.event.paths.iter().any(|p| p == &file)
        });
        if touched {
            let _ = tx.send(());
        }
    });
    match debouncer {
        Ok(mut d) => match d.watch(&dir, notify::RecursiveMode::NonRecursive) {
            Ok(()) => Some(d),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the config file; reload with SIGHUP or the admin API");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP or the admin API");
            None
        }
    }
}

/// The middleware chains of `config`, on the plugins in `slots`.
fn chains(config: &Config, slots: &Slots) -> Chains {
    let mut steps = BTreeMap::new();
    for (name, m) in &config.middleware {
        let step = match m {
            MiddlewareConfig::Log(l) => Step::Log { name: name.to_string(), level: l.level.parse().unwrap_or(tracing::Level::INFO) },
            MiddlewareConfig::Plugin(_) => match slots.middleware.get(name) {
                Some(s) => Step::Plugin(s.clone()),
                None => continue,
            },
        };
        steps.insert(name.clone(), step);
    }
    let mut chains = Chains::new();
    for (connector, chain) in &config.chains {
        let keys = [
            (RoutingKey::inbound(connector), &chain.inbound),
            (RoutingKey::outbound(connector), &chain.outbound),
            (RoutingKey::event(connector), &chain.event),
        ];
        for (key, names) in keys {
            // Validated at load: every name is defined.
            let chain: Vec<Step> = names.iter().filter_map(|n| steps.get(n).cloned()).collect();
            if !chain.is_empty() {
                tracing::info!(queue = %key, steps = ?chain, "middleware chain");
                chains.insert(key, chain);
            }
        }
    }
    chains
}

/// Settings for a plugin that sends nothing itself (a router or a middleware): it decides where
/// a message goes or what it becomes.
fn rule_settings(
    name: &AppName,
    instances: InstancesConfig,
    deadline_ms: u64,
    memory_limit_mb: u32,
    kv: Namespaced,
    config: &toml::Table,
) -> Settings {
    Settings {
        name: name.to_string(),
        policy: policy_of(instances, 10_000, Duration::from_secs(300)),
        limits: Limits {
            deadline: Duration::from_millis(deadline_ms),
            max_memory_bytes: (memory_limit_mb as usize) << 20,
            max_sends: 0,
        },
        kv,
        config: toml_to_json(config),
        endpoints: Vec::new(),
    }
}

fn policy_of(instances: InstancesConfig, max_messages: u32, max_age: Duration) -> InstancePolicy {
    match instances {
        InstancesConfig::Fresh => InstancePolicy::Fresh,
        InstancesConfig::Pooled => InstancePolicy::Pooled { max_messages, max_age },
    }
}

/// TOML tables become the JSON an app reads through the `config` import. TOML datetimes become
/// their text form.
pub fn toml_to_json(t: &toml::Table) -> serde_json::Map<String, serde_json::Value> {
    fn conv(v: &toml::Value) -> serde_json::Value {
        match v {
            toml::Value::String(s) => serde_json::Value::String(s.clone()),
            toml::Value::Integer(i) => serde_json::Value::from(*i),
            toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, serde_json::Value::Number),
            toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
            toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
            toml::Value::Array(a) => serde_json::Value::Array(a.iter().map(conv).collect()),
            toml::Value::Table(t) => serde_json::Value::Object(toml_to_json(t)),
        }
    }
    t.iter().map(|(k, v)| (k.clone(), conv(v))).collect()
}
