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

use serde::{Deserialize, Serialize};

use crate::bus::{Bus, Delivery, Later, Publish, QueueKind, RoutingKey};
use crate::message::{Message, Timestamp};
use crate::telemetry::throttle::Throttle;

/// One failed message and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureRecord {
    /// This record's id, to replay it by.
    pub id: String,
    /// When it failed (Vumi's timestamp form).
    pub timestamp: String,
    /// The tenant whose component failed (`None`: the operator's).
    #[serde(default)]
    pub tenant: Option<String>,
    /// The component that could not handle it: an app, a router, a middleware, a channel.
    pub component: String,
    /// The connector it came from.
    pub connector: String,
    /// The queue it was taken from or published to (`<connector>.inbound`, ...): where a
    /// replay puts it back.
    pub queue: String,
    /// Machine label: `trap`, `deadline`, `memory`, `handler_error`, `instantiate`, `publish`.
    pub kind: String,
    /// Vumi's failure code: `permanent` (it would fail again) or `temporary` (a back end was
    /// down, or the handler asked to retry, through every delay tier).
    pub failure_code: String,
    /// Human-readable reason.
    pub reason: String,
    /// The message itself, in Vumi JSON, so it can be inspected or replayed.
    pub message: serde_json::Value,
    /// Whether and how it was replayed (once at most).
    #[serde(default)]
    pub replay: Option<Replay>,
}

/// A replay of a failure: when, and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replay {
    /// When it was replayed.
    pub at: String,
    /// `republished to <queue>`, or why it could not be.
    pub outcome: String,
}

/// Which failures to list or replay; every given field must match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureFilter {
    /// Only this tenant's (qualified names' tenant).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Only those at or after this time (Vumi's timestamp form, or RFC 3339).
    #[serde(default)]
    pub since: Option<String>,
    /// Only those whose kind is this, or whose reason contains it.
    #[serde(default)]
    pub reason: Option<String>,
    /// Only these ids.
    #[serde(default)]
    pub ids: Vec<String>,
}

impl FailureFilter {
    /// Check the filter's own values, so a typo in `since` is an error, not an empty answer.
    pub fn check(&self) -> Result<(), String> {
        if let Some(s) = &self.since {
            parse_time(s).ok_or_else(|| {
                format!("`since`: `{s}` is not a time (use `2026-12-07 10:00:00` or RFC 3339)")
            })?;
        }
        Ok(())
    }

    fn matches(&self, r: &FailureRecord) -> bool {
        if self.tenant.as_ref().is_some_and(|t| r.tenant.as_ref() != Some(t)) {
            return false;
        }
        if let Some(since) = self.since.as_deref().and_then(parse_time)
            && parse_time(&r.timestamp).is_none_or(|at| at < since)
        {
            return false;
        }
        if self.reason.as_ref().is_some_and(|q| r.kind != *q && !r.reason.contains(q.as_str())) {
            return false;
        }
        self.ids.is_empty() || self.ids.contains(&r.id)
    }
}

