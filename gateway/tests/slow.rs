//! Slow consumers never slow anyone else: a client that stops reading is conflated (or closed
//! with 4000) while a fast client on the same server gets every tick.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use common::{next_json, send, start_with, within, Server};
use feed_engine::{EngineConfig, SlowConsumer};
use futures_util::StreamExt as _;
use gateway::GatewayConfig;
use serde_json::{json, Value};
use tokio::{net::TcpSocket, sync::watch};
use tokio_tungstenite::{tungstenite::Message, WebSocketStream};

const SYMBOLS: [&str; 4] = ["S:A", "S:B", "S:C", "S:D"];
const TICKS: u64 = 50_000;
/// The engine's broadcast ring: how far a subscriber may fall behind before its policy applies.
const BUS_CAPACITY: usize = 1024;
/// How far the publisher may run ahead of what the fast client has received.
const FAST_WINDOW: u64 = 256;

/// A subscribed client whose socket takes little: a tiny receive buffer, and it never reads
/// until the test says so.
async fn slow_client(server: &Server) -> WebSocketStream<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(server.ws_url(""), stream).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    send(&mut ws, json!({"op":"subscribe","symbols":["S:*"]})).await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    ws
}

/// Publishes [`TICKS`] ticks round-robin while a fast client reads them all; returns the
/// last seq of each symbol. Fails if the fast client misses or reorders anything.
async fn publish_with_fast_reader(server: &Server) -> HashMap<String, u64> {
    let (mut fast, _) = common::connect(server, "").await;
    send(&mut fast, json!({"op":"subscribe","symbols":["S:*"]})).await;
    assert_eq!(next_json(&mut fast).await["type"], "subscribed");

    let (progress_tx, mut progress) = watch::channel(0u64);
    let reader = tokio::spawn(async move {
        let mut last: HashMap<String, u64> = HashMap::new();
        for received in 1..=TICKS {
            let tick = next_json(&mut fast).await;
            assert_eq!(tick["type"], "tick", "{tick}");
            assert!(tick.get("conflated").is_none(), "the fast client is never conflated: {tick}");
            let seq = tick["seq"].as_u64().unwrap();
            let previous = last.insert(tick["symbol"].as_str().unwrap().to_owned(), seq).unwrap_or(0);
            assert_eq!(seq, previous + 1, "contiguous seqs for the fast client: {tick}");
            progress_tx.send_replace(received);
        }
        last
    });

    let mut last = HashMap::new();
    for published in 0..TICKS {
        // Flow control on the fast client only, so it is never far behind; the slow one is
        // not waited for at all.
        while published - *progress.borrow() >= FAST_WINDOW {
            progress.changed().await.expect("fast reader alive");
        }
        let symbol = SYMBOLS[(published % SYMBOLS.len() as u64) as usize];
        last.insert(symbol.to_owned(), server.publish(symbol, published as f64));
    }
    let fast_last = reader.await.expect("fast reader saw every tick in order");
    assert_eq!(fast_last, last);
    last
}

#[tokio::test]
async fn slow_client_is_conflated_without_delaying_a_fast_one() {
    within(async {
        let engine = EngineConfig { bus_capacity: BUS_CAPACITY, ..EngineConfig::default() };
        let server = start_with(engine, GatewayConfig::default()).await;
        let mut slow = slow_client(&server).await;
        let last = publish_with_fast_reader(&server).await;

        // Now read the slow client: seqs only go up, a jump is always flagged `conflated`,
        // and it ends on the newest tick of every symbol.
        let mut seen: HashMap<String, u64> = HashMap::new();
        let mut conflated = 0;
        while seen != last {
            let tick: Value = next_json(&mut slow).await;
            let symbol = tick["symbol"].as_str().unwrap().to_owned();
            let seq = tick["seq"].as_u64().unwrap();
            let previous = seen.insert(symbol, seq).unwrap_or(0);
            if tick.get("conflated").is_some() {
                assert!(seq > previous + 1, "conflated means a jump: {tick} after {previous}");
                conflated += 1;
            } else {
                assert_eq!(seq, previous + 1, "no silent gap: {tick}");
            }
        }
        assert!(conflated > 0, "the slow client fell behind and was conflated");
    })
    .await;
}

#[tokio::test]
async fn slow_client_is_closed_with_4000_under_the_disconnect_policy() {
    within(async {
        let engine = EngineConfig {
            bus_capacity: BUS_CAPACITY,
            slow_consumer: SlowConsumer::Disconnect,
            ..EngineConfig::default()
        };
        let server = start_with(engine, GatewayConfig::default()).await;
        let mut slow = slow_client(&server).await;
        publish_with_fast_reader(&server).await;

        let code = loop {
            match slow.next().await {
                Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
                Some(Ok(Message::Text(text))) => {
                    let tick: Value = serde_json::from_str(&text).unwrap();
                    assert!(tick.get("conflated").is_none(), "disconnect never conflates: {tick}");
                }
                Some(Ok(_)) => {}
                other => panic!("expected close 4000, got {other:?}"),
            }
        };
        assert_eq!(code, 4000);
    })
    .await;
}
