//! The plain JSON endpoints: `/symbols`, `/snapshot`, `/health`, errors for unknown paths
//! and methods, and the conformance echo that only a test flag serves.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_tick, connect, http_get, start, within, HttpStream, EPOCH};
use feed_engine::EngineConfig;
use futures_util::{SinkExt as _, StreamExt as _};
use gateway::GatewayConfig;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn symbols_are_listed_in_byte_order() {
    within(async {
        let server = start().await;
        for symbol in ["NYSE:IBM", "FX:EUR/USD", "NASDAQ:AAPL", "AAPL"] {
            server.publish(symbol, 1.0);
        }
        let response = http_get(&server, "/symbols").await;
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(response.json(), json!(["AAPL", "FX:EUR/USD", "NASDAQ:AAPL", "NYSE:IBM"]));
    })
    .await;
}

#[tokio::test]
async fn snapshot_returns_last_ticks_flagged_snapshot() {
    within(async {
        let server = start().await;
        server.publish("NASDAQ:AAPL", 1.0);
        server.publish("NASDAQ:AAPL", 2.0);
        server.publish("NASDAQ:MSFT", 3.0);
        server.publish("FX:EUR/USD", 1.1);
        let response = http_get(&server, "/snapshot?symbols=NASDAQ:*,NYSE:NONE").await;
        assert_eq!(response.status, 200);
        let ticks = response.json();
        let ticks = ticks.as_array().unwrap();
        assert_eq!(ticks.len(), 2);
        assert_tick(&ticks[0], "NASDAQ:AAPL", 2, true);
        assert_tick(&ticks[1], "NASDAQ:MSFT", 1, true);

        let bad = http_get(&server, "/snapshot?symbols=a%20b").await;
        assert_eq!((bad.status, bad.json()["code"].clone()), (400, json!("bad_symbol")));
        let missing = http_get(&server, "/snapshot").await;
        assert_eq!((missing.status, missing.json()["code"].clone()), (400, json!("bad_request")));
    })
    .await;
}

#[tokio::test]
async fn health_reports_epoch_and_counters() {
    within(async {
        let server = start().await;
        server.publish("NASDAQ:AAPL", 1.0);
        server.publish("NASDAQ:MSFT", 1.0);
        let (_ws, _) = connect(&server, "").await;
        let response = http_get(&server, "/health").await;
        assert_eq!(response.status, 200);
        let health = response.json();
        assert_eq!(health["status"], "ok");
        assert_eq!(health["epoch"], EPOCH);
        assert_eq!(health["symbols"], 2);
        assert_eq!(health["ticks_published"], 2);
        assert_eq!(health["subscribers"], 1);
        assert_eq!(health["connections"], 1);
        assert!(health["uptime_s"].is_u64());
    })
    .await;
}

#[tokio::test]
async fn unknown_path_is_404_and_other_methods_are_405_with_json() {
    within(async {
        let server = start().await;
        let missing = http_get(&server, "/nope").await;
        assert_eq!(missing.status, 404);
        assert_eq!(missing.json()["code"], "not_found");

        let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let post =
            HttpStream::request_on(stream, "POST /symbols HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
                .await
                .into_response()
                .await;
        assert_eq!(post.status, 405);
        assert_eq!(post.header("allow"), Some("GET"));
        assert_eq!(post.json()["type"], "error");
    })
    .await;
}

#[tokio::test]
async fn the_conformance_echo_exists_only_when_turned_on() {
    within(async {
        // Off by default: the echo answers anyone, so a production server must not serve it.
        let server = start().await;
        let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let off = HttpStream::request_on(stream, &common::upgrade_request("/ws-echo")).await.into_response().await;
        assert_eq!(off.status, 404);

        let config = GatewayConfig { conformance_echo: true, ..GatewayConfig::default() };
        let server = common::start_with(EngineConfig::default(), config).await;
        let (mut echo, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws-echo", server.addr)).await.unwrap();
        echo.send(Message::text("hello")).await.unwrap();
        let back = echo.next().await.unwrap().unwrap();
        assert_eq!(back, Message::text("hello"));
    })
    .await;
}
