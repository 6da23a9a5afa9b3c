//! A fixed-capacity, overwrite-oldest ring of shared ticks, written by one publisher at a
//! time and read by any number of readers without locks.
//!
//! Invariants (the whole design rests on them):
//! - Entries are addressed by a strictly increasing 64-bit *stamp* (a publish position for
//!   the broadcast ring, a `seq` for a symbol's history ring). Stamp `s` lives in slot
//!   `s & mask`; a newer stamp in that slot means `s` was overwritten.
//! - Writers are serialised by the engine's publish lock, which readers never take. A writer
//!   stores the entry into its slot *before* advancing `next` with `Release`; a reader loads
//!   `next` with `Acquire`, so every stamp below `next` is visible in its slot (or already
//!   overwritten by a newer one).
//! - Slots hold `Arc`s through `arc_swap`, so a reader clones an entry while the writer
//!   replaces it without either waiting for the other and without use-after-free.
//! - Readers never block the writer: a reader that is too slow simply finds its stamp
//!   overwritten ([`Read::Overwritten`]) and decides what to do (conflate or disconnect).
//! - Slots are allocated in chunks of [`CHUNK`] the first time the writer reaches them, so a
//!   history ring of a quiet symbol costs a few hundred bytes, not its full depth. Only the
//!   writer initialises a chunk (`OnceLock`); readers only look, and a chunk below `next` is
//!   always initialised.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, OnceLock,
};

use arc_swap::ArcSwapOption;

/// Outcome of reading one stamp.
#[derive(Debug)]
pub enum Read<T> {
    /// The entry with exactly the requested stamp.
    Found(Held<T>),
    /// The stamp has not been written yet.
    NotYet,
    /// The stamp was overwritten by a newer entry: the reader fell behind.
    Overwritten,
}

/// An entry read from the ring. Holding it costs no reference-count traffic on the shared
/// `Arc` (an `arc_swap` guard); [`Held::into_arc`] makes it an `Arc` when it must be kept.
#[derive(Debug)]
pub struct Held<T> {
    guard: arc_swap::Guard<Option<Arc<T>>>,
}

impl<T> std::ops::Deref for Held<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.guard.as_ref().expect("a Held is only made from an occupied slot")
    }
}

impl<T> Held<T> {
    /// The entry as an `Arc`, to keep beyond the read.
    pub fn into_arc(self) -> Arc<T> {
        arc_swap::Guard::into_inner(self.guard).expect("a Held is only made from an occupied slot")
    }
}

/// How many pushes ahead [`Ring::push`] fetches the entry it is going to overwrite.
const PREFETCH_AHEAD: u64 = 1;

/// Slots allocated at once when the writer first reaches them.
pub const CHUNK: usize = 64;

/// A lazily allocated run of [`CHUNK`] slots.
type Chunk<T> = OnceLock<Box<[ArcSwapOption<T>]>>;

/// See the module docs.
pub struct Ring<T> {
    /// Reads an entry's stamp (position for the broadcast ring, `seq` for history rings).
    stamp_of: fn(&T) -> u64,
    chunks: Box<[Chunk<T>]>,
    mask: u64,
    /// One past the newest stamp written (stamps start at 1, so 1 means empty).
    next: AtomicU64,
}

impl<T> Ring<T> {
    /// A ring holding at least `capacity` entries (rounded up to a power of two, at least 2).
    pub fn new(capacity: usize, stamp_of: fn(&T) -> u64) -> Self {
        let capacity = capacity.max(2).next_power_of_two();
        let chunks = (0..capacity.div_ceil(CHUNK)).map(|_| OnceLock::new()).collect();
        Self { stamp_of, chunks, mask: capacity as u64 - 1, next: AtomicU64::new(1) }
    }

    fn chunk_size(&self) -> usize {
        CHUNK.min(self.capacity() as usize)
    }

    /// The slot of `stamp`, if its chunk has been allocated.
    fn slot(&self, stamp: u64) -> Option<&ArcSwapOption<T>> {
        let index = (stamp & self.mask) as usize;
        let size = self.chunk_size();
        self.chunks[index / size].get().map(|chunk| &chunk[index % size])
    }

    /// Number of entries the ring keeps.
    pub fn capacity(&self) -> u64 {
        self.mask + 1
    }

    /// One past the newest stamp published; readers are caught up when their stamp equals it.
    pub fn next_stamp(&self) -> u64 {
        // Acquire: pairs with the Release in `push`, making the slot store visible.
        self.next.load(Ordering::Acquire)
    }

    /// Oldest stamp still held (may be overwritten concurrently; `read` tells exactly).
    pub fn oldest_stamp(&self) -> u64 {
        self.next_stamp().saturating_sub(self.capacity()).max(1)
    }

    /// Appends `entry`, overwriting the oldest one when full.
    ///
    /// Callers must serialise pushes and push stamps in order `next_stamp()`, `+1`, …
    /// (the engine's publish lock does both).
    pub fn push(&self, entry: Arc<T>) {
        let stamp = (self.stamp_of)(&entry);
        debug_assert_eq!(stamp, self.next.load(Ordering::Relaxed), "stamps must be pushed in order");
        let index = (stamp & self.mask) as usize;
        let size = self.chunk_size();
        let chunk = self.chunks[index / size].get_or_init(|| (0..size).map(|_| ArcSwapOption::empty()).collect());
        chunk[index % size].store(Some(entry));
        // Release: publishes the slot store above to readers that Acquire `next`.
        self.next.store(stamp + 1, Ordering::Release);
        self.prefetch_overwritten(stamp + PREFETCH_AHEAD);
    }

