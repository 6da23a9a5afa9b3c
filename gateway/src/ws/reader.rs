//! The reader task of one WebSocket: reads client frames, reassembles fragmented messages
//! within `--max-message-bytes`, parses ops, and hands everything to the session over a
//! small bounded channel.
//!
//! It is a task of its own because fastwebsockets' `read_frame` is not cancel safe (a frame
//! half read when a `select!` drops the future would be lost); the session selects on the
//! channel instead, which is. The bounded channel is the back-pressure: while the session is
//! busy, the reader stops reading and TCP slows the client down.
//!
//! Auto-pong and auto-close are off: control frames are forwarded as [`Inbound`] and the
//! session, which owns the only write half, answers them in order with its other frames.
//! After a protocol error or a client close the reader keeps draining (and discarding) the
//! socket until EOF, so closing it later never turns unread bytes into a TCP reset that could
//! destroy the close frame in flight to the client.

use fastwebsockets::{CloseCode, Frame, OpCode, Role, WebSocketError};
use tokio::sync::mpsc;

use super::socket::Reader;
use crate::{
    op::{self, Rejected, Request},
    reply::{Close, WireError},
};

/// What the reader hands to the session.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A complete text or binary message: an op, or why it is not one. Boxed: ops are rare,
    /// and a small `Inbound` keeps every connection's channel buffer small.
    Op(Box<Result<Request, Rejected>>),
    /// A client ping; the session answers with a pong carrying this payload (≤ 125 bytes).
    Ping(Vec<u8>),
    /// A client pong (answer to a heartbeat ping).
    Pong,
    /// The client closed, with this code if it gave one.
    Close(Option<u16>),
    /// The client broke the protocol; close with this.
    Fail(Close),
}

/// Why frame reading stopped.
enum Stop {
    /// EOF or a socket error: nothing more to say to the client.
    Gone,
    /// The session went away.
    SessionGone,
    /// A close frame or a protocol error was reported; drain until EOF.
    Closing,
}

/// Reads `reader` until EOF, sending what it finds to `inbound`.
pub(crate) async fn run(mut reader: Reader, max_message_bytes: usize, inbound: mpsc::Sender<Inbound>) {
    match read_frames(&mut reader, max_message_bytes, &inbound).await {
        Stop::Gone | Stop::SessionGone => {}
        Stop::Closing => {
            // Discard whatever the client still sends (the rest of an oversize message, its
            // close reply) until it closes; the session ends this task if it does not.
            let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
        }
    }
}

async fn read_frames(reader: &mut Reader, max_message_bytes: usize, inbound: &mpsc::Sender<Inbound>) -> Stop {
    // The write half is a dummy: the session owns the real one (see the module docs).
    let (mut ws, _) = fastwebsockets::after_handshake_split(reader, tokio::io::sink(), Role::Server);
    ws.set_auto_close(false);
    ws.set_auto_pong(false);
    // fastwebsockets refuses frames of `len >= max`; the limit is inclusive on the wire.
    ws.set_max_message_size(max_message_bytes.saturating_add(1));
    // Nothing is ever obligated with auto-close and auto-pong off.
    let mut no_obligations = |_: Frame<'_>| std::future::ready(Ok::<(), std::convert::Infallible>(()));
    let mut fragments = Fragments::default();
    loop {
        let item = match ws.read_frame(&mut no_obligations).await {
            Ok(frame) => classify(frame, &mut fragments, max_message_bytes),
            Err(error) => match Close::for_read_error(&error) {
                Some(close) => Some(Inbound::Fail(close)),
                None => {
                    log_gone(&error);
                    return Stop::Gone;
                }
            },
        };
        let Some(item) = item else { continue };
        let closing = matches!(item, Inbound::Close(_) | Inbound::Fail(_));
        if inbound.send(item).await.is_err() {
            return Stop::SessionGone;
        }
        if closing {
            return Stop::Closing;
        }
    }
}

fn log_gone(error: &WebSocketError) {
    match error {
        WebSocketError::UnexpectedEOF => tracing::debug!("client closed the socket"),
        error => tracing::debug!(%error, "read failed"),
    }
}

/// A message being reassembled from fragments.
#[derive(Default)]
struct Fragments {
    /// Opcode of the first fragment (text or binary) and the payload so far.
    message: Option<(OpCode, Vec<u8>)>,
}

/// Turns one frame into what the session must know, if anything yet.
fn classify(frame: Frame<'_>, fragments: &mut Fragments, max_message_bytes: usize) -> Option<Inbound> {
    match frame.opcode {
        OpCode::Text | OpCode::Binary => {
            if fragments.message.is_some() {
                // A new message may not start before the previous one's final fragment.
                return Some(Inbound::Fail(Close::PROTOCOL));
            }
            if frame.fin {
                return Some(complete(frame.opcode, &frame.payload));
            }
            fragments.message = Some((frame.opcode, frame.payload.to_vec()));
            None
        }
        OpCode::Continuation => {
            let Some((opcode, payload)) = fragments.message.as_mut() else {
                return Some(Inbound::Fail(Close::PROTOCOL));
            };
            // The per-frame limit alone would let many small fragments add up to anything.
            if payload.len() + frame.payload.len() > max_message_bytes {
                return Some(Inbound::Fail(Close::TOO_BIG));
            }
            payload.extend_from_slice(&frame.payload);
            if !frame.fin {
                return None;
            }
            let opcode = *opcode;
            let (_, payload) = fragments.message.take()?;
            Some(complete(opcode, &payload))
        }
        OpCode::Close => Some(close(&frame.payload)),
        OpCode::Ping => Some(Inbound::Ping(frame.payload.to_vec())),
        OpCode::Pong => Some(Inbound::Pong),
    }
}

