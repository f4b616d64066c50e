//! A plugin: one compiled component (an application, a router or a middleware), its instance
//! policy, and the per-message call that turns a message into what the plugin decided: the
//! messages an app sent, the targets a router chose, or a middleware's verdict.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::{Store, UpdateDeadline};

use crate::message::{Event, UserMessage};
use crate::state::Namespaced;

use super::bindings::Application;
use super::bindings::middleware::Middleware;
use super::bindings::router::Router;
use super::engine::{Engine, TICK};
use super::host::{AppContext, HostState};
use super::cache::CacheOutcome;
use super::loader::{self, Compiled, LoadError, Loaded, World};
use crate::telemetry::metrics::metrics;
use prometheus_client::metrics::histogram::Histogram;
use super::{bindings, convert};

/// How instances of an app are used. See `../shared/design.md`, "Instances": a fresh instance per
/// message is the strongest isolation (~25 µs), a pooled instance is ~10x cheaper and still never
/// shared across apps or versions, and is dropped after any trap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstancePolicy {
    /// A new sandbox for every message: no memory carries over between messages.
    Fresh,
    /// Reuse an instance for up to `max_messages` messages or `max_age`, whichever comes first.
    Pooled {
        /// Messages an instance may handle before it is retired.
        max_messages: u32,
        /// Age at which an instance is retired.
        max_age: Duration,
    },
}

/// What one call may consume.
#[derive(Debug, Clone)]
pub struct AppLimits {
    /// CPU time the guest may run per message (counted in epoch ticks of 1 ms).
    pub deadline: Duration,
    /// Linear memory an instance may grow to.
    pub max_memory_bytes: usize,
    /// Messages one handler call may send.
    pub max_sends: u32,
}

/// Everything needed to load one app.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// The app's name, for logs, failures and the kv namespace.
    pub name: String,
    /// Instance policy.
    pub policy: InstancePolicy,
    /// Per-call limits.
    pub limits: AppLimits,
    /// The app's view of the state store.
    pub kv: Namespaced,
    /// The app's own config table, as JSON.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Endpoints `send-to` may name.
    pub endpoints: Vec<String>,
}

/// Why a handler call produced nothing to publish. [`HandlerFailure::kind`] is the label used in
/// logs, metrics and the failure record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HandlerFailure {
    /// The handler returned `err(reason)`.
    #[error("handler returned an error: {0}")]
    Handler(String),
    /// The guest trapped (a panic, `unreachable`, an out-of-bounds access).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The guest ran past its CPU deadline.
    #[error("plugin ran past its CPU deadline of {} ms", .0.as_millis())]
    Deadline(Duration),
    /// The guest tried to grow its memory past its cap.
    #[error("plugin went over its memory cap of {} MiB", .0 >> 20)]
    Memory(usize),
    /// A fresh instance could not be made (e.g. the instance pool is exhausted).
    #[error("plugin could not be instantiated: {0}")]
    Instantiate(String),
}

impl HandlerFailure {
    /// A short machine label: `handler_error`, `trap`, `deadline`, `memory`, `instantiate`.
    pub fn kind(&self) -> &'static str {
        match self {
            HandlerFailure::Handler(_) => "handler_error",
            HandlerFailure::Trap(_) => "trap",
            HandlerFailure::Deadline(_) => "deadline",
            HandlerFailure::Memory(_) => "memory",
            HandlerFailure::Instantiate(_) => "instantiate",
        }
    }
}

/// Counters an operator reads (the admin API shows them).
#[derive(Debug, Default)]
pub struct PluginStats {
    /// Calls that returned `ok`.
    pub handled: AtomicU64,
    /// Calls that failed, for any reason.
    pub failed: AtomicU64,
    /// Instances created.
    pub instantiated: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl PluginStats {
    /// The most recent failure's reason.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Where a router sends a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// A connector name, as the router returned it (the dispatcher checks it).
    pub connector: String,
    /// The endpoint to set, if any.
    pub endpoint: Option<String>,
}

/// Which way a message passes a middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Towards the apps.
    Inbound,
    /// Towards the end user.
    Outbound,
}

