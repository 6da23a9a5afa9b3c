//! Tests of the decoder: every rule of RFC 6455 it enforces, chunking at every boundary,
//! its memory while idle, and property tests over arbitrary bytes.

use proptest::{collection::vec, prelude::*};

use super::*;

const MAX: usize = 1000;
const KEY: [u8; 4] = [0xA1, 0x5C, 0x3E, 0x07];
const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// How a test frame writes its payload length.
#[derive(Debug, Clone, Copy)]
enum Len {
    Minimal,
    Bits16,
    Bits64,
}

/// A client frame: first byte as given, masked with `KEY`, length encoded as `len`.
fn raw_frame(first: u8, len: Len, payload: &[u8]) -> Vec<u8> {
    let size = payload.len();
    let mut out = vec![first];
    match len {
        Len::Minimal if size < 126 => out.push(0x80 | size as u8),
        Len::Minimal | Len::Bits16 if size <= usize::from(u16::MAX) => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(size as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(size as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&KEY);
    out.extend(payload.iter().zip(KEY.iter().cycle()).map(|(b, k)| b ^ k));
    out
}

fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(if fin { 0x80 } else { 0 } | opcode, Len::Minimal, payload)
}

fn text(payload: &str) -> Vec<u8> {
    frame(true, TEXT, payload.as_bytes())
}

fn close(payload: &[u8]) -> Vec<u8> {
    frame(true, CLOSE, payload)
}

/// Everything a decoder makes of `chunks`, fed one after the other, draining after each.
fn decode_chunks<'a>(max: usize, chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Item> {
    let mut decoder = Decoder::new(max);
    let mut items = Vec::new();
    for chunk in chunks {
        decoder.feed(chunk);
        items.extend(&mut decoder);
    }
    items
}

fn decode(bytes: &[u8]) -> Vec<Item> {
    decode_chunks(MAX, [bytes])
}

fn decode_bytewise(bytes: &[u8]) -> Vec<Item> {
    decode_chunks(MAX, bytes.chunks(1))
}

fn fail(close: Close) -> Vec<Item> {
    vec![Item::Fail(close)]
}

fn concat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

#[test]
fn masked_text_frame_is_a_text_item() {
    assert_eq!(decode(&text("{\"op\":\"ping\"}")), vec![Item::Text("{\"op\":\"ping\"}".into())]);
    assert_eq!(decode(&text("")), vec![Item::Text(String::new())]);
}

#[test]
fn binary_ping_and_pong_frames_are_items() {
    let bytes = concat(&[frame(true, BINARY, &[0, 1, 2]), frame(true, PING, b"hi"), frame(true, PONG, b"x")]);
    assert_eq!(decode(&bytes), vec![Item::Binary(vec![0, 1, 2]), Item::Ping(b"hi".to_vec()), Item::Pong]);
}

#[test]
fn unmasked_frame_fails_with_1002_after_two_bytes() {
    let mut decoder = Decoder::new(MAX);
    decoder.feed(&[0x81, 0x05]);
    assert_eq!(decoder.next(), Some(Item::Fail(Close::PROTOCOL)));
}

#[test]
fn reserved_bits_fail_with_1002() {
    for rsv in [0x40, 0x20, 0x10] {
        assert_eq!(decode(&raw_frame(0x80 | rsv | TEXT, Len::Minimal, b"a")), fail(Close::PROTOCOL), "{rsv:#x}");
    }
}

#[test]
fn reserved_opcodes_fail_with_1002() {
    for opcode in (0x3..=0x7).chain(0xB..=0xF) {
        assert_eq!(decode(&frame(true, opcode, b"")), fail(Close::PROTOCOL), "{opcode:#x}");
    }
}

#[test]
fn control_frames_over_125_bytes_fail_with_1002() {
    for opcode in [PING, PONG, CLOSE] {
        assert_eq!(decode(&frame(true, opcode, &[b'a'; 126])), fail(Close::PROTOCOL), "{opcode:#x}");
    }
    assert_eq!(decode(&frame(true, PING, &[7; 125])), vec![Item::Ping(vec![7; 125])]);
}

#[test]
fn fragmented_control_frames_fail_with_1002() {
    for opcode in [PING, PONG, CLOSE] {
        assert_eq!(decode(&frame(false, opcode, b"")), fail(Close::PROTOCOL), "{opcode:#x}");
    }
}

