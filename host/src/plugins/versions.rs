//! Deployed plugin versions: where a deploy or an upload puts its bytes, and which component
//! runs which deployed version.
//!
//! A deploy never writes a file that anything else loads. Two tenants' apps, or an operator's
//! app and a tenant's, may run the same `.wasm` (the operator built it once); writing over that
//! file would change every one of them, and each one's watcher would swap the new code in under
//! its own tenant's state and grants. So deployed and uploaded bytes are stored
//! **content-addressed** in their owner's own directory (`<stem>.<sha256>.wasm`: a name that is
//! its content, so it is never rewritten with anything else), and the component is repointed to
//! the stored file. What was loaded before is left as it was, on disk and in every other slot.
//!
//! A deploy outlives a restart through [`Deployments`]: a small record (`deployments.json` in
//! the data directory) of which component runs which stored file instead of its configured one.
//! It holds only while the config names the same file it named at the deploy: change the
//! config's `plugin` and the config wins.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::cache::content_hash;

/// Why a version could not be stored or recorded.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// The owner's directory is reached through a symbolic link, or leads outside itself.
    #[error("`{dir}` leads outside `{root}` (a symbolic link?): refusing to store a plugin version there")]
    Escapes {
        /// The directory asked for.
        dir: PathBuf,
        /// The owner's directory it must stay inside.
        root: PathBuf,
    },
    /// Reading or writing failed.
    #[error("cannot write `{path}`: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The file name `bytes` are stored under: `<stem>.<sha256>.wasm`.
pub fn stored_name(stem: &str, bytes: &[u8]) -> String {
    format!("{stem}.{}.wasm", content_hash(bytes))
}

/// Where `bytes` would be stored in `dir` (see [`store`]), without writing anything: a
/// deploy validates its candidate under this name before a byte is written.
pub fn stored_path(dir: &Path, stem: &str, bytes: &[u8]) -> PathBuf {
    dir.join(stored_name(stem, bytes))
}

/// Store `bytes` as `<dir>/<stem>.<sha256>.wasm`, `dir` being inside the owner's directory
/// `root` (both made if missing). Nothing is written through a symbolic link: `dir` must resolve
/// inside `root`, and a link already standing at the file's name is replaced, not followed.
/// A file already there with the same content is left alone (its watchers see nothing).
pub fn store(root: &Path, dir: &Path, stem: &str, bytes: &[u8]) -> Result<PathBuf, VersionError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| VersionError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    inside(root, dir)?;
    let path = stored_path(dir, stem, bytes);
    let same = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file())
        && std::fs::read(&path).is_ok_and(|b| b == bytes);
    if !same {
        let tmp = dir.join(format!(".{}.{}.tmp", stored_name(stem, bytes), std::process::id()));
        std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
        // A rename replaces a link standing at `path` itself; it never writes through it.
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
    }
    Ok(path)
}

/// `path` (which must exist) resolved, if it lies inside `root` once every symbolic link and
/// `..` is followed; an error naming both otherwise. A path spelled with `..` is refused
/// before anything is resolved.
pub fn inside(root: &Path, path: &Path) -> Result<PathBuf, VersionError> {
    let escapes = || VersionError::Escapes { dir: path.to_owned(), root: root.to_owned() };
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(escapes());
    }
    let real_root =
        root.canonicalize().map_err(|source| VersionError::Io { path: root.to_owned(), source })?;
    let real = path.canonicalize().map_err(|source| VersionError::Io { path: path.to_owned(), source })?;
    if real.starts_with(&real_root) { Ok(real) } else { Err(escapes()) }
}

/// One component's deployed version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// The file the config named when the version was deployed.
    pub configured: PathBuf,
    /// The stored file it runs instead.
    pub deployed: PathBuf,
    /// When (Vumi's timestamp form).
    pub at: String,
}

/// Which component runs which deployed version, kept in a JSON file so a restart runs what was
/// deployed. Written whole (beside, then renamed over) after every change.
#[derive(Debug)]
pub struct Deployments {
    file: Option<PathBuf>,
    entries: Mutex<BTreeMap<String, Deployment>>,
}

impl Deployments {
    /// The record kept in `file` (read now; a missing file is an empty record). `None`: kept
    /// in memory only.
    pub fn open(file: Option<PathBuf>) -> Result<Self, VersionError> {
        let entries = match &file {
            Some(f) => Self::read(f)?,
            None => BTreeMap::new(),
        };
        Ok(Self { file, entries: Mutex::new(entries) })
    }

