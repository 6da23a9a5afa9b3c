//! `/ws` as a client sees it: welcome, subscriptions, ops, errors, limits and resume.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{
    assert_tick, close_code, connect, next_json, next_non_heartbeat, send, start, start_with, within, HttpStream, EPOCH,
};
use feed_engine::EngineConfig;
use futures_util::{SinkExt as _, StreamExt as _};
use gateway::GatewayConfig;
use serde_json::json;
use tokio_tungstenite::tungstenite::{
    protocol::frame::{
        coding::{Data, OpCode},
        Frame,
    },
    Message,
};

#[tokio::test]
async fn welcome_comes_first_and_names_the_epoch() {
    within(async {
        let server = start().await;
        let (_ws, welcome) = connect(&server, "").await;
        assert_eq!(welcome["epoch"], EPOCH);
        assert_eq!(welcome["heartbeat_ms"], 15_000);
        assert_eq!(welcome["server"], "tickfeed");
        assert_eq!(welcome["version"], "0.1.0");
    })
    .await;
}

#[tokio::test]
async fn subscribe_replies_then_sends_snapshots_then_live_ticks() {
    within(async {
        let server = start().await;
        for price in [1.0, 2.0, 3.0] {
            server.publish("NASDAQ:AAPL", price);
        }
        server.publish("NASDAQ:MSFT", 10.0);
        let (mut ws, _) = connect(&server, "").await;
        send(&mut ws, json!({"op":"subscribe","symbols":["NASDAQ:AAPL","NASDAQ:MSFT"],"id":1})).await;
        assert_eq!(
            next_json(&mut ws).await,
            json!({"type":"subscribed","symbols":["NASDAQ:AAPL","NASDAQ:MSFT"],"id":1})
        );
        assert_tick(&next_json(&mut ws).await, "NASDAQ:AAPL", 3, true);
        assert_tick(&next_json(&mut ws).await, "NASDAQ:MSFT", 1, true);

        assert_eq!(server.publish("NASDAQ:AAPL", 4.0), 4);
        let live = next_json(&mut ws).await;
        assert_tick(&live, "NASDAQ:AAPL", 4, false);
        assert_eq!(live["price"], 4.0);
        assert!(live.get("conflated").is_none());
    })
    .await;
}

#[tokio::test]
async fn query_symbols_subscribe_on_connect() {
    within(async {
        let server = start().await;
        server.publish("FX:EUR/USD", 1.1);
        let (mut ws, _) = connect(&server, "?symbols=FX%3AEUR%2FUSD").await;
        assert_eq!(next_json(&mut ws).await, json!({"type":"subscribed","symbols":["FX:EUR/USD"]}));
        assert_tick(&next_json(&mut ws).await, "FX:EUR/USD", 1, true);
        server.publish("FX:EUR/USD", 1.2);
        assert_tick(&next_json(&mut ws).await, "FX:EUR/USD", 2, false);
    })
    .await;
}

#[tokio::test]
async fn bad_query_symbol_is_a_400_before_the_upgrade() {
    within(async {
        let server = start().await;
        let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let response = HttpStream::request_on(stream, &common::upgrade_request("/ws?symbols=NASDAQ:AAPL,bad%20one"))
            .await
            .into_response()
            .await;
        assert_eq!(response.status, 400);
        let body = response.json();
        assert_eq!(body["code"], "bad_symbol");
        assert!(body["message"].as_str().unwrap().contains("bad one"), "{body}");
    })
    .await;
}

