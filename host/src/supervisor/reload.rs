//! Config reloads: what asks for one (`SIGHUP`, the file changing, the admin API), what only a
//! restart can change, and applying the rest.

use std::path::Path;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::admin::Control;
use crate::config::Config;
use crate::message::Timestamp;

use super::settings::largest_memory_limit;
use super::{RunningHost, StartError};

/// What asks for a config reload besides the admin API: `SIGHUP`, and the config file changing.
pub(super) struct ReloadTriggers {
    pub(super) path: std::path::PathBuf,
    pub(super) hup: mpsc::UnboundedReceiver<()>,
    pub(super) file: mpsc::UnboundedReceiver<()>,
    pub(super) _watch: Option<ConfigWatch>,
}

type ConfigWatch =
    notify_debouncer_full::Debouncer<notify::RecommendedWatcher, notify_debouncer_full::RecommendedCache>;

impl RunningHost {
    /// Take config reloads from `config_path`: on `SIGHUP` and (with `plugins.watch`) when the
    /// file changes. Call it before telling anyone the host is ready, so no change or signal
    /// falls between start-up and [`RunningHost::serve`].
    pub fn reload_on_change(&mut self, config_path: &Path) {
        let (file, watch) = file_trigger(self.config.plugins.watch, config_path);
        self.reloads =
            Some(ReloadTriggers { path: config_path.to_owned(), hup: hangup(), file, _watch: watch });
        self.status.with_config(|c| c.path = config_path.display().to_string());
    }

    /// Serve until `until` resolves, applying the config reloads asked for (see
    /// [`RunningHost::reload_on_change`]; the admin API's `POST /reload` too). Then stop
    /// gracefully.
    pub async fn serve(mut self, until: impl std::future::Future<Output = ()>) {
        tokio::pin!(until);
        let mut control = self.control.take();
        let mut triggers = self.reloads.take();
        let path = triggers.as_ref().map(|t| t.path.clone());
        loop {
            let reason = tokio::select! {
                () = &mut until => break,
                Some(reason) = next_trigger(&mut triggers) => reason,
                Some(Control::ReloadConfig(reply)) = recv(&mut control) => {
                    let result = match &path {
                        Some(p) => self.reload_from(p, "the admin API").await,
                        None => Err("this host was not started from a config file".to_owned()),
                    };
                    let _ = reply.send(result);
                    continue;
                }
            };
            if let Some(p) = &path {
                let _ = self.reload_from(p, reason).await;
            }
        }
        tracing::info!("shutting down");
        self.shutdown(Duration::from_secs(5)).await;
    }

    /// Keep running only `roles` across reloads (`vumi run --role`), whatever the file says.
    pub fn keep_roles(&mut self, roles: Vec<String>) {
        self.roles_override = Some(roles);
    }

