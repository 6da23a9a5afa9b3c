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
//! oscillate, except where the timer cannot make the window asked for: see [`short_window`].
//! The window is capped at `max_window`.
//!
//! The budget is a floor, not a ceiling: a window trades latency for CPU, and a server with
//! CPU to spare should not pay latency for nothing. So the budget in use rises 10% per period
//! while the process keeps its cores less than 85% busy, and falls back towards the
//! configured budget while they are more than 95% busy; in between it stays. It moves slowly
//! (a period is 100 ms) and only within that band, so it settles rather than swings. The band
//! sits high because holding ticks while the core has room costs latency for nothing: 1,000
//! dashboards on a host where they nearly saturate the core had a p50 of 1.5–1.8 ms and a p99
//! of 5.9–36 ms at 82–83% CPU with a band of 75–90%, and 0.45–1.15 ms and 4.1–5.5 ms at
//! 88–90% with this one.
//!
//! The cap on the window (`--max-coalesce-ms`) bounds how long a tick waits to be coalesced,
//! which holds only while the server can afford the writes the cap forces. When the window
//! the budget asks for is longer than the cap and the cores are more than 90% busy, the
//! extra writes only queue: 5,000 connections on one symbol at 100 ticks/s, capped at 20 ms,
//! had a p50 of 23–38 ms at 99% CPU, against 21–23 ms at 90–96% CPU with this rule. So in
//! that case the cap in use stretches 10% per period, up to [`MAX_STRETCH`] times the
//! configured one, and comes back 10% per period while the cores are less than 75% busy.
//! Twice, not more: stretched to four times, the window grew to what the budget asked for
//! (57 ms there), and the p99 with it. The cap keeps this lower band of its own: following
//! the budget's, it stretched only above 95% busy, and the storm's p99 was 65 and 102 ms in
//! two runs against 43 and 79 with 75–90%.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// How often the window is recomputed.
pub(crate) const PERIOD: Duration = Duration::from_millis(100);
/// The shortest window the timer makes: one the budget asks for below it is either none or
/// this ([`short_window`]). Connections busy enough to want one that short usually batch by
/// themselves (measured: at 20 connections × 100,000 ticks/s a 0.4 ms window, rounded up by
/// the timer, cut delivery by a third).
const MIN_WINDOW: Duration = Duration::from_millis(1);

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Pacing {
    /// Frames written by all connections so far.
    delivered: AtomicU64,
    /// The writes that carried them.
    writes: AtomicU64,
    /// The current window in microseconds (0: write at once).
    window_us: AtomicU64,
    /// The configured budget (`--write-budget`): the least the budget in use falls to.
    budget_per_s: u64,
    /// The budget in use, raised above `budget_per_s` while the CPU has room.
    budget_in_use: AtomicU64,
    /// The configured cap on the window (`--max-coalesce-ms`).
    max_window: Duration,
    /// The cap in use in microseconds, stretched above `max_window` while the CPU is saturated.
    cap_in_use_us: AtomicU64,
}

/// The band of busy shares inside which the budget in use stays: below it the budget rises,
/// above it it falls back (never below the configured one).
const BUDGET_BAND: Band = Band { room_below: 0.85, saturated_above: 0.95 };
/// The band the cap in use follows: stretched above it while it binds, brought back below.
const CAP_BAND: Band = Band { room_below: 0.75, saturated_above: 0.90 };
/// How much the budget in use moves per period.
const BUDGET_STEP: f64 = 1.10;
/// The budget in use never exceeds the configured one by more than this factor.
const MAX_RAISE: f64 = 8.0;
/// The cap in use never exceeds the configured one by more than this factor.
const MAX_STRETCH: f64 = 2.0;

impl Pacing {
    /// `budget_per_s` of 0 turns coalescing off.
    pub(crate) fn new(budget_per_s: u64, max_window: Duration) -> Self {
        Self {
            delivered: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            window_us: AtomicU64::new(0),
            budget_per_s,
            budget_in_use: AtomicU64::new(budget_per_s),
            max_window,
            cap_in_use_us: AtomicU64::new(max_window.as_micros() as u64),
        }
    }

