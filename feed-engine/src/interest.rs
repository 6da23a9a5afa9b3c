//! Who must be woken when a tick is published: per-symbol, per-venue and `*` lists of
//! waiting subscribers.
//!
//! Waking every subscriber on every tick costs a task wake-up per connection per tick even
//! for connections that want none of it (1,000 dashboards × 2,000 ticks/s is two million
//! useless wake-ups a second). Instead each subscriber puts one [`WakeSlot`] in the list of
//! each of its selectors, and a publish wakes only the slots of the tick's symbol, venue and
//! `*` that are actually waiting.
//!
//! Lists are copy-on-write (`arc_swap`): the publisher loads them without a lock. Lists are
//! created, joined and left under a mutex that subscribers take when they subscribe or
//! unsubscribe and the publisher takes only on a symbol's first appearance, to share the
//! same list objects. A list is kept in chunks of at most [`CHUNK`] slots, each copied on
//! its own: joining or leaving copies one chunk (and the short list of chunks when one is
//! added or dropped), not the whole list. With one copy-on-write `Vec`, 5,000 connections
//! subscribing to one symbol copied 12.5 million slot pointers between them, each copy an
//! atomic increment, all under the mutex. A list left empty for a symbol or venue the engine
//! does not know is dropped, so clients subscribing to made-up names cannot grow the maps
//! without bound.
//!
//! Lost wake-ups are impossible by a store-buffer argument: a waiting subscriber sets
//! `waiting`, then (SeqCst fence) checks the ring; the publisher advances the ring, then
//! (SeqCst fence) checks `waiting`. At least one of them sees the other's store.

use std::{
    collections::HashMap,
    sync::{
        atomic::{fence, AtomicBool, Ordering},
        Arc, Mutex, OnceLock, PoisonError,
    },
};

use arc_swap::ArcSwap;
use futures_util::task::AtomicWaker;

use crate::{pattern::Selector, registry::Registry, symbol};

/// One subscriber's wake-up handle.
#[derive(Debug, Default)]
pub(crate) struct WakeSlot {
    waiting: AtomicBool,
    waker: AtomicWaker,
}

impl WakeSlot {
    /// Arms the slot before the subscriber re-checks for work; returns after the fence that
    /// makes the check safe.
    pub(crate) fn arm(&self, waker: &std::task::Waker) {
        self.waker.register(waker);
        self.waiting.store(true, Ordering::Relaxed);
        // SeqCst: pairs with the publisher's fence (see the module docs).
        fence(Ordering::SeqCst);
    }

    /// The subscriber found work after arming: no wake-up needed any more.
    pub(crate) fn disarm(&self) {
        self.waiting.store(false, Ordering::Relaxed);
    }

    /// Disarms the slot and drops its waker.
    pub(crate) fn release(&self) {
        self.disarm();
        drop(self.waker.take());
    }

    /// Disarms a waiting slot and hands over its waker, for the caller to wake.
    fn take_if_waiting(&self) -> Option<std::task::Waker> {
        // The cheap load first: most slots are busy (not waiting) under load.
        if self.waiting.load(Ordering::Relaxed) && self.waiting.swap(false, Ordering::AcqRel) {
            self.waker.take()
        } else {
            None
        }
    }
}

thread_local! {
    /// The wakers one publish collects (see [`Interest::wake`]).
    static WAKERS: std::cell::Cell<Vec<std::task::Waker>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Slots per chunk of a [`WakeList`]: what one join or leave copies.
const CHUNK: usize = 64;

/// One copy-on-write run of at most [`CHUNK`] slots.
type Chunk = ArcSwap<Vec<Arc<WakeSlot>>>;

/// A list of waiting-capable subscribers, in copy-on-write chunks (see the module docs).
/// Changed only under [`Interest`]'s mutex, so a change is a load and a store, never a race.
#[derive(Default)]
pub(crate) struct WakeList {
    /// Never holds an empty chunk.
    chunks: ArcSwap<Vec<Arc<Chunk>>>,
}

impl std::fmt::Debug for WakeList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WakeList").field("chunks", &self.chunks.load().len()).finish()
    }
}

