//! Reliability under faults, against the real `tickfeed` binary (issue 4): a client that
//! never reads, a thousand connections that come and go (half of them cut mid-frame),
//! publishers that send garbage, and SIGTERM under load.
//!
//! Each test measures what a user or an operator would see — the server's RSS, threads and
//! file descriptors from `/proc`, `/health`, close codes, seq continuity, log lines — and
//! fails when the property in its name breaks, not when the machine is slow: bounds are on
//! memory and counts, never on throughput.
//!
//! The tests take turns ([`SERIAL`]): on a 2-core machine an RSS baseline or a healthy
//! client keeping up means nothing while another test runs a firehose beside it.

mod common;

use std::{
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::{http_get, Server, WAIT};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::{TcpSocket, TcpStream},
    sync::{oneshot, watch},
    task::JoinSet,
};
use tokio_tungstenite::{
    tungstenite::{self, protocol::Role, Message},
    WebSocketStream,
};

/// One test at a time in this file (see the module docs). A tokio mutex: each test holds it
/// across awaits, on its own runtime.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Receive buffer of a client that never reads: the smallest the kernel allows (it doubles
/// and clamps this), so the server's writes block after a few KiB instead of megabytes.
const STALLED_RECV_BUFFER_BYTES: u32 = 4096;

type Frames = Result<Message, tungstenite::Error>;

// ---------------------------------------------------------------------------------------
// 1. Slow consumers
// ---------------------------------------------------------------------------------------

