//! Ticks written by the engine's wake-up: a connection waiting for ticks gets them written
//! on the publisher's thread, without its task.
//!
//! Why: on a busy server each write to a socket costs 3–4 µs of kernel time, the same for
//! every server, and going through the connection's task (a wake-up, a trip through the
//! scheduler's queue, a poll of its `select!` and of its socket) added about 1 µs more, most
//! of it cache misses on cold per-connection state. With 1,000 dashboards that extra part of
//! every write was the difference between keeping up at once and queueing for milliseconds.
//! Here the engine's wake-up itself frames the ticks and writes them with one non-blocking
//! `send`, while the ticks are still in the cache of the thread that published them.
//! With `--io-uring` (see [`Batch`]) a wake-up only notes its connection, and when the
//! publish has woken everyone the noted connections are written together: one system call
//! for up to 64 of them, or for fewer when their frames come to 32 KiB (see `sends`).
//!
//! Only in the one state where nothing else can touch the socket's output: the task is
//! *parked*, waiting in its loop for ticks with nothing of its own to write and no pacing
//! window holding ticks back. Everything else stays with the task: the client's ops and
//! their replies, pings, heartbeats, closing, TLS connections, a write the socket does not
//! take whole (the rest is handed to the task, which writes it first), a subscriber that
//! fell off the ring, and a batch too big for one write. Ticks that come inside a pacing
//! window wait in the ring with the task still parked, and the server's flusher writes them
//! when the window ends (see `held`).
//!
//! The subscriber and the parked flag live behind one mutex, so output never comes from two
//! places at once:
//! - the task takes it whenever it touches the subscriber, and clears `parked` first thing
//!   whenever its loop wakes, before it writes anything;
//! - the wake-up only tries it: a publisher never waits for a connection. When the lock is
//!   held the holder is the task, the flusher or another wake-up, and each re-checks for
//!   ticks before it lets go (the task before it sleeps, the others after re-arming). A tick
//!   published after that check, while the lock is still held, finds the slot armed, and its
//!   wake-up finds the lock held: it leaves a note (`missed`) that the holder reads once it
//!   has let go, and serves the wake-up then ([`Direct::let_go`]), so nothing is missed.
//!
//! The socket's file descriptor is used only while `parked` is set: the task, which owns the
//! socket, clears it under the lock before closing it.
//!
//! The waker owns this state and the subscriber owns the waker, a cycle the session breaks
//! when it ends ([`Direct::release`]).

use std::{
    cell::{Cell, RefCell},
    os::fd::RawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    task::{Wake, Waker},
    time::Duration,
};

use feed_engine::{Drain, Event, Subscriber, WakeBatch};
use tokio::time::Instant;

use super::{
    sends::{send, Sends},
    session::{empty, give_back, BATCH_BYTES, SPARE},
};
use crate::{
    frame::{self, Opcode},
    reply,
    state::State,
};

/// What the task and the wake-ups share (see the module docs).
pub(crate) struct Direct {
    inner: Mutex<Inner>,
    /// A wake-up found the lock held (see the module docs and [`Direct::on_wake`]).
    missed: AtomicBool,
    /// The plain TCP socket's descriptor (over TLS only the task can write).
    fd: RawFd,
    state: Arc<State>,
}

/// Behind [`Direct`]'s mutex.
pub(crate) struct Inner {
    pub(crate) subscriber: Subscriber,
    /// The task waits for ticks with nothing to write: a wake-up may write for it.
    parked: bool,
    /// Queued in the server's [`Held`](super::held::Held) for the end of a pacing window.
    held: bool,
    /// Set with `leftover` when the subscriber fell off the ring (`--slow-consumer disconnect`).
    lagged: bool,
    /// When the connection last wrote, the task or a wake-up: for the pacing window.
    last_write: Instant,
    /// When a wake-up last wrote, if one did since the task last woke: for the task's
    /// pacing window and heartbeat.
    wrote: Option<Instant>,
    /// The part of a wake-up's write the socket did not take; the task writes it first.
    leftover: Vec<u8>,
    /// The task's waker, for a wake-up that leaves the work to the task.
    task: Option<Waker>,
}

