//! Reload plugins when their files change.
//!
//! The watcher watches the **directories** holding plugin files, not the files: tools replace a
//! file by writing a new one and renaming it over the old, and a watch on the old file's inode
//! would go quiet. Events are debounced (a copy of a large file is many writes), and access
//! events are ignored — reading a file to reload it must not look like a change, or every
//! reload would trigger the next. A reload whose bytes hash to the running version does
//! nothing, which also absorbs duplicate events.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::registry::{Registry, normalize};

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch plugin files: {0}")]
pub struct WatchError(String);

/// A running watcher; dropped (or cancelled), it stops.
pub struct Watcher {
    debouncer: Mutex<Debouncer<notify::RecommendedWatcher, RecommendedCache>>,
    watched: Mutex<BTreeSet<PathBuf>>,
    registry: Arc<Registry>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").field("watched", &self.watched).finish_non_exhaustive()
    }
}

impl Watcher {
    /// Watch the files of every slot in `registry`, reloading the slots loaded from a file when
    /// it changes, until `stop`.
    pub fn start(
        registry: Arc<Registry>,
        debounce: Duration,
        stop: CancellationToken,
    ) -> Result<Arc<Self>, WatchError> {
        let (tx, rx) = mpsc::unbounded_channel::<Vec<notify::Event>>();
        let debouncer = new_debouncer(debounce, None, move |result: DebounceEventResult| match result {
            Ok(events) => {
                let _ = tx.send(events.into_iter().map(|e| e.event).collect());
            }
            Err(errors) => {
                for e in errors {
                    tracing::warn!(error = %e, "plugin file watcher error");
                }
            }
        })
        .map_err(|e| WatchError(e.to_string()))?;
        let me = Arc::new(Self {
            debouncer: Mutex::new(debouncer),
            watched: Mutex::default(),
            registry: registry.clone(),
        });
        me.sync()?;
        tokio::spawn(apply(registry, rx, stop));
        Ok(me)
    }

    /// Watch the directories of the registry's files as they are now (after a config reload
    /// added or removed plugins).
    pub fn sync(&self) -> Result<(), WatchError> {
        let wanted: BTreeSet<PathBuf> = self
            .registry
            .paths()
            .iter()
            .filter_map(|p| normalize(p).parent().map(|d| d.to_owned()))
            .collect();
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        let mut debouncer = self.debouncer.lock().unwrap_or_else(|p| p.into_inner());
        for dir in watched.difference(&wanted) {
            let _ = debouncer.unwatch(dir);
        }
        for dir in wanted.difference(&watched) {
            debouncer
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|e| WatchError(format!("`{}`: {e}", dir.display())))?;
            tracing::info!(dir = %dir.display(), "watching plugin files");
        }
        *watched = wanted;
        Ok(())
    }
}

async fn apply(
    registry: Arc<Registry>,
    mut rx: mpsc::UnboundedReceiver<Vec<notify::Event>>,
    stop: CancellationToken,
) {
    loop {
        let events = tokio::select! {
            () = stop.cancelled() => return,
            e = rx.recv() => match e { Some(e) => e, None => return },
        };
        let mut changed = BTreeSet::new();
        for event in events {
            if matches!(event.kind, EventKind::Access(_)) {
                continue;
            }
            changed.extend(event.paths);
        }
        for path in changed {
            for slot in registry.loaded_from(&path) {
                if tokio::fs::try_exists(&path).await.unwrap_or(false) {
                    // Errors are logged and kept by the slot; the old version keeps serving.
                    let _ = slot.reload().await;
                } else {
                    slot.file_removed();
                }
            }
        }
    }
}
