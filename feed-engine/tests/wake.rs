//! Publishing wakes only the subscribers that want the tick, and never loses a wake-up.

mod common;

use std::{
    future::Future,
    pin::pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll, Wake, Waker},
};

use common::{drain, engine, publish, seqs_of};
use feed_engine::{Drain, Resume, Selector, SlowConsumer, Subscriber};

#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `ready()` once; true if it was ready.
fn poll_ready(sub: &Subscriber, waker: &Arc<CountingWaker>) -> bool {
    let waker = Waker::from(Arc::clone(waker));
    let mut cx = Context::from_waker(&waker);
    let fut = pin!(sub.ready());
    matches!(fut.poll(&mut cx), Poll::Ready(()))
}

fn subscribed(engine: &feed_engine::Engine, list: &str) -> Subscriber {
    let mut sub = engine.subscriber();
    sub.subscribe(&Selector::parse_list(list).expect("valid"), Resume::Fresh);
    sub
}

#[test]
fn ticks_of_other_symbols_do_not_wake_a_subscriber() {
    let engine = engine(16, 1024, SlowConsumer::Conflate);
    let sub = subscribed(&engine, "QUIET");
    let wakes = Arc::new(CountingWaker::default());
    assert!(!poll_ready(&sub, &wakes));
    publish(&engine, "BUSY", 100);
    publish(&engine, "NASDAQ:AAPL", 10);
    assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
    publish(&engine, "QUIET", 1);
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
}

#[test]
fn patterns_wake_for_their_venue_and_new_symbols() {
    let engine = engine(16, 1024, SlowConsumer::Conflate);
    let (fx, all) = (subscribed(&engine, "FX:*"), subscribed(&engine, "*"));
    let (fx_wakes, all_wakes) = (Arc::new(CountingWaker::default()), Arc::new(CountingWaker::default()));
    assert!(!poll_ready(&fx, &fx_wakes) && !poll_ready(&all, &all_wakes));
    publish(&engine, "NYSE:IBM", 1);
    assert_eq!((fx_wakes.0.load(Ordering::SeqCst), all_wakes.0.load(Ordering::SeqCst)), (0, 1));
    publish(&engine, "FX:NEW/SYM", 1);
    assert_eq!(fx_wakes.0.load(Ordering::SeqCst), 1);
}

#[test]
fn an_unsubscribed_symbol_no_longer_wakes() {
    let engine = engine(16, 1024, SlowConsumer::Conflate);
    let mut sub = subscribed(&engine, "A,B");
    sub.unsubscribe(&[Selector::parse("A").expect("valid")]);
    let wakes = Arc::new(CountingWaker::default());
    assert!(!poll_ready(&sub, &wakes));
    publish(&engine, "A", 3);
    assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
    publish(&engine, "B", 1);
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
}

#[test]
fn a_quiet_subscriber_skipping_unrelated_traffic_is_not_a_slow_consumer() {
    // The ring holds 16; 100 unrelated ticks pass while the subscriber sleeps.
    let engine = engine(16, 16, SlowConsumer::Disconnect);
    let mut quiet = subscribed(&engine, "QUIET");
    publish(&engine, "QUIET", 1);
    assert_eq!(seqs_of(&drain(&mut quiet).0, "QUIET"), vec![1]);
    publish(&engine, "BUSY", 100);
    publish(&engine, "QUIET", 1);
    let (seen, outcome) = drain(&mut quiet);
    assert_eq!(outcome, Drain::Idle);
    assert_eq!(seqs_of(&seen, "QUIET"), vec![2]);
    // But losing its own ticks is.
    publish(&engine, "QUIET", 1);
    publish(&engine, "BUSY", 100);
    publish(&engine, "QUIET", 1);
    assert_eq!(drain(&mut quiet).1, Drain::Lagged);
}

#[test]
fn a_symbol_subscribed_again_after_everyone_left_still_wakes() {
    let engine = engine(16, 1024, SlowConsumer::Conflate);
    drop(subscribed(&engine, "LATE,LATEVENUE:*"));
    let sub = subscribed(&engine, "LATE,LATEVENUE:*");
    let wakes = Arc::new(CountingWaker::default());
    assert!(!poll_ready(&sub, &wakes));
    publish(&engine, "LATE", 1);
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
    let mut sub = sub;
    drain(&mut sub);
    assert!(!poll_ready(&sub, &wakes));
    publish(&engine, "LATEVENUE:X", 1);
    assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
}
