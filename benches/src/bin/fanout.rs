//! The fan-out load tool: opens many WebSocket or SSE connections to a feed, each
//! subscribing to some symbols, and reports delivered msgs/s, end-to-end latency
//! percentiles, seq gaps and connect times as a table and one JSON line.
//!
//! ```sh
//! cargo run --release -p tickfeed -- --sim-rate 2000 &        # the server under test
//! cargo run --release -p benches --bin fanout -- --preset dashboard --server-pid $!
//! ```

use std::{
    cell::RefCell,
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    rc::Rc,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use benches::fanout::{
    kernel_time::{self, SocketReader},
    procstat,
    report::{Report, Stats},
    scan::tick_fields,
    sse::{self, Dechunker, Lines},
    ws::{self, opcode},
};
use clap::{Parser, ValueEnum};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

/// Fan-out load tool for tickfeed (and any feed speaking its protocol).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// WebSocket URL (`ws://HOST:PORT/ws`) or SSE URL (`http://HOST:PORT/sse`).
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// A scenario of the benchmark suite; explicit flags override its settings.
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// Connections to open.
    #[arg(long)]
    connections: Option<usize>,
    /// Symbols per connection (0: all of them, as one `*` subscription).
    #[arg(long)]
    symbols_per_connection: Option<usize>,
    /// Symbols to use instead of the server's `/symbols` (comma-separated).
    #[arg(long, value_delimiter = ',')]
    symbols: Vec<String>,
    /// Seconds measured, after the ramp and the warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds between the last connection and the start of measurement.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Connections opened per second while ramping up.
    #[arg(long, default_value_t = 2_000.0)]
    ramp: f64,
    /// Client threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// PID of the server, to report its CPU and RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Message framing inside WebSocket: tickfeed's JSON, or Socket.IO 4 (`42["tick",{…}]`,
    /// URL path `/socket.io/`), for comparing with a Socket.IO server.
    #[arg(long, value_enum, default_value_t = Protocol::Tickfeed)]
    protocol: Protocol,
    /// Read plainly, without asking the kernel when it received each read's bytes (the
    /// latency "to the client's kernel": the server's share, without this tool's queue).
    #[arg(long)]
    no_kernel_time: bool,
}

/// What is inside the WebSocket frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// One tick JSON object per text frame.
    Tickfeed,
    /// Engine.IO 4 / Socket.IO 4 packets.
    Socketio,
}

/// The benchmark scenarios (see BENCHMARKS.md for the server side of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Preset {
    /// 100 connections × 10 symbols (server: 100 symbols, 200 ticks/s).
    Quiet,
    /// 1,000 connections × 10 symbols (server: 100 symbols, 2,000 ticks/s).
    Dashboard,
    /// 5,000 connections on one symbol (server: 100 ticks/s of that symbol).
    Storm,
    /// 20 connections × all symbols (server: 100 symbols, rate stepped up).
    Firehose,
    /// 10,000 connections × 1 symbol, no traffic: server memory per connection.
    Idle,
    /// 200 SSE streams × all symbols (server: 5,000 ticks/s).
    Sse,
}

impl Preset {
    /// (connections, symbols per connection, SSE?)
    fn shape(self) -> (usize, usize, bool) {
        match self {
            Self::Quiet => (100, 10, false),
            Self::Dashboard => (1_000, 10, false),
            Self::Storm => (5_000, 1, false),
            Self::Firehose => (20, 0, false),
            Self::Idle => (10_000, 1, false),
            Self::Sse => (200, 0, true),
        }
    }
}

/// Everything a connection needs to know, shared by all threads.
struct Plan {
    addr: SocketAddr,
    path: String,
    sse: bool,
    socketio: bool,
    /// Read with the kernel's receive time ([`kernel_time`]).
    kernel_time: bool,
    /// Query string per connection.
    queries: Vec<String>,
    ramp_start: Instant,
    ramp: f64,
    window: (Instant, Instant),
    end: Instant,
    open: AtomicI64,
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn split_url(url: &str) -> Result<(SocketAddr, String, bool), String> {
    let (scheme, rest) = url.split_once("://").ok_or("URL needs a scheme")?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let addr = host.parse().map_err(|_| format!("{host:?} is not IP:PORT (load tests target 127.0.0.1)"))?;
    let sse = matches!(scheme, "http") || path.starts_with("/sse");
    Ok((addr, path, sse))
}

async fn fetch_symbols(addr: SocketAddr) -> Result<Vec<String>, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("cannot reach {addr}: {e}"))?;
    let request = format!("GET /symbols HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("bad /symbols response")? + 4;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        Dechunker::default().feed(&raw[end..], &mut out);
        out
    } else {
        raw[end..].to_vec()
    };
    serde_json::from_slice(&body).map_err(|e| format!("/symbols is not a JSON array of names: {e}"))
}

