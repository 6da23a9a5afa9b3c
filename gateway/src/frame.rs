//! Server-to-client WebSocket frames (RFC 6455 §5.2), written straight into a connection's
//! output buffer.
//!
//! Why not fastwebsockets' writer: it writes one frame per call, and a tick must be copied
//! into a frame anyway. Writing the 2–10 byte header in front of the tick's shared JSON bytes
//! in one buffer lets a session send hundreds of ticks with one `write` syscall. Server frames
//! are never masked and never fragmented, so the header is only FIN, opcode and length.

/// Frame opcodes the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    /// A UTF-8 text message: every JSON message the server sends.
    Text = 0x1,
    /// Raw bytes: only echoed by the conformance route; the feed itself sends text.
    Binary = 0x2,
    /// Ends the connection; payload is a 2-byte code and a UTF-8 reason.
    Close = 0x8,
    /// Heartbeat probe.
    Ping = 0x9,
    /// Answer to a client ping, echoing its payload.
    Pong = 0xA,
}

/// Appends the header of a final, unmasked frame whose payload is `len` bytes.
pub fn write_header(out: &mut Vec<u8>, opcode: Opcode, len: usize) {
    let first = 0x80 | opcode as u8;
    // The three length encodings of §5.2: 7-bit, 16-bit after 126, 64-bit after 127.
    if len < 126 {
        out.extend_from_slice(&[first, len as u8]);
    } else if let Ok(len) = u16::try_from(len) {
        let [hi, lo] = len.to_be_bytes();
        out.extend_from_slice(&[first, 126, hi, lo]);
    } else {
        out.extend_from_slice(&[first, 127]);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Appends a whole text frame carrying `payload` (which must be UTF-8).
pub(crate) fn write_text(out: &mut Vec<u8>, payload: &[u8]) {
    write_header(out, Opcode::Text, payload.len());
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason`.
///
/// The reason is cut to fit a control frame's 125-byte payload limit (at a char boundary).
pub(crate) fn write_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    write_header(out, Opcode::Close, 2 + reason.len());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason);
}

/// Appends a ping (or pong) control frame; `payload` must be at most 125 bytes, which
/// every caller guarantees (the reader rejects longer client pings).
pub(crate) fn write_control(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    debug_assert!(payload.len() <= 125, "control frames carry at most 125 bytes");
    write_header(out, opcode, payload.len());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6455 §5.7: "A single-frame unmasked text message" containing "Hello".
    #[test]
    fn single_frame_unmasked_text_matches_the_rfc() {
        let mut out = Vec::new();
        write_text(&mut out, b"Hello");
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    /// RFC 6455 §5.7: "Unmasked Ping request and masked Ping response" (the unmasked half),
    /// and the pong the server would send.
    #[test]
    fn unmasked_ping_and_pong_match_the_rfc() {
        let mut out = Vec::new();
        write_control(&mut out, Opcode::Ping, b"Hello");
        assert_eq!(out, [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        write_control(&mut out, Opcode::Pong, b"Hello");
        assert_eq!(out, [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    /// RFC 6455 §5.7: "256 bytes binary message in a single unmasked frame" uses the 16-bit
    /// length (0x7E 0x0100); "64KiB binary message" uses the 64-bit one. Same lengths here
    /// with the text opcode.
    #[test]
    fn extended_lengths_match_the_rfc() {
        let mut out = Vec::new();
        write_header(&mut out, Opcode::Text, 256);
        assert_eq!(out, [0x81, 0x7E, 0x01, 0x00]);
        out.clear();
        write_header(&mut out, Opcode::Text, 65_536);
        assert_eq!(out, [0x81, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
        assert_eq!(out.len(), 10, "the longest header: 2 bytes and a 64-bit length");
    }

    #[test]
    fn length_encoding_switches_at_the_rfc_boundaries() {
        for (len, header_len) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            let mut out = Vec::new();
            write_header(&mut out, Opcode::Text, len);
            assert_eq!(out.len(), header_len, "payload length {len}");
        }
    }

    #[test]
    fn close_frame_carries_code_and_bounded_reason() {
        let mut out = Vec::new();
        write_close(&mut out, 1001, "server shutting down");
        assert_eq!(&out[..4], &[0x88, 22, 0x03, 0xE9]);
        assert_eq!(&out[4..], b"server shutting down");

        out.clear();
        write_close(&mut out, 1000, &"é".repeat(100));
        assert!(out[1] as usize <= 125);
        assert!(std::str::from_utf8(&out[4..]).is_ok(), "reason cut at a char boundary");
    }
}
