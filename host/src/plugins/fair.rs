//! Fair CPU between tenants without per-tenant tuning: quick calls first.
//!
//! Each tenant's guest time is already capped by its `cpu_ms_per_sec`, but a cap high enough
//! for a tenant alone on a host (a core) lets one spinning tenant take that core from everyone
//! else. Measured (BENCHMARKS.md, noisy neighbour), a tenant of ordinary traffic (calls of a
//! few microseconds, tens of thousands a second) spends almost all its CPU outside guest code:
//! in transports, the bus and publishing. So splitting guest time evenly would not protect it;
//! what does is letting its quick calls go first. A call that has run more than
//! [`LONG_CALL`] of CPU is a long call; while another tenant's quick calls are being served
//! (one ended within [`RECENT`]), a tenant's long calls share its `background_cpu_ms_per_sec`
//! (100 ms/s by default), parked off the executor between slices. Alone, a tenant runs at full
//! speed; two tenants busy with long calls only, neither having quick calls, share the cores
//! evenly through the executor, as before. The operator's own plugins are never slowed, and
//! their quick calls count as someone else's.
//!
//! The record of who had quick calls lately is two (tenant, time) pairs, written only when
//! they change: a few relaxed atomics per call, and no lock on the message path.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How much CPU one call may use before it is a long call (in epoch ticks of 1 ms).
pub(crate) const LONG_CALL: u64 = 5;

/// How recently another tenant must have finished a quick call for a long call to give way.
pub(crate) const RECENT: Duration = Duration::from_millis(20);

/// The last two tenants seen finishing quick calls, and when (milliseconds since start). A
/// tenant is named by its rate buckets' address (0: the operator), which is stable while its
/// limits are.
#[derive(Debug)]
pub(crate) struct QuickCalls {
    start: Instant,
    who: [AtomicUsize; 2],
    when: [AtomicU64; 2],
}

impl QuickCalls {
    pub(crate) fn new() -> Self {
        Self { start: Instant::now(), who: Default::default(), when: Default::default() }
    }

    fn now_ms(&self) -> u64 {
        // Never 0, which stands for "never".
        self.start.elapsed().as_millis() as u64 + 1
    }

    /// Tenant `who` finished a quick call.
    pub(crate) fn ended(&self, who: usize) {
        self.ended_at(who, self.now_ms());
    }

    fn ended_at(&self, who: usize, now: u64) {
        if self.who[0].load(Ordering::Relaxed) == who {
            // Most calls: the same tenant as last time; write only when the millisecond moved.
            if self.when[0].load(Ordering::Relaxed) != now {
                self.when[0].store(now, Ordering::Relaxed);
            }
            return;
        }
        // Another tenant: it becomes the most recent, the previous one the other slot.
        // Racing writers may mix the two slots up; the record is approximate by design.
        self.who[1].store(self.who[0].load(Ordering::Relaxed), Ordering::Relaxed);
        self.when[1].store(self.when[0].load(Ordering::Relaxed), Ordering::Relaxed);
        self.who[0].store(who, Ordering::Relaxed);
        self.when[0].store(now, Ordering::Relaxed);
    }

    /// Whether a tenant other than `who` finished a quick call within [`RECENT`].
    pub(crate) fn others_busy(&self, who: usize) -> bool {
        self.others_busy_at(who, self.now_ms())
    }

    fn others_busy_at(&self, who: usize, now: u64) -> bool {
        let recent = RECENT.as_millis() as u64;
        (0..2).any(|i| {
            let when = self.when[i].load(Ordering::Relaxed);
            when != 0 && self.who[i].load(Ordering::Relaxed) != who && now.saturating_sub(when) <= recent
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_sees_others_quick_calls_and_never_its_own() {
        let q = QuickCalls::new();
        assert!(!q.others_busy_at(1, 1), "nobody yet");
        q.ended_at(1, 1);
        assert!(!q.others_busy_at(1, 2), "its own calls do not slow it");
        assert!(q.others_busy_at(2, 2));
        q.ended_at(2, 3);
        assert!(q.others_busy_at(1, 4) && q.others_busy_at(2, 4), "each sees the other");
        q.ended_at(0, 5);
        assert!(
            q.others_busy_at(1, 6) && q.others_busy_at(2, 6),
            "the operator's quick calls count for both"
        );
        let later = 6 + RECENT.as_millis() as u64 + 1;
        assert!(
            !q.others_busy_at(1, later) && !q.others_busy_at(2, later),
            "quiet: long calls run at full speed"
        );
    }
}
