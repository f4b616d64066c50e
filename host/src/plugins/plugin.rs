//! The plugin core: one compiled component of one world, its instance policy, and the
//! per-message call, whatever the world. Everything world-specific (bindings, exports, what a
//! call takes and returns) is a [`Face`]; the three faces are `app.rs`, `router.rs` and
//! `middleware.rs`. So a wrong world is a load error, and calling a router as an app is a type
//! error, not a run-time one.
//!
//! Failures are classified here and only here ([`HandlerFailure`]).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;
use wasmtime::component::{InstancePre, Linker};
use wasmtime::{Store, UpdateDeadline};

use super::bindings::types::HandlerError;
use super::cache::CacheOutcome;
use super::engine::{Engine, TICK};
use super::imports::{HostState, PluginContext};
use super::loader::{self, Compiled, LoadError, World};
use crate::message::UserMessage;
use crate::state::Namespaced;
use crate::telemetry::metrics::metrics;

/// One world's side of the core: its bindings, and how a message is handed to its exports.
pub trait Face: Send + Sync + Sized + 'static {
    /// The world, for errors and the admin API.
    const WORLD: World;
    /// Linked and export-checked, ready to instantiate.
    type Pre: Send + Sync + 'static;
    /// A live instance's exports.
    type Bound: Send + Sync + 'static;
    /// What one call takes.
    type Input: Send;
    /// What one call returns when the guest returns `ok`.
    type Output: Send;

    /// Add the world's imports (WASI is already there).
    #[doc(hidden)]
    fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()>;
    /// Check the component's exports against the world.
    #[doc(hidden)]
    fn pre(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre>;
    /// Start an instance.
    #[doc(hidden)]
    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<HostState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Bound>> + Send;
    /// Lend the input to the guest (as resource handles), call the export, take the handles
    /// back. The outer error is a trap; the inner one is the guest's own answer.
    #[doc(hidden)]
    fn call(
        bound: &Self::Bound,
        store: &mut Store<HostState>,
        input: Self::Input,
    ) -> impl Future<Output = wasmtime::Result<Result<Self::Output, HandlerError>>> + Send;

    /// The id of the message a call answers, from which the ids of what it sends are derived
    /// (`message::derived_id`); `None`: the face sends nothing of its own.
    fn parent_id(_input: &Self::Input) -> Option<String> {
        None
    }
}

/// How instances of a plugin are used. See `../shared/design.md`, "Instances": a fresh instance
/// per message is the strongest isolation (~25 µs), a pooled instance is ~10x cheaper and still
/// never shared across plugins or versions, and is dropped after any trap.
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
pub struct Limits {
    /// CPU time the guest may run per message (counted in epoch ticks of 1 ms).
    pub deadline: Duration,
    /// Linear memory an instance may grow to.
    pub max_memory_bytes: usize,
    /// Messages one handler call may send (0 for routers and middleware: they do not send).
    pub max_sends: u32,
    /// The largest value one `kv` key may hold (its tenant's `kv_max_value_bytes`).
    pub kv_max_value_bytes: usize,
    /// The tenant's buckets, whose CPU budget every tick of guest time draws on (`None`: the
    /// operator's plugin, bounded by its deadline only).
    pub tenant: Option<Arc<crate::tenants::Rates>>,
    /// Where and how much it may call over HTTP (applications only; `None`: no calls).
    pub http: Option<Arc<crate::egress::HttpGrant>>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(500),
            max_memory_bytes: 64 << 20,
            max_sends: 16,
            kv_max_value_bytes: 1 << 20,
            tenant: None,
            http: None,
        }
    }
}

impl Limits {
    /// The wall-clock bound of one call. The CPU deadline (epochs) stops a guest that computes;
    /// this stops one that waits: a host import that hangs (a networked kv), or a guest
    /// sleeping in WASI, which burns no epochs. A plugin that may call over HTTP gets each
    /// call's timeout on top.
    pub fn wall_clock(&self) -> Duration {
        self.deadline * 10
            + Duration::from_secs(1)
            + self.http.as_ref().map_or(Duration::ZERO, |g| g.wall_clock_allowance())
    }
}

