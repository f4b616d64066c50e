//! What a plugin instance's store holds, and the WIT imports implemented over it (one file per
//! interface).

mod config;
mod http;
mod kv;
mod log;
pub(crate) mod message;
mod outbound;
mod stderr;

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::message::UserMessage;
use crate::state::Namespaced;

/// Per-plugin facts the imports need, shared by all instances of one plugin version.
pub(crate) struct PluginContext {
    pub plugin: String,
    pub kv: Namespaced,
    pub config: serde_json::Map<String, serde_json::Value>,
    /// `config` as JSON text, made once: `get-json` is called on every message by most plugins.
    pub config_json: String,
    pub endpoints: Vec<String>,
    pub max_sends: u32,
    /// The largest `kv` value (the tenant's limit; 1 MiB for the operator's plugins).
    pub kv_max_value: usize,
    /// Where and how much the plugin may call over HTTP (`None`: a world without `http`).
    pub http: Option<Arc<crate::egress::HttpGrant>>,
}

/// The state of one call: what the handler has sent so far, and its CPU budget.
#[derive(Default)]
pub(crate) struct CallState {
    pub sends: Vec<UserMessage>,
    /// The id of the message being handled: sends get ids derived from it.
    pub parent: Option<String>,
    /// Epoch ticks the guest has run past in this call.
    pub ticks: u64,
    pub deadline_ticks: u64,
    pub deadline_hit: bool,
    /// `http` calls made in this call.
    pub http_calls: u32,
}

/// The data of one wasmtime `Store`: WASI (with nothing granted), limits, and the call. Public
/// only because [`super::Face`] names it; nothing outside `plugins` can make or read one.
pub struct HostState {
    wasi: WasiCtx,
    /// The end of what the guest wrote to stderr, for trap reasons.
    pub(crate) stderr: stderr::StderrTail,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) ctx: Arc<PluginContext>,
    pub(crate) call: CallState,
}

impl HostState {
    pub(crate) fn new(ctx: Arc<PluginContext>, max_memory_bytes: usize) -> Self {
        // WASI with no preopened directories, no environment, no arguments, no sockets, stdin
        // and stdout closed, and stderr kept only as a bounded tail: everything a plugin may
        // touch is one of our imports.
        let stderr = stderr::StderrTail::default();
        let wasi = wasmtime_wasi::WasiCtxBuilder::new().stderr(stderr.clone()).build();
        Self {
            wasi,
            stderr,
            table: ResourceTable::new(),
            limiter: MemoryLimiter { max_memory_bytes, hit: false },
            ctx,
            call: CallState::default(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Caps linear memory per instance and remembers whether the cap was hit, so that the trap a
/// guest raises when its allocator fails can be reported as "over its memory cap" rather than as
/// an anonymous `unreachable`.
pub(crate) struct MemoryLimiter {
    pub max_memory_bytes: usize,
    pub hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a legitimate plugin needs a few thousand at most.
        Ok(desired <= 100_000)
    }
}

impl super::bindings::types::Host for HostState {}
