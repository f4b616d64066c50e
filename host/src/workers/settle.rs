//! Settling a message taken from a queue: the one step that turns how its handling ended into
//! what becomes of the delivery.
//!
//! Every worker that takes a message (an app lane, a dispatcher's queue consumer, the events
//! router) tries it with [`Retry::run`](crate::retry::Retry::run) and hands the outcome here:
//!
//! | outcome | the delivery |
//! |---|---|
//! | handled | acked |
//! | a stop came while it waited to try again | left unsettled: back on its queue |
//! | held up through its tries in place (a back end down, a `retry-later`) | set aside on the retry path's next delay tier; past the last, a temporary failure |
//! | a problem no retry mends | recorded on the failure path, then acked |
//!
//! So "taken" always ends in exactly one of those, whichever component took it.

use crate::bus::{Delivery, RoutingKey};
use crate::retry::{GaveUp, Transient};

use super::FailureLog;

/// How one try of a message went wrong.
#[derive(Debug)]
pub enum Trouble {
    /// Worth another try: a back end is down, or the handler said `retry-later`. `kind` labels
    /// the waits in metrics and, if the tries run out, the record on the failure path.
    Again {
        /// `unavailable`, `state_unavailable`, `retry_later`.
        kind: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// Never worth another: recorded on the failure path as `kind`.
    Fail {
        /// The failure's kind (`unroutable_event`, a router's verdict ...).
        kind: String,
        /// What went wrong.
        reason: String,
    },
}

impl Trouble {
    /// Worth another try.
    pub fn again(kind: &'static str, reason: impl Into<String>) -> Self {
        Trouble::Again { kind, reason: reason.into() }
    }

    /// Never worth another.
    pub fn fail(kind: impl Into<String>, reason: impl Into<String>) -> Self {
        Trouble::Fail { kind: kind.into(), reason: reason.into() }
    }

    fn kind(&self) -> &str {
        match self {
            Trouble::Again { kind, .. } => kind,
            Trouble::Fail { kind, .. } => kind,
        }
    }
}

impl std::fmt::Display for Trouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trouble::Again { reason, .. } | Trouble::Fail { reason, .. } => f.write_str(reason),
        }
    }
}

impl Transient for Trouble {
    fn retry_as(&self) -> Option<&'static str> {
        match self {
            Trouble::Again { kind, .. } => Some(kind),
            Trouble::Fail { .. } => None,
        }
    }
}

/// Settle `delivery`, taken from `queue` by `component`, by how its handling ended (see the
/// module doc).
pub async fn settle(
    failures: &FailureLog,
    component: &str,
    queue: &RoutingKey,
    delivery: Delivery,
    outcome: Result<(), GaveUp<Trouble>>,
) {
    match outcome {
        Ok(()) => delivery.ack(),
        // Dropped unsettled: the bus gives it back to its queue.
        Err(GaveUp::Stopped) => drop(delivery),
        Err(GaveUp::Failed(t)) => {
            failures.record(component, queue, t.kind(), &t.to_string(), &delivery.message).await;
            delivery.ack();
        }
        Err(GaveUp::Spent { last, attempts }) => {
            let reason = format!("{last} (after {attempts} tries in place)");
            failures.retry_or_fail(component, queue, last.kind(), &reason, delivery).await;
        }
    }
}
