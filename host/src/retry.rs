//! Trying again: the one way the host waits out a back end that is down, a plugin's
//! `retry-later`, a far end that refuses for now, or a lost connection.
//!
//! [`Retry::run`] runs an operation until it succeeds, fails for good (an error that retrying
//! cannot mend), or its attempts are spent; a stop during a wait ends it at once. Between tries
//! it waits on a jittered exponential schedule (steps from `initial` doubling to `max`; each wait
//! is its step plus a random part of up to half of it, so hosts restarted together do not retry
//! in step, and no wait is shorter than its step), counts
//! every wait in `vumi_retries_total{component,reason}` and
//! `vumi_retry_wait_seconds_total{component}`, and warns once per 10 s per component with a
//! count of what it held back. What the outcome means for a message taken from a queue (ack,
//! the retry path, the failure path) is decided in one place above this, `workers::settle`.
//!
//! The schedule's arithmetic is `backon`'s, the jitter `fastrand`'s. (backon's own jitter adds
//! up to a whole step on top, which would let the longest wait reach twice `max`; here it is
//! at most one and a half times `max`.)

use std::time::Duration;

use backon::BackoffBuilder;
use tokio_util::sync::CancellationToken;

pub use crate::config::RetryPolicy;
use crate::telemetry::metrics::metrics;
use crate::telemetry::throttle::Throttle;

/// An error as the retry loop sees it: whether trying again can mend it.
pub trait Transient: std::fmt::Display {
    /// `Some(reason)` if trying again may work (`reason` labels the wait in metrics:
    /// `unavailable`, `retry_later`, ...); `None` if it never will.
    fn retry_as(&self) -> Option<&'static str>;
}

/// Why [`Retry::run`] gave up.
#[derive(Debug)]
pub enum GaveUp<E> {
    /// A stop came during a wait: nothing more was tried.
    Stopped,
    /// An error trying again cannot mend.
    Failed(E),
    /// Every attempt failed; the last error.
    Spent {
        /// The last attempt's error.
        last: E,
        /// How many attempts were made.
        attempts: u32,
    },
}

impl<E: std::fmt::Display> std::fmt::Display for GaveUp<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GaveUp::Stopped => f.write_str("stopped while waiting to try again"),
            GaveUp::Failed(e) => write!(f, "{e}"),
            GaveUp::Spent { last, attempts } => write!(f, "{last} (after {attempts} tries in place)"),
        }
    }
}

/// The waits of one component (a lane, a dispatcher, a channel, a connection), reused for
/// every operation it retries: its warnings share one 10 s window.
#[derive(Debug)]
pub struct Retry {
    schedule: backon::ExponentialBuilder,
    attempts: Option<u32>,
    component: String,
    warned: Throttle,
}

impl Retry {
    /// Retries of `component` (its name in metrics and logs) by `policy`: at most
    /// `max_attempts` tries, waits from `initial_ms` doubling to `max_ms`.
    pub fn new(policy: &RetryPolicy, component: impl Into<String>) -> Self {
        let initial = Duration::from_millis(policy.initial_ms.max(1));
        let max = Duration::from_millis(policy.max_ms).max(initial);
        Self::with(initial, max, Some(policy.max_attempts.max(1)), component)
    }

    /// Retries until a success or a stop (a connection that must come back), waits from
    /// `initial` doubling to `max`.
    pub fn forever(initial: Duration, max: Duration, component: impl Into<String>) -> Self {
        Self::with(initial.max(Duration::from_millis(1)), max.max(initial), None, component)
    }

    fn with(initial: Duration, max: Duration, attempts: Option<u32>, component: impl Into<String>) -> Self {
        let schedule =
            backon::ExponentialBuilder::new().with_min_delay(initial).with_max_delay(max).with_factor(2.0);
        Self {
            schedule,
            attempts,
            component: component.into(),
            warned: Throttle::new(Duration::from_secs(10)),
        }
    }

    /// How many tries one operation gets (`None`: until it succeeds or is stopped).
    pub fn attempts(&self) -> Option<u32> {
        self.attempts
    }

    /// The component's name.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// The waits of one operation, jittered: each its step and up to half again. Without
    /// an end (the caller counts its attempts); for loops that are not a plain retry (a
    /// connection that serves between its losses starts a fresh schedule each time it is up).
    pub fn delays(&self) -> Delays {
        Delays(self.schedule.without_max_times().build())
    }

    /// Run `op` until it succeeds, fails for good, or its attempts are spent; between tries
    /// wait (see the module doc), unless `stop` comes first. `what` names the operation in the
    /// warning ("publish a reply", "reach the broker").
    pub async fn run<T, E, F, Fut>(
        &self,
        what: &str,
        stop: &CancellationToken,
        mut op: F,
    ) -> Result<T, GaveUp<E>>
    where
        E: Transient,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut delays = self.delays();
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            let e = match op().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let Some(reason) = e.retry_as() else { return Err(GaveUp::Failed(e)) };
            if self.attempts.is_some_and(|max| attempt >= max) {
                return Err(GaveUp::Spent { last: e, attempts: attempt });
            }
            let delay = delays.next().unwrap_or(Duration::from_secs(1));
            if let Some(held_back) = self.warned.hit() {
                tracing::warn!(
                    component = self.component,
                    reason,
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    error = %e,
                    held_back,
                    "cannot {what} yet; trying again after a wait",
                );
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stop.cancelled() => return Err(GaveUp::Stopped),
            }
            metrics().retry(&self.component, reason, delay);
        }
    }
}

