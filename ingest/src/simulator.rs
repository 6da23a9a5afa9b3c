//! The default source: a [`Market`] published at a steady rate on its own thread.
//!
//! Pacing works from the clock, not from sleeps per tick: the number of ticks due is
//! `elapsed × rate` since the start, and every wake-up publishes whatever is due in one
//! [`Engine::publish_batch`] (one wake-up of subscribers per batch, not per tick). Between
//! batches the thread sleeps about half a millisecond, which the OS honours well enough
//! that 200,000 ticks/s stays within a few percent while using little CPU at low rates.
//!
//! If the thread was held up (a stalled machine, a debugger), it does not fire the whole
//! backlog at once: at most [`MAX_BACKLOG`] worth of ticks is caught up and the rest is
//! skipped, so subscribers see the feed resume rather than a burst.
//!
//! It runs on a dedicated std thread, not a tokio worker: generating and publishing is
//! CPU work with no awaits, and sharing a worker would both starve other tasks and make
//! the rate depend on them.

use std::{
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use feed_engine::{Engine, Quote};
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn};

use crate::{
    market::Market,
    stats::{IngestStats, SourceKind},
    throttle::{Verdict, WarnThrottle},
    Error,
};

/// Most symbols a simulator may have. The engine keeps a history ring per symbol, so each
/// symbol costs `--history` slots whether it ticks often or not.
pub const MAX_SYMBOLS: usize = 100_000;
/// Highest rate accepted, in ticks per second over all symbols.
pub const MAX_RATE: f64 = 10_000_000.0;
/// Most catch-up after a stall, as time worth of ticks.
pub const MAX_BACKLOG: Duration = Duration::from_millis(50);
/// Shortest sleep between batches.
const MIN_PAUSE: Duration = Duration::from_micros(500);
/// Longest sleep between batches, which bounds how late a shutdown is noticed.
const MAX_PAUSE: Duration = Duration::from_millis(20);
/// Most ticks per `publish_batch`, so subscribers are woken at least this often.
const MAX_BATCH: usize = 4096;

/// Simulator settings (`--sim-symbols`, `--sim-rate`, `--sim-seed`).
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Exactly this many distinct symbols.
    pub symbols: usize,
    /// Ticks per second over all symbols together.
    pub rate: f64,
    /// The same seed gives the same symbols, prices and sizes.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self { symbols: 100, rate: 1000.0, seed: 1 }
    }
}

impl SimConfig {
    /// Checks the settings, for a clear message at startup.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a symbol count outside `1..=MAX_SYMBOLS` or a rate that
    /// is not a number in `[0, MAX_RATE]` (0: the symbols exist but never tick).
    pub fn validate(&self) -> Result<(), Error> {
        if !(1..=MAX_SYMBOLS).contains(&self.symbols) {
            return Err(Error::InvalidConfig {
                setting: "sim-symbols",
                reason: format!("{} is outside 1..={MAX_SYMBOLS}", self.symbols),
            });
        }
        if !(self.rate >= 0.0 && self.rate <= MAX_RATE) {
            return Err(Error::InvalidConfig {
                setting: "sim-rate",
                reason: format!("{} is not a rate in [0, {MAX_RATE}] ticks per second", self.rate),
            });
        }
        Ok(())
    }
}

/// Starts the simulator on its own thread; it publishes until `shutdown` is cancelled.
/// An invalid config is logged as an error and the thread ends at once: call
/// [`SimConfig::validate`] first to refuse it at startup instead.
///
/// # Panics
/// When the OS cannot start a thread, as [`std::thread::spawn`] does.
pub fn spawn(
    engine: Engine,
    config: SimConfig,
    shutdown: CancellationToken,
    stats: Arc<IngestStats>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("tickfeed-simulator".into())
        .spawn(move || run(&engine, &config, &shutdown, &stats))
        .expect(
            "starting a thread only fails when the OS is out of threads, which std::thread::spawn also treats as fatal",
        )
}

