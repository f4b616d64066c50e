//! The failure path: where a message goes when its handler fails. Nothing is dropped silently:
//! each failure is logged with its reason, counted, kept in memory for the admin API, and (if
//! configured) appended as a JSON line to a file an operator can read or replay.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::message::{Message, Timestamp};
use crate::telemetry::throttle::Throttle;

/// One failed message and why.
#[derive(Debug, Clone, Serialize)]
pub struct FailureRecord {
    /// When it failed (Vumi's timestamp form).
    pub timestamp: String,
    /// The component that could not handle it: an app, a router, a middleware, a channel.
    pub component: String,
    /// The connector it came from.
    pub connector: String,
    /// Machine label: `trap`, `deadline`, `memory`, `handler_error`, `instantiate`, `publish`.
    pub kind: String,
    /// Human-readable reason.
    pub reason: String,
    /// The message itself, in Vumi JSON, so it can be inspected or replayed.
    pub message: serde_json::Value,
}

/// Recent failures plus an optional append-only file.
pub struct FailureLog {
    keep: usize,
    recent: Mutex<VecDeque<FailureRecord>>,
    file: Option<Mutex<std::fs::File>>,
    total: AtomicU64,
    /// Log lines rate-limited per component and kind (ten per 10 s, then a count): a new kind of
    /// failure is always said, a flood of one kind is summarised.
    log_throttles: Mutex<HashMap<String, Arc<Throttle>>>,
}

impl std::fmt::Debug for FailureLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureLog").field("total", &self.total()).finish_non_exhaustive()
    }
}

impl FailureLog {
    /// Keep the last `keep` failures in memory; with `path`, also append each as a JSON line.
    pub fn new(keep: usize, path: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            Some(p) => Some(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(p)?)),
            None => None,
        };
        Ok(Self { keep, recent: Mutex::new(VecDeque::new()), file, total: AtomicU64::new(0), log_throttles: Mutex::default() })
    }

    /// Record that `component` could not handle `message` from `connector`.
    pub fn record(&self, component: &str, connector: &str, kind: &str, reason: &str, message: &Message) {
        self.total.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::metrics::metrics().failure(component, kind);
        // Every failure is kept (memory, file, metrics); the log line is rate-limited, so a plugin
        // failing on every message under load cannot flood the log.
        let throttle = self
            .log_throttles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(format!("{component}/{kind}"))
            .or_insert_with(|| Arc::new(Throttle::with_burst(Duration::from_secs(10), 10)))
            .clone();
        if let Some(more) = throttle.hit() {
            tracing::warn!(
                component,
                connector,
                kind,
                reason,
                message_id = message.id(),
                more,
                "message sent to the failure path ({more} more like it in the last {} s)",
                throttle.window_secs()
            );
        }
        let message = serde_json::from_slice(&message.to_json()).unwrap_or(serde_json::Value::Null);
        let rec = FailureRecord {
            timestamp: Timestamp::now().to_string(),
            component: component.to_owned(),
            connector: connector.to_owned(),
            kind: kind.to_owned(),
            reason: reason.to_owned(),
            message,
        };
        if let Some(file) = &self.file {
            let mut line = serde_json::to_vec(&rec).unwrap_or_default();
            line.push(b'\n');
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = f.write_all(&line) {
                tracing::error!(error = %e, "cannot append to the failures file; the failure is still logged above");
            }
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= self.keep {
            recent.pop_front();
        }
        if self.keep > 0 {
            recent.push_back(rec);
        }
    }

    /// The most recent failures, oldest first.
    pub fn recent(&self) -> Vec<FailureRecord> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    /// Failures recorded since start.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}
