//! What a WebSocket client sends, cut into reads of random sizes: the gateway's decoder never
//! panics, never yields anything after a close or a failure, gives the same items however the
//! bytes are cut, and never holds more memory than the message limit allows.
//!
//! Memory is measured, not asked: this binary's global allocator counts live bytes, and the
//! peak while decoding may not exceed one message being received plus one delivered (both at
//! most `max_message_bytes`), one control payload (125 bytes) and the tail of one read. A
//! decoder that buffered whatever a client announced or sent would fail here long before it
//! could hurt a server.
#![no_main]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering},
};

use gateway::fuzzing::{decode_chunks, split_chunks};
use libfuzzer_sys::fuzz_target;

/// Largest control frame payload (RFC 6455 §5.5).
const MAX_CONTROL_BYTES: usize = 125;

/// The system allocator, counting the bytes in use and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, which is `System`'s.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc`/`realloc` above, i.e. from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as given; `ptr` and `layout` came from this allocator.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            count(new_size);
        }
        new
    }
}

/// Relaxed is enough: the fuzz loop runs on one thread, and the counters order nothing.
fn count(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fuzz_target!(|data: &[u8]| {
    let input = split_chunks(data);
    let max = input.max_message_bytes;
    let whole: Vec<u8> = input.chunks.concat();

    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let chunked = decode_chunks(max, &input.chunks);
    let held = PEAK.load(Ordering::Relaxed) - before;
    let bound = 2 * max + MAX_CONTROL_BYTES + input.largest_chunk_bytes();
    assert!(held <= bound, "decoder held {held} bytes; limit {max}, reads of up to {}", input.largest_chunk_bytes());

    // The same bytes in one read give the same items.
    assert_eq!(decode_chunks(max, &[&whole]), chunked, "items depend on how the bytes were cut");
});