/// Where a session's subscriber lives: in its task until the connection first has live
/// ticks to write, then in a [`Direct`] shared with the engine's wake-ups. An idle
/// connection (the many, on a big server) so never pays for the shared state.
pub(crate) enum Feed {
    Own(Subscriber),
    Shared(Arc<Direct>),
    /// Only while moving from one to the other.
    Moving,
}

/// The subscriber, borrowed from the task or locked from the shared state.
pub(crate) enum Borrowed<'a> {
    Own(&'a mut Subscriber),
    Shared(MutexGuard<'a, Inner>),
}

impl std::ops::Deref for Borrowed<'_> {
    type Target = Subscriber;

    fn deref(&self) -> &Subscriber {
        match self {
            Self::Own(subscriber) => subscriber,
            Self::Shared(inner) => &inner.subscriber,
        }
    }
}

impl std::ops::DerefMut for Borrowed<'_> {
    fn deref_mut(&mut self) -> &mut Subscriber {
        match self {
            Self::Own(subscriber) => subscriber,
            Self::Shared(inner) => &mut inner.subscriber,
        }
    }
}

impl Feed {
    const MOVING: &str = "the feed is between homes only inside `share`";

    /// The subscriber, for the task.
    pub(crate) fn subscriber(&mut self) -> Borrowed<'_> {
        match self {
            Self::Own(subscriber) => Borrowed::Own(subscriber),
            Self::Shared(direct) => Borrowed::Shared(direct.lock()),
            Self::Moving => unreachable!("{}", Self::MOVING),
        }
    }

    /// Moves the subscriber into a [`Direct`] writing to `fd`, if it is not there yet.
    pub(crate) fn share(&mut self, fd: RawFd, state: &Arc<State>) {
        if let Self::Own(_) = self {
            let Self::Own(subscriber) = std::mem::replace(self, Self::Moving) else { unreachable!("matched above") };
            *self = Self::Shared(Direct::new(subscriber, fd, Arc::clone(state)));
        }
    }

    /// [`Subscriber::poll_ready`] for the task's loop; shared, it parks (see [`Direct::poll_ready`]).
    pub(crate) fn poll_ready(&self, task: &Waker) -> bool {
        match self {
            Self::Own(subscriber) => subscriber.poll_ready(task),
            Self::Shared(direct) => direct.poll_ready(task),
            Self::Moving => unreachable!("{}", Self::MOVING),
        }
    }

    /// See [`Direct::unpark`]; nothing to take back from a subscriber the task owns.
    pub(crate) fn unpark(&self) -> Option<Handover> {
        match self {
            Self::Shared(direct) => Some(direct.unpark()),
            Self::Own(_) | Self::Moving => None,
        }
    }

    /// The task wrote at `at`: the wake-ups' pacing window counts from it too.
    pub(crate) fn wrote(&self, at: Instant) {
        if let Self::Shared(direct) = self {
            let mut inner = direct.lock();
            inner.last_write = inner.last_write.max(at);
        }
    }

    /// See [`Direct::release`].
    pub(crate) fn release(&self) {
        if let Self::Shared(direct) = self {
            direct.release();
        }
    }
}

/// What [`Direct::unpark`] hands the task.
pub(crate) struct Handover {
    /// Bytes to write before anything else (the rest of a frame may be on the wire).
    pub(crate) leftover: Vec<u8>,
    /// The subscriber fell off the ring: close with 4000 after `leftover`.
    pub(crate) lagged: bool,
    /// When a wake-up last wrote, if one did since the task last woke (its writes are all
    /// text messages).
    pub(crate) wrote: Option<Instant>,
}