/// RSS may grow this much over the whole sampling window. What legitimately grows once the
/// rings are full: allocator arenas settling, the healthy client's socket, the stalled
/// client's one write batch (≤ 64 KiB). What must not fit: the stalled client's backlog —
/// at 20,000 ticks/s of ~150-byte frames, queueing it costs ≥ 3 MB/s, 18 MB over the window.
const SLOW_CONSUMER_RSS_BOUND_KIB: u64 = 12 * 1024;
/// Growth allowed in the second half of the window, when a bounded server has settled and a
/// leak still climbs at the same slope (≥ 9 MB per half at the rate above).
const SLOW_CONSUMER_SECOND_HALF_BOUND_KIB: u64 = 4 * 1024;
const SLOW_CONSUMER_WINDOW: Duration = Duration::from_secs(6);
const SLOW_CONSUMER_SAMPLES: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_that_never_reads_keeps_server_memory_bounded() {
    let _turn = SERIAL.lock().await;
    // Small rings: they are allocated as the publisher first reaches their slots, so with
    // the defaults (65,536 bus slots, 4,096 per symbol) RSS climbs by ~5.5 MB/s at this rate
    // for the first 20 s or so (measured), for reasons unrelated to slow consumers. Small
    // ones are full before the baseline.
    let (bus, history, symbols) = (4096, 64, 100);
    let server = Server::start(
        &[
            "--sim-rate", "20000", "--sim-symbols", &symbols.to_string(), "--sim-seed", "11",
            "--history", &history.to_string(), "--bus-capacity", &bus.to_string(),
        ],
        &[],
    );
    wait_for_published(server.addr, 3 * (bus + history * symbols)).await;

    let stalled = raw_upgrade(server.addr, "/ws?symbols=*", Some(STALLED_RECV_BUFFER_BYTES)).await;
    let (healthy, _) = tokio_tungstenite::connect_async(server.ws_url("/ws?symbols=*")).await.expect("upgrade");
    let (stop, stopped) = oneshot::channel();
    let (progress_tx, mut progress) = watch::channel(0u64);
    let reader = tokio::spawn(read_ticks_until(healthy, stopped, progress_tx));
    // The baseline is taken once the healthy client is streaming, so its own buffers count
    // as steady state rather than growth.
    progress.wait_for(|&ticks| ticks >= 2_000).await.expect("healthy client streams");

    let baseline = server.rss_kib();
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut healthy_ticks = vec![*progress.borrow()];
    for sample in 1..=SLOW_CONSUMER_SAMPLES {
        tokio::time::sleep(SLOW_CONSUMER_WINDOW / SLOW_CONSUMER_SAMPLES as u32).await;
        samples.push((started.elapsed(), server.rss_kib()));
        if sample == SLOW_CONSUMER_SAMPLES / 2 || sample == SLOW_CONSUMER_SAMPLES {
            healthy_ticks.push(*progress.borrow());
        }
    }
    let (_, mid) = samples[SLOW_CONSUMER_SAMPLES / 2 - 1];
    let end = samples.last().expect("samples").1;
    let peak = samples.iter().map(|&(_, rss)| rss).max().expect("samples");
    let _ = stop.send(());
    let check = reader.await.expect("reader task");
    let published = health(server.addr).await["ticks_published"].as_u64().expect("ticks_published");
    let behind = read_until_conflated(stalled).await;
    eprintln!(
        "slow consumer (conflate): RSS baseline {baseline} KiB, mid {mid} KiB, end {end} KiB, peak {peak} KiB; \
         healthy client saw {} ticks ({} conflated) of {published} published; the stalled one read {} buffered \
         ticks before the first conflated one",
        check.ticks,
        check.conflated,
        behind.ticks - 1
    );

    assert!(
        peak.saturating_sub(baseline) < SLOW_CONSUMER_RSS_BOUND_KIB,
        "RSS grew by {} KiB while a client never read (baseline {baseline} KiB, samples {samples:?})",
        peak.saturating_sub(baseline)
    );
    assert!(
        end.saturating_sub(mid) < SLOW_CONSUMER_SECOND_HALF_BOUND_KIB,
        "RSS still climbing in the second half: {mid} KiB → {end} KiB (samples {samples:?})"
    );
    check.assert_continuous();
    behind.assert_continuous();
    // Not a speed bound: proof that the healthy client kept receiving all along, whatever
    // the stalled one did (at 20,000 ticks/s, 1,000 in 3 s is far below any real rate).
    assert!(
        healthy_ticks.windows(2).all(|pair| pair[1] >= pair[0] + 1_000),
        "the healthy client stopped receiving: ticks seen at the start, middle and end {healthy_ticks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_closed_with_4000_under_the_disconnect_policy() {
    let _turn = SERIAL.lock().await;
    let bus = 4096;
    // gateway=debug: the session's own word that it gave up on the stalled client is the
    // only signal that the close is queued; reading before that could let it catch up.
    let server = Server::start(
        &[
            "--sim-rate", "5000", "--sim-symbols", "100", "--sim-seed", "12", "--history", "64",
            "--bus-capacity", &bus.to_string(), "--slow-consumer", "disconnect",
        ],
        &[("RUST_LOG", "info,gateway=debug")],
    );
    wait_for_published(server.addr, 2 * bus).await;

    let stalled = raw_upgrade(server.addr, "/ws?symbols=*", Some(STALLED_RECV_BUFFER_BYTES)).await;
    let (healthy, _) = tokio_tungstenite::connect_async(server.ws_url("/ws?symbols=*")).await.expect("upgrade");
    let (stop, stopped) = oneshot::channel();
    let (progress_tx, mut progress) = watch::channel(0u64);
    let reader = tokio::spawn(read_ticks_until(healthy, stopped, progress_tx));
    let line = tokio::task::spawn_blocking(move || {
        let line = server.wait_for_log("slow consumer");
        (server, line)
    });
    let (server, decided) = line.await.expect("log waiter");
    let ticks_at_close = *progress.borrow();

    // The stalled client finally reads: everything buffered for it, intact, then 4000.
    let mut stalled = WebSocketStream::from_raw_socket(stalled, Role::Client, None).await;
    let mut check = SeqCheck::default();
    let mut first = true;
    let close = loop {
        let message = tokio::time::timeout(WAIT, stalled.next()).await.expect("frames in time");
        match message {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).expect("server sends JSON");
                if first {
                    assert_eq!(value["type"], "welcome", "{value}");
                    first = false;
                } else if value["type"] == "tick" {
                    check.observe(&value);
                }
            }
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("expected a close frame after the buffered ticks, got {other:?}"),
        }
    };
    let close = close.expect("the close frame has a code");
    assert_eq!(u16::from(close.code), 4000, "close {close:?}; server said {decided}");
    assert!(check.ticks > 0, "the ticks buffered before the close were delivered first");
    assert_eq!(check.conflated, 0, "the disconnect policy never conflates");
    check.assert_continuous();
    // Our close reply and end of the connection let the server finish; only the healthy
    // client stays connected.
    while let Some(Ok(_)) = tokio::time::timeout(WAIT, stalled.next()).await.expect("the end in time") {}
    drop(stalled);
    wait_for_health(server.addr, 1, 1).await;

    // The healthy client went on as if nothing happened.
    progress.wait_for(|&ticks| ticks >= ticks_at_close + 2 * bus).await.expect("healthy client still streams");
    let _ = stop.send(());
    let healthy = reader.await.expect("reader task");
    eprintln!(
        "slow consumer (disconnect): stalled client read {} buffered ticks then 4000; healthy client {} ticks",
        check.ticks, healthy.ticks
    );
    assert_eq!(healthy.conflated, 0, "the disconnect policy never conflates");
    healthy.assert_continuous();
}

