//! The simulator as the engine sees it: the symbol list, determinism by seed, rate, and
//! shutdown.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::{collect, engine, subscribe_all, within};
use ingest::{simulator, IngestStats, Market, SimConfig, SourceKind};
use tokio_util::sync::CancellationToken;

/// Waits for the simulator thread without blocking the runtime.
async fn join(handle: std::thread::JoinHandle<()>) {
    tokio::task::spawn_blocking(move || handle.join().expect("simulator thread panicked")).await.expect("join task");
}

/// The first `count` ticks of a simulator, without the engine's `ts` and the market's
/// `src_ts`. On the way it checks that `src_ts`, when each tick was due, steps by exactly
/// `1 / rate` from tick to tick and is never later than `ts`, when it was published.
async fn first_ticks(config: SimConfig, count: usize) -> Vec<(String, u64, serde_json::Value)> {
    let rate = config.rate;
    let engine = engine(1 << 16);
    let mut subscriber = subscribe_all(&engine);
    let shutdown = CancellationToken::new();
    let thread = simulator::spawn(engine.clone(), config, shutdown.clone(), Arc::new(IngestStats::default()));
    let ticks = collect(&mut subscriber, count).await;
    shutdown.cancel();
    join(thread).await;
    let mut first_src_ts = None;
    ticks
        .into_iter()
        .enumerate()
        .map(|(i, mut tick)| {
            let object = tick.json.as_object_mut().expect("a tick is an object");
            let ts = object.remove("ts").and_then(|ts| ts.as_i64()).expect("every tick has ts");
            let src_ts = object.remove("src_ts").and_then(|ts| ts.as_i64()).expect("every tick has src_ts");
            assert!(src_ts <= ts, "tick {i}: due at {src_ts}, published at {ts}");
            let first = first_src_ts.get_or_insert(src_ts);
            // The first tick is due 1 / rate after the start; rounding down to whole µs.
            let expected = (i as f64 * 1e6 / rate) as i64;
            assert!((src_ts - *first - expected).abs() <= 1, "tick {i}: src_ts {src_ts}, first {first}");
            (tick.symbol, tick.seq, tick.json)
        })
        .collect()
}

#[tokio::test]
async fn every_symbol_is_published_first_and_exactly_n_exist() {
    within(async {
        let config = SimConfig { symbols: 250, rate: 20_000.0, seed: 11 };
        let ticks = first_ticks(config, 1_000).await;
        let expected: Vec<String> = Market::new(250, 11).symbols().map(str::to_owned).collect();
        let opening: Vec<String> = ticks[..250].iter().map(|(symbol, ..)| symbol.clone()).collect();
        assert_eq!(opening, expected);
        assert!(ticks.iter().all(|(symbol, ..)| expected.contains(symbol)));
        for (symbol, _, json) in &ticks {
            let (bid, ask) = (json["bid"].as_f64().expect("bid"), json["ask"].as_f64().expect("ask"));
            assert!(0.0 < bid && bid < ask, "{symbol}: {json}");
            for field in ["price", "size", "bid_size", "ask_size"] {
                assert!(json[field].as_f64().is_some_and(|v| v > 0.0), "{symbol} {field}: {json}");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn the_same_seed_publishes_the_same_ticks_whatever_the_rate() {
    within(async {
        let slow = first_ticks(SimConfig { symbols: 40, rate: 5_000.0, seed: 3 }, 2_000).await;
        let fast = first_ticks(SimConfig { symbols: 40, rate: 50_000.0, seed: 3 }, 2_000).await;
        assert_eq!(slow, fast);
        let other = first_ticks(SimConfig { symbols: 40, rate: 50_000.0, seed: 4 }, 2_000).await;
        assert_ne!(slow, other);
    })
    .await;
}

/// Runs a simulator at `rate` for about a second; returns the measured ticks per second.
async fn measure_rate(rate: f64) -> f64 {
    // No subscribers: this measures the source and the publish path only.
    let engine = engine(1 << 16);
    let stats = Arc::new(IngestStats::default());
    let shutdown = CancellationToken::new();
    let config = SimConfig { symbols: 1_000, rate, seed: 1 };
    let start = Instant::now();
    let thread = simulator::spawn(engine.clone(), config, shutdown.clone(), Arc::clone(&stats));
    // A measurement window, not synchronisation: the count is read after the join.
    tokio::time::sleep(Duration::from_secs(1)).await;
    shutdown.cancel();
    let elapsed = start.elapsed();
    join(thread).await;

    let published = engine.stats().ticks_published;
    assert_eq!(stats.counts(SourceKind::Simulator).published, published);
    let measured = published as f64 / elapsed.as_secs_f64();
    eprintln!("simulator: {published} ticks in {elapsed:?} = {measured:.0} ticks/s (target {rate})");
    // Pacing follows the clock, so it never runs ahead of it, on any machine.
    assert!(measured <= rate * 1.05, "ran ahead of the clock: {measured:.0}/s");
    measured
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_of_200k_ticks_per_second_is_held() {
    within(async {
        const RATE: f64 = 200_000.0;
        let measured = measure_rate(RATE).await;
        // An unoptimised build cannot publish this fast (the engine alone takes ~13 µs a tick
        // there), so the floor is only asserted where it measures the pacing, not the build.
        // Optimised, the rate lands within a few percent; 50% leaves room for a busy machine.
        if cfg!(debug_assertions) {
            eprintln!("debug build: the 200k/s floor is checked by `cargo test --release` only");
        } else {
            assert!(measured >= RATE * 0.5, "far below the target: {measured:.0}/s");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderate_rate_is_held_in_any_build() {
    within(async {
        const RATE: f64 = 10_000.0;
        let measured = measure_rate(RATE).await;
        assert!(measured >= RATE * 0.5, "far below the target: {measured:.0}/s");
    })
    .await;
}

#[tokio::test]
async fn an_invalid_config_publishes_nothing_and_ends_the_thread() {
    within(async {
        let engine = engine(64);
        let config = SimConfig { symbols: 0, ..SimConfig::default() };
        assert!(config.validate().is_err());
        let thread =
            simulator::spawn(engine.clone(), config, CancellationToken::new(), Arc::new(IngestStats::default()));
        join(thread).await;
        assert_eq!(engine.stats().ticks_published, 0);
    })
    .await;
}
