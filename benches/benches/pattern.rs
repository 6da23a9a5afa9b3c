//! Pattern matching: the per-tick question "does this subscriber want this symbol?"
//! for an exact symbol, a venue pattern and `*`.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use feed_engine::Selector;

fn matching(c: &mut Criterion) {
    let symbols = ["NASDAQ:AAPL", "NYSE:IBM", "FX:EUR/USD", "COINBASE:BTC-USD", "AAPL"];
    let mut group = c.benchmark_group("pattern_match");
    for text in ["NASDAQ:AAPL", "FX:*", "*"] {
        let selector = Selector::parse(text).expect("valid");
        group.bench_function(text, |b| {
            b.iter(|| symbols.iter().filter(|s| black_box(&selector).matches(black_box(s))).count());
        });
    }
    group.bench_function("parse_list", |b| {
        b.iter(|| Selector::parse_list(black_box("NASDAQ:AAPL,FX:*,COINBASE:BTC-USD,*")).expect("valid"));
    });
    group.finish();
}

criterion_group!(benches, matching);
criterion_main!(benches);
