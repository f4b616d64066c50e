//! Live plugins by name, each in a slot whose version can be swapped while messages flow.
//!
//! A worker takes the slot's current version **per message** ([`PluginSlot::current`] is one
//! atomic load) and holds that `Arc` until the message is done. A swap replaces what later
//! messages get; a message already in a handler finishes on the version it started with, which
//! is dropped when its last message is done. So a swap neither loses nor repeats a message: each
//! is handled exactly once, by one version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwap;

use async_trait::async_trait;

use super::cache::content_hash;
use super::loader::{LoadError, World};
use super::plugin::{Face, Plugin, Version};
use crate::message::Timestamp;
pub use crate::status::Rejection;
use crate::telemetry::metrics::metrics;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new version now serves.
    Swapped {
        /// The previous version's content hash.
        from: String,
        /// The new version's content hash.
        to: String,
    },
    /// The file holds the version already serving (a touch, a copy of the same bytes, or the
    /// host's own deploy seen again by the watcher): nothing to do.
    Unchanged,
}

#[derive(Debug, Default)]
struct History {
    reloads: u64,
    rejected: Option<Rejection>,
    file_missing: bool,
}

/// One named plugin of world `F`: the version serving now, and what happened to the latest
/// attempt to replace it.
pub struct PluginSlot<F: Face> {
    name: String,
    /// The file the config names (a deploy repoints the slot to a stored version instead).
    configured: PathBuf,
    current: ArcSwap<Plugin<F>>,
    /// One reload at a time: two concurrent ones could swap in the older of two files last.
    reloading: tokio::sync::Mutex<()>,
    history: Mutex<History>,
}

impl<F: Face> std::fmt::Debug for PluginSlot<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSlot").field("plugin", &self.name).finish_non_exhaustive()
    }
}

impl<F: Face> PluginSlot<F> {
    /// A slot serving `plugin`, loaded from the file the config names.
    pub fn new(plugin: Plugin<F>) -> Self {
        let configured = plugin.path().to_owned();
        Self::configured_as(plugin, configured)
    }

    /// A slot serving `plugin`, whose config names `configured` (`plugin` may run a deployed
    /// version instead).
    pub fn configured_as(plugin: Plugin<F>, configured: PathBuf) -> Self {
        Self {
            name: plugin.name().to_owned(),
            configured,
            current: ArcSwap::from_pointee(plugin),
            reloading: tokio::sync::Mutex::new(()),
            history: Mutex::default(),
        }
    }

    /// The version serving now. Hold it for one message, not longer: a held version outlives a
    /// swap.
    pub fn current(&self) -> Arc<Plugin<F>> {
        self.current.load_full()
    }

