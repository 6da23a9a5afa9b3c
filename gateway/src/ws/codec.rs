//! Decodes what a WebSocket client sends (RFC 6455 §5) into whole messages and control
//! frames, with no I/O: the session reads into a short-lived buffer, hands the bytes to
//! [`Decoder::feed`] and takes [`Item`]s out with [`Decoder::next`] until it returns `None`.
//!
//! Why not fastwebsockets' reader: its `read_frame` is not cancel safe, so it needs a task of
//! its own, it keeps an 8 KiB buffer per connection for the connection's whole life, and it
//! accepts unmasked client frames. This decoder is a plain state machine, so the session can
//! read from its own `select!` loop, and its heap use follows what is in flight: nothing while
//! idle (the bytes of a partly received header wait in a 14-byte array), the message being
//! received while one arrives (bounded by `max_message_bytes`, which is checked against each
//! frame header before any of its payload is kept), and briefly the tail of a fed chunk that
//! held more than one item.
//!
//! Payload bytes are unmasked straight from the fed slice into the message they belong to, so
//! a partly received frame costs no extra copy, and text is validated as it arrives: invalid
//! UTF-8 fails the connection at the first bad byte (Autobahn's 6.x "fail fast" cases), not
//! after the whole message was buffered.
//!
//! Every violation ends decoding with [`Item::Fail`] and the close code to send; after that
//! or after a client close the decoder is done: it yields nothing more and drops whatever else
//! is fed without keeping it. The session should still read and discard until EOF, so that
//! unread bytes never turn closing the socket into a TCP reset that destroys the close frame.

use std::{mem, str};

use crate::reply::Close;

/// Longest frame header: 2 bytes, a 64-bit extended length and a 4-byte masking key.
const MAX_HEADER_BYTES: usize = 14;
/// Largest payload of a control frame (§5.5).
const MAX_CONTROL_BYTES: usize = 125;

/// One thing a client said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A complete text message, reassembled from its fragments; valid UTF-8.
    Text(String),
    /// A complete binary message. Every op is text, so the session answers with an error.
    Binary(Vec<u8>),
    /// A ping; answer with a pong carrying this payload (at most 125 bytes).
    Ping(Vec<u8>),
    /// A pong; its payload is discarded unread.
    Pong,
    /// The client closed, with this code if it gave one (checked to be one a peer may send).
    Close(Option<u16>),
    /// The client broke the protocol; close with this.
    Fail(Close),
}

/// Incremental decoder of the frames one client sends to the server.
///
/// Feed it bytes as they are read, in chunks of any size, and take items out with
/// [`next`](Self::next) (it is an [`Iterator`], but not a fused one: after `None`, the next
/// [`feed`](Self::feed) may make more items available):
///
/// ```ignore
/// decoder.feed(&buf[..n]);
/// while let Some(item) = decoder.next() {
///     // answer it
/// }
/// ```
#[derive(Debug)]
pub(crate) struct Decoder {
    /// Largest message accepted, inclusive, counting all its fragments' payloads.
    max_message_bytes: usize,
    /// Where in a frame the next byte belongs.
    phase: Phase,
    /// The header received so far, while `phase` is [`Phase::Header`].
    header: [u8; MAX_HEADER_BYTES],
    /// How many bytes of `header` are filled.
    header_len: usize,
    /// The message whose data frames are arriving, from its first frame until its final one.
    message: Option<Message>,
    /// Payload of the ping or close frame being received (pong payloads are not kept).
    control: Vec<u8>,
    /// An item decoded by `feed` and not yet taken by `next`.
    ready: Option<Item>,
    /// Fed bytes after `ready` not decoded yet; no capacity when there are none.
    pending: Vec<u8>,
    /// How many bytes at the start of `pending` are already decoded.
    pending_pos: usize,
}

/// Where in a frame the decoder is.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Between frames or inside a header.
    Header,
    /// Inside a frame's payload.
    Payload(Frame),
    /// A client close or a failure was decoded: everything else is ignored.
    Done,
}

