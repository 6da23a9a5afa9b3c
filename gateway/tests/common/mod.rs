//! Shared test support: a gateway on `127.0.0.1:0` in this process with a real engine, and
//! independent clients (tokio-tungstenite for WebSocket, a raw HTTP/1.1 client for SSE and
//! plain requests).
#![allow(dead_code, clippy::unwrap_used, clippy::missing_panics_doc)]

use std::{future::Future, net::SocketAddr, time::Duration};

use feed_engine::{Engine, EngineConfig, Quote};
use futures_util::{SinkExt as _, StreamExt as _};
use gateway::GatewayConfig;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{TcpSocket, TcpStream},
    task::JoinHandle,
};
use tokio_tungstenite::{
    tungstenite::{protocol::CloseFrame, Message},
    MaybeTlsStream, WebSocketStream,
};
use tokio_util::sync::CancellationToken;

/// Every socket test runs within this, so a bug fails fast instead of hanging.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The epoch tests fix so they can assert it.
pub const EPOCH: &str = "test-epoch";

/// Runs `test` or fails after [`TEST_TIMEOUT`].
pub async fn within<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, test).await.expect("test timed out")
}

/// A running gateway.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its engine: tests publish through it.
    pub engine: Engine,
    /// Cancel to shut the gateway down.
    pub shutdown: CancellationToken,
    /// `serve`'s own task.
    pub handle: JoinHandle<Result<(), gateway::Error>>,
}

impl Server {
    /// Publishes one tick of `symbol`, returning its seq.
    pub fn publish(&self, symbol: &str, price: f64) -> u64 {
        self.engine.publish(&quote(symbol, price)).expect("valid quote").seq
    }

    /// `ws://…/ws` plus `query`.
    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/ws{query}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A gateway with default settings and a fixed epoch.
pub async fn start() -> Server {
    start_with(EngineConfig::default(), GatewayConfig::default()).await
}

/// A gateway with these settings (the epoch is fixed to [`EPOCH`] unless set).
pub async fn start_with(mut engine_config: EngineConfig, config: GatewayConfig) -> Server {
    engine_config.epoch.get_or_insert_with(|| EPOCH.to_owned());
    let engine = Engine::new(engine_config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(gateway::serve(listener, engine.clone(), config, shutdown.clone()));
    Server { addr, engine, shutdown, handle }
}

/// A quote with only a price.
pub fn quote(symbol: &str, price: f64) -> Quote<'_> {
    Quote { symbol, price, size: Some(1.0), ..Quote::default() }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects and returns the socket after reading `welcome`.
pub async fn connect(server: &Server, query: &str) -> (Ws, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url(query)).await.expect("websocket connect");
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (ws, welcome)
}

/// Sends a JSON op.
pub async fn send<S>(ws: &mut WebSocketStream<S>, op: Value)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::text(op.to_string())).await.expect("send");
}

/// The next text message as JSON, skipping pings and pongs; panics on anything else.
pub async fn next_json<S>(ws: &mut WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("server sends JSON"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// The next message that is not a heartbeat.
pub async fn next_non_heartbeat<S>(ws: &mut WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let message = next_json(ws).await;
        if message["type"] != "heartbeat" {
            return message;
        }
    }
}

/// Reads until the server's close frame and returns its code (texts in between are skipped).
pub async fn close_code<S>(ws: &mut WebSocketStream<S>) -> u16
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(Some(CloseFrame { code, .. })))) => return code.into(),
            Some(Ok(Message::Close(None))) => panic!("close frame without a code"),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// Asserts a tick's symbol, seq and flags.
#[track_caller]
pub fn assert_tick(tick: &Value, symbol: &str, seq: u64, snapshot: bool) {
    assert_eq!(tick["type"], "tick", "{tick}");
    assert_eq!(tick["symbol"], symbol, "{tick}");
    assert_eq!(tick["seq"], seq, "{tick}");
    assert_eq!(tick.get("snapshot").is_some(), snapshot, "snapshot flag: {tick}");
    if snapshot {
        assert_eq!(tick["snapshot"], true, "{tick}");
    }
}

