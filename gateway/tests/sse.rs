//! `/sse` as a client sees it: headers, snapshot then live, ids and resume, resets, errors,
//! keepalive, and `curl -N`.
#![allow(clippy::unwrap_used)]

mod common;

use std::{process::Stdio, time::Duration};

use common::{assert_tick, start, start_with, within, HttpStream, Server, EPOCH};
use feed_engine::EngineConfig;
use gateway::GatewayConfig;
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// Opens a stream and reads up to the opening `retry:` block, which the server writes after
/// subscribing: anything published from then on is live for this stream.
async fn open(server: &Server, path: &str, extra_headers: &str) -> HttpStream {
    let mut stream = HttpStream::get(server, path, extra_headers).await;
    assert_eq!(stream.status, 200, "{path}");
    let opening = stream.next_block().await.expect("opening block");
    assert_eq!(opening.retry.as_deref(), Some("1000"));
    stream
}

#[tokio::test]
async fn sse_sends_headers_then_snapshot_then_live_ticks_each_with_an_id() {
    within(async {
        let server = start().await;
        server.publish("NASDAQ:AAPL", 1.0);
        server.publish("NASDAQ:AAPL", 2.0);
        let mut stream = open(&server, "/sse?symbols=NASDAQ:AAPL", "").await;
        assert_eq!(stream.header("content-type"), Some("text/event-stream"));
        assert_eq!(stream.header("cache-control"), Some("no-cache"));
        assert_eq!(stream.header("x-accel-buffering"), Some("no"));

        let snapshot = stream.next_event().await;
        assert_eq!(snapshot.event.as_deref(), Some("tick"));
        assert_eq!(snapshot.id.as_deref(), Some(server.engine.cursor(2).as_str()));
        assert_tick(&snapshot.json(), "NASDAQ:AAPL", 2, true);

        let published = server.engine.publish(&common::quote("NASDAQ:AAPL", 3.0)).unwrap();
        let live = stream.next_event().await;
        assert_eq!(live.id, Some(format!("{EPOCH}-{}", published.position)));
        assert_tick(&live.json(), "NASDAQ:AAPL", 3, false);
    })
    .await;
}

/// Publishes round-robin over three symbols, returning (symbol, seq) in publish order.
fn publish_round_robin(server: &Server, count: usize) -> Vec<(String, u64)> {
    let symbols = ["A:ONE", "B:TWO", "C:THREE"];
    (0..count)
        .map(|i| {
            let symbol = symbols[i % symbols.len()];
            (symbol.to_owned(), server.publish(symbol, i as f64))
        })
        .collect()
}

fn tick_of(block: &common::SseBlock) -> (String, u64) {
    let tick = block.json();
    assert!(tick.get("snapshot").is_none(), "resumed events are not snapshots: {tick}");
    (tick["symbol"].as_str().unwrap().to_owned(), tick["seq"].as_u64().unwrap())
}

async fn resume_is_contiguous(resume_with: impl Fn(&str) -> (String, String)) {
    let server = start().await;
    let mut stream = open(&server, "/sse?symbols=*", "").await;
    let mut expected = publish_round_robin(&server, 12);
    let mut seen = Vec::new();
    let mut last_id = String::new();
    for _ in 0..7 {
        let event = stream.next_event().await;
        seen.push(tick_of(&event));
        last_id = event.id.unwrap();
    }
    drop(stream);
    expected.extend(publish_round_robin(&server, 9));

    let (path, headers) = resume_with(&last_id);
    let mut stream = open(&server, &path, &headers).await;
    while seen.len() < expected.len() {
        seen.push(tick_of(&stream.next_event().await));
    }
    assert_eq!(seen, expected, "nothing lost, nothing repeated, publish order kept");
    // And live after the replay.
    let more = publish_round_robin(&server, 1);
    assert_eq!(tick_of(&stream.next_event().await), more[0]);
}

#[tokio::test]
async fn last_event_id_header_resumes_a_multi_symbol_stream_contiguously() {
    within(resume_is_contiguous(|id| ("/sse?symbols=*".to_owned(), format!("Last-Event-ID: {id}\r\n")))).await;
}

#[tokio::test]
async fn last_event_id_query_parameter_resumes_too() {
    within(resume_is_contiguous(|id| (format!("/sse?symbols=*&last_event_id={id}"), String::new()))).await;
}