/// Everything needed to load one plugin.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The plugin's name, for logs, failures and metrics.
    pub name: String,
    /// Instance policy.
    pub policy: InstancePolicy,
    /// Per-call limits.
    pub limits: Limits,
    /// The plugin's view of the state store.
    pub kv: Namespaced,
    /// The plugin's own config table, as JSON.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Endpoints `send-to` may name (applications only).
    pub endpoints: Vec<String>,
}

/// Why a call produced nothing to publish. [`HandlerFailure::kind`] is the label used in logs,
/// metrics and the failure record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HandlerFailure {
    /// The handler returned `reject(reason)`.
    #[error("handler returned an error: {0}")]
    Rejected(String),
    /// The handler returned `retry-later(reason)`: the caller retries with a backoff.
    #[error("handler asked to retry later: {0}")]
    RetryLater(String),
    /// The guest trapped (a panic, `unreachable`, an out-of-bounds access).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The guest ran past its CPU deadline.
    #[error("plugin ran past its CPU deadline of {} ms", .0.as_millis())]
    Deadline(Duration),
    /// The call took longer than its wall-clock bound (the guest, or an import it called, was
    /// waiting rather than computing).
    #[error("plugin call took longer than its wall-clock bound of {} ms", .0.as_millis())]
    WallClock(Duration),
    /// The guest tried to grow its memory past its cap.
    #[error("plugin went over its memory cap of {} MiB", .0 >> 20)]
    Memory(usize),
    /// A fresh instance could not be made (e.g. the instance pool is exhausted).
    #[error("plugin could not be instantiated: {0}")]
    Instantiate(String),
}