    /// Counts one write of `frames` frames that a connection just made or queued.
    pub(crate) fn add_delivered(&self, frames: u64) {
        // Relaxed: statistics sampled ten times a second.
        self.delivered.fetch_add(frames, Ordering::Relaxed);
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    /// How long a connection should wait after its previous write.
    pub(crate) fn window(&self) -> Duration {
        Duration::from_micros(self.window_us.load(Ordering::Relaxed))
    }

    /// Recomputes the window from the frames and writes counted since the last call (`seen`
    /// holds the counts then), `elapsed` ago, with `connections` live and the process's cores
    /// `busy` (0–1; `None` if unknown) over the same time. Returns the new window.
    pub(crate) fn update(&self, seen: &mut Seen, elapsed: Duration, connections: usize, busy: Option<f64>) -> Duration {
        let now = Seen { frames: self.delivered.load(Ordering::Relaxed), writes: self.writes.load(Ordering::Relaxed) };
        let frames = now.frames.saturating_sub(seen.frames);
        let writes = now.writes.saturating_sub(seen.writes);
        *seen = now;
        // Relaxed: only this method (one task) writes it.
        let budget = next_budget(self.budget_in_use.load(Ordering::Relaxed), self.budget_per_s, busy);
        self.budget_in_use.store(budget, Ordering::Relaxed);
        let delivered_per_s = frames as f64 / elapsed.as_secs_f64().max(1e-3);
        let wanted = window_for(delivered_per_s, connections, budget);
        let cap = Duration::from_micros(self.cap_in_use_us.load(Ordering::Relaxed));
        let cap = next_cap(cap, self.max_window, busy, wanted > cap);
        self.cap_in_use_us.store(cap.as_micros() as u64, Ordering::Relaxed);
        let window = if wanted >= MIN_WINDOW {
            wanted
        } else {
            let holding = !self.window().is_zero();
            short_window(wanted, holding, busy, frames as f64 / writes.max(1) as f64)
        };
        let window = window.min(cap);
        self.window_us.store(window.as_micros() as u64, Ordering::Relaxed);
        window
    }
}

/// The counts [`Pacing::update`] saw at its previous call.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Seen {
    frames: u64,
    writes: u64,
}

/// Shares of the cores busy (0–1) between which a setting holds still.
struct Band {
    room_below: f64,
    saturated_above: f64,
}

/// Where the cores' busy share stands against a [`Band`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    /// Under the band: CPU to spare.
    Room,
    /// Inside the band, or not known: nothing moves.
    Steady,
    /// Over the band.
    Saturated,
}

impl Band {
    fn load(&self, busy: Option<f64>) -> Load {
        match busy {
            Some(busy) if busy < self.room_below => Load::Room,
            Some(busy) if busy > self.saturated_above => Load::Saturated,
            _ => Load::Steady,
        }
    }
}

/// The budget in use after one period: see the module docs.
fn next_budget(in_use: u64, configured: u64, busy: Option<f64>) -> u64 {
    let in_use = in_use as f64;
    let next = match BUDGET_BAND.load(busy) {
        Load::Room => in_use * BUDGET_STEP,
        Load::Saturated => in_use / BUDGET_STEP,
        Load::Steady => in_use,
    };
    next.clamp(configured as f64, configured as f64 * MAX_RAISE) as u64
}

/// The cap on the window after one period: see the module docs. `binds` says whether the
/// window the budget asks for is longer than the cap in use.
fn next_cap(in_use: Duration, configured: Duration, busy: Option<f64>, binds: bool) -> Duration {
    let next = match CAP_BAND.load(busy) {
        Load::Saturated if binds => in_use.mul_f64(BUDGET_STEP),
        Load::Room => in_use.div_f64(BUDGET_STEP),
        Load::Saturated | Load::Steady => in_use,
    };
    next.clamp(configured, configured.mul_f64(MAX_STRETCH))
}

/// CPU time the whole process has used so far (user and system), or `None` if the system
/// will not say.
pub(crate) fn process_cpu_time() -> Option<Duration> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: `getrusage` writes a whole `rusage` into the pointer it is given, which points
    // at one, and reports failure without touching it.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let time = |t: libc::timeval| -> Option<Duration> {
        Some(Duration::from_secs(u64::try_from(t.tv_sec).ok()?) + Duration::from_micros(u64::try_from(t.tv_usec).ok()?))
    };
    Some(time(usage.ru_utime)? + time(usage.ru_stime)?)
}

/// `W = C·(1/B − 1/D)` when `D > B`, else zero.
fn window_for(delivered_per_s: f64, connections: usize, budget_per_s: u64) -> Duration {
    if budget_per_s == 0 || delivered_per_s <= budget_per_s as f64 {
        return Duration::ZERO;
    }
    let seconds = connections as f64 * (1.0 / budget_per_s as f64 - 1.0 / delivered_per_s);
    Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX)
}