#[test]
fn continuation_without_a_message_fails_with_1002() {
    assert_eq!(decode(&frame(true, CONTINUATION, b"x")), fail(Close::PROTOCOL));
    assert_eq!(decode(&concat(&[text("a"), frame(false, CONTINUATION, b"x")])), {
        let mut items = vec![Item::Text("a".into())];
        items.extend(fail(Close::PROTOCOL));
        items
    });
}

#[test]
fn new_message_inside_a_fragmented_one_fails_with_1002() {
    for opcode in [TEXT, BINARY] {
        let bytes = concat(&[frame(false, TEXT, b"a"), frame(true, opcode, b"b")]);
        assert_eq!(decode(&bytes), fail(Close::PROTOCOL), "{opcode:#x}");
    }
}

#[test]
fn fragments_are_reassembled_into_one_message() {
    let bytes = concat(&[
        frame(false, TEXT, b"{\"op\":"),
        frame(false, CONTINUATION, b""),
        frame(true, CONTINUATION, b"\"ping\"}"),
    ]);
    assert_eq!(decode(&bytes), vec![Item::Text("{\"op\":\"ping\"}".into())]);
    let bytes = concat(&[frame(false, BINARY, &[1]), frame(true, CONTINUATION, &[2])]);
    assert_eq!(decode(&bytes), vec![Item::Binary(vec![1, 2])]);
}

#[test]
fn control_frames_between_fragments_come_out_before_the_message() {
    let bytes = concat(&[
        frame(false, TEXT, b"Hel"),
        frame(true, PING, b"p"),
        frame(false, CONTINUATION, b"lo"),
        frame(true, PONG, b""),
        frame(true, CONTINUATION, b"!"),
    ]);
    let expected = vec![Item::Ping(b"p".to_vec()), Item::Pong, Item::Text("Hello!".into())];
    assert_eq!(decode(&bytes), expected);
    assert_eq!(decode_bytewise(&bytes), expected);
}

#[test]
fn close_between_fragments_ends_decoding() {
    let bytes = concat(&[frame(false, TEXT, b"Hel"), close(&1000u16.to_be_bytes()), text("lo")]);
    assert_eq!(decode(&bytes), vec![Item::Close(Some(1000))]);
}

#[test]
fn length_with_the_top_bit_set_fails_with_1002() {
    let mut bytes = vec![0x80 | TEXT, 0x80 | 127];
    bytes.extend_from_slice(&(1u64 << 63).to_be_bytes());
    bytes.extend_from_slice(&KEY);
    assert_eq!(decode(&bytes), fail(Close::PROTOCOL));
}

#[test]
fn non_minimal_length_encodings_are_accepted() {
    for len in [Len::Bits16, Len::Bits64] {
        assert_eq!(decode(&raw_frame(0x80 | TEXT, len, b"ok")), vec![Item::Text("ok".into())], "{len:?}");
    }
}

#[test]
fn message_of_exactly_max_bytes_is_accepted() {
    let payload = "a".repeat(MAX);
    assert_eq!(decode(&text(&payload)), vec![Item::Text(payload.clone())]);
    let bytes = concat(&[frame(false, TEXT, &[b'a'; 600]), frame(true, CONTINUATION, &[b'a'; 400])]);
    assert_eq!(decode(&bytes), vec![Item::Text(payload)]);
}

#[test]
fn message_of_max_plus_one_bytes_fails_with_1009() {
    assert_eq!(decode(&text(&"a".repeat(MAX + 1))), fail(Close::TOO_BIG));
    let bytes = concat(&[frame(false, BINARY, &[0; 600]), frame(true, CONTINUATION, &[0; 401])]);
    assert_eq!(decode(&bytes), fail(Close::TOO_BIG));
}

#[test]
fn oversize_frame_fails_with_1009_from_its_header_alone() {
    let mut header = vec![0x80 | TEXT, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&KEY);
    let mut decoder = Decoder::new(MAX);
    decoder.feed(&header);
    assert_eq!(decoder.next(), Some(Item::Fail(Close::TOO_BIG)));
    assert_eq!(decoder.heap_bytes(), 0);
    // The payload that follows is dropped, not kept.
    decoder.feed(&[0; 4096]);
    assert_eq!(decoder.next(), None);
    assert_eq!(decoder.heap_bytes(), 0);
}

#[test]
fn partly_received_frame_keeps_only_what_arrived() {
    let bytes = frame(true, BINARY, &[9; 900]);
    let mut decoder = Decoder::new(MAX);
    decoder.feed(bytes.get(..108).expect("header and 100 payload bytes"));
    assert_eq!(decoder.next(), None);
    assert!(decoder.heap_bytes() <= 100, "{}", decoder.heap_bytes());
    assert!(!decoder.is_idle());
}

