//! Ingest line parsing: a line of bytes to a validated quote, per format.
//!
//! `parse_json` compares the ingest crate's simd-json parser with serde_json reading the same
//! lines into an equivalent struct (then checked and converted the way ingest does it), in
//! one group so both figures come from the same run. `parse_csv` is the CSV parser. Each
//! iteration parses the same 256 seeded lines; the copies simd-json parses in place are made
//! outside the timed loop.
#![allow(missing_docs)] // criterion's macros generate undocumented items

mod corpus;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use feed_engine::{symbol::is_valid_symbol, Quote};
use ingest::line::{CsvParser, JsonParser};
use ingest::TsUnit;
use serde::Deserialize;

const LINES: usize = 256;

/// A JSON line as serde sees it: the fields ingest reads, the symbol borrowed like simd-json's.
#[derive(Deserialize)]
struct Line<'a> {
    ts: Option<i64>,
    symbol: &'a str,
    price: f64,
    size: Option<f64>,
    bid: Option<f64>,
    ask: Option<f64>,
    bid_size: Option<f64>,
    ask_size: Option<f64>,
}

/// serde_json's answer to what `JsonParser::parse` does: parse, then the same symbol,
/// finiteness and `ts` (nanoseconds) checks, so both sides end with a publishable quote.
fn serde_quote(line: &[u8]) -> Option<Quote<'_>> {
    let line: Line<'_> = serde_json::from_slice(line).ok()?;
    let quote = Quote {
        symbol: line.symbol,
        price: line.price,
        size: line.size,
        bid: line.bid,
        ask: line.ask,
        bid_size: line.bid_size,
        ask_size: line.ask_size,
        src_ts_us: line.ts.map(|ns| ns.div_euclid(1_000)),
    };
    (is_valid_symbol(quote.symbol) && quote.check_finite().is_ok()).then_some(quote)
}

fn json(c: &mut Criterion) {
    let lines: Vec<Vec<u8>> = corpus::samples(LINES).iter().map(corpus::Sample::json_line).collect();
    let mut group = c.benchmark_group("parse_json");
    group.throughput(Throughput::Elements(LINES as u64));

    let mut parser = JsonParser::new(TsUnit::Ns);
    group.bench_function("simd_json", |b| {
        b.iter_batched_ref(
            || lines.clone(),
            |lines| {
                for line in lines.iter_mut() {
                    black_box(parser.parse(line).expect("seeded lines are valid"));
                }
            },
            BatchSize::LargeInput,
        );
    });
    // Same batching as above although serde_json does not write to its input, so both
    // figures carry the same harness overhead.
    group.bench_function("serde_json", |b| {
        b.iter_batched_ref(
            || lines.clone(),
            |lines| {
                for line in lines.iter() {
                    black_box(serde_quote(line).expect("seeded lines are valid"));
                }
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn csv(c: &mut Criterion) {
    let lines: Vec<Vec<u8>> = corpus::samples(LINES).iter().map(corpus::Sample::csv_line).collect();
    let parser = CsvParser::from_header(corpus::CSV_HEADER, TsUnit::Ns).expect("the header names known columns");
    let mut group = c.benchmark_group("parse_csv");
    group.throughput(Throughput::Elements(LINES as u64));
    group.bench_function("csv", |b| {
        b.iter(|| {
            for line in &lines {
                black_box(parser.parse(black_box(line)).expect("seeded lines are valid"));
            }
        });
    });
    group.finish();
}

criterion_group!(benches, json, csv);
criterion_main!(benches);