impl WakeList {
    fn is_empty(&self) -> bool {
        self.chunks.load().is_empty()
    }

    /// Adds a slot: to the last chunk with room, or to a new chunk.
    fn add(&self, slot: &Arc<WakeSlot>) {
        let chunks = self.chunks.load();
        for chunk in chunks.iter().rev() {
            let slots = chunk.load();
            if slots.len() < CHUNK {
                // Allocated whole (512 bytes) from its second slot on: each join then frees
                // exactly the block the next one takes, where growing by one slot scatters
                // ever larger blocks among the subscribers' own small allocations (measured:
                // 10,000 subscribers then read the ring 30–40% slower). A symbol with one
                // follower keeps a one-slot chunk.
                let mut grown = Vec::with_capacity(CHUNK);
                grown.extend(slots.iter().cloned());
                grown.push(Arc::clone(slot));
                chunk.store(Arc::new(grown));
                return;
            }
        }
        let mut grown = Vec::with_capacity(chunks.len() + 1);
        grown.extend(chunks.iter().cloned());
        grown.push(Arc::new(ArcSwap::from_pointee(vec![Arc::clone(slot)])));
        self.chunks.store(Arc::new(grown));
    }

    /// Removes a slot: from its chunk, and the chunk from the list if that empties it.
    fn remove(&self, slot: &Arc<WakeSlot>) {
        let chunks = self.chunks.load();
        for (index, chunk) in chunks.iter().enumerate() {
            let slots = chunk.load();
            if !slots.iter().any(|s| Arc::ptr_eq(s, slot)) {
                continue;
            }
            if slots.len() > 1 {
                chunk.store(Arc::new(slots.iter().filter(|s| !Arc::ptr_eq(s, slot)).cloned().collect()));
            } else {
                let fewer = chunks.iter().enumerate().filter(|&(i, _)| i != index).map(|(_, c)| Arc::clone(c));
                self.chunks.store(Arc::new(fewer.collect()));
            }
            return;
        }
    }

    /// Disarms the waiting slots and collects their wakers into `wakers`.
    fn take_waiting(&self, wakers: &mut Vec<std::task::Waker>) {
        for chunk in self.chunks.load().iter() {
            for slot in chunk.load().iter() {
                wakers.extend(slot.take_if_waiting());
            }
        }
    }

    /// Slots in the list (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.chunks.load().iter().map(|chunk| chunk.load().len()).sum()
    }
}

/// A [`WakeBatch`] begun, ended when dropped.
struct Begun<'a>(&'a dyn WakeBatch);

impl<'a> Begun<'a> {
    fn new(batch: &'a dyn WakeBatch) -> Self {
        batch.begin();
        Self(batch)
    }
}

impl Drop for Begun<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The lists of one symbol, held by the publisher.
pub(crate) struct SymbolLists {
    exact: Arc<WakeList>,
    venue: Option<Arc<WakeList>>,
}

/// See the module docs.
#[derive(Default)]
pub(crate) struct Interest {
    all: Arc<WakeList>,
    maps: Mutex<Maps>,
    /// Told when each publish's wake-ups start and end (see [`WakeBatch`]).
    batch: OnceLock<Arc<dyn WakeBatch>>,
}

/// Told, on the publishing thread, when a publish starts waking its subscribers and when it
/// is done, so that wakers which only note what to do can then do all of it at once (the
/// gateway writes to many sockets in one system call). Set with
/// [`Engine::set_wake_batch`](crate::Engine::set_wake_batch).
pub trait WakeBatch: Send + Sync {
    /// Before the first waker of a publish runs.
    fn begin(&self);
    /// After the last one ran. Whatever the wakers noted must be done by the time it returns:
    /// nothing else will call for it.
    fn end(&self);
}

#[derive(Default)]
struct Maps {
    exact: HashMap<Arc<str>, Arc<WakeList>>,
    venue: HashMap<Arc<str>, Arc<WakeList>>,
}

