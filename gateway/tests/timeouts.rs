//! Connections that hold a socket without using it: a client that never sends its request
//! head (or sends half of it) is dropped after the handshake timeout, an idle keep-alive
//! connection after the idle timeout; connections in use are cut by neither.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{assert_tick, start_with, upgrade_request, within, HttpStream, Server};
use feed_engine::{Engine, EngineConfig};
use gateway::GatewayConfig;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::TcpStream,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(300);
/// Well apart from the handshake timeout, so a test can tell which of the two closed a connection.
const IDLE_TIMEOUT: Duration = Duration::from_millis(1500);
/// Timers may fire a little early by the clock the test reads; never by this much.
const SLACK: Duration = Duration::from_millis(50);

async fn start_short() -> Server {
    let config =
        GatewayConfig { handshake_timeout: HANDSHAKE_TIMEOUT, idle_timeout: IDLE_TIMEOUT, ..GatewayConfig::default() };
    start_with(EngineConfig::default(), config).await
}

/// Reads until the server closes the connection; returns what came and how long it took.
async fn until_closed(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    // A reset is a close too.
    let _ = stream.read_to_end(&mut received).await;
    (received, started.elapsed())
}

/// One `GET /health` on a kept-alive connection; returns the status.
async fn get_health(reader: &mut BufReader<TcpStream>) -> u16 {
    reader.get_mut().write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("send");
    let mut line = String::new();
    reader.read_line(&mut line).await.expect("status line");
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).await.expect("header");
        if line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("length");
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.expect("body");
    status
}

#[tokio::test]
async fn a_client_that_sends_nothing_is_dropped_after_the_handshake_timeout() {
    within(async {
        let server = start_short().await;
        let mut silent = TcpStream::connect(server.addr).await.expect("connect");
        let (received, waited) = until_closed(&mut silent).await;
        assert!(received.is_empty(), "{:?}", String::from_utf8_lossy(&received));
        assert!(waited >= HANDSHAKE_TIMEOUT - SLACK && waited < IDLE_TIMEOUT, "closed after {waited:?}");
    })
    .await;
}

#[tokio::test]
async fn a_client_that_sends_half_a_request_head_is_dropped_after_the_handshake_timeout() {
    within(async {
        let server = start_short().await;
        let head = upgrade_request("/ws");
        for partial in ["GET /health HTTP/1.1\r\nHost: loc", &head[..head.len() - 2]] {
            let mut slow = TcpStream::connect(server.addr).await.expect("connect");
            slow.write_all(partial.as_bytes()).await.expect("send");
            let (received, waited) = until_closed(&mut slow).await;
            assert!(!received.starts_with(b"HTTP/1.1 101"), "an unfinished upgrade was accepted");
            assert!(waited >= HANDSHAKE_TIMEOUT - SLACK && waited < IDLE_TIMEOUT, "closed after {waited:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    within(async {
        let server = start_short().await;
        let mut reader = BufReader::new(TcpStream::connect(server.addr).await.expect("connect"));
        assert_eq!(get_health(&mut reader).await, 200);
        let (_, waited) = until_closed(&mut reader).await;
        assert!(waited >= IDLE_TIMEOUT - SLACK, "closed after {waited:?}");
    })
    .await;
}

#[tokio::test]
async fn a_keep_alive_connection_in_use_outlives_the_handshake_timeout() {
    within(async {
        let server = start_short().await;
        let mut reader = BufReader::new(TcpStream::connect(server.addr).await.expect("connect"));
        let started = Instant::now();
        // Requests spaced under the idle timeout, for longer than the handshake timeout.
        while started.elapsed() < HANDSHAKE_TIMEOUT * 2 {
            assert_eq!(get_health(&mut reader).await, 200);
            tokio::time::sleep(HANDSHAKE_TIMEOUT / 3).await;
        }
        assert_eq!(get_health(&mut reader).await, 200);
    })
    .await;
}

#[tokio::test]
async fn a_quiet_sse_stream_is_not_cut_by_either_timeout() {
    within(async {
        let server = start_short().await;
        let mut stream = HttpStream::get(&server, "/sse?symbols=*", "").await;
        assert_eq!(stream.status, 200);
        // No tick and no keepalive (the heartbeat is 15 s) for longer than both timeouts.
        tokio::time::sleep(IDLE_TIMEOUT + HANDSHAKE_TIMEOUT).await;
        server.publish("X", 1.0);
        assert_tick(&stream.next_event().await.json(), "X", 1, false);
    })
    .await;
}

#[tokio::test]
async fn a_websocket_outlives_the_idle_timeout() {
    within(async {
        let server = start_short().await;
        let (mut ws, _) = common::connect(&server, "?symbols=X").await;
        assert_eq!(common::next_json(&mut ws).await["type"], "subscribed");
        tokio::time::sleep(IDLE_TIMEOUT + HANDSHAKE_TIMEOUT).await;
        server.publish("X", 1.0);
        assert_tick(&common::next_non_heartbeat(&mut ws).await, "X", 1, false);
    })
    .await;
}

#[tokio::test]
async fn serve_refuses_zero_timeouts() {
    within(async {
        for config in [
            GatewayConfig { handshake_timeout: Duration::ZERO, ..GatewayConfig::default() },
            GatewayConfig { idle_timeout: Duration::ZERO, ..GatewayConfig::default() },
        ] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let result =
                gateway::serve(listener, Engine::new(EngineConfig::default()), config, CancellationToken::new()).await;
            assert!(matches!(result, Err(gateway::Error::Config(_))), "{result:?}");
        }
    })
    .await;
}
