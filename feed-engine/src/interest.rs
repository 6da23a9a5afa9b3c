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
//! same list objects. A list left empty for a symbol or venue the engine does not know is
//! dropped, so clients subscribing to made-up names cannot grow the maps without bound.
//!
//! Lost wake-ups are impossible by a store-buffer argument: a waiting subscriber sets
//! `waiting`, then (SeqCst fence) checks the ring; the publisher advances the ring, then
//! (SeqCst fence) checks `waiting`. At least one of them sees the other's store.

use std::{
    collections::HashMap,
    sync::{
        atomic::{fence, AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
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

    fn wake_if_waiting(&self) {
        // The cheap load first: most slots are busy (not waiting) under load.
        if self.waiting.load(Ordering::Relaxed) && self.waiting.swap(false, Ordering::AcqRel) {
            self.waker.wake();
        }
    }
}

/// A copy-on-write list of waiting-capable subscribers.
pub(crate) type WakeList = ArcSwap<Vec<Arc<WakeSlot>>>;

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
        add(&list, slot);
        (selector, list)
    }

    /// Takes `slot` out of the list `join` returned for `selector`, and forgets the list if
    /// it is now empty and names nothing the engine knows.
    pub(crate) fn leave(&self, selector: &Selector, list: &WakeList, slot: &Arc<WakeSlot>, registry: &Registry) {
        let mut maps = self.maps();
        remove(list, slot);
        if !list.load().is_empty() {
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

    /// Wakes the waiting subscribers of a symbol that just got a tick. Call after the tick
    /// is visible in the ring.
    pub(crate) fn wake(&self, lists: &SymbolLists) {
        // SeqCst: pairs with `WakeSlot::arm` (see the module docs).
        fence(Ordering::SeqCst);
        for list in [Some(&lists.exact), lists.venue.as_ref(), Some(&self.all)].into_iter().flatten() {
            for slot in list.load().iter() {
                slot.wake_if_waiting();
            }
        }
    }
}

/// Adds a slot to a list.
fn add(list: &WakeList, slot: &Arc<WakeSlot>) {
    list.rcu(|slots| {
        let mut slots = Vec::clone(slots);
        slots.push(Arc::clone(slot));
        slots
    });
}

/// Removes a slot from a list.
fn remove(list: &WakeList, slot: &Arc<WakeSlot>) {
    list.rcu(|slots| slots.iter().filter(|s| !Arc::ptr_eq(s, slot)).cloned().collect::<Vec<_>>());
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