impl HandlerFailure {
    /// A short machine label: `handler_error`, `retry_later`, `trap`, `deadline`, `wall_clock`,
    /// `memory`, `instantiate`.
    pub fn kind(&self) -> &'static str {
        match self {
            HandlerFailure::Rejected(_) => "handler_error",
            HandlerFailure::RetryLater(_) => "retry_later",
            HandlerFailure::Trap(_) => "trap",
            HandlerFailure::Deadline(_) => "deadline",
            HandlerFailure::WallClock(_) => "wall_clock",
            HandlerFailure::Memory(_) => "memory",
            HandlerFailure::Instantiate(_) => "instantiate",
        }
    }

    /// Whether the same message may succeed later (the caller retries it with a backoff).
    pub fn is_retryable(&self) -> bool {
        matches!(self, HandlerFailure::RetryLater(_))
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

struct Instance<F: Face> {
    store: Store<HostState>,
    bound: F::Bound,
    messages: u32,
    born: Instant,
}

/// Idle instances kept per plugin; more concurrent calls than this instantiate and then drop.
const MAX_IDLE: usize = 32;

/// One version of a loaded plugin of world `F`. Shared by everything that calls it (an app's
/// lanes, a dispatcher, a chain); a reload makes a new `Plugin` beside it (see
/// [`super::PluginSlot`]).
pub struct Plugin<F: Face> {
    name: String,
    engine: Engine,
    pre: F::Pre,
    /// Held while this version runs, so later loads of the same bytes share it.
    _component: Arc<wasmtime::component::Component>,
    path: PathBuf,
    version: Version,
    ctx: Arc<PluginContext>,
    policy: InstancePolicy,
    limits: Limits,
    idle: Mutex<Vec<Instance<F>>>,
    /// Shared by every version of the plugin: an operator counts the plugin, not the version.
    stats: Arc<PluginStats>,
    latency: Histogram,
}

impl<F: Face> std::fmt::Debug for Plugin<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("world", &F::WORLD)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// What a version of a plugin is made from, besides its component.
struct Parts {
    name: String,
    engine: Engine,
    path: PathBuf,
    ctx: Arc<PluginContext>,
    policy: InstancePolicy,
    limits: Limits,
    stats: Arc<PluginStats>,
}

impl<F: Face> Plugin<F> {
    /// Load, compile and check `path` against `F`'s world, then make one instance to prove it
    /// starts (a component that traps while starting is refused here, not on the first user's
    /// message).
    pub async fn load(engine: &Engine, path: &Path, settings: Settings) -> Result<Self, LoadError> {
        let started = Instant::now();
        let compiled = loader::load::<F>(engine, path).await?;
        let ctx = Arc::new(PluginContext {
            plugin: settings.name.clone(),
            kv: settings.kv,
            config_json: serde_json::Value::Object(settings.config.clone()).to_string(),
            config: settings.config,
            endpoints: settings.endpoints,
            max_sends: settings.limits.max_sends,
            kv_max_value: settings.limits.kv_max_value_bytes,
            http: settings.limits.http.clone(),
        });
        let parts = Parts {
            name: settings.name,
            engine: engine.clone(),
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
    /// swaps the result in. Fails as [`Plugin::load`] does. With `at`, the new version runs
    /// from that file (a deployed version, stored once it has proved sound).
    pub async fn new_version(&self, bytes: Option<Vec<u8>>, at: Option<&Path>) -> Result<Self, LoadError> {
        let started = Instant::now();
        let path = at.unwrap_or(&self.path).to_owned();
        let compiled = match bytes {
            Some(b) => loader::load_bytes::<F>(&self.engine, &path, b).await?,
            None => loader::load::<F>(&self.engine, &path).await?,
        };
        let parts = Parts {
            name: self.name.clone(),
            engine: self.engine.clone(),
            path,
            ctx: self.ctx.clone(),
            policy: self.policy.clone(),
            limits: self.limits.clone(),
            stats: self.stats.clone(),
        };
        Self::start(parts, compiled, started).await
    }

    async fn start(p: Parts, compiled: Compiled<F>, started: Instant) -> Result<Self, LoadError> {
        let mut plugin = Self {
            latency: metrics().handler_seconds(&p.name),
            name: p.name,
            engine: p.engine,
            pre: compiled.pre,
            _component: compiled.component,
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
        let first = plugin
            .instantiate()
            .await
            .map_err(|e| LoadError::Start { path: plugin.path.clone(), reason: e.to_string() })?;
        plugin.release(first);
        plugin.version.load_time = started.elapsed();
        Ok(plugin)
    }

    /// The world it was built for.
    pub fn world(&self) -> World {
        F::WORLD
    }

    /// The file it was loaded from (and is reloaded from).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Which version this is.
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counters for operators.
    pub fn stats(&self) -> &PluginStats {
        &self.stats
    }

    /// Run one call: an instance (pooled or fresh), the CPU deadline and the wall-clock bound
    /// armed, the export called, and the outcome counted. Returns the face's output and what
    /// the handler sent, in order.
    pub(crate) async fn call(
        &self,
        input: F::Input,
    ) -> Result<(F::Output, Vec<UserMessage>), HandlerFailure> {
        let started = Instant::now();
        let result = self.call_inner(input).await;
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

    async fn call_inner(&self, input: F::Input) -> Result<(F::Output, Vec<UserMessage>), HandlerFailure> {
        let mut inst = match self.take_idle() {
            Some(i) => i,
            None => self.instantiate().await?,
        };
        arm(&mut inst.store, self.limits.deadline);
        // Only this call's stderr may explain this call's trap.
        inst.store.data().stderr.take();

        inst.store.data_mut().call.parent = F::parent_id(&input);
        let wall = self.limits.wall_clock();
        let outcome = tokio::time::timeout(wall, F::call(&inst.bound, &mut inst.store, input)).await;
        if inst.store.data().call.ticks < super::fair::LONG_CALL {
            self.engine.quick.ended(tenant_key(&self.limits.tenant));
        }
        let sends = std::mem::take(&mut inst.store.data_mut().call.sends);
        match outcome {
            Ok(Ok(answer)) => {
                // The guest returned normally: the instance is sound and may be reused.
                inst.messages += 1;
                self.release(inst);
                match answer {
                    Ok(out) => Ok((out, sends)),
                    Err(HandlerError::Reject(reason)) => Err(HandlerFailure::Rejected(reason)),
                    Err(HandlerError::RetryLater(reason)) => Err(HandlerFailure::RetryLater(reason)),
                }
            }
            // A trapped instance may not be re-entered: `inst` is dropped here.
            Ok(Err(trap)) => Err(self.classify(&inst.store, trap)),
            // Stopped mid-call: the instance's state is unknown, so it is dropped too.
            Err(_elapsed) => Err(HandlerFailure::WallClock(wall)),
        }
    }

    /// Why a call or a start trapped.
    fn classify(&self, store: &Store<HostState>, trap: wasmtime::Error) -> HandlerFailure {
        if store.data().call.deadline_hit {
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

    fn take_idle(&self) -> Option<Instance<F>> {
        if self.policy == InstancePolicy::Fresh {
            return None;
        }
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn release(&self, inst: Instance<F>) {
        let InstancePolicy::Pooled { max_messages, max_age } = &self.policy else { return };
        if inst.messages >= *max_messages || inst.born.elapsed() >= *max_age {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(inst);
        }
    }

    async fn instantiate(&self) -> Result<Instance<F>, HandlerFailure> {
        let mut store =
            Store::new(&self.engine.inner, HostState::new(self.ctx.clone(), self.limits.max_memory_bytes));
        store.limiter(|s| &mut s.limiter);
        let tenant = self.limits.tenant.clone();
        let (quick, me) = (self.engine.quick.clone(), tenant_key(&tenant));
        store.epoch_deadline_callback(move |mut cx| {
            let call = &mut cx.data_mut().call;
            call.ticks += 1;
            if call.ticks >= call.deadline_ticks {
                call.deadline_hit = true;
                Ok(UpdateDeadline::Interrupt)
            } else if let Some(wait) = tenant.as_ref().and_then(|t| t.cpu_tick()) {
                // Over its tenant's CPU budget: park until it refills (not counted as CPU time).
                Ok(UpdateDeadline::YieldCustom(1, wait))
            } else if let Some(wait) = tenant
                .as_ref()
                .filter(|_| call.ticks >= super::fair::LONG_CALL && quick.others_busy(me))
                .and_then(|t| t.background_tick())
            {
                // A long call while others' quick calls are served: it shares the tenant's
                // background budget, parked between slices (see `fair`).
                Ok(UpdateDeadline::YieldCustom(1, wait))
            } else {
                // Give the executor back every tick so a busy guest cannot starve transports.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        arm(&mut store, self.limits.deadline);
        let wall = self.limits.wall_clock();
        let bound = match tokio::time::timeout(wall, F::instantiate(&self.pre, &mut store)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                return Err(match self.classify(&store, e) {
                    HandlerFailure::Trap(reason) => HandlerFailure::Instantiate(reason),
                    other => other,
                });
            }
            Err(_elapsed) => return Err(HandlerFailure::WallClock(wall)),
        };
        store.data_mut().call = Default::default();
        self.stats.instantiated.fetch_add(1, Ordering::Relaxed);
        Ok(Instance { store, bound, messages: 0, born: Instant::now() })
    }
}

/// How [`super::fair::QuickCalls`] names a tenant: its buckets' address; 0 for the operator.
fn tenant_key(tenant: &Option<Arc<crate::tenants::Rates>>) -> usize {
    tenant.as_ref().map_or(0, |t| Arc::as_ptr(t) as usize)
}

/// Reset the per-call CPU budget and HTTP call count.
fn arm(store: &mut Store<HostState>, deadline: Duration) {
    let ticks = (deadline.as_micros() / TICK.as_micros()).max(1) as u64;
    let call = &mut store.data_mut().call;
    call.ticks = 0;
    call.http_calls = 0;
    call.deadline_ticks = ticks;
    call.deadline_hit = false;
    store.set_epoch_deadline(1);
}

fn trap_reason(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        // Compiled languages keep their stack in linear memory, below the data: recursing too
        // deep runs the stack pointer off the bottom of memory before wasm's own call stack is
        // exhausted, which reads as an anonymous out-of-bounds access. Say the likely cause.
        Some(trap @ wasmtime::Trap::MemoryOutOfBounds) => {
            format!(
                "{trap} (in a Rust, C or Go component most likely its stack overflowing: recursion too deep)"
            )
        }
        Some(trap @ wasmtime::Trap::StackOverflow) => format!("{trap} (recursion too deep)"),
        Some(trap) => trap.to_string(),
        None => format!("{e:#}"),
    }
}