impl Direct {
    pub(crate) fn new(subscriber: Subscriber, fd: RawFd, state: Arc<State>) -> Arc<Self> {
        let last_write = Instant::now();
        let (parked, held, lagged, wrote, leftover, task) = (false, false, false, None, Vec::new(), None);
        let inner = Inner { subscriber, parked, held, lagged, last_write, wrote, leftover, task };
        Arc::new(Self { inner: Mutex::new(inner), missed: AtomicBool::new(false), fd, state })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing under the lock can leave the state half-changed in a way a panic elsewhere
        // would make worse.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The task's half of [`Subscriber::poll_ready`]: when nothing is ready, arms the
    /// subscriber with this state's waker and parks, so the next tick may be written without
    /// the task; `task` is woken for anything a wake-up leaves to it.
    pub(crate) fn poll_ready(self: &Arc<Self>, task: &Waker) -> bool {
        let mut inner = self.lock();
        // What a wake-up left to the task counts as ready: parking again on it would let the
        // next wake-up write after half a frame.
        if !inner.leftover.is_empty() || inner.lagged || inner.subscriber.has_ready() {
            return true;
        }
        if !inner.task.as_ref().is_some_and(|t| t.will_wake(task)) {
            inner.task = Some(task.clone());
        }
        if inner.subscriber.poll_ready(&Waker::from(Arc::clone(self))) {
            return true;
        }
        inner.parked = true;
        self.let_go(inner);
        false
    }

    /// The lock for a wake-up, which never waits for it. Held, the holder may have made its
    /// last check for ticks already (the slot this wake-up found armed was armed before that
    /// check): the wake-up leaves it a note that it reads after letting go ([`Direct::let_go`]),
    /// then tries once more, since the holder may have let go before the note was there. If
    /// that fails too, whoever holds the lock now reads the note.
    fn try_lock_or_note(&self) -> Option<MutexGuard<'_, Inner>> {
        if let Ok(inner) = self.inner.try_lock() {
            return Some(inner);
        }
        // SeqCst: pairs with `let_go`'s read after its unlock.
        self.missed.store(true, Ordering::SeqCst);
        let inner = self.inner.try_lock().ok()?;
        self.missed.store(false, Ordering::SeqCst);
        Some(inner)
    }

    /// Lets go of the lock after its holder's last check for ticks, then serves a wake-up
    /// that found it held meanwhile (see [`Direct::try_lock_or_note`]).
    fn let_go(self: &Arc<Self>, inner: MutexGuard<'_, Inner>) {
        drop(inner);
        // SeqCst: pairs with the wake-up's note and its second try (see `on_wake`).
        if self.missed.swap(false, Ordering::SeqCst) {
            self.on_wake();
        }
    }

    /// Called by the task whenever its loop wakes, before it touches its output: no wake-up
    /// writes after this until the task parks again.
    pub(crate) fn unpark(&self) -> Handover {
        let mut inner = self.lock();
        inner.parked = false;
        Handover {
            leftover: std::mem::take(&mut inner.leftover),
            lagged: std::mem::replace(&mut inner.lagged, false),
            wrote: inner.wrote.take(),
        }
    }

    /// The session is ending: no more wake-up writes (the socket is about to close), and
    /// the cycle through the subscriber's waker is broken.
    pub(crate) fn release(&self) {
        let mut inner = self.lock();
        inner.parked = false;
        inner.task = None;
        inner.subscriber.release_waker();
    }

    /// The wake-up: writes what the subscriber has if the task is parked; otherwise, or when
    /// anything is left over, wakes the task.
    fn on_wake(self: &Arc<Self>) {
        let Some(inner) = self.try_lock_or_note() else { return };
        if !inner.parked {
            // The task is awake and checks the subscriber before it sleeps again.
            return;
        }
        if self.state.config.io_uring && defer(self) {
            // Written with the others at the end of the publish that woke it (see [`Batch`]).
            return;
        }
        self.serve(inner);
    }

    /// Writes for the parked task; queues the connection for its window's end, or wakes the
    /// task for whatever is left to it.
    fn serve(self: &Arc<Self>, mut inner: MutexGuard<'_, Inner>) {
        let written = self.write(&mut inner);
        self.settle(inner, written);
    }

