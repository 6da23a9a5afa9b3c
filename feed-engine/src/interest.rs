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
//! created under a mutex that subscribers take when they subscribe and the publisher takes
//! only on a symbol's first tick, to share the same list objects.
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

use crate::{pattern::Selector, symbol};

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

fn get_or_create(map: &mut HashMap<Arc<str>, Arc<WakeList>>, key: &str) -> Arc<WakeList> {
    if let Some(list) = map.get(key) {
        return Arc::clone(list);
    }
    let list = Arc::new(WakeList::default());
    map.insert(key.into(), Arc::clone(&list));
    list
}

impl Interest {
    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        // The maps are only ever inserted into; a panic elsewhere cannot leave them torn.
        self.maps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The list a selector's subscribers wait in.
    pub(crate) fn list_for(&self, selector: &Selector) -> Arc<WakeList> {
        match selector {
            Selector::All => Arc::clone(&self.all),
            Selector::Venue(venue) => get_or_create(&mut self.maps().venue, venue),
            Selector::Exact(name) => get_or_create(&mut self.maps().exact, name),
        }
    }

    /// The lists a new symbol's ticks wake (called once per symbol, by the publisher).
    pub(crate) fn lists_for_symbol(&self, name: &str) -> SymbolLists {
        let mut maps = self.maps();
        let exact = get_or_create(&mut maps.exact, name);
        let venue = symbol::venue_of(name).map(|v| get_or_create(&mut maps.venue, v));
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
pub(crate) fn join(list: &WakeList, slot: &Arc<WakeSlot>) {
    list.rcu(|slots| {
        let mut slots = Vec::clone(slots);
        slots.push(Arc::clone(slot));
        slots
    });
}

/// Removes a slot from a list.
pub(crate) fn leave(list: &WakeList, slot: &Arc<WakeSlot>) {
    list.rcu(|slots| slots.iter().filter(|s| !Arc::ptr_eq(s, slot)).cloned().collect::<Vec<_>>());
}
