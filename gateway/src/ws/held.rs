//! Connections whose ticks wait out the pacing window while their tasks stay asleep: one
//! task per server writes each of them when its window ends.
//!
//! Why: a wake-up that finds the pacing window open (see `pacing`) used to hand its ticks to
//! the connection's task, which woke, set its timer for the window's end, slept, woke again
//! and wrote. Two polls, a timer and often a wake-up from another thread for every write made
//! a write held for the window cost half as much again as one written at once, or more
//! (8.4–10.5 µs of CPU against 5.5 on a slow host's 1,000 dashboards), so the window bought
//! back less CPU than it cost in latency. Here the connection stays parked, its ticks wait
//! in the engine's ring, nothing wakes it for the ticks that follow, and when the window
//! ends the flusher writes them all in one write, as a wake-up would have (see `direct`), and
//! the writes of connections whose windows end together go to the kernel together (see
//! `sends`).
//!
//! The queue is ordered by when each window ends. An entry is a promise to look, not a
//! claim on the socket: when it comes due the flusher takes the connection's lock and writes
//! only if the task is still parked, and a window that a later write moved on is waited out
//! again.

use std::{
    cmp::Ordering,
    collections::BinaryHeap,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::{sync::Notify, time::Instant};

use super::{direct::Direct, sends::Sends};
use crate::state::State;

/// At most this many connections are written per turn of the flusher before it lets the
/// worker's other tasks run: a storm's thousands of windows may end in the same millisecond.
const PER_TURN: usize = 64;

/// See the module docs; one per server, in its `State`.
#[derive(Default)]
pub(crate) struct Held {
    queue: Mutex<BinaryHeap<Entry>>,
    /// Wakes the flusher when an entry comes due sooner than anything it waits for.
    sooner: Notify,
}

impl Held {
    /// Queues `direct` to be written at `due`, the end of its pacing window. The caller
    /// queues a connection once until [`Direct::on_windows_end`] takes it off.
    pub(crate) fn hold(&self, due: Instant, direct: Arc<Direct>) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        // Windows are the same length for every connection, so a new entry is mostly due
        // last: the flusher needs waking only when the queue was empty or the window shrank.
        let sooner = queue.peek().is_none_or(|first| due < first.due);
        queue.push(Entry { due, direct });
        drop(queue);
        if sooner {
            self.sooner.notify_one();
        }
    }

    /// Moves up to `limit` entries due by `now` into `out`; when the next one is due, if
    /// none is due now.
    fn take_due(&self, now: Instant, out: &mut Vec<Arc<Direct>>, limit: usize) -> Next {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        while out.len() < limit {
            match queue.peek() {
                Some(first) if first.due <= now => out.push(queue.pop().expect("peeked").direct),
                Some(first) => return Next::At(first.due),
                None => return Next::Empty,
            }
        }
        Next::Now
    }

    /// The flusher: writes held connections as their windows end, until shutdown.
    pub(crate) async fn flush(state: Arc<State>) {
        let held = &state.held;
        let mut due = Vec::with_capacity(PER_TURN);
        let mut sends = Sends::new(state.config.io_uring, PER_TURN);
        let mut buffers = Vec::with_capacity(PER_TURN);
        // Registered once: a new one each turn would take the token's lock each time.
        let stopping = state.shutdown.cancelled();
        tokio::pin!(stopping);
        loop {
            let next = held.take_due(Instant::now(), &mut due, PER_TURN);
            Direct::on_windows_end(&due, &mut sends, &mut buffers);
            due.clear();
            let wake_at = match next {
                Next::Now => {
                    tokio::task::yield_now().await;
                    continue;
                }
                Next::At(at) => Some(at),
                // Nothing held: only the next `hold` wakes the flusher.
                Next::Empty => None,
            };
            let window_ends = async {
                match wake_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = &mut stopping => return,
                () = held.sooner.notified() => {}
                () = window_ends => {}
            }
        }
    }
}

