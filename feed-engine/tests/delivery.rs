//! Delivery rules a client relies on: snapshot before live, seq continuity, publish order
//! across symbols, patterns, unsubscribe, conflation and disconnect of slow subscribers.

mod common;

use common::{drain, engine, publish, quote, sel, seqs_of, Seen};
use feed_engine::{Drain, Resume, SlowConsumer};

#[test]
fn snapshot_comes_first_then_live_ticks_continue_its_seq() {
    let engine = engine(64, 1024, SlowConsumer::Conflate);
    publish(&engine, "NASDAQ:AAPL", 5);
    let mut sub = engine.subscriber();
    sub.subscribe(&sel("NASDAQ:AAPL"), Resume::Fresh);
    publish(&engine, "NASDAQ:AAPL", 3);
    let (seen, outcome) = drain(&mut sub);
    assert_eq!(outcome, Drain::Idle);
    assert!(matches!(&seen[0], Seen::Tick { seq: 5, snapshot: true, .. }), "{seen:?}");
    assert_eq!(seqs_of(&seen, "NASDAQ:AAPL"), vec![5, 6, 7, 8]);
    assert!(seen[1..].iter().all(|s| matches!(s, Seen::Tick { snapshot: false, conflated: false, .. })));
}

#[test]
fn ticks_of_different_symbols_arrive_in_publish_order() {
    let engine = engine(64, 1024, SlowConsumer::Conflate);
    let mut sub = engine.subscriber();
    sub.subscribe(&sel("A,B,C"), Resume::Fresh);
    let order = ["A", "B", "A", "C", "B", "A"];
    for symbol in order {
        engine.publish(&quote(symbol, 1.0)).expect("valid");
    }
    let (seen, _) = drain(&mut sub);
    let symbols: Vec<_> = seen
        .iter()
        .map(|s| match s {
            Seen::Tick { symbol, .. } => symbol.as_str(),
            Seen::Reset(_) => "reset",
        })
        .collect();
    assert_eq!(symbols, order);
    let positions: Vec<_> = seen.iter().map(|s| if let Seen::Tick { position, .. } = s { *position } else { 0 }).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn patterns_match_symbols_that_appear_after_the_subscription() {
    let engine = engine(64, 1024, SlowConsumer::Conflate);
    let mut all = engine.subscriber();
    all.subscribe(&sel("*"), Resume::Fresh);
    let mut fx = engine.subscriber();
    fx.subscribe(&sel("FX:*"), Resume::Fresh);
    for symbol in ["FX:EUR/USD", "NASDAQ:AAPL", "FX:USD/JPY", "FXX:A", "EUR/USD"] {
        engine.publish(&quote(symbol, 1.0)).expect("valid");
    }
    assert_eq!(drain(&mut all).0.len(), 5);
    let fx_seen = drain(&mut fx).0;
    assert_eq!(seqs_of(&fx_seen, "FX:EUR/USD"), vec![1]);
    assert_eq!(seqs_of(&fx_seen, "FX:USD/JPY"), vec![1]);
    assert_eq!(fx_seen.len(), 2);
}

#[test]
fn unsubscribe_stops_ticks_and_resubscribe_sends_a_fresh_snapshot() {
    let engine = engine(64, 1024, SlowConsumer::Conflate);
    let mut sub = engine.subscriber();
    sub.subscribe(&sel("A,B"), Resume::Fresh);
    publish(&engine, "A", 2);
    publish(&engine, "B", 1);
    sub.unsubscribe(&sel("A"));
    publish(&engine, "A", 2);
    publish(&engine, "B", 1);
    let (seen, _) = drain(&mut sub);
    assert_eq!(seqs_of(&seen, "A"), Vec::<u64>::new(), "nothing of A after unsubscribe: {seen:?}");
    assert_eq!(seqs_of(&seen, "B"), vec![1, 2]);
    sub.subscribe(&sel("A"), Resume::Fresh);
    let (seen, _) = drain(&mut sub);
    assert!(matches!(&seen[..], [Seen::Tick { seq: 4, snapshot: true, .. }]), "{seen:?}");
}

#[test]
fn subscribing_twice_does_not_duplicate_ticks() {
    let engine = engine(64, 1024, SlowConsumer::Conflate);
    publish(&engine, "A", 1);
    let mut sub = engine.subscriber();
    sub.subscribe(&sel("A,*"), Resume::Fresh);
    sub.subscribe(&sel("A"), Resume::Fresh);
    publish(&engine, "A", 2);
    let (seen, _) = drain(&mut sub);
    assert_eq!(seqs_of(&seen, "A"), vec![1, 2, 3]);
    assert_eq!(sub.selectors().len(), 2);
}

#[test]
fn slow_subscriber_is_conflated_to_the_newest_tick_per_symbol() {
    let engine = engine(64, 16, SlowConsumer::Conflate);
    let mut slow = engine.subscriber();
    slow.subscribe(&sel("*"), Resume::Fresh);
    publish(&engine, "A", 1);
    publish(&engine, "B", 1);
    let (seen, _) = drain(&mut slow);
    assert_eq!(seen.len(), 2);
    // Far more than the ring holds while the subscriber does not read.
    for i in 0..100 {
        publish(&engine, if i % 2 == 0 { "A" } else { "B" }, 1);
    }
    assert!(slow.is_lagging());
    let (seen, outcome) = drain(&mut slow);
    assert_eq!(outcome, Drain::Idle);
    assert_eq!(
        seen,
        vec![
            Seen::Tick { symbol: "A".into(), seq: 51, position: 101, snapshot: false, conflated: true },
            Seen::Tick { symbol: "B".into(), seq: 51, position: 102, snapshot: false, conflated: true },
        ]
    );
    // And it is live again afterwards, without flags.
    publish(&engine, "A", 1);
    let (seen, _) = drain(&mut slow);
    assert_eq!(seen, vec![Seen::Tick { symbol: "A".into(), seq: 52, position: 103, snapshot: false, conflated: false }]);
}

/// Other symbols' ticks are passed over by the bus's symbol index once the subscriber has
/// met them: its own ticks still all arrive, in order, and the loss of its own ticks to a
/// lapped ring is still flagged, while lapped ticks of others cost it nothing.
#[test]
fn a_subscriber_to_one_symbol_among_many_gets_its_own_ticks_and_only_its_own_losses() {
    let engine = engine(64, 16, SlowConsumer::Conflate);
    let mut sub = engine.subscriber();
    sub.subscribe(&sel("A"), Resume::Fresh);
    let mut got = Vec::new();
    // Keeping up: three of others' ticks between each of its own.
    for _ in 0..20 {
        for symbol in ["B", "C", "A", "D"] {
            publish(&engine, symbol, 1);
        }
        let (seen, _) = drain(&mut sub);
        assert!(seen.iter().all(|s| matches!(s, Seen::Tick { conflated: false, .. })), "{seen:?}");
        got.extend(seqs_of(&seen, "A"));
    }
    assert_eq!(got, (1..=20).collect::<Vec<_>>());
    // Lapped by others' ticks only: nothing of its own was lost, so nothing is flagged.
    publish(&engine, "B", 40);
    publish(&engine, "A", 1);
    let (seen, _) = drain(&mut sub);
    assert_eq!(seqs_of(&seen, "A"), vec![21]);
    assert!(seen.iter().all(|s| matches!(s, Seen::Tick { conflated: false, .. })), "{seen:?}");
    // Lapped while its own ticks were among the overwritten: the newest, flagged.
    for _ in 0..20 {
        publish(&engine, "A", 1);
        publish(&engine, "B", 1);
    }
    let (seen, _) = drain(&mut sub);
    assert_eq!(
        seen,
        vec![Seen::Tick { symbol: "A".into(), seq: 41, position: 160, snapshot: false, conflated: true }]
    );
    // A symbol skipped so far is delivered once subscribed (with its snapshot first).
    sub.subscribe(&sel("B"), Resume::Fresh);
    publish(&engine, "B", 1);
    let (seen, _) = drain(&mut sub);
    assert_eq!(seqs_of(&seen, "B"), vec![80, 81]);
}

#[test]
fn has_pending_passes_over_other_symbols_and_takes_nothing_of_its_own() {
    let engine = engine(64, 16, SlowConsumer::Conflate);
    let mut sub = engine.subscriber();
    sub.subscribe(&sel("A"), Resume::Fresh);
    assert!(!sub.has_pending(), "nothing published yet");
    // Only others' ticks: nothing pending, and they are passed over for good.
    publish(&engine, "B", 3);
    assert!(!sub.has_pending());
    assert!(drain(&mut sub).0.is_empty());
    // Its own tick behind others' ticks: pending, and still there for drain, once.
    publish(&engine, "C", 2);
    publish(&engine, "A", 1);
    publish(&engine, "B", 1);
    assert!(sub.has_pending());
    assert!(sub.has_pending(), "asking again takes nothing");
    let (seen, _) = drain(&mut sub);
    assert_eq!(seqs_of(&seen, "A"), vec![1]);
    assert!(!sub.has_pending());
    // A snapshot owed for a new subscription counts as pending.
    sub.subscribe(&sel("C"), Resume::Fresh);
    assert!(sub.has_pending());
    assert_eq!(seqs_of(&drain(&mut sub).0, "C"), vec![2]);
    // Lapped with its own ticks among the lost: pending, and drain flags the jump.
    publish(&engine, "A", 40);
    assert!(sub.has_pending());
    let (seen, _) = drain(&mut sub);
    assert!(matches!(seen.as_slice(), [Seen::Tick { seq: 41, conflated: true, .. }]), "{seen:?}");
}

#[test]
fn slow_subscriber_is_reported_lagged_under_the_disconnect_policy() {
    let engine = engine(64, 16, SlowConsumer::Disconnect);
    let mut slow = engine.subscriber();
    slow.subscribe(&sel("*"), Resume::Fresh);
    publish(&engine, "A", 40);
    assert_eq!(drain(&mut slow).1, Drain::Lagged);
}

#[test]
fn a_slow_subscriber_does_not_hold_back_a_fast_one() {
    let engine = engine(64, 16, SlowConsumer::Conflate);
    let slow = {
        let mut s = engine.subscriber();
        s.subscribe(&sel("*"), Resume::Fresh);
        s
    };
    let mut fast = engine.subscriber();
    fast.subscribe(&sel("*"), Resume::Fresh);
    let mut got = Vec::new();
    for _ in 0..50 {
        publish(&engine, "A", 10);
        got.extend(seqs_of(&drain(&mut fast).0, "A"));
    }
    assert_eq!(got, (1..=500).collect::<Vec<_>>());
    assert!(slow.is_lagging());
}

#[test]
fn ready_wakes_when_a_tick_is_published_from_another_thread() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let engine = engine(64, 1024, SlowConsumer::Conflate);
    let mut sub = engine.subscriber();
    sub.subscribe(&sel("A"), Resume::Fresh);
    let publisher = engine.clone();
    let thread = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        publisher.publish(&quote("A", 1.0)).expect("valid");
    });
    runtime.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(5), sub.ready()).await.expect("woken by publish");
    });
    assert_eq!(seqs_of(&drain(&mut sub).0, "A"), vec![1]);
    thread.join().expect("publisher thread");
}

#[test]
fn bad_quotes_are_refused_and_publish_nothing() {
    let engine = engine(64, 1024, SlowConsumer::Conflate);
    assert!(engine.publish(&quote("bad symbol", 1.0)).is_err());
    assert!(engine.publish(&quote("A", f64::NAN)).is_err());
    assert_eq!(engine.stats().ticks_published, 0);
    assert!(engine.symbols().is_empty());
}

#[test]
fn registered_symbols_are_listed_before_their_first_tick() {
    let engine = engine(64, 1024, SlowConsumer::Conflate);
    engine.register("SIM:A").expect("valid");
    engine.register("SIM:A").expect("registering twice is harmless");
    assert!(engine.register("bad symbol").is_err());
    assert_eq!(engine.symbols().iter().map(|s| &**s).collect::<Vec<_>>(), ["SIM:A"]);
    assert!(engine.snapshot(&sel("SIM:A")).is_empty(), "no last value yet");
    let mut sub = engine.subscriber();
    sub.subscribe(&sel("SIM:*"), Resume::Fresh);
    assert!(drain(&mut sub).0.is_empty());
    publish(&engine, "SIM:A", 1);
    assert_eq!(seqs_of(&drain(&mut sub).0, "SIM:A"), vec![1]);
}
