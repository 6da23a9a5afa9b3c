//! Write coalescing under load changes when ticks go out, never which: every tick still
//! arrives once and in order, and replies to the client's own ops do not wait for the window.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{connect, next_non_heartbeat, send, start_with, within, HttpStream, Server};
use feed_engine::EngineConfig;
use gateway::GatewayConfig;
use serde_json::json;

/// A budget of one write a second makes any traffic "load", so the window is always on.
async fn coalescing_server(max_coalesce: Duration) -> Server {
    coalescing_server_with(max_coalesce, false).await
}

/// The same, with held connections written through io_uring or not (`--io-uring`).
async fn coalescing_server_with(max_coalesce: Duration, io_uring: bool) -> Server {
    let config = GatewayConfig { write_budget_per_s: 1, max_coalesce, io_uring, ..GatewayConfig::default() };
    start_with(EngineConfig::default(), config).await
}

#[tokio::test]
async fn coalesced_ticks_all_arrive_once_and_in_order() {
    coalesced_ticks_arrive_once_and_in_order(false).await;
}

#[tokio::test]
async fn coalesced_ticks_written_through_io_uring_all_arrive_once_and_in_order() {
    coalesced_ticks_arrive_once_and_in_order(true).await;
}

async fn coalesced_ticks_arrive_once_and_in_order(io_uring: bool) {
    within(async {
        let server = coalescing_server_with(Duration::from_millis(50), io_uring).await;
        let (mut ws, _) = connect(&server, "?symbols=P:A,P:B").await;
        assert_eq!(next_non_heartbeat(&mut ws).await["type"], "subscribed");
        let publisher = {
            let engine = server.engine.clone();
            tokio::spawn(async move {
                for i in 0..400u32 {
                    let symbol = if i % 3 == 0 { "P:B" } else { "P:A" };
                    engine.publish(&common::quote(symbol, f64::from(i))).unwrap();
                    if i % 20 == 0 {
                        // Spread over several pacing periods so the window switches on.
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                }
            })
        };
        let (mut next_a, mut next_b, mut price) = (1, 1, 0.0);
        for _ in 0..400 {
            let tick = next_non_heartbeat(&mut ws).await;
            assert_eq!(tick["type"], "tick", "{tick}");
            assert_eq!(tick["price"].as_f64().unwrap(), price, "publish order");
            price += 1.0;
            let next = if tick["symbol"] == "P:A" { &mut next_a } else { &mut next_b };
            assert_eq!(tick["seq"].as_u64().unwrap(), *next, "{tick}");
            *next += 1;
        }
        publisher.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn replies_to_ops_do_not_wait_for_the_coalescing_window() {
    within(async {
        // A window far longer than any reply may take.
        let server = coalescing_server(Duration::from_secs(5)).await;
        let (mut ws, _) = connect(&server, "?symbols=P:A").await;
        assert_eq!(next_non_heartbeat(&mut ws).await["type"], "subscribed");
        for i in 0..50 {
            server.publish("P:A", f64::from(i));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Wait until the window is on (more than one write per second was delivered).
        tokio::time::sleep(Duration::from_millis(250)).await;
        server.publish("P:A", 99.0);
        let asked = Instant::now();
        send(&mut ws, json!({"op":"ping","id":7})).await;
        loop {
            let message = next_non_heartbeat(&mut ws).await;
            if message["type"] == "pong" {
                assert_eq!(message["id"], 7);
                break;
            }
        }
        assert!(asked.elapsed() < Duration::from_secs(4), "the pong waited for the window");
    })
    .await;
}

#[tokio::test]
async fn coalesced_sse_events_all_arrive_once_and_in_order() {
    within(async {
        let server = coalescing_server(Duration::from_millis(50)).await;
        let mut stream = HttpStream::get(&server, "/sse?symbols=P:*", "").await;
        let publisher = {
            let engine = server.engine.clone();
            tokio::spawn(async move {
                for i in 0..300u32 {
                    engine.publish(&common::quote(if i % 2 == 0 { "P:A" } else { "P:B" }, f64::from(i))).unwrap();
                    if i % 20 == 0 {
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                }
            })
        };
        let mut last_id = String::new();
        for i in 0..300u32 {
            let event = stream.next_event().await;
            let tick = event.json();
            assert_eq!(tick["price"].as_f64().unwrap(), f64::from(i), "publish order, nothing lost");
            assert_eq!(tick["seq"].as_u64().unwrap(), u64::from(i / 2 + 1), "{tick}");
            let id = event.id.expect("every event has an id");
            assert_ne!(id, last_id);
            last_id = id;
        }
        publisher.await.unwrap();
    })
    .await;
}