#[test]
fn trickled_payload_never_reserves_past_the_frame_end() {
    let bytes = frame(true, BINARY, &[9; 900]);
    let mut decoder = Decoder::new(MAX);
    let mut items = Vec::new();
    for byte in bytes.chunks(1) {
        decoder.feed(byte);
        items.extend(&mut decoder);
    }
    let [Item::Binary(payload)] = items.as_slice() else { panic!("one binary message: {items:?}") };
    assert_eq!(payload, &vec![9; 900]);
    assert!(payload.capacity() <= 900, "{}", payload.capacity());
}

#[test]
fn invalid_utf8_fails_fast_in_the_first_fragment() {
    let mut decoder = Decoder::new(MAX);
    decoder.feed(&frame(false, TEXT, &[b'o', b'k', 0xC0, 0xAF]));
    assert_eq!(decoder.next(), Some(Item::Fail(Close::INVALID_UTF8)));
}

#[test]
fn invalid_utf8_fails_fast_inside_a_partly_received_frame() {
    let mut payload = vec![b'a'; 20];
    payload.push(0xFF);
    payload.extend_from_slice(&[b'a'; 500]);
    let bytes = frame(true, TEXT, &payload);
    let mut decoder = Decoder::new(MAX);
    // Header (4 bytes with a 16-bit length, 4 of key) and the first 21 payload bytes.
    decoder.feed(bytes.get(..29).expect("long enough"));
    assert_eq!(decoder.next(), Some(Item::Fail(Close::INVALID_UTF8)));
}

#[test]
fn code_point_split_across_fragments_is_accepted() {
    let euro = "€".as_bytes();
    for cut in 1..euro.len() {
        let (head, tail) = euro.split_at(cut);
        let bytes = concat(&[frame(false, TEXT, head), frame(true, CONTINUATION, tail)]);
        assert_eq!(decode(&bytes), vec![Item::Text("€".into())], "cut at {cut}");
        assert_eq!(decode_bytewise(&bytes), vec![Item::Text("€".into())], "cut at {cut}");
    }
}

#[test]
fn code_point_cut_off_at_message_end_fails_with_1007() {
    let euro = "€".as_bytes();
    let head = euro.get(..2).expect("3-byte code point");
    assert_eq!(decode(&frame(true, TEXT, head)), fail(Close::INVALID_UTF8));
    let bytes = concat(&[frame(false, TEXT, b"a"), frame(true, CONTINUATION, head)]);
    assert_eq!(decode(&bytes), fail(Close::INVALID_UTF8));
}

#[test]
fn invalid_utf8_across_fragments_fails_with_1007() {
    let bytes = concat(&[frame(false, TEXT, &[0xC3]), frame(true, CONTINUATION, &[0x28])]);
    assert_eq!(decode(&bytes), fail(Close::INVALID_UTF8));
}

#[test]
fn binary_messages_are_not_checked_for_utf8() {
    assert_eq!(decode(&frame(true, BINARY, &[0xFF, 0xC0])), vec![Item::Binary(vec![0xFF, 0xC0])]);
}

#[test]
fn close_without_payload_has_no_code() {
    assert_eq!(decode(&close(b"")), vec![Item::Close(None)]);
}

#[test]
fn close_with_one_byte_fails_with_1002() {
    assert_eq!(decode(&close(&[0x03])), fail(Close::PROTOCOL));
}

#[test]
fn close_codes_a_peer_may_send_are_accepted() {
    let valid = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999];
    for code in valid {
        assert_eq!(decode(&close(&u16::to_be_bytes(code))), vec![Item::Close(Some(code))], "{code}");
    }
}

#[test]
fn close_codes_a_peer_may_not_send_fail_with_1002() {
    let invalid = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535];
    for code in invalid {
        assert_eq!(decode(&close(&u16::to_be_bytes(code))), fail(Close::PROTOCOL), "{code}");
    }
}

#[test]
fn close_reason_must_be_utf8() {
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice("bye ✓".as_bytes());
    assert_eq!(decode(&close(&payload)), vec![Item::Close(Some(1000))]);
    payload.push(0xFF);
    assert_eq!(decode(&close(&payload)), fail(Close::INVALID_UTF8));
}

