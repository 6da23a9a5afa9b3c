//! `serve` from start to stop: it refuses a configuration that cannot work, and cancelling
//! its token closes WebSockets with 1001, ends SSE streams cleanly, and makes it return.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{close_code, connect, next_json, send, start, within, HttpStream};
use feed_engine::{Engine, EngineConfig};
use futures_util::StreamExt as _;
use gateway::GatewayConfig;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn shutdown_closes_websockets_with_1001_ends_sse_and_returns() {
    within(async {
        let mut server = start().await;
        let (mut ws, _) = connect(&server, "").await;
        send(&mut ws, json!({"op":"subscribe","symbols":["*"]})).await;
        assert_eq!(next_json(&mut ws).await["type"], "subscribed");
        let mut sse = HttpStream::get(&server, "/sse?symbols=*", "").await;
        assert_eq!(sse.next_block().await.expect("opening").retry.as_deref(), Some("1000"));
        server.publish("X", 1.0);
        assert_eq!(next_json(&mut ws).await["seq"], 1);
        assert_eq!(sse.next_event().await.json()["seq"], 1);

        server.shutdown.cancel();
        assert_eq!(close_code(&mut ws).await, 1001);
        // Reading on sends tungstenite's close reply and sees the server close the socket.
        assert!(ws.next().await.is_none());
        // The chunked body ends with its terminating chunk: a clean end, not a reset.
        while let Some(block) = sse.next_block().await {
            assert!(block.event.is_none() || block.event.as_deref() == Some("tick"), "{block:?}");
        }
        let served = tokio::time::timeout(Duration::from_secs(5), &mut server.handle).await;
        served.expect("serve returns within the grace period").expect("serve task").expect("serve succeeds");

        // No longer accepting.
        assert!(tokio::net::TcpStream::connect(server.addr).await.is_err(), "listener closed");
    })
    .await;
}

#[tokio::test]
async fn serve_refuses_a_zero_heartbeat() {
    within(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = GatewayConfig { heartbeat: Duration::ZERO, ..GatewayConfig::default() };
        let result =
            gateway::serve(listener, Engine::new(EngineConfig::default()), config, CancellationToken::new()).await;
        assert!(matches!(result, Err(gateway::Error::Config(_))), "{result:?}");
    })
    .await;
}
