//! Plugins: WebAssembly components run in wasmtime, sandboxed per message.
//!
//! This is the only module that uses wasmtime. It turns a `.wasm` file into a [`Plugin`] that
//! handles one message at a time and **returns** what the handler sent, so the caller (a worker)
//! decides what gets published: a failed handler has sent nothing, by construction. Plugins hold no
//! bus handle.
//!
//! - `engine.rs`: the one wasmtime `Engine` (pooling allocator, epoch ticker, limits);
//! - `bindings.rs`: the one `bindgen!`, private;
//! - `host/`: one file per WIT import (`outbound`, `kv`, `config`, `log`);
//! - `convert.rs`: host messages ⇄ WIT records;
//! - `loader.rs`: read, compile, check the world;
//! - `cache.rs`: compiled components on disk, keyed by content and engine, checksummed;
//! - `app.rs`: one version of a plugin (application, router or middleware) with its instance
//!   policy (`fresh` or `pooled`);
//! - `registry.rs`: plugins by name, each in a slot whose version swaps atomically;
//! - `watcher.rs`: reloads a slot when its file changes.

mod app;
mod bindings;
mod cache;
mod convert;
mod engine;
mod host;
mod loader;
mod registry;
mod watcher;

pub use app::{AppLimits, AppSettings, Direction, HandlerFailure, InstancePolicy, Plugin, PluginStats, Target, Verdict, Version};
pub use cache::CacheOutcome;
pub use engine::{Engine, EngineSettings};
pub use loader::{LoadError, World};
pub use registry::{PluginSlot, Registry, Rejection, ReloadOutcome, normalize as normalize_path};
pub use watcher::{WatchError, Watcher};