/// The stalled client reads at last: what was buffered for it, then (its place in the ring
/// long overwritten) the newest tick of each symbol flagged `conflated`, on the same
/// connection. Reads until the first conflated tick.
async fn read_until_conflated(stream: TcpStream) -> SeqCheck {
    let mut ws = WebSocketStream::from_raw_socket(stream, Role::Client, None).await;
    let mut check = SeqCheck::default();
    while check.conflated == 0 {
        let value = next_json(&mut ws).await;
        if value["type"] == "tick" {
            check.observe(&value);
        }
    }
    check
}

/// Reads ticks until `stop`, checking seq continuity per symbol; `progress` counts ticks.
/// Panics if the server closes the connection: a healthy client is never closed.
async fn read_ticks_until(
    mut ws: WebSocketStream<impl AsyncRead + AsyncWrite + Unpin>,
    mut stop: oneshot::Receiver<()>,
    progress: watch::Sender<u64>,
) -> SeqCheck {
    let mut check = SeqCheck::default();
    loop {
        let message = tokio::select! {
            _ = &mut stop => return check,
            message = tokio::time::timeout(WAIT, ws.next()) => message.expect("ticks in time"),
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).expect("server sends JSON");
                if value["type"] == "tick" {
                    check.observe(&value);
                    progress.send_replace(check.ticks);
                }
            }
            Some(Ok(_)) => {}
            other => panic!("the healthy client lost its connection: {other:?}"),
        }
    }
}

/// The contract's delivery rule per symbol: a snapshot first (if any), then each live tick
/// has `seq` = previous + 1, unless flagged `conflated` (then it only goes up).
#[derive(Debug, Default)]
struct SeqCheck {
    last: HashMap<String, u64>,
    ticks: u64,
    conflated: u64,
    violations: Vec<String>,
}

impl SeqCheck {
    fn observe(&mut self, tick: &Value) {
        let symbol = tick["symbol"].as_str().expect("a tick has a symbol");
        let seq = tick["seq"].as_u64().expect("a tick has a seq");
        let snapshot = tick["snapshot"] == true;
        let conflated = tick["conflated"] == true;
        let last = self.last.get(symbol).copied();
        let fine = if snapshot {
            last.is_none()
        } else {
            let last = last.unwrap_or(0);
            seq == last + 1 || (conflated && seq > last)
        };
        if !fine && self.violations.len() < 10 {
            let flags = format!("snapshot {snapshot}, conflated {conflated}");
            self.violations.push(format!("{symbol}: seq {seq} after {last:?} ({flags})"));
        }
        self.ticks += 1;
        self.conflated += u64::from(conflated);
        self.last.insert(symbol.to_owned(), seq);
    }

    fn assert_continuous(&self) {
        assert!(self.violations.is_empty(), "seq continuity broken: {:?}", self.violations);
    }
}

// ---------------------------------------------------------------------------------------
// 2. Connection churn
// ---------------------------------------------------------------------------------------