/// The list for `key`, created if need be, and the map's own copy of the key.
fn get_or_create(map: &mut HashMap<Arc<str>, Arc<WakeList>>, key: &str) -> (Arc<str>, Arc<WakeList>) {
    if let Some((key, list)) = map.get_key_value(key) {
        return (Arc::clone(key), Arc::clone(list));
    }
    let (key, list): (Arc<str>, _) = (key.into(), Arc::new(WakeList::default()));
    map.insert(Arc::clone(&key), Arc::clone(&list));
    (key, list)
}

impl Interest {
    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        // The maps are only ever inserted into; a panic elsewhere cannot leave them torn.
        self.maps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts `slot` in the list of `selector`; returns the list, to leave it later, and the
    /// selector again with its name shared with the lists' map: every subscriber to a symbol
    /// then keeps one pointer to one copy of its name, not a copy of its own.
    pub(crate) fn join(&self, selector: &Selector, slot: &Arc<WakeSlot>) -> (Selector, Arc<WakeList>) {
        // Under the lock, so that `leave` never drops a list someone is about to join.
        let mut maps = self.maps();
        let (selector, list) = match selector {
            Selector::All => (Selector::All, Arc::clone(&self.all)),
            Selector::Venue(venue) => {
                let (venue, list) = get_or_create(&mut maps.venue, venue);
                (Selector::Venue(venue), list)
            }
            Selector::Exact(name) => {
                let (name, list) = get_or_create(&mut maps.exact, name);
                (Selector::Exact(name), list)
            }
        };
        list.add(slot);
        (selector, list)
    }

    /// Takes `slot` out of the list `join` returned for `selector`, and forgets the list if
    /// it is now empty and names nothing the engine knows.
    pub(crate) fn leave(&self, selector: &Selector, list: &WakeList, slot: &Arc<WakeSlot>, registry: &Registry) {
        let mut maps = self.maps();
        list.remove(slot);
        if !list.is_empty() {
            return;
        }
        // Loaded under the lock: a publisher registers a symbol before it takes this lock to
        // fetch the symbol's lists, so a symbol it is about to use is already in the table.
        let table = registry.load();
        match selector {
            Selector::All => {}
            Selector::Exact(name) => {
                if table.get(name).is_none() {
                    maps.exact.remove(&**name);
                }
            }
            Selector::Venue(venue) => {
                let known = table.symbols.iter().any(|s| symbol::venue_of(&s.name) == Some(&**venue));
                if !known {
                    maps.venue.remove(&**venue);
                }
            }
        }
    }

    /// How many per-symbol and per-venue lists exist (for tests of the bound).
    #[cfg(test)]
    fn list_count(&self) -> usize {
        let maps = self.maps();
        maps.exact.len() + maps.venue.len()
    }

    /// The lists a new symbol's ticks wake (called once per symbol, by the publisher).
    pub(crate) fn lists_for_symbol(&self, name: &str) -> SymbolLists {
        let mut maps = self.maps();
        let (_, exact) = get_or_create(&mut maps.exact, name);
        let venue = symbol::venue_of(name).map(|v| get_or_create(&mut maps.venue, v).1);
        SymbolLists { exact, venue }
    }

    /// See [`Engine::set_wake_batch`](crate::Engine::set_wake_batch).
    pub(crate) fn set_batch(&self, batch: Arc<dyn WakeBatch>) -> bool {
        self.batch.set(batch).is_ok()
    }