    /// The plugin's name (the same for every version).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reload from the plugin's file. A file that cannot be read, is not a valid component of
    /// the plugin's world, or traps while starting leaves the running version serving; the
    /// reason is returned, logged, and kept for the admin API.
    pub async fn reload(&self) -> Result<ReloadOutcome, LoadError> {
        let _one = self.reloading.lock().await;
        let path = self.current().path().to_owned();
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(source) => return Err(self.rejected(LoadError::Read { path, source })),
        };
        self.history().file_missing = false;
        Ok(match self.candidate(bytes, None).await? {
            Some(next) => self.swap(next),
            None => self.unchanged(),
        })
    }

    /// Validate `bytes` as a new version and, if sound, store them content-addressed in `dir`
    /// (inside the owner's directory `root`) and swap them in: the slot then runs the stored
    /// file. Nothing else is written, so no other component loading the file this one ran
    /// before sees a change (see [`super::versions`]). Invalid bytes change nothing, on disk or
    /// in memory.
    pub async fn deploy(&self, bytes: Vec<u8>, root: &Path, dir: &Path) -> Result<ReloadOutcome, LoadError> {
        let _one = self.reloading.lock().await;
        let stem = crate::names::local(&self.name).to_owned();
        let at = super::versions::stored_path(dir, &stem, &bytes);
        let Some(next) = self.candidate(bytes.clone(), Some(&at)).await? else {
            return Ok(self.unchanged());
        };
        let (root, dir) = (root.to_owned(), dir.to_owned());
        let stored =
            tokio::task::spawn_blocking(move || super::versions::store(&root, &dir, &stem, &bytes)).await;
        match stored {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let source = std::io::Error::other(e.to_string());
                return Err(self.rejected(LoadError::Write { path: at, source }));
            }
            Err(e) => return Err(self.rejected(LoadError::Engine(format!("store task failed: {e}")))),
        }
        self.history().file_missing = false;
        Ok(self.swap(next))
    }

    /// The file the config names for this plugin.
    pub fn configured(&self) -> &Path {
        &self.configured
    }

    /// A new version from `bytes`, loaded and started beside the running one (from `at`, or
    /// the running version's file); `None` if `bytes` are the running version. A rejection is
    /// recorded before it is returned.
    async fn candidate(&self, bytes: Vec<u8>, at: Option<&Path>) -> Result<Option<Plugin<F>>, LoadError> {
        let current = self.current();
        if content_hash(&bytes) == current.version().hash {
            return Ok(None);
        }
        current.new_version(Some(bytes), at).await.map(Some).map_err(|e| self.rejected(e))
    }

    fn swap(&self, next: Plugin<F>) -> ReloadOutcome {
        let (name, to, took, cache) = (
            next.name().to_owned(),
            next.version().hash.clone(),
            next.version().load_time,
            next.version().cache.clone(),
        );
        let previous = self.current.swap(Arc::new(next));
        let from = previous.version().hash.clone();
        {
            let mut h = self.history();
            h.reloads += 1;
            h.rejected = None;
        }
        metrics().reload(&name, "swapped");
        tracing::info!(plugin = name, from = short(&from), to = short(&to), load_ms = took.as_millis() as u64, cache = ?cache, "new plugin version serving");
        ReloadOutcome::Swapped { from, to }
    }

    fn unchanged(&self) -> ReloadOutcome {
        // The file is back to what serves: an earlier rejection no longer describes it.
        self.history().rejected = None;
        metrics().reload(self.name(), "unchanged");
        ReloadOutcome::Unchanged
    }

    fn rejected(&self, e: LoadError) -> LoadError {
        let name = self.name();
        tracing::error!(plugin = name, error = %e, "new plugin version rejected; the running version keeps serving");
        metrics().reload(name, "rejected");
        self.history().rejected = Some(Rejection { at: Timestamp::now().to_string(), reason: e.to_string() });
        e
    }

    /// The file was removed: keep serving what is loaded, and say so.
    pub fn file_removed(&self) {
        let name = self.name();
        tracing::warn!(plugin = name, path = %self.current().path().display(), "plugin file removed; the loaded version keeps serving until a new file appears");
        self.history().file_missing = true;
    }

    /// Swaps since start.
    pub fn reloads(&self) -> u64 {
        self.history().reloads
    }

    /// The latest reload attempt's rejection, if it was rejected.
    pub fn rejection(&self) -> Option<Rejection> {
        self.history().rejected.clone()
    }

    /// Whether the plugin's file has been removed since it was loaded.
    pub fn file_missing(&self) -> bool {
        self.history().file_missing
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// What an operator sees of a slot, whatever its world.
#[derive(Debug, Clone)]
pub struct SlotInfo {
    /// The plugin's name.
    pub name: String,
    /// Its world.
    pub world: World,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// The file the config names (`path` differs after a deploy).
    pub configured: PathBuf,
    /// The version serving now.
    pub version: Version,
    /// Calls that returned `ok`, across versions.
    pub handled: u64,
    /// Calls that failed, across versions.
    pub failed: u64,
    /// The latest failure's reason.
    pub last_error: Option<String>,
    /// Swaps since start.
    pub reloads: u64,
    /// The latest reload attempt's rejection, if it was rejected.
    pub rejected: Option<Rejection>,
    /// Whether its file has been removed since it was loaded.
    pub file_missing: bool,
}

/// A slot of any world: what the registry, the watcher and the admin API need.
#[async_trait]
pub trait AnySlot: Send + Sync + std::fmt::Debug {
    /// See [`PluginSlot::reload`].
    async fn reload(&self) -> Result<ReloadOutcome, LoadError>;
    /// See [`PluginSlot::deploy`].
    async fn deploy(&self, bytes: Vec<u8>, root: &Path, dir: &Path) -> Result<ReloadOutcome, LoadError>;
    /// See [`PluginSlot::configured`].
    fn configured(&self) -> PathBuf;
    /// See [`PluginSlot::file_removed`].
    fn file_removed(&self);
    /// The file the serving version was loaded from.
    fn path(&self) -> PathBuf;
    /// What an operator sees.
    fn info(&self) -> SlotInfo;
}

#[async_trait]
impl<F: Face> AnySlot for PluginSlot<F> {
    async fn reload(&self) -> Result<ReloadOutcome, LoadError> {
        PluginSlot::reload(self).await
    }
    async fn deploy(&self, bytes: Vec<u8>, root: &Path, dir: &Path) -> Result<ReloadOutcome, LoadError> {
        PluginSlot::deploy(self, bytes, root, dir).await
    }
    fn configured(&self) -> PathBuf {
        self.configured.clone()
    }
    fn file_removed(&self) {
        PluginSlot::file_removed(self);
    }
    fn path(&self) -> PathBuf {
        self.current().path().to_owned()
    }
    fn info(&self) -> SlotInfo {
        use std::sync::atomic::Ordering::Relaxed;
        let p = self.current();
        SlotInfo {
            name: self.name.clone(),
            world: p.world(),
            path: p.path().to_owned(),
            configured: self.configured.clone(),
            version: p.version().clone(),
            handled: p.stats().handled.load(Relaxed),
            failed: p.stats().failed.load(Relaxed),
            last_error: p.stats().last_error(),
            reloads: self.reloads(),
            rejected: self.rejection(),
            file_missing: self.file_missing(),
        }
    }
}

/// The plugin slots of a running host, by kind and name.
#[derive(Debug, Default)]
pub struct Registry {
    slots: RwLock<BTreeMap<String, Arc<dyn AnySlot>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add or replace the slot under `key` (e.g. `apps.survey`, `routers.keywords`).
    pub fn insert(&self, key: String, slot: Arc<dyn AnySlot>) {
        self.slots.write().unwrap_or_else(|p| p.into_inner()).insert(key, slot);
    }

    /// Replace every slot at once (after a config reload).
    pub fn replace_all(&self, slots: BTreeMap<String, Arc<dyn AnySlot>>) {
        *self.slots.write().unwrap_or_else(|p| p.into_inner()) = slots;
    }

    /// The slot under `key`.
    pub fn get(&self, key: &str) -> Option<Arc<dyn AnySlot>> {
        self.slots.read().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    /// Every slot, by key.
    pub fn all(&self) -> BTreeMap<String, Arc<dyn AnySlot>> {
        self.slots.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The slots loaded from `path` (several apps may run the same file).
    pub fn loaded_from(&self, path: &Path) -> Vec<Arc<dyn AnySlot>> {
        self.all().into_values().filter(|s| same_file(&s.path(), path)).collect()
    }

    /// The files the slots were loaded from.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.all().values().map(|s| s.path()).collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Paths name the same file if they are equal once made absolute and cleaned of `.`/`..`.
/// (Not `canonicalize`: a removed file has no canonical form, and removal is an event we handle.)
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    normalize(a) == normalize(b)
}

/// `p` made absolute and cleaned of `.` and `..`, without touching the file system.
pub fn normalize(p: &Path) -> PathBuf {
    let abs =
        if p.is_absolute() { p.to_owned() } else { std::env::current_dir().unwrap_or_default().join(p) };
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