/// A middleware's decision.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // moved once per message: a Box would only add an allocation
pub enum Verdict {
    /// Go on with this message (the input, changed or not).
    Pass(UserMessage),
    /// Stop here, for this reason.
    Drop(String),
}

enum Bound {
    App(Application),
    Router(Router),
    Middleware(Middleware),
}

struct Instance {
    store: Store<HostState>,
    bound: Bound,
    messages: u32,
    born: Instant,
}

enum Input {
    User(bindings::types::UserMessage),
    Event(bindings::types::Event),
    RouteInbound(bindings::types::UserMessage, String),
    RouteOutbound(bindings::types::UserMessage, String),
    RouteEvent(bindings::types::Event, String, Option<String>),
    Process(bindings::types::UserMessage, bindings::types::Direction, String),
}

/// What a call produced.
#[derive(Default)]
struct Output {
    sends: Vec<UserMessage>,
    targets: Vec<Target>,
    verdict: Option<bindings::types::Verdict>,
}

/// What the guest's export returned, before the host checks it.
#[allow(clippy::large_enum_variant)] // moved once per message: a Box would only add an allocation
enum Returned {
    Nothing,
    Targets(Vec<bindings::types::Target>),
    Verdict(bindings::types::Verdict),
}

/// One version of a loaded plugin. Shared by all of an app's worker lanes (or a dispatcher's);
/// a reload makes a new `Plugin` beside it (see [`super::PluginSlot`]).
pub struct Plugin {
    name: String,
    engine: Engine,
    pre: Loaded,
    world: World,
    path: PathBuf,
    version: Version,
    ctx: Arc<AppContext>,
    policy: InstancePolicy,
    limits: AppLimits,
    idle: Mutex<Vec<Instance>>,
    /// Shared by every version of the plugin: an operator counts the plugin, not the version.
    stats: Arc<PluginStats>,
    latency: Histogram,
}

/// What identifies one version of a plugin to an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// SHA-256 of the component file, hex.
    pub hash: String,
    /// The component's size in bytes.
    pub size: usize,
    /// When it was loaded (Vumi's timestamp form, UTC).
    pub loaded_at: String,
    /// How long compiling (or loading from the cache) and starting one instance took.
    pub load_time: Duration,
    /// Whether the compiled-component cache served it.
    pub cache: CacheOutcome,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("name", &self.name).field("policy", &self.policy).finish_non_exhaustive()
    }
}

/// What a version of a plugin is made from, besides its component.
struct Parts {
    name: String,
    engine: Engine,
    world: World,
    path: PathBuf,
    ctx: Arc<AppContext>,
    policy: InstancePolicy,
    limits: AppLimits,
    stats: Arc<PluginStats>,
}

/// Idle instances kept per app; more concurrent calls than this instantiate and then drop.
const MAX_IDLE: usize = 32;

impl Plugin {
    /// Load, compile and check `path` as an application, then make one instance to prove it
    /// starts (a component that traps while starting is refused here, not on the first user's
    /// message).
    pub async fn load(engine: &Engine, path: &Path, settings: AppSettings) -> Result<Self, LoadError> {
        Self::load_world(engine, path, World::Application, settings).await
    }

    /// As [`Plugin::load`], for a router (`world router`). `settings.endpoints` and
    /// `limits.max_sends` do not apply: a router sends nothing itself.
    pub async fn load_router(engine: &Engine, path: &Path, settings: AppSettings) -> Result<Self, LoadError> {
        Self::load_world(engine, path, World::Router, settings).await
    }

    /// As [`Plugin::load`], for a middleware (`world middleware`).
    pub async fn load_middleware(engine: &Engine, path: &Path, settings: AppSettings) -> Result<Self, LoadError> {
        Self::load_world(engine, path, World::Middleware, settings).await
    }

