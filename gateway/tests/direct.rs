//! Ticks written by the engine's wake-ups on the publisher's thread share the socket with
//! the session's own output (welcome, replies, snapshots, pings): neither may cut into the
//! other's frames, reorder a symbol's ticks, or drop any.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use common::{connect, next_non_heartbeat, send, start_with, within};
use feed_engine::EngineConfig;
use gateway::GatewayConfig;
use serde_json::{json, Value};

/// Ticks of one symbol as a client checks them: a snapshot opens each subscription, then
/// each live seq is the one after the last.
#[derive(Default)]
struct Expect {
    last: Option<u64>,
}

impl Expect {
    fn tick(&mut self, tick: &Value) {
        let seq = tick["seq"].as_u64().unwrap();
        assert!(tick.get("conflated").is_none(), "nothing here may be conflated: {tick}");
        match self.last {
            Some(last) if tick.get("snapshot").is_none() => assert_eq!(seq, last + 1, "{tick}"),
            // Subscribing again: the newest tick, which may be the last one seen.
            Some(last) => assert!(seq >= last, "a snapshot older than what was seen: {tick}"),
            None => {}
        }
        self.last = Some(seq);
    }
}

/// While a thread publishes two symbols in batches, the client subscribes to the second,
/// pings and unsubscribes again, round after round. Every message is whole JSON (a reply or
/// snapshot cut into a tick's frame would break the framing or the JSON), the replies come
/// in the order asked, the first symbol's ticks all arrive in seq order, and the second's
/// come only between its `subscribed` and `unsubscribed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_racing_ticks_written_by_the_publisher_never_cut_into_them() {
    race_ops_against_ticks(GatewayConfig { io_uring: false, ..GatewayConfig::default() }).await;
}

/// The same race with each publish's wake-ups written together at its end (`--io-uring`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_racing_ticks_written_together_through_io_uring_never_cut_into_them() {
    race_ops_against_ticks(GatewayConfig { io_uring: true, ..GatewayConfig::default() }).await;
}

/// The same race with the pacing window always open: ticks wait out the window with the
/// task parked and the server's flusher writes them (see `ws::held`), while the client's ops
/// wake the task and take the socket back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_racing_ticks_held_for_the_pacing_window_never_cut_into_them() {
    // A budget of one write a second makes any traffic "load", so the window is always on.
    let max_coalesce = Duration::from_millis(3);
    let config = GatewayConfig { write_budget_per_s: 1, max_coalesce, io_uring: false, ..GatewayConfig::default() };
    race_ops_against_ticks(config).await;
}

/// The same with the held connections written through io_uring (see `ws::sends`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_racing_ticks_held_and_written_through_io_uring_never_cut_into_them() {
    let max_coalesce = Duration::from_millis(3);
    let config = GatewayConfig { write_budget_per_s: 1, max_coalesce, io_uring: true, ..GatewayConfig::default() };
    race_ops_against_ticks(config).await;
}