    /// The flusher's turn (see `held`): the pacing windows these connections were queued for
    /// have ended, so what waited for them goes out now, for each whose task is still parked,
    /// all through `sends` at once. `directs` holds each connection once; `buffers` keeps
    /// output buffers from one turn to the next.
    pub(crate) fn on_windows_end(directs: &[Arc<Self>], sends: &mut Sends, buffers: &mut Vec<Vec<u8>>) {
        // Waits for each lock: its holders, the task and the wake-ups, hold it briefly, and
        // these entries are off the queue, so letting go here could strand the ticks. The
        // wake-ups only ever try the locks, so waiting for each in turn cannot deadlock.
        Self::serve_all(directs, sends, buffers, |direct| {
            let mut inner = direct.lock();
            inner.held = false;
            Some(inner)
        });
    }

    /// The wake-ups of one publish, deferred to its end (see [`Batch`]): as [`Direct::on_wake`]
    /// for each, with their writes through `sends` at once.
    fn on_wakes(directs: &[Arc<Self>], sends: &mut Sends, buffers: &mut Vec<Vec<u8>>) {
        // Tried only, as `on_wake` does.
        Self::serve_all(directs, sends, buffers, |direct| direct.try_lock_or_note());
    }

    /// Serves each of `directs` whose lock `take` gets and whose task is parked, holding
    /// each lock from framing to settling, as `serve` holds one, so nothing else writes to
    /// the socket meanwhile. The sends go through `sends` together, as soon as the framed
    /// bytes reach [`SUBMIT_BYTES`] and for the rest at the end. `buffers` keeps output
    /// buffers from one call to the next.
    fn serve_all<'a>(
        directs: &'a [Arc<Self>],
        sends: &mut Sends,
        buffers: &mut Vec<Vec<u8>>,
        take: impl Fn(&'a Arc<Self>) -> Option<MutexGuard<'a, Inner>>,
    ) {
        let mut ready = Vec::with_capacity(directs.len());
        let mut framed = 0;
        // This thread's share of writes (see [`Share`]) is spent once for the whole batch:
        // each connection's own count would include the others' sends.
        let mut share_started = None;
        for direct in directs {
            let Some(mut inner) = take(direct) else { continue };
            if !inner.parked {
                continue;
            }
            let mut out = buffers.pop().unwrap_or_default();
            match direct.prepare(&mut inner, &mut out) {
                Prepared::Done(written) => {
                    give_back_to(buffers, out);
                    direct.settle(inner, written);
                }
                Prepared::Send(mut pending) => {
                    share_started = share_started.or(pending.started.take());
                    framed += out.len();
                    ready.push(Ready { direct, inner, out, pending });
                    if framed >= SUBMIT_BYTES {
                        Self::send_ready(&mut ready, sends, buffers);
                        framed = 0;
                    }
                }
            }
        }
        Self::send_ready(&mut ready, sends, buffers);
        if let Some(started) = share_started {
            SHARE.with(|share| share.spend(started.elapsed()));
        }
    }

    /// Sends what `ready` framed, in one go, and settles each connection.
    fn send_ready(ready: &mut Vec<Ready<'_>>, sends: &mut Sends, buffers: &mut Vec<Vec<u8>>) {
        if ready.is_empty() {
            return;
        }
        let written = sends.send_all(ready.iter().map(|ready| (ready.direct.fd, &ready.out[..])));
        for (Ready { direct, mut inner, mut out, pending }, &bytes) in ready.drain(..).zip(written) {
            let written = direct.finish(&mut inner, &mut out, pending, bytes);
            give_back_to(buffers, out);
            direct.settle(inner, written);
        }
    }