fn run(engine: &Engine, config: &SimConfig, shutdown: &CancellationToken, stats: &IngestStats) {
    let _span = info_span!("simulator", symbols = config.symbols, rate = config.rate, seed = config.seed).entered();
    if let Err(error) = config.validate() {
        tracing::error!(%error, "simulator not started");
        return;
    }
    info!("simulator started");
    let mut market = Market::new(config.symbols, config.seed);
    let names = market.names();
    // Known from the start, so /symbols lists the whole market before every symbol ticked
    // (and at --sim-rate 0, when none ever does).
    for name in names.iter() {
        if let Err(error) = engine.register(name) {
            tracing::error!(%error, "simulated symbol refused");
        }
    }
    let mut quotes: Vec<Quote<'_>> = Vec::with_capacity(MAX_BATCH);
    let mut pacer = Pacer::new(config.rate);
    let mut throttle = WarnThrottle::default();
    let start = Instant::now();
    let clock = DueClock::new(config.rate);
    while !shutdown.is_cancelled() {
        let elapsed = start.elapsed();
        let due = pacer.take_due(elapsed);
        if due.skipped > 0 {
            if let Verdict::Log { suppressed } = throttle.check(Instant::now()) {
                warn!(skipped = due.skipped, suppressed, "simulator fell behind; skipped ticks instead of bursting");
            }
        }
        let mut remaining = due.ticks;
        // The run's number of the next tick, for its `src_ts`.
        let mut n = pacer.sent - due.ticks;
        while remaining > 0 {
            let batch = remaining.min(MAX_BATCH as u64) as usize;
            quotes.clear();
            quotes.extend((0..batch).map(|_| {
                n += 1;
                Quote { src_ts_us: Some(clock.due_us(n)), ..market.step().quote(&names) }
            }));
            let published = engine.publish_batch(&quotes);
            stats.add_published(SourceKind::Simulator, published as u64);
            remaining -= batch as u64;
        }
        std::thread::sleep(pacer.pause(start.elapsed(), elapsed));
    }
    // One line a benchmark can read (`benches/peers/run.sh` does): how many ticks went out
    // and how late, which no tick's `ts` shows.
    let late = pacer.late;
    info!(
        published = pacer.sent - pacer.skipped,
        skipped = pacer.skipped,
        late_over_2ms = late.over_2ms,
        late_over_5ms = late.over_5ms,
        late_max_us = late.max.as_micros() as u64,
        "simulator stopped"
    );
}

/// How late published ticks went out, against when each was due: the `n`-th tick of the run
/// `n / rate` after the start. The engine stamps `ts` as it publishes, so a tick's `ts` does
/// not show this part of its wait: a simulator held up by a busy core publishes late, and
/// every latency measured from `ts` looks shorter by as much. Reported when the simulator
/// stops, so a benchmark can tell whether the source kept up.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Lateness {
    /// Ticks published more than 2 ms after they were due.
    over_2ms: u64,
    /// Ticks published more than 5 ms after they were due.
    over_5ms: u64,
    /// The latest any tick went out.
    max: Duration,
}

impl Lateness {
    /// Counts ticks `first..=last` of the run, published `elapsed` into it at `rate`.
    fn add(&mut self, first: u64, last: u64, elapsed: Duration, rate: f64) {
        if first > last || rate <= 0.0 {
            return;
        }
        // Tick `n` is more than `limit` late when `n < (elapsed - limit) × rate`; the later
        // ticks of a batch are the less late, so those are its first ones.
        let over = |limit: Duration| {
            let bound = (elapsed.saturating_sub(limit).as_nanos() as f64 * rate / 1e9).ceil() as u64;
            bound.saturating_sub(first).min(last - first + 1)
        };
        self.over_2ms += over(Duration::from_millis(2));
        self.over_5ms += over(Duration::from_millis(5));
        let first_due = Duration::from_secs_f64(first as f64 / rate);
        self.max = self.max.max(elapsed.saturating_sub(first_due));
    }
}

