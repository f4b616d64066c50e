//! Compiled components on disk, so a restart with many plugins does not run cranelift again.
//!
//! An entry is keyed by the component's content hash **and** the engine's compatibility hash
//! (wasmtime version, target, compiler flags, enabled features): a host upgraded or configured
//! differently looks under another name and compiles afresh. Each entry carries a SHA-256 of its
//! own payload, checked before wasmtime sees it: wasmtime trusts precompiled bytes (loading them
//! is `unsafe`), and a truncated or bit-flipped file must be caught here, not executed. An entry
//! that fails any check is reported, deleted and rebuilt.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

/// Written first in every entry: a file that does not start with it is not ours.
const MAGIC: &[u8] = b"vumi-cwasm-1\n";

/// How a component was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a valid cache entry.
    Hit,
    /// Not cached (or no cache configured): compiled, and stored if a cache is configured.
    Compiled,
    /// An entry existed but failed its checks (the reason); compiled again and replaced.
    Rebuilt(String),
    /// Another plugin of this process runs the same bytes: their compiled code is shared.
    Shared,
}

/// A directory of compiled components for one engine configuration.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
    engine_key: String,
}

/// The SHA-256 of `bytes`, in hex: a plugin version's identity in logs, the admin API and the
/// cache.
pub fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl ComponentCache {
    /// A cache in `dir` (created if missing) for components compiled by `engine`.
    pub(crate) fn new(dir: &Path, engine: &wasmtime::Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(Self { dir: dir.to_owned(), engine_key: format!("{:016x}", h.finish()) })
    }

    /// The entry for a component with content hash `hash`.
    fn entry_path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}-{}.cwasm", self.engine_key))
    }

    /// The compiled form of `bytes` (whose content hash is `hash`): from the cache when a sound
    /// entry exists, otherwise compiled with `compile` and stored.
    pub(crate) fn get_or_compile(
        &self,
        engine: &wasmtime::Engine,
        hash: &str,
        compile: impl FnOnce() -> wasmtime::Result<Component>,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let path = self.entry_path(hash);
        let mut outcome = CacheOutcome::Compiled;
        match std::fs::read(&path) {
            Ok(entry) => match load_entry(engine, &entry) {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(reason) => {
                    tracing::warn!(entry = %path.display(), reason, "compiled-component cache entry is unusable; recompiling");
                    let _ = std::fs::remove_file(&path);
                    outcome = CacheOutcome::Rebuilt(reason);
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(entry = %path.display(), error = %e, "cannot read compiled-component cache entry; recompiling")
            }
        }
        let component = compile()?;
        if let Err(e) = self.store(&path, &component) {
            // A cache that cannot be written costs the next restart time, not correctness.
            tracing::warn!(entry = %path.display(), error = %e, "cannot write compiled-component cache entry");
        }
        Ok((component, outcome))
    }

    fn store(&self, path: &Path, component: &Component) -> std::io::Result<()> {
        let payload = component.serialize().map_err(std::io::Error::other)?;
        let mut entry = Vec::with_capacity(MAGIC.len() + 32 + payload.len());
        entry.extend_from_slice(MAGIC);
        entry.extend_from_slice(&Sha256::digest(&payload));
        entry.extend_from_slice(&payload);
        // Write then rename: a reader never sees half an entry, and two hosts sharing the
        // directory race harmlessly (both write the same bytes).
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &entry)?;
        std::fs::rename(&tmp, path)
    }
}

/// Check an entry's framing and checksum, then let wasmtime check its engine compatibility.
fn load_entry(engine: &wasmtime::Engine, entry: &[u8]) -> Result<Component, String> {
    let rest = entry.strip_prefix(MAGIC).ok_or("it does not start with the cache's header")?;
    if rest.len() < 32 {
        return Err("it is truncated".into());
    }
    let (sum, payload) = rest.split_at(32);
    if Sha256::digest(payload).as_slice() != sum {
        return Err("its checksum does not match its contents (corrupt or truncated)".into());
    }
    // SAFETY: wasmtime requires that the bytes were produced by `Component::serialize` for a
    // compatible engine and not modified since. We wrote this payload ourselves with
    // `Component::serialize` and have just checked it is bit-for-bit what we wrote (SHA-256 over
    // the payload, stored alongside); wasmtime itself rejects an incompatible engine or version.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine, payload) };
    component.map_err(|e| format!("wasmtime refused it: {e:#}"))
}