fn main() {
    let args = Args::parse();
    if let Err(err) = run(args) {
        eprintln!("fanout: {err}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), String> {
    let fd_limit = procstat::raise_fd_limit();
    let (addr, path, url_is_sse) = split_url(&args.url)?;
    let (preset_conns, preset_k, preset_sse) = args.preset.map_or((100, 10, url_is_sse), Preset::shape);
    let connections = args.connections.unwrap_or(preset_conns);
    let k = args.symbols_per_connection.unwrap_or(preset_k);
    let sse = url_is_sse || preset_sse;
    let path = if sse && !path.starts_with("/sse") { "/sse".to_owned() } else { path };
    if connections as u64 + 64 > fd_limit {
        return Err(format!("{connections} connections need more file descriptors than the limit {fd_limit}"));
    }
    let setup = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let symbols = if args.symbols.is_empty() { setup.block_on(fetch_symbols(addr))? } else { args.symbols.clone() };
    if symbols.is_empty() && k != 0 {
        return Err("the server has no symbols yet".into());
    }
    let queries: Vec<String> = (0..connections)
        .map(|i| {
            let prefix = if args.protocol == Protocol::Socketio { "EIO=4&transport=websocket&" } else { "" };
            let query = if k == 0 {
                "symbols=*".to_owned()
            } else {
                let chosen: Vec<&str> = (0..k.min(symbols.len())).map(|j| symbols[(i * k + j) % symbols.len()].as_str()).collect();
                format!("symbols={}", chosen.join(","))
            };
            format!("{prefix}{query}")
        })
        .collect();
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from)).max(1);
    let ramp_s = connections as f64 / args.ramp.max(1.0);
    let ramp_start = Instant::now();
    let window_start = ramp_start + Duration::from_secs_f64(ramp_s + args.warmup);
    let window_end = window_start + Duration::from_secs_f64(args.duration);
    let plan = Arc::new(Plan {
        addr,
        path,
        sse,
        socketio: args.protocol == Protocol::Socketio,
        kernel_time: !args.no_kernel_time,
        queries,
        ramp_start,
        ramp: args.ramp.max(1.0),
        window: (window_start, window_end),
        end: window_end + Duration::from_millis(300),
        open: AtomicI64::new(0),
    });
    let rss_before = args.server_pid.and_then(procstat::sample);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let plan = Arc::clone(&plan);
            std::thread::spawn(move || client_thread(&plan, t, threads))
        })
        .collect();

    std::thread::sleep(window_start.saturating_duration_since(Instant::now()));
    let (server_start, client_start) = (args.server_pid.and_then(procstat::sample), procstat::sample(std::process::id()));
    let clocks_start = (now_us(), Instant::now());
    let connected = plan.open.load(Ordering::Relaxed).max(0) as u64;
    std::thread::sleep(window_end.saturating_duration_since(Instant::now()));
    let (server_end, client_end) = (args.server_pid.and_then(procstat::sample), procstat::sample(std::process::id()));
    let clocks_end = (now_us(), Instant::now());

    let mut stats = Stats::default();
    for worker in workers {
        let thread_stats = worker.join().map_err(|_| "a client thread panicked".to_owned())?;
        stats.merge(&thread_stats);
    }
    stats.connected = connected;
    let cpu = |a: Option<procstat::Sample>, b: Option<procstat::Sample>| Some((b?.cpu_s - a?.cpu_s) / args.duration * 100.0);
    let report = Report {
        scenario: args.preset.map_or("custom", |p| match p {
            Preset::Quiet => "quiet",
            Preset::Dashboard => "dashboard",
            Preset::Storm => "storm",
            Preset::Firehose => "firehose",
            Preset::Idle => "idle",
            Preset::Sse => "sse",
        }),
        url: &args.url,
        connections,
        duration_s: args.duration,
        stats: &stats,
        server_cpu_pct: cpu(server_start, server_end),
        server_rss_kib: rss_before.zip(server_end).map(|(a, b)| (a.rss_kib, b.rss_kib)),
        client_cpu_pct: cpu(client_start, client_end).unwrap_or(0.0),
        client_threads: threads,
        clock_step_us: clock_step_us(clocks_start, clocks_end),
    };
    println!("{}", report.table());
    println!("{}", report.json());
    Ok(())
}