/// RSS growth allowed after 1,000 connections have come and gone. glibc's malloc keeps
/// freed memory in its arenas rather than returning it, so the baseline is taken after a
/// warm-up of the same mix at the same concurrency, which sizes those arenas (and tokio's
/// task slabs) for 50 live connections; after that, reuse should cover everything. A leak
/// of one read or write buffer (2–64 KiB) per connection would exceed this many times over;
/// a leak of a few hundred bytes per connection would not, which the fd and `/health`
/// checks cover for the handles that matter.
const CHURN_RSS_BOUND_KIB: u64 = 8 * 1024;
const CHURN_CYCLES: usize = 1_000;
const CHURN_CONCURRENCY: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connect_disconnect_cycles_leak_nothing() {
    let _turn = SERIAL.lock().await;
    let server = Server::start(&["--sim-rate", "200", "--sim-symbols", "10", "--sim-seed", "21"], &[]);
    wait_for_published(server.addr, 20).await;
    let started = Instant::now();

    churn(server.addr, 100).await;
    wait_for_health(server.addr, 0, 0).await;
    let baseline = health(server.addr).await;
    let connections = baseline["connections"].as_u64().expect("connections");
    let subscribers = baseline["subscribers"].as_u64().expect("subscribers");
    let (fds, threads, rss) = (server.open_fds(), server.threads(), server.rss_kib());

    churn(server.addr, CHURN_CYCLES).await;
    wait_for_health(server.addr, connections, subscribers).await;
    // The server closes its sockets asynchronously after the last byte; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.open_fds() > fds + 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (fds_after, threads_after, rss_after) = (server.open_fds(), server.threads(), server.rss_kib());
    eprintln!(
        "churn of {CHURN_CYCLES}: fds {fds} → {fds_after}, threads {threads} → {threads_after}, \
         RSS {rss} KiB → {rss_after} KiB, in {:?}",
        started.elapsed()
    );
    assert!(fds_after <= fds + 2, "file descriptors leaked: {fds} before, {fds_after} after");
    // A thread per connection, or a blocking task that never ends, would add hundreds.
    assert!(threads_after <= threads + 2, "threads leaked: {threads} before, {threads_after} after");
    assert!(
        rss_after.saturating_sub(rss) < CHURN_RSS_BOUND_KIB,
        "RSS grew from {rss} KiB to {rss_after} KiB over {CHURN_CYCLES} connections"
    );

    // And the server still serves a new client normally.
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/ws?symbols=*")).await.expect("upgrade");
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    let mut check = SeqCheck::default();
    while check.ticks < 20 {
        let tick = next_json(&mut ws).await;
        assert_eq!(tick["type"], "tick", "{tick}");
        check.observe(&tick);
    }
    check.assert_continuous();
}

/// `cycles` connections, [`CHURN_CONCURRENCY`] at a time: even ones WebSocket closed
/// cleanly, odd ones cut with a TCP reset in the middle of a frame, every tenth of those an
/// SSE stream instead.
async fn churn(addr: SocketAddr, cycles: usize) {
    let mut tasks = JoinSet::new();
    for i in 0..cycles {
        if tasks.len() >= CHURN_CONCURRENCY {
            tasks.join_next().await.expect("a task").expect("cycle succeeds");
        }
        tasks.spawn(async move {
            match i % 10 {
                9 => sse_reset(addr).await,
                n if n % 2 == 0 => ws_clean(addr).await,
                _ => ws_reset(addr).await,
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("cycle succeeds");
    }
}

async fn ws_clean(addr: SocketAddr) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?symbols=*")).await.expect("upgrade");
    subscribed_and_ticking(&mut ws).await;
    ws.close(None).await.expect("send close");
    // The server answers the close, then ends the connection.
    let mut answered = false;
    while let Some(message) = tokio::time::timeout(WAIT, ws.next()).await.expect("close reply in time") {
        match message {
            Ok(Message::Close(_)) => answered = true,
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(error) => panic!("clean close failed: {error}"),
        }
    }
    assert!(answered, "the server answered the close");
}

async fn ws_reset(addr: SocketAddr) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let url = format!("ws://{addr}/ws?symbols=*");
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.expect("upgrade");
    subscribed_and_ticking(&mut ws).await;
    // A masked text frame announcing 256 bytes, of which 10 arrive.
    let mut partial = vec![0x81, 0x80 | 126, 0x01, 0x00, 0x12, 0x34, 0x56, 0x78];
    partial.extend_from_slice(b"{\"op\":\"sub");
    ws.get_mut().write_all(&partial).await.expect("partial frame");
    ws.get_ref().set_zero_linger().expect("SO_LINGER 0");
    drop(ws);
}

async fn sse_reset(addr: SocketAddr) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET /sse?symbols=* HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut seen = Vec::new();
    while !seen.windows(11).any(|w| w == b"event: tick") {
        let mut chunk = [0; 4096];
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk)).await.expect("events in time").expect("read");
        assert!(n > 0, "the stream ended early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    stream.set_zero_linger().expect("SO_LINGER 0");
    drop(stream);
}

/// Welcome, subscribed, then at least one tick (the snapshots of the symbols that ticked).
async fn subscribed_and_ticking(ws: &mut (impl StreamExt<Item = Frames> + Unpin)) {
    assert_eq!(next_json(ws).await["type"], "welcome");
    assert_eq!(next_json(ws).await["type"], "subscribed");
    assert_eq!(next_json(ws).await["type"], "tick");
}