    /// What follows a write: armed again after one that emptied the subscriber, queued for
    /// the window's end, or handed to the task.
    fn settle(self: &Arc<Self>, mut inner: MutexGuard<'_, Inner>, written: Written) {
        match written {
            Written::All => {
                // Armed again with the lock held: a tick published from here on wakes this
                // state again, and one that came before is seen by the check.
                if !inner.subscriber.poll_ready(&Waker::from(Arc::clone(self))) {
                    self.let_go(inner);
                    return;
                }
            }
            Written::Held(due) => {
                // Not armed again: the ticks that follow wait in the ring with this one, and
                // the flusher writes them all. Already queued, the entry there stands (it
                // waits again if it comes due before the window ends).
                if !std::mem::replace(&mut inner.held, true) {
                    drop(inner);
                    self.state.held.hold(due, Arc::clone(self));
                }
                return;
            }
            Written::LeftToTask => {}
        }
        // Whatever is left goes to the task, woken after the lock is released.
        inner.parked = false;
        let task = inner.task.clone();
        drop(inner);
        if let Some(task) = task {
            task.wake();
        }
    }

    /// Frames and sends what the subscriber has, all of it or nothing of it left behind.
    fn write(&self, inner: &mut Inner) -> Written {
        let mut out = SPARE.take();
        let written = match self.prepare(inner, &mut out) {
            Prepared::Done(written) => written,
            Prepared::Send(pending) => {
                let bytes = send(self.fd, &out);
                self.finish(inner, &mut out, pending, bytes)
            }
        };
        give_back(out);
        written
    }

    /// [`Direct::write`] up to the send: frames into `out` (empty) what is to go out now.
    fn prepare(&self, inner: &mut Inner, out: &mut Vec<u8>) -> Prepared {
        let window = self.state.pacing.window();
        if !window.is_zero() && Instant::now() < inner.last_write + window {
            // Inside the pacing window: the ticks wait for its end (see `pacing`).
            return Prepared::Done(Written::Held(inner.last_write + window));
        }
        let started = if self.state.share_writes {
            let now = Instant::now();
            if !SHARE.with(|share| share.allows(now)) {
                return Prepared::Done(Written::LeftToTask);
            }
            Some(now)
        } else {
            None
        };
        let (frames, drained) = frame_ticks(&mut inner.subscriber, out, self.state.engine.epoch());
        if drained == Drain::Lagged {
            inner.leftover = std::mem::take(out);
            inner.lagged = true;
            return Prepared::Done(Written::LeftToTask);
        }
        if out.is_empty() {
            return Prepared::Done(Written::All);
        }
        Prepared::Send(Pending { frames, drained, started })
    }

    /// [`Direct::write`] after the send, which took `bytes` of `out`.
    fn finish(&self, inner: &mut Inner, out: &mut Vec<u8>, pending: Pending, bytes: usize) -> Written {
        self.state.pacing.add_delivered(pending.frames);
        // Read after the send, as the task does after its writes: the window and the
        // heartbeat count from when the bytes went out.
        inner.last_write = Instant::now();
        inner.wrote = Some(inner.last_write);
        if let Some(started) = pending.started {
            SHARE.with(|share| share.spend(inner.last_write - started));
        }
        if bytes < out.len() {
            out.drain(..bytes);
            inner.leftover = std::mem::take(out);
            return Written::LeftToTask;
        }
        // A batch that filled the buffer may have more behind it: the task writes the rest.
        if pending.drained == Drain::Stopped {
            Written::LeftToTask
        } else {
            Written::All
        }
    }
}

/// Most writes in one submission of the wake-ups' batch.
const PER_SUBMISSION: usize = 64;
/// Framed bytes after which a batch's writes are submitted without framing more: a system
/// call's cost matters next to small writes only, and the first connection's ticks should
/// not wait while large batches are framed for all the others (20 connections to every
/// symbol at 100,000 ticks/s had a p50 70 µs longer when every write waited for all).
const SUBMIT_BYTES: usize = 32 * 1024;

/// A connection framed for [`Direct::send_ready`], its lock held.
struct Ready<'a> {
    direct: &'a Arc<Direct>,
    inner: MutexGuard<'a, Inner>,
    out: Vec<u8>,
    pending: Pending,
}

thread_local! {
    /// This thread's wake-ups deferred to the end of the publish that woke them.
    static DEFERRED: RefCell<Deferred> = RefCell::new(Deferred::default());
}