/// How much more the wall clock advanced than the monotonic clock between two readings of
/// both (µs; negative: stepped back).
fn clock_step_us(start: (u64, Instant), end: (u64, Instant)) -> i64 {
    let wall = end.0 as i64 - start.0 as i64;
    let monotonic = end.1.duration_since(start.1).as_micros() as i64;
    wall - monotonic
}

/// One OS thread with its own single-threaded runtime: its connections share one `Stats`
/// without locks.
fn client_thread(plan: &Arc<Plan>, thread: usize, threads: usize) -> Stats {
    let stats = Rc::new(RefCell::new(Stats::default()));
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(_) => return Stats::default(),
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        for i in (thread..plan.queries.len()).step_by(threads) {
            let due = plan.ramp_start + Duration::from_secs_f64(i as f64 / plan.ramp);
            tokio::time::sleep_until(due.into()).await;
            let (plan, stats) = (Arc::clone(plan), Rc::clone(&stats));
            tokio::task::spawn_local(async move {
                let started = Instant::now();
                match connect(&plan, i).await {
                    Ok((stream, leftover, chunked)) => {
                        plan.open.fetch_add(1, Ordering::Relaxed);
                        let ended_early = read_loop(&plan, stream, leftover, chunked, started, &stats).await;
                        plan.open.fetch_sub(1, Ordering::Relaxed);
                        if ended_early {
                            stats.borrow_mut().dropped += 1;
                        }
                    }
                    Err(err) => {
                        let mut s = stats.borrow_mut();
                        if s.connect_errors == 0 {
                            eprintln!("fanout: connection {i} failed: {err}");
                        }
                        s.connect_errors += 1;
                    }
                }
            });
        }
        tokio::time::sleep_until(plan.end.into()).await;
    });
    drop(local);
    Rc::try_unwrap(stats).map(RefCell::into_inner).unwrap_or_default()
}

/// Opens connection `i`: the stream, bytes already read past the response head, and
/// whether the body is chunked (SSE).
async fn connect(plan: &Plan, i: usize) -> std::io::Result<(TcpStream, Vec<u8>, bool)> {
    let socket = TcpSocket::new_v4()?;
    // Past ~28k connections one source address runs out of ephemeral ports: spread them
    // over 127.0.0.x (all loopback).
    if plan.queries.len() > 20_000 && plan.addr.ip().is_loopback() {
        let ip = Ipv4Addr::new(127, 0, 0, 1 + (i / 20_000) as u8);
        socket.bind(SocketAddr::from((ip, 0)))?;
    }
    let mut stream = socket.connect(plan.addr).await?;
    stream.set_nodelay(true)?;
    if plan.kernel_time {
        kernel_time::enable(&stream)?;
    }
    let path = format!("{}?{}", plan.path, plan.queries[i]);
    if plan.sse {
        let (chunked, rest) = sse::open(&mut stream, plan.addr, &path).await?;
        Ok((stream, rest, chunked))
    } else {
        let rest = ws::handshake(&mut stream, plan.addr, &path).await?;
        Ok((stream, rest, false))
    }
}

/// Per-connection view of what it received.
struct Tracker {
    /// Keyed with foldhash: the default SipHash was a sixth of the tool's own time on the
    /// firehose, and the keys come from the server under test, not from an adversary.
    last_seq: HashMap<Vec<u8>, u64, foldhash::fast::RandomState>,
    first_message: bool,
    started: Instant,
}

