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
//! - A slot holds an `Arc` as a raw pointer. A reader dereferences one only while pinned in
//!   an epoch (`crossbeam_epoch`), and a writer that replaces an entry drops its `Arc` only
//!   after every reader pinned before the replacement has unpinned. So the writer and the
//!   readers never wait for each other, and no reader sees freed memory. A read costs a
//!   plain load where a reference-counted one costs two atomic read-modify-writes on the
//!   reader's side and, on the writer's, a scan of every reader thread's slots per store:
//!   with every subscriber reading every position, that is most of what a read costs.
//! - Readers never block the writer: a reader that is too slow simply finds its stamp
//!   overwritten ([`Read::Overwritten`]) and decides what to do (conflate or disconnect).
//! - Slots are allocated in chunks of [`CHUNK`] the first time the writer reaches them, so a
//!   history ring of a quiet symbol costs a few hundred bytes, not its full depth. Only the
//!   writer initialises a chunk (`OnceLock`); readers only look, and a chunk below `next` is
//!   always initialised.

use std::{
    ptr::{self, NonNull},
    sync::{
        atomic::{AtomicPtr, AtomicU64, Ordering},
        Arc, OnceLock,
    },
};

pub(crate) use crossbeam_epoch::pin;
use crossbeam_epoch::Guard;

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

/// An entry read from the ring, valid while it is held: it keeps the reading thread pinned,
/// which keeps the entry from being dropped, at no reference-count traffic on the shared
/// `Arc`. [`Held::into_arc`] makes it an `Arc` when it must be kept.
///
/// A reader that reads many entries pins once around them all ([`pin`]): each `Held` then
/// only nests in that pin, which costs a thread-local counter.
pub struct Held<T> {
    entry: NonNull<T>,
    _pin: Guard,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Held<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl<T> std::ops::Deref for Held<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: `entry` came from `Arc::into_raw` and was loaded from a slot while `_pin`
        // was pinned; a writer that replaced it since defers dropping that `Arc` until every
        // guard pinned before the replacement is gone, `_pin` included.
        unsafe { self.entry.as_ref() }
    }
}

impl<T> Held<T> {
    /// The entry as an `Arc`, to keep beyond the read.
    pub fn into_arc(self) -> Arc<T> {
        let raw = self.entry.as_ptr().cast_const();
        // SAFETY: as in `deref`, the `Arc` this pointer came from is alive while `_pin` is;
        // counting one more reference to it and taking that reference is what `clone` does.
        unsafe {
            Arc::increment_strong_count(raw);
            Arc::from_raw(raw)
        }
    }
}

/// How many pushes ahead [`Ring::push`] fetches the entry it is going to overwrite.
const PREFETCH_AHEAD: u64 = 1;

/// Slots allocated at once when the writer first reaches them.
pub const CHUNK: usize = 64;

/// A lazily allocated run of [`CHUNK`] slots, each null or an `Arc::into_raw` pointer.
type Chunk<T> = OnceLock<Box<[AtomicPtr<T>]>>;

/// See the module docs. Entries may be dropped on whichever thread next collects the
/// epoch's garbage, hence `Send + Sync + 'static`.
pub struct Ring<T: Send + Sync + 'static> {
    /// Reads an entry's stamp (position for the broadcast ring, `seq` for history rings).
    stamp_of: fn(&T) -> u64,
    chunks: Box<[Chunk<T>]>,
    mask: u64,
    /// One past the newest stamp written (stamps start at 1, so 1 means empty).
    next: AtomicU64,
}