    /// Wakes the waiting subscribers of symbols that just got ticks. Call after the ticks
    /// are visible in the ring.
    ///
    /// Every slot is disarmed before the first waker runs: a waker may arm its slot again
    /// at once (one that sends the ticks itself, then waits for the next), and must
    /// then not be woken again by a later list of the same publish, for ticks it already
    /// took.
    pub(crate) fn wake<'a>(&self, lists: impl IntoIterator<Item = &'a SymbolLists>) {
        // SeqCst: pairs with `WakeSlot::arm` (see the module docs).
        fence(Ordering::SeqCst);
        // Reused, so a publish allocates nothing; taken out, so a waker that publishes
        // (none does) would only get a fresh one.
        let mut wakers = WAKERS.take();
        for lists in lists {
            for list in [Some(&lists.exact), lists.venue.as_ref()].into_iter().flatten() {
                list.take_waiting(&mut wakers);
            }
        }
        self.all.take_waiting(&mut wakers);
        // Ended when dropped, so that a waker that panics cannot leave the batch begun.
        let _batch = self.batch.get().filter(|_| !wakers.is_empty()).map(|batch| Begun::new(&**batch));
        for waker in wakers.drain(..) {
            waker.wake();
        }
        WAKERS.set(wakers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_of_unknown_names_are_forgotten_when_left() {
        let interest = Interest::default();
        let table = Registry::default();
        let slot = Arc::new(WakeSlot::default());
        for i in 0..1_000 {
            for text in [format!("MADEUP:{i}"), format!("V{i}:*")] {
                let selector = Selector::parse(&text).expect("valid");
                let (_, list) = interest.join(&selector, &slot);
                interest.leave(&selector, &list, &slot, &table);
            }
        }
        assert_eq!(interest.list_count(), 0);
    }

    #[test]
    fn joiners_of_one_name_share_one_copy_of_it() {
        let interest = Interest::default();
        let (a, b) = (Arc::new(WakeSlot::default()), Arc::new(WakeSlot::default()));
        for text in ["NASDAQ:AAPL", "NASDAQ:*"] {
            // Parsed separately, as two connections would.
            let (first, _) = interest.join(&Selector::parse(text).expect("valid"), &a);
            let (second, _) = interest.join(&Selector::parse(text).expect("valid"), &b);
            match (first, second) {
                (Selector::Exact(x), Selector::Exact(y)) | (Selector::Venue(x), Selector::Venue(y)) => {
                    assert!(Arc::ptr_eq(&x, &y), "{text}: two copies of the name");
                }
                other => panic!("{text}: joined as {other:?}"),
            }
        }
    }

    /// Slots join and leave a list of several chunks in any order: each one still in it is
    /// woken exactly once per wake, each one that left never, and no chunk is left empty.
    #[test]
    fn a_list_of_many_chunks_wakes_exactly_the_slots_in_it() {
        use std::task::{Wake, Waker};

        struct Count(std::sync::atomic::AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }

        let list = WakeList::default();
        let slots: Vec<(Arc<WakeSlot>, Arc<Count>)> = (0..5 * CHUNK + 3)
            .map(|_| (Arc::new(WakeSlot::default()), Arc::new(Count(0.into()))))
            .collect();
        for (slot, _) in &slots {
            list.add(slot);
        }
        assert_eq!(list.chunks.load().len(), 6);
        // Leave every third, and the whole second chunk, then join a few again.
        let left = |i: usize| i.is_multiple_of(3) || (CHUNK..2 * CHUNK).contains(&i);
        for (i, (slot, _)) in slots.iter().enumerate() {
            if left(i) {
                list.remove(slot);
            }
        }
        let back = [0, 3, CHUNK];
        for i in back {
            list.add(&slots[i].0);
        }
        let member = |i: usize| !left(i) || back.contains(&i);
        assert_eq!(list.len(), (0..slots.len()).filter(|&i| member(i)).count());
        assert!(list.chunks.load().iter().all(|chunk| !chunk.load().is_empty()));
        for (slot, count) in &slots {
            slot.arm(&Waker::from(Arc::clone(count)));
        }
        let mut wakers = Vec::new();
        list.take_waiting(&mut wakers);
        wakers.into_iter().for_each(Waker::wake);
        for (i, (_, count)) in slots.iter().enumerate() {
            assert_eq!(count.0.load(Ordering::SeqCst), usize::from(member(i)), "slot {i}");
        }
        for (slot, _) in &slots {
            list.remove(slot);
        }
        assert!(list.is_empty());
    }

    #[test]
    fn a_list_still_joined_is_kept() {
        let interest = Interest::default();
        let (a, b) = (Arc::new(WakeSlot::default()), Arc::new(WakeSlot::default()));
        let selector = Selector::parse("X").expect("valid");
        let (_, list_a) = interest.join(&selector, &a);
        let _list_b = interest.join(&selector, &b);
        interest.leave(&selector, &list_a, &a, &Registry::default());
        assert_eq!(interest.list_count(), 1);
    }
}
