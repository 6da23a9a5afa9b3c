//! Replay of files: order, fields, pacing, looping, malformed rows and startup errors, as a
//! subscriber of the engine sees them.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::{
    assert_tick_is_row, collect, drain_now, each_tick, engine, fixture, read_rows, scratch_file, subscribe_all, within,
    SeqCheck,
};
use ingest::{replay, Error, IngestStats, LineCounts, ReplayConfig, ReplayFormat, SourceKind, TsUnit};
use tokio_util::sync::CancellationToken;

fn fast(path: std::path::PathBuf) -> ReplayConfig {
    ReplayConfig { speed: 0.0, ..ReplayConfig::new(path) }
}

/// Replays with `config` and returns when each of the first `count` ticks reached a
/// subscriber, measured from the start of the replay.
async fn arrival_times(config: ReplayConfig, count: usize) -> Vec<Duration> {
    let engine = engine(1024);
    let mut subscriber = subscribe_all(&engine);
    let start = Instant::now();
    let replay =
        tokio::spawn(replay::run(engine.clone(), config, CancellationToken::new(), Arc::new(IngestStats::default())));
    let mut arrivals = Vec::new();
    each_tick(&mut subscriber, |_| {
        arrivals.push(start.elapsed());
        arrivals.len() < count
    })
    .await;
    replay.await.expect("task").expect("replay");
    arrivals
}

#[tokio::test]
async fn fixture_at_speed_zero_publishes_every_row_in_order() {
    within(async {
        let path = fixture("fx_quotes_excerpt.csv");
        let rows = read_rows(&path);
        assert_eq!(rows.len(), 1999);
        let engine = engine(1 << 16);
        let mut subscriber = subscribe_all(&engine);
        let stats = Arc::new(IngestStats::default());

        replay::run(engine.clone(), fast(path), CancellationToken::new(), Arc::clone(&stats)).await.expect("replay");

        let ticks = collect(&mut subscriber, rows.len()).await;
        let mut seqs = SeqCheck::default();
        for (index, (tick, row)) in ticks.iter().zip(&rows).enumerate() {
            assert_tick_is_row(tick, row, index);
            seqs.check(tick);
        }
        assert!(drain_now(&mut subscriber).is_empty(), "nothing beyond the file");
        assert_eq!(stats.counts(SourceKind::Replay), LineCounts { published: 1999, malformed: 0 });
        let symbols: Vec<String> = engine.symbols().iter().map(|s| s.to_string()).collect();
        assert_eq!(symbols, ["EURUSD", "NZDUSD"]);
    })
    .await;
}

