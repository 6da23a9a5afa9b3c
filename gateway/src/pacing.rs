//! Adaptive write coalescing: how long a WebSocket connection may hold ticks after its
//! previous write before writing again.
//!
//! A write costs one syscall however few bytes it carries, and on loopback that syscall also
//! runs the receiver's TCP path: about 3 µs each, so one write per tick tops out near 200k
//! ticks/s on a core. Most connections of a busy server get only a few hundred ticks a
//! second each (1,000 dashboards on 10 of 100 symbols at 2,000 ticks/s), so batching what is
//! pending is not enough: each wake-up finds one tick. Under load each connection waits a
//! short *window* after its previous write, and everything that arrives in it goes out in
//! one write.
//!
//! The window comes from a budget of writes per second, not a fixed delay: while the
//! delivered rate `D` (frames/s, all connections) is under the budget `B`, the window is zero
//! and every tick is written at once — a quiet server keeps its microsecond latency. Above
//! it, with `C` connections each receiving `D/C` ticks/s, a window `W` gives each about
//! `(D/C) / (1 + W·D/C)` writes/s, so `W = C·(1/B − 1/D)` brings the total back to about `B`.
//! The delivered rate does not depend on the window, so the rule has no feedback loop to
//! oscillate. The window is capped at `max_window`.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// How often the window is recomputed.
pub(crate) const PERIOD: Duration = Duration::from_millis(100);
/// Windows shorter than the timer's resolution only add a timer per write: connections
/// busy enough to need them already batch by themselves (measured: at 20 connections ×
/// 100,000 ticks/s a 0.4 ms window, rounded up by the timer, cut delivery by a third).
const MIN_WINDOW: Duration = Duration::from_millis(1);

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Pacing {
    /// Frames written by all WebSocket connections so far.
    delivered: AtomicU64,
    /// The current window in microseconds (0: write at once).
    window_us: AtomicU64,
    budget_per_s: u64,
    max_window: Duration,
}

impl Pacing {
    /// `budget_per_s` of 0 turns coalescing off.
    pub(crate) fn new(budget_per_s: u64, max_window: Duration) -> Self {
        Self { delivered: AtomicU64::new(0), window_us: AtomicU64::new(0), budget_per_s, max_window }
    }

    /// Counts frames a connection just queued for writing.
    pub(crate) fn add_delivered(&self, frames: u64) {
        // Relaxed: a statistic sampled ten times a second.
        self.delivered.fetch_add(frames, Ordering::Relaxed);
    }

    /// How long a connection should wait after its previous write.
    pub(crate) fn window(&self) -> Duration {
        Duration::from_micros(self.window_us.load(Ordering::Relaxed))
    }

    /// Recomputes the window from the frames delivered since the last call, `elapsed` ago,
    /// with `connections` live. Returns the new window.
    pub(crate) fn update(&self, previous_delivered: &mut u64, elapsed: Duration, connections: usize) -> Duration {
        let delivered = self.delivered.load(Ordering::Relaxed);
        let frames = delivered.saturating_sub(*previous_delivered);
        *previous_delivered = delivered;
        let window = window_for(frames as f64 / elapsed.as_secs_f64().max(1e-3), connections, self.budget_per_s, self.max_window);
        self.window_us.store(window.as_micros() as u64, Ordering::Relaxed);
        window
    }
}

/// `W = C·(1/B − 1/D)` when `D > B`, else zero; zero below [`MIN_WINDOW`]; at most `max`.
fn window_for(delivered_per_s: f64, connections: usize, budget_per_s: u64, max: Duration) -> Duration {
    if budget_per_s == 0 || delivered_per_s <= budget_per_s as f64 {
        return Duration::ZERO;
    }
    let seconds = connections as f64 * (1.0 / budget_per_s as f64 - 1.0 / delivered_per_s);
    let window = Duration::from_secs_f64(seconds.max(0.0));
    if window < MIN_WINDOW {
        return Duration::ZERO;
    }
    window.min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_millis(50);

    #[test]
    fn under_budget_every_tick_goes_out_at_once() {
        assert_eq!(window_for(2_000.0, 100, 100_000, MAX), Duration::ZERO);
        assert_eq!(window_for(100_000.0, 1_000, 100_000, MAX), Duration::ZERO);
    }

    #[test]
    fn over_budget_the_window_brings_writes_back_to_the_budget() {
        // 1,000 connections sharing 200k frames/s against a budget of 100k writes/s: 5 ms,
        // after which each connection makes 200 / (1 + 0.005 · 200) = 100 writes/s.
        let window = window_for(200_000.0, 1_000, 100_000, MAX);
        assert_eq!(window.as_micros(), 5_000);
        let per_connection = 200.0 / (1.0 + window.as_secs_f64() * 200.0);
        assert!((per_connection * 1_000.0 - 100_000.0).abs() < 1.0);
    }

    #[test]
    fn few_busy_connections_batch_by_themselves_without_a_window() {
        // The firehose: 20 connections sharing 2M frames/s would get 0.39 ms.
        assert_eq!(window_for(2_000_000.0, 20, 50_000, MAX), Duration::ZERO);
    }

    #[test]
    fn the_window_is_capped_and_a_zero_budget_turns_it_off() {
        assert_eq!(window_for(500_000.0, 50_000, 100_000, MAX), MAX);
        assert_eq!(window_for(500_000.0, 5_000, 0, MAX), Duration::ZERO);
    }

    #[test]
    fn update_measures_the_rate_since_the_previous_call() {
        let pacing = Pacing::new(100_000, MAX);
        let mut seen = 0;
        pacing.add_delivered(20_000);
        // 20,000 frames in 100 ms = 200k/s over 1,000 connections.
        assert_eq!(pacing.update(&mut seen, Duration::from_millis(100), 1_000).as_micros(), 5_000);
        assert_eq!(pacing.window().as_micros(), 5_000);
        // Nothing since: back to zero.
        assert_eq!(pacing.update(&mut seen, Duration::from_millis(100), 1_000), Duration::ZERO);
    }
}