    /// Load `path` and apply it; an invalid config is rejected whole and the running one stays.
    pub async fn reload_from(&mut self, path: &Path, why: &str) -> Result<String, String> {
        tracing::info!(config = %path.display(), why, "reloading config");
        let loaded = Config::load(path).and_then(|c| match &self.roles_override {
            Some(roles) => c.with_roles(roles.clone(), path),
            None => Ok(c),
        });
        let result = match loaded {
            Ok(new) => self.reload(new).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match &result {
            Ok(summary) => {
                crate::telemetry::metrics::metrics().reload("config", "swapped");
                tracing::info!(config = %path.display(), summary, "config reloaded");
                self.status.with_config(|c| {
                    c.reloads += 1;
                    c.loaded_at = Timestamp::now().to_string();
                    c.rejected = None;
                });
            }
            Err(reason) => {
                crate::telemetry::metrics::metrics().reload("config", "rejected");
                tracing::error!(config = %path.display(), reason, "config rejected; the running config stays");
                self.status.with_config(|c| {
                    c.rejected = Some(crate::status::Rejection {
                        at: Timestamp::now().to_string(),
                        reason: reason.clone(),
                    });
                });
            }
        }
        result
    }

    /// Apply `new` in place of the running config: a summary of what changed, or why nothing did.
    pub async fn reload(&mut self, new: Config) -> Result<String, StartError> {
        for (key, changed) in [
            ("host", self.config.host != new.host),
            ("failures", self.config.failures != new.failures),
            ("plugins", self.config.plugins != new.plugins),
            ("admin", self.config.admin != new.admin),
            ("http.bind", self.config.http.bind != new.http.bind && self.http.is_some()),
        ] {
            if changed {
                return Err(StartError::NeedsRestart {
                    key: key.into(),
                    problem: "changed, and only a restart applies it; revert it to reload the rest".into(),
                });
            }
        }
        let limit = largest_memory_limit(&new);
        if limit > self.engine_memory_mb {
            return Err(StartError::NeedsRestart {
                key: "memory_limit_mb".into(),
                problem: format!(
                    "{limit} MiB is over the {} MiB the engine reserved at start; restart to raise it",
                    self.engine_memory_mb
                ),
            });
        }
        let old = self.config.clone();
        self.apply(Some(&old), new).await
    }
}

async fn recv(control: &mut Option<mpsc::Receiver<Control>>) -> Option<Control> {
    match control {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_trigger(triggers: &mut Option<ReloadTriggers>) -> Option<&'static str> {
    let Some(t) = triggers else { return std::future::pending().await };
    tokio::select! {
        Some(()) = t.hup.recv() => Some("SIGHUP"),
        Some(()) = t.file.recv() => Some("the config file changed"),
        else => std::future::pending().await,
    }
}

/// `SIGHUP`s, as a stream of `()`.
fn hangup() -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        if tx.send(()).is_err() {
                            return;
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload through the admin API instead")
            }
        }
    }
    rx
}

/// Reload requests from the config file changing: with `watch`, a watcher feeding the receiver;
/// without, the receiver is closed at once, so no write to the file can ever reload.
fn file_trigger(watch: bool, config_path: &Path) -> (mpsc::UnboundedReceiver<()>, Option<ConfigWatch>) {
    let (file_tx, file) = mpsc::unbounded_channel();
    let watcher = if watch {
        watch_config(config_path, file_tx)
    } else {
        tracing::info!(config = %config_path.display(), "not watching the config file (plugins.watch = false): reload with SIGHUP or the admin API");
        None
    };
    (file, watcher)
}

/// Watch the config file's directory for changes to the file. Editors save by writing a new
/// file and renaming it over the old one, which a watch on the file itself would miss.
fn watch_config(path: &Path, tx: mpsc::UnboundedSender<()>) -> Option<ConfigWatch> {
    let target = crate::plugins::normalize_path(path);
    let dir = target.parent()?.to_owned();
    let file = target.clone();
    let debouncer = notify_debouncer_full::new_debouncer(
        Duration::from_millis(200),
        None,
        move |r: notify_debouncer_full::DebounceEventResult| {
            let Ok(events) = r else { return };
            let touched = events.iter().any(|e| {
                !matches!(e.event.kind, notify::EventKind::Access(_))
                    && e.event.paths.iter().any(|p| p == &file)
            });
            if touched {
                let _ = tx.send(());
            }
        },
    );
    match debouncer {
        Ok(mut d) => match d.watch(&dir, notify::RecursiveMode::NonRecursive) {
            Ok(()) => Some(d),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the config file; reload with SIGHUP or the admin API");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP or the admin API");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_watch_no_change_to_the_file_can_reload_it() {
        let dir = std::env::temp_dir().join(format!("vumi-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("vumi.toml");
        std::fs::write(&path, "").expect("config");
        let (mut off, none) = file_trigger(false, &path);
        assert!(none.is_none());
        assert_eq!(off.try_recv(), Err(mpsc::error::TryRecvError::Disconnected), "nothing will ever send");
        let (mut on, watcher) = file_trigger(true, &path);
        assert!(watcher.is_some());
        assert_eq!(on.try_recv(), Err(mpsc::error::TryRecvError::Empty), "a watcher feeds it");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