    /// Asks the CPU to fetch the entry that the push of `stamp` will overwrite.
    ///
    /// In a full ring that entry was written a whole ring ago, so its reference count (which
    /// the overwrite must touch to drop it) is long out of cache; that one miss was the
    /// largest single cost of a publish. Fetched a push early, it overlaps other work.
    fn prefetch_overwritten(&self, stamp: u64) {
        let Some(slot) = self.slot(stamp) else { return };
        if let Some(entry) = slot.load().as_ref() {
            prefetch(Arc::as_ptr(entry));
        }
    }

    /// Reads the entry with stamp `stamp`.
    pub fn read(&self, stamp: u64) -> Read<T> {
        if stamp >= self.next_stamp() {
            return Read::NotYet;
        }
        let Some(slot) = self.slot(stamp) else { return Read::NotYet };
        let guard = slot.load();
        match guard.as_deref().map(self.stamp_of) {
            Some(found) if found == stamp => Read::Found(Held { guard }),
            Some(found) if found > stamp => Read::Overwritten,
            // A slot older than `stamp` below `next` cannot happen (push stores before it
            // advances `next`); treat it as not yet visible rather than trusting it.
            _ => Read::NotYet,
        }
    }

    /// The newest entry, if any.
    pub fn newest(&self) -> Option<Arc<T>> {
        let next = self.next_stamp();
        if next <= 1 {
            return None;
        }
        match self.read(next - 1) {
            Read::Found(entry) => Some(entry.into_arc()),
            _ => None,
        }
    }
}

/// Starts loading the cache lines of the `Arc` whose data is at `data`: its reference counts
/// (just before the data) and the data's first line. Only a hint; elsewhere than x86-64 it
/// does nothing.
#[inline]
fn prefetch<T>(data: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // `ArcInner` is the two counts, then the data.
        let counts = data.cast::<i8>().wrapping_sub(2 * std::mem::size_of::<usize>());
        // SAFETY: a prefetch never faults and changes nothing the program can observe,
        // whatever the address; `wrapping_sub`/`wrapping_add` make no claim about it either.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(counts);
            _mm_prefetch::<_MM_HINT_T0>(counts.wrapping_add(64));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Entry(u64);
    fn stamp(entry: &Entry) -> u64 {
        entry.0
    }

    #[test]
    fn reads_back_in_order_and_detects_wrap_around() {
        let ring = Ring::new(4, stamp);
        assert!(matches!(ring.read(1), Read::NotYet));
        for s in 1..=6 {
            ring.push(Arc::new(Entry(s)));
        }
        assert!(matches!(ring.read(1), Read::Overwritten));
        assert!(matches!(ring.read(2), Read::Overwritten));
        for s in 3..=6 {
            assert!(matches!(ring.read(s), Read::Found(e) if e.0 == s));
        }
        assert!(matches!(ring.read(7), Read::NotYet));
        assert_eq!(ring.oldest_stamp(), 3);
        assert_eq!(ring.newest().map(|e| e.0), Some(6));
    }

    #[test]
    fn chunks_are_allocated_only_when_reached_and_wrap_correctly() {
        let ring = Ring::new(1024, stamp);
        assert!(ring.chunks.iter().all(|c| c.get().is_none()));
        ring.push(Arc::new(Entry(1)));
        assert_eq!(ring.chunks.iter().filter(|c| c.get().is_some()).count(), 1);
        for s in 2..=3000 {
            ring.push(Arc::new(Entry(s)));
        }
        assert!(matches!(ring.read(3000 - 1024), Read::Overwritten));
        for s in 3000 - 1023..=3000 {
            assert!(matches!(ring.read(s), Read::Found(e) if e.0 == s), "{s}");
        }
    }

    #[test]
    fn capacity_rounds_up_to_a_power_of_two() {
        assert_eq!(Ring::<Entry>::new(5, stamp).capacity(), 8);
        assert_eq!(Ring::<Entry>::new(0, stamp).capacity(), 2);
    }

    /// Many readers race one writer: each reader must see stamps strictly in order, each
    /// exactly once, and only lose entries by being told `Overwritten`.
    #[test]
    fn concurrent_readers_never_see_loss_duplication_or_reordering() {
        const TOTAL: u64 = 200_000;
        let ring = Arc::new(Ring::new(64, stamp));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let ring = Arc::clone(&ring);
                std::thread::spawn(move || {
                    let (mut next, mut seen, mut overwritten) = (1, 0u64, 0u64);
                    while next <= TOTAL {
                        match ring.read(next) {
                            Read::Found(entry) => {
                                assert_eq!(entry.0, next);
                                seen += 1;
                                next += 1;
                            }
                            Read::NotYet => std::hint::spin_loop(),
                            Read::Overwritten => {
                                overwritten += 1;
                                next = ring.oldest_stamp().max(next + 1);
                            }
                        }
                    }
                    (seen, overwritten)
                })
            })
            .collect();
        for s in 1..=TOTAL {
            ring.push(Arc::new(Entry(s)));
        }
        for reader in readers {
            let (seen, _overwritten) = reader.join().expect("reader thread");
            assert!(seen > 0);
        }
    }
}
