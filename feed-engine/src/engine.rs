//! The engine handle: configuration, the publish path, and read-only queries.
//!
//! Publishing takes one lock, shared only by publishers (several sources may publish at
//! once): it hands out `seq` and positions in one order and keeps ring pushes in stamp order.
//! Subscribers never take it; they read the rings and the registry lock-free.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use crate::{
    bus::Bus,
    cursor::{Cursor, CursorError},
    interest::{Interest, SymbolLists, WakeBatch},
    pattern::Selector,
    registry::{Registry, SymbolState},
    ring,
    subscriber::Subscriber,
    symbol,
    tick::{Quote, Stamp, Tick},
    Error,
};

/// Publishes between two hand-overs of replaced ring entries to the collector: each
/// publish replaces up to two (history and broadcast ring), and the collector takes them in
/// bags of 64.
const RETIRE_EVERY: u64 = 32;

/// What happens to a subscriber that falls further behind than the broadcast ring holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowConsumer {
    /// Skip to the newest tick of each symbol, flagged `conflated`.
    #[default]
    Conflate,
    /// Report [`crate::Drain::Lagged`] so the transport closes the connection (4000).
    Disconnect,
}

/// Engine settings; the binary builds this from its flags, tests build it directly.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Ticks kept per symbol for resume (rounded up to a power of two).
    pub history: usize,
    /// Ticks of all symbols kept in the broadcast ring: how far a subscriber may fall behind
    /// before its [`SlowConsumer`] policy applies (rounded up to a power of two, at most 2³¹).
    pub bus_capacity: usize,
    /// The slow-consumer policy.
    pub slow_consumer: SlowConsumer,
    /// A fixed epoch (tests, or a node following another engine); random when `None`.
    pub epoch: Option<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { history: 4096, bus_capacity: 65_536, slow_consumer: SlowConsumer::Conflate, epoch: None }
    }
}

/// Where a published tick landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Its per-symbol sequence number.
    pub seq: u64,
    /// Its global publish position.
    pub position: u64,
}

/// Counters for `/health` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// Symbols seen.
    pub symbols: usize,
    /// Ticks published since start.
    pub ticks_published: u64,
    /// Live subscribers.
    pub subscribers: usize,
}

/// A cheap, cloneable handle to one engine.
#[derive(Clone)]
pub struct Engine {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) config: EngineConfig,
    pub(crate) epoch: String,
    pub(crate) started: Instant,
    /// Every tick of every symbol in publish order, addressed by position.
    pub(crate) bus: Bus,
    pub(crate) registry: Registry,
    publisher: Mutex<PublishState>,
    /// Which waiting subscribers each publish wakes.
    pub(crate) interest: Interest,
    pub(crate) subscribers: AtomicUsize,
    published: AtomicU64,
}

/// State only publishers touch, behind the publish lock.
struct PublishState {
    next_position: u64,
    symbols: HashMap<Arc<str>, PublishedSymbol>,
    /// Where each tick's JSON is written before it is copied out (see [`Tick::encode`]).
    scratch: Vec<u8>,
}

struct PublishedSymbol {
    state: Arc<SymbolState>,
    /// Shared so the wake-up can happen after the publish lock is released.
    lists: Arc<SymbolLists>,
    next_seq: u64,
    last_position: u64,
}

/// The wall clock in microseconds since the Unix epoch: the clock every tick's `ts` is
/// stamped with, so a source that stamps times of its own (`src_ts`) can read the same one.
pub fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

