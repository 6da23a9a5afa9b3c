//! Entry points for the cargo-fuzz targets in `fuzz/` (feature `fuzzing`, off by default).
//!
//! The client-op parser and the WebSocket decoder are the two places where bytes from the
//! network meet gateway code before anything else has checked them, and both are
//! crate-private. Rather than making them public, this module wraps each in one function that
//! drives it the way the session does and panics when an invariant breaks, so a fuzzer finds
//! not only crashes but wrong answers. Nothing here is API: it is hidden from the docs and
//! compiled only for the fuzz crate.

use std::hash::{DefaultHasher, Hash as _, Hasher as _};

use serde_json::Value;

use crate::{
    op::{self, Op},
    reply,
    ws::{Decoder, Item},
};

/// Parses `bytes` as one client op and builds the reply the session would send, checking
/// that a reply or error is always JSON of the right `type` that echoes the op's `id`.
///
/// # Panics
/// When one of those checks fails: that is the finding.
pub fn parse_op(bytes: &[u8]) {
    let (reply, expected_type, id) = match op::parse(bytes) {
        Ok(request) => {
            let id = request.id.as_ref();
            let (reply, kind) = match &request.op {
                Op::Subscribe { symbols, selectors, .. } => {
                    assert_eq!(symbols.len(), selectors.len(), "one selector per requested symbol");
                    (reply::subscribed(symbols, id), "subscribed")
                }
                Op::Unsubscribe { symbols, selectors } => {
                    assert_eq!(symbols.len(), selectors.len(), "one selector per requested symbol");
                    (reply::unsubscribed(symbols, id), "unsubscribed")
                }
                Op::Ping => (reply::pong(id), "pong"),
                Op::Auth { .. } => (reply::authenticated(None, id), "authenticated"),
            };
            (reply, kind, request.id)
        }
        Err(rejected) => (rejected.error.to_json(rejected.id.as_ref()), "error", rejected.id),
    };
    assert!(
        matches!(id, None | Some(Value::Number(_) | Value::String(_))),
        "an echoed id is a number or a string: {id:?}"
    );
    let value: Value = serde_json::from_slice(&reply).expect("every reply is JSON");
    assert_eq!(value["type"], expected_type, "{value}");
    assert_eq!(value.get("id"), id.as_ref(), "the id is echoed as given: {value}");
}

/// An input for [`decode_chunks`] cut from fuzzer bytes.
#[derive(Debug)]
pub struct Chunks<'a> {
    /// The decoder's message limit.
    pub max_message_bytes: usize,
    /// The client's bytes, as successive reads.
    pub chunks: Vec<&'a [u8]>,
}

impl Chunks<'_> {
    /// The longest chunk: the most the decoder may keep of bytes it was fed.
    pub fn largest_chunk_bytes(&self) -> usize {
        self.chunks.iter().map(|chunk| chunk.len()).max().unwrap_or(0)
    }
}

/// Cuts fuzzer bytes into a message limit and reads: the first byte picks the limit (in steps
/// of 16 bytes, 0 to 4080, so that limits are hit often), the second seeds the read sizes
/// (0: the whole stream in one read), the rest is what the client sends.
pub fn split_chunks(bytes: &[u8]) -> Chunks<'_> {
    let (limit, seed, mut stream) = match bytes {
        [limit, seed, stream @ ..] => (*limit, *seed, stream),
        _ => (0, 0, &[][..]),
    };
    let mut chunks = Vec::new();
    let mut state = u32::from(seed);
    while !stream.is_empty() {
        let len = if seed == 0 {
            stream.len()
        } else {
            // xorshift: cheap, deterministic read sizes of 1 to 64 bytes.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            1 + (state % 64) as usize
        };
        let (chunk, rest) = stream.split_at(len.min(stream.len()));
        chunks.push(chunk);
        stream = rest;
    }
    Chunks { max_message_bytes: usize::from(limit) * 16, chunks }
}

/// Feeds `chunks` to a decoder as successive reads, taking every item after each one as the
/// session does, and returns a fingerprint of the items so that two ways of cutting the same
/// bytes can be compared. Allocates nothing beyond what the decoder itself holds and the item
/// in hand, so a caller counting allocations measures the decoder.
///
/// # Panics
/// When an item follows a close or a failure, or a control payload exceeds 125 bytes.
pub fn decode_chunks(max_message_bytes: usize, chunks: &[&[u8]]) -> u64 {
    let mut decoder = Decoder::new(max_message_bytes);
    let mut fingerprint = DefaultHasher::new();
    let mut ended = false;
    for chunk in chunks {
        decoder.feed(chunk);
        for item in &mut decoder {
            assert!(!ended, "an item after the end: {item:?}");
            ended = matches!(item, Item::Close(_) | Item::Fail(_));
            hash_item(&item, max_message_bytes, &mut fingerprint);
        }
    }
    fingerprint.finish()
}

fn hash_item(item: &Item, max_message_bytes: usize, state: &mut DefaultHasher) {
    match item {
        Item::Text(text) => {
            assert!(text.len() <= max_message_bytes, "text of {} bytes passed the limit", text.len());
            (0u8, text).hash(state);
        }
        Item::Binary(bytes) => {
            assert!(bytes.len() <= max_message_bytes, "binary of {} bytes passed the limit", bytes.len());
            (1u8, bytes).hash(state);
        }
        Item::Ping(payload) => {
            assert!(payload.len() <= 125, "ping payload of {} bytes", payload.len());
            (2u8, payload).hash(state);
        }
        Item::Pong => 3u8.hash(state),
        Item::Close(code) => (4u8, code).hash(state),
        Item::Fail(close) => (5u8, close.code).hash(state),
    }
}