/// When each tick of the run was due, as the simulated market's own time: published as the
/// tick's `src_ts`, so a client measures from when the tick happened, not only from when
/// the engine got it (`ts`), and a simulator held up by a busy core cannot hide the wait.
#[derive(Debug, Clone, Copy)]
struct DueClock {
    /// The wall clock at the start, µs since the Unix epoch: the engine's, which stamps `ts`.
    start_us: i64,
    rate: f64,
}

impl DueClock {
    fn new(rate: f64) -> Self {
        Self { start_us: feed_engine::now_us(), rate }
    }

    /// The `n`-th tick's due time (the first is due `1 / rate` after the start).
    fn due_us(&self, n: u64) -> i64 {
        self.start_us + (n as f64 * 1e6 / self.rate) as i64
    }
}

/// Ticks to publish now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Due {
    ticks: u64,
    /// Ticks given up because they were more than [`MAX_BACKLOG`] late.
    skipped: u64,
}

/// Tick accounting against the clock. Pure: the caller passes the elapsed time.
#[derive(Debug)]
struct Pacer {
    rate: f64,
    max_backlog: u64,
    /// Ticks accounted for so far, published or skipped.
    sent: u64,
    skipped: u64,
    /// How late the published ones went out.
    late: Lateness,
}

impl Pacer {
    fn new(rate: f64) -> Self {
        let max_backlog = (rate * MAX_BACKLOG.as_secs_f64()).ceil().max(1.0) as u64;
        Self { rate, max_backlog, sent: 0, skipped: 0, late: Lateness::default() }
    }

    fn take_due(&mut self, elapsed: Duration) -> Due {
        // From whole nanoseconds: `as_secs_f64` would turn 1.001 s × 200,000 into 200,199.99…
        let due_total = (elapsed.as_nanos() as f64 * self.rate / 1e9) as u64;
        let mut ticks = due_total.saturating_sub(self.sent);
        let mut skipped = 0;
        if ticks > self.max_backlog {
            skipped = ticks - self.max_backlog;
            ticks = self.max_backlog;
        }
        self.sent += ticks + skipped;
        self.skipped += skipped;
        if ticks > 0 {
            self.late.add(self.sent - ticks + 1, self.sent, elapsed, self.rate);
        }
        Due { ticks, skipped }
    }