#[tokio::test]
async fn patterns_cover_symbols_that_appear_after_subscribing() {
    within(async {
        let server = start().await;
        let (mut all, _) = connect(&server, "").await;
        let (mut nyse, _) = connect(&server, "").await;
        send(&mut all, json!({"op":"subscribe","symbols":["*"]})).await;
        send(&mut nyse, json!({"op":"subscribe","symbols":["NYSE:*"]})).await;
        assert_eq!(next_json(&mut all).await["type"], "subscribed");
        assert_eq!(next_json(&mut nyse).await["type"], "subscribed");

        // All three symbols are new: none existed when the patterns were subscribed.
        server.publish("NYSE:IBM", 1.0);
        server.publish("NASDAQ:AAPL", 2.0);
        server.publish("NYSE:IBM", 3.0);
        server.publish("COINBASE:BTC-USD", 4.0);

        assert_tick(&next_json(&mut all).await, "NYSE:IBM", 1, false);
        assert_tick(&next_json(&mut all).await, "NASDAQ:AAPL", 1, false);
        assert_tick(&next_json(&mut all).await, "NYSE:IBM", 2, false);
        assert_tick(&next_json(&mut all).await, "COINBASE:BTC-USD", 1, false);
        assert_tick(&next_json(&mut nyse).await, "NYSE:IBM", 1, false);
        assert_tick(&next_json(&mut nyse).await, "NYSE:IBM", 2, false);
    })
    .await;
}

#[tokio::test]
async fn unsubscribe_stops_ticks_of_that_symbol() {
    within(async {
        let server = start().await;
        let (mut ws, _) = connect(&server, "").await;
        send(&mut ws, json!({"op":"subscribe","symbols":["NASDAQ:AAPL","NASDAQ:MSFT"]})).await;
        assert_eq!(next_json(&mut ws).await["type"], "subscribed");
        send(&mut ws, json!({"op":"unsubscribe","symbols":["NASDAQ:AAPL"],"id":"u"})).await;
        assert_eq!(next_json(&mut ws).await, json!({"type":"unsubscribed","symbols":["NASDAQ:AAPL"],"id":"u"}));
        server.publish("NASDAQ:AAPL", 1.0);
        server.publish("NASDAQ:MSFT", 2.0);
        assert_tick(&next_json(&mut ws).await, "NASDAQ:MSFT", 1, false);
    })
    .await;
}

#[tokio::test]
async fn ping_echoes_number_and_string_ids() {
    within(async {
        let server = start().await;
        let (mut ws, _) = connect(&server, "").await;
        send(&mut ws, json!({"op":"ping","id":3})).await;
        let pong = next_json(&mut ws).await;
        assert_eq!((&pong["type"], &pong["id"]), (&json!("pong"), &json!(3)));
        assert!(pong["ts"].as_i64().unwrap() > 1_600_000_000_000_000, "ts in microseconds: {pong}");
        send(&mut ws, json!({"op":"ping","id":"abc"})).await;
        assert_eq!(next_json(&mut ws).await["id"], "abc");
        send(&mut ws, json!({"op":"ping"})).await;
        assert!(next_json(&mut ws).await.get("id").is_none());
    })
    .await;
}