/// A frame whose header is decoded and checked.
#[derive(Debug, Clone, Copy)]
struct Frame {
    kind: Kind,
    fin: bool,
    /// The masking key, rotated so that its first byte applies to the next payload byte.
    mask: [u8; 4],
    /// Payload bytes still to come.
    remaining: usize,
}

/// Where a frame's payload goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Into the message being received.
    Data,
    /// Into `control`, then checked as a close.
    Close,
    /// Into `control`, then echoed.
    Ping,
    /// Nowhere.
    Pong,
}

/// A message being received.
#[derive(Debug)]
struct Message {
    is_text: bool,
    /// Unmasked payload of its frames so far.
    payload: Vec<u8>,
    /// Length of the prefix of `payload` known to be valid UTF-8. Text only; what follows is
    /// at most the start of a code point whose other bytes have not arrived yet.
    checked: usize,
}

/// Frame opcodes (§5.2); the others are reserved and refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            0x0 => Some(Self::Continuation),
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// A complete frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    fin: bool,
    opcode: Opcode,
    mask: [u8; 4],
    /// Payload length as sent: not yet checked against any limit.
    len: u64,
}

/// What the first bytes of a frame header say.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// Not broken so far, but the header is this many bytes long in total.
    NeedBytes(usize),
    /// Broken: close with this.
    Invalid(Close),
    /// The whole header.
    Complete(Header),
}

impl Decoder {
    /// A decoder for a new connection that accepts messages of up to `max_message_bytes`.
    pub(crate) fn new(max_message_bytes: usize) -> Self {
        Self {
            max_message_bytes,
            phase: Phase::Header,
            header: [0; MAX_HEADER_BYTES],
            header_len: 0,
            message: None,
            control: Vec::new(),
            ready: None,
            pending: Vec::new(),
            pending_pos: 0,
        }
    }

