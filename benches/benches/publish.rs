//! Engine publish and fan-out: one tick published, then read by N subscribers
//! (N = 1, 100, 10,000). Measures the whole per-tick cost of the engine side of fan-out:
//! stamp + encode once, history and ring push, and each subscriber's filtered read.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use feed_engine::{Engine, EngineConfig, Event, Quote, Resume, Selector};

fn quote(i: usize) -> Quote<'static> {
    const SYMBOLS: [&str; 4] = ["NASDAQ:AAPL", "NYSE:IBM", "FX:EUR/USD", "COINBASE:BTC-USD"];
    Quote {
        symbol: SYMBOLS[i % SYMBOLS.len()],
        price: 100.0 + (i % 97) as f64 * 0.01,
        size: Some(100.0),
        bid: Some(99.99),
        ask: Some(100.01),
        ..Quote::default()
    }
}

fn publish_only(c: &mut Criterion) {
    let engine = Engine::new(EngineConfig::default());
    let mut i = 0;
    c.bench_function("publish/no_subscribers", |b| {
        b.iter(|| {
            i += 1;
            black_box(engine.publish(&quote(i)).expect("valid"))
        });
    });
}

fn publish_and_fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_fan_out");
    for subscribers in [1usize, 100, 10_000] {
        let engine = Engine::new(EngineConfig::default());
        let mut subs: Vec<_> = (0..subscribers)
            .map(|_| {
                let mut s = engine.subscriber();
                s.subscribe(&[Selector::All], Resume::Fresh);
                s
            })
            .collect();
        group.throughput(Throughput::Elements(subscribers as u64));
        let mut i = 0;
        group.bench_with_input(BenchmarkId::from_parameter(subscribers), &subscribers, |b, _| {
            b.iter(|| {
                i += 1;
                engine.publish(&quote(i)).expect("valid");
                for sub in &mut subs {
                    sub.drain(|event| {
                        if let Event::Tick { tick, .. } = event {
                            black_box(tick.json().len());
                        }
                        true
                    });
                }
            });
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    // Encoding happens inside publish; publishing to an engine with no subscribers and a
    // tiny history isolates it as far as the public API allows.
    let engine = Engine::new(EngineConfig { history: 2, bus_capacity: 16, ..EngineConfig::default() });
    let mut i = 0;
    c.bench_function("encode/publish_tiny_rings", |b| {
        b.iter(|| {
            i += 1;
            black_box(engine.publish(&quote(i)).expect("valid"))
        });
    });
}

criterion_group!(benches, publish_only, publish_and_fan_out, encode);
criterion_main!(benches);