impl<T: Send + Sync + 'static> Ring<T> {
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
    fn slot(&self, stamp: u64) -> Option<&AtomicPtr<T>> {
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
    /// (the engine's publish lock does both). A caller pushing many entries pins around
    /// them ([`pin`]), so each push only nests in that pin.
    pub fn push(&self, entry: Arc<T>) {
        let stamp = (self.stamp_of)(&entry);
        debug_assert_eq!(stamp, self.next.load(Ordering::Relaxed), "stamps must be pushed in order");
        let index = (stamp & self.mask) as usize;
        let size = self.chunk_size();
        let chunk =
            self.chunks[index / size].get_or_init(|| (0..size).map(|_| AtomicPtr::new(ptr::null_mut())).collect());
        // AcqRel: Release publishes the entry's contents with the pointer; Acquire orders
        // the old entry's last use by this ring before it is handed to the collector.
        let old = chunk[index % size].swap(Arc::into_raw(entry).cast_mut(), Ordering::AcqRel);
        // Release: publishes the slot store above to readers that Acquire `next`.
        self.next.store(stamp + 1, Ordering::Release);
        if !old.is_null() {
            retire(&pin(), old);
        }
        self.prefetch_overwritten(stamp + PREFETCH_AHEAD);
    }

    /// Asks the CPU to fetch the entry that the push of `stamp` will overwrite.
    ///
    /// In a full ring that entry was written a whole ring ago, so its memory is long out of
    /// cache and its page out of the TLB. The push only hands the entry to the collector,
    /// which drops it later, and the allocator gives its memory to new ticks. Fetched here,
    /// a push early, that miss overlaps other work: without it, copying new ticks' JSON
    /// into their allocation went from under 1.2% to 10.8% of the firehose's samples, and
    /// the push itself from 7.7% to 2.7% (`perf record -F 4000 -e cpu-clock -g -p PID`).
    fn prefetch_overwritten(&self, stamp: u64) {
        // Only the address is used, never what it points to: no pin needed.
        if let Some(entry) = self.slot(stamp).map(|slot| slot.load(Ordering::Relaxed)) {
            if !entry.is_null() {
                prefetch(entry.cast_const());
            }
        }
    }

    /// Reads the entry with stamp `stamp`.
    pub fn read(&self, stamp: u64) -> Read<T> {
        if stamp >= self.next_stamp() {
            return Read::NotYet;
        }
        let Some(slot) = self.slot(stamp) else { return Read::NotYet };
        let pinned = pin();
        // Acquire: pairs with the writer's swap, making the entry's contents visible.
        let Some(entry) = NonNull::new(slot.load(Ordering::Acquire)) else { return Read::NotYet };
        let held = Held { entry, _pin: pinned };
        match (self.stamp_of)(&held) {
            found if found == stamp => Read::Found(held),
            found if found > stamp => Read::Overwritten,
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

impl<T: Send + Sync + 'static> Drop for Ring<T> {
    fn drop(&mut self) {
        // A `Held` does not borrow the ring, so one may outlive it: retired, not dropped.
        let pinned = pin();
        for chunk in self.chunks.iter().filter_map(OnceLock::get) {
            for slot in chunk.iter() {
                let old = slot.swap(ptr::null_mut(), Ordering::AcqRel);
                if !old.is_null() {
                    retire(&pinned, old);
                }
            }
        }
    }
}

/// Drops the `Arc` behind `old`, an entry no slot holds any more, once no reader can still
/// be using it.
fn retire<T: Send + Sync + 'static>(pinned: &Guard, old: *mut T) {
    let old = old.cast_const();
    // SAFETY: `old` came from `Arc::into_raw` in `push` and was just swapped out of its
    // slot, so no new reader can load it; readers that loaded it before are pinned in an
    // epoch this defers past. It is dropped exactly once, on any thread, which `T: Send +
    // Sync` allows, and `T: 'static` outlives any delay.
    unsafe { pinned.defer_unchecked(move || drop(Arc::from_raw(old))) };
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

    /// An entry that counts its drops.
    struct Counted {
        stamp: u64,
        drops: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counted_ring(capacity: usize) -> (Ring<Counted>, impl Fn(u64) -> Arc<Counted>, Arc<std::sync::atomic::AtomicUsize>) {
        let drops = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let shared = Arc::clone(&drops);
        let make = move |stamp| Arc::new(Counted { stamp, drops: Arc::clone(&shared) });
        (Ring::new(capacity, |entry: &Counted| entry.stamp), make, drops)
    }

    /// Collects retired entries until `drops` reaches `expected` (other tests' pins may hold
    /// the epoch back for a moment); returns the final count.
    fn collect_until(drops: &std::sync::atomic::AtomicUsize, expected: usize) -> usize {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while drops.load(Ordering::SeqCst) < expected && std::time::Instant::now() < deadline {
            pin().flush();
            std::thread::yield_now();
        }
        drops.load(Ordering::SeqCst)
    }

    #[test]
    fn an_overwritten_entry_lives_while_a_reader_holds_it_and_is_dropped_after() {
        let (ring, make, drops) = counted_ring(2);
        ring.push(make(1));
        ring.push(make(2));
        let Read::Found(held) = ring.read(1) else { panic!("stamp 1 is in the ring") };
        for stamp in 3..=6 {
            ring.push(make(stamp));
        }
        assert!(matches!(ring.read(1), Read::Overwritten));
        for _ in 0..100 {
            pin().flush();
        }
        // Retired, but this thread is still pinned by `held`: nothing retired since can go.
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        assert_eq!(held.stamp, 1);
        let kept = held.into_arc();
        // The `Arc` taken from it keeps entry 1 once the pin is gone.
        assert_eq!(collect_until(&drops, 3), 3, "entries 2, 3 and 4 were overwritten and let go");
        assert_eq!(kept.stamp, 1);
        drop(kept);
        assert_eq!(drops.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn dropping_the_ring_drops_every_entry_once() {
        let (ring, make, drops) = counted_ring(4);
        for stamp in 1..=10 {
            ring.push(make(stamp));
        }
        drop(ring);
        assert_eq!(collect_until(&drops, 10), 10);
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