/// The window when the one the budget asks for, `wanted`, is shorter than [`MIN_WINDOW`]
/// (zero if it asks for none): either none or `MIN_WINDOW`.
///
/// That choice is a cliff, not one of the budget's 10% steps: 200 SSE streams of 5,000
/// ticks/s each make about 78,000 writes/s with a 2.5 ms window and could make a million with
/// none. Taking it whenever the budget rose past it, such a server at 85–90% busy spent one
/// period in eight without a window, and each of those 15 periods was followed by one at
/// 98.5–100% busy, after which the budget fell back and the window returned.
///
/// So a server holding ticks (`holding`) drops the window only if writing every tick on its
/// own would still leave its cores out of saturation, estimated as `busy` times the frames
/// each write carries now. With a 1 ms window, 1,000 dashboards of 200 ticks/s each carry
/// about 1.2 frames a write, so at 60% busy they drop it; those SSE streams carry about 6.
/// One holding none measures what that costs instead of estimating it, and takes the
/// shortest window only once its cores saturate while the budget asks for fewer writes.
fn short_window(wanted: Duration, holding: bool, busy: Option<f64>, frames_per_write: f64) -> Duration {
    let Some(busy) = busy else { return Duration::ZERO };
    let saturated = BUDGET_BAND.saturated_above;
    let keep = if holding {
        busy * frames_per_write.max(1.0) > saturated
    } else {
        !wanted.is_zero() && busy > saturated
    };
    if keep {
        MIN_WINDOW
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_millis(50);

    #[test]
    fn under_budget_every_tick_goes_out_at_once() {
        assert_eq!(window_for(2_000.0, 100, 100_000), Duration::ZERO);
        assert_eq!(window_for(100_000.0, 1_000, 100_000), Duration::ZERO);
    }

    #[test]
    fn over_budget_the_window_brings_writes_back_to_the_budget() {
        // 1,000 connections sharing 200k frames/s against a budget of 100k writes/s: 5 ms,
        // after which each connection makes 200 / (1 + 0.005 · 200) = 100 writes/s.
        let window = window_for(200_000.0, 1_000, 100_000);
        assert_eq!(window.as_micros(), 5_000);
        let per_connection = 200.0 / (1.0 + window.as_secs_f64() * 200.0);
        assert!((per_connection * 1_000.0 - 100_000.0).abs() < 1.0);
    }

    #[test]
    fn few_busy_connections_batch_by_themselves_without_a_window() {
        // The firehose: 20 connections sharing 2M frames/s would get 0.39 ms, too short for
        // the timer; they batch by themselves, 50 frames a write, on a core 31–46% busy.
        let wanted = window_for(2_000_000.0, 20, 50_000);
        assert_eq!(wanted.as_micros(), 390);
        assert_eq!(short_window(wanted, false, Some(0.46), 50.0), Duration::ZERO);
    }

    #[test]
    fn a_window_too_short_for_the_timer_is_kept_only_while_dropping_it_would_saturate() {
        let wanted = Duration::from_micros(900);
        // Holding: 6 frames a write at 85% busy would be 5 times the writes without a window.
        assert_eq!(short_window(wanted, true, Some(0.85), 6.0), MIN_WINDOW);
        let none_asked = short_window(Duration::ZERO, true, Some(0.85), 6.0);
        assert_eq!(none_asked, MIN_WINDOW, "even where the budget asks for none");
        // 1.2 frames a write at 60% busy: at most 72% without one.
        assert_eq!(short_window(wanted, true, Some(0.6), 1.2), Duration::ZERO);
        // Holding none: measured, not estimated; a window comes back only on saturation
        // while the budget asks for fewer writes.
        assert_eq!(short_window(wanted, false, Some(0.9), 6.0), Duration::ZERO);
        assert_eq!(short_window(wanted, false, Some(0.99), 6.0), MIN_WINDOW);
        assert_eq!(short_window(Duration::ZERO, false, Some(0.99), 6.0), Duration::ZERO);
        assert_eq!(short_window(wanted, true, None, 6.0), Duration::ZERO, "unknown load: no window");
    }

    /// 200 SSE streams of 5,000 ticks/s each (1M frames/s), six frames a write, at 80% busy:
    /// the budget keeps rising, but the window stays at the timer's shortest rather than
    /// dropping to none. 1,000 dashboards at 60% busy, 1.2 frames a write, do drop it.
    #[test]
    fn a_rising_budget_does_not_push_a_busy_server_off_the_cliff() {
        let run = |connections: usize, frames: u64, writes: u64, busy: f64| {
            let pacing = Pacing::new(75_000, Duration::from_millis(20));
            let mut seen = Seen::default();
            let mut windows = Vec::new();
            for _ in 0..40 {
                // Through the connections' own call, `frames` spread over `writes` calls.
                for write in 0..writes {
                    pacing.add_delivered(frames / writes + u64::from(write < frames % writes));
                }
                windows.push(pacing.update(&mut seen, Duration::from_millis(100), connections, Some(busy)));
            }
            windows
        };
        let sse = run(200, 100_000, 17_000, 0.80);
        assert!(sse[0] > Duration::from_millis(2), "opens at the configured budget: {:?}", sse[0]);
        assert_eq!(sse.last(), Some(&MIN_WINDOW), "{sse:?}");
        assert!(sse.iter().all(|w| *w >= MIN_WINDOW), "{sse:?}");
        let dashboard = run(1_000, 20_000, 16_700, 0.60);
        assert!(dashboard[0] > Duration::from_millis(5), "{:?}", dashboard[0]);
        assert_eq!(dashboard.last(), Some(&Duration::ZERO), "{dashboard:?}");
    }

    #[test]
    fn the_window_is_capped_and_a_zero_budget_turns_it_off() {
        let pacing = Pacing::new(100_000, MAX);
        pacing.add_delivered(50_000);
        assert_eq!(pacing.update(&mut Seen::default(), Duration::from_millis(100), 50_000, None), MAX);
        assert_eq!(window_for(500_000.0, 5_000, 0), Duration::ZERO);
    }

    #[test]
    fn update_measures_the_rate_since_the_previous_call() {
        let pacing = Pacing::new(100_000, MAX);
        let mut seen = Seen::default();
        pacing.add_delivered(20_000);
        // 20,000 frames in 100 ms = 200k/s over 1,000 connections.
        assert_eq!(pacing.update(&mut seen, Duration::from_millis(100), 1_000, None).as_micros(), 5_000);
        assert_eq!(pacing.window().as_micros(), 5_000);
        // Nothing since: back to zero.
        assert_eq!(pacing.update(&mut seen, Duration::from_millis(100), 1_000, None), Duration::ZERO);
    }

    #[test]
    fn the_budget_rises_while_the_cpu_has_room_and_falls_back_to_the_configured_one() {
        let mut budget = 75_000;
        for _ in 0..5 {
            budget = next_budget(budget, 75_000, Some(0.5));
        }
        assert!(budget > 75_000 * 3 / 2, "raised: {budget}");
        assert_eq!(next_budget(budget, 75_000, Some(0.9)), budget, "steady inside the band");
        assert!(next_budget(budget, 75_000, Some(0.8)) > budget, "raised at 80% busy, where the cap holds still");
        assert_eq!(next_budget(budget, 75_000, None), budget, "unknown load changes nothing");
        for _ in 0..50 {
            budget = next_budget(budget, 75_000, Some(0.99));
        }
        assert_eq!(budget, 75_000, "never below the configured budget");
        for _ in 0..200 {
            budget = next_budget(budget, 75_000, Some(0.1));
        }
        assert_eq!(budget, 600_000, "at most eight times the configured budget");
        assert_eq!(next_budget(0, 0, Some(0.1)), 0, "a zero budget stays off");
        assert_eq!(next_budget(budget, 75_000, Some(0.93)), budget, "lowered only above 95% busy");
    }

    #[test]
    fn the_cap_stretches_only_while_it_binds_on_a_saturated_cpu() {
        let configured = Duration::from_millis(20);
        let mut cap = configured;
        cap = next_cap(cap, configured, Some(0.99), false);
        assert_eq!(cap, configured, "a cap that does not bind stays");
        cap = next_cap(cap, configured, Some(0.8), true);
        assert_eq!(cap, configured, "a cap that binds with CPU to spare stays");
        cap = next_cap(cap, configured, None, true);
        assert_eq!(cap, configured, "unknown load changes nothing");
        for _ in 0..5 {
            cap = next_cap(cap, configured, Some(0.99), true);
        }
        assert!(cap > configured.mul_f64(1.5) && cap < configured.mul_f64(1.7), "stretched: {cap:?}");
        assert_eq!(next_cap(cap, configured, Some(0.8), true), cap, "steady inside the band");
        for _ in 0..100 {
            cap = next_cap(cap, configured, Some(0.99), true);
        }
        assert_eq!(cap, Duration::from_millis(40), "at most twice the configured cap");
        for _ in 0..100 {
            cap = next_cap(cap, configured, Some(0.3), true);
        }
        assert_eq!(cap, configured, "back to the configured cap, never below");
        assert_eq!(next_cap(Duration::ZERO, Duration::ZERO, Some(0.99), true), Duration::ZERO, "a zero cap stays zero");
    }

    #[test]
    fn update_stretches_a_binding_cap_and_uses_it() {
        // 5,000 connections sharing 500k frames/s against 75k writes/s want 56.7 ms.
        let pacing = Pacing::new(75_000, Duration::from_millis(20));
        let mut seen = Seen::default();
        pacing.add_delivered(50_000);
        let first = pacing.update(&mut seen, Duration::from_millis(100), 5_000, Some(0.99));
        assert_eq!(first, Duration::from_millis(22), "one step above the configured 20 ms");
        pacing.add_delivered(50_000);
        assert_eq!(pacing.update(&mut seen, Duration::from_millis(100), 5_000, Some(0.5)), Duration::from_millis(20));
    }

    #[test]
    fn process_cpu_time_goes_up_with_work() {
        let before = process_cpu_time().expect("getrusage works on Linux");
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(process_cpu_time().expect("again") > before);
    }
}
