//! Waiting before trying a message again, instead of spinning on it.
//!
//! Two things send a message round again: a back end that is down (the state store, the bus),
//! and a plugin that answers `retry-later`. Either way the component keeps the message and waits
//! in place, with a delay that doubles from `initial` up to `max`, before it tries again; the
//! user's later messages wait behind it, so their order holds, and nothing is taken from the
//! queue meanwhile. The waits are counted in `vumi_retries_total` and
//! `vumi_retry_wait_seconds_total`.

use std::time::Duration;

pub use crate::config::RetryPolicy;
use crate::telemetry::metrics::metrics;

/// The waits of one component (a lane, a dispatcher's queue), across the messages it retries.
#[derive(Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    component: String,
    /// Waits in a row with no success between them.
    streak: u32,
}

impl Backoff {
    /// Waits for `component` (its name in metrics and logs).
    pub fn new(policy: RetryPolicy, component: impl Into<String>) -> Self {
        Self { policy, component: component.into(), streak: 0 }
    }

    /// The next wait: `initial` doubled for each wait in a row, at most `max`.
    pub fn next_delay(&self) -> Duration {
        let doublings = self.streak.min(32);
        let ms = self
            .policy
            .initial_ms
            .saturating_mul(1u64 << doublings)
            .min(self.policy.max_ms.max(self.policy.initial_ms));
        Duration::from_millis(ms)
    }

    /// Wait before trying again because of `reason` (`retry_later`, `unavailable`).
    pub async fn wait(&mut self, reason: &str) {
        let delay = self.next_delay();
        tracing::debug!(
            component = self.component,
            reason,
            delay_ms = delay.as_millis() as u64,
            "waiting before a retry"
        );
        tokio::time::sleep(delay).await;
        self.streak = self.streak.saturating_add(1);
        metrics().retry(&self.component, reason, delay);
    }

    /// How many tries one message gets in place.
    pub fn max_attempts(&self) -> u32 {
        self.policy.max_attempts.max(1)
    }

    /// A try succeeded: the next failure starts from `initial` again.
    pub fn reset(&mut self) {
        self.streak = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_bound_and_start_over_after_a_success() {
        let mut b = Backoff::new(
            RetryPolicy { initial_ms: 10, max_ms: 50, max_attempts: 3, ..Default::default() },
            "t",
        );
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push(b.next_delay().as_millis());
            b.streak += 1;
        }
        assert_eq!(seen, [10, 20, 40, 50, 50]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(10));
        b.streak = u32::MAX;
        assert_eq!(b.next_delay(), Duration::from_millis(50), "no overflow at a long streak");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_sleeps_the_delay() {
        let mut b = Backoff::new(
            RetryPolicy { initial_ms: 1000, max_ms: 8000, max_attempts: 3, ..Default::default() },
            "t",
        );
        let start = tokio::time::Instant::now();
        b.wait("unavailable").await;
        b.wait("unavailable").await;
        assert_eq!(start.elapsed(), Duration::from_millis(3000));
    }
}
