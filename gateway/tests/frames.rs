//! Invalid WebSocket frames over a real socket: each framing rule the gateway's own decoder
//! enforces, seen from the client's side of a TCP connection.
//!
//! The decoder's unit tests prove it classifies bytes correctly; these prove the session acts
//! on it: the close frame carries the right code, the server then ends the TCP connection
//! instead of leaving it half open, and nothing a broken client does reaches another client.
//! tokio-tungstenite refuses to send most of these frames, so the bad client here is a raw
//! `TcpStream` that performs the upgrade by hand and writes frames built byte by byte; the
//! healthy neighbours are real tokio-tungstenite clients.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{assert_tick, connect, next_json, next_non_heartbeat, send, start, within, Server, Ws};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// FIN bit of a frame's first byte.
const FIN: u8 = 0x80;
const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;
/// The masking key of every frame sent here; any key will do, but not all zeros, which would
/// let a decoder that forgot to unmask pass.
const KEY: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];
/// How long the server may take to end the TCP connection after its close frame.
const EOF_WITHIN: Duration = Duration::from_secs(5);

/// A masked client frame: `first` is the FIN/RSV/opcode byte as given, the length is in its
/// shortest encoding.
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = header(first, 0x80, payload.len() as u64);
    out.extend_from_slice(&KEY);
    out.extend(payload.iter().zip(KEY.iter().cycle()).map(|(byte, key)| byte ^ key));
    out
}

