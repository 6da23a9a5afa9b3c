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

    /// See [`Decoder::feed`]. No bytes (an EOF read, an empty read-ahead) make no decoder.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
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
mod tests;
