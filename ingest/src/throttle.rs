//! Rate limiting for warnings about misbehaving sources.
//!
//! A publisher that sends garbage at line rate must not turn the log into the bottleneck or
//! bury everything else, yet the operator must still learn how much was dropped. So each
//! source logs at most a few warnings per window, counts the rest, and reports that count
//! with its next warning or when it ends.

use std::time::{Duration, Instant};

/// Warnings allowed per window and source; enough to show a pattern, few enough to read.
pub(crate) const WARNINGS_PER_WINDOW: u32 = 10;
/// The window over which [`WARNINGS_PER_WINDOW`] applies.
pub(crate) const WINDOW: Duration = Duration::from_secs(1);

/// Whether to log one warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Log it, mentioning how many warnings were held back since the last one logged.
    Log {
        /// Warnings not logged since the previous logged one.
        suppressed: u64,
    },
    /// Count it silently.
    Quiet,
}

/// Per-source warning budget. Pure: the caller passes the time, which keeps it testable.
#[derive(Debug)]
pub(crate) struct WarnThrottle {
    per_window: u32,
    window: Duration,
    window_start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

impl Default for WarnThrottle {
    fn default() -> Self {
        Self::new(WARNINGS_PER_WINDOW, WINDOW)
    }
}

impl WarnThrottle {
    pub(crate) fn new(per_window: u32, window: Duration) -> Self {
        Self { per_window, window, window_start: None, in_window: 0, suppressed: 0 }
    }

    /// Decides about one warning happening at `now`.
    pub(crate) fn check(&mut self, now: Instant) -> Verdict {
        let expired = self.window_start.is_none_or(|start| now.saturating_duration_since(start) >= self.window);
        if expired {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.in_window < self.per_window {
            self.in_window += 1;
            Verdict::Log { suppressed: std::mem::take(&mut self.suppressed) }
        } else {
            self.suppressed += 1;
            Verdict::Quiet
        }
    }

    /// Warnings held back and not reported yet; resets the count.
    pub(crate) fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_a_few_per_window_and_reports_the_rest_later() {
        let mut throttle = WarnThrottle::new(2, Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(throttle.check(start), Verdict::Log { suppressed: 0 });
        assert_eq!(throttle.check(start), Verdict::Log { suppressed: 0 });
        for _ in 0..5 {
            assert_eq!(throttle.check(start + Duration::from_millis(500)), Verdict::Quiet);
        }
        assert_eq!(throttle.check(start + Duration::from_secs(1)), Verdict::Log { suppressed: 5 });
        assert_eq!(throttle.check(start + Duration::from_secs(1)), Verdict::Log { suppressed: 0 });
        assert_eq!(throttle.check(start + Duration::from_secs(1)), Verdict::Quiet);
        assert_eq!(throttle.take_suppressed(), 1);
        assert_eq!(throttle.take_suppressed(), 0);
    }
}
