//! The seeded inputs every bench shares, so that the criterion benches and the instruction
//! guard measure the same thing: quotes from ingest's simulated market (ChaCha8, fixed
//! seed), the same quotes written as JSON lines and CSV rows, and engines holding them.
//!
//! Lives in a folder (`corpus/mod.rs`) so cargo does not take it for a bench target of its
//! own; each bench includes it with `mod corpus;`.

// Each bench target compiles its own copy and uses only part of it.
#![allow(dead_code)]

use std::{io::Write as _, sync::Arc};

use feed_engine::{Engine, EngineConfig, Event, Quote, Resume, Selector, Subscriber, Tick};
use ingest::Market;

/// The market's seed: part of every figure's definition, never change it casually.
pub const SEED: u64 = 0x7469_636b;
/// Symbols in the market: the built-in listings plus a few `SIM:` ones.
pub const SYMBOLS: usize = 32;
/// A fixed epoch, so cursors (and the SSE ids built from them) have the same length on
/// every run; the engine's random default would make the guard's counts wander.
pub const EPOCH: &str = "0123456789abcdef";
/// The CSV header naming every column, in the contract's order.
pub const CSV_HEADER: &[u8] = b"ts,symbol,price,size,bid,ask,bid_size,ask_size";
/// Where the samples' source timestamps start (nanoseconds, November 2023).
const FIRST_SRC_TS_NS: i64 = 1_700_000_000_000_000_000;

/// One quote of the simulated market, owned (the market's own quotes borrow it).
#[derive(Debug, Clone)]
pub struct Sample {
    pub symbol: String,
    pub price: f64,
    pub size: f64,
    pub bid: f64,
    pub ask: f64,
    pub bid_size: f64,
    pub ask_size: f64,
    pub src_ts_ns: i64,
}

impl Sample {
    /// The quote a source would publish for this sample.
    pub fn quote(&self) -> Quote<'_> {
        Quote {
            symbol: &self.symbol,
            price: self.price,
            size: Some(self.size),
            bid: Some(self.bid),
            ask: Some(self.ask),
            bid_size: Some(self.bid_size),
            ask_size: Some(self.ask_size),
            src_ts_us: Some(self.src_ts_ns.div_euclid(1_000)),
        }
    }

    /// The sample as one JSON line (no terminator), fields in the contract's order.
    pub fn json_line(&self) -> Vec<u8> {
        let Self { symbol, price, size, bid, ask, bid_size, ask_size, src_ts_ns } = self;
        let mut line = Vec::with_capacity(160);
        // Writing into a Vec cannot fail.
        let _ = write!(
            line,
            r#"{{"ts":{src_ts_ns},"symbol":"{symbol}","price":{price},"size":{size},"bid":{bid},"ask":{ask},"bid_size":{bid_size},"ask_size":{ask_size}}}"#,
        );
        line
    }

    /// The sample as one CSV row under [`CSV_HEADER`] (no terminator).
    pub fn csv_line(&self) -> Vec<u8> {
        let Self { symbol, price, size, bid, ask, bid_size, ask_size, src_ts_ns } = self;
        let mut line = Vec::with_capacity(96);
        let _ = write!(line, "{src_ts_ns},{symbol},{price},{size},{bid},{ask},{bid_size},{ask_size}");
        line
    }
}

/// The first `count` quotes of the seeded market: one opening quote per symbol, then the
/// market's weighted draw, source timestamps a millisecond and a bit apart.
pub fn samples(count: usize) -> Vec<Sample> {
    let mut market = Market::new(SYMBOLS, SEED);
    (0..count)
        .map(|i| {
            let quote = market.next_quote();
            Sample {
                symbol: quote.symbol.to_owned(),
                price: quote.price,
                size: quote.size.unwrap_or_default(),
                bid: quote.bid.unwrap_or_default(),
                ask: quote.ask.unwrap_or_default(),
                bid_size: quote.bid_size.unwrap_or_default(),
                ask_size: quote.ask_size.unwrap_or_default(),
                src_ts_ns: FIRST_SRC_TS_NS + i as i64 * 1_000_037,
            }
        })
        .collect()
}

/// An engine with the fixed [`EPOCH`] and `history`/`bus_capacity` as given.
pub fn engine(history: usize, bus_capacity: usize) -> Engine {
    Engine::new(EngineConfig { history, bus_capacity, epoch: Some(EPOCH.into()), ..EngineConfig::default() })
}

/// Publishes every sample; they are all valid by construction.
pub fn publish_all(engine: &Engine, samples: &[Sample]) {
    for sample in samples {
        engine.publish(&sample.quote()).expect("the simulated market only makes valid quotes");
    }
}

/// `count` subscribers, subscriber `i` to `selectors(i)`, past their opening snapshots (timed
/// loops then measure live ticks only).
pub fn subscribers(engine: &Engine, count: usize, selectors: impl Fn(usize) -> Vec<Selector>) -> Vec<Subscriber> {
    (0..count)
        .map(|i| {
            let mut subscriber = engine.subscriber();
            subscriber.subscribe(&selectors(i), Resume::Fresh);
            subscriber.drain(|_| true);
            subscriber
        })
        .collect()
}

/// A dashboard's shape: subscriber `i` follows 3 of the engine's symbols, each symbol
/// followed by about as many subscribers as the next.
pub fn three_symbols(names: &[Arc<str>], i: usize) -> Vec<Selector> {
    (0..3).map(|k| Selector::parse(&names[(3 * i + k) % names.len()]).expect("a known symbol")).collect()
}

/// Drains every subscriber, touching each tick's bytes as a transport would.
pub fn drain_all(subscribers: &mut [Subscriber]) {
    for subscriber in subscribers {
        subscriber.drain(|event| {
            if let Event::Tick { tick, .. } = event {
                std::hint::black_box(tick.json().len());
            }
            true
        });
    }
}

/// The newest tick of every symbol, as snapshots and every transport see them.
pub fn last_ticks(engine: &Engine) -> Vec<Arc<Tick>> {
    engine.snapshot(&[Selector::All])
}

/// The setup of every framing bench: an engine fed 256 seeded quotes and the newest tick of
/// each symbol, to frame again and again.
pub fn framing_ticks() -> (Engine, Vec<Arc<Tick>>) {
    let engine = engine(16, 1024);
    publish_all(&engine, &samples(256));
    let ticks = last_ticks(&engine);
    (engine, ticks)
}

/// The baseline of every framing bench, in its group: copying the shared JSON bytes and
/// nothing else, so the framing's own cost is the difference.
pub fn bench_copy_only(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, ticks: &[Arc<Tick>]) {
    let mut out = Vec::with_capacity(64 * 1024);
    group.bench_function("copy_only", |b| {
        b.iter(|| {
            out.clear();
            for tick in ticks {
                out.extend_from_slice(std::hint::black_box(tick.json()));
            }
            std::hint::black_box(out.len())
        });
    });
}

/// The engine's cursor without its position: what the gateway writes before each position
/// in an SSE `id:` (the gateway derives it the same way, from a formatted cursor).
pub fn cursor_prefix(engine: &Engine) -> String {
    let sample = engine.cursor(0);
    sample.strip_suffix('0').unwrap_or(&sample).to_owned()
}