/// A time given as Vumi's timestamp (`2026-12-07 10:00:00.123456`), its date-only prefix, or
/// RFC 3339.
fn parse_time(s: &str) -> Option<chrono::NaiveDateTime> {
    let s = s.trim();
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .or_else(|| chrono::DateTime::parse_from_rfc3339(s).ok().map(|d| d.naive_utc()))
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

/// A line of the failures file: a failure, or the replay of one.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileLine {
    Replayed { replayed: String, replay: Replay },
    Failure(Box<FailureRecord>),
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
    /// Keep the last `keep` failures in memory; with `path`, also append each as a JSON line,
    /// and start from the last `keep` already there (with their replays), so a restart keeps
    /// them listable and replayable, and replays exactly once.
    pub fn new(keep: usize, path: Option<&Path>) -> std::io::Result<Self> {
        let mut recent = VecDeque::new();
        let file = match path {
            Some(p) => {
                if let Ok(text) = std::fs::read_to_string(p) {
                    for line in text.lines().filter(|l| !l.trim().is_empty()) {
                        match serde_json::from_str::<FileLine>(line) {
                            Ok(FileLine::Failure(r)) => {
                                if recent.len() >= keep.max(1) {
                                    recent.pop_front();
                                }
                                recent.push_back(*r);
                            }
                            Ok(FileLine::Replayed { replayed, replay }) => {
                                if let Some(r) =
                                    recent.iter_mut().find(|r: &&mut FailureRecord| r.id == replayed)
                                {
                                    r.replay = Some(replay);
                                }
                            }
                            // Lines from before records had ids, or damaged: kept in the file, not listed.
                            Err(_) => {}
                        }
                    }
                    recent.truncate(keep);
                }
                Some(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(p)?))
            }
            None => None,
        };
        Ok(Self {
            keep,
            recent: Mutex::new(recent),
            file,
            total: AtomicU64::new(0),
            log_throttles: Mutex::default(),
            bus: None,
        })
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
    pub async fn retry_or_fail(
        &self,
        component: &str,
        queue: &RoutingKey,
        kind: &str,
        reason: &str,
        delivery: Delivery,
    ) {
        let connector = queue.connector.as_str();
        let (id, tier) = (delivery.message.id().to_owned(), delivery.retries);
        match delivery.retry_later().await {
            Ok(Later::Deferred(delay)) => {
                crate::telemetry::metrics::metrics().deferred(component, &crate::bus::tier_label(delay));
                tracing::warn!(
                    component,
                    connector,
                    kind,
                    reason,
                    message_id = id,
                    tier = tier + 1,
                    delay_ms = delay.as_millis() as u64,
                    "set aside on the retry path"
                );
            }
            Ok(Later::Exhausted(d)) => {
                let reason = format!("{reason}, then through {} delay tiers of the retry path", d.retries);
                self.record(component, queue, kind, &reason, &d.message).await;
                d.ack();
            }
            Err(e) => {
                tracing::warn!(component, connector, message_id = id, error = %e, "cannot set a message aside on the retry path; it is back on its queue");
            }
        }
    }

    /// Record that `component` could not handle `message`, taken from (or published to) `queue`.
    /// Returns once the bus has it too (on RabbitMQ: confirmed on `<connector>.failures`), so
    /// the caller may ack the input; if the bus cannot take it, that is logged and the record
    /// stays here.
    pub async fn record(
        &self,
        component: &str,
        queue: &RoutingKey,
        kind: &str,
        reason: &str,
        message: &Message,
    ) {
        let connector = queue.connector.as_str();
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
        let tenant = crate::names::tenant_of(component)
            .or_else(|| crate::names::tenant_of(connector))
            .map(str::to_owned);
        if let Some(t) = &tenant {
            crate::telemetry::metrics::metrics().tenant_failure(t, kind);
        }
        let rec = FailureRecord {
            id: uuid::Uuid::new_v4().simple().to_string(),
            timestamp: Timestamp::now().to_string(),
            tenant,
            component: component.to_owned(),
            connector: connector.to_owned(),
            queue: queue.to_string(),
            kind: kind.to_owned(),
            failure_code: failure_code(kind).to_owned(),
            reason: reason.to_owned(),
            message,
            replay: None,
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
                "failure_id": rec.id,
                "tenant": rec.tenant,
            });
            if let Err(e) = bus.publish_failure(connector, &failure).await {
                tracing::error!(component, connector, error = %e, "cannot publish a failure to the bus; it is kept in the failure log and the admin API");
            }
        }
        self.append(&serde_json::to_value(&rec).unwrap_or_default());
        self.keep(rec);
    }

    fn append(&self, value: &serde_json::Value) {
        if let Some(file) = &self.file {
            let mut line = serde_json::to_vec(value).unwrap_or_default();
            line.push(b'\n');
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = f.write_all(&line) {
                tracing::error!(error = %e, "cannot append to the failures file; the failure is still logged above");
            }
        }
    }

    /// The kept failures matching `filter`, oldest first.
    pub fn matching(&self, filter: &FailureFilter) -> Vec<FailureRecord> {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|r| filter.matches(r))
            .cloned()
            .collect()
    }

    /// Put every kept failure matching `filter` that was not replayed before back on the queue
    /// it failed from, through `publish` (the message path: its chain runs again, as on any
    /// publish), once: each is claimed before it is published, so a second replay, or two at
    /// once, cannot publish it again. Each outcome is recorded on the failure (and in the file).
    /// A replayed message that fails again is a new failure. Returns the replayed failures.
    pub async fn replay(&self, filter: &FailureFilter, publish: &dyn Publish) -> Vec<FailureRecord> {
        let claimed: Vec<FailureRecord> = {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent
                .iter_mut()
                .filter(|r| r.replay.is_none() && filter.matches(r))
                .map(|r| {
                    r.replay = Some(Replay { at: Timestamp::now().to_string(), outcome: "replaying".into() });
                    r.clone()
                })
                .collect()
        };
        let mut done = Vec::with_capacity(claimed.len());
        for mut r in claimed {
            let outcome = match replay_target(&r) {
                Ok((key, message)) => match publish.publish(&key, message).await {
                    Ok(()) => format!("republished to {key}"),
                    Err(e) => format!("not republished: {e}"),
                },
                Err(why) => format!("not republished: {why}"),
            };
            tracing::info!(failure = r.id, queue = r.queue, outcome, "failure replayed");
            let replay = Replay { at: Timestamp::now().to_string(), outcome };
            self.append(&serde_json::json!({ "replayed": r.id, "replay": replay }));
            if let Some(kept) =
                self.recent.lock().unwrap_or_else(|p| p.into_inner()).iter_mut().find(|k| k.id == r.id)
            {
                kept.replay = Some(replay.clone());
            }
            r.replay = Some(replay);
            done.push(r);
        }
        done
    }

    fn keep(&self, rec: FailureRecord) {
        // (`recent` is also filled from the file at start.)
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

/// Where a failure goes back to, and the message.
fn replay_target(r: &FailureRecord) -> Result<(RoutingKey, Message), String> {
    let (connector, kind) =
        r.queue.rsplit_once('.').ok_or_else(|| format!("`{}` is not a queue", r.queue))?;
    let connector = connector.parse().map_err(|e| format!("{e}"))?;
    let kind = match kind {
        "inbound" => QueueKind::Inbound,
        "outbound" => QueueKind::Outbound,
        "event" => QueueKind::Event,
        other => return Err(format!("a `{other}` queue is not replayed")),
    };
    let bytes = serde_json::to_vec(&r.message).map_err(|e| e.to_string())?;
    let message = Message::from_json(&bytes).map_err(|e| format!("the kept message does not decode: {e}"))?;
    Ok((RoutingKey { connector, kind }, message))
}

/// The queue a worker took `message` from on `connector`: user messages from `.inbound`, events
/// from `.event`.
pub fn input_queue(connector: &crate::names::ConnectorName, message: &Message) -> RoutingKey {
    match message {
        Message::Event(_) => RoutingKey::event(connector),
        _ => RoutingKey::inbound(connector),
    }
}
