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
//! - `app.rs`: a plugin (application, router or middleware) with its instance policy (`fresh` or
//!   `pooled`).

mod app;
mod bindings;
mod convert;
mod engine;
mod host;
mod loader;

pub use app::{AppLimits, AppSettings, Direction, HandlerFailure, InstancePolicy, Plugin, PluginStats, Target, Verdict};
pub use engine::{Engine, EngineSettings};
pub use loader::{LoadError, World};