/// What [`Held::take_due`] found after the entries it took.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// More are due already.
    Now,
    /// The next comes due then.
    At(Instant),
    /// The queue is empty.
    Empty,
}

/// A held connection and when its window ends; the heap's first is the soonest.
struct Entry {
    due: Instant,
    direct: Arc<Direct>,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: `BinaryHeap` pops its greatest.
        other.due.cmp(&self.due)
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due
    }
}

impl Eq for Entry {}

#[cfg(test)]
mod tests {
    use std::{
        io::{ErrorKind, Read},
        net::{TcpListener, TcpStream},
        os::fd::AsRawFd,
        sync::atomic::{AtomicUsize, Ordering as AtomicOrdering},
        task::{Wake, Waker},
        time::Duration,
    };

    use feed_engine::{Engine, EngineConfig, Quote, Resume, Selector};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::{config::GatewayConfig, pacing::Seen, ws::direct::loopback};

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, AtomicOrdering::SeqCst);
        }
    }

    fn queued(held: &Held) -> usize {
        held.queue.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// The `seq`s of the text frames in `bytes` (server frames: unmasked, short payloads).
    fn seqs(mut bytes: &[u8]) -> Vec<u64> {
        let mut seqs = Vec::new();
        while let [0x81, len, rest @ ..] = bytes {
            let (payload, next) = rest.split_at(usize::from(*len));
            let tick: serde_json::Value = serde_json::from_slice(payload).expect("a tick's JSON");
            seqs.push(tick["seq"].as_u64().expect("a seq"));
            bytes = next;
        }
        assert!(bytes.is_empty(), "whole frames only: {bytes:?}");
        seqs
    }

    /// A tick that finds the pacing window open neither goes out nor wakes the task; the
    /// connection is queued once however many ticks follow, and when its window ends one
    /// `send` carries them all, in order, with the task still asleep.
    #[test]
    fn ticks_inside_the_window_wait_parked_and_go_out_in_one_write_when_it_ends() {
        const WINDOW: Duration = Duration::from_millis(50);
        let engine = Engine::new(EngineConfig::default());
        let config = GatewayConfig { write_budget_per_s: 1, max_coalesce: WINDOW, ..GatewayConfig::default() };
        let state = State::new(engine.clone(), config, CancellationToken::new());
        // Far over a budget of one write a second: the window opens, at its cap.
        state.pacing.add_delivered(1_000);
        assert_eq!(state.pacing.update(&mut Seen::default(), Duration::from_millis(100), 1, None), WINDOW);

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        let (server_side, _) = listener.accept().expect("accept");
        client.set_nonblocking(true).expect("non-blocking");
        let mut subscriber = engine.subscriber();
        subscriber.subscribe(&Selector::parse_list("H:*").expect("valid"), Resume::Fresh);
        // Written just now, as far as the window is concerned.
        let direct = Direct::new(subscriber, server_side.as_raw_fd(), Arc::clone(&state));
        let task = Arc::new(CountingWaker::default());
        assert!(!direct.poll_ready(&Waker::from(Arc::clone(&task))), "nothing to read yet: parked");

        let publish = |price| engine.publish(&Quote { symbol: "H:A", price, ..Quote::default() }).expect("published");
        for price in [1.0, 2.0, 3.0] {
            publish(price);
        }
        let mut buffer = [0u8; 4096];
        let early = client.read(&mut buffer).expect_err("nothing may go out inside the window");
        assert_eq!(early.kind(), ErrorKind::WouldBlock);
        assert_eq!(queued(&state.held), 1, "queued once for three ticks");
        let mut due = Vec::new();
        assert!(matches!(state.held.take_due(Instant::now(), &mut due, PER_TURN), Next::At(_)), "not due yet");

        std::thread::sleep(WINDOW);
        assert_eq!(state.held.take_due(Instant::now(), &mut due, PER_TURN), Next::Empty);
        assert_eq!(due.len(), 1);
        Direct::on_windows_end(&due, &mut Sends::new(true, PER_TURN), &mut Vec::new());
        client.set_nonblocking(false).expect("blocking");
        client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let read = client.read(&mut buffer).expect("the held ticks");
        assert_eq!(seqs(&buffer[..read]), [1, 2, 3], "one write, in order");
        assert_eq!(task.0.load(AtomicOrdering::SeqCst), 0, "the task slept throughout");

        // Armed again by that write, whose window the next tick waits out in turn.
        publish(4.0);
        assert_eq!(queued(&state.held), 1);
        direct.release();
    }

    /// Connections whose windows end together are written in one turn, each with its own
    /// ticks in order; one whose socket takes nothing hands its frames to its task, whole,
    /// and the others are written all the same.
    #[test]
    fn windows_that_end_together_are_written_in_one_turn_and_a_full_socket_goes_to_its_task() {
        const WINDOW: Duration = Duration::from_millis(30);
        for use_ring in [true, false] {
            let engine = Engine::new(EngineConfig::default());
            let config = GatewayConfig { write_budget_per_s: 1, max_coalesce: WINDOW, ..GatewayConfig::default() };
            let state = State::new(engine.clone(), config, CancellationToken::new());
            state.pacing.add_delivered(1_000);
            state.pacing.update(&mut Seen::default(), Duration::from_millis(100), 1, None);

            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let mut connections = Vec::new();
            for symbol in ["H:A", "H:B", "H:C"] {
                let (client, server_side, direct) = loopback(&listener, &state, symbol);
                let task = Arc::new(CountingWaker::default());
                assert!(!direct.poll_ready(&Waker::from(Arc::clone(&task))));
                connections.push((client, server_side, direct, task));
            }
            // The last connection's socket is full: junk it will read past.
            let junk = vec![0u8; 64 * 1024];
            let mut filled = 0;
            loop {
                let full = [(connections[2].1.as_raw_fd(), &junk[..])];
                let written = Sends::new(false, 1).send_all(full.iter().copied()).to_vec();
                if written[0] == 0 {
                    break;
                }
                filled += written[0];
            }
            for (symbol, price) in [("H:A", 1.0), ("H:B", 2.0), ("H:A", 3.0), ("H:C", 4.0), ("H:B", 5.0)] {
                engine.publish(&Quote { symbol, price, ..Quote::default() }).expect("published");
            }
            assert_eq!(queued(&state.held), 3, "each connection queued once");

            std::thread::sleep(WINDOW);
            let mut due = Vec::new();
            assert_eq!(state.held.take_due(Instant::now(), &mut due, PER_TURN), Next::Empty);
            let mut sends = Sends::new(use_ring, PER_TURN);
            Direct::on_windows_end(&due, &mut sends, &mut Vec::new());

            let mut buffer = [0u8; 4096];
            for (index, expected) in [(0, [1, 2]), (1, [1, 2])] {
                let (client, _, _, task) = &mut connections[index];
                client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
                let read = client.read(&mut buffer).expect("the held ticks");
                assert_eq!(seqs(&buffer[..read]), expected, "ring {use_ring}: one write, in order");
                assert_eq!(task.0.load(AtomicOrdering::SeqCst), 0, "its task slept throughout");
            }
            let (client, _, direct, task) = &mut connections[2];
            assert_eq!(task.0.load(AtomicOrdering::SeqCst), 1, "ring {use_ring}: the full socket's task is woken");
            let handover = direct.unpark();
            assert_eq!(seqs(&handover.leftover), [1], "its frames, whole, for the task to write");
            client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            let mut junk_read = vec![0u8; filled];
            client.read_exact(&mut junk_read).expect("the junk");
            client.set_nonblocking(true).expect("non-blocking");
            let nothing = client.read(&mut buffer).expect_err("nothing after the junk");
            assert_eq!(nothing.kind(), ErrorKind::WouldBlock);
            for (_, _, direct, _) in &connections {
                direct.release();
            }
        }
    }
}
