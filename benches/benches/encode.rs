//! Tick encoding: the JSON bytes a tick is given once, and the per-delivery flags added to
//! them.
//!
//! The encoder (`Tick::encode`) is private to the engine and runs inside `Engine::publish`,
//! so `encode/publish_tiny_rings` publishes into an engine with no subscribers and the
//! smallest rings: what remains beside the encoding is validation, the clock read, the
//! publish lock and two ring pushes. `encode/serde_json_same_fields` writes the same fields
//! with serde_json as a reference. `write_json_with_flags` is what every transport does to
//! each delivered tick: a plain copy for a live tick, the copy reopened to append
//! `"snapshot":true` and/or `"conflated":true` otherwise.
#![allow(missing_docs)] // criterion's macros generate undocumented items

mod corpus;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::Serialize;

const SAMPLES: usize = 256;

/// The fields of a tick as the engine writes them, for serde_json to write.
#[derive(Serialize)]
struct TickFields<'a> {
    r#type: &'static str,
    symbol: &'a str,
    seq: u64,
    ts: i64,
    src_ts: i64,
    price: f64,
    size: f64,
    bid: f64,
    ask: f64,
    bid_size: f64,
    ask_size: f64,
}

fn encode(c: &mut Criterion) {
    let samples = corpus::samples(SAMPLES);
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));

    let engine = corpus::engine(2, 16);
    // Every symbol published once first, so the timed loop never creates one.
    corpus::publish_all(&engine, &samples);
    let mut next = samples.iter().cycle();
    group.bench_function("publish_tiny_rings", |b| {
        b.iter(|| {
            let sample = next.next().expect("cycle never ends");
            black_box(engine.publish(black_box(&sample.quote())).expect("valid"))
        });
    });

    let mut next = samples.iter().cycle();
    let mut out = Vec::with_capacity(256);
    let mut seq = 0;
    group.bench_function("serde_json_same_fields", |b| {
        b.iter(|| {
            let sample = next.next().expect("cycle never ends");
            seq += 1;
            let fields = TickFields {
                r#type: "tick",
                symbol: &sample.symbol,
                seq,
                ts: 1_700_000_000_000_000,
                src_ts: sample.src_ts_ns / 1_000,
                price: sample.price,
                size: sample.size,
                bid: sample.bid,
                ask: sample.ask,
                bid_size: sample.bid_size,
                ask_size: sample.ask_size,
            };
            out.clear();
            serde_json::to_writer(&mut out, black_box(&fields)).expect("writing into a Vec cannot fail");
            black_box(out.len())
        });
    });
    group.finish();
}

fn flags(c: &mut Criterion) {
    let engine = corpus::engine(16, 1024);
    corpus::publish_all(&engine, &corpus::samples(SAMPLES));
    let ticks = corpus::last_ticks(&engine);
    let mut group = c.benchmark_group("write_json_with_flags");
    group.throughput(Throughput::Elements(ticks.len() as u64));
    let mut out = Vec::with_capacity(64 * 1024);
    for (name, snapshot, conflated) in
        [("live", false, false), ("snapshot", true, false), ("conflated", false, true), ("both", true, true)]
    {
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                for tick in &ticks {
                    tick.write_json_with_flags(&mut out, black_box(snapshot), black_box(conflated));
                }
                black_box(out.len())
            });
        });
    }
    group.finish();
}

criterion_group!(benches, encode, flags);
criterion_main!(benches);
