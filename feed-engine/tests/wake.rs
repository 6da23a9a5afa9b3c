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
use feed_engine::{Drain, Resume, Selector, SlowConsumer, Subscriber, WakeBatch};

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

/// A waker that does the subscriber's work at once, as the WebSocket gateway's does: drains
/// what is there and waits again, from inside the wake-up.
struct DrainingWaker {
    sub: std::sync::Mutex<Option<Subscriber>>,
    wakes: AtomicUsize,
    /// Seqs drained at each wake-up.
    drained: std::sync::Mutex<Vec<Vec<u64>>>,
}

impl Wake for DrainingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        let mut sub = self.sub.lock().expect("not poisoned");
        let sub = sub.as_mut().expect("subscriber present");
        let (seen, _) = drain(sub);
        self.drained.lock().expect("not poisoned").push(seen.iter().filter_map(seq_of_tick).collect());
        // Waits again from inside the wake-up; nothing is ready, so it stays armed.
        assert!(!sub.poll_ready(&Waker::from(Arc::clone(self))));
    }
}

fn seq_of_tick(seen: &common::Seen) -> Option<u64> {
    match seen {
        common::Seen::Tick { seq, .. } => Some(*seq),
        common::Seen::Reset(_) => None,
    }
}

/// A batch wakes each waiting subscriber once, after every tick of it is visible, even when
/// its waker waits again at once: a subscriber to several of the batch's symbols (or to `*`)
/// gets the whole batch in one wake-up, not one wake-up per tick or per list.
#[test]
fn a_batch_wakes_a_subscriber_once_with_all_of_its_ticks_visible() {
    let engine = engine(64, 1024, SlowConsumer::Conflate);
    for list in ["A,B,C", "*", "V:*,A"] {
        let mut sub = engine.subscriber();
        sub.subscribe(&Selector::parse_list(list).expect("valid"), Resume::Fresh);
        // The snapshots of the earlier rounds' ticks.
        drain(&mut sub);
        let waker = Arc::new(DrainingWaker {
            sub: std::sync::Mutex::new(None),
            wakes: AtomicUsize::new(0),
            drained: std::sync::Mutex::default(),
        });
        assert!(!sub.poll_ready(&Waker::from(Arc::clone(&waker))), "{list}: nothing yet");
        *waker.sub.lock().expect("not poisoned") = Some(sub);
        let symbols = ["A", "B", "V:X", "C", "A", "V:Y", "B"];
        let quotes: Vec<_> = symbols.iter().map(|s| common::quote(s, 1.0)).collect();
        assert_eq!(engine.publish_batch(&quotes), symbols.len());
        assert_eq!(waker.wakes.load(Ordering::SeqCst), 1, "{list}: one wake-up for the batch");
        let drained = waker.drained.lock().expect("not poisoned").clone();
        let wanted = match list {
            "A,B,C" => 5,
            "*" => 7,
            _ => 4,
        };
        assert_eq!(drained[0].len(), wanted, "{list}: the whole batch at the first wake-up: {drained:?}");
        // The next batch wakes it again: it was left armed.
        assert_eq!(engine.publish_batch(&quotes[..1]), 1);
        assert_eq!(waker.wakes.load(Ordering::SeqCst), 2, "{list}: armed again by its own wake-up");
        // Break the cycle through the waker, as the gateway does when a session ends.
        let sub = waker.sub.lock().expect("not poisoned").take().expect("present");
        sub.release_waker();
        drop(sub);
        assert_eq!(Arc::strong_count(&waker), 1, "{list}: nothing else holds the waker");
    }
}

/// What a [`WakeBatch`] and the wakers it brackets saw, in order.
#[derive(Default)]
struct Log(std::sync::Mutex<Vec<&'static str>>);

impl Log {
    fn push(&self, event: &'static str) {
        self.0.lock().expect("not poisoned").push(event);
    }

    fn take(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.0.lock().expect("not poisoned"))
    }
}

impl WakeBatch for Log {
    fn begin(&self) {
        self.push("begin");
    }

    fn end(&self) {
        self.push("end");
    }
}

/// A waker that writes to the log.
struct Logging(Arc<Log>);

impl Wake for Logging {
    fn wake(self: Arc<Self>) {
        self.0.push("wake");
    }
}

/// The batch is told before the first waker of a publish runs and after the last, once per
/// publish however many subscribers it wakes, and not at all for a publish that wakes none.
#[test]
fn a_wake_batch_brackets_each_publishs_wake_ups() {
    let engine = engine(16, 1024, SlowConsumer::Conflate);
    let log = Arc::new(Log::default());
    assert!(engine.set_wake_batch(Arc::clone(&log) as Arc<dyn WakeBatch>));
    assert!(!engine.set_wake_batch(Arc::new(Log::default())), "one per engine");
    let subs = [subscribed(&engine, "B:A"), subscribed(&engine, "B:*")];
    let waker = Waker::from(Arc::new(Logging(Arc::clone(&log))));
    for sub in &subs {
        assert!(!sub.poll_ready(&waker));
    }
    publish(&engine, "B:A", 1);
    assert_eq!(log.take(), ["begin", "wake", "wake", "end"]);
    publish(&engine, "B:A", 1);
    assert_eq!(log.take(), Vec::<&str>::new(), "nobody waiting: no batch");
}

/// A waker that panics.
struct Panicking;

impl Wake for Panicking {
    fn wake(self: Arc<Self>) {
        panic!("a broken waker");
    }
}

/// A waker that panics still leaves the batch ended: a batch left begun would hold on to
/// what every later waker of its thread notes.
#[test]
fn a_panicking_waker_still_ends_the_batch() {
    let engine = engine(16, 1024, SlowConsumer::Conflate);
    let log = Arc::new(Log::default());
    assert!(engine.set_wake_batch(Arc::clone(&log) as Arc<dyn WakeBatch>));
    let sub = subscribed(&engine, "P:A");
    assert!(!sub.poll_ready(&Waker::from(Arc::new(Panicking))));
    let publishing = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| publish(&engine, "P:A", 1)));
    assert!(publishing.is_err(), "the waker's panic goes to the publisher");
    assert_eq!(log.take(), ["begin", "end"]);
}