async fn wait_for_health(addr: SocketAddr, connections: u64, subscribers: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let health = health(addr).await;
        if health["connections"] == connections && health["subscribers"] == subscribers {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/health never came back to {connections} connections and {subscribers} subscribers: {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------
// 3. Garbage publishers
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_publishers_publish_nothing_partial_and_disturb_no_one() {
    let _turn = SERIAL.lock().await;
    // Loopback without --publisher-token: no `AUTH` line (see ingest/src/publisher.rs).
    let server = Server::start(&["--ingest-tcp", "127.0.0.1:0", "--log-format", "json"], &[]);
    let mut logs = Logs::default();
    let ingest_line = logs.wait(&server, |log| log["fields"]["message"] == "accepting JSON-lines publishers");
    let ingest: SocketAddr =
        ingest_line["fields"]["addr"].as_str().and_then(|a| a.parse().ok()).expect("ingest address");

    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/ws?symbols=*")).await.expect("upgrade");
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");

    let stream = TcpStream::connect(ingest).await.expect("good publisher");
    let mut good = GoodPublisher { stream, prices: Vec::new() };
    let mut bad_peers = Vec::new();
    good.publish(20).await;

    // Binary garbage, newlines and NULs included; no line of it is UTF-8.
    let mut garbage = TcpStream::connect(ingest).await.expect("garbage publisher");
    bad_peers.push(garbage.local_addr().expect("addr"));
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let bytes: Vec<u8> = (0..64 * 1024)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if i % 97 == 0 { b'\n' } else if i % 97 == 1 { 0xFF } else { state as u8 }
        })
        .collect();
    garbage.write_all(&bytes).await.expect("garbage");
    good.publish(20).await;

    // A line that would be a valid tick but for its length, held open without its newline
    // while others publish, then ended and followed by a valid line on the same connection.
    let mut long = TcpStream::connect(ingest).await.expect("long-line publisher");
    let long_peer = long.local_addr().expect("addr");
    bad_peers.push(long_peer);
    long.write_all(b"{\"symbol\":\"BAD:LONG\",\"price\":1}").await.expect("long");
    long.write_all(&vec![b' '; 200 * 1024]).await.expect("long");
    good.publish(20).await;

    // Whole JSON objects, but the connection ends before their newline: once with FIN, once
    // with a reset.
    let mut cut = TcpStream::connect(ingest).await.expect("cut publisher");
    bad_peers.push(cut.local_addr().expect("addr"));
    cut.write_all(b"{\"symbol\":\"BAD:CUT\",\"price\":12}").await.expect("cut");
    cut.shutdown().await.expect("FIN");
    drop(cut);
    let mut reset = TcpStream::connect(ingest).await.expect("reset publisher");
    bad_peers.push(reset.local_addr().expect("addr"));
    reset.write_all(b"{\"symbol\":\"BAD:RESET\",\"price\":13}").await.expect("reset");
    reset.set_zero_linger().expect("SO_LINGER 0");
    drop(reset);
    good.publish(20).await;

    // Valid lines interleaved with malformed ones; line 2 is the one whose warning we look for.
    let mut mixed = TcpStream::connect(ingest).await.expect("mixed publisher");
    let mixed_peer = mixed.local_addr().expect("addr");
    bad_peers.push(mixed_peer);
    let mixed_lines = [
        r#"{"symbol":"MIX:A","price":1.5}"#,
        r#"this is not json"#,
        r#"{"symbol":"MIX:A","price":2.5}"#,
        r#"{"symbol":"bad symbol!","price":1}"#,
        r#"{"symbol":"MIX:A","price":"abc"}"#,
        r#"{"symbol":"MIX:A"}"#,
        r#"{"symbol":"MIX:A","price":3.5}"#,
        r#"{"symbol":"BAD:TRUNCATED","price":4"#,
        r#"["MIX:A",9]"#,
        r#"{"symbol":"MIX:A","price":4.5}"#,
    ];
    for line in mixed_lines {
        mixed.write_all(format!("{line}\n").as_bytes()).await.expect("mixed");
    }
    mixed.shutdown().await.expect("FIN");
    good.publish(20).await;

    long.write_all(b"\n{\"symbol\":\"LONG:OK\",\"price\":7.25}\n").await.expect("long");
    long.shutdown().await.expect("FIN");
    drop((garbage, long, mixed));

    // Everything the bad publishers sent has been read once the server says each is gone;
    // then a last tick from the good publisher closes the stream of expected ticks.
    for peer in &bad_peers {
        let peer = peer.to_string();
        logs.wait(&server, |log| {
            let message = &log["fields"]["message"];
            (message == "publisher disconnected" || message == "publisher connection failed")
                && log.to_string().contains(&format!("\"{peer}\""))
        });
    }
    good.publish(1).await;
    let last_good = *good.prices.last().expect("prices");

    let mut received: HashMap<String, Vec<(u64, f64)>> = HashMap::new();
    loop {
        let tick = next_json(&mut ws).await;
        assert_eq!(tick["type"], "tick", "{tick}");
        let symbol = tick["symbol"].as_str().expect("symbol").to_owned();
        let entry = (tick["seq"].as_u64().expect("seq"), tick["price"].as_f64().expect("price"));
        let done = symbol == "GOOD:A" && entry.1 == last_good;
        received.entry(symbol).or_default().push(entry);
        if done {
            break;
        }
    }
    let numbered = |prices: &[f64]| prices.iter().enumerate().map(|(i, &p)| (i as u64 + 1, p)).collect::<Vec<_>>();
    let mut expected = HashMap::new();
    expected.insert("GOOD:A".to_owned(), numbered(&good.prices));
    expected.insert("MIX:A".to_owned(), numbered(&[1.5, 2.5, 3.5, 4.5]));
    expected.insert("LONG:OK".to_owned(), numbered(&[7.25]));
    assert_eq!(received, expected, "exactly the valid ticks, all of them, in order per symbol");
    let published = good.prices.len() + 5;
    let health = health(server.addr).await;
    assert_eq!((health["status"].as_str(), health["ticks_published"].as_u64()), (Some("ok"), Some(published as u64)));

    let warning = logs.wait(&server, |log| {
        log["level"] == "WARN"
            && log["fields"]["message"] == "malformed line skipped"
            && log["fields"]["source"] == mixed_peer.to_string()
            && log["fields"]["line"] == 2
    });
    assert!(warning["fields"]["error"].as_str().is_some_and(|e| e.contains("JSON")), "{warning}");
    // The overlong line and the cut ones are counted too, not silently dropped.
    logs.wait(&server, |log| log["fields"]["source"] == long_peer.to_string() && log["fields"]["line"] == 1);
    let malformed = logs.seen.iter().filter(|log| log["fields"]["message"] == "malformed line skipped").count();
    eprintln!(
        "garbage publishers: {published} valid ticks received exactly; {malformed} malformed-line warnings; {warning}"
    );
    // The good publisher is still connected and publishing.
    good.publish(1).await;
    let tick = next_json(&mut ws).await;
    assert_eq!((tick["symbol"].as_str(), tick["seq"].as_u64()), (Some("GOOD:A"), Some(good.prices.len() as u64)));
}

/// The well-behaved publisher: `GOOD:A` ticks with prices it remembers.
struct GoodPublisher {
    stream: TcpStream,
    prices: Vec<f64>,
}

impl GoodPublisher {
    async fn publish(&mut self, count: usize) {
        for _ in 0..count {
            let price = 100.0 + self.prices.len() as f64 / 4.0;
            let line = format!("{{\"symbol\":\"GOOD:A\",\"price\":{price},\"size\":1}}\n");
            self.stream.write_all(line.as_bytes()).await.expect("the good publisher's connection stays open");
            self.prices.push(price);
        }
    }
}

/// Log lines of a `--log-format json` server, kept so that waiting for one does not lose
/// the others.
#[derive(Default)]
struct Logs {
    seen: Vec<Value>,
}

impl Logs {
    /// The first line, seen before or arriving within [`WAIT`], for which `wanted` holds.
    fn wait(&mut self, server: &Server, wanted: impl Fn(&Value) -> bool) -> Value {
        if let Some(found) = self.seen.iter().find(|log| wanted(log)) {
            return found.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = server.logs.recv_timeout(left).expect("the log line in time");
            let Ok(log) = serde_json::from_str::<Value>(&line) else { continue };
            let found = wanted(&log);
            self.seen.push(log);
            if found {
                return self.seen.last().expect("just pushed").clone();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// 4. Graceful shutdown
// ---------------------------------------------------------------------------------------

/// The gateway's shutdown grace (`GatewayConfig::shutdown_grace`) plus the binary's
/// `SOURCE_STOP_GRACE`, and a second for the process to exit.
const EXIT_LIMIT: Duration = Duration::from_secs(3 + 2 + 1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_under_load_closes_every_client_with_1001() {
    let _turn = SERIAL.lock().await;
    let mut server = Server::start(&["--sim-rate", "10000", "--sim-symbols", "100", "--sim-seed", "31"], &[]);
    wait_for_published(server.addr, 1_000).await;
    let (_, body) = http_get(server.addr, "/symbols").await;
    let symbols: Vec<String> = serde_json::from_str(&body).expect("symbols");
    assert_eq!(symbols.len(), 100);
    let addr = server.addr;

    let (ready_tx, mut ready) = tokio::sync::mpsc::channel::<()>(256);
    let mut websockets = JoinSet::new();
    for i in 0..110 {
        // A few firehose clients; the rest on three symbols each, so the test's own clients
        // (debug builds, like the server) leave the two cores to the server.
        let query = match i % 22 {
            0 => "*".to_owned(),
            _ => (0..3).map(|k| symbols[(i * 3 + k) % 100].as_str()).collect::<Vec<_>>().join(","),
        };
        let ready = ready_tx.clone();
        websockets.spawn(async move {
            let url = format!("ws://{addr}/ws?symbols={query}");
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("upgrade");
            subscribed_and_ticking(&mut ws).await;
            ready.send(()).await.expect("test alive");
            read_until_close(&mut ws).await
        });
    }
    let mut streams = JoinSet::new();
    for i in 0..12 {
        let query = format!("{},{}", symbols[i * 2], symbols[i * 2 + 1]);
        let ready = ready_tx.clone();
        streams.spawn(async move { read_sse_to_end(addr, &query, ready).await });
    }
    // Clients that fell behind: they read nothing until the server is shutting down.
    let mut behind = Vec::new();
    for _ in 0..2 {
        behind.push(raw_upgrade(addr, "/ws?symbols=*", Some(STALLED_RECV_BUFFER_BYTES)).await);
    }
    drop(ready_tx);
    for _ in 0..122 {
        tokio::time::timeout(WAIT, ready.recv()).await.expect("clients ready in time").expect("every client ready");
    }
    assert_eq!(health(addr).await["connections"], 124);

    server.terminate();
    let terminated = Instant::now();
    let mut late = JoinSet::new();
    for stream in behind {
        late.spawn(async move {
            let mut ws = WebSocketStream::from_raw_socket(stream, Role::Client, None).await;
            read_until_close(&mut ws).await
        });
    }
    let mut codes: HashMap<String, usize> = HashMap::new();
    for set in [&mut websockets, &mut late] {
        while let Some(result) = set.join_next().await {
            *codes.entry(result.expect("client task")).or_default() += 1;
        }
    }
    let mut sse_ends: HashMap<String, usize> = HashMap::new();
    while let Some(result) = streams.join_next().await {
        *sse_ends.entry(result.expect("sse task")).or_default() += 1;
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = server.wait_exit(EXIT_LIMIT);
        (status, server)
    });
    let (status, server) = status.await.expect("waiter");
    let exited_after = terminated.elapsed();
    let mut panicked = Vec::new();
    while let Ok(line) = server.logs.recv_timeout(WAIT) {
        if line.contains("panicked") {
            panicked.push(line);
        }
    }
    eprintln!("shutdown: WebSocket closes {codes:?}, SSE ends {sse_ends:?}, exit {status} after {exited_after:?}");
    assert_eq!(codes, HashMap::from([("close 1001".to_owned(), 112)]), "every WebSocket client is closed with 1001");
    assert_eq!(sse_ends, HashMap::from([("clean end".to_owned(), 12)]), "every SSE stream ends cleanly");
    assert!(status.success(), "tickfeed exits 0 after SIGTERM: {status}");
    assert!(panicked.is_empty(), "{panicked:?}");
}

/// Reads (and drops) frames until the server's close; returns `close <code>` or what
/// happened instead.
async fn read_until_close(ws: &mut (impl StreamExt<Item = Frames> + Unpin)) -> String {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => return "no close in time".to_owned(),
            Ok(Some(Ok(Message::Close(Some(frame))))) => return format!("close {}", u16::from(frame.code)),
            Ok(Some(Ok(Message::Close(None)))) => return "close without a code".to_owned(),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(error))) => return format!("error before the close: {error}"),
            Ok(None) => return "ended without a close".to_owned(),
        }
    }
}

/// Opens `/sse?symbols=…` over a raw socket, says `ready` after the first tick, then reads
/// the chunked body to the end of the connection; returns `clean end` when the body ended
/// with its last chunk before the connection closed, or what happened instead.
async fn read_sse_to_end(addr: SocketAddr, symbols: &str, ready: tokio::sync::mpsc::Sender<()>) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET /sse?symbols={symbols} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut head = Vec::new();
    let mut chunk = [0; 16 * 1024];
    let body_start = loop {
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk)).await.expect("head in time").expect("read");
        assert!(n > 0, "no response head");
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let text = String::from_utf8_lossy(&head[..body_start]).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200") && text.contains("transfer-encoding: chunked"), "{text}");
    let mut body = Chunked::default();
    if let Err(error) = body.feed(&head[body_start..]) {
        return error;
    }
    let mut ready = Some(ready);
    loop {
        if ready.is_some() && body.text.contains("event: tick") {
            ready.take().expect("checked").send(()).await.expect("test alive");
            body.text.clear();
        }
        let n = match tokio::time::timeout(WAIT, stream.read(&mut chunk)).await {
            Err(_) => return "no end in time".to_owned(),
            Ok(Err(error)) => return format!("read failed: {error}"),
            Ok(Ok(n)) => n,
        };
        if n == 0 {
            return if body.is_done() { "clean end".to_owned() } else { "connection closed mid-body".to_owned() };
        }
        if let Err(error) = body.feed(&chunk[..n]) {
            return error;
        }
    }
}