#[test]
fn frames_split_at_every_byte_decode_as_when_fed_whole() {
    let long = "x".repeat(300);
    let bytes = concat(&[
        text("{\"op\":\"ping\"}"),
        frame(true, PING, b"abc"),
        frame(false, TEXT, "h€".as_bytes()),
        frame(true, PONG, b"zz"),
        frame(true, CONTINUATION, "llo ✓".as_bytes()),
        raw_frame(0x80 | TEXT, Len::Bits64, long.as_bytes()),
        frame(true, BINARY, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
        close(&1001u16.to_be_bytes()),
    ]);
    let whole = decode(&bytes);
    assert_eq!(
        whole,
        vec![
            Item::Text("{\"op\":\"ping\"}".into()),
            Item::Ping(b"abc".to_vec()),
            Item::Pong,
            Item::Text("h€llo ✓".into()),
            Item::Text(long),
            Item::Binary(vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
            Item::Close(Some(1001)),
        ]
    );
    assert_eq!(decode_bytewise(&bytes), whole);
    for cut in 0..=bytes.len() {
        let (head, tail) = bytes.split_at(cut);
        assert_eq!(decode_chunks(MAX, [head, tail]), whole, "cut at {cut}");
    }
}

#[test]
fn several_frames_in_one_feed_come_out_in_order() {
    let bytes = concat(&[text("1"), text("2"), frame(true, PING, b""), text("3")]);
    let mut decoder = Decoder::new(MAX);
    decoder.feed(&bytes);
    assert_eq!(decoder.next(), Some(Item::Text("1".into())));
    assert_eq!(decoder.next(), Some(Item::Text("2".into())));
    assert_eq!(decoder.next(), Some(Item::Ping(Vec::new())));
    assert_eq!(decoder.next(), Some(Item::Text("3".into())));
    assert_eq!(decoder.next(), None);
    assert!(decoder.is_idle());
}

#[test]
fn bytes_fed_before_items_are_taken_queue_behind_them() {
    let mut decoder = Decoder::new(MAX);
    decoder.feed(&concat(&[text("1"), text("2")]));
    assert_eq!(decoder.next(), Some(Item::Text("1".into())));
    let third = text("3");
    let (head, tail) = third.split_at(3);
    decoder.feed(head);
    decoder.feed(tail);
    let rest: Vec<Item> = decoder.by_ref().collect();
    assert_eq!(rest, vec![Item::Text("2".into()), Item::Text("3".into())]);
    assert!(decoder.is_idle());
}

#[test]
fn decoder_holds_no_heap_once_a_frame_is_consumed() {
    let mut decoder = Decoder::new(MAX);
    assert!(decoder.is_idle());
    decoder.feed(&concat(&[text("hello"), frame(true, PING, b"p")]));
    assert!(decoder.heap_bytes() > 0);
    assert_eq!(decoder.next(), Some(Item::Text("hello".into())));
    assert_eq!(decoder.next(), Some(Item::Ping(b"p".to_vec())));
    assert_eq!(decoder.next(), None);
    assert!(decoder.is_idle());
    assert_eq!(decoder.heap_bytes(), 0);

    // A header cut in the middle waits without any heap.
    let frame = text("again");
    decoder.feed(frame.get(..5).expect("part of the header"));
    assert_eq!(decoder.next(), None);
    assert_eq!(decoder.heap_bytes(), 0);
    decoder.feed(frame.get(5..).expect("the rest"));
    assert_eq!(decoder.next(), Some(Item::Text("again".into())));
    assert!(decoder.is_idle());
}

#[test]
fn payload_unmasks_correctly_at_every_alignment() {
    let payload: Vec<u8> = (0..=255u8).cycle().take(777).collect();
    let bytes = frame(true, BINARY, &payload);
    for chunk in [1, 3, 5, 7, 8, 13, 64] {
        assert_eq!(decode_chunks(MAX, bytes.chunks(chunk)), vec![Item::Binary(payload.clone())], "{chunk}");
    }
}

#[test]
fn nothing_is_produced_after_a_failure() {
    let mut decoder = Decoder::new(MAX);
    decoder.feed(&concat(&[frame(true, 0x3, b""), text("after")]));
    assert_eq!(decoder.next(), Some(Item::Fail(Close::PROTOCOL)));
    assert_eq!(decoder.next(), None);
    decoder.feed(&text("later"));
    assert_eq!(decoder.next(), None);
    assert!(decoder.is_done());
    assert_eq!(decoder.heap_bytes(), 0);
}

#[test]
fn nothing_is_produced_after_a_client_close() {
    let mut decoder = Decoder::new(MAX);
    decoder.feed(&concat(&[close(b""), text("after")]));
    decoder.feed(&text("later"));
    assert_eq!(decoder.next(), Some(Item::Close(None)));
    assert_eq!(decoder.next(), None);
    assert_eq!(decoder.heap_bytes(), 0);
}

#[test]
fn headers_are_parsed_from_any_prefix() {
    let bytes = raw_frame(0x80 | BINARY, Len::Bits64, b"ab");
    for len in 0..MAX_HEADER_BYTES {
        let prefix = bytes.get(..len).expect("within the header");
        let expected = if len < 2 { 2 } else { MAX_HEADER_BYTES };
        assert_eq!(parse_header(prefix), Parsed::NeedBytes(expected), "{len}");
    }
    let header = Header { fin: true, opcode: Opcode::Binary, mask: KEY, len: 2 };
    assert_eq!(parse_header(bytes.get(..MAX_HEADER_BYTES).expect("header")), Parsed::Complete(header));
}

/// One client frame, often valid, sometimes not in one of the ways the decoder checks.
fn any_frame() -> impl Strategy<Value = Vec<u8>> {
    let opcode = prop_oneof![4 => Just(TEXT), 2 => Just(CONTINUATION), 1 => Just(BINARY), 1 => Just(PING),
        1 => Just(PONG), 1 => Just(CLOSE), 1 => 0u8..16];
    let len = prop_oneof![Just(Len::Minimal), Just(Len::Bits16), Just(Len::Bits64)];
    let payload = prop_oneof![
        4 => "[a-z€✓]{0,20}".prop_map(String::into_bytes),
        1 => vec(any::<u8>(), 0..140),
    ];
    (any::<bool>(), prop::bool::weighted(0.05), opcode, len, payload, prop::bool::weighted(0.05)).prop_map(
        |(fin, rsv, opcode, len, payload, unmasked)| {
            let first = if fin { 0x80 } else { 0 } | if rsv { 0x40 } else { 0 } | opcode;
            let mut bytes = raw_frame(first, len, &payload);
            if let (true, Some(second)) = (unmasked, bytes.get_mut(1)) {
                *second &= 0x7F;
            }
            bytes
        },
    )
}

/// Cuts `bytes` at the given points (taken modulo its length).
fn cut(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for point in points.into_iter().chain([bytes.len()]) {
        chunks.push(bytes.get(start..point).unwrap_or_default().to_vec());
        start = point;
    }
    chunks
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_in_arbitrary_chunks_never_panic(
        bytes in vec(any::<u8>(), 0..600),
        cuts in vec(any::<usize>(), 0..12),
        max in 0usize..400,
    ) {
        let mut decoder = Decoder::new(max);
        let mut ended = false;
        for chunk in cut(&bytes, &cuts) {
            decoder.feed(&chunk);
            for item in &mut decoder {
                prop_assert!(!ended, "item after the end: {:?}", item);
                ended = matches!(item, Item::Close(_) | Item::Fail(_));
            }
            prop_assert!(decoder.heap_bytes() <= max + MAX_CONTROL_BYTES);
        }
    }

    #[test]
    fn frames_decode_the_same_however_they_are_chunked(
        frames in vec(any_frame(), 0..8),
        cuts in vec(any::<usize>(), 0..12),
    ) {
        let bytes = frames.concat();
        let whole = decode(&bytes);
        let chunks = cut(&bytes, &cuts);
        prop_assert_eq!(decode_chunks(MAX, chunks.iter().map(Vec::as_slice)), whole.clone());
        // Feeding everything before taking any item changes nothing either.
        let mut decoder = Decoder::new(MAX);
        for chunk in &chunks {
            decoder.feed(chunk);
        }
        prop_assert_eq!(decoder.collect::<Vec<_>>(), whole);
    }
}

#[test]
fn lazy_decoder_exists_only_while_bytes_wait() {
    let mut lazy = LazyDecoder::new(MAX);
    lazy.feed(&[]);
    assert!(lazy.decoder.is_none(), "no bytes, no decoder");
    let whole = text("hi");
    lazy.feed(&whole[..3]);
    assert_eq!(lazy.next(), None);
    assert!(lazy.decoder.is_some(), "a partial frame keeps its decoder");
    lazy.feed(&whole[3..]);
    assert_eq!(lazy.next(), Some(Item::Text("hi".into())));
    assert_eq!(lazy.next(), None);
    assert!(lazy.decoder.is_none(), "dropped once everything is decoded");
    lazy.feed(&[0x88, 0x80, 1, 2, 3, 4]);
    assert_eq!(lazy.next(), Some(Item::Close(None)));
    assert_eq!(lazy.next(), None);
    assert!(lazy.is_done(), "a done decoder is kept");
    lazy.feed(&text("after the close"));
    assert_eq!(lazy.next(), None, "and drops what comes after");
}