#[tokio::test]
async fn unreadable_or_foreign_last_event_id_gets_reset_then_snapshot() {
    within(async {
        let server = start().await;
        server.publish("NASDAQ:AAPL", 1.0);
        server.publish("NASDAQ:AAPL", 2.0);
        for cursor in ["garbage", "other-epoch-5"] {
            let mut stream = open(&server, "/sse?symbols=NASDAQ:AAPL", &format!("Last-Event-ID: {cursor}\r\n")).await;
            let reset = stream.next_event().await;
            assert_eq!(reset.event.as_deref(), Some("reset"), "{cursor}");
            assert_eq!(reset.json(), json!({"type":"reset","symbol":"NASDAQ:AAPL","epoch":EPOCH}));
            assert_eq!(reset.id.as_deref(), Some(cursor), "a reset keeps the client where it was");
            let snapshot = stream.next_event().await;
            assert_eq!(snapshot.id.as_deref(), Some(server.engine.cursor(2).as_str()));
            assert_tick(&snapshot.json(), "NASDAQ:AAPL", 2, true);
        }
    })
    .await;
}

#[tokio::test]
async fn resume_beyond_history_gets_reset_then_snapshot() {
    within(async {
        let server = start_with(EngineConfig { history: 4, ..EngineConfig::default() }, GatewayConfig::default()).await;
        server.publish("NASDAQ:AAPL", 0.5);
        let old = server.engine.cursor(1);
        for i in 1..=20 {
            server.publish("NASDAQ:AAPL", f64::from(i));
        }
        let mut stream = open(&server, "/sse?symbols=NASDAQ:AAPL", &format!("Last-Event-ID: {old}\r\n")).await;
        assert_eq!(stream.next_event().await.event.as_deref(), Some("reset"));
        assert_tick(&stream.next_event().await.json(), "NASDAQ:AAPL", 21, true);
    })
    .await;
}

#[tokio::test]
async fn bad_or_missing_symbols_get_400_json_before_the_stream() {
    within(async {
        let server = start().await;
        let response = common::http_get(&server, "/sse?symbols=NASDAQ:AAPL,not%20ok").await;
        assert_eq!(response.status, 400);
        assert_eq!(response.header("content-type"), Some("application/json"));
        let body = response.json();
        assert_eq!((&body["type"], &body["code"]), (&json!("error"), &json!("bad_symbol")));
        assert!(body["message"].as_str().unwrap().contains("not ok"), "{body}");

        let response = common::http_get(&server, "/sse").await;
        assert_eq!(response.status, 400);
        assert_eq!(response.json()["code"], "bad_request");
    })
    .await;
}

#[tokio::test]
async fn silent_stream_gets_keepalive_comments() {
    within(async {
        let config = GatewayConfig { heartbeat: Duration::from_millis(150), ..GatewayConfig::default() };
        let server = start_with(EngineConfig::default(), config).await;
        let mut stream = open(&server, "/sse?symbols=*", "").await;
        let block = stream.next_block().await.expect("keepalive");
        assert_eq!(block.comment.as_deref(), Some("keepalive"));
        assert!(block.event.is_none());
        // Still live after a keepalive.
        server.publish("X", 1.0);
        assert_tick(&stream.next_event().await.json(), "X", 1, false);
    })
    .await;
}

#[tokio::test]
async fn curl_shows_ticks_at_once() {
    if std::process::Command::new("curl").arg("--version").stdout(Stdio::null()).status().is_err() {
        println!("skipped: curl is not installed");
        return;
    }
    within(async {
        let server = start().await;
        server.publish("NASDAQ:AAPL", 189.12);
        let mut curl = tokio::process::Command::new("curl")
            .args(["-N", "-s", &format!("http://{}/sse?symbols=*", server.addr)])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn curl");
        let mut lines = BufReader::new(curl.stdout.take().expect("stdout")).lines();
        let mut data = None;
        while let Some(line) = lines.next_line().await.expect("curl output") {
            if let Some(json) = line.strip_prefix("data: ") {
                data = Some(json.to_owned());
                break;
            }
        }
        let tick: serde_json::Value = serde_json::from_str(&data.expect("a data line")).unwrap();
        assert_tick(&tick, "NASDAQ:AAPL", 1, true);
        curl.kill().await.ok();
    })
    .await;
}
