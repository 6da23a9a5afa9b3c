//! One reader of the engine: its subscriptions, where it is in the broadcast ring, and what
//! it still owes its client (snapshots, replayed history, resets, conflated catch-up).
//!
//! Delivery rules, all enforced here so every transport gets them for free:
//! - Events come out in publish-position order: queued items (snapshots, replay) are merged
//!   with the live ring by position, so a cursor taken from any event is safe to resume from.
//! - Per symbol, `seq` only goes up: `delivered[symbol]` is the newest seq handed out or
//!   queued, and the live ring skips anything at or below it. That one rule removes the
//!   duplicates of every race between "read a snapshot" and "read the ring".
//! - A subscriber whose position was overwritten in the ring has lost ticks. With
//!   [`SlowConsumer::Conflate`] it jumps to the ring's head and queues the newest tick of each
//!   subscribed symbol it is missing, flagged `conflated`; with `Disconnect` it reports
//!   [`Drain::Lagged`]. Either way its memory stays bounded by the number of symbols.

use std::{
    collections::VecDeque,
    sync::{atomic::Ordering, Arc},
    task::{Poll, Waker},
};

use crate::{
    engine::{Shared, SlowConsumer},
    interest::{WakeList, WakeSlot},
    pattern::Selector,
    registry::{SymbolState, Table},
    ring::{self, Read},
    tick::Tick,
};

/// Something a transport must send.
#[derive(Debug)]
pub enum Event<'a> {
    /// A tick with its per-delivery flags.
    Tick {
        /// The shared tick.
        tick: &'a Tick,
        /// Sent because of a subscribe, not live.
        snapshot: bool,
        /// Its `seq` jumps because older ticks were dropped for this slow subscriber.
        conflated: bool,
    },
    /// The subscriber's position for this symbol is lost (history no longer reaches, or
    /// another epoch): the client must drop what it has. A snapshot follows when one exists.
    Reset {
        /// The symbol concerned.
        symbol: &'a str,
    },
}

/// Why [`Subscriber::drain`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Nothing more is available now; wait with [`Subscriber::ready`].
    Idle,
    /// The callback asked to stop; more may be available.
    Stopped,
    /// The subscriber fell behind the ring and the policy is `Disconnect`.
    Lagged,
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy)]
pub enum Resume<'a> {
    /// Snapshots, then live.
    Fresh,
    /// WebSocket resume: per-symbol last seen `seq`, from `epoch` (`None`: the current one).
    Seqs {
        /// The epoch the client's seqs belong to.
        epoch: Option<&'a str>,
        /// `(symbol, last seq seen)` pairs.
        since: &'a [(String, u64)],
    },
    /// SSE / long-poll resume: everything up to this position was seen.
    Position(u64),
    /// The client's position is unusable (another epoch, unreadable cursor): a reset and a
    /// snapshot for every matching symbol.
    Reset,
}

#[derive(Debug)]
enum Owed {
    Tick { tick: Arc<Tick>, snapshot: bool, conflated: bool },
    Reset(Arc<str>),
}

#[derive(Debug)]
struct Queued {
    /// Emitted once the live ring reaches this position (0: at once).
    position: u64,
    owed: Owed,
}

/// Exact symbols and patterns, with a per-symbol-id cache of the match result.
#[derive(Debug, Default)]
struct Filter {
    /// Each selector with the wake list it joined: one `Vec`, as every connection holds it.
    joined: Vec<Joined>,
    /// 0 = not computed, 1 = match, 2 = no match; indexed by symbol id.
    cache: Vec<u8>,
}

/// One subscribed selector, and the wake list its publishes go through (left on unsubscribe).
#[derive(Debug)]
struct Joined {
    selector: Selector,
    list: Arc<WakeList>,
}

impl Filter {
    fn selectors(&self) -> impl ExactSizeIterator<Item = &Selector> {
        self.joined.iter().map(|joined| &joined.selector)
    }