/// See [`DEFERRED`].
#[derive(Default)]
struct Deferred {
    /// Between a publish's [`WakeBatch::begin`] and [`WakeBatch::end`] on this thread.
    collecting: bool,
    directs: Vec<Arc<Direct>>,
    /// This thread's io_uring, made on first use.
    sends: Option<Sends>,
    buffers: Vec<Vec<u8>>,
}

/// Notes `direct` for the end of the publish that is waking it; false outside one.
fn defer(direct: &Arc<Direct>) -> bool {
    DEFERRED.with_borrow_mut(|deferred| {
        if deferred.collecting {
            deferred.directs.push(Arc::clone(direct));
        }
        deferred.collecting
    })
}

/// With `--io-uring`, the engine's [`WakeBatch`]: a publish's wake-ups only note the
/// connections they would write, and at its end their writes go out together, up to
/// [`PER_SUBMISSION`] per io_uring submission (see `sends`), on the publishing thread. Once
/// the kernel has refused that thread a ring, its wake-ups write at once instead.
pub(crate) struct Batch;

impl WakeBatch for Batch {
    fn begin(&self) {
        // Where the kernel refused this thread a ring, each wake-up is written at once, one
        // `send` each: deferring them would only make the first wait for the others.
        DEFERRED.with_borrow_mut(|deferred| deferred.collecting = deferred.sends.as_ref().is_none_or(Sends::uses_ring));
    }

    fn end(&self) {
        // Taken out while they are served: a waker run meanwhile finds nothing borrowed.
        let taken = DEFERRED.with_borrow_mut(|deferred| {
            deferred.collecting = false;
            if deferred.directs.is_empty() {
                // Woke only tasks (or SSE streams): nothing to write here.
                return None;
            }
            let sends = deferred.sends.take().unwrap_or_else(|| Sends::new(true, PER_SUBMISSION));
            Some((std::mem::take(&mut deferred.directs), sends, std::mem::take(&mut deferred.buffers)))
        });
        let Some((directs, mut sends, mut buffers)) = taken else { return };
        for chunk in directs.chunks(PER_SUBMISSION) {
            Direct::on_wakes(chunk, &mut sends, &mut buffers);
        }
        let mut directs = directs;
        directs.clear();
        DEFERRED.with_borrow_mut(|deferred| {
            deferred.directs = directs;
            deferred.sends = Some(sends);
            deferred.buffers = buffers;
        });
    }
}

/// What [`Direct::prepare`] found.
enum Prepared {
    /// Nothing to send now.
    Done(Written),
    /// `out` holds frames to send.
    Send(Pending),
}

/// About the frames [`Direct::prepare`] left in `out`, for [`Direct::finish`].
struct Pending {
    frames: u64,
    drained: Drain,
    /// When the write started, if this thread's share of writes is counted.
    started: Option<Instant>,
}

/// Keeps an emptied buffer for the flusher's next turn, as [`give_back`] does for a thread.
fn give_back_to(buffers: &mut Vec<Vec<u8>>, mut out: Vec<u8>) {
    if out.capacity() > 0 {
        empty(&mut out);
        buffers.push(out);
    }
}

/// The span over which a publishing thread's share of writes is counted.
const SHARE_PERIOD: Duration = Duration::from_millis(10);
/// How much of each [`SHARE_PERIOD`] a publishing thread may spend writing for wake-ups,
/// when the runtime has other workers: beyond it the connections' tasks write, spread over
/// the workers, rather than every write of the server queueing on the one thread that
/// publishes.
const SHARE_LIMIT: Duration = Duration::from_millis(5);

thread_local! {
    /// This thread's time spent on wake-up writes in the current period.
    static SHARE: Share = const { Share { period_start: Cell::new(None), spent: Cell::new(Duration::ZERO) } };
}

/// A thread's time spent on wake-up writes, per [`SHARE_PERIOD`].
struct Share {
    period_start: Cell<Option<Instant>>,
    spent: Cell<Duration>,
}

