//! Builds a running host from a [`Config`]: the one place that names concrete back ends. Starts
//! transports and app workers, and stops them gracefully.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, Consumer, EmbeddedBus, RoutingKey};
use crate::config::{BusConfig, Config, InstancesConfig, MiddlewareConfig, StateConfig, TransportConfig};
use crate::plugins::{AppLimits, Plugin, AppSettings, Engine, EngineSettings, InstancePolicy, LoadError};
use crate::state::{KvStore, MemoryStore, Namespaced};
use crate::names::ConnectorName;
use crate::transports::TransportContext;
use crate::transports::sink::SinkTransport;
use crate::transports::sms_http::SmsHttpTransport;
use crate::transports::telnet::TelnetTransport;
use crate::transports::ussd_at::UssdAtTransport;
use crate::workers::callbacks::Callbacks;
use crate::workers::dispatcher::Dispatcher;
use crate::workers::events::{EventRouter, Origins};
use crate::workers::http_api::{Channel, ChannelParts, SendApi};
use crate::workers::middleware::{Chains, MiddlewareBus, Step};
use crate::workers::{AppWorker, FailureLog};

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
    /// Where each socket transport listens, by transport name.
    pub listening: BTreeMap<String, SocketAddr>,
    /// Where the shared HTTP listener listens, if any HTTP transport is configured.
    pub http: Option<SocketAddr>,
    /// The failure path, for inspection.
    pub failures: Arc<FailureLog>,
    /// Loaded apps by name.
    pub apps: BTreeMap<String, Arc<Plugin>>,
}

impl std::fmt::Debug for RunningHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningHost").field("listening", &self.listening).finish_non_exhaustive()
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

    let max_memory_mb = config
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
        .max(64);
    let engine = Engine::new(&EngineSettings { max_memory_bytes: (max_memory_mb as usize) << 20, ..Default::default() })
        .map_err(StartError::Engine)?;
    // Everything below publishes through the chains, if any.
    let bus = with_middleware(config, &engine, bus, &state, &failures).await?;

    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut apps = BTreeMap::new();

    // Connectors shared by several app-side components get an event router (see workers::events).
    let mut sharers: BTreeMap<&ConnectorName, usize> = BTreeMap::new();
    for c in config.apps.values().map(|a| &a.connector).chain(config.channels.values().map(|c| &c.connector)) {
        *sharers.entry(c).or_default() += 1;
    }
    let mut routers: BTreeMap<ConnectorName, EventRouter> = sharers
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(c, _)| {
            let kv = Arc::new(Namespaced::new(state.clone(), &format!("origin:{c}")));
            let origins = Arc::new(Origins::new(kv, Duration::from_secs(config.host.event_origin_ttl_secs)));
            (c.clone(), EventRouter::new(c.clone(), bus.clone(), origins, failures.clone()))
        })
        .collect();

    for (name, app) in &config.apps {
        let policy = policy_of(app.instances, app.max_messages_per_instance, Duration::from_secs(app.max_instance_age_secs));
        let mut endpoints: Vec<String> = app.endpoints.iter().map(|e| e.to_string()).collect();
        if !endpoints.iter().any(|e| e == "default") {
            endpoints.push("default".to_owned());
        }
        let settings = AppSettings {
            name: name.to_string(),
            policy,
            limits: AppLimits {
                deadline: Duration::from_millis(app.deadline_ms),
                max_memory_bytes: (app.memory_limit_mb as usize) << 20,
                max_sends: app.max_sends_per_message,
            },
            kv: Namespaced::new(state.clone(), &format!("app:{name}")),
            config: toml_to_json(&app.config),
            endpoints,
        };
        let path = config.resolve(&app.plugin);
        let plugin = Arc::new(
            Plugin::load(&engine, &path, settings)
                .await
                .map_err(|source| StartError::Plugin { key: format!("apps.{name}.plugin"), source })?,
        );
        tracing::info!(app = %name, plugin = %path.display(), connector = %app.connector, "app loaded");
        apps.insert(name.to_string(), plugin.clone());
        let mut worker =
            AppWorker::new(plugin, bus.clone(), app.connector.clone(), failures.clone(), usize::from(app.concurrency));
        if let Some(router) = routers.get_mut(&app.connector) {
            worker = worker.with_routed_events(router.subscribe(name), router.origins());
        }
        let stop = shutdown.clone();
        let app_name = name.to_string();
        tasks.spawn(async move {
            if let Err(e) = worker.run(stop).await {
                tracing::error!(app = app_name, error = %e, "app worker stopped");
            }
        });
    }

    for (name, rc) in &config.routers {
        let kv = Namespaced::new(state.clone(), &format!("router:{name}"));
        let settings = rule_settings(name, rc.instances, rc.deadline_ms, rc.memory_limit_mb, kv, &rc.config);
        let path = config.resolve(&rc.plugin);
        let router = Arc::new(
            Plugin::load_router(&engine, &path, settings)
                .await
                .map_err(|source| StartError::Plugin { key: format!("routers.{name}.plugin"), source })?,
        );
        tracing::info!(router = %name, plugin = %path.display(), "router loaded");
        let origins_kv = Arc::new(Namespaced::new(state.clone(), &format!("router:{name}:origin")));
        let origins = Arc::new(Origins::new(origins_kv, Duration::from_secs(config.host.event_origin_ttl_secs)));
        let dispatcher =
            Dispatcher::new(router, bus.clone(), rc.transports.clone(), rc.apps.clone(), origins, failures.clone());
        let (stop, rname) = (shutdown.clone(), name.to_string());
        tasks.spawn(async move {
            if let Err(e) = dispatcher.run(stop).await {
                tracing::error!(router = rname, error = %e, "dispatcher stopped");
            }
        });
    }

    let mut http_routes = axum::Router::new();
    let mut channels = Vec::new();
    for (name, ch) in &config.channels {
        let kv: Arc<dyn KvStore> = Arc::new(Namespaced::new(state.clone(), &format!("channel:{name}")));
        let callbacks = Callbacks::start(&config.callbacks, name, &ch.connector, failures.clone(), shutdown.clone());
        let router = routers.get_mut(&ch.connector);
        let channel = Arc::new(Channel::new(ChannelParts {
            name: name.to_string(),
            config: ch.clone(),
            transport_type: config.transports.get(&ch.connector).map(|t| t.transport_type().to_owned()),
            kv,
            bus: bus.clone(),
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
        tasks.spawn(channel.clone().run(inbound, events, shutdown.clone()));
        channels.push(channel);
    }
    if !channels.is_empty() {
        http_routes = http_routes.merge(SendApi::new(channels, config.http.max_body_bytes).router());
    }
    for (connector, router) in routers {
        let stop = shutdown.clone();
        tasks.spawn(async move {
            if let Err(e) = router.run(stop).await {
                tracing::error!(connector = %connector, error = %e, "event router stopped");
            }
        });
    }

    let mut listening = BTreeMap::new();
    for (name, t) in &config.transports {
        let ctx = TransportContext { bus: bus.clone(), connector: name.clone() };
        let transport_kv = || -> Arc<dyn KvStore> { Arc::new(Namespaced::new(state.clone(), &format!("transport:{name}"))) };
        let stop = shutdown.clone();
        let tname = name.to_string();
        let report = move |r: Result<(), crate::transports::TransportError>| {
            if let Err(e) = r {
                tracing::error!(transport = tname, error = %e, "transport stopped");
            }
        };
        match t {
            TransportConfig::UssdAt(uc) => {
                let transport = UssdAtTransport::new(ctx, transport_kv(), uc, config.http.max_body_bytes);
                http_routes = http_routes.merge(transport.router());
                tasks.spawn(async move { report(transport.run(stop).await) });
            }
            TransportConfig::SmsHttp(sc) => {
                let transport = SmsHttpTransport::new(ctx, transport_kv(), sc, config.http.max_body_bytes);
                http_routes = http_routes.merge(transport.router());
                tasks.spawn(async move { report(transport.run(stop).await) });
            }
            TransportConfig::Sink(_) => {
                let transport = SinkTransport::new(ctx);
                tasks.spawn(async move { report(transport.run(stop).await) });
            }
            TransportConfig::Telnet(tc) => {
                let bind_err = |source| StartError::Bind { name: name.to_string(), addr: tc.bind, source };
                let listener = tokio::net::TcpListener::bind(tc.bind).await.map_err(bind_err)?;
                listening.insert(name.to_string(), listener.local_addr().map_err(bind_err)?);
                let transport = TelnetTransport::new(listener, tc).map_err(bind_err)?;
                tasks.spawn(async move { report(transport.run(ctx, stop).await) });
            }
        }
    }

    let mut http = None;
    if config.serves_http() {
        let addr = config.http.bind;
        let bind_err = |source| StartError::HttpBind { addr, source };
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind_err)?;
        http = Some(listener.local_addr().map_err(bind_err)?);
        let router = http_routes.fallback(crate::web::not_found);
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let served = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP listener stopped");
            }
        });
    }

    Ok(RunningHost { shutdown, tasks, bus, listening, http, failures, apps })
}