    fn read(file: &Path) -> Result<BTreeMap<String, Deployment>, VersionError> {
        match std::fs::read(file) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(file = %file.display(), error = %e, "the deployments record does not parse; starting from the configured plugins");
                BTreeMap::new()
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(source) => Err(VersionError::Io { path: file.to_owned(), source }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Deployment>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The file component `name` should run, its config naming `configured`: the deployed
    /// version if one was deployed over that same configured file and is still on disk, else
    /// `configured`.
    pub fn path_for(&self, name: &str, configured: &Path) -> PathBuf {
        match self.lock().get(name) {
            Some(d) if d.configured == configured && d.deployed.is_file() => d.deployed.clone(),
            Some(d) if d.configured == configured => {
                tracing::warn!(plugin = name, deployed = %d.deployed.display(), "the deployed version's file is gone; running the configured one");
                configured.to_owned()
            }
            _ => configured.to_owned(),
        }
    }

    /// Component `name` (configured with `configured`) now runs `deployed`.
    pub fn record(&self, name: &str, configured: &Path, deployed: &Path) -> Result<(), VersionError> {
        let mut entries = self.lock();
        // Hosts started from one config directory share the file: take in what the others
        // recorded since, so this write does not undo theirs.
        if let Some(f) = &self.file {
            entries.extend(Self::read(f)?);
        }
        entries.insert(
            name.to_owned(),
            Deployment {
                configured: configured.to_owned(),
                deployed: deployed.to_owned(),
                at: crate::message::Timestamp::now().to_string(),
            },
        );
        self.save(&entries)
    }

    /// Component `name`'s deployment, if it has one.
    pub fn get(&self, name: &str) -> Option<Deployment> {
        self.lock().get(name).cloned()
    }

    fn save(&self, entries: &BTreeMap<String, Deployment>) -> Result<(), VersionError> {
        let Some(file) = &self.file else { return Ok(()) };
        let io = |source| VersionError::Io { path: file.clone(), source };
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = file.with_extension(format!("json.{}.tmp", std::process::id()));
        let json = serde_json::to_vec_pretty(entries).unwrap_or_default();
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, file).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vumi-versions-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch dir");
        d
    }

    #[test]
    fn a_version_is_stored_by_its_content_and_never_overwrites_another() {
        let root = scratch("store");
        let dir = root.join("deployed");
        let a = store(&root, &dir, "echo", b"first").expect("stored");
        let b = store(&root, &dir, "echo", b"second").expect("stored");
        assert_ne!(a, b);
        assert_eq!(std::fs::read(&a).expect("a"), b"first");
        assert_eq!(std::fs::read(&b).expect("b"), b"second");
        assert_eq!(store(&root, &dir, "echo", b"first").expect("again"), a, "same bytes, same file");
        assert!(
            a.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("echo.") && n.len() == 5 + 64 + 5)
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn nothing_is_written_through_a_symbolic_link() {
        let root = scratch("links");
        let elsewhere = scratch("links-elsewhere");
        let shared = elsewhere.join("shared.wasm");
        std::fs::write(&shared, b"the operator's build").expect("shared");
        // A directory link out of the owner's directory is refused.
        std::os::unix::fs::symlink(&elsewhere, root.join("deployed")).expect("dir link");
        let e = store(&root, &root.join("deployed"), "echo", b"x").expect_err("escapes");
        assert!(e.to_string().contains("leads outside"), "{e}");
        // A file link at the stored name is replaced, not written through.
        let own = root.join("own");
        std::fs::create_dir_all(&own).expect("own");
        let name = stored_name("echo", b"mine");
        std::os::unix::fs::symlink(&shared, own.join(&name)).expect("file link");
        let p = store(&root, &own, "echo", b"mine").expect("stored");
        assert_eq!(std::fs::read(&p).expect("mine"), b"mine");
        assert_eq!(std::fs::read(&shared).expect("shared"), b"the operator's build");
        // `..` is refused as spelled.
        assert!(inside(&root, &root.join("own/../../x")).is_err());
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_dir_all(&elsewhere);
    }

    #[test]
    fn a_deployment_holds_while_the_config_names_the_same_file() {
        let root = scratch("record");
        let file = root.join("deployments.json");
        let deployed = store(&root, &root, "echo", b"v2").expect("stored");
        let configured = root.join("echo.wasm");
        let d = Deployments::open(Some(file.clone())).expect("open");
        d.record("acme:echo", &configured, &deployed).expect("record");
        let again = Deployments::open(Some(file)).expect("reopen");
        assert_eq!(again.path_for("acme:echo", &configured), deployed, "kept across a restart");
        assert_eq!(
            again.path_for("acme:echo", &root.join("other.wasm")),
            root.join("other.wasm"),
            "the config wins"
        );
        assert_eq!(again.path_for("globex:echo", &configured), configured, "per component");
        let _ = std::fs::remove_dir_all(&root);
    }
}
