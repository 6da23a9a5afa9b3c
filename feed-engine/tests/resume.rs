//! Resume: by per-symbol seq (WebSocket) and by global position (SSE cursor), at and beyond
//! the edge of history, and across epochs.

mod common;

use common::{drain, engine, publish, sel, seqs_of, Seen};
use feed_engine::{Resume, SlowConsumer};

#[test]
fn resume_by_seq_replays_exactly_the_missed_ticks() {
    let engine = engine(8, 1024, SlowConsumer::Conflate);
    publish(&engine, "A", 10);
    let mut sub = engine.subscriber();
    let since = [("A".to_owned(), 6)];
    sub.subscribe(&sel("A"), Resume::Seqs { epoch: Some("test"), since: &since });
    publish(&engine, "A", 2);
    let (seen, _) = drain(&mut sub);
    assert_eq!(seqs_of(&seen, "A"), vec![7, 8, 9, 10, 11, 12]);
    assert!(seen.iter().all(|s| matches!(s, Seen::Tick { snapshot: false, conflated: false, .. })));
}

#[test]
fn resume_at_the_edge_of_history_still_replays() {
    // History holds 8: seqs 3..=10 after 10 ticks; since 2 needs 3.. which is all there.
    let engine = engine(8, 1024, SlowConsumer::Conflate);
    publish(&engine, "A", 10);
    let mut sub = engine.subscriber();
    let since = [("A".to_owned(), 2)];
    sub.subscribe(&sel("A"), Resume::Seqs { epoch: None, since: &since });
    assert_eq!(seqs_of(&drain(&mut sub).0, "A"), (3..=10).collect::<Vec<_>>());
}

#[test]
fn resume_beyond_history_gives_reset_then_snapshot() {
    let engine = engine(8, 1024, SlowConsumer::Conflate);
    publish(&engine, "A", 10);
    let mut sub = engine.subscriber();
    let since = [("A".to_owned(), 1)];
    sub.subscribe(&sel("A"), Resume::Seqs { epoch: None, since: &since });
    let (seen, _) = drain(&mut sub);
    assert_eq!(seen[0], Seen::Reset("A".into()));
    assert!(matches!(&seen[1], Seen::Tick { seq: 10, snapshot: true, .. }), "{seen:?}");
    assert_eq!(seen.len(), 2);
}

#[test]
fn resume_from_another_epoch_gives_reset_then_snapshot() {
    let engine = engine(8, 1024, SlowConsumer::Conflate);
    publish(&engine, "A", 3);
    let mut sub = engine.subscriber();
    let since = [("A".to_owned(), 2)];
    sub.subscribe(&sel("A"), Resume::Seqs { epoch: Some("other"), since: &since });
    let (seen, _) = drain(&mut sub);
    assert_eq!(seen[0], Seen::Reset("A".into()));
    assert!(matches!(&seen[1], Seen::Tick { seq: 3, snapshot: true, .. }));
}

#[test]
fn resume_of_a_caught_up_symbol_sends_nothing_until_live() {
    let engine = engine(8, 1024, SlowConsumer::Conflate);
    publish(&engine, "A", 3);
    let mut sub = engine.subscriber();
    let since = [("A".to_owned(), 3)];
    sub.subscribe(&sel("A"), Resume::Seqs { epoch: None, since: &since });
    assert!(drain(&mut sub).0.is_empty());
    publish(&engine, "A", 1);
    assert_eq!(seqs_of(&drain(&mut sub).0, "A"), vec![4]);
}

#[test]
fn resume_by_position_merges_symbols_in_publish_order_without_loss_or_repeat() {
    let engine = engine(64, 1024, SlowConsumer::Conflate);
    // A client on `*` reads up to some position, then drops.
    let mut first = engine.subscriber();
    first.subscribe(&sel("*"), Resume::Fresh);
    for i in 0..30 {
        publish(&engine, ["A", "B", "C"][i % 3], 1);
    }
    let (seen, _) = drain(&mut first);
    let Seen::Tick { position: cut, .. } = seen[13].clone() else { panic!("tick expected") };
    drop(first);
    for i in 0..9 {
        publish(&engine, ["C", "A", "B"][i % 3], 1);
    }
    let mut again = engine.subscriber();
    again.subscribe(&sel("*"), Resume::Position(cut));
    publish(&engine, "A", 1);
    let (seen, _) = drain(&mut again);
    let positions: Vec<u64> = seen.iter().map(|s| if let Seen::Tick { position, .. } = s { *position } else { 0 }).collect();
    assert_eq!(positions, ((cut + 1)..=40).collect::<Vec<_>>(), "{seen:?}");
}

#[test]
fn resume_by_position_beyond_history_resets_only_the_symbols_that_lost_ticks() {
    let engine = engine(4, 1024, SlowConsumer::Conflate);
    publish(&engine, "QUIET", 1); // position 1
    publish(&engine, "BUSY", 10); // positions 2..=11; history keeps 8..=11
    let mut sub = engine.subscriber();
    sub.subscribe(&sel("*"), Resume::Position(1));
    let (seen, _) = drain(&mut sub);
    assert_eq!(seen[0], Seen::Reset("BUSY".into()));
    assert!(matches!(&seen[1], Seen::Tick { seq: 10, snapshot: true, .. }), "{seen:?}");
    assert_eq!(seen.len(), 2, "QUIET had nothing after position 1: {seen:?}");
}

#[test]
fn resume_by_position_at_the_exact_edge_is_complete() {
    let engine = engine(4, 1024, SlowConsumer::Conflate);
    publish(&engine, "A", 8); // positions 1..=8, history keeps seqs 5..=8 (positions 5..=8)
    let mut sub = engine.subscriber();
    sub.subscribe(&sel("A"), Resume::Position(4));
    assert_eq!(seqs_of(&drain(&mut sub).0, "A"), vec![5, 6, 7, 8]);
    let mut beyond = engine.subscriber();
    beyond.subscribe(&sel("A"), Resume::Position(3));
    assert_eq!(drain(&mut beyond).0[0], Seen::Reset("A".into()));
}

#[test]
fn history_wraps_around_keeping_the_newest_ticks() {
    let engine = engine(4, 1024, SlowConsumer::Conflate);
    publish(&engine, "A", 1000);
    let mut sub = engine.subscriber();
    let since = [("A".to_owned(), 996)];
    sub.subscribe(&sel("A"), Resume::Seqs { epoch: None, since: &since });
    assert_eq!(seqs_of(&drain(&mut sub).0, "A"), vec![997, 998, 999, 1000]);
}

#[test]
fn unreadable_position_resets_every_matching_symbol() {
    let engine = engine(4, 1024, SlowConsumer::Conflate);
    publish(&engine, "A", 2);
    publish(&engine, "B", 2);
    let mut sub = engine.subscriber();
    sub.subscribe(&sel("*"), Resume::Reset);
    let (seen, _) = drain(&mut sub);
    assert_eq!(seen.iter().filter(|s| matches!(s, Seen::Reset(_))).count(), 2);
    assert_eq!(seen.iter().filter(|s| matches!(s, Seen::Tick { snapshot: true, .. })).count(), 2);
}
