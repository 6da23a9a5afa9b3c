//! The fan-out load tool against a real gateway: it must connect, read every tick over
//! WebSocket and SSE, and report a clean run in its JSON line. A broken frame reader, tick
//! scanner or seq tracker shows here as missing ticks, false gaps or dropped connections.

use std::{process::Stdio, sync::Arc, time::Duration};

use feed_engine::{Engine, EngineConfig};
use gateway::GatewayConfig;
use ingest::{simulator, IngestStats, SimConfig};
use serde_json::Value;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// Connections the tool opens in each run.
const CONNECTIONS: u64 = 8;
/// Symbols the simulator ticks, all subscribed by every connection.
const SYMBOLS: usize = 20;

/// A gateway with a simulated market on `127.0.0.1:0`, stopped when `shutdown` is cancelled.
async fn feed(shutdown: &CancellationToken) -> std::net::SocketAddr {
    let engine = Engine::new(EngineConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(gateway::serve(listener, engine.clone(), GatewayConfig::default(), shutdown.clone()));
    let market = SimConfig { symbols: SYMBOLS, rate: 2_000.0, seed: 7 };
    simulator::spawn(engine, market, shutdown.clone(), Arc::new(IngestStats::default()));
    addr
}

/// Runs the tool for a short measured window, with `extra` arguments, and returns its JSON
/// report.
async fn run_tool(url: &str, extra: &[&str]) -> Value {
    let connections = CONNECTIONS.to_string();
    let args = ["--url", url, "--connections", &connections, "--symbols-per-connection", "0", "--duration", "2", "--warmup", "1"];
    run_fanout(&[&args[..], extra].concat()).await.1
}

/// Runs the tool with `args` on one client thread; returns its output and its JSON line.
async fn run_fanout(args: &[&str]) -> (String, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(args)
        .args(["--threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output).await.expect("the tool ends").expect("it runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "fanout failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let line = stdout.lines().rfind(|line| line.starts_with('{')).expect("a JSON line");
    let report = serde_json::from_str(line).expect("valid JSON");
    (stdout.into_owned(), report)
}

/// What every clean run shows: all connected and stayed, ticks at the simulator's rate
/// times the connections, snapshots on subscribe, no seq gaps, latencies measured, from the
/// engine's `ts` and from the simulator's `src_ts`, and up to the client's kernel unless
/// the tool read `plainly`.
fn assert_clean(report: &Value, plainly: bool) {
    assert_eq!(report["connected"], CONNECTIONS, "{report}");
    assert_eq!((report["connect_errors"].as_u64(), report["dropped"].as_u64()), (Some(0), Some(0)), "{report}");
    assert_eq!((report["gaps"].as_u64(), report["conflated_skipped"].as_u64()), (Some(0), Some(0)), "{report}");
    // 2,000 ticks/s to each of 8 connections; generous bounds for a loaded test machine.
    let rate = report["msgs_per_s"].as_f64().expect("a rate");
    assert!((8_000.0..=24_000.0).contains(&rate), "{report}");
    assert!(report["snapshots"].as_u64().expect("a count") >= CONNECTIONS, "{report}");
    let (p50, max) = (report["p50_us"].as_u64().expect("p50"), report["max_us"].as_u64().expect("max"));
    assert!(p50 > 0 && p50 <= max && max < 10_000_000, "{report}");
    // One host, one clock: nothing arrives before it was stamped.
    assert_eq!((report["early_ticks"].as_u64(), &report["latency_trusted"]), (Some(0), &Value::Bool(true)), "{report}");
    // Every simulated tick says when it was due, no later than it was published: measured
    // from then, each wait is at least as long.
    assert_eq!(report["src_ticks"], report["ticks"], "{report}");
    let (p99, src_p99) = (report["p99_us"].as_u64().expect("p99"), report["src_p99_us"].as_u64().expect("src p99"));
    assert!(src_p99 >= p99, "{report}");
    if plainly {
        assert_eq!((report["kernel_ticks"].as_u64(), &report["kernel_p99_us"]), (Some(0), &Value::Null), "{report}");
        return;
    }
    // Every read said when the kernel received it, which is before the tool parsed it.
    assert_eq!(report["kernel_ticks"], report["ticks"], "{report}");
    let kernel_p99 = report["kernel_p99_us"].as_u64().expect("kernel p99");
    assert!(kernel_p99 > 0 && kernel_p99 <= p99, "{report}");
}

/// A gateway, the tool against the URL `url_of` gives for it with `extra` arguments, and a
/// clean report.
async fn measure_clean_run(url_of: fn(std::net::SocketAddr) -> String, extra: &[&str]) {
    let shutdown = CancellationToken::new();
    // Cancelled on the way out, a failed assertion included.
    let _stop = shutdown.clone().drop_guard();
    let addr = feed(&shutdown).await;
    assert_clean(&run_tool(&url_of(addr), extra).await, extra.contains(&"--no-kernel-time"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measures_a_websocket_feed_without_false_gaps() {
    measure_clean_run(|addr| format!("ws://{addr}/ws"), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measures_a_websocket_feed_reading_plainly_when_asked() {
    measure_clean_run(|addr| format!("ws://{addr}/ws"), &["--no-kernel-time"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measures_an_sse_feed_without_false_gaps() {
    measure_clean_run(|addr| format!("http://{addr}/sse"), &[]).await;
}

/// Serves one SSE stream, like the gateway's, whose `ts` runs `ahead` of this host's clock:
/// a server on another host with a clock set wrong, as the tool sees it.
async fn sse_with_clock_ahead(ahead: Duration, shutdown: &CancellationToken) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else { return };
        let mut request = [0u8; 2048];
        let _ = stream.read(&mut request).await;
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n";
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for seq in 1.. {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
            let ts = (now + ahead).as_micros();
            let event = format!("data: {{\"type\":\"tick\",\"symbol\":\"T:A\",\"seq\":{seq},\"ts\":{ts},\"price\":1.5}}\n\n");
            tokio::select! {
                () = shutdown.cancelled() => return,
                written = stream.write_all(event.as_bytes()) => if written.is_err() { return },
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn says_when_the_servers_clock_runs_ahead() {
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let addr = sse_with_clock_ahead(Duration::from_secs(5), &shutdown).await;
    let url = format!("http://{addr}/sse");
    let args = ["--url", &url, "--connections", "1", "--symbols", "T:A", "--duration", "1", "--warmup", "0.5"];
    let (stdout, report) = run_fanout(&args).await;
    assert!(stdout.contains("LATENCY NOT TRUSTWORTHY"), "{stdout}");
    let ticks = report["ticks"].as_u64().expect("a count");
    assert!(ticks > 0, "{report}");
    assert_eq!(report["early_ticks"].as_u64(), Some(ticks), "{report}");
    assert_eq!(report["latency_trusted"], false, "{report}");
}