    /// Takes bytes read from the client. Decodes up to the first item right away from
    /// `bytes` and copies only what follows it, if anything, to decode in later calls to
    /// [`next`](Self::next). Bytes fed once the decoder is done are dropped.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.is_done() || bytes.is_empty() {
            return;
        }
        if self.ready.is_some() || self.pending_pos < self.pending.len() {
            // Items from earlier bytes are still waiting: these bytes come after them.
            self.pending.drain(..self.pending_pos.min(self.pending.len()));
            self.pending_pos = 0;
            self.pending.extend_from_slice(bytes);
            return;
        }
        let mut input = bytes;
        self.ready = self.step(&mut input);
        if !input.is_empty() && !self.is_done() {
            self.pending = input.to_vec();
            self.pending_pos = 0;
        }
    }

    /// True once a client close or a failure was decoded, even before `next` returned it.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// True when the decoder holds no partial frame, message or undelivered item, and so no
    /// heap memory.
    pub(crate) fn is_idle(&self) -> bool {
        let between_frames = match self.phase {
            Phase::Header => self.header_len == 0,
            Phase::Payload(_) => false,
            Phase::Done => true,
        };
        between_frames && self.message.is_none() && self.ready.is_none() && self.heap_bytes() == 0
    }

    /// Heap bytes held: partial message, control payload, undelivered item and fed bytes.
    pub(crate) fn heap_bytes(&self) -> usize {
        let item = match &self.ready {
            Some(Item::Text(text)) => text.capacity(),
            Some(Item::Binary(bytes) | Item::Ping(bytes)) => bytes.capacity(),
            _ => 0,
        };
        let message = self.message.as_ref().map_or(0, |m| m.payload.capacity());
        message + self.control.capacity() + self.pending.capacity() + item
    }

    /// Decodes from `input` until an item is complete or `input` is used up, advancing
    /// `input` past what it consumed. Returns `None` only with `input` empty.
    fn step(&mut self, input: &mut &[u8]) -> Option<Item> {
        let item = self.decode(input);
        if matches!(item, Some(Item::Close(_) | Item::Fail(_))) {
            self.finish();
            *input = &[];
        }
        item
    }

    fn decode(&mut self, input: &mut &[u8]) -> Option<Item> {
        loop {
            match self.phase {
                Phase::Done => {
                    *input = &[];
                    return None;
                }
                Phase::Header => match parse_header(self.header.get(..self.header_len).unwrap_or_default()) {
                    Parsed::NeedBytes(total) => {
                        let free = self.header.iter_mut().take(total).skip(self.header_len);
                        let taken = free.zip(input.iter()).map(|(slot, byte)| *slot = *byte).count();
                        if taken == 0 {
                            return None;
                        }
                        self.header_len += taken;
                        *input = input.get(taken..).unwrap_or_default();
                    }
                    Parsed::Invalid(close) => return Some(Item::Fail(close)),
                    Parsed::Complete(header) => match self.start_frame(header) {
                        Ok(frame) => self.phase = Phase::Payload(frame),
                        Err(close) => return Some(Item::Fail(close)),
                    },
                },
                Phase::Payload(mut frame) => {
                    let (chunk, rest) = input.split_at(frame.remaining.min(input.len()));
                    *input = rest;
                    if let Err(close) = self.take_payload(&frame, chunk) {
                        return Some(Item::Fail(close));
                    }
                    frame.remaining -= chunk.len();
                    frame.mask.rotate_left(chunk.len() % 4);
                    if frame.remaining > 0 {
                        // Only an exhausted input leaves a frame unfinished.
                        self.phase = Phase::Payload(frame);
                        return None;
                    }
                    self.phase = Phase::Header;
                    self.header_len = 0;
                    if let Some(item) = self.end_frame(&frame) {
                        return Some(item);
                    }
                }
            }
        }
    }

    /// Applies the rules that depend on earlier frames, and makes room for a control payload.
    fn start_frame(&mut self, header: Header) -> Result<Frame, Close> {
        let kind = match header.opcode {
            Opcode::Continuation => {
                let Some(message) = &self.message else { return Err(Close::PROTOCOL) };
                self.check_size(message.payload.len(), header.len)?;
                Kind::Data
            }
            Opcode::Text | Opcode::Binary => {
                if self.message.is_some() {
                    // A new message may not start before the previous one's final fragment.
                    return Err(Close::PROTOCOL);
                }
                self.check_size(0, header.len)?;
                self.message =
                    Some(Message { is_text: header.opcode == Opcode::Text, payload: Vec::new(), checked: 0 });
                Kind::Data
            }
            Opcode::Close => Kind::Close,
            Opcode::Ping => Kind::Ping,
            Opcode::Pong => Kind::Pong,
        };
        // Data lengths were just bounded by `max_message_bytes` and control ones by 125.
        let remaining = usize::try_from(header.len).map_err(|_| Close::TOO_BIG)?;
        if matches!(kind, Kind::Close | Kind::Ping) {
            self.control = Vec::with_capacity(remaining);
        }
        Ok(Frame { kind, fin: header.fin, mask: header.mask, remaining })
    }

    /// Refuses a frame of `len` bytes that would take a message of `so_far` bytes past the
    /// limit, before any of it is buffered: a client announcing a gigabyte allocates nothing.
    fn check_size(&self, so_far: usize, len: u64) -> Result<(), Close> {
        let total = u64::try_from(so_far).unwrap_or(u64::MAX).saturating_add(len);
        match u64::try_from(self.max_message_bytes) {
            Ok(max) if total <= max => Ok(()),
            _ => Err(Close::TOO_BIG),
        }
    }

    /// Unmasks `chunk` of the current frame's payload into wherever that payload goes.
    fn take_payload(&mut self, frame: &Frame, chunk: &[u8]) -> Result<(), Close> {
        match frame.kind {
            Kind::Data => {
                let Some(message) = self.message.as_mut() else { return Err(Close::PROTOCOL) };
                grow(&mut message.payload, chunk.len(), frame.remaining);
                append_unmasked(&mut message.payload, chunk, frame.mask);
                if message.is_text {
                    check_utf8_so_far(message)?;
                }
                Ok(())
            }
            Kind::Close | Kind::Ping => {
                append_unmasked(&mut self.control, chunk, frame.mask);
                Ok(())
            }
            Kind::Pong => Ok(()),
        }
    }

    /// What a frame whose payload is complete amounts to, if anything yet.
    fn end_frame(&mut self, frame: &Frame) -> Option<Item> {
        match frame.kind {
            Kind::Data if !frame.fin => None,
            Kind::Data => {
                let message = self.message.take()?;
                Some(if message.is_text {
                    // Checked as it arrived; this also refuses a code point cut off at the end.
                    String::from_utf8(message.payload).map_or(Item::Fail(Close::INVALID_UTF8), Item::Text)
                } else {
                    Item::Binary(message.payload)
                })
            }
            Kind::Ping => Some(Item::Ping(mem::take(&mut self.control))),
            Kind::Pong => Some(Item::Pong),
            Kind::Close => Some(close_item(&mem::take(&mut self.control))),
        }
    }

    /// Stops decoding for good and lets go of every buffer.
    fn finish(&mut self) {
        self.phase = Phase::Done;
        self.message = None;
        self.control = Vec::new();
        self.pending = Vec::new();
        self.pending_pos = 0;
    }
}

