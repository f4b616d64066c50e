//! Rate-limited log lines. Under overload the same line can repeat for every message (a `503`,
//! a failure, a refused callback): thousands a second, megabytes of log that say one thing.
//! A [`Throttle`] lets a burst of lines through per window and counts the rest, so the next line
//! says how many it stands for ("4,812 more in the last 10 s"). At a low rate every line is said. Counters in `/metrics` keep the exact
//! figures; the log keeps its signal.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

// tokio's clock (the system's outside tests), so a test on paused time can step a window.
use tokio::time::Instant;

/// One rate-limited log line (keep it in a `static` at the call site, or in the component).
#[derive(Debug)]
pub struct Throttle {
    window: Duration,
    burst: u32,
    /// When the current window began, and how many lines it has let through.
    state: Mutex<Option<(Instant, u32)>>,
    suppressed: AtomicU64,
}

impl Throttle {
    /// At most one line per `window`.
    pub const fn new(window: Duration) -> Self {
        Self::with_burst(window, 1)
    }

    /// At most `burst` lines per `window`.
    pub const fn with_burst(window: Duration, burst: u32) -> Self {
        Self { window, burst, state: Mutex::new(None), suppressed: AtomicU64::new(0) }
    }

    /// Whether to log now: `Some(n)` with the number of lines held back since the last one
    /// logged, or `None` to hold this one back.
    pub fn hit(&self) -> Option<u64> {
        self.hit_at(Instant::now())
    }

    fn hit_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *state {
            Some((began, said)) if now.duration_since(*began) < self.window => {
                if *said < self.burst {
                    *said += 1;
                    Some(0)
                } else {
                    self.suppressed.fetch_add(1, Ordering::Relaxed);
                    None
                }
            }
            _ => {
                *state = Some((now, 1));
                Some(self.suppressed.swap(0, Ordering::Relaxed))
            }
        }
    }

    /// The window, in whole seconds, for the "in the last N s" of a summary.
    pub fn window_secs(&self) -> u64 {
        self.window.as_secs().max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_window_then_the_count_of_what_was_held_back() {
        let t = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.hit_at(t0), Some(0), "the first one is logged");
        for i in 1..=4812 {
            assert_eq!(t.hit_at(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(
            t.hit_at(t0 + Duration::from_secs(10)),
            Some(4812),
            "the next window's first line counts the rest"
        );
        assert_eq!(t.hit_at(t0 + Duration::from_secs(11)), None);
        assert_eq!(t.hit_at(t0 + Duration::from_secs(25)), Some(1));
    }

    #[test]
    fn a_burst_passes_whole_and_only_the_excess_is_counted() {
        let t = Throttle::with_burst(Duration::from_secs(10), 3);
        let t0 = Instant::now();
        let said: Vec<Option<u64>> = (0..5).map(|i| t.hit_at(t0 + Duration::from_millis(i))).collect();
        assert_eq!(said, [Some(0), Some(0), Some(0), None, None]);
        assert_eq!(t.hit_at(t0 + Duration::from_secs(10)), Some(2));
    }
}
