//! From a file on disk to a compiled, world-checked component ready to instantiate.

use std::path::{Path, PathBuf};

use wasmtime::component::{Component, Linker};

use super::cache::{CacheOutcome, content_hash};
use super::engine::Engine;
use super::imports::HostState;
use super::plugin::Face;

/// The worlds of `wit/` a plugin can be built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// `vumi:plugin/application`: a campaign app.
    Application,
    /// `vumi:plugin/router`: a dispatch rule.
    Router,
    /// `vumi:plugin/middleware`: a step in a connector's chain.
    Middleware,
}

/// The contract's version (`wit/worlds.wit`: `package vumi:plugin@<this>`): the one place the
/// host names it.
pub const CONTRACT_VERSION: &str = "0.2.1";

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let world = match self {
            World::Application => "application",
            World::Router => "router",
            World::Middleware => "middleware",
        };
        write!(f, "vumi:plugin/{world}@{CONTRACT_VERSION}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_named_here_is_the_contracts() {
        let worlds = include_str!("../../../wit/worlds.wit");
        let declared = format!("package vumi:plugin@{};", super::CONTRACT_VERSION);
        assert!(worlds.contains(&declared), "wit/worlds.wit does not declare `{declared}`");
        let sdk = include_str!("../../../sdk/macro/src/lib.rs");
        let named = format!("const VERSION: &str = \"{}\";", super::CONTRACT_VERSION);
        assert!(sdk.contains(&named), "the SDK's macro crate names another version than `{named}`");
    }
}

/// Why a plugin could not be loaded. Each names the file, and none is fixed by retrying with the
/// same file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The engine itself could not be set up (a host problem, not the plugin's).
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
    /// The file could not be read.
    #[error("cannot read plugin `{path}`: {source}")]
    Read {
        /// The plugin file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A deployed version could not be stored.
    #[error("cannot write plugin `{path}`: {source}")]
    Write {
        /// The plugin file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a WebAssembly component (corrupt, truncated, or a core module).
    #[error(
        "`{path}` is not a valid WebAssembly component: {reason} (build plugins for the wasm32-wasip2 target, e.g. `vumi plugin build`)"
    )]
    Invalid {
        /// The plugin file.
        path: PathBuf,
        /// What wasmtime said.
        reason: String,
    },
    /// A valid component that does not fit the world it is configured as.
    #[error("`{path}` is not a {world} component: {reason}")]
    WrongWorld {
        /// The plugin file.
        path: PathBuf,
        /// The world it should have been built for.
        world: World,
        /// What does not match (a missing export, an unknown import).
        reason: String,
    },
    /// A component of the right world that fails while starting (its start function traps,
    /// or runs out of time or memory before the first message).
    #[error("`{path}` fails to start: {reason}")]
    Start {
        /// The plugin file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// One version of a plugin file: compiled, linked and checked against its face's world.
pub(crate) struct Compiled<F: Face> {
    /// Ready to instantiate.
    pub pre: F::Pre,
    /// SHA-256 of the file's bytes.
    pub hash: String,
    /// The file's size.
    pub size: usize,
    /// Whether the compiled-component cache served it.
    pub cache: CacheOutcome,
    /// The compiled component, held so that others loading the same bytes share it.
    pub component: std::sync::Arc<Component>,
}

/// Read `path` and compile it as a component of `F`'s world.
pub(crate) async fn load<F: Face>(engine: &Engine, path: &Path) -> Result<Compiled<F>, LoadError> {
    let bytes =
        tokio::fs::read(path).await.map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
    load_bytes::<F>(engine, path, bytes).await
}

/// Compile `bytes` (the contents of `path`, or what an operator uploaded for it) as a component
/// of `F`'s world. Compilation is CPU-heavy (cranelift), so it runs on the blocking pool, off the
/// message path; the compiled-component cache, if configured, is consulted first.
pub(crate) async fn load_bytes<F: Face>(
    engine: &Engine,
    path: &Path,
    bytes: Vec<u8>,
) -> Result<Compiled<F>, LoadError> {
    let engine = engine.clone();
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let hash = content_hash(&bytes);
        let shared = engine
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash)
            .and_then(std::sync::Weak::upgrade);
        let (component, cache) = match shared {
            Some(c) => (c, CacheOutcome::Shared),
            None => {
                let compile = || Component::from_binary(&engine.inner, &bytes);
                let (component, cache) = match &engine.cache {
                    Some(c) => c.get_or_compile(&engine.inner, &hash, compile),
                    None => compile().map(|c| (c, CacheOutcome::Compiled)),
                }
                // wasmparser's messages span lines (byte arrays); one line reads better in logs and UIs.
                .map_err(|e| LoadError::Invalid {
                    path: path.clone(),
                    reason: one_line(&format!("{e:#}")),
                })?;
                let component = std::sync::Arc::new(component);
                let mut loaded = engine.loaded.lock().unwrap_or_else(|p| p.into_inner());
                loaded.retain(|_, w| w.strong_count() > 0);
                loaded.insert(hash.clone(), std::sync::Arc::downgrade(&component));
                (component, cache)
            }
        };
        let pre = link::<F>(&engine, &path, &component)?;
        Ok(Compiled { pre, hash, size: bytes.len(), cache, component })
    })
    .await
    .map_err(|e| LoadError::Engine(format!("compile task failed: {e}")))?
}

/// Which world `bytes` are a component of, compiled as a load would compile them (and so
/// cached for it): an upload is checked before it is stored, though what it will run as is
/// decided only when an app names it.
pub async fn world_of(engine: &Engine, path: &Path, bytes: Vec<u8>) -> Result<World, LoadError> {
    use super::{AppWorld, MiddlewareWorld, RouterWorld};
    let first = match load_bytes::<AppWorld>(engine, path, bytes.clone()).await {
        Ok(_) => return Ok(World::Application),
        Err(LoadError::WrongWorld { reason, .. }) => reason,
        Err(e) => return Err(e),
    };
    if load_bytes::<RouterWorld>(engine, path, bytes.clone()).await.is_ok() {
        return Ok(World::Router);
    }
    if load_bytes::<MiddlewareWorld>(engine, path, bytes).await.is_ok() {
        return Ok(World::Middleware);
    }
    Err(LoadError::WrongWorld {
        path: path.to_owned(),
        world: World::Application,
        reason: format!("{first} (nor is it a router or middleware component)"),
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn link<F: Face>(engine: &Engine, path: &Path, component: &Component) -> Result<F::Pre, LoadError> {
    let mut linker: Linker<HostState> = Linker::new(&engine.inner);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .and_then(|()| F::add_to_linker(&mut linker))
        .map_err(|e| LoadError::Engine(format!("{e:#}")))?;
    let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
        path: path.to_owned(),
        world: F::WORLD,
        reason: one_line(&format!("{e:#}")),
    };
    // Fails on imports we do not provide (another world's, or a WASI we do not grant)...
    let instance_pre = linker.instantiate_pre(component).map_err(wrong_world)?;
    // ...and this on missing or mistyped exports.
    F::pre(instance_pre).map_err(wrong_world)
}
