//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use feed_engine::{Drain, Engine, EngineConfig, Event, Quote, Selector, SlowConsumer, Subscriber};

/// What a client would see, flattened for assertions.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Tick { symbol: String, seq: u64, position: u64, snapshot: bool, conflated: bool },
    Reset(String),
}

pub fn engine(history: usize, bus_capacity: usize, slow_consumer: SlowConsumer) -> Engine {
    Engine::new(EngineConfig { history, bus_capacity, slow_consumer, epoch: Some("test".into()) })
}

pub fn quote(symbol: &str, price: f64) -> Quote<'_> {
    Quote { symbol, price, ..Quote::default() }
}

pub fn publish(engine: &Engine, symbol: &str, count: usize) {
    for i in 0..count {
        engine.publish(&quote(symbol, 100.0 + i as f64)).expect("valid quote");
    }
}

/// Drains everything available now.
pub fn drain(sub: &mut Subscriber) -> (Vec<Seen>, Drain) {
    let mut seen = Vec::new();
    let outcome = sub.drain(|event| {
        seen.push(match event {
            Event::Tick { tick, snapshot, conflated } => Seen::Tick {
                symbol: tick.symbol.to_string(),
                seq: tick.seq,
                position: tick.position,
                snapshot,
                conflated,
            },
            Event::Reset { symbol } => Seen::Reset(symbol.to_owned()),
        });
        true
    });
    (seen, outcome)
}

pub fn seqs_of(seen: &[Seen], symbol: &str) -> Vec<u64> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Tick { symbol: sym, seq, .. } if sym == symbol => Some(*seq),
            _ => None,
        })
        .collect()
}

/// Parses a comma-separated list of symbols and patterns.
pub fn sel(text: &str) -> Vec<Selector> {
    Selector::parse_list(text).expect("valid selectors")
}