impl Iterator for Decoder {
    type Item = Item;

    /// The next item from the bytes fed so far, or `None` once they are all decoded. Bytes
    /// of an unfinished frame stay inside the decoder until more are fed.
    fn next(&mut self) -> Option<Item> {
        if let Some(item) = self.ready.take() {
            return Some(item);
        }
        if self.pending_pos >= self.pending.len() {
            return None;
        }
        // Taken out so that `step` can borrow the decoder; put back only if a tail remains.
        let pending = mem::take(&mut self.pending);
        let mut input = pending.get(self.pending_pos..).unwrap_or_default();
        let item = self.step(&mut input);
        if input.is_empty() {
            self.pending_pos = 0;
        } else {
            self.pending_pos = pending.len() - input.len();
            self.pending = pending;
        }
        item
    }
}

/// Reads as much of a frame header as `bytes` holds, refusing it as soon as a byte breaks a
/// rule that needs no context: unmasked, reserved bits, reserved opcode, fragmented or
/// oversize control frame, or a 64-bit length with the top bit set.
fn parse_header(bytes: &[u8]) -> Parsed {
    let [first, second, rest @ ..] = bytes else { return Parsed::NeedBytes(2) };
    if first & 0x70 != 0 {
        // RSV1-3 mean an extension, and none is ever negotiated.
        return Parsed::Invalid(Close::PROTOCOL);
    }
    let Some(opcode) = Opcode::from_bits(first & 0x0F) else { return Parsed::Invalid(Close::PROTOCOL) };
    let fin = first & 0x80 != 0;
    if second & 0x80 == 0 {
        // §5.1: a server must close the connection on an unmasked client frame.
        return Parsed::Invalid(Close::PROTOCOL);
    }
    let len7 = second & 0x7F;
    if opcode.is_control() && (!fin || usize::from(len7) > MAX_CONTROL_BYTES) {
        return Parsed::Invalid(Close::PROTOCOL);
    }
    let extended_bytes = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let total = 2 + extended_bytes + 4;
    let Some((extended, mask)) = rest.split_at_checked(extended_bytes) else { return Parsed::NeedBytes(total) };
    let &[m0, m1, m2, m3] = mask else { return Parsed::NeedBytes(total) };
    // Non-minimal encodings (a small length in 16 or 64 bits) are accepted: harmless.
    let len = match *extended {
        [a, b] => u64::from(u16::from_be_bytes([a, b])),
        [a, b, c, d, e, f, g, h] => u64::from_be_bytes([a, b, c, d, e, f, g, h]),
        _ => u64::from(len7),
    };
    if len >> 63 != 0 {
        // §5.2: the most significant bit of a 64-bit length must be 0.
        return Parsed::Invalid(Close::PROTOCOL);
    }
    Parsed::Complete(Header { fin, opcode, mask: [m0, m1, m2, m3], len })
}

/// Makes room for `take` more bytes of a frame that has `remaining` (at least `take`) bytes
/// left. Grows geometrically, so that a payload trickling in byte by byte is not copied over
/// and over, but never past the frame's end, so that no capacity is wasted.
fn grow(buf: &mut Vec<u8>, take: usize, remaining: usize) {
    if buf.capacity() - buf.len() < take {
        buf.reserve_exact(take.max(buf.len().min(remaining)));
    }
}