/// A frame sent without a mask, as only a server may.
fn unmasked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = header(first, 0, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

/// The first bytes of a frame up to its masking key: `mask_bit` is 0x80 or 0.
fn header(first: u8, mask_bit: u8, len: u64) -> Vec<u8> {
    let mut out = vec![first];
    match len {
        0..=125 => out.push(mask_bit | len as u8),
        126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    out
}

/// A complete masked text message in one frame.
fn text(payload: &[u8]) -> Vec<u8> {
    masked(FIN | TEXT, payload)
}

/// A masked close frame with this code.
fn close(code: u16) -> Vec<u8> {
    masked(FIN | CLOSE, &code.to_be_bytes())
}

/// A frame as the server sent it (server frames are never masked).
#[derive(Debug)]
struct ServerFrame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

/// A WebSocket client that speaks raw bytes: it can send anything, and reads the server's
/// frames exactly as they come.
struct RawClient {
    stream: TcpStream,
    /// Bytes read but not yet taken as a frame.
    buf: Vec<u8>,
}

impl RawClient {
    /// Upgrades by hand and reads the 101 and the `welcome` message.
    async fn open(server: &Server) -> Self {
        Self::open_sending(server, &[]).await
    }

    /// Upgrades by hand, sending `early` in the same write as the request head, and reads
    /// the 101 and the `welcome` message.
    async fn open_sending(server: &Server, early: &[u8]) -> Self {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let mut request = common::upgrade_request("/ws").into_bytes();
        request.extend_from_slice(early);
        stream.write_all(&request).await.unwrap();
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0; 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            assert_ne!(n, 0, "connection closed during the handshake: {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        buf.drain(..head_end);
        let mut client = Self { stream, buf };
        let welcome = client.next_text().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        client
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads until `buf` holds at least `len` bytes; panics at EOF.
    async fn fill(&mut self, len: usize) {
        while self.buf.len() < len {
            let mut chunk = [0; 4096];
            let n = self.stream.read(&mut chunk).await.unwrap();
            assert_ne!(n, 0, "EOF inside a server frame");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next frame from the server, whatever it is.
    async fn next_frame(&mut self) -> ServerFrame {
        self.fill(2).await;
        let (first, second) = (self.buf[0], self.buf[1]);
        assert_eq!(second & 0x80, 0, "server frames are never masked");
        let (extended, len) = match second & 0x7F {
            126 => {
                self.fill(4).await;
                (2, u64::from(u16::from_be_bytes([self.buf[2], self.buf[3]])))
            }
            127 => {
                self.fill(10).await;
                (8, u64::from_be_bytes(self.buf[2..10].try_into().unwrap()))
            }
            len => (0, u64::from(len)),
        };
        let start = 2 + extended;
        let end = start + usize::try_from(len).unwrap();
        self.fill(end).await;
        let payload = self.buf[start..end].to_vec();
        self.buf.drain(..end);
        ServerFrame { fin: first & FIN != 0, opcode: first & 0x0F, payload }
    }

    /// The next text message as JSON, skipping the server's pings.
    async fn next_text(&mut self) -> Value {
        loop {
            let frame = self.next_frame().await;
            match frame.opcode {
                PING => {}
                TEXT => {
                    assert!(frame.fin, "server messages are never fragmented");
                    return serde_json::from_slice(&frame.payload).expect("server sends JSON");
                }
                other => panic!("expected a text frame, got opcode {other:#x}: {frame:?}"),
            }
        }
    }

    /// Reads up to the server's close frame (skipping texts and pings) and returns its code.
    async fn close_code(&mut self) -> u16 {
        loop {
            let frame = self.next_frame().await;
            match frame.opcode {
                TEXT | PING => {}
                CLOSE => {
                    let code = frame.payload.get(..2).expect("the server's close frame carries a code");
                    return u16::from_be_bytes([code[0], code[1]]);
                }
                other => panic!("expected a close frame, got opcode {other:#x}: {frame:?}"),
            }
        }
    }

    /// Asserts that the server ends the TCP connection (EOF, not a reset) with nothing after
    /// its close frame, without the client closing its end first.
    async fn assert_server_hangs_up(mut self) {
        assert!(self.buf.is_empty(), "bytes after the close frame: {:?}", self.buf);
        let mut chunk = [0; 1024];
        let read = tokio::time::timeout(EOF_WITHIN, self.stream.read(&mut chunk))
            .await
            .expect("the server ends the TCP connection after its close frame");
        match read {
            Ok(0) => {}
            Ok(n) => panic!("bytes after the close frame: {:?}", &chunk[..n]),
            Err(error) => panic!("expected EOF, got {error}"),
        }
    }
}

/// Opens a raw client, sends `bytes`, and asserts the close code and the hang-up.
async fn assert_closes_with(server: &Server, bytes: &[u8], code: u16) {
    let mut client = RawClient::open(server).await;
    client.send(bytes).await;
    assert_eq!(client.close_code().await, code, "after sending {bytes:02x?}");
    client.assert_server_hangs_up().await;
}

#[tokio::test]
async fn unmasked_client_text_frame_closes_with_1002() {
    within(async {
        let server = start().await;
        assert_closes_with(&server, &unmasked(FIN | TEXT, br#"{"op":"ping"}"#), 1002).await;
    })
    .await;
}

#[tokio::test]
async fn reserved_bits_close_with_1002() {
    within(async {
        let server = start().await;
        for rsv in [0x40, 0x20, 0x10] {
            assert_closes_with(&server, &masked(FIN | rsv | TEXT, br#"{"op":"ping"}"#), 1002).await;
        }
    })
    .await;
}

#[tokio::test]
async fn reserved_opcodes_close_with_1002() {
    within(async {
        let server = start().await;
        // One reserved data opcode and one reserved control opcode.
        for opcode in [0x3, 0xB] {
            assert_closes_with(&server, &masked(FIN | opcode, b""), 1002).await;
        }
    })
    .await;
}

#[tokio::test]
async fn ping_with_a_126_byte_payload_closes_with_1002() {
    within(async {
        let server = start().await;
        assert_closes_with(&server, &masked(FIN | PING, &[b'p'; 126]), 1002).await;
    })
    .await;
}

#[tokio::test]
async fn fragmented_ping_closes_with_1002() {
    within(async {
        let server = start().await;
        assert_closes_with(&server, &masked(PING, b"abc"), 1002).await;
    })
    .await;
}

#[tokio::test]
async fn continuation_frame_without_a_started_message_closes_with_1002() {
    within(async {
        let server = start().await;
        assert_closes_with(&server, &masked(FIN | CONTINUATION, br#"{"op":"ping"}"#), 1002).await;
    })
    .await;
}

#[tokio::test]
async fn text_frame_with_invalid_utf8_closes_with_1007() {
    within(async {
        let server = start().await;
        assert_closes_with(&server, &text(b"{\"op\":\"\xC0\xAF\"}"), 1007).await;
    })
    .await;
}

#[tokio::test]
async fn invalid_utf8_in_the_first_fragment_closes_with_1007_before_the_message_is_finished() {
    within(async {
        let server = start().await;
        // The final fragment is never sent: the close must not wait for it.
        assert_closes_with(&server, &masked(TEXT, b"{\"op\":\"\xFF"), 1007).await;
    })
    .await;
}

#[tokio::test]
async fn header_announcing_a_1_gib_payload_closes_with_1009_at_once() {
    within(async {
        let server = start().await;
        let mut gib = header(FIN | TEXT, 0x80, 1 << 30);
        gib.extend_from_slice(&KEY);
        // Not one payload byte follows.
        assert_closes_with(&server, &gib, 1009).await;
    })
    .await;
}

#[tokio::test]
async fn close_with_a_1_byte_payload_is_answered_with_1002() {
    within(async {
        let server = start().await;
        assert_closes_with(&server, &masked(FIN | CLOSE, &[0x03]), 1002).await;
    })
    .await;
}

#[tokio::test]
async fn close_with_a_code_no_peer_may_send_is_answered_with_1002() {
    within(async {
        let server = start().await;
        // 1005 means "no code" and must never be on the wire; 999 is below the range.
        for code in [1005, 999] {
            assert_closes_with(&server, &close(code), 1002).await;
        }
    })
    .await;
}

#[tokio::test]
async fn close_with_1000_is_echoed_with_1000() {
    within(async {
        let server = start().await;
        assert_closes_with(&server, &close(1000), 1000).await;
    })
    .await;
}

#[tokio::test]
async fn frames_sent_with_the_upgrade_request_are_answered_after_the_welcome() {
    within(async {
        let server = start().await;
        // A client may pipeline its first frames behind the request head; hyper reads them
        // with the head, and they must still reach the session, in order.
        let mut early = masked(FIN | PING, b"early");
        early.extend(text(br#"{"op":"ping","id":7}"#));
        let mut client = RawClient::open_sending(&server, &early).await;
        let pong = client.next_frame().await;
        assert_eq!((pong.opcode, pong.payload.as_slice()), (PONG, &b"early"[..]));
        let reply = client.next_text().await;
        assert_eq!((reply["type"].as_str(), reply["id"].as_u64()), (Some("pong"), Some(7)), "{reply}");
    })
    .await;
}

#[tokio::test]
async fn ping_payload_comes_back_in_the_pong() {
    within(async {
        let server = start().await;
        let mut client = RawClient::open(&server).await;
        client.send(&masked(FIN | PING, b"abc")).await;
        let pong = client.next_frame().await;
        assert_eq!((pong.fin, pong.opcode, pong.payload.as_slice()), (true, PONG, &b"abc"[..]));
    })
    .await;
}

#[tokio::test]
async fn ping_between_two_fragments_of_an_op_is_answered_first_then_the_op() {
    within(async {
        let server = start().await;
        let mut client = RawClient::open(&server).await;
        // One write, so the server sees the whole sequence at once and still keeps the order.
        let bytes = [
            masked(TEXT, br#"{"op":"pi"#),
            masked(FIN | PING, b"between"),
            masked(FIN | CONTINUATION, br#"ng","id":1}"#),
        ]
        .concat();
        client.send(&bytes).await;
        let pong = client.next_frame().await;
        assert_eq!((pong.opcode, pong.payload.as_slice()), (PONG, &b"between"[..]));
        let reply = client.next_text().await;
        assert_eq!((&reply["type"], &reply["id"]), (&json!("pong"), &json!(1)), "{reply}");
    })
    .await;
}

/// A tokio-tungstenite client subscribed to `symbol`, past its `subscribed` reply.
async fn healthy_subscriber(server: &Server, symbol: &str) -> Ws {
    let (mut ws, _) = connect(server, &format!("?symbols={symbol}")).await;
    let subscribed = next_json(&mut ws).await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    ws
}

/// Publishes one tick and asserts that `ws` receives it, with the seq it was given.
async fn assert_receives_next_tick(server: &Server, ws: &mut Ws, symbol: &str) {
    let seq = server.publish(symbol, 1.5);
    assert_tick(&next_non_heartbeat(ws).await, symbol, seq, false);
}

/// Waits until `/health` counts `live` connections; a condition, not a delay.
async fn wait_for_connections(server: &Server, live: u64) {
    loop {
        if common::http_get(server, "/health").await.json()["connections"] == live {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn connection_reset_mid_frame_does_not_disturb_another_client() {
    within(async {
        let server = start().await;
        let mut healthy = healthy_subscriber(&server, "NASDAQ:AAPL").await;
        assert_receives_next_tick(&server, &mut healthy, "NASDAQ:AAPL").await;

        let mut broken = RawClient::open(&server).await;
        // A whole ping and the first half of a text frame in one small write, which loopback
        // delivers as one read: once the pong is back, the server holds half a frame.
        let half = text(br#"{"op":"subscribe","symbols":["NASDAQ:AAPL"]}"#);
        broken.send(&[masked(FIN | PING, b"x"), half[..half.len() / 2].to_vec()].concat()).await;
        assert_eq!(broken.next_frame().await.opcode, PONG);
        // SO_LINGER 0: closing sends a TCP reset, not a FIN. Deprecated because a non-zero
        // linger blocks the thread on drop; a zero one never waits.
        #[allow(deprecated)]
        broken.stream.set_linger(Some(Duration::ZERO)).unwrap();
        drop(broken);

        wait_for_connections(&server, 1).await;
        for _ in 0..3 {
            assert_receives_next_tick(&server, &mut healthy, "NASDAQ:AAPL").await;
        }
        send(&mut healthy, json!({"op":"ping","id":"still-here"})).await;
        assert_eq!(next_non_heartbeat(&mut healthy).await["id"], "still-here");
    })
    .await;
}

#[tokio::test]
async fn every_invalid_frame_closes_only_its_own_connection() {
    within(async {
        let server = start().await;
        // Opened before any bad client, and checked after each one.
        let mut healthy = healthy_subscriber(&server, "FX:EUR/USD").await;
        let mut gib = header(FIN | TEXT, 0x80, 1 << 30);
        gib.extend_from_slice(&KEY);
        let cases: [(&str, Vec<u8>, u16); 12] = [
            ("unmasked", unmasked(FIN | TEXT, b"{}"), 1002),
            ("rsv1", masked(FIN | 0x40 | TEXT, b"{}"), 1002),
            ("reserved opcode", masked(FIN | 0x3, b""), 1002),
            ("ping of 126 bytes", masked(FIN | PING, &[0; 126]), 1002),
            ("fragmented ping", masked(PING, b""), 1002),
            ("lone continuation", masked(FIN | CONTINUATION, b"{}"), 1002),
            ("invalid utf-8", text(b"\xFF"), 1007),
            ("invalid utf-8 in a first fragment", masked(TEXT, b"\xFF"), 1007),
            ("1 GiB header", gib, 1009),
            ("1-byte close", masked(FIN | CLOSE, &[0x03]), 1002),
            ("close 1005", close(1005), 1002),
            ("close 1000", close(1000), 1000),
        ];
        for (name, bytes, code) in cases {
            let mut client = RawClient::open(&server).await;
            client.send(&bytes).await;
            assert_eq!(client.close_code().await, code, "{name}");
            client.assert_server_hangs_up().await;
            assert_receives_next_tick(&server, &mut healthy, "FX:EUR/USD").await;
        }
        send(&mut healthy, json!({"op":"ping","id":7})).await;
        assert_eq!(next_non_heartbeat(&mut healthy).await["id"], 7);
    })
    .await;
}