    /// Load `path` as a plugin of `world` (what [`Plugin::load`] and its siblings do).
    pub async fn load_world(engine: &Engine, path: &Path, world: World, settings: AppSettings) -> Result<Self, LoadError> {
        let started = Instant::now();
        let compiled = loader::load(engine, path, world).await?;
        let ctx = Arc::new(AppContext {
            app: settings.name.clone(),
            kv: settings.kv,
            config_json: serde_json::Value::Object(settings.config.clone()).to_string(),
            config: settings.config,
            endpoints: settings.endpoints,
            max_sends: settings.limits.max_sends,
        });
        let parts = Parts {
            name: settings.name,
            engine: engine.clone(),
            world,
            path: path.to_owned(),
            ctx,
            policy: settings.policy,
            limits: settings.limits,
            stats: Arc::default(),
        };
        Self::start(parts, compiled, started).await
    }

    /// A new version of this plugin from `bytes` (or, with `None`, from its file as it is now):
    /// same name, world, settings and counters. The running version is untouched; the caller
    /// swaps the result in. Fails as [`Plugin::load`] does: a corrupt file, another world, or a
    /// component that traps while starting.
    pub async fn new_version(&self, bytes: Option<Vec<u8>>) -> Result<Self, LoadError> {
        let started = Instant::now();
        let compiled = match bytes {
            Some(b) => loader::load_bytes(&self.engine, &self.path, b, self.world).await?,
            None => loader::load(&self.engine, &self.path, self.world).await?,
        };
        let parts = Parts {
            name: self.name.clone(),
            engine: self.engine.clone(),
            world: self.world,
            path: self.path.clone(),
            ctx: self.ctx.clone(),
            policy: self.policy.clone(),
            limits: self.limits.clone(),
            stats: self.stats.clone(),
        };
        Self::start(parts, compiled, started).await
    }

    /// Make one instance to prove the component starts (one that traps while starting is refused
    /// here, not on the first user's message).
    async fn start(p: Parts, compiled: Compiled, started: Instant) -> Result<Self, LoadError> {
        let mut plugin = Self {
            latency: metrics().handler_seconds(&p.name),
            name: p.name,
            engine: p.engine,
            pre: compiled.loaded,
            world: p.world,
            path: p.path,
            version: Version {
                hash: compiled.hash,
                size: compiled.size,
                loaded_at: crate::message::Timestamp::now().to_string(),
                load_time: Duration::ZERO,
                cache: compiled.cache,
            },
            ctx: p.ctx,
            policy: p.policy,
            limits: p.limits,
            idle: Mutex::new(Vec::new()),
            stats: p.stats,
        };
        let first = plugin.instantiate().await.map_err(|e| LoadError::WrongWorld {
            path: plugin.path.clone(),
            world: plugin.world,
            reason: format!("it fails to start: {e}"),
        })?;
        plugin.release(first);
        plugin.version.load_time = started.elapsed();
        Ok(plugin)
    }

    /// The world it was built for.
    pub fn world(&self) -> World {
        self.world
    }

    /// The file it was loaded from (and is reloaded from).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Which version this is.
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// The app's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counters for operators.
    pub fn stats(&self) -> &PluginStats {
        &self.stats
    }

    /// Handle a user message; on success returns what the handler sent, in order.
    pub async fn handle_user_message(&self, msg: Arc<UserMessage>) -> Result<Vec<UserMessage>, HandlerFailure> {
        let input = Input::User(convert::user_message(&msg));
        Ok(self.call(Some(msg), input).await?.sends)
    }

    /// Handle an event about a message this app sent.
    pub async fn handle_event(&self, event: &Event) -> Result<Vec<UserMessage>, HandlerFailure> {
        Ok(self.call(None, Input::Event(convert::event(event))).await?.sends)
    }

    /// A router's choice for a message that arrived on transport connector `from`.
    pub async fn route_inbound(&self, msg: &UserMessage, from: &str) -> Result<Vec<Target>, HandlerFailure> {
        Ok(self.call(None, Input::RouteInbound(convert::user_message(msg), from.to_owned())).await?.targets)
    }