impl Share {
    /// May this thread write for one more wake-up at `now`?
    fn allows(&self, now: Instant) -> bool {
        if self.period_start.get().is_none_or(|start| now >= start + SHARE_PERIOD) {
            self.period_start.set(Some(now));
            self.spent.set(Duration::ZERO);
        }
        self.spent.get() < SHARE_LIMIT
    }

    fn spend(&self, time: Duration) {
        self.spent.set(self.spent.get() + time);
    }
}

enum Written {
    /// Everything the subscriber had went out.
    All,
    /// Nothing went out: the pacing window is open until then.
    Held(Instant),
    /// The task must take over: it has bytes, ticks or a verdict waiting.
    LeftToTask,
}

impl Wake for Direct {
    fn wake(self: Arc<Self>) {
        self.on_wake();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.on_wake();
    }
}

/// Frames what the subscriber has into `out`, up to one batch ([`BATCH_BYTES`]): ticks
/// straight from their shared JSON, resets built here. Returns the frames added and why the
/// drain stopped.
pub(crate) fn frame_ticks(subscriber: &mut Subscriber, out: &mut Vec<u8>, epoch: &str) -> (u64, Drain) {
    // For a reset message before its frame header is known; resets are rare, and an
    // empty `Vec` allocates nothing.
    let mut scratch = Vec::new();
    let mut frames = 0;
    let drained = subscriber.drain(|event| {
        frames += 1;
        match event {
            Event::Tick { tick, snapshot, conflated } => {
                frame::write_header(out, Opcode::Text, tick.json_len_with_flags(snapshot, conflated));
                tick.write_json_with_flags(out, snapshot, conflated);
            }
            Event::Reset { symbol } => {
                scratch.clear();
                reply::write_reset(&mut scratch, symbol, epoch);
                frame::write_text(out, &scratch);
            }
        }
        out.len() < BATCH_BYTES
    });
    (frames, drained)
}

/// For tests: a connection over loopback to `listener`, its server end (non-blocking, to be
/// kept open while the `Direct` writes to it) with a `Direct` subscribed to `selectors`, not
/// yet parked; and the client's end.
#[cfg(test)]
pub(crate) fn loopback(
    listener: &std::net::TcpListener,
    state: &Arc<State>,
    selectors: &str,
) -> (std::net::TcpStream, std::net::TcpStream, Arc<Direct>) {
    use std::os::fd::AsRawFd;

    let client = std::net::TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
    let (server_side, _) = listener.accept().expect("accept");
    server_side.set_nonblocking(true).expect("non-blocking");
    let mut subscriber = state.engine.subscriber();
    let selectors = feed_engine::Selector::parse_list(selectors).expect("valid");
    subscriber.subscribe(&selectors, feed_engine::Resume::Fresh);
    let direct = Direct::new(subscriber, server_side.as_raw_fd(), Arc::clone(state));
    (client, server_side, direct)
}

#[cfg(test)]
mod tests {
    use std::{
        io::{ErrorKind, Read},
        net::TcpListener,
    };

    use feed_engine::{Engine, EngineConfig, Quote};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::config::GatewayConfig;

    #[test]
    fn a_thread_writes_for_wake_ups_half_of_each_period_at_most() {
        let share = Share { period_start: Cell::new(None), spent: Cell::new(Duration::ZERO) };
        let start = Instant::now();
        assert!(share.allows(start));
        share.spend(SHARE_LIMIT - Duration::from_micros(1));
        assert!(share.allows(start + Duration::from_millis(1)));
        share.spend(Duration::from_micros(1));
        assert!(!share.allows(start + Duration::from_millis(9)), "the period's share is spent");
        assert!(share.allows(start + SHARE_PERIOD), "a new period starts afresh");
    }

