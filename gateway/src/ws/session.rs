//! One WebSocket connection after the upgrade: its engine subscriber, its ops, its heartbeats,
//! and its output.
//!
//! The loop selects over four cancel-safe sources: the server's shutdown, the socket's reads
//! (bytes go straight into the connection's [`Decoder`], which holds no buffer while idle),
//! one timer, and the subscriber's readiness. One task per connection; once live ticks flow,
//! its subscriber is shared with the engine's wake-ups, which write ticks themselves while
//! the task waits for them with nothing else to send (see `direct`), and the task takes the
//! output back first thing whenever it wakes. Whatever the task produces is appended to one
//! output buffer as complete frames — ticks are framed straight from their shared JSON
//! bytes — and the buffer goes out with one write, so a burst of ticks costs one syscall per
//! ~64 KiB rather than one per tick. Ticks wait in the engine's ring while a pacing window is
//! open, not in the buffer, and a connection holds no buffer between writes: each thread
//! passes one from connection to connection (see [`SPARE`]).
//!
//! A slow client only ever blocks this task's write. While blocked, the session still
//! honours shutdown, checks [`Subscriber::is_lagging`] when the policy is `Disconnect`, and
//! drops a peer that takes nothing for two heartbeat intervals. The engine and other clients
//! never wait for it; with `Conflate` it simply resumes where the engine puts it, and its
//! memory stays one bounded buffer. With `Disconnect` it is closed with 4000; that close
//! frame queues behind what the client has not read yet and goes out as it reads on, so the
//! client learns why — unless it stalls for two heartbeat intervals.
//!
//! Authentication: the session holds its connection's [`Grant`]. A subscribe outside it gets
//! `forbidden`; the `auth` op replaces it and drops what the new one no longer allows; and
//! the timer also watches its expiry (`exp` plus leeway), closing with 1008 when it passes.
//!
//! Liveness: a WebSocket ping goes out every heartbeat interval; a peer from which nothing
//! (pong or any other frame) arrived since the last two pings went out has left both
//! unanswered for at least two intervals, and is dropped without a close frame — a peer
//! that answers nothing would not read one either. After a heartbeat interval without
//! any message, a `{"type":"heartbeat"}` message goes out for browsers, which cannot see pings.

use std::{cell::Cell, sync::Arc, time::Duration};

use feed_engine::{Drain, Resume, Selector, SlowConsumer};
use tokio::{
    io::AsyncWriteExt as _,
    time::{interval, sleep_until, timeout_at, Instant, MissedTickBehavior},
};

use super::{
    codec::{Item, LazyDecoder},
    direct::{frame_ticks, Feed},
    socket::{read_into, Socket, Upgrade},
};
use crate::{
    auth::{Grant, Token},
    frame::{self, Opcode},
    limits::{ConnectionGuard, OpsLimiter, Verdict},
    op::{self, Op, Rejected, Request},
    reply::{self, Close, WireError},
    state::State,
};

/// Stop adding frames to a batch past this many bytes. Just under 64 KiB, so that with the
/// one frame that may overshoot it the buffer's capacity stays at 64 KiB.
pub(super) const BATCH_BYTES: usize = 63 * 1024;
/// Capacity kept after a write; a larger buffer (one huge reply) is shrunk back.
const KEEP_BYTES: usize = 64 * 1024;
/// How often a blocked write checks whether the subscriber fell off the engine's ring
/// (`--slow-consumer disconnect`).
const LAG_CHECK: Duration = Duration::from_millis(100);
/// How long the client's close reply may take to come back; during shutdown also how long
/// (at most the grace period) a close frame may take to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