    /// A router's choice for a message an app on connector `from` sent.
    pub async fn route_outbound(&self, msg: &UserMessage, from: &str) -> Result<Vec<Target>, HandlerFailure> {
        Ok(self.call(None, Input::RouteOutbound(convert::user_message(msg), from.to_owned())).await?.targets)
    }

    /// A router's choice for an event from transport connector `from` about a message that app
    /// connector `origin` sent.
    pub async fn route_event(&self, event: &Event, from: &str, origin: Option<&str>) -> Result<Vec<Target>, HandlerFailure> {
        let input = Input::RouteEvent(convert::event(event), from.to_owned(), origin.map(str::to_owned));
        Ok(self.call(None, input).await?.targets)
    }

    /// A middleware's verdict on `msg` passing through `connector` in `direction`. A verdict
    /// that changes the message id or carries an invalid field is the plugin's error.
    pub async fn process(&self, msg: &UserMessage, direction: Direction, connector: &str) -> Result<Verdict, HandlerFailure> {
        let dir = match direction {
            Direction::Inbound => bindings::types::Direction::Inbound,
            Direction::Outbound => bindings::types::Direction::Outbound,
        };
        let input = Input::Process(convert::user_message(msg), dir, connector.to_owned());
        match self.call(None, input).await?.verdict {
            Some(bindings::types::Verdict::Pass(changed)) => {
                convert::changed_user_message(msg, changed).map(Verdict::Pass).map_err(HandlerFailure::Handler)
            }
            Some(bindings::types::Verdict::Drop(reason)) => Ok(Verdict::Drop(reason)),
            None => Err(HandlerFailure::Handler(format!("`{}` returned no verdict", self.name))),
        }
    }

    async fn call(&self, current: Option<Arc<UserMessage>>, input: Input) -> Result<Output, HandlerFailure> {
        let started = Instant::now();
        let result = self.call_inner(current, input).await;
        self.latency.observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => {
                self.stats.handled.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                *self.stats.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
        }
        result
    }

    async fn call_inner(&self, current: Option<Arc<UserMessage>>, input: Input) -> Result<Output, HandlerFailure> {
        let mut inst = match self.take_idle() {
            Some(i) => i,
            None => self.instantiate().await?,
        };
        arm(&mut inst.store, self.limits.deadline);
        inst.store.data_mut().call.current = current;
        // Only this call's stderr may explain this call's trap.
        inst.store.data().stderr.take();

        // The epoch deadline stops guest CPU; this wall-clock bound also covers a host import
        // (a networked kv) that hangs.
        let wall = self.limits.deadline * 10 + Duration::from_secs(1);
        let outcome = tokio::time::timeout(wall, async {
            let nothing = |r: Result<(), String>| r.map(|()| Returned::Nothing);
            let targets = |r: Result<Vec<_>, String>| r.map(Returned::Targets);
            let store = &mut inst.store;
            match (&inst.bound, &input) {
                (Bound::App(a), Input::User(m)) => a.call_handle_user_message(store, m).await.map(nothing),
                (Bound::App(a), Input::Event(e)) => a.call_handle_event(store, e).await.map(nothing),
                (Bound::Router(r), Input::RouteInbound(m, from)) => r.call_route_inbound(store, m, from).await.map(targets),
                (Bound::Router(r), Input::RouteOutbound(m, from)) => {
                    r.call_route_outbound(store, m, from).await.map(targets)
                }
                (Bound::Router(r), Input::RouteEvent(e, from, origin)) => {
                    r.call_route_event(store, e, from, origin.as_deref()).await.map(targets)
                }
                (Bound::Middleware(mw), Input::Process(m, dir, connector)) => {
                    mw.call_process(store, m, *dir, connector).await.map(|r| r.map(Returned::Verdict))
                }
                _ => Ok(Err(format!("`{}` is a component of another world: it cannot handle this call", self.name))),
            }
        })
        .await;

        let call = std::mem::take(&mut inst.store.data_mut().call);
        match outcome {
            Ok(Ok(Ok(returned))) => {
                inst.messages += 1;
                self.release(inst);
                let mut out = Output { sends: call.sends, ..Output::default() };
                match returned {
                    Returned::Nothing => {}
                    Returned::Targets(ts) => {
                        out.targets =
                            ts.into_iter().map(|t| Target { connector: t.connector, endpoint: t.endpoint }).collect();
                    }
                    Returned::Verdict(v) => out.verdict = Some(v),
                }
                Ok(out)
            }
            Ok(Ok(Err(reason))) => {
                // The guest returned normally: the instance is sound and may be reused.
                inst.messages += 1;
                self.release(inst);
                Err(HandlerFailure::Handler(reason))
            }
            // A trapped instance may not be re-entered: `inst` is dropped here.
            Ok(Err(trap)) => Err(self.classify(&call, &inst.store, trap)),
            Err(_elapsed) => Err(HandlerFailure::Deadline(wall)),
        }
    }

