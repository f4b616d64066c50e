//! The wasmtime engine every plugin shares, and the ticker that gives CPU deadlines meaning.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, Enabled, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use super::cache::ComponentCache;
use super::loader::LoadError;

/// How often the epoch advances. A handler's CPU deadline is counted in these ticks, so this is
/// the deadline's resolution; 1 ms costs one atomic increment per millisecond.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// Bytes of each linear memory reset in place (not returned to the kernel) when a slot is freed.
const KEEP_RESIDENT: usize = 2 << 20;

/// Engine-wide settings, taken from the host config.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// The largest memory any plugin may be given: the pooling allocator's slot size.
    pub max_memory_bytes: usize,
    /// How many component instances may be live at once across all plugins.
    pub max_instances: u32,
    /// How many calls may be in a guest at once across all plugins (each runs on a stack from
    /// the pool; every pooled stack costs two memory mappings for as long as the host runs).
    pub max_stacks: u32,
    /// Where compiled components are cached across restarts (`None`: compile every time).
    pub cache_dir: Option<std::path::PathBuf>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self { max_memory_bytes: 256 << 20, max_instances: 1000, max_stacks: 1000, cache_dir: None }
    }
}

/// A shared wasmtime engine with its epoch ticker. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: wasmtime::Engine,
    pub(crate) cache: Option<ComponentCache>,
    /// Components loaded in this process, by content hash, while any plugin holds them: the
    /// same bytes loaded for many plugins (every tenant running the stock echo) share one
    /// compiled copy, its code mapped once. Without it, each copy cost its own code pages and
    /// memory mappings, and 10,000 tenants ran out of `vm.max_map_count` (BENCHMARKS.md).
    pub(crate) loaded: Arc<
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<wasmtime::component::Component>>>,
    >,
    /// Who finished quick calls lately: long calls of other tenants give way to them.
    pub(crate) quick: Arc<super::fair::QuickCalls>,
    _ticker: Arc<Ticker>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Engine {
    /// Build the engine: component model (async is always on in wasmtime 48: `kv` awaits a store),
    /// epoch interruption (a tight guest loop cannot be stopped by a tokio timeout), and the
    /// pooling allocator (instantiation from pre-reserved slots is what makes a fresh instance
    /// per message affordable).
    pub fn new(settings: &EngineSettings) -> Result<Self, LoadError> {
        let mut pool = PoolingAllocationConfig::new();
        pool.max_memory_size(settings.max_memory_bytes)
            .total_component_instances(settings.max_instances)
            .total_core_instances(settings.max_instances.saturating_mul(2))
            .total_memories(settings.max_instances)
            .total_tables(settings.max_instances.saturating_mul(2))
            .total_stacks(settings.max_stacks.min(settings.max_instances))
            // A fresh instance per message makes slot reset the hot path. By default wasmtime
            // gives a slot's pages back with madvise and faults them in again on reuse (most of
            // the fresh path's time was system time). Instead, reset in place with memset,
            // scanning for the pages actually touched where the kernel can (PAGEMAP_SCAN, Linux
            // 6.7+). A Rust component touches ~1 MiB of stack and heap per message.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(128 << 10);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let inner = wasmtime::Engine::new(&config).map_err(|e| LoadError::Engine(format!("{e:#}")))?;

        let cache = match &settings.cache_dir {
            Some(dir) => Some(ComponentCache::new(dir, &inner).map_err(|e| {
                LoadError::Engine(format!(
                    "cannot use `{}` as the compiled-component cache: {e}",
                    dir.display()
                ))
            })?),
            None => None,
        };

        let stop = Arc::new(AtomicBool::new(false));
        let engine = inner.clone();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("vumi-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| LoadError::Engine(format!("cannot start the epoch ticker thread: {e}")))?;
        Ok(Self {
            inner,
            cache,
            loaded: Arc::default(),
            quick: Arc::new(super::fair::QuickCalls::new()),
            _ticker: Arc::new(Ticker { stop }),
        })
    }
}