#[tokio::test]
async fn every_bad_op_gets_its_error_and_the_connection_stays_open() {
    within(async {
        let server = start().await;
        let (mut ws, _) = connect(&server, "").await;
        let cases = [
            (Message::text("not json"), "bad_request", None),
            (Message::text(r#"{"op":"fly","id":1}"#), "bad_request", Some(json!(1))),
            (Message::text(r#"{"op":"subscribe","id":2}"#), "bad_request", Some(json!(2))),
            (
                Message::text(r#"{"op":"subscribe","symbols":["NASDAQ:AAPL","no good"],"id":"s"}"#),
                "bad_symbol",
                Some(json!("s")),
            ),
            (Message::binary(vec![1, 2, 3]), "bad_request", None),
            (Message::text(r#"{"op":"auth","token":"x","id":4}"#), "bad_request", Some(json!(4))),
        ];
        for (message, code, id) in cases {
            let shown = format!("{message:?}");
            ws.send(message).await.unwrap();
            let error = next_json(&mut ws).await;
            assert_eq!(error["type"], "error", "{shown}: {error}");
            assert_eq!(error["code"], code, "{shown}: {error}");
            assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{error}");
            assert_eq!(error.get("id").cloned(), id, "{shown}: {error}");
            if code == "bad_symbol" {
                assert!(error["message"].as_str().unwrap().contains("no good"), "names the symbol: {error}");
            }
        }
        send(&mut ws, json!({"op":"ping","id":9})).await;
        assert_eq!(next_json(&mut ws).await["type"], "pong");
    })
    .await;
}

#[tokio::test]
async fn too_many_subscriptions_is_a_limit_error() {
    within(async {
        let config = GatewayConfig { max_subscriptions: 2, ..GatewayConfig::default() };
        let server = start_with(EngineConfig::default(), config).await;
        let (mut ws, _) = connect(&server, "").await;
        send(&mut ws, json!({"op":"subscribe","symbols":["A","B"]})).await;
        assert_eq!(next_json(&mut ws).await["type"], "subscribed");
        // Re-subscribing what is held is not new; a third selector is.
        send(&mut ws, json!({"op":"subscribe","symbols":["A"]})).await;
        assert_eq!(next_json(&mut ws).await["type"], "subscribed");
        send(&mut ws, json!({"op":"subscribe","symbols":["C"],"id":7})).await;
        let error = next_json(&mut ws).await;
        assert_eq!((&error["code"], &error["id"]), (&json!("limit"), &json!(7)), "{error}");
        // The refused subscribe took nothing.
        server.publish("C", 1.0);
        server.publish("A", 1.0);
        assert_tick(&next_json(&mut ws).await, "A", 1, false);
    })
    .await;
}

#[tokio::test]
async fn too_many_ops_per_second_get_limit_errors() {
    within(async {
        let config = GatewayConfig { max_ops_per_sec: 5, ..GatewayConfig::default() };
        let server = start_with(EngineConfig::default(), config).await;
        let (mut ws, _) = connect(&server, "").await;
        for id in 0..8 {
            send(&mut ws, json!({"op":"ping","id":id})).await;
        }
        let mut pongs = 0;
        let mut limited = Vec::new();
        for _ in 0..8 {
            let reply = next_json(&mut ws).await;
            match reply["type"].as_str() {
                Some("pong") => pongs += 1,
                Some("error") => {
                    assert_eq!(reply["code"], "limit", "{reply}");
                    limited.push(reply["id"].as_u64().unwrap());
                }
                _ => panic!("unexpected {reply}"),
            }
        }
        assert_eq!(pongs, 5);
        assert_eq!(limited, [5, 6, 7]);
    })
    .await;
}

#[tokio::test]
async fn sustained_op_abuse_closes_with_1008() {
    within(async {
        let config = GatewayConfig { max_ops_per_sec: 2, ..GatewayConfig::default() };
        let server = start_with(EngineConfig::default(), config).await;
        let (ws, _) = connect(&server, "").await;
        let (mut sink, mut stream) = ws.split();
        // Paced bursts over the limit; the assertion does not depend on the pacing.
        let abuse = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                for _ in 0..4 {
                    if sink.send(Message::text(r#"{"op":"ping"}"#)).await.is_err() {
                        return;
                    }
                }
            }
        });
        let code = loop {
            match stream.next().await {
                Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
                Some(Ok(_)) => {}
                other => panic!("expected close 1008, got {other:?}"),
            }
        };
        abuse.abort();
        assert_eq!(code, 1008);
    })
    .await;
}

#[tokio::test]
async fn message_over_the_limit_closes_with_1009() {
    within(async {
        let config = GatewayConfig { max_message_bytes: 1024, ..GatewayConfig::default() };
        let server = start_with(EngineConfig::default(), config).await;
        let (mut ws, _) = connect(&server, "").await;
        // Exactly the limit is still fine.
        let padded = format!(r#"{{"op":"ping","pad":"{}"}}"#, "x".repeat(1024 - 22));
        assert_eq!(padded.len(), 1024);
        ws.send(Message::text(padded)).await.unwrap();
        assert_eq!(next_json(&mut ws).await["type"], "pong");
        ws.send(Message::text("x".repeat(2000))).await.unwrap();
        assert_eq!(close_code(&mut ws).await, 1009);
    })
    .await;
}

#[tokio::test]
async fn fragmented_ops_are_reassembled_and_bounded_as_a_whole() {
    within(async {
        let config = GatewayConfig { max_message_bytes: 1024, ..GatewayConfig::default() };
        let server = start_with(EngineConfig::default(), config).await;
        let (mut ws, _) = connect(&server, "").await;
        let text = |data: &str, fin| Message::Frame(Frame::message(data.to_owned(), OpCode::Data(Data::Text), fin));
        let more = |data: &str, fin| Message::Frame(Frame::message(data.to_owned(), OpCode::Data(Data::Continue), fin));
        ws.send(text(r#"{"op":"pi"#, false)).await.unwrap();
        ws.send(more(r#"ng","id":"#, false)).await.unwrap();
        ws.send(more("5}", true)).await.unwrap();
        let pong = next_json(&mut ws).await;
        assert_eq!((&pong["type"], &pong["id"]), (&json!("pong"), &json!(5)));

        // Each fragment is small; together they pass the limit.
        let chunk = "y".repeat(600);
        ws.send(text(&chunk, false)).await.unwrap();
        ws.send(more(&chunk, true)).await.unwrap();
        assert_eq!(close_code(&mut ws).await, 1009);
    })
    .await;
}

#[tokio::test]
async fn client_close_is_answered_with_the_same_code() {
    within(async {
        let server = start().await;
        let (mut ws, _) = connect(&server, "").await;
        ws.close(None).await.unwrap();
        match ws.next().await {
            Some(Ok(Message::Close(_))) | None => {}
            other => panic!("expected the close reply, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn plain_get_on_ws_gets_426_with_upgrade_header() {
    within(async {
        let server = start().await;
        let response = common::http_get(&server, "/ws").await;
        assert_eq!(response.status, 426);
        assert_eq!(response.header("upgrade"), Some("websocket"));
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(response.json()["type"], "error");
    })
    .await;
}

#[tokio::test]
async fn connections_over_the_server_limit_get_503_before_upgrade() {
    within(async {
        let config = GatewayConfig { max_connections: 2, ..GatewayConfig::default() };
        let server = start_with(EngineConfig::default(), config).await;
        let (_a, _) = connect(&server, "").await;
        let (_b, _) = connect(&server, "").await;
        let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let response = HttpStream::request_on(stream, &common::upgrade_request("/ws")).await.into_response().await;
        assert_eq!(response.status, 503);
        assert_eq!(response.json()["code"], "limit");
        // SSE counts against the same limit.
        let sse = common::http_get(&server, "/sse?symbols=*").await;
        assert_eq!(sse.status, 503);
    })
    .await;
}

#[tokio::test]
async fn connections_over_the_per_ip_limit_get_503_but_other_addresses_do_not() {
    within(async {
        let config = GatewayConfig { max_connections_per_ip: 1, ..GatewayConfig::default() };
        let server = start_with(EngineConfig::default(), config).await;
        let (_first, _) = connect(&server, "").await;
        let again = common::tcp_from("127.0.0.1", &server).await;
        let response = HttpStream::request_on(again, &common::upgrade_request("/ws")).await.into_response().await;
        assert_eq!(response.status, 503);
        assert_eq!(response.json()["code"], "limit");

        let other = common::tcp_from("127.0.0.2", &server).await;
        let (mut ws, _) =
            tokio_tungstenite::client_async(server.ws_url(""), other).await.expect("other address is let in");
        assert_eq!(next_json(&mut ws).await["type"], "welcome");
    })
    .await;
}

#[tokio::test]
async fn resume_with_since_and_epoch_continues_contiguously_without_snapshot() {
    within(async {
        let server = start().await;
        let (mut ws, welcome) = connect(&server, "").await;
        send(&mut ws, json!({"op":"subscribe","symbols":["NASDAQ:AAPL"]})).await;
        assert_eq!(next_json(&mut ws).await["type"], "subscribed");
        for i in 1..=5u32 {
            server.publish("NASDAQ:AAPL", f64::from(i));
            assert_tick(&next_json(&mut ws).await, "NASDAQ:AAPL", u64::from(i), false);
        }
        drop(ws);
        for i in 6..=10 {
            server.publish("NASDAQ:AAPL", f64::from(i));
        }
        let (mut ws, _) = connect(&server, "").await;
        send(
            &mut ws,
            json!({"op":"subscribe","symbols":["NASDAQ:AAPL"],"since":{"NASDAQ:AAPL":5},"epoch":welcome["epoch"],"id":1}),
        )
        .await;
        assert_eq!(next_json(&mut ws).await["type"], "subscribed");
        for seq in 6..=10 {
            assert_tick(&next_json(&mut ws).await, "NASDAQ:AAPL", seq, false);
        }
        server.publish("NASDAQ:AAPL", 11.0);
        assert_tick(&next_json(&mut ws).await, "NASDAQ:AAPL", 11, false);
    })
    .await;
}

#[tokio::test]
async fn resume_from_another_epoch_gets_reset_then_snapshot() {
    within(async {
        let server = start().await;
        for i in 1..=3 {
            server.publish("NASDAQ:AAPL", f64::from(i));
        }
        let (mut ws, _) = connect(&server, "").await;
        send(
            &mut ws,
            json!({"op":"subscribe","symbols":["NASDAQ:AAPL"],"since":{"NASDAQ:AAPL":2},"epoch":"old-epoch"}),
        )
        .await;
        assert_eq!(next_json(&mut ws).await["type"], "subscribed");
        assert_eq!(next_json(&mut ws).await, json!({"type":"reset","symbol":"NASDAQ:AAPL","epoch":EPOCH}));
        assert_tick(&next_json(&mut ws).await, "NASDAQ:AAPL", 3, true);
    })
    .await;
}

#[tokio::test]
async fn resume_beyond_history_gets_reset_then_snapshot() {
    within(async {
        let server = start_with(EngineConfig { history: 4, ..EngineConfig::default() }, GatewayConfig::default()).await;
        for i in 1..=20 {
            server.publish("NASDAQ:AAPL", f64::from(i));
        }
        let (mut ws, _) = connect(&server, "").await;
        send(&mut ws, json!({"op":"subscribe","symbols":["NASDAQ:AAPL"],"since":{"NASDAQ:AAPL":2},"epoch":EPOCH}))
            .await;
        assert_eq!(next_json(&mut ws).await["type"], "subscribed");
        assert_eq!(next_json(&mut ws).await, json!({"type":"reset","symbol":"NASDAQ:AAPL","epoch":EPOCH}));
        assert_tick(&next_json(&mut ws).await, "NASDAQ:AAPL", 20, true);
    })
    .await;
}

#[tokio::test]
async fn quiet_connection_gets_pings_and_heartbeat_messages() {
    within(async {
        let config = GatewayConfig { heartbeat: Duration::from_millis(200), ..GatewayConfig::default() };
        let server = start_with(EngineConfig::default(), config).await;
        let (mut ws, welcome) = connect(&server, "").await;
        assert_eq!(welcome["heartbeat_ms"], 200);
        let (mut pinged, mut heartbeat) = (false, false);
        while !(pinged && heartbeat) {
            match ws.next().await {
                Some(Ok(Message::Ping(_))) => pinged = true,
                Some(Ok(Message::Text(text))) => {
                    let message: serde_json::Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(message["type"], "heartbeat", "{message}");
                    assert!(message["ts"].as_i64().is_some());
                    heartbeat = true;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // The client answers pings (tungstenite does on read), so it is not dropped.
        send(&mut ws, json!({"op":"ping","id":1})).await;
        assert_eq!(next_non_heartbeat(&mut ws).await["type"], "pong");
    })
    .await;
}

#[tokio::test]
async fn silent_peer_is_dropped_after_two_heartbeat_intervals() {
    within(async {
        let config = GatewayConfig { heartbeat: Duration::from_millis(100), ..GatewayConfig::default() };
        let server = start_with(EngineConfig::default(), config).await;
        let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        // A raw client that completes the handshake, reads, and never answers a ping.
        let mut raw = HttpStream::request_on(stream, &common::upgrade_request("/ws")).await;
        assert_eq!(raw.status, 101);
        let started = std::time::Instant::now();
        let sink = raw.read_to_end().await;
        assert!(started.elapsed() >= Duration::from_millis(200), "dropped only after two intervals");
        assert!(!sink.is_empty(), "welcome, pings and heartbeats were sent before");
    })
    .await;
}

/// A crowd on one symbol spans several of the engine's wake lists' chunks (64 connections
/// each), and ticks of a second symbol are interleaved, which each connection passes over by
/// the engine's symbol index. Before and after a third of the first crowd unsubscribes (from
/// every chunk), each tick reaches exactly the connections on its symbol, once and in order,
/// and promptly: a connection left out of the wake list would only hear of it at its next
/// heartbeat, 15 s away.
#[tokio::test]
async fn crowds_on_two_symbols_get_their_own_ticks_as_members_leave() {
    within(async {
        const PROMPT: Duration = Duration::from_secs(5);
        async fn subscribed(server: &common::Server, symbol: &str) -> common::Ws {
            let (mut ws, _) = connect(server, &format!("?symbols={symbol}")).await;
            assert_eq!(next_json(&mut ws).await["type"], "subscribed");
            ws
        }
        async fn expect_ticks(crowd: &mut [common::Ws], symbol: &str, seqs: &[u64]) {
            for ws in crowd {
                for &seq in seqs {
                    let tick = tokio::time::timeout(PROMPT, next_non_heartbeat(ws)).await.expect("a prompt tick");
                    assert_tick(&tick, symbol, seq, false);
                }
            }
        }
        let server = start().await;
        let mut crowd_a = Vec::new();
        for _ in 0..150 {
            crowd_a.push(subscribed(&server, "A").await);
        }
        let mut crowd_b = Vec::new();
        for _ in 0..10 {
            crowd_b.push(subscribed(&server, "B").await);
        }
        for price in [1.0, 2.0] {
            server.publish("A", price);
            server.publish("B", price);
        }
        expect_ticks(&mut crowd_a, "A", &[1, 2]).await;
        expect_ticks(&mut crowd_b, "B", &[1, 2]).await;

        let mut left = Vec::new();
        let mut stayed = Vec::new();
        for (i, mut ws) in crowd_a.into_iter().enumerate() {
            if i % 3 == 0 {
                send(&mut ws, json!({"op":"unsubscribe","symbols":["A"]})).await;
                assert_eq!(next_json(&mut ws).await["type"], "unsubscribed");
                left.push(ws);
            } else {
                stayed.push(ws);
            }
        }
        for price in [3.0, 4.0] {
            server.publish("B", price);
            server.publish("A", price);
        }
        expect_ticks(&mut stayed, "A", &[3, 4]).await;
        expect_ticks(&mut crowd_b, "B", &[3, 4]).await;
        // Those that left get nothing more of A: the answer to a ping is the next message.
        for ws in &mut left {
            send(ws, json!({"op":"ping","id":1})).await;
            assert_eq!(next_non_heartbeat(ws).await["type"], "pong");
        }
    })
    .await;
}