    fn classify(&self, call: &super::host::CallState, store: &Store<HostState>, trap: wasmtime::Error) -> HandlerFailure {
        if call.deadline_hit {
            HandlerFailure::Deadline(self.limits.deadline)
        } else if store.data().limiter.hit {
            HandlerFailure::Memory(self.limits.max_memory_bytes)
        } else {
            let mut reason = trap_reason(&trap);
            let said = store.data().stderr.take();
            if !said.is_empty() {
                reason.push_str("; the plugin wrote to stderr: ");
                reason.push_str(&said);
            }
            HandlerFailure::Trap(reason)
        }
    }

    fn take_idle(&self) -> Option<Instance> {
        if self.policy == InstancePolicy::Fresh {
            return None;
        }
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn release(&self, inst: Instance) {
        let InstancePolicy::Pooled { max_messages, max_age } = &self.policy else { return };
        if inst.messages >= *max_messages || inst.born.elapsed() >= *max_age {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(inst);
        }
    }

    async fn instantiate(&self) -> Result<Instance, HandlerFailure> {
        let mut store = Store::new(&self.engine.inner, HostState::new(self.ctx.clone(), self.limits.max_memory_bytes));
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|mut cx| {
            let call = &mut cx.data_mut().call;
            call.ticks += 1;
            if call.ticks >= call.deadline_ticks {
                call.deadline_hit = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                // Give the executor back every tick so a busy guest cannot starve transports.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        arm(&mut store, self.limits.deadline);
        let bound = match &self.pre {
            Loaded::App(pre) => pre.instantiate_async(&mut store).await.map(Bound::App),
            Loaded::Router(pre) => pre.instantiate_async(&mut store).await.map(Bound::Router),
            Loaded::Middleware(pre) => pre.instantiate_async(&mut store).await.map(Bound::Middleware),
        };
        let bound = bound.map_err(|e| {
            let call = &store.data().call;
            if call.deadline_hit {
                HandlerFailure::Deadline(self.limits.deadline)
            } else if store.data().limiter.hit {
                HandlerFailure::Memory(self.limits.max_memory_bytes)
            } else {
                HandlerFailure::Instantiate(format!("{e:#}"))
            }
        })?;
        store.data_mut().call = Default::default();
        self.stats.instantiated.fetch_add(1, Ordering::Relaxed);
        Ok(Instance { store, bound, messages: 0, born: Instant::now() })
    }
}

/// Reset the per-call CPU budget.
fn arm(store: &mut Store<HostState>, deadline: Duration) {
    let ticks = (deadline.as_micros() / TICK.as_micros()).max(1) as u64;
    let call = &mut store.data_mut().call;
    call.ticks = 0;
    call.deadline_ticks = ticks;
    call.deadline_hit = false;
    store.set_epoch_deadline(1);
}

fn trap_reason(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{e:#}"),
    }
}
