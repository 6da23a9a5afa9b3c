//! Replay of the full recorded files in `../shared/data`: every valid row arrives, in file
//! order, with its exact values. Skipped with a printed reason where the folder is absent.
//! The files are read in place and never copied into the project.

mod common;

use std::{path::Path, sync::Arc};

use common::{assert_tick_is_row, each_tick, engine, read_rows, shared_data, subscribe_all, within, SeqCheck};
use ingest::{replay, IngestStats, LineCounts, ReplayConfig};
use tokio_util::sync::CancellationToken;

/// Replays `path` at full speed while a subscriber checks each tick against the next row.
async fn replays_every_row_in_order(path: &Path) {
    let rows = read_rows(path);
    // Large enough to hold the whole file, so the check never depends on keeping up.
    let engine = engine(rows.len().next_power_of_two());
    let mut subscriber = subscribe_all(&engine);
    let stats = Arc::new(IngestStats::default());
    let config = ReplayConfig { speed: 0.0, ..ReplayConfig::new(path) };
    let replay = tokio::spawn(replay::run(engine.clone(), config, CancellationToken::new(), Arc::clone(&stats)));

    let mut next = 0;
    let mut seqs = SeqCheck::default();
    each_tick(&mut subscriber, |tick| {
        assert_tick_is_row(&tick, &rows[next], next);
        seqs.check(&tick);
        next += 1;
        next < rows.len()
    })
    .await;
    replay.await.expect("task").expect("replay");
    assert_eq!(next, rows.len());
    assert_eq!(stats.totals(), LineCounts { published: rows.len() as u64, malformed: 0 });
}

#[tokio::test]
async fn the_full_fx_quote_file_replays_every_row_in_order() {
    let Some(path) = shared_data("lean_fx_quotes_2014-05-05.csv") else { return };
    within(replays_every_row_in_order(&path)).await;
}

#[tokio::test]
async fn the_full_equity_trade_file_replays_every_row_in_order() {
    let Some(path) = shared_data("lean_equity_trades_2013-10-07.csv") else { return };
    within(replays_every_row_in_order(&path)).await;
}
