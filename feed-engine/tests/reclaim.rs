//! Ticks the rings let go of are freed while the feed runs, by the publisher itself: a
//! reader may still be using one, so the ring hands it to a collector instead of dropping it
//! (see `ring`), and nothing may pile up there between publishes.

mod common;

use std::sync::{Arc, Weak};

use common::{engine, quote};
use feed_engine::{Selector, SlowConsumer, Tick};

#[test]
fn replaced_ticks_are_freed_as_publishing_goes_on_with_no_reader_collecting() {
    const BATCHES: usize = 2_000;
    const PER_BATCH: usize = 100;
    let engine = engine(2, 16, SlowConsumer::Conflate);
    let quotes: Vec<_> = (0..PER_BATCH).map(|i| quote("T:A", 100.0 + i as f64)).collect();
    // The newest tick after each batch: each is replaced within the next batch.
    let mut sampled: Vec<Weak<Tick>> = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        assert_eq!(engine.publish_batch(&quotes), PER_BATCH);
        let newest = engine.snapshot(&[Selector::All]);
        sampled.push(Arc::downgrade(&newest[0]));
    }
    let alive = sampled.iter().filter(|tick| tick.strong_count() > 0).count();
    // The last couple are still in the rings or in the collector's last two epochs; left
    // to readers' collection, most of the 2,000 were still alive.
    assert!(alive <= 50, "{alive} of {BATCHES} sampled ticks are still alive");
}