/// A whole message: text is an op, binary is refused with an error message.
fn complete(opcode: OpCode, payload: &[u8]) -> Inbound {
    if opcode == OpCode::Binary {
        return Inbound::Op(Box::new(Err(Rejected { id: None, error: WireError::binary_message() })));
    }
    // Single text frames were checked by fastwebsockets; reassembled ones were not.
    if std::str::from_utf8(payload).is_err() {
        return Inbound::Fail(Close::INVALID_UTF8);
    }
    Inbound::Op(Box::new(op::parse(payload)))
}

/// A client close frame, checked as RFC 6455 §5.5.1 and §7.4 require.
fn close(payload: &[u8]) -> Inbound {
    match payload {
        [] => Inbound::Close(None),
        [_] => Inbound::Fail(Close::PROTOCOL),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !CloseCode::from(code).is_allowed() {
                Inbound::Fail(Close::PROTOCOL)
            } else if std::str::from_utf8(reason).is_err() {
                Inbound::Fail(Close::INVALID_UTF8)
            } else {
                Inbound::Close(Some(code))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use fastwebsockets::Payload;

    use super::*;

    fn frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Frame<'static> {
        Frame::new(fin, opcode, None, Payload::Owned(payload.to_vec()))
    }

    #[test]
    fn fragments_are_reassembled_into_one_op() {
        let mut fragments = Fragments::default();
        assert!(classify(frame(false, OpCode::Text, br#"{"op":"pi"#), &mut fragments, 100).is_none());
        assert!(classify(frame(false, OpCode::Continuation, br#"ng","#), &mut fragments, 100).is_none());
        let done = classify(frame(true, OpCode::Continuation, br#""id":1}"#), &mut fragments, 100);
        let Some(Inbound::Op(parsed)) = done else { panic!("not an op: {done:?}") };
        assert!(matches!(*parsed, Ok(Request { op: op::Op::Ping, .. })), "{parsed:?}");
    }

    #[test]
    fn fragments_over_the_limit_close_with_1009() {
        let mut fragments = Fragments::default();
        assert!(classify(frame(false, OpCode::Text, &[b'a'; 60]), &mut fragments, 100).is_none());
        let over = classify(frame(true, OpCode::Continuation, &[b'a'; 41]), &mut fragments, 100);
        assert!(matches!(over, Some(Inbound::Fail(Close::TOO_BIG))), "{over:?}");
    }

    #[test]
    fn misordered_fragments_are_protocol_errors() {
        let mut fragments = Fragments::default();
        let stray = classify(frame(true, OpCode::Continuation, b"x"), &mut fragments, 100);
        assert!(matches!(stray, Some(Inbound::Fail(Close::PROTOCOL))));
        classify(frame(false, OpCode::Text, b"x"), &mut fragments, 100);
        let interleaved = classify(frame(true, OpCode::Text, b"y"), &mut fragments, 100);
        assert!(matches!(interleaved, Some(Inbound::Fail(Close::PROTOCOL))));
    }

    #[test]
    fn invalid_utf8_across_fragments_is_1007() {
        let mut fragments = Fragments::default();
        classify(frame(false, OpCode::Text, &[0xC3]), &mut fragments, 100);
        let bad = classify(frame(true, OpCode::Continuation, &[0x28]), &mut fragments, 100);
        assert!(matches!(bad, Some(Inbound::Fail(Close::INVALID_UTF8))));
    }

    #[test]
    fn close_frames_are_validated() {
        assert!(matches!(close(&[]), Inbound::Close(None)));
        assert!(matches!(close(&[0x03, 0xE8]), Inbound::Close(Some(1000))));
        assert!(matches!(close(&[0x03]), Inbound::Fail(Close::PROTOCOL)));
        assert!(matches!(close(&[0x03, 0xED]), Inbound::Fail(Close::PROTOCOL)), "1005 may not be sent");
        assert!(matches!(close(&[0x03, 0xE8, 0xFF]), Inbound::Fail(Close::INVALID_UTF8)));
    }

    #[test]
    fn binary_messages_become_bad_request_errors() {
        let mut fragments = Fragments::default();
        let binary = classify(frame(true, OpCode::Binary, b"\x01"), &mut fragments, 100);
        let Some(Inbound::Op(parsed)) = binary else { panic!("not an op: {binary:?}") };
        assert!(matches!(*parsed, Err(Rejected { id: None, .. })));
    }
}