/// With `--io-uring`, one publish's wake-ups are written together at its end, up to 64 per
/// submission: more connections than that, woken by every tick, each get every tick once
/// and in order, whether the ticks come one publish at a time or in batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wake_ups_written_together_through_io_uring_deliver_every_tick_to_every_connection() {
    const CONNECTIONS: usize = 150;
    const TICKS: u64 = 300;
    within(async {
        let config = GatewayConfig { io_uring: true, ..GatewayConfig::default() };
        let server = start_with(EngineConfig::default(), config).await;
        let mut clients = Vec::new();
        for _ in 0..CONNECTIONS {
            let (mut ws, _) = connect(&server, "?symbols=U:A,U:B").await;
            assert_eq!(next_non_heartbeat(&mut ws).await["type"], "subscribed");
            clients.push(ws);
        }
        let engine = server.engine.clone();
        let publisher = std::thread::spawn(move || {
            for i in 0..TICKS {
                if i % 2 == 0 {
                    engine.publish(&common::quote("U:A", i as f64)).unwrap();
                } else {
                    // Two symbols in one publish: one wake-up each connection, both ticks.
                    engine.publish_batch(&[common::quote("U:B", i as f64), common::quote("U:A", i as f64)]);
                }
                if i % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        let expected = TICKS + TICKS / 2;
        for ws in &mut clients {
            let (mut a, mut b) = (Expect::default(), Expect::default());
            for _ in 0..expected {
                let tick = next_non_heartbeat(ws).await;
                assert_eq!(tick["type"], "tick", "{tick}");
                if tick["symbol"] == "U:A" { a.tick(&tick) } else { b.tick(&tick) }
            }
            assert_eq!((a.last, b.last), (Some(TICKS), Some(TICKS / 2)), "every tick, once");
        }
        publisher.join().unwrap();
    })
    .await;
}

async fn race_ops_against_ticks(config: GatewayConfig) {
    const TICKS: u64 = 20_000;
    within(async {
        let config = GatewayConfig { max_ops_per_sec: 1_000_000, ..config };
        let server = start_with(EngineConfig::default(), config).await;
        let (mut ws, _) = connect(&server, "?symbols=R:A").await;
        assert_eq!(next_non_heartbeat(&mut ws).await["type"], "subscribed");

        let done = Arc::new(AtomicBool::new(false));
        let publisher = {
            let (engine, done) = (server.engine.clone(), Arc::clone(&done));
            std::thread::spawn(move || {
                let symbols = ["R:A", "R:B", "R:A", "R:B"];
                // Fewer ticks than the engine's ring holds: a client that falls behind is
                // never conflated, so every R:A tick must arrive.
                for batch in 0..TICKS / 4 {
                    let quotes: Vec<_> = symbols.iter().map(|s| common::quote(s, batch as f64)).collect();
                    assert_eq!(engine.publish_batch(&quotes), 4);
                    std::thread::sleep(Duration::from_micros(100));
                }
                done.store(true, Ordering::SeqCst);
            })
        };

        let (mut a, mut b) = (Expect::default(), Expect::default());
        let mut round = 0u64;
        loop {
            let last_round = done.load(Ordering::SeqCst);
            for op in [json!({"op":"subscribe","symbols":["R:B"],"id":round}), json!({"op":"ping","id":round}),
                json!({"op":"unsubscribe","symbols":["R:B"],"id":round})]
            {
                send(&mut ws, op).await;
            }
            let mut replies = Vec::new();
            let mut b_open = false;
            while replies.len() < 3 {
                let message = next_non_heartbeat(&mut ws).await;
                match message["type"].as_str().unwrap() {
                    "tick" if message["symbol"] == "R:A" => a.tick(&message),
                    "tick" => {
                        assert!(b_open, "R:B outside its subscription: {message}");
                        b.tick(&message);
                    }
                    kind => {
                        assert_eq!(message["id"], round, "{message}");
                        match kind {
                            "subscribed" => b_open = true,
                            "unsubscribed" => b_open = false,
                            _ => {}
                        }
                        replies.push(kind.to_owned());
                    }
                }
            }
            assert_eq!(replies, ["subscribed", "pong", "unsubscribed"], "round {round}");
            round += 1;
            if last_round {
                break;
            }
        }
        publisher.join().unwrap();
        // Everything published is out by now; whatever R:A ticks are still in flight end
        // before the answer to this ping.
        send(&mut ws, json!({"op":"ping","id":"end"})).await;
        loop {
            let message = next_non_heartbeat(&mut ws).await;
            if message["type"] == "pong" {
                break;
            }
            assert_eq!(message["symbol"], "R:A", "{message}");
            a.tick(&message);
        }
        assert_eq!(a.last, Some(TICKS / 2), "every R:A tick arrived");
        assert!(round > 1, "the ops raced the ticks for more than one round");
    })
    .await;
}
