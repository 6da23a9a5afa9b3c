//! Many threads publish and subscribe at once: every subscriber that keeps up sees each
//! symbol's seq exactly once and in order, and global positions strictly increase.

mod common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use common::quote;
use feed_engine::{Drain, Engine, EngineConfig, Event, Resume, Selector, SlowConsumer};

#[test]
fn concurrent_publishers_and_subscribers_see_no_loss_duplication_or_reordering() {
    const PUBLISHERS: usize = 3;
    const PER_PUBLISHER: u64 = 20_000;
    let engine = Engine::new(EngineConfig {
        history: 16,
        bus_capacity: 1 << 20,
        slow_consumer: SlowConsumer::Disconnect,
        epoch: None,
    });
    let runtime = Arc::new(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime"));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let mut sub = engine.subscriber();
            sub.subscribe(&[Selector::All], Resume::Fresh);
            runtime.spawn(async move {
                let mut last_seq: HashMap<String, u64> = HashMap::new();
                let mut last_position = 0;
                let mut total = 0u64;
                while total < PUBLISHERS as u64 * PER_PUBLISHER {
                    sub.ready().await;
                    let outcome = sub.drain(|event| {
                        if let Event::Tick { tick, snapshot, conflated } = event {
                            assert!(!snapshot && !conflated);
                            assert!(tick.position > last_position, "positions strictly increase");
                            last_position = tick.position;
                            let seq = last_seq.entry(tick.symbol.to_string()).or_default();
                            assert_eq!(tick.seq, *seq + 1, "seq continuity for {}", tick.symbol);
                            *seq = tick.seq;
                            total += 1;
                        }
                        true
                    });
                    assert_ne!(outcome, Drain::Lagged);
                }
                last_seq
            })
        })
        .collect();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let symbols = [format!("P{p}:A"), format!("P{p}:B"), "SHARED".to_owned()];
                for i in 0..PER_PUBLISHER {
                    engine.publish(&quote(&symbols[(i % 3) as usize], 1.0)).expect("valid");
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().expect("publisher thread");
    }
    runtime.block_on(async {
        for reader in readers {
            let last_seq = tokio::time::timeout(Duration::from_secs(60), reader).await.expect("reader finishes").expect("reader ok");
            let total: u64 = last_seq.values().sum();
            assert_eq!(total, PUBLISHERS as u64 * PER_PUBLISHER);
        }
    });
}
