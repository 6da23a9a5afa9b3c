//! Engine publish and fan-out: one tick published, then read by N subscribers
//! (N = 1, 100, 10,000). Measures the whole per-tick cost of the engine side of fan-out:
//! stamp + encode once, history and ring push, and each subscriber's filtered read.
//! (Encoding alone, as far as the public API isolates it, is in `encode.rs`.)
//!
//! `publish_fan_out_filtered` is a dashboard's shape: each subscriber names 3 of the 32
//! symbols, so most of what it reads from the broadcast ring belongs to others and is
//! skipped. Per iteration a burst of 32 ticks is published, then every subscriber drains.
//!
//! `subscribe_crowded_symbol` is one more connection joining a symbol that N others already
//! follow, and leaving it: the cost of a subscribe in a crowd (wake-list upkeep included).
#![allow(missing_docs)] // criterion's macros generate undocumented items

mod corpus;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use feed_engine::{Resume, Selector};

const SAMPLES: usize = 256;

fn publish_only(c: &mut Criterion) {
    let samples = corpus::samples(SAMPLES);
    let engine = corpus::engine(4096, 65_536);
    // Every symbol published once first, so the timed loop never creates one.
    corpus::publish_all(&engine, &samples);
    let mut next = samples.iter().cycle();
    c.bench_function("publish/no_subscribers", |b| {
        b.iter(|| {
            let sample = next.next().expect("cycle never ends");
            black_box(engine.publish(&sample.quote()).expect("valid"))
        });
    });
}

fn publish_and_fan_out(c: &mut Criterion) {
    let samples = corpus::samples(SAMPLES);
    let mut group = c.benchmark_group("publish_fan_out");
    for subscribers in [1usize, 100, 10_000] {
        let engine = corpus::engine(4096, 65_536);
        corpus::publish_all(&engine, &samples);
        let mut subs = corpus::subscribers(&engine, subscribers, |_| vec![Selector::All]);
        group.throughput(Throughput::Elements(subscribers as u64));
        let mut next = samples.iter().cycle();
        group.bench_with_input(BenchmarkId::from_parameter(subscribers), &subscribers, |b, _| {
            b.iter(|| {
                let sample = next.next().expect("cycle never ends");
                engine.publish(&sample.quote()).expect("valid");
                corpus::drain_all(&mut subs);
            });
        });
    }
    group.finish();
}

fn publish_and_fan_out_filtered(c: &mut Criterion) {
    const BURST: usize = 32;
    let samples = corpus::samples(SAMPLES);
    let mut group = c.benchmark_group("publish_fan_out_filtered");
    let subscribers = 1_000usize;
    let engine = corpus::engine(4096, 65_536);
    corpus::publish_all(&engine, &samples);
    let names = engine.symbols();
    let mut subs = corpus::subscribers(&engine, subscribers, |i| corpus::three_symbols(&names, i));
    // Elements: ring positions read, all subscribers together.
    group.throughput(Throughput::Elements((subscribers * BURST) as u64));
    let mut next = samples.iter().cycle();
    group.bench_with_input(BenchmarkId::from_parameter(subscribers), &subscribers, |b, _| {
        b.iter(|| {
            for sample in next.by_ref().take(BURST) {
                engine.publish(&sample.quote()).expect("valid");
            }
            corpus::drain_all(&mut subs);
        });
    });
    group.finish();
}

fn subscribe_crowded_symbol(c: &mut Criterion) {
    let samples = corpus::samples(SAMPLES);
    let mut group = c.benchmark_group("subscribe_crowded_symbol");
    for crowd in [1_000usize, 10_000] {
        let engine = corpus::engine(16, 1024);
        corpus::publish_all(&engine, &samples);
        let symbol = [Selector::parse(&samples[0].symbol).expect("a known symbol")];
        let _crowd: Vec<_> = (0..crowd)
            .map(|_| {
                let mut s = engine.subscriber();
                s.subscribe(&symbol, Resume::Fresh);
                s
            })
            .collect();
        group.bench_with_input(BenchmarkId::from_parameter(crowd), &crowd, |b, _| {
            b.iter(|| {
                let mut s = engine.subscriber();
                s.subscribe(&symbol, Resume::Fresh);
                black_box(&s);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, publish_only, publish_and_fan_out, publish_and_fan_out_filtered, subscribe_crowded_symbol);
criterion_main!(benches);
