//! The broadcast ring, with an index of which symbol each position carries.
//!
//! Every subscriber reads every position of the broadcast ring, and most positions belong to
//! symbols it does not want: a dashboard on 10 of 100 symbols skips nine in ten. Reading a
//! position from the ring loads the shared tick itself, a cache line of its own; the index
//! answers "whose tick is this?" from one small array, so a subscriber passes over other symbols'
//! ticks without touching them.
//!
//! An index entry packs the position's low 32 bits above the symbol id in one `AtomicU64`, so
//! it can never be torn between two ticks. It is stored before the ring advances past the
//! position (the ring's `Release` publishes both). A reader trusts it only for a position
//! that is published and not yet lapped, and only when its position bits are the ones asked
//! for: otherwise the slot was overwritten (or is being), and the reader asks the ring,
//! which tells exactly ([`Read::Overwritten`]).

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use crate::{
    ring::{Read, Ring},
    tick::Tick,
};

/// Largest capacity: position bits in an index entry are 32, and a slot must never hold two
/// positions whose low 32 bits agree.
const MAX_CAPACITY: usize = 1 << 31;

/// See the module docs.
pub(crate) struct Bus {
    ring: Ring<Tick>,
    /// Per slot: `(position as u32) << 32 | symbol_id`.
    symbols: Box<[AtomicU64]>,
}

impl Bus {
    /// A bus of at least `capacity` positions (a power of two, at most 2³¹).
    pub(crate) fn new(capacity: usize) -> Self {
        let ring = Ring::new(capacity.min(MAX_CAPACITY), |tick: &Tick| tick.position);
        // Zeroed: position 0 is never published, so no entry matches before it is written.
        let symbols = (0..ring.capacity()).map(|_| AtomicU64::new(0)).collect();
        Self { ring, symbols }
    }

    #[inline]
    fn slot(&self, position: u64) -> &AtomicU64 {
        &self.symbols[(position & (self.ring.capacity() - 1)) as usize]
    }

    /// Appends `tick` (callers serialise pushes, as for [`Ring::push`]).
    #[inline]
    pub(crate) fn push(&self, tick: Arc<Tick>) {
        // Relaxed: the ring's Release store of its next stamp, after this, publishes it.
        self.slot(tick.position).store(entry(tick.position, tick.symbol_id), Ordering::Relaxed);
        self.ring.push(tick);
    }

    /// The symbol id of the tick at `position`, if it is published and still held; `None`
    /// means "ask [`Bus::read`]", which then says what happened.
    #[inline]
    pub(crate) fn symbol_at(&self, position: u64) -> Option<u32> {
        // Acquire (in `next_stamp`): makes the entry stored before the ring advanced visible.
        let next = self.ring.next_stamp();
        if position >= next || next - position > self.ring.capacity() {
            return None;
        }
        let found = self.slot(position).load(Ordering::Relaxed);
        (found >> 32 == position & 0xffff_ffff).then_some(found as u32)
    }

    /// Reads the tick at `position` (see [`Ring::read`]).
    #[inline]
    pub(crate) fn read(&self, position: u64) -> Read<Tick> {
        self.ring.read(position)
    }

    /// One past the newest position published.
    #[inline]
    pub(crate) fn next_stamp(&self) -> u64 {
        self.ring.next_stamp()
    }

    /// Positions the ring keeps.
    #[inline]
    pub(crate) fn capacity(&self) -> u64 {
        self.ring.capacity()
    }
}

#[inline]
fn entry(position: u64, symbol_id: u32) -> u64 {
    (position << 32) | u64::from(symbol_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Engine, EngineConfig, Quote};

    /// An engine whose bus holds 4 positions, with `symbols` published in turn.
    fn engine_with_bus_of_4(symbols: &[&str]) -> Engine {
        let engine = Engine::new(EngineConfig { bus_capacity: 4, ..EngineConfig::default() });
        for &symbol in symbols {
            engine.publish(&Quote { symbol, price: 1.0, ..Quote::default() }).expect("valid");
        }
        engine
    }

    /// The index names the symbol of every position still held, and nothing for positions
    /// not yet published or already lapped, including right at the wrap.
    #[test]
    fn the_index_names_held_positions_only() {
        assert_eq!(engine_with_bus_of_4(&[]).shared.bus.symbol_at(1), None);
        let symbols = ["A", "B", "C", "A", "B", "C", "A"];
        let engine = engine_with_bus_of_4(&symbols);
        let bus = &engine.shared.bus;
        // Positions 1..=7 published; a ring of 4 holds 4..=7.
        let id = |name: &str| engine.shared.registry.load().get(name).expect("known").id;
        for position in 1..=3 {
            assert_eq!(bus.symbol_at(position), None, "position {position} was lapped");
            assert!(matches!(bus.read(position), Read::Overwritten));
        }
        for position in 4..=7 {
            assert_eq!(bus.symbol_at(position), Some(id(symbols[position as usize - 1])), "position {position}");
        }
        assert_eq!(bus.symbol_at(8), None);
    }

    /// A slot whose entry names another position (a writer lapping it is storing there) is
    /// not trusted: the reader is sent to the ring.
    #[test]
    fn an_entry_for_another_position_is_not_trusted() {
        let engine = engine_with_bus_of_4(&["A", "B", "C"]);
        let bus = &engine.shared.bus;
        assert!(bus.symbol_at(3).is_some());
        bus.slot(3).store(entry(7, 0), Ordering::Relaxed);
        assert_eq!(bus.symbol_at(3), None);
        assert!(matches!(bus.read(3), Read::Found(tick) if tick.position == 3));
    }
}