#[tokio::test]
async fn speed_one_keeps_the_recorded_gaps() {
    within(async {
        // Four rows 200 ms apart: 600 ms from the first to the last.
        let csv = "ts,symbol,price\n\
                   1000000000,A,1\n1200000000,A,2\n1400000000,A,3\n1600000000,A,4\n";
        let path = scratch_file("paced.csv", csv.as_bytes());
        let arrivals = arrival_times(ReplayConfig::new(path), 4).await;
        let total = arrivals[3] - arrivals[0];
        assert!(total >= Duration::from_millis(580), "paced too fast: {total:?}");
        assert!(total < Duration::from_secs(3), "paced far too slow: {total:?}");
        for gap in arrivals.windows(2).map(|w| w[1] - w[0]) {
            assert!(gap >= Duration::from_millis(150), "gap {gap:?} in {arrivals:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn speed_two_halves_the_gaps() {
    within(async {
        let csv = "symbol,ts,price\nA,0,1\nA,200000000,2\nA,400000000,3\nA,600000000,4\n";
        let path = scratch_file("double.csv", csv.as_bytes());
        let arrivals = arrival_times(ReplayConfig { speed: 2.0, ..ReplayConfig::new(path) }, 4).await;
        let total = arrivals[3] - arrivals[0];
        assert!(total >= Duration::from_millis(280), "paced too fast: {total:?}");
        assert!(total < Duration::from_millis(580), "not faster than speed 1: {total:?}");
    })
    .await;
}

#[tokio::test]
async fn looped_replay_starts_over_with_seq_still_growing() {
    within(async {
        let jsonl = "{\"symbol\":\"A\",\"price\":1}\n{\"symbol\":\"B\",\"price\":2}\n{\"symbol\":\"A\",\"price\":3}\n";
        let path = scratch_file("loop.jsonl", jsonl.as_bytes());
        let engine = engine(1 << 16);
        let mut subscriber = subscribe_all(&engine);
        let shutdown = CancellationToken::new();
        let config = ReplayConfig { looped: true, ..fast(path) };
        let replay =
            tokio::spawn(replay::run(engine.clone(), config, shutdown.clone(), Arc::new(IngestStats::default())));

        let ticks = collect(&mut subscriber, 9).await;
        shutdown.cancel();
        replay.await.expect("task").expect("replay stops cleanly");

        let seen: Vec<(&str, u64, f64)> =
            ticks.iter().map(|t| (t.symbol.as_str(), t.seq, t.number("price").expect("price"))).collect();
        assert_eq!(
            seen,
            [
                ("A", 1, 1.0),
                ("B", 1, 2.0),
                ("A", 2, 3.0),
                ("A", 3, 1.0),
                ("B", 2, 2.0),
                ("A", 4, 3.0),
                ("A", 5, 1.0),
                ("B", 3, 2.0),
                ("A", 6, 3.0),
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn a_loop_over_a_file_without_valid_rows_ends_instead_of_spinning() {
    within(async {
        let path = scratch_file("hopeless.jsonl", b"nonsense\n{\"symbol\":\"A\"}\n");
        let stats = Arc::new(IngestStats::default());
        let config = ReplayConfig { looped: true, ..fast(path) };
        replay::run(engine(64), config, CancellationToken::new(), Arc::clone(&stats)).await.expect("ends");
        assert_eq!(stats.totals(), LineCounts { published: 0, malformed: 2 });
    })
    .await;
}

#[tokio::test]
async fn malformed_csv_rows_are_counted_and_skipped_while_good_rows_flow() {
    within(async {
        let mut csv = b"ts,symbol,price,size,bid,ask\r\n".to_vec();
        let good = |n: u32| format!("{n}000,GOOD,{n}.5,1,{n},{n}.75\r\n");
        let bad: Vec<Vec<u8>> = vec![
            b"1,X,2,3,4\n".to_vec(),                                    // wrong field count
            b"1,,2,3,4,5\n".to_vec(),                                   // missing symbol
            b"1,X,,3,4,5\n".to_vec(),                                   // missing price
            b"1,NO SUCH,2,3,4,5\n".to_vec(),                            // bad symbol
            b"1,X,cheap,3,4,5\n".to_vec(),                              // not a number
            b"1,X,2,3,4,inf\n".to_vec(),                                // not finite
            b"1,X\xff,2,3,4,5\n".to_vec(),                              // invalid UTF-8
            b"yesterday,X,2,3,4,5\n".to_vec(),                          // ts not a number
            format!("1,X,{},3,4,5\n", "9".repeat(70_000)).into_bytes(), // too long
        ];
        for (n, line) in bad.iter().enumerate() {
            csv.extend_from_slice(good(n as u32 + 1).as_bytes());
            csv.extend_from_slice(line);
            csv.extend_from_slice(b"\n   \n"); // empty lines: skipped, not counted
        }
        csv.extend_from_slice(b"99000,GOOD,99.5,1,99,99.75"); // last line without newline
        let path = scratch_file("malformed.csv", &csv);
        let engine = engine(1024);
        let mut subscriber = subscribe_all(&engine);
        let stats = Arc::new(IngestStats::default());

        replay::run(engine.clone(), fast(path), CancellationToken::new(), Arc::clone(&stats)).await.expect("replay");

        let ticks = drain_now(&mut subscriber);
        let prices: Vec<f64> = ticks.iter().map(|t| t.number("price").expect("price")).collect();
        assert_eq!(prices, [1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5, 99.5]);
        assert!(ticks.iter().all(|t| t.symbol == "GOOD"));
        assert_eq!(ticks[0].src_ts(), Some(1));
        assert_eq!(stats.counts(SourceKind::Replay), LineCounts { published: 10, malformed: bad.len() as u64 });
    })
    .await;
}

#[tokio::test]
async fn malformed_json_lines_are_counted_and_skipped_while_good_lines_flow() {
    within(async {
        let bad = [
            "this is not json",
            "[1,2,3]",
            r#"{"price":1}"#,
            r#"{"symbol":7,"price":1}"#,
            r#"{"symbol":"A:B:C","price":1}"#,
            r#"{"symbol":"X"}"#,
            r#"{"symbol":"X","price":"much"}"#,
            r#"{"symbol":"X","price":1,"ask":1e999}"#,
            r#"{"symbol":"X","price":1,"ts":"soon"}"#,
            r#"{"symbol":"X","price":1"#,
        ];
        let mut jsonl = String::new();
        for (n, line) in bad.iter().enumerate() {
            jsonl.push_str(&format!("{{\"symbol\":\"FX:EUR/USD\",\"price\":{n}.25,\"ts\":{n}}}\n{line}\n\n"));
        }
        let path = scratch_file("malformed.ndjson", jsonl.as_bytes());
        let engine = engine(1024);
        let mut subscriber = subscribe_all(&engine);
        let stats = Arc::new(IngestStats::default());
        let config = ReplayConfig { ts_unit: TsUnit::S, ..fast(path) };

        replay::run(engine.clone(), config, CancellationToken::new(), Arc::clone(&stats)).await.expect("replay");

        let ticks = drain_now(&mut subscriber);
        assert_eq!(ticks.len(), bad.len());
        for (n, tick) in ticks.iter().enumerate() {
            assert_eq!((tick.symbol.as_str(), tick.seq), ("FX:EUR/USD", n as u64 + 1));
            assert_eq!(tick.number("price"), Some(n as f64 + 0.25));
            assert_eq!(tick.src_ts(), Some(n as i64 * 1_000_000), "ts in seconds becomes microseconds");
        }
        assert_eq!(stats.totals(), LineCounts { published: bad.len() as u64, malformed: bad.len() as u64 });
    })
    .await;
}

#[tokio::test]
async fn explicit_format_overrides_the_extension() {
    within(async {
        let path = scratch_file("ticks.txt", b"symbol,price\nA,1\n");
        let stats = Arc::new(IngestStats::default());
        let config = ReplayConfig { format: Some(ReplayFormat::Csv), ..fast(path) };
        replay::run(engine(64), config, CancellationToken::new(), Arc::clone(&stats)).await.expect("replay");
        assert_eq!(stats.totals().published, 1);
    })
    .await;
}

#[tokio::test]
async fn bad_files_are_refused_at_startup_with_an_actionable_error() {
    within(async {
        let open = |name: &str, bytes: &[u8]| replay::open(fast(scratch_file(name, bytes)));
        assert!(matches!(
            open("unknown.csv", b"ts,symbol,price,volume\n").await,
            Err(Error::UnknownColumn { column, .. }) if column == "volume"
        ));
        assert!(matches!(
            open("noprice.csv", b"ts,symbol,bid,ask\n").await,
            Err(Error::MissingColumn { column: "price", .. })
        ));
        assert!(matches!(
            open("twice.csv", b"symbol,price,symbol\n").await,
            Err(Error::DuplicateColumn { column, .. }) if column == "symbol"
        ));
        assert!(matches!(open("empty.csv", b"").await, Err(Error::MissingHeader { .. })));
        assert!(matches!(open("binary.csv", b"symbol,\xffprice\n").await, Err(Error::BadHeader { .. })));
        assert!(matches!(open("ticks.xml", b"").await, Err(Error::UnknownFormat { .. })));

        let missing = std::path::PathBuf::from("/nonexistent/ticks.csv");
        let error = replay::open(fast(missing.clone())).await.expect_err("no such file");
        assert!(matches!(&error, Error::Io { path, .. } if *path == missing));
        assert!(error.to_string().contains("/nonexistent/ticks.csv"), "{error}");

        let slow = ReplayConfig { speed: -1.0, ..ReplayConfig::new("a.csv") };
        assert!(matches!(replay::open(slow).await, Err(Error::InvalidConfig { .. })));
    })
    .await;
}

#[tokio::test]
async fn shutdown_interrupts_a_long_pause() {
    within(async {
        // The second row is due an hour after the first.
        let csv = "ts,symbol,price\n0,A,1\n3600000000000,A,2\n";
        let path = scratch_file("hour.csv", csv.as_bytes());
        let engine = engine(64);
        let mut subscriber = subscribe_all(&engine);
        let shutdown = CancellationToken::new();
        let stats = Arc::new(IngestStats::default());
        let replay =
            tokio::spawn(replay::run(engine.clone(), ReplayConfig::new(path), shutdown.clone(), Arc::clone(&stats)));
        collect(&mut subscriber, 1).await;
        shutdown.cancel();
        replay.await.expect("task").expect("clean stop");
        assert_eq!(stats.totals().published, 1);
    })
    .await;
}