/// A TCP connection from `source` (any loopback address) to the server.
pub async fn tcp_from(source: &str, server: &Server) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(format!("{source}:0").parse().expect("address")).expect("bind source address");
    socket.connect(server.addr).await.expect("connect")
}

/// A WebSocket upgrade request head for `path`.
pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// An HTTP response as a client sees it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// A raw HTTP/1.1 connection that has read a response head.
pub struct HttpStream {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Decoded body bytes not yet handed out.
    pending: Vec<u8>,
    ended: bool,
}

impl HttpStream {
    /// Sends `GET path` with extra header lines and reads the response head.
    pub async fn get(server: &Server, path: &str, extra_headers: &str) -> Self {
        let stream = TcpStream::connect(server.addr).await.expect("connect");
        Self::get_on(stream, path, extra_headers).await
    }

    /// Like [`HttpStream::get`] over an existing connection.
    pub async fn get_on(stream: TcpStream, path: &str, extra_headers: &str) -> Self {
        Self::request_on(stream, &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra_headers}\r\n")).await
    }

    /// Sends a raw request head and reads the response head.
    pub async fn request_on(mut stream: TcpStream, head: &str) -> Self {
        stream.write_all(head.as_bytes()).await.expect("send request");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).await.expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).await.expect("header line");
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            let (name, value) = trimmed.split_once(':').expect("header");
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        Self { reader, status, headers, pending: Vec::new(), ended: false }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Reads a `Content-Length` body.
    pub async fn into_response(mut self) -> HttpResponse {
        let len: usize = self.header("content-length").expect("content-length").parse().expect("length");
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).await.expect("body");
        HttpResponse { status: self.status, headers: self.headers, body }
    }

    /// Everything up to EOF (or a reset), raw, including what was buffered.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.pending);
        let _ = self.reader.read_to_end(&mut out).await;
        out
    }

    /// The next chunk of a chunked body; `None` after the last one.
    async fn next_chunk(&mut self) -> Option<Vec<u8>> {
        if self.ended {
            return None;
        }
        let mut line = String::new();
        if self.reader.read_line(&mut line).await.expect("chunk size") == 0 {
            self.ended = true;
            return None;
        }
        let size = usize::from_str_radix(line.trim(), 16).unwrap_or_else(|_| panic!("bad chunk size {line:?}"));
        let mut chunk = vec![0; size + 2];
        self.reader.read_exact(&mut chunk).await.expect("chunk");
        chunk.truncate(size);
        if size == 0 {
            self.ended = true;
            return None;
        }
        Some(chunk)
    }

    /// The next SSE block (an event, a comment or a `retry:`); `None` when the stream ended.
    pub async fn next_block(&mut self) -> Option<SseBlock> {
        loop {
            if let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.pending.drain(..end + 2).collect();
                return Some(SseBlock::parse(std::str::from_utf8(&block).expect("utf-8 events")));
            }
            let chunk = self.next_chunk().await?;
            self.pending.extend_from_slice(&chunk);
        }
    }

    /// The next block that is an event (skipping comments and `retry:`).
    pub async fn next_event(&mut self) -> SseBlock {
        loop {
            let block = self.next_block().await.expect("stream ended early");
            if block.event.is_some() {
                return block;
            }
        }
    }
}

/// One SSE block.
#[derive(Debug, Default, Clone)]
pub struct SseBlock {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Option<String>,
    pub comment: Option<String>,
    pub retry: Option<String>,
}

impl SseBlock {
    fn parse(text: &str) -> Self {
        let mut block = Self::default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Some(comment) = line.strip_prefix(':') {
                block.comment = Some(comment.trim().to_owned());
                continue;
            }
            let (field, value) = line.split_once(": ").unwrap_or((line, ""));
            let value = Some(value.to_owned());
            match field {
                "id" => block.id = value,
                "event" => block.event = value,
                "data" => block.data = value,
                "retry" => block.retry = value,
                other => panic!("unknown SSE field {other:?} in {text:?}"),
            }
        }
        block
    }

    /// The `data:` as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("data line")).expect("JSON data")
    }
}

/// A plain GET with a `Content-Length` body.
pub async fn http_get(server: &Server, path: &str) -> HttpResponse {
    HttpStream::get(server, path, "").await.into_response().await
}