impl Tracker {
    fn on_message(&mut self, json: &[u8], at: Arrival, stats: &mut Stats) {
        if self.first_message {
            self.first_message = false;
            let _ = stats.connect_us.record(self.started.elapsed().as_micros().max(1) as u64);
        }
        let Some(tick) = tick_fields(json) else { return };
        if tick.snapshot {
            stats.snapshots += 1;
            self.last_seq.insert(tick.symbol.to_vec(), tick.seq);
            return;
        }
        let previous = match self.last_seq.get_mut(tick.symbol) {
            Some(seq) => Some(std::mem::replace(seq, tick.seq)),
            None => {
                self.last_seq.insert(tick.symbol.to_vec(), tick.seq);
                None
            }
        };
        if !at.in_window {
            return;
        }
        stats.ticks += 1;
        if tick.ts_us > at.now_us {
            stats.early += 1;
        }
        let _ = stats.latency_us.record(at.now_us.saturating_sub(tick.ts_us).max(1));
        if let Some(src_ts_us) = tick.src_ts_us {
            let _ = stats.source_latency_us.record(at.now_us.saturating_sub(src_ts_us).max(1));
        }
        if let Some(kernel_us) = at.kernel_us {
            let _ = stats.kernel_latency_us.record(kernel_us.saturating_sub(tick.ts_us).max(1));
        }
        if let Some(previous) = previous {
            if tick.seq > previous + 1 {
                if tick.conflated {
                    stats.conflated_skipped += tick.seq - previous - 1;
                } else {
                    stats.gaps += tick.seq - previous - 1;
                }
            }
        }
    }
}

/// Bytes asked for per read.
const READ_SIZE: usize = 64 * 1024;

/// Reads until the run ends; returns true if the server ended the connection first.
async fn read_loop(
    plan: &Plan,
    stream: TcpStream,
    leftover: Vec<u8>,
    chunked: bool,
    started: Instant,
    stats: &RefCell<Stats>,
) -> bool {
    let tracker = Tracker { last_seq: HashMap::default(), first_message: true, started };
    if plan.sse {
        read_sse(plan, stream, &leftover, chunked, tracker, stats).await
    } else {
        read_ws(plan, stream, leftover, tracker, stats).await
    }
}

/// When the bytes being parsed arrived.
#[derive(Clone, Copy)]
struct Arrival {
    /// When the read returned them, µs since the epoch.
    now_us: u64,
    /// When the kernel received them, µs since the epoch, if it said ([`kernel_time`]).
    kernel_us: Option<u64>,
    /// Whether inside the measurement window.
    in_window: bool,
}

/// When a read is over: its [`Arrival`], or `None` once the run has ended.
fn stamp(plan: &Plan, kernel_us: Option<u64>) -> Option<Arrival> {
    let now = Instant::now();
    let in_window = now >= plan.window.0 && now < plan.window.1;
    (now < plan.end).then(|| Arrival { now_us: now_us(), kernel_us, in_window })
}

/// Bytes asked for by a connection's first reads; each read that fills the space doubles
/// it, up to [`READ_SIZE`]. The buffer is zeroed as it grows (the kernel's receive time
/// needs `recvmsg`, which reads only into initialised memory), so 10,000 quiet connections
/// keep 4 KiB each, not 64.
const FIRST_READ_SIZE: usize = 4 * 1024;

/// A connection's read buffer: bytes are read into its free end and parsed where they lie.
struct ReadBuffer {
    bytes: Vec<u8>,
    filled: usize,
    read_size: usize,
}

impl ReadBuffer {
    fn new(mut leftover: Vec<u8>) -> Self {
        let filled = leftover.len();
        leftover.resize(filled + FIRST_READ_SIZE, 0);
        Self { bytes: leftover, filled, read_size: FIRST_READ_SIZE }
    }

    fn pending(&self) -> &[u8] {
        &self.bytes[..self.filled]
    }

    /// Drops the first `n` pending bytes and makes room for the next read.
    fn consume(&mut self, n: usize) {
        self.bytes.copy_within(n..self.filled, 0);
        self.filled -= n;
        if self.bytes.len() - self.filled < self.read_size {
            self.bytes.resize(self.filled + self.read_size, 0);
        }
    }

    fn space(&mut self) -> &mut [u8] {
        &mut self.bytes[self.filled..]
    }

    /// Counts `n` bytes read into [`Self::space`].
    fn fill(&mut self, n: usize) {
        if n == self.bytes.len() - self.filled {
            self.read_size = (self.read_size * 2).min(READ_SIZE);
        }
        self.filled += n;
    }
}