    /// How long to sleep, `elapsed` into the run, after a batch that began at `began`: until
    /// the next tick is due, but batches begin at least [`MIN_PAUSE`] apart and at most
    /// [`MAX_PAUSE`] after the end of the last.
    ///
    /// The shortest gap counts from the batch's beginning, not its end: publishing may take
    /// a while (WebSocket ticks are written by the engine's wake-ups on this thread), and a
    /// gap after that on top would make each batch gather the ticks of both, and each tick
    /// wait for the writes of those ahead of it in its batch.
    fn pause(&self, elapsed: Duration, began: Duration) -> Duration {
        if self.rate <= 0.0 {
            return MAX_PAUSE;
        }
        let next_due = Duration::from_secs_f64((self.sent + 1) as f64 / self.rate);
        let shortest = (began + MIN_PAUSE).saturating_sub(elapsed);
        next_due.saturating_sub(elapsed).clamp(shortest, MAX_PAUSE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_ticks_follow_the_clock() {
        let mut pacer = Pacer::new(1000.0);
        assert_eq!(pacer.take_due(Duration::from_millis(10)), Due { ticks: 10, skipped: 0 });
        assert_eq!(pacer.take_due(Duration::from_millis(10)), Due { ticks: 0, skipped: 0 });
        assert_eq!(pacer.take_due(Duration::from_millis(25)), Due { ticks: 15, skipped: 0 });
    }

    #[test]
    fn a_zero_rate_publishes_nothing_and_sleeps() {
        let mut pacer = Pacer::new(0.0);
        assert_eq!(pacer.take_due(Duration::from_secs(60)), Due { ticks: 0, skipped: 0 });
        assert_eq!(pacer.pause(Duration::from_secs(60), Duration::from_secs(60)), MAX_PAUSE);
        assert!(SimConfig { rate: 0.0, ..SimConfig::default() }.validate().is_ok());
        assert!(SimConfig { rate: -1.0, ..SimConfig::default() }.validate().is_err());
    }

    #[test]
    fn a_stall_is_skipped_not_burst() {
        let mut pacer = Pacer::new(200_000.0);
        assert_eq!(pacer.take_due(Duration::from_secs(1)), Due { ticks: 10_000, skipped: 190_000 });
        assert_eq!(pacer.take_due(Duration::from_millis(1001)), Due { ticks: 200, skipped: 0 });
    }

    #[test]
    fn pauses_are_short_at_high_rates_and_bounded_at_low_ones() {
        assert_eq!(Pacer::new(200_000.0).pause(Duration::ZERO, Duration::ZERO), MIN_PAUSE);
        assert_eq!(Pacer::new(1.0).pause(Duration::ZERO, Duration::ZERO), MAX_PAUSE);
        let mut pacer = Pacer::new(100.0);
        pacer.take_due(Duration::from_millis(10));
        assert_eq!(pacer.pause(Duration::from_millis(15), Duration::from_millis(10)), Duration::from_millis(5));
    }

    /// A batch that took a while to publish shortens the gap after it, so batches still
    /// begin every [`MIN_PAUSE`] and gather no more ticks than that.
    #[test]
    fn the_shortest_gap_counts_from_the_batch_beginning() {
        let mut pacer = Pacer::new(2_000.0);
        pacer.take_due(Duration::from_millis(10));
        let began = Duration::from_millis(10);
        let took = Duration::from_micros(300);
        assert_eq!(pacer.pause(began + took, began), MIN_PAUSE - took);
        assert_eq!(pacer.pause(began + 2 * MIN_PAUSE, began), Duration::ZERO);
    }

    /// Each tick's lateness counts from when it was due: at 1,000 ticks/s the tenth is due
    /// at 10 ms, the first at 1 ms.
    #[test]
    fn lateness_counts_each_tick_from_when_it_was_due() {
        let mut pacer = Pacer::new(1_000.0);
        pacer.take_due(Duration::from_millis(10));
        // Ticks 1–10, 9 ms to 0 late: 1–7 more than 2 ms, 1–4 more than 5 ms.
        assert_eq!(pacer.late, Lateness { over_2ms: 7, over_5ms: 4, max: Duration::from_millis(9) });
        pacer.take_due(Duration::from_millis(11));
        assert_eq!(pacer.late, Lateness { over_2ms: 7, over_5ms: 4, max: Duration::from_millis(9) }, "on time");

        // After a stall only the ticks published count, skipped ones apart: 951–1000 of a
        // second's 1,000, 49 ms to 0 late.
        let mut pacer = Pacer::new(1_000.0);
        assert_eq!(pacer.take_due(Duration::from_secs(1)), Due { ticks: 50, skipped: 950 });
        assert_eq!(pacer.late, Lateness { over_2ms: 47, over_5ms: 44, max: Duration::from_millis(49) });
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(SimConfig::default().validate().is_ok());
        for config in [
            SimConfig { symbols: 0, ..SimConfig::default() },
            SimConfig { rate: f64::INFINITY, ..SimConfig::default() },
            SimConfig { rate: f64::NAN, ..SimConfig::default() },
            SimConfig { rate: -5.0, ..SimConfig::default() },
        ] {
            assert!(matches!(config.validate(), Err(Error::InvalidConfig { .. })), "{config:?}");
        }
    }
}