/// Appends `masked` to `out`, unmasked with `mask` (§5.3).
fn append_unmasked(out: &mut Vec<u8>, masked: &[u8], mask: [u8; 4]) {
    let start = out.len();
    out.extend_from_slice(masked);
    if let Some(fresh) = out.get_mut(start..) {
        unmask(fresh, mask);
    }
}

/// XORs `bytes` with the repeated `mask`, eight bytes at a time.
fn unmask(bytes: &mut [u8], mask: [u8; 4]) {
    let [m0, m1, m2, m3] = mask;
    let key = u64::from_ne_bytes([m0, m1, m2, m3, m0, m1, m2, m3]);
    let mut words = bytes.chunks_exact_mut(8);
    for word in &mut words {
        if let Ok(word) = <&mut [u8; 8]>::try_from(word) {
            *word = (u64::from_ne_bytes(*word) ^ key).to_ne_bytes();
        }
    }
    // The tail starts at a multiple of 8, so the key starts over at its first byte.
    for (byte, m) in words.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *byte ^= m;
    }
}

/// Fails a text message at its first invalid byte, allowing only an incomplete code point
/// at the end, whose other bytes may come with the next chunk or fragment.
fn check_utf8_so_far(message: &mut Message) -> Result<(), Close> {
    let len = message.payload.len();
    let unchecked = message.payload.get(message.checked..).unwrap_or_default();
    match str::from_utf8(unchecked) {
        Ok(_) => message.checked = len,
        // `error_len` is `None` only when the end cuts a code point that could still be valid.
        Err(error) if error.error_len().is_none() => message.checked += error.valid_up_to(),
        Err(_) => return Err(Close::INVALID_UTF8),
    }
    Ok(())
}

/// A client close frame, checked as RFC 6455 §5.5.1 and §7.4 require.
fn close_item(payload: &[u8]) -> Item {
    match payload {
        [] => Item::Close(None),
        [_] => Item::Fail(Close::PROTOCOL),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_sendable_close_code(code) {
                Item::Fail(Close::PROTOCOL)
            } else if str::from_utf8(reason).is_err() {
                Item::Fail(Close::INVALID_UTF8)
            } else {
                Item::Close(Some(code))
            }
        }
    }
}

/// Whether a peer may put `code` in a close frame (§7.4): the registered codes except 1004
/// (reserved), 1005, 1006 and 1015 (never sent), plus 3000-4999 for libraries and
/// applications. 1012-1014 were registered after the RFC and Autobahn's 7.7 cases send them.
fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A [`Decoder`] that exists only while a client has sent something not yet decoded.
///
/// Why: idle connections are the many, and a decoder is some 170 bytes that an idle one never
/// uses. The box is made when bytes arrive and dropped once they are all decoded (ops are
/// rare, so one small allocation per op is nothing); a decoder that is done is kept, so
/// whatever a client sends after its close is still discarded rather than decoded afresh.
pub(crate) struct LazyDecoder {
    max_message_bytes: usize,
    decoder: Option<Box<Decoder>>,
}

impl LazyDecoder {
    /// No decoder yet; one made later refuses messages over `max_message_bytes`.
    pub(crate) fn new(max_message_bytes: usize) -> Self {
        Self { max_message_bytes, decoder: None }
    }

    /// See [`Decoder::feed`].
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        let max = self.max_message_bytes;
        self.decoder.get_or_insert_with(|| Box::new(Decoder::new(max))).feed(bytes);
    }

    /// See [`Decoder::is_done`].
    pub(crate) fn is_done(&self) -> bool {
        self.decoder.as_ref().is_some_and(|decoder| decoder.is_done())
    }
}

impl Iterator for LazyDecoder {
    type Item = Item;

    /// The next item; once everything fed is decoded, the decoder is dropped unless it is
    /// in the middle of a frame or done.
    fn next(&mut self) -> Option<Item> {
        let decoder = self.decoder.as_mut()?;
        let item = decoder.next();
        if item.is_none() && decoder.is_idle() && !decoder.is_done() {
            self.decoder = None;
        }
        item
    }
}

#[cfg(test)]
mod tests {
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
}