/// [`read_loop`] for WebSocket: bytes are read straight into a [`ReadBuffer`] and parsed there.
async fn read_ws(
    plan: &Plan,
    mut stream: TcpStream,
    leftover: Vec<u8>,
    mut tracker: Tracker,
    stats: &RefCell<Stats>,
) -> bool {
    let mut buffer = ReadBuffer::new(leftover);
    let mut reader = SocketReader::new(plan.kernel_time);
    let mut kernel_us = None;
    // One timer for the connection's whole life: a timeout around every read cost a timer
    // wheel insert and removal per read, a twentieth of the tool's time in the storm.
    let end = tokio::time::sleep_until(plan.end.into());
    tokio::pin!(end);
    loop {
        let Some(at) = stamp(plan, kernel_us) else { return false };
        // Parse under the borrow, answer pings after it: no RefCell borrow across an await.
        let parsed = consume_ws(buffer.pending(), plan.socketio, &mut tracker, at, &mut stats.borrow_mut());
        let Ok((consumed, replies)) = parsed else { return true };
        for (op, payload) in replies {
            if stream.write_all(&ws::client_frame(op, &payload)).await.is_err() {
                return true;
            }
        }
        buffer.consume(consumed);
        let read = tokio::select! {
            biased;
            read = reader.read(&stream, buffer.space()) => read,
            () = &mut end => return false,
        };
        match read {
            Ok((0, _)) | Err(_) => return true,
            Ok((n, stamp)) => {
                buffer.fill(n);
                kernel_us = stamp;
            }
        }
    }
}

/// [`read_loop`] for SSE: each read is de-chunked (when chunked) and split into lines where
/// it lies; only a line cut by the end of a read is copied.
async fn read_sse(
    plan: &Plan,
    stream: TcpStream,
    leftover: &[u8],
    chunked: bool,
    mut tracker: Tracker,
    stats: &RefCell<Stats>,
) -> bool {
    let mut dechunker = chunked.then(Dechunker::default);
    let mut lines = Lines::default();
    let mut consume = |bytes: &[u8], at: Arrival| {
        let mut stats = stats.borrow_mut();
        let mut on_line = |line: &[u8]| {
            if let Some(data) = line.strip_prefix(b"data: ") {
                tracker.on_message(data, at, &mut stats);
            }
        };
        match dechunker.as_mut() {
            Some(dechunker) => dechunker.feed_with(bytes, |body| lines.feed(body, &mut on_line)),
            None => lines.feed(bytes, &mut on_line),
        }
    };
    let Some(at) = stamp(plan, None) else { return false };
    consume(leftover, at);
    let mut raw = vec![0u8; READ_SIZE];
    let mut reader = SocketReader::new(plan.kernel_time);
    let end = tokio::time::sleep_until(plan.end.into());
    tokio::pin!(end);
    loop {
        let read = tokio::select! {
            biased;
            read = reader.read(&stream, &mut raw) => read,
            () = &mut end => return false,
        };
        let (n, kernel_us) = match read {
            Ok((0, _)) | Err(_) => return true,
            Ok(read) => read,
        };
        let Some(at) = stamp(plan, kernel_us) else { return false };
        consume(&raw[..n], at);
    }
}

/// Frames the client must send back: (opcode, payload).
type Replies = Vec<(u8, Vec<u8>)>;