    /// With `--io-uring`, a publish's wake-ups are only noted, and written together when
    /// the publish is done waking, on its thread: each parked connection gets its tick and
    /// nothing is left noted.
    #[test]
    fn a_publishs_wake_ups_are_written_together_when_it_is_done_waking() {
        let (engine, state, listener) = served(true);
        let mut connections = Vec::new();
        for _ in 0..3 {
            let (client, server_side, direct) = loopback(&listener, &state, "D:A");
            client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            let task = Waker::from(Arc::new(NoTask));
            assert!(!direct.poll_ready(&task), "parked");
            connections.push((client, server_side, direct));
        }
        engine.publish(&Quote { symbol: "D:A", price: 1.0, ..Quote::default() }).expect("published");
        DEFERRED.with_borrow(|deferred| {
            assert!(deferred.directs.is_empty(), "nothing left noted");
            assert!(deferred.sends.is_some(), "written by this thread's batch");
        });
        for (client, _, direct) in &mut connections {
            let mut frame = [0u8; 512];
            let read = client.read(&mut frame).expect("the tick");
            assert_eq!(frame[0], 0x81, "a text frame");
            let tick: serde_json::Value = serde_json::from_slice(&frame[2..read]).expect("one whole tick");
            assert_eq!((tick["symbol"].as_str(), tick["seq"].as_u64()), (Some("D:A"), Some(1)));
            direct.release();
        }
    }

    /// Once this thread's ring is refused (or dropped), a publish's wake-ups are no longer
    /// noted for its end: each is written at once, as without `--io-uring`.
    #[test]
    fn without_a_ring_wake_ups_are_not_deferred() {
        let (_engine, state, listener) = served(true);
        let (_client, _server_side, direct) = loopback(&listener, &state, "R:A");
        for (sends, deferred) in [(Sends::new(false, PER_SUBMISSION), false), (Sends::new(true, PER_SUBMISSION), true)] {
            if deferred && !sends.uses_ring() {
                continue; // This kernel refuses rings: only the first case applies.
            }
            DEFERRED.with_borrow_mut(|noted| noted.sends = Some(sends));
            Batch.begin();
            assert_eq!(defer(&direct), deferred);
            DEFERRED.with_borrow_mut(|noted| noted.directs.clear());
            Batch.end();
        }
    }

    /// A tick whose wake-up finds the lock held, after the holder's last check for ticks, is
    /// not stranded: the holder writes it when it lets go. Without the note it would wait
    /// for the task's next wake (a heartbeat away), since the wake-up disarmed the slot.
    #[test]
    fn a_wake_up_that_finds_the_lock_held_is_served_when_the_holder_lets_go() {
        for io_uring in [false, true] {
            let (engine, state, listener) = served(io_uring);
            let (mut client, _server_side, direct) = loopback(&listener, &state, "M:A");
            client.set_nonblocking(true).expect("non-blocking");
            assert!(!direct.poll_ready(&Waker::from(Arc::new(NoTask))), "parked, the slot armed");

            // A holder past its last check: the tick's wake-up finds the lock taken.
            let holder = direct.lock();
            engine.publish(&Quote { symbol: "M:A", price: 1.0, ..Quote::default() }).expect("published");
            let mut frame = [0u8; 512];
            let early = client.read(&mut frame).expect_err("nothing while the lock is held");
            assert_eq!(early.kind(), ErrorKind::WouldBlock);

            direct.let_go(holder);
            client.set_nonblocking(false).expect("blocking");
            client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            let read = client.read(&mut frame).expect("the tick, written as the holder let go");
            let tick: serde_json::Value = serde_json::from_slice(&frame[2..read]).expect("one whole tick");
            assert_eq!(tick["seq"], 1, "io_uring {io_uring}");
            direct.release();
        }
    }

    /// An engine, a server's state over it with `--io-uring` on or off, and a listener for
    /// [`loopback`] connections.
    fn served(io_uring: bool) -> (Engine, Arc<State>, TcpListener) {
        let engine = Engine::new(EngineConfig::default());
        let config = GatewayConfig { io_uring, ..GatewayConfig::default() };
        let state = State::new(engine.clone(), config, CancellationToken::new());
        (engine, state, TcpListener::bind("127.0.0.1:0").expect("bind"))
    }

    /// A task that must not be needed.
    struct NoTask;

    impl Wake for NoTask {
        fn wake(self: Arc<Self>) {
            panic!("the task was woken");
        }
    }
}