fn random_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl Engine {
    /// A new engine with no symbols and a fresh epoch (unless the config fixes one).
    pub fn new(config: EngineConfig) -> Self {
        let epoch = config.epoch.clone().unwrap_or_else(random_epoch);
        let shared = Shared {
            bus: Bus::new(config.bus_capacity),
            config,
            epoch,
            started: Instant::now(),
            registry: Registry::default(),
            publisher: Mutex::new(PublishState { next_position: 1, symbols: HashMap::new(), scratch: Vec::new() }),
            interest: Interest::default(),
            subscribers: AtomicUsize::new(0),
            published: AtomicU64::new(0),
        };
        Self { shared: Arc::new(shared) }
    }

    /// The engine's epoch: changes whenever sequences restart.
    pub fn epoch(&self) -> &str {
        &self.shared.epoch
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// Time since the engine started.
    pub fn uptime(&self) -> std::time::Duration {
        self.shared.started.elapsed()
    }

    /// Stamps a quote with `seq`, `ts` and a position, encodes it once, and makes it visible
    /// to every subscriber. Never waits for a subscriber.
    ///
    /// # Errors
    /// [`Error::BadSymbol`] or [`Error::NotFinite`]; nothing is published then.
    pub fn publish(&self, quote: &Quote<'_>) -> Result<Published, Error> {
        let (published, lists) = self.publish_quiet(quote)?;
        self.shared.interest.wake([&*lists]);
        Ok(published)
    }

    /// Publishes a batch (invalid quotes are skipped); returns how many were published.
    /// Subscribers are woken once the whole batch is visible, and only those waiting: a
    /// batch costs one wake-up per waiting subscriber, not one per tick, and a subscriber
    /// whose waker sends at once sends the batch's ticks for it together, not one each.
    pub fn publish_batch(&self, quotes: &[Quote<'_>]) -> usize {
        let mut woken: Vec<Arc<SymbolLists>> = Vec::with_capacity(quotes.len());
        let mut published = 0;
        {
            // One pin for every ring push of the batch (see `ring`); released before the
            // wake-ups, which may run for a while.
            let _pinned = ring::pin();
            for quote in quotes {
                if let Ok((_, lists)) = self.publish_quiet(quote) {
                    published += 1;
                    // A symbol's lists are one object: a run of its ticks needs one wake.
                    if !woken.last().is_some_and(|last| Arc::ptr_eq(last, &lists)) {
                        woken.push(lists);
                    }
                }
            }
        }
        self.shared.interest.wake(woken.iter().map(|lists| &**lists));
        published
    }

    /// Makes a symbol known (listed by [`Engine::symbols`], matched by patterns) before
    /// its first tick. Registering a known symbol does nothing.
    ///
    /// # Errors
    /// [`Error::BadSymbol`].
    pub fn register(&self, symbol: &str) -> Result<(), Error> {
        if !symbol::is_valid_symbol(symbol) {
            return Err(Error::BadSymbol(symbol.to_owned()));
        }
        let mut state = self.lock_publisher();
        if !state.symbols.contains_key(symbol) {
            let (name, entry) = self.new_entry(symbol);
            state.symbols.insert(name, entry);
        }
        Ok(())
    }

    fn lock_publisher(&self) -> std::sync::MutexGuard<'_, PublishState> {
        // A panic while publishing cannot leave the state half-updated in a way that matters
        // more than stopping the feed would, so a poisoned lock is simply taken over.
        self.shared.publisher.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The publisher's entry for a symbol seen for the first time.
    fn new_entry(&self, symbol: &str) -> (Arc<str>, PublishedSymbol) {
        let name: Arc<str> = symbol.into();
        let state = self.shared.registry.add(Arc::clone(&name), self.shared.config.history);
        // The one place the publisher takes a lock subscribers also take (briefly, when they
        // subscribe): a symbol's first appearance, to share its wake lists.
        let lists = Arc::new(self.shared.interest.lists_for_symbol(&name));
        (name, PublishedSymbol { state, lists, next_seq: 1, last_position: 0 })
    }

    fn publish_quiet(&self, quote: &Quote<'_>) -> Result<(Published, Arc<SymbolLists>), Error> {
        if !symbol::is_valid_symbol(quote.symbol) {
            return Err(Error::BadSymbol(quote.symbol.to_owned()));
        }
        quote.check_finite()?;
        let ts_us = now_us();
        // One pin for both ring pushes (see `ring`).
        let pinned = ring::pin();
        let mut state = self.lock_publisher();
        let PublishState { next_position, symbols, scratch } = &mut *state;
        let position = *next_position;
        // One hash lookup per tick; the insert path runs once per symbol.
        let entry = match symbols.get_mut(quote.symbol) {
            Some(entry) => entry,
            None => {
                let (name, entry) = self.new_entry(quote.symbol);
                symbols.entry(name).or_insert(entry)
            }
        };
        let seq = entry.next_seq;
        let stamp = Stamp { symbol_id: entry.state.id, seq, position, prev_position: entry.last_position, ts_us };
        let tick = Arc::new(Tick::encode(quote, Arc::clone(&entry.state.name), stamp, scratch));
        entry.next_seq += 1;
        entry.last_position = position;
        // History first, bus second: a subscriber that sees position P on the bus can find
        // every tick before P in the history rings (resume relies on it).
        entry.state.history.push(Arc::clone(&tick));
        self.shared.bus.push(tick);
        let lists = Arc::clone(&entry.lists);
        *next_position += 1;
        drop(state);
        if position % RETIRE_EVERY == 0 {
            // Hands the entries the pushes replaced to the collector and frees those no
            // reader can hold any more. Readers collect too, but fewer times than the
            // publisher retires at high rates: left to them, freed ticks piled up (RSS
            // 265–277 MiB against 114 MiB in the firehose).
            pinned.flush();
        }
        self.shared.published.fetch_add(1, Ordering::Relaxed);
        Ok((Published { seq, position }, lists))
    }

    /// Has `batch` told when each publish starts and ends waking subscribers, on the
    /// publishing thread (see [`WakeBatch`]). One per engine: false, and `batch` unused, if
    /// one was set already.
    pub fn set_wake_batch(&self, batch: Arc<dyn WakeBatch>) -> bool {
        self.shared.interest.set_batch(batch)
    }

    /// A new subscriber positioned at the newest tick, with no subscriptions yet.
    pub fn subscriber(&self) -> Subscriber {
        Subscriber::new(Arc::clone(&self.shared))
    }

    /// Known symbol names, sorted by byte order.
    pub fn symbols(&self) -> Vec<Arc<str>> {
        let mut names: Vec<_> = self.shared.registry.load().symbols.iter().map(|s| Arc::clone(&s.name)).collect();
        names.sort_unstable();
        names
    }

    /// Last ticks of every known symbol matching any selector, sorted by symbol.
    pub fn snapshot(&self, selectors: &[Selector]) -> Vec<Arc<Tick>> {
        let table = self.shared.registry.load();
        let mut ticks: Vec<_> = table
            .symbols
            .iter()
            .filter(|s| selectors.iter().any(|sel| sel.matches(&s.name)))
            .filter_map(|s| s.last())
            .collect();
        ticks.sort_unstable_by(|a, b| a.symbol.cmp(&b.symbol));
        ticks
    }

    /// Counters for health and metrics.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            symbols: self.shared.registry.load().symbols.len(),
            ticks_published: self.shared.published.load(Ordering::Relaxed),
            subscribers: self.shared.subscribers.load(Ordering::Relaxed),
        }
    }

    /// The cursor string for `position` in this engine's epoch.
    pub fn cursor(&self, position: u64) -> String {
        Cursor { epoch: self.shared.epoch.clone(), position }.to_string()
    }

    /// Parses a cursor string against this engine's epoch.
    ///
    /// # Errors
    /// See [`Cursor::parse_in`].
    pub fn parse_cursor(&self, text: &str) -> Result<u64, CursorError> {
        Cursor::parse_in(text, &self.shared.epoch)
    }

    /// The newest position published so far (0 before the first tick).
    pub fn head_position(&self) -> u64 {
        self.shared.bus.next_stamp() - 1
    }
}