/// Handles complete frames; returns bytes consumed and the frames to answer with, or
/// `Err` on a close frame.
fn consume_ws(
    buf: &[u8],
    socketio: bool,
    tracker: &mut Tracker,
    at: Arrival,
    stats: &mut Stats,
) -> Result<(usize, Replies), ()> {
    let (mut offset, mut replies) = (0, Vec::new());
    while let Some((op, payload, total)) = ws::parse_frame(&buf[offset..]) {
        let body = &buf[offset..][payload];
        match op {
            opcode::TEXT | opcode::CONTINUATION if socketio => {
                // Engine.IO: `0{…}` open → join the default namespace; `2` ping → `3` pong;
                // `42["tick",{…}]` an event carrying one tick.
                match body.first() {
                    Some(b'0') => replies.push((opcode::TEXT, b"40".to_vec())),
                    Some(b'2') if body.len() == 1 => replies.push((opcode::TEXT, b"3".to_vec())),
                    _ => {
                        if let Some(tick) = body.strip_prefix(b"42[\"tick\",").and_then(|t| t.strip_suffix(b"]")) {
                            tracker.on_message(tick, at, stats);
                        }
                    }
                }
            }
            opcode::TEXT | opcode::CONTINUATION => tracker.on_message(body, at, stats),
            opcode::PING => replies.push((0xA, body.to_vec())),
            opcode::CLOSE => return Err(()),
            _ => {}
        }
        offset += total;
    }
    Ok((offset, replies))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes not yet parsed stay at the front; a read that fills the room doubles it, up to
    /// [`READ_SIZE`], and the buffer keeps room for at least one read.
    #[test]
    fn the_read_buffer_grows_only_when_reads_fill_it() {
        let mut buffer = ReadBuffer::new(b"abc".to_vec());
        assert_eq!(buffer.space().len(), FIRST_READ_SIZE);
        assert_eq!(buffer.pending(), b"abc");
        buffer.space()[..2].copy_from_slice(b"de");
        buffer.fill(2);
        buffer.consume(4);
        assert_eq!((buffer.pending(), buffer.read_size), (&b"e"[..], FIRST_READ_SIZE));
        let room = buffer.space().len();
        buffer.fill(room);
        buffer.consume(0);
        assert_eq!(buffer.read_size, 2 * FIRST_READ_SIZE);
        assert!(buffer.space().len() >= 2 * FIRST_READ_SIZE);
        for _ in 0..10 {
            let room = buffer.space().len();
            buffer.fill(room);
            let filled = buffer.pending().len();
            buffer.consume(filled);
        }
        assert_eq!((buffer.read_size, buffer.pending().len()), (READ_SIZE, 0));
        assert!(buffer.space().len() >= READ_SIZE);
    }

    #[test]
    fn a_wall_clock_step_is_what_the_monotonic_clock_did_not_see() {
        let start = Instant::now();
        let end = start + Duration::from_millis(2);
        assert_eq!(clock_step_us((1_000_000, start), (1_002_000, end)), 0);
        assert_eq!(clock_step_us((1_000_000, start), (1_003_500, end)), 1_500);
        assert_eq!(clock_step_us((1_000_000, start), (999_000, end)), -3_000);
    }

    #[test]
    fn ticks_stamped_after_their_arrival_are_counted() {
        let mut tracker = Tracker { last_seq: HashMap::default(), first_message: false, started: Instant::now() };
        let mut stats = Stats::default();
        let tick = |seq: u64, ts: u64| format!(r#"{{"type":"tick","symbol":"A","seq":{seq},"ts":{ts},"price":1}}"#);
        let at = Arrival { now_us: 1_000, kernel_us: None, in_window: true };
        tracker.on_message(tick(1, 900).as_bytes(), at, &mut stats);
        tracker.on_message(tick(2, 1_000).as_bytes(), at, &mut stats);
        tracker.on_message(tick(3, 1_001).as_bytes(), at, &mut stats);
        assert_eq!((stats.ticks, stats.early), (3, 1));
        assert_eq!(stats.latency_us.max(), 100);
    }

    /// A tick with the source's own time is measured from it as well: a tick due at 700 µs,
    /// published at 900 and read at 1,000 waited 300 µs, of which `ts` shows 100.
    #[test]
    fn ticks_with_a_source_time_are_measured_from_it_too() {
        let mut tracker = Tracker { last_seq: HashMap::default(), first_message: false, started: Instant::now() };
        let mut stats = Stats::default();
        let with_src = br#"{"type":"tick","symbol":"A","seq":1,"ts":900,"src_ts":700,"price":1}"#;
        let at = Arrival { now_us: 1_000, kernel_us: None, in_window: true };
        tracker.on_message(with_src, at, &mut stats);
        tracker.on_message(br#"{"type":"tick","symbol":"A","seq":2,"ts":950,"price":1}"#, at, &mut stats);
        assert_eq!((stats.latency_us.len(), stats.latency_us.max()), (2, 100));
        assert_eq!((stats.source_latency_us.len(), stats.source_latency_us.max()), (1, 300));
    }

    /// A read the kernel stamped measures its ticks up to that stamp as well: a tick
    /// published at 900, received by the kernel at 940 and parsed at 1,000 waited 40 µs in
    /// the server's hands.
    #[test]
    fn ticks_are_measured_to_the_kernels_receive_time_when_it_is_known() {
        let mut tracker = Tracker { last_seq: HashMap::default(), first_message: false, started: Instant::now() };
        let mut stats = Stats::default();
        let tick = br#"{"type":"tick","symbol":"A","seq":1,"ts":900,"price":1}"#;
        tracker.on_message(tick, Arrival { now_us: 1_000, kernel_us: Some(940), in_window: true }, &mut stats);
        let unstamped = br#"{"type":"tick","symbol":"A","seq":2,"ts":900,"price":1}"#;
        tracker.on_message(unstamped, Arrival { now_us: 1_000, kernel_us: None, in_window: true }, &mut stats);
        assert_eq!((stats.latency_us.len(), stats.latency_us.max()), (2, 100));
        assert_eq!((stats.kernel_latency_us.len(), stats.kernel_latency_us.max()), (1, 40));
    }
}
