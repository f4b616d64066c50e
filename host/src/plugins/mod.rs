//! Plugins: WebAssembly components run in wasmtime, sandboxed per message.
//!
//! This is the only module that uses wasmtime. It turns a `.wasm` file into a [`Plugin`] that
//! handles one message at a time and **returns** what the handler sent, so the caller (a worker)
//! decides what gets published: a failed handler has sent nothing, by construction. Plugins hold no
//! bus handle.
//!
//! - `engine.rs`: the one wasmtime `Engine` (pooling allocator, epoch ticker, limits);
//! - `bindings.rs`: the one `bindgen!`, private;
//! - `imports/`: one file per WIT import (`message` with `edit`, `outbound`, `kv`, `config`, `log`);
//! - `loader.rs`: read, compile, check the world;
//! - `cache.rs`: compiled components on disk, keyed by content and engine, checksummed;
//! - `plugin.rs`: the core: one version of a plugin of any world, its instance policy (`fresh` or
//!   `pooled`), limits, and the call with its failure classification;
//! - `fair.rs`: fair CPU between tenants by default: a tenant's long calls give way to other
//!   tenants' quick ones;
//! - `app.rs`, `router.rs`, `middleware.rs`: the three typed faces, one per world, each owning
//!   its world's bindings and calls;
//! - `registry.rs`: plugins by name, each in a slot whose version swaps atomically;
//! - `versions.rs`: deployed and uploaded versions, stored content-addressed in their owner's
//!   directory (a deploy never writes a file anything else loads), and the record that keeps a
//!   deploy across a restart;
//! - `watcher.rs`: reloads a slot when its file changes.

mod app;
mod bindings;
mod cache;
mod engine;
mod fair;
mod imports;
mod loader;
mod middleware;
mod plugin;
mod registry;
mod router;
pub mod versions;
mod watcher;

pub use app::{AppPlugin, AppWorld};
pub use cache::CacheOutcome;
pub use engine::{Engine, EngineSettings};
pub use loader::{LoadError, World, world_of};
pub use middleware::{Direction, MiddlewarePlugin, MiddlewareWorld, Verdict};
pub use plugin::{Face, HandlerFailure, InstancePolicy, Limits, Plugin, PluginStats, Settings, Version};
pub use registry::{
    AnySlot, PluginSlot, Registry, Rejection, ReloadOutcome, SlotInfo, normalize as normalize_path,
};
pub use router::{RouterPlugin, RouterWorld, Target};

/// The slot of an application.
pub type AppSlot = PluginSlot<AppWorld>;
/// The slot of a router.
pub type RouterSlot = PluginSlot<RouterWorld>;
/// The slot of a middleware.
pub type MiddlewareSlot = PluginSlot<MiddlewareWorld>;
pub use watcher::{WatchError, Watcher};