/// Follows HTTP/1.1 chunked framing as bytes arrive, so a body cut short is told apart from
/// one that ended with its last (zero-size) chunk.
#[derive(Default)]
struct Chunked {
    state: ChunkState,
    /// The size line or the CRLF being read.
    line: Vec<u8>,
    /// Body text until the first tick is seen (then cleared and no longer kept).
    text: String,
}

#[derive(Default, PartialEq)]
enum ChunkState {
    #[default]
    Size,
    Data(usize),
    DataEnd,
    Trailer,
    Done,
}

impl Chunked {
    fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    fn feed(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while let Some((&byte, rest)) = bytes.split_first() {
            match self.state {
                ChunkState::Data(left) => {
                    let take = left.min(bytes.len());
                    if self.text.len() < 64 * 1024 && !self.text.contains("event: tick") {
                        self.text.push_str(&String::from_utf8_lossy(&bytes[..take]));
                    }
                    bytes = &bytes[take..];
                    self.state = if take == left { ChunkState::DataEnd } else { ChunkState::Data(left - take) };
                    continue;
                }
                ChunkState::Done => return Err("bytes after the last chunk".to_owned()),
                _ => self.line.push(byte),
            }
            bytes = rest;
            if !self.line.ends_with(b"\r\n") {
                continue;
            }
            let line = std::mem::take(&mut self.line);
            self.state = match self.state {
                ChunkState::Size => {
                    let size = std::str::from_utf8(&line[..line.len() - 2])
                        .ok()
                        .and_then(|text| usize::from_str_radix(text.split(';').next().unwrap_or("").trim(), 16).ok())
                        .ok_or_else(|| format!("bad chunk size line {:?}", String::from_utf8_lossy(&line)))?;
                    if size == 0 { ChunkState::Trailer } else { ChunkState::Data(size) }
                }
                ChunkState::DataEnd if line == b"\r\n" => ChunkState::Size,
                ChunkState::DataEnd => return Err("chunk longer than its size".to_owned()),
                ChunkState::Trailer if line == b"\r\n" => ChunkState::Done,
                ChunkState::Trailer => ChunkState::Trailer,
                ChunkState::Data(_) | ChunkState::Done => unreachable!("handled above"),
            };
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Shared steps
// ---------------------------------------------------------------------------------------

async fn health(addr: SocketAddr) -> Value {
    let (status, body) = http_get(addr, "/health").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("/health is JSON")
}

/// Waits until the engine has published `count` ticks: the server's progress, not a sleep.
async fn wait_for_published(addr: SocketAddr, count: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let published = health(addr).await["ticks_published"].as_u64().expect("ticks_published");
        if published >= count {
            return;
        }
        assert!(Instant::now() < deadline, "only {published} of {count} ticks published");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A WebSocket upgrade done by hand on a socket whose receive buffer is `recv_buffer_bytes`
/// (set before connecting, so the window is small from the start). Reads exactly the
/// response head: every frame after it is still in the socket for whoever reads later.
async fn raw_upgrade(addr: SocketAddr, path: &str, recv_buffer_bytes: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    if let Some(bytes) = recv_buffer_bytes {
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
    }
    let mut stream = socket.connect(addr).await.expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(WAIT, stream.read_u8()).await.expect("head in time").expect("read");
        head.push(byte);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    stream
}

async fn next_json(ws: &mut (impl StreamExt<Item = Frames> + Unpin)) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next()).await.expect("message in time").expect("open").expect("ok");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("server sends JSON");
        }
    }
}