thread_local! {
    /// The output buffer the last connection served on this thread gave back after its
    /// write: by its task, by a wake-up on a publishing thread (see `direct`) or by the
    /// flusher at a pacing window's end (see `held`). The next connection to frame ticks
    /// takes it, so ticks are framed into memory that is already in the cache, rather than
    /// into each connection's own buffer, cold after the thousand others written since
    /// (framing was most of the session's own CPU in the dashboard and storm profiles). A
    /// connection keeps a buffer only while it holds frames the socket has not taken.
    pub(super) static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Hands a written output buffer back to this thread's [`SPARE`], emptied, for the next
/// connection it serves; if the thread has one already, the larger one is kept and the
/// other freed.
pub(super) fn give_back(mut out: Vec<u8>) {
    empty(&mut out);
    SPARE.with(|spare| {
        let other = spare.take();
        spare.set(if out.capacity() >= other.capacity() { out } else { other });
    });
}

/// Empties a written output buffer for reuse, shrunk back to [`KEEP_BYTES`] if one huge
/// write grew it.
pub(super) fn empty(out: &mut Vec<u8>) {
    out.clear();
    if out.capacity() > KEEP_BYTES {
        out.shrink_to(KEEP_BYTES);
    }
}

/// What was asked for in the `/ws` query string.
pub(crate) struct Initial {
    /// The symbols as requested, echoed in `subscribed`.
    pub(crate) symbols: Vec<String>,
    /// The same, parsed.
    pub(crate) selectors: Vec<Selector>,
}

/// How the session ends.
#[derive(Debug)]
enum Exit {
    /// Send this close frame, then wait briefly for the client's reply.
    Close(Close),
    /// The client closed: echo its code and finish.
    PeerClosed(Option<u16>),
    /// The socket is dead or the peer silent: just drop it.
    Gone,
}

/// Waits until the subscriber has something, parked meanwhile (see `direct`).
///
/// # Cancel safety
/// Cancel safe: the ticks stay in the engine; a wake-up that writes them meanwhile is fine,
/// as the loop takes over before it writes anything itself.
fn ready(feed: &Feed) -> impl std::future::Future<Output = ()> + Send + '_ {
    std::future::poll_fn(move |cx| {
        if feed.poll_ready(cx.waker()) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
}

/// One WebSocket connection: its subscriber, its socket, its output and its deadlines.
pub(crate) struct Session {
    state: Arc<State>,
    /// The connection's subscriber, shared with the engine's wake-ups that write ticks
    /// while this task waits once live ticks flow (see `direct`).
    feed: Feed,
    socket: Socket,
    /// Complete frames waiting to be written. Between writes none of it is on the wire
    /// yet; a write that fails part way leaves only the unwritten rest. After a complete
    /// write it goes to [`SPARE`], so a connection between writes holds no buffer.
    out: Vec<u8>,
    /// What the client has sent so far that is not a whole frame yet.
    decoder: LazyDecoder,
    ops: OpsLimiter,
    /// When the last text message was written (pings do not count: browsers cannot see them).
    last_text: Instant,
    /// Whether `out` holds a text message not yet written.
    text_pending: bool,
    next_ping: Instant,
    /// Pings sent since anything last arrived from the peer.
    unanswered_pings: u8,
    /// When the last write finished: ticks arriving within the pacing window after it wait
    /// for the window's end and share one write.
    last_write: Instant,
    /// What the connection's token allows, and until when (everything when auth is off).
    grant: Grant,
    /// The connection's place in the connection limits, released when the session ends.
    _guard: ConnectionGuard,
}

impl Session {
    /// A session for an upgraded connection: the welcome, and the `?symbols=` subscription
    /// with its reply, are queued for the first write. `guard` holds its place in the
    /// connection limits until the session ends.
    pub(crate) fn open(
        state: Arc<State>,
        upgrade: Upgrade,
        initial: Option<Initial>,
        grant: Grant,
        guard: ConnectionGuard,
    ) -> Self {
        let Upgrade { socket, early } = upgrade;
        let now = Instant::now();
        let heartbeat = state.config.heartbeat;
        let mut session = Session {
            feed: Feed::Own(state.engine.subscriber()),
            decoder: LazyDecoder::new(state.config.max_message_bytes),
            ops: OpsLimiter::new(state.config.max_ops_per_sec, now.into_std()),
            state,
            socket,
            out: Vec::new(),
            unanswered_pings: 0,
            last_text: now,
            text_pending: false,
            next_ping: now + heartbeat,
            last_write: now,
            grant,
            _guard: guard,
        };
        let welcome = reply::welcome(session.state.engine.epoch(), &session.state.config);
        session.push_text(&welcome);
        if let Some(initial) = initial {
            session.push_text(&reply::subscribed(&initial.symbols, None));
            session.feed.subscriber().subscribe(&initial.selectors, Resume::Fresh);
        }
        session.decoder.feed(&early);
        session
    }

    /// Serves the connection until it closes.
    ///
    /// Run it as a task of its own, spawned once the upgrade is done: the task's future is
    /// then this session and its loop only, with nothing left of the upgrade (idle
    /// connections are the many, and every byte of their task counts).
    ///
    /// Not an `async fn`: one taking `self` by value keeps two copies of it in its future,
    /// the argument and the moved-in local, for the connection's whole life. The block
    /// below owns the one copy it works on.
    #[allow(clippy::manual_async_fn)] // see above
    pub(crate) fn run(mut self) -> impl std::future::Future<Output = ()> + Send {
        async move {
            tracing::debug!("websocket open");
            let exit = match self.serve().await {
                Ok(never) => match never {},
                Err(exit) => exit,
            };
            // The wake-ups stop writing here; what one left goes out before the close frame.
            let exit = match self.take_over() {
                Ok(_) => exit,
                Err(lagged) => lagged,
            };
            tracing::debug!(?exit, "websocket closing");
            // Boxed: the closing steps run once, so their state need not sit in every idle
            // connection's task for its whole life.
            Box::pin(self.finish(exit)).await;
        }
    }

    /// The main loop; returns only through `Err(exit)`.
    async fn serve(&mut self) -> Result<std::convert::Infallible, Exit> {
        // The welcome and the reply to `?symbols=` are queued already; snapshots follow them,
        // then the answers to whatever the client sent along with its upgrade request.
        self.fill()?;
        self.on_received()?;
        self.last_write = Instant::now();
        self.write_out().await?;

        // Both live across iterations: re-creating them would register with the timer wheel
        // and with the server's shutdown notification (a shared lock) once per batch.
        // One timer serves both the heartbeat and token deadlines and the pacing window: a
        // second one would sit in every idle connection's task for nothing.
        let timer = sleep_until(self.next_deadline());
        // Created before the flag is first read, so no close can slip between (see `closing`).
        let shutdown = self.state.closing.watch();
        let mut watching = false;
        // Set while ticks wait for the pacing window to end.
        let mut flush_armed = false;
        tokio::pin!(timer, shutdown);
        loop {
            // Replies to the client's own ops and control frames never wait for the window,
            // nor does the rest of a write a wake-up began.
            let mut urgent;
            // Each branch first takes the output back from the engine's wake-ups, before it
            // writes anything itself (see `take_over`).
            tokio::select! {
                biased;
                () = self.state.closing.closed(shutdown.as_mut(), &mut watching) => {
                    return Err(Exit::Close(Close::GOING_AWAY));
                }
                read = read_into(&mut self.socket, &mut self.decoder) => {
                    self.take_over()?;
                    urgent = true;
                    match read {
                        Ok(0) => return Err(Exit::Gone),
                        Ok(_) => {
                            self.on_received()?;
                            // An `auth` op may have brought the token's expiry closer.
                            timer.as_mut().reset(self.next_wake(flush_armed));
                        }
                        Err(error) => {
                            tracing::debug!(%error, "read failed");
                            return Err(Exit::Gone);
                        }
                    }
                }
                () = &mut timer => {
                    urgent = self.take_over()?;
                    let now = Instant::now();
                    if flush_armed && now >= self.flush_due() {
                        flush_armed = false;
                        if self.fill()? > 0 {
                            self.share_feed();
                        }
                    }
                    if now >= self.next_deadline() {
                        urgent = true;
                        self.on_timer()?;
                    }
                    timer.as_mut().reset(self.next_wake(flush_armed));
                }
                // While the window is open the ticks wait in the engine's ring, not here:
                // no wake-up per tick, one drain and one write when it closes. Waiting here
                // parks the task once live ticks flow: ticks that come meanwhile are written
                // by the engine's wake-up, and the task wakes only for what that leaves it.
                () = ready(&self.feed), if !flush_armed && self.out.len() < BATCH_BYTES => {
                    urgent = self.take_over()?;
                    let due = self.flush_due();
                    // With no window (a server under its write budget) it is always due: no
                    // need to read the clock for it.
                    if self.state.pacing.window().is_zero() || Instant::now() >= due {
                        if self.fill()? > 0 {
                            self.share_feed();
                        }
                    } else if self.feed.subscriber().has_pending() {
                        // Only for ticks of its own: waking at the window's end for nothing
                        // would hold back (by the timer's lateness) a tick arriving just after.
                        flush_armed = true;
                        if due < timer.deadline() {
                            timer.as_mut().reset(due);
                        }
                    }
                }
            }
            if !self.out.is_empty() {
                let due = self.flush_due();
                let now = Instant::now();
                if urgent || self.out.len() >= BATCH_BYTES || now >= due {
                    self.last_write = now;
                    self.write_out().await?;
                    // The timer may still be set for the window; firing early is harmless.
                    flush_armed = false;
                } else if !flush_armed {
                    flush_armed = true;
                    if due < timer.deadline() {
                        timer.as_mut().reset(due);
                    }
                }
            }
            // A busy connection may always have more ticks ready and a socket that always
            // takes them; let the scheduler run other connections now and then.
            tokio::task::consume_budget().await;
        }
    }

    /// Takes the output back from the engine's wake-ups (see `direct`): after this none of
    /// them writes until the task waits for ticks again. Returns whether they left bytes to
    /// write, which go out before anything else.
    ///
    /// # Errors
    /// The subscriber fell off the engine's ring (`--slow-consumer disconnect`).
    fn take_over(&mut self) -> Result<bool, Exit> {
        let Some(handover) = self.feed.unpark() else { return Ok(false) };
        if let Some(wrote) = handover.wrote {
            self.last_write = self.last_write.max(wrote);
            self.last_text = self.last_text.max(wrote);
        }
        let left = !handover.leftover.is_empty();
        if left {
            // The task parks only with nothing of its own to write.
            debug_assert!(self.out.is_empty(), "a wake-up wrote while the task had output");
            self.out = handover.leftover;
            self.text_pending = true;
        }
        if handover.lagged {
            tracing::debug!("slow consumer: fell behind the engine's ring");
            return Err(Exit::Close(Close::SLOW_CONSUMER));
        }
        Ok(left)
    }

    fn heartbeat(&self) -> Duration {
        self.state.config.heartbeat
    }

    /// When the timer must fire next: the next deadline, or the end of the pacing window
    /// if ticks are waiting for it.
    fn next_wake(&self, flush_armed: bool) -> Instant {
        let deadline = self.next_deadline();
        if flush_armed {
            deadline.min(self.flush_due())
        } else {
            deadline
        }
    }

    /// When the pacing window that began with the last write ends: ticks that arrive before
    /// then wait for it and share one write.
    fn flush_due(&self) -> Instant {
        self.last_write + self.state.pacing.window()
    }

    /// The next time the timer has something to check.
    fn next_deadline(&self) -> Instant {
        let deadline = self.next_ping.min(self.last_text + self.heartbeat());
        self.grant.expires_at().map_or(deadline, |expiry| deadline.min(expiry))
    }

    fn on_timer(&mut self) -> Result<(), Exit> {
        let now = Instant::now();
        if self.grant.expires_at().is_some_and(|expiry| now >= expiry) {
            tracing::debug!("token expired without an auth op replacing it");
            return Err(Exit::Close(Close::TOKEN_EXPIRED));
        }
        if now >= self.next_ping {
            if self.unanswered_pings >= 2 {
                tracing::debug!("peer answered neither of the last two pings");
                return Err(Exit::Gone);
            }
            self.unanswered_pings += 1;
            frame::write_control(&mut self.out, Opcode::Ping, b"");
            self.next_ping = now + self.heartbeat();
        }
        if now >= self.last_text + self.heartbeat() && !self.text_pending {
            self.push_text(&reply::heartbeat());
        }
        Ok(())
    }

    /// Answers every whole frame the client's latest bytes completed.
    fn on_received(&mut self) -> Result<(), Exit> {
        self.unanswered_pings = 0;
        while let Some(item) = self.decoder.next() {
            self.on_item(item)?;
        }
        Ok(())
    }

    fn on_item(&mut self, item: Item) -> Result<(), Exit> {
        match item {
            Item::Pong => Ok(()),
            Item::Ping(payload) => {
                frame::write_control(&mut self.out, Opcode::Pong, &payload);
                Ok(())
            }
            Item::Close(code) => Err(Exit::PeerClosed(code)),
            Item::Fail(close) => Err(Exit::Close(close)),
            Item::Binary(_) => self.on_op(Err(Rejected { id: None, error: WireError::binary_message() })),
            Item::Text(text) => self.on_op(op::parse(text.as_bytes())),
        }
    }

    /// A whole text or binary message: an op, or why it is not one. Each counts against
    /// `--max-ops-per-sec`, the malformed ones too.
    fn on_op(&mut self, parsed: Result<Request, Rejected>) -> Result<(), Exit> {
        let id = match &parsed {
            Ok(request) => request.id.as_ref(),
            Err(rejected) => rejected.id.as_ref(),
        };
        match self.ops.check(std::time::Instant::now()) {
            Verdict::Allowed => {}
            Verdict::Limited => {
                tracing::debug!("op over the per-second limit");
                let error = WireError::too_many_ops(self.state.config.max_ops_per_sec);
                self.push_text(&error.to_json(id));
                return Ok(());
            }
            Verdict::Abuse => {
                tracing::warn!("closing: ops over the limit for several seconds");
                return Err(Exit::Close(Close::ABUSE));
            }
        }
        match parsed {
            Ok(request) => self.perform(request),
            Err(rejected) => {
                self.push_text(&rejected.error.to_json(rejected.id.as_ref()));
                Ok(())
            }
        }
    }

    fn perform(&mut self, request: Request) -> Result<(), Exit> {
        let id = request.id.as_ref();
        match request.op {
            Op::Subscribe { symbols, selectors, resume } => {
                // Never narrowed: a request the token does not cover is refused whole.
                if let Err(error) = self.grant.check(&selectors) {
                    self.push_text(&error.to_json(id));
                    return Ok(());
                }
                let max = self.state.config.max_subscriptions;
                let subscriber = self.feed.subscriber();
                let over = subscriber.selectors().len() + subscriber.count_new(&selectors) > max;
                drop(subscriber);
                if over {
                    self.push_text(&WireError::too_many_subscriptions(max).to_json(id));
                    return Ok(());
                }
                // The reply goes first: snapshots and replayed ticks follow it.
                self.push_text(&reply::subscribed(&symbols, id));
                let resume = match &resume {
                    Some(seqs) => Resume::Seqs { epoch: seqs.epoch.as_deref(), since: &seqs.since },
                    None => Resume::Fresh,
                };
                self.feed.subscriber().subscribe(&selectors, resume);
                self.fill().map(drop)
            }
            Op::Unsubscribe { symbols, selectors } => {
                self.feed.subscriber().unsubscribe(&selectors);
                self.push_text(&reply::unsubscribed(&symbols, id));
                Ok(())
            }
            Op::Ping => {
                self.push_text(&reply::pong(id));
                Ok(())
            }
            Op::Auth { token } => {
                self.reauthenticate(&token, id);
                Ok(())
            }
        }
    }

    /// The `auth` op: a valid token replaces the grant at once, and subscriptions it no
    /// longer allows are dropped (one `forbidden` error names them); a refused token changes
    /// nothing.
    fn reauthenticate(&mut self, token: &Token, id: Option<&serde_json::Value>) {
        let Some(verifier) = &self.state.auth else {
            self.push_text(&WireError::auth_not_enabled().to_json(id));
            return;
        };
        match verifier.verify(token) {
            Err(rejection) => {
                tracing::debug!(%rejection, "auth op refused; the old token stays");
                self.push_text(&WireError::unauthorized(&rejection).to_json(id));
            }
            Ok(grant) => {
                let dropped = grant.forbidden(self.feed.subscriber().selectors());
                self.grant = grant;
                self.push_text(&reply::authenticated(self.grant.exp_s(), id));
                if !dropped.is_empty() {
                    // The engine sends nothing of these after this call, queued ticks included.
                    self.feed.subscriber().unsubscribe(&dropped);
                    self.push_text(&WireError::no_longer_entitled(&dropped).to_json(id));
                }
            }
        }
    }

    fn push_text(&mut self, json: &[u8]) {
        frame::write_text(&mut self.out, json);
        self.text_pending = true;
    }

    /// Frames what the subscriber has into `out`, up to one batch; returns how many frames.
    fn fill(&mut self) -> Result<u64, Exit> {
        if self.out.capacity() == 0 {
            self.out = SPARE.take();
        }
        let before = self.out.len();
        let (frames, drained) = frame_ticks(&mut self.feed.subscriber(), &mut self.out, self.state.engine.epoch());
        if self.out.len() > before {
            self.text_pending = true;
            self.state.pacing.add_delivered(frames);
        }
        match drained {
            Drain::Idle | Drain::Stopped => Ok(frames),
            Drain::Lagged => {
                tracing::debug!("slow consumer: fell behind the engine's ring");
                Err(Exit::Close(Close::SLOW_CONSUMER))
            }
        }
    }

    /// Live ticks flow: from now on the engine's wake-ups may write them while the task
    /// waits (see `direct`). Not before, so an idle connection carries no shared state;
    /// never over TLS or with `--direct-writes false`.
    fn share_feed(&mut self) {
        if let (true, Some(fd)) = (self.state.config.direct_writes, self.socket.raw_fd()) {
            self.feed.share(fd, &self.state);
        }
    }

    /// Writes `out` completely, then empties it. On failure `out` keeps what did not go out,
    /// for `finish` to put a close frame after.
    ///
    /// The caller sets `last_write` to a clock reading from just before. When the socket
    /// takes everything at once (almost always) that stands as the write's end, to well
    /// within the timer's millisecond, and the clock is not read again (a read per write
    /// was 0.8% of a busy server's samples); after a blocked write it is read anew.
    async fn write_out(&mut self) -> Result<(), Exit> {
        let mut written = 0;
        let result = match self.write_fast(&mut written) {
            Ok(true) => Ok(()),
            Ok(false) => {
                let check_lag = self.state.engine.config().slow_consumer == SlowConsumer::Disconnect;
                // Boxed for the same reason as `finish`: only a client that is behind needs it.
                let blocked = Box::pin(self.write_blocked(&mut written, check_lag)).await;
                self.last_write = Instant::now();
                blocked
            }
            Err(exit) => Err(exit),
        };
        if let Err(exit) = result {
            self.out.drain(..written);
            return Err(exit);
        }
        give_back(std::mem::take(&mut self.out));
        if self.text_pending {
            self.text_pending = false;
            self.last_text = self.last_write;
        }
        // The wake-ups' pacing window counts from this write too.
        self.feed.wrote(self.last_write);
        Ok(())
    }

    /// Writes what the socket takes now of `out[*written..]`, counting it in `written`;
    /// `true` when all of `out` is written. The common case: the socket takes the whole
    /// batch with no timer and no waker registration.
    fn write_fast(&mut self, written: &mut usize) -> Result<bool, Exit> {
        while *written < self.out.len() {
            match self.socket.try_write(&self.out[*written..]) {
                Ok(0) => return Err(Exit::Gone),
                Ok(n) => *written += n,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                Err(error) => {
                    tracing::debug!(%error, "write failed");
                    return Err(Exit::Gone);
                }
            }
        }
        Ok(true)
    }

    /// The slow path: the client is not reading fast enough. Writes the rest of `out` after
    /// `written`, waiting for the socket while honouring shutdown, dropping a peer that takes
    /// nothing for two heartbeat intervals, and (when `check_lag`) closing a subscriber that
    /// fell off the engine's ring.
    async fn write_blocked(&mut self, written: &mut usize, check_lag: bool) -> Result<(), Exit> {
        let stall_limit = 2 * self.heartbeat();
        let mut last_progress = Instant::now();
        let stall = sleep_until(last_progress + stall_limit);
        tokio::pin!(stall);
        let mut lag_check = interval(LAG_CHECK);
        lag_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        while *written < self.out.len() {
            tokio::select! {
                biased;
                () = self.state.shutdown.cancelled() => return Err(Exit::Close(Close::GOING_AWAY)),
                // Cancel safe: a TcpStream write that did not complete wrote nothing.
                result = self.socket.write(&self.out[*written..]) => match result {
                    Ok(0) | Err(_) => return Err(Exit::Gone),
                    Ok(n) => {
                        *written += n;
                        last_progress = Instant::now();
                    }
                },
                () = &mut stall => {
                    if last_progress.elapsed() >= stall_limit {
                        tracing::debug!("peer took nothing for two heartbeat intervals");
                        return Err(Exit::Gone);
                    }
                    stall.as_mut().reset(last_progress + stall_limit);
                }
                _ = lag_check.tick(), if check_lag => {
                    if self.feed.subscriber().is_lagging() {
                        tracing::debug!("slow consumer: fell behind the engine's ring while blocked");
                        return Err(Exit::Close(Close::SLOW_CONSUMER));
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes the rest of `out`, which ends with a close frame. A client that is still
    /// reading gets it however slowly it reads (a slow consumer must still learn why it was
    /// closed); only a stalled peer or shutdown bounds the wait, shutdown to its grace.
    async fn write_close(&mut self, shutting_down: bool) -> bool {
        let mut written = 0;
        match self.write_fast(&mut written) {
            Ok(true) => return true,
            Ok(false) => {}
            Err(_) => return false,
        }
        if !shutting_down {
            match self.write_blocked(&mut written, false).await {
                Ok(()) => return true,
                Err(Exit::Close(Close::GOING_AWAY)) => {}
                Err(_) => return false,
            }
        }
        let deadline = Instant::now() + CLOSE_TIMEOUT.min(self.state.config.shutdown_grace);
        let rest = &self.out[written..];
        matches!(timeout_at(deadline, self.socket.write_all(rest)).await, Ok(Ok(())))
    }

    /// Ends the connection as `exit` says: a close frame after whatever frame is in flight,
    /// then our end of the TCP connection, then a short wait for the client's.
    async fn finish(mut self, exit: Exit) {
        let shutting_down = matches!(exit, Exit::Close(Close::GOING_AWAY));
        match exit {
            Exit::Gone => return,
            Exit::Close(close) => frame::write_close(&mut self.out, close.code, close.reason),
            Exit::PeerClosed(Some(code)) => frame::write_close(&mut self.out, code, ""),
            Exit::PeerClosed(None) => frame::write_header(&mut self.out, Opcode::Close, 0),
        }
        // `out` may still hold the rest of a frame the peer is in the middle of; the close
        // frame was appended after it, never inside it.
        if !self.write_close(shutting_down).await {
            return;
        }
        let patience = if shutting_down { CLOSE_TIMEOUT.min(self.state.config.shutdown_grace) } else { CLOSE_TIMEOUT };
        let deadline = Instant::now() + patience;
        let _ = timeout_at(deadline, self.socket.shutdown()).await;
        // The server closes TCP first (RFC 6455 §7.1.1): the FIN just sent. Read what the
        // client still sends (its close reply, the rest of an oversize message) until it closes
        // its end, so that no unread byte turns dropping the socket into a reset that could
        // destroy the close frame in flight. The decoder is done: it keeps none of it.
        let _ = timeout_at(deadline, async {
            while let Ok(1..) = read_into(&mut self.socket, &mut self.decoder).await {
                while self.decoder.next().is_some() {}
            }
        })
        .await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Before the socket closes: no wake-up may write to it after this.
        self.feed.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `f` returns, without calling it.
    fn size_of_output<A, R>(_: &impl FnOnce(A) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// Idle connections are the many, and this future is most of what each one costs: with
    /// the 112 bytes tokio and the task tracker add around it, the task is six 128-byte
    /// lines (tokio aligns tasks to them). Eight more bytes would make it seven.
    #[test]
    fn a_connection_task_fits_in_six_cache_lines() {
        let size = size_of_output(&Session::run);
        assert!(size <= 768 - 112, "the session future grew to {size} bytes");
    }
}