impl RunningHost {
    /// Stop accepting, let workers finish the messages they hold, then close the bus.
    pub async fn shutdown(mut self, grace: Duration) {
        self.shutdown.cancel();
        let drained = tokio::time::timeout(grace, async {
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

/// `bus` behind the configured middleware chains (unchanged without any).
async fn with_middleware(
    config: &Config,
    engine: &Engine,
    bus: Arc<dyn Bus>,
    state: &Arc<dyn KvStore>,
    failures: &Arc<FailureLog>,
) -> Result<Arc<dyn Bus>, StartError> {
    if config.chains.is_empty() {
        return Ok(bus);
    }
    let mut steps = BTreeMap::new();
    for (name, m) in &config.middleware {
        let step = match m {
            MiddlewareConfig::Log(l) => Step::Log { name: name.to_string(), level: l.level.parse().unwrap_or(tracing::Level::INFO) },
            MiddlewareConfig::Plugin(p) => {
                let kv = Namespaced::new(state.clone(), &format!("middleware:{name}"));
                let settings = rule_settings(name, p.instances, p.deadline_ms, p.memory_limit_mb, kv, &p.config);
                let path = config.resolve(&p.plugin);
                let plugin = Plugin::load_middleware(engine, &path, settings)
                    .await
                    .map_err(|source| StartError::Plugin { key: format!("middleware.{name}.plugin"), source })?;
                tracing::info!(middleware = %name, plugin = %path.display(), "middleware loaded");
                Step::Plugin(Arc::new(plugin))
            }
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
    Ok(Arc::new(MiddlewareBus::new(bus, chains, failures.clone())))
}

/// Settings for a plugin that sends nothing itself (a router or a middleware): it decides where
/// a message goes or what it becomes.
fn rule_settings(
    name: &crate::names::AppName,
    instances: InstancesConfig,
    deadline_ms: u64,
    memory_limit_mb: u32,
    kv: Namespaced,
    config: &toml::Table,
) -> AppSettings {
    AppSettings {
        name: name.to_string(),
        policy: policy_of(instances, 10_000, Duration::from_secs(300)),
        limits: AppLimits {
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