    fn has(&self, selector: &Selector) -> bool {
        self.selectors().any(|s| s == selector)
    }

    fn matches_name(&self, name: &str) -> bool {
        self.selectors().any(|s| s.matches(name))
    }

    /// Whether ticks of `symbol_id` are already known not to match (a symbol not seen since
    /// the selectors last changed is not known either way).
    fn known_miss(&self, symbol_id: u32) -> bool {
        self.cache.get(symbol_id as usize) == Some(&2)
    }

    fn matches(&mut self, tick: &Tick) -> bool {
        let id = tick.symbol_id as usize;
        if id >= self.cache.len() {
            self.cache.resize(id + 1, 0);
        }
        if self.cache[id] == 0 {
            self.cache[id] = if self.matches_name(&tick.symbol) { 1 } else { 2 };
        }
        self.cache[id] == 1
    }
}

/// See the module docs. Dropping it unsubscribes from everything.
pub struct Subscriber {
    shared: Arc<Shared>,
    /// Next position to read from the broadcast ring.
    position: u64,
    filter: Filter,
    /// Newest seq handed out or queued per symbol id (0: none).
    delivered: Vec<u64>,
    queue: VecDeque<Queued>,
    /// This subscriber's wake-up handle (in the wake list of each selector).
    slot: Arc<WakeSlot>,
}

