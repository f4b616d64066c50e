//! The failure path: where a message goes when its handler fails. Nothing is dropped silently:
//! each failure is logged with its reason, counted, kept in memory for the admin API, (if
//! configured) appended as a JSON line to a file an operator can read or replay, and given to
//! the bus, which on RabbitMQ publishes it to `<connector>.failures` as a Vumi
//! `failure_message` (`failure_code` `permanent` or `temporary`, `reason`, the `message`), so
//! a Vumi failure worker or an operator's script can take it from there.
//!
//! Two classes of failure. A deterministic one (a trap, a deadline, the memory cap, a body
//! that does not decode, a rejection) would fail again: it comes here at once, `permanent`.
//! One caused by a back end that is down (the state store, the broker) or a handler's
//! `retry-later` is first tried in place, then goes round the retry path's delay tiers
//! ([`FailureLog::retry_or_fail`]), and comes here only after the last tier, `temporary`.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::bus::{Bus, Delivery, Later};
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
    /// Vumi's failure code: `permanent` (it would fail again) or `temporary` (a back end was
    /// down, or the handler asked to retry, through every delay tier).
    pub failure_code: &'static str,
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
    /// Where failures are published besides (`<connector>.failures` on RabbitMQ).
    bus: Option<Arc<dyn Bus>>,
}

/// Vumi's `failure_code` for a failure of `kind`.
pub fn failure_code(kind: &str) -> &'static str {
    match kind {
        "retry_later" | "unavailable" | "state_unavailable" | "callback" | "publish" => "temporary",
        _ => "permanent",
    }
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
        Ok(Self { keep, recent: Mutex::new(VecDeque::new()), file, total: AtomicU64::new(0), log_throttles: Mutex::default(), bus: None })
    }

    /// The same log, also publishing each failure through `bus`.
    pub fn with_bus(mut self, bus: Arc<dyn Bus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// After its tries in place, a message that a back end (or the handler's `retry-later`)
    /// still holds up: set aside on the retry path for its next delay tier, or, past the last
    /// tier, recorded here as a temporary failure and acked. Either way its queue keeps
    /// flowing.
    pub async fn retry_or_fail(&self, component: &str, connector: &str, kind: &str, reason: &str, delivery: Delivery) {
        let (id, tier) = (delivery.message.id().to_owned(), delivery.retries);
        match delivery.retry_later().await {
            Ok(Later::Deferred(delay)) => {
                crate::telemetry::metrics::metrics().deferred(component, &crate::bus::tier_label(delay));
                tracing::warn!(component, connector, kind, reason, message_id = id, tier = tier + 1, delay_ms = delay.as_millis() as u64, "set aside on the retry path");
            }
            Ok(Later::Exhausted(d)) => {
                let reason = format!("{reason}, then through {} delay tiers of the retry path", d.retries);
                self.record(component, connector, kind, &reason, &d.message).await;
                d.ack();
            }
            Err(e) => {
                tracing::warn!(component, connector, message_id = id, error = %e, "cannot set a message aside on the retry path; it is back on its queue");
            }
        }
    }

    /// Record that `component` could not handle `message` from `connector`. Returns once the
    /// bus has it too (on RabbitMQ: confirmed on `<connector>.failures`), so the caller may ack
    /// the input; if the bus cannot take it, that is logged and the record stays here.
    pub async fn record(&self, component: &str, connector: &str, kind: &str, reason: &str, message: &Message) {
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
            failure_code: failure_code(kind),
            reason: reason.to_owned(),
            message,
        };
        if let Some(bus) = &self.bus {
            let failure = serde_json::json!({
                "message_type": "failure_message",
                "message_version": "20110921",
                "timestamp": rec.timestamp,
                "message": rec.message,
                "failure_code": rec.failure_code,
                "reason": format!("{component}: {reason}"),
                "component": component,
                "kind": kind,
            });
            if let Err(e) = bus.publish_failure(connector, &failure).await {
                tracing::error!(component, connector, error = %e, "cannot publish a failure to the bus; it is kept in the failure log and the admin API");
            }
        }
        if let Some(file) = &self.file {
            let mut line = serde_json::to_vec(&rec).unwrap_or_default();
            line.push(b'\n');
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = f.write_all(&line) {
                tracing::error!(error = %e, "cannot append to the failures file; the failure is still logged above");
            }
        }
        self.keep(rec);
    }

    fn keep(&self, rec: FailureRecord) {
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
