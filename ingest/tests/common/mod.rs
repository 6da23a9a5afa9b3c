//! Helpers shared by the ingest integration tests: an engine and a subscriber that sees
//! everything, collection of published ticks, expected rows read independently of the
//! crate's own parser, scratch files, and a timeout around every test.

// Each test binary uses a different part of these helpers.
#![allow(dead_code)]

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use feed_engine::{Engine, EngineConfig, Event, Resume, Selector, Subscriber};
use serde_json::Value;

/// Upper bound for any single test; generous because debug builds on a busy 2-core machine
/// are slow, and a hang must still fail rather than block CI.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `future` under [`TEST_TIMEOUT`], failing the test if it does not finish.
pub async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, future).await.expect("test timed out")
}

/// An engine whose broadcast ring holds `bus_capacity` ticks, so a test subscriber that
/// reads after the fact still sees every tick unconflated. Per-symbol history is kept short:
/// these tests never resume, and a default-sized history for a thousand simulated symbols
/// makes a debug build spend seconds allocating and dropping it.
pub fn engine(bus_capacity: usize) -> Engine {
    Engine::new(EngineConfig { bus_capacity, history: 16, epoch: Some("test".into()), ..EngineConfig::default() })
}

/// A subscriber to every symbol. Create it before starting a source.
pub fn subscribe_all(engine: &Engine) -> Subscriber {
    let mut subscriber = engine.subscriber();
    subscriber.subscribe(&[Selector::All], Resume::Fresh);
    subscriber
}

/// One published tick as a client would see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub symbol: String,
    pub seq: u64,
    pub json: Value,
}

impl Seen {
    pub fn number(&self, field: &str) -> Option<f64> {
        self.json.get(field).and_then(Value::as_f64)
    }

    pub fn src_ts(&self) -> Option<i64> {
        self.json.get("src_ts").and_then(Value::as_i64)
    }
}

/// Hands every live tick to `check` until it returns `false` (done). Fails on snapshots,
/// conflation and resets: these tests expect every tick exactly once.
pub async fn each_tick(subscriber: &mut Subscriber, mut check: impl FnMut(Seen) -> bool) {
    let mut done = false;
    while !done {
        subscriber.ready().await;
        subscriber.drain(|event| match event {
            Event::Tick { tick, snapshot, conflated } => {
                assert!(!snapshot && !conflated, "unexpected flags on {}", tick.symbol);
                let json: Value = serde_json::from_slice(tick.json()).expect("engine writes valid JSON");
                done = !check(Seen { symbol: tick.symbol.to_string(), seq: tick.seq, json });
                !done
            }
            Event::Reset { symbol } => panic!("unexpected reset of {symbol}"),
        });
    }
}

/// The next `count` ticks.
pub async fn collect(subscriber: &mut Subscriber, count: usize) -> Vec<Seen> {
    let mut seen = Vec::with_capacity(count);
    if count == 0 {
        return seen;
    }
    each_tick(subscriber, |tick| {
        seen.push(tick);
        seen.len() < count
    })
    .await;
    seen
}

/// Ticks already published and not yet read, without waiting.
pub fn drain_now(subscriber: &mut Subscriber) -> Vec<Seen> {
    let mut seen = Vec::new();
    subscriber.drain(|event| {
        if let Event::Tick { tick, .. } = event {
            let json = serde_json::from_slice(tick.json()).expect("engine writes valid JSON");
            seen.push(Seen { symbol: tick.symbol.to_string(), seq: tick.seq, json });
        }
        true
    });
    seen
}

/// One row of a CSV file, read with plain string splitting (not the crate's parser).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub ts_ns: Option<i64>,
    pub symbol: String,
    pub price: f64,
    pub size: Option<f64>,
    pub bid: Option<f64>,
    pub ask: Option<f64>,
}

/// Every row of a well-formed CSV file with a `ts,symbol,price[,size[,bid,ask]]` header.
pub fn read_rows(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).expect("readable test data");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let column = |name: &str| header.iter().position(|c| *c == name);
    let (ts, symbol, price) = (column("ts"), column("symbol").expect("symbol"), column("price").expect("price"));
    let (size, bid, ask) = (column("size"), column("bid"), column("ask"));
    lines
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let number = |i: Option<usize>| i.map(|i| fields[i].parse::<f64>().expect("numeric test data"));
            Row {
                ts_ns: ts.map(|i| fields[i].parse().expect("integer ts")),
                symbol: fields[symbol].to_owned(),
                price: number(Some(price)).expect("price"),
                size: number(size),
                bid: number(bid),
                ask: number(ask),
            }
        })
        .collect()
}

/// Asserts that a tick carries exactly this row (numbers compared as parsed doubles, which
/// shortest round-trip printing keeps exact).
pub fn assert_tick_is_row(tick: &Seen, row: &Row, index: usize) {
    assert_eq!(tick.symbol, row.symbol, "row {index}");
    assert_eq!(tick.number("price"), Some(row.price), "row {index} price");
    assert_eq!(tick.number("size"), row.size, "row {index} size");
    assert_eq!(tick.number("bid"), row.bid, "row {index} bid");
    assert_eq!(tick.number("ask"), row.ask, "row {index} ask");
    assert_eq!(tick.src_ts(), row.ts_ns.map(|ns| ns.div_euclid(1000)), "row {index} src_ts");
}

/// Checks per-symbol seq continuity: 1, 2, 3, … in arrival order.
#[derive(Debug, Default)]
pub struct SeqCheck(std::collections::HashMap<String, u64>);

impl SeqCheck {
    pub fn check(&mut self, tick: &Seen) {
        let last = self.0.entry(tick.symbol.clone()).or_insert(0);
        assert_eq!(tick.seq, *last + 1, "seq of {} jumps", tick.symbol);
        *last = tick.seq;
    }
}

/// A fresh path in Cargo's scratch directory for integration tests.
pub fn scratch_path(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ingest-tests");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(format!("{}-{unique}-{name}", std::process::id()))
}

/// Writes `bytes` to a fresh scratch file named `name` (the extension picks the format).
pub fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch_path(name);
    std::fs::write(&path, bytes).expect("writable scratch dir");
    path
}

/// The fixture excerpt shipped with the crate.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A file of the shared recorded data, or `None` (with the reason printed) when the folder
/// is not there, as on a machine without the shared data.
pub fn shared_data(name: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data").join(name);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!("skipped: {} is not present", path.display());
        None
    }
}