/// A schedule of jittered waits (see [`Retry::delays`]).
#[derive(Debug)]
pub struct Delays(backon::ExponentialBackoff);

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.0.next().map(jitter)
    }
}

/// `d` and a random part of up to half of it again.
pub fn jitter(d: Duration) -> Duration {
    d.mul_f64(1.0 + fastrand::f64() * 0.5)
}

/// A plain error that is always worth another try (a far end that failed for now), labelled
/// `reason`; for operations whose errors carry no kind of their own.
#[derive(Debug, Clone)]
pub struct Again(pub &'static str, pub String);

impl std::fmt::Display for Again {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl Transient for Again {
    fn retry_as(&self) -> Option<&'static str> {
        Some(self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;

    /// An error that is transient until `permanent`.
    #[derive(Debug)]
    struct E(bool);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(if self.0 { "broken" } else { "down" })
        }
    }
    impl Transient for E {
        fn retry_as(&self) -> Option<&'static str> {
            (!self.0).then_some("unavailable")
        }
    }

    fn policy(attempts: u32) -> RetryPolicy {
        RetryPolicy { initial_ms: 100, max_ms: 1_000, max_attempts: attempts, ..Default::default() }
    }

    /// Log lines written while a test runs, for asserting what was said.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lines").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Lines {
        fn capture(&self) -> tracing::subscriber::DefaultGuard {
            let me = self.clone();
            let sub = tracing_subscriber::fmt().with_writer(move || me.clone()).with_ansi(false).finish();
            tracing::subscriber::set_default(sub)
        }
        fn matching(&self, needle: &str) -> Vec<String> {
            let text = String::from_utf8_lossy(&self.0.lock().expect("lines")).into_owned();
            text.lines().filter(|l| l.contains(needle)).map(str::to_owned).collect()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn it_gives_up_after_its_attempts_with_jittered_doubling_waits_and_one_warning_per_window() {
        let lines = Lines::default();
        let _log = lines.capture();
        let retry = Retry::new(&policy(5), "lane");
        let tries = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let stop = CancellationToken::new();
        let r: Result<(), _> = retry
            .run("reach the store", &stop, || async {
                tries.fetch_add(1, Ordering::Relaxed);
                Err(E(false))
            })
            .await;
        assert!(matches!(r, Err(GaveUp::Spent { attempts: 5, .. })), "{r:?}");
        assert_eq!(tries.load(Ordering::Relaxed), 5);
        // Four waits: each 100, 200, 400, 800 ms and up to half again.
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(1_500) && waited <= Duration::from_millis(2_250),
            "{waited:?}"
        );
        assert_eq!(r.map_err(|e| e.to_string()).unwrap_err(), "down (after 5 tries in place)");
        // Four waits, one warning: the rest were held back inside its 10 s window.
        let warned = lines.matching("cannot reach the store yet");
        assert_eq!(warned.len(), 1, "{warned:?}");

        // Past the window, the next warning counts what was held back.
        tokio::time::advance(Duration::from_secs(11)).await;
        let _: Result<(), _> = retry.run("reach the store", &stop, || async { Err(E(false)) }).await;
        let warned = lines.matching("cannot reach the store yet");
        assert_eq!(warned.len(), 2, "{warned:?}");
        assert!(warned[1].contains("held_back=3"), "{}", warned[1]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_retrying_cannot_mend_ends_it_at_once_and_a_success_returns_its_value() {
        let retry = Retry::new(&policy(8), "t");
        let stop = CancellationToken::new();
        let tries = AtomicU32::new(0);
        let r: Result<(), _> = retry
            .run("x", &stop, || async {
                tries.fetch_add(1, Ordering::Relaxed);
                Err(E(true))
            })
            .await;
        assert!(matches!(r, Err(GaveUp::Failed(E(true)))), "{r:?}");
        assert_eq!(tries.load(Ordering::Relaxed), 1);
        let n = AtomicU32::new(0);
        let r = retry
            .run("x", &stop, || async {
                if n.fetch_add(1, Ordering::Relaxed) < 2 { Err(E(false)) } else { Ok(7) }
            })
            .await;
        assert!(matches!(r, Ok(7)), "{r:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_during_a_wait_returns_at_once() {
        let retry = Retry::forever(Duration::from_secs(60), Duration::from_secs(600), "link");
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            stopper.cancel();
        });
        let start = tokio::time::Instant::now();
        let r: Result<(), _> = retry.run("x", &stop, || async { Err(E(false)) }).await;
        assert!(matches!(r, Err(GaveUp::Stopped)), "{r:?}");
        assert_eq!(start.elapsed(), Duration::from_secs(5), "not the 30-60 s wait it was in");
    }

    #[test]
    fn waits_double_to_the_bound_and_each_is_its_step_and_up_to_half_again() {
        let retry = Retry::new(&policy(8), "t");
        let steps = [100u64, 200, 400, 800, 1_000, 1_000, 1_000];
        let waits: Vec<u64> = retry.delays().zip(steps).map(|(d, _)| d.as_millis() as u64).collect();
        for (ms, step) in waits.iter().zip(steps) {
            assert!(*ms >= step && *ms <= step + step / 2, "{ms} ms for a step of {step} ms");
        }
        assert!(waits.windows(2).any(|w| w[0] != w[1]), "jittered, not in step: {waits:?}");
    }
}