impl Subscriber {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        shared.subscribers.fetch_add(1, Ordering::Relaxed);
        let position = shared.bus.next_stamp();
        Self {
            shared,
            position,
            filter: Filter::default(),
            delivered: Vec::new(),
            queue: VecDeque::new(),
            slot: Arc::default(),
        }
    }

    /// The selectors currently subscribed, in the order they were added.
    pub fn selectors(&self) -> impl ExactSizeIterator<Item = &Selector> {
        self.filter.selectors()
    }

    /// How many of `selectors` are not subscribed yet (for the `--max-subscriptions` check).
    pub fn count_new(&self, selectors: &[Selector]) -> usize {
        let mut new: Vec<&Selector> = Vec::new();
        for s in selectors {
            if !self.filter.has(s) && !new.contains(&s) {
                new.push(s);
            }
        }
        new.len()
    }

    /// Adds `selectors` and queues what the client is owed before live ticks: snapshots,
    /// or with `resume` the missed ticks from history (or a reset and a snapshot where
    /// history no longer reaches).
    pub fn subscribe(&mut self, selectors: &[Selector], resume: Resume<'_>) {
        // Exact growth: most clients subscribe once, and a `Vec`'s first growth reserves four
        // entries, which idle connections would carry for nothing.
        let new = self.count_new(selectors);
        self.filter.joined.reserve_exact(new);
        for s in selectors {
            if !self.filter.has(s) {
                let (selector, list) = self.shared.interest.join(s, &self.slot);
                self.filter.joined.push(Joined { selector, list });
            }
        }
        self.filter.cache.clear();
        let table = self.shared.registry.load();
        let matching = |state: &&Arc<SymbolState>| selectors.iter().any(|s| s.matches(&state.name));
        match resume {
            Resume::Fresh => {
                for state in table.symbols.iter().filter(matching) {
                    self.queue_last(state, true, false);
                }
            }
            Resume::Reset => {
                for state in table.symbols.iter().filter(matching) {
                    self.queue_reset(state);
                }
            }
            Resume::Position(after) => {
                for state in table.symbols.iter().filter(matching) {
                    self.queue_history_after_position(state, after);
                }
            }
            Resume::Seqs { epoch, since } => self.queue_seq_resume(&table, selectors, epoch, since),
        }
        self.sort_queue();
    }

    /// Removes exactly these selectors (a pattern removes the pattern, not the symbols it
    /// covers that were also subscribed by name). Nothing owed for symbols that no longer
    /// match is sent afterwards.
    pub fn unsubscribe(&mut self, selectors: &[Selector]) {
        let (slot, shared) = (&self.slot, &self.shared);
        self.filter.joined.retain(|Joined { selector, list }| {
            let removed = selectors.contains(selector);
            if removed {
                shared.interest.leave(selector, list, slot, &shared.registry);
            }
            !removed
        });
        self.filter.cache.clear();
        let filter = &self.filter;
        self.queue.retain(|q| match &q.owed {
            Owed::Tick { tick, .. } => filter.matches_name(&tick.symbol),
            Owed::Reset(symbol) => filter.matches_name(symbol),
        });
        // Forget what was delivered for symbols no longer matched, so subscribing again
        // starts with a fresh snapshot.
        let table = self.shared.registry.load();
        for (id, seq) in self.delivered.iter_mut().enumerate() {
            if *seq != 0 && table.symbols.get(id).is_some_and(|s| !self.filter.matches_name(&s.name)) {
                *seq = 0;
            }
        }
    }

    /// Would [`Subscriber::drain`] hand out anything now? Passes over other symbols' ticks on
    /// the way (as `drain` would) and stops at the first event for this subscriber without
    /// taking it. For a caller that may not write yet: it waits only if something is for it.
    pub fn has_pending(&mut self) -> bool {
        // One pin for every ring read below (see `ring`).
        let _pinned = ring::pin();
        loop {
            if self.queue.front().is_some_and(|q| q.position <= self.position) {
                return true;
            }
            if let Some(symbol_id) = self.shared.bus.symbol_at(self.position) {
                if self.filter.known_miss(symbol_id) {
                    self.position += 1;
                    continue;
                }
            }
            match self.shared.bus.read(self.position) {
                Read::NotYet => return false,
                // Conflation (or, by policy, disconnection) is `drain`'s to decide.
                Read::Overwritten => return true,
                Read::Found(tick) => {
                    if self.filter.matches(&tick) {
                        return true;
                    }
                    self.position += 1;
                }
            }
        }
    }

    /// Hands out available events in order until the callback returns `false` or nothing is
    /// left. The callback sees each event once.
    pub fn drain(&mut self, mut emit: impl FnMut(Event<'_>) -> bool) -> Drain {
        // Set by the first tick of another symbol read the slow way: a subscriber that skips
        // nothing (one to `*`) never pays for looking at the index.
        let mut skipping = false;
        // One pin for every ring read below (see `ring`).
        let _pinned = ring::pin();
        loop {
            if self.queue.front().is_some_and(|q| q.position <= self.position) {
                let queued = self.queue.pop_front().expect("front was just checked");
                let more = match &queued.owed {
                    Owed::Tick { tick, snapshot, conflated } => {
                        emit(Event::Tick { tick, snapshot: *snapshot, conflated: *conflated })
                    }
                    Owed::Reset(symbol) => emit(Event::Reset { symbol }),
                };
                if !more {
                    return Drain::Stopped;
                }
                continue;
            }
            // Another symbol's tick, known from the bus's index: skipped without loading it
            // (most of what a subscriber to a few symbols reads).
            if skipping {
                if let Some(symbol_id) = self.shared.bus.symbol_at(self.position) {
                    if self.filter.known_miss(symbol_id) {
                        self.position += 1;
                        continue;
                    }
                }
            }
            match self.shared.bus.read(self.position) {
                Read::NotYet => return Drain::Idle,
                Read::Overwritten => {
                    // Falling off the ring loses ticks only if some of them were ours: a
                    // subscriber of quiet symbols skips unrelated traffic without loss.
                    let lost = self.conflate();
                    if lost && self.shared.config.slow_consumer == SlowConsumer::Disconnect {
                        return Drain::Lagged;
                    }
                }
                Read::Found(tick) => {
                    self.position += 1;
                    if !self.filter.matches(&tick) {
                        skipping = true;
                        continue;
                    }
                    let delivered = self.delivered_mut(tick.symbol_id);
                    if tick.seq <= *delivered {
                        continue;
                    }
                    // Only a gap the ring itself lost can make seq jump here; say so.
                    let conflated = *delivered != 0 && tick.seq != *delivered + 1;
                    *delivered = tick.seq;
                    if !emit(Event::Tick { tick: &tick, snapshot: false, conflated }) {
                        return Drain::Stopped;
                    }
                }
            }
        }
    }

    /// Waits until [`Subscriber::drain`] has something to hand out.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future loses nothing, the events stay in the engine.
    ///
    /// Not an `async fn`: the future is one reference, where an `async fn` would keep the
    /// reference twice; it sits in every waiting connection's task.
    pub fn ready(&self) -> impl std::future::Future<Output = ()> + Send + '_ {
        std::future::poll_fn(move |cx| if self.poll_ready(cx.waker()) { Poll::Ready(()) } else { Poll::Pending })
    }

    /// Is there anything for [`Subscriber::drain`]? If not, `waker` is woken (once) when a
    /// tick for this subscriber is published, possibly on the publisher's thread and before
    /// the publisher returns: a waker may do the transport's work there, but must not wait.
    /// The waker stays with the subscriber until the next call or [`Subscriber::release_waker`].
    pub fn poll_ready(&self, waker: &Waker) -> bool {
        if self.has_ready() {
            return true;
        }
        // Arm before the second check, so a publish between the check and returning
        // still wakes us (see `interest`).
        self.slot.arm(waker);
        if self.has_ready() {
            self.slot.disarm();
            return true;
        }
        false
    }

    /// Drops the waker the last [`Subscriber::poll_ready`] left. A waker that owns the
    /// subscriber it waits on would otherwise keep both alive for good.
    pub fn release_waker(&self) {
        self.slot.release();
    }

    /// Is there anything for [`Subscriber::drain`] right now?
    pub fn has_ready(&self) -> bool {
        self.queue.front().is_some_and(|q| q.position <= self.position) || self.shared.bus.next_stamp() > self.position
    }

    /// Has this subscriber fallen further behind than the ring holds?
    pub fn is_lagging(&self) -> bool {
        self.shared.bus.next_stamp().saturating_sub(self.position) > self.shared.bus.capacity()
    }

    /// How many positions behind the newest tick this subscriber is.
    pub fn lag(&self) -> u64 {
        self.shared.bus.next_stamp().saturating_sub(self.position)
    }

    fn delivered_mut(&mut self, symbol_id: u32) -> &mut u64 {
        let id = symbol_id as usize;
        if id >= self.delivered.len() {
            self.delivered.resize(id + 1, 0);
        }
        &mut self.delivered[id]
    }

    fn push_tick(&mut self, tick: Arc<Tick>, snapshot: bool, conflated: bool) {
        *self.delivered_mut(tick.symbol_id) = tick.seq;
        let position = tick.position;
        self.queue.push_back(Queued { position, owed: Owed::Tick { tick, snapshot, conflated } });
    }

    /// Queues the symbol's last tick if it is newer than what the client has.
    fn queue_last(&mut self, state: &SymbolState, snapshot: bool, conflated_if_gap: bool) {
        let Some(last) = state.last() else { return };
        let delivered = *self.delivered_mut(state.id);
        if last.seq > delivered {
            let conflated = conflated_if_gap && last.seq != delivered + 1;
            self.push_tick(last, snapshot, conflated);
        }
    }

    fn queue_reset(&mut self, state: &SymbolState) {
        // Position 0: a reset goes out before anything else still queued for the symbol.
        self.queue.push_back(Queued { position: 0, owed: Owed::Reset(Arc::clone(&state.name)) });
        *self.delivered_mut(state.id) = 0;
        self.queue_last(state, true, false);
    }

    /// Queues the symbol's ticks published after position `after` that the live ring will
    /// not deliver (those before the subscriber's ring position), or a reset when the
    /// history ring has already evicted one of them.
    fn queue_history_after_position(&mut self, state: &SymbolState, after: u64) {
        let Some(last) = state.last() else { return };
        if last.position <= after {
            return;
        }
        let mut missed = Vec::new();
        let mut seq = last.seq;
        let complete = loop {
            if seq == 0 {
                break true;
            }
            match state.history.read(seq) {
                Read::Found(tick) if tick.position <= after => break true,
                Read::Found(tick) => {
                    seq -= 1;
                    missed.push(tick.into_arc());
                }
                // Evicted: complete only if the oldest tick we hold says nothing newer than
                // `after` was evicted before it.
                _ => break missed.last().is_some_and(|oldest: &Arc<Tick>| oldest.prev_position <= after),
            }
        };
        if !complete {
            self.queue_reset(state);
            return;
        }
        for tick in missed.into_iter().rev() {
            if tick.position < self.position {
                self.push_tick(tick, false, false);
            }
        }
    }

    fn queue_seq_resume(&mut self, table: &Table, selectors: &[Selector], epoch: Option<&str>, since: &[(String, u64)]) {
        let other_epoch = epoch.is_some_and(|e| e != self.shared.epoch);
        let resumed = |name: &str| since.iter().find(|(s, _)| s == name).map(|&(_, seq)| seq);
        for state in table.symbols.iter().filter(|s| selectors.iter().any(|sel| sel.matches(&s.name))) {
            match resumed(&state.name) {
                None => self.queue_last(state, true, false),
                Some(_) if other_epoch => self.queue_reset(state),
                Some(seen) => self.queue_history_after_seq(state, seen),
            }
        }
        // Symbols the client claims to have seen but this engine does not know: their
        // positions cannot be honoured, so tell the client.
        for (name, seen) in since {
            let subscribed = selectors.iter().any(|sel| sel.matches(name));
            if subscribed && table.get(name).is_none() && (other_epoch || *seen > 0) {
                self.queue.push_back(Queued { position: 0, owed: Owed::Reset(name.as_str().into()) });
            }
        }
    }

    fn queue_history_after_seq(&mut self, state: &SymbolState, seen: u64) {
        let Some(last) = state.last() else {
            if seen > 0 {
                self.queue_reset(state);
            }
            return;
        };
        if seen > last.seq {
            // Ahead of the engine: the client's seq cannot belong to this epoch's history.
            self.queue_reset(state);
            return;
        }
        let mut replay = Vec::new();
        for seq in seen + 1..=last.seq {
            match state.history.read(seq) {
                Read::Found(tick) => replay.push(tick.into_arc()),
                _ => {
                    self.queue_reset(state);
                    return;
                }
            }
        }
        *self.delivered_mut(state.id) = seen;
        for tick in replay {
            if tick.position < self.position {
                self.push_tick(tick, false, false);
            }
        }
    }

    /// Recovers from falling off the ring: jump to its head, owe the newest tick of each
    /// subscribed symbol that moved on, flagged `conflated` where seq jumps. Returns whether
    /// any subscribed symbol lost a tick.
    fn conflate(&mut self) -> bool {
        // Head first, last values second: anything published in between is newer than the
        // head and will also come from the ring, where the seq rule drops the duplicate.
        self.position = self.shared.bus.next_stamp();
        let table = self.shared.registry.load();
        let queued_before = self.queue.len();
        for state in table.symbols.iter() {
            if self.filter.matches_name(&state.name) {
                self.queue_last(state, false, true);
            }
        }
        let lost = self.queue.iter().skip(queued_before).any(|q| matches!(q.owed, Owed::Tick { conflated: true, .. }));
        self.sort_queue();
        lost
    }

    fn sort_queue(&mut self) {
        // Stable: a reset (position 0) stays before its snapshot; replay keeps its order.
        self.queue.make_contiguous().sort_by_key(|q| q.position);
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        for Joined { selector, list } in &self.filter.joined {
            self.shared.interest.leave(selector, list, &self.slot, &self.shared.registry);
        }
        self.shared.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}
