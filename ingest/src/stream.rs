//! Live JSON lines: from standard input (`--stdin`) and from TCP publishers
//! (`--ingest-tcp ADDR`). Both are the same loop, [`run_reader`], over a different byte
//! stream; tests drive it with in-memory bytes.
//!
//! A line counts only once its `\n` arrives. When a TCP publisher disconnects mid-line, the
//! partial line is dropped and counted as malformed ([`LineError::Unterminated`]): a
//! connection cut in the middle of a number would otherwise publish a wrong price. On stdin
//! the end of input is deliberate (a pipe closing), so a last line without `\n` is accepted,
//! like the last line of a file.
//!
//! Each TCP connection is its own task with its own line numbers and warning budget, so one
//! misbehaving publisher neither slows nor silences the others. At most
//! [`MAX_TCP_PUBLISHERS`] are connected at once; beyond that new connections are closed at
//! once with a warning. Which address to listen on (loopback by default) is the binary's
//! decision: this module takes a bound listener. With a [`PublisherToken`], each connection
//! must first send `AUTH <token>` (see [`crate::publisher`]); a connection that does not is
//! told `ERR unauthorized` and closed before any of its lines is read as a tick.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    task::{ready, Context, Poll},
    time::Duration,
};

use feed_engine::Engine;
use tokio::{
    io::{AsyncBufRead, AsyncRead, BufReader, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, error, info, info_span, warn, Instrument as _};

use crate::{
    framing::{Frame, LineReader},
    line::{JsonParser, LineError, TsUnit, MAX_LINE_BYTES},
    publisher::{self, PublisherToken},
    sink::LineSink,
    stats::{IngestStats, LineCounts, SourceKind},
    Error,
};

/// Most TCP publishers connected at once; each holds a task and up to two line buffers.
pub const MAX_TCP_PUBLISHERS: usize = 256;
/// Read buffer per stream.
const READ_BUFFER_BYTES: usize = 16 * 1024;
/// Chunks of stdin in flight between the reading thread and the parser.
const STDIN_CHUNKS: usize = 4;
/// Longest pause after an accept error such as running out of file descriptors.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Reads JSON lines from `reader` and publishes them until the input ends or `shutdown` is
/// cancelled. `name` identifies the source in logs ("stdin", a peer address). A last line
/// without `\n` is published, except for [`SourceKind::Tcp`], which drops it.
///
/// # Errors
/// The reader's I/O error; lines published before it stay published.
///
/// # Cancel safety
/// Cancelling `shutdown` stops it between lines; dropping the future loses at most the
/// line being read, which was never published.
pub async fn run_reader<R: AsyncRead + Unpin>(
    engine: &Engine,
    reader: R,
    kind: SourceKind,
    name: &str,
    ts_unit: TsUnit,
    shutdown: &CancellationToken,
    stats: &IngestStats,
) -> io::Result<LineCounts> {
    let reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    run_lines(engine, reader, kind, name, ts_unit, shutdown, stats, 0).await
}

/// [`run_reader`] over a buffered reader whose first `lines_before` lines were already read
/// (an `AUTH` line), so logged line numbers still count from the start of the connection.
#[allow(clippy::too_many_arguments)] // private; each argument is one plain setting
async fn run_lines<R: AsyncBufRead + Unpin>(
    engine: &Engine,
    reader: R,
    kind: SourceKind,
    name: &str,
    ts_unit: TsUnit,
    shutdown: &CancellationToken,
    stats: &IngestStats,
    lines_before: u64,
) -> io::Result<LineCounts> {
    let mut lines = LineReader::new(reader, MAX_LINE_BYTES);
    let mut parser = JsonParser::new(ts_unit);
    let mut sink = LineSink::new(engine, stats, kind, name);
    let mut line_number = lines_before;
    let result = loop {
        // `next_frame` is cancel safe, so losing this race to shutdown loses no bytes.
        let frame = tokio::select! {
            biased;
            () = shutdown.cancelled() => break Ok(()),
            frame = lines.next_frame() => frame,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break Ok(()),
            Err(error) => break Err(error),
        };
        line_number += 1;
        let line = match frame {
            Frame::Line(line) => line,
            Frame::Unterminated(_) if kind == SourceKind::Tcp => {
                sink.reject(line_number, &LineError::Unterminated);
                continue;
            }
            Frame::Unterminated(line) => line,
            Frame::TooLong { len_bytes } => {
                sink.reject(line_number, &LineError::TooLong { len_bytes });
                continue;
            }
        };
        match parser.parse(line) {
            Ok(Some(quote)) => {
                sink.publish(line_number, &quote);
            }
            Ok(None) => {}
            Err(error) => sink.reject(line_number, &error),
        }
    };
    let counts = sink.finish();
    result.map(|()| counts)
}

/// Publishes JSON lines from standard input until it closes or `shutdown` is cancelled.
/// Errors are logged, not returned: stdin ending is a normal way for this source to stop.
pub async fn run_stdin(engine: Engine, ts_unit: TsUnit, shutdown: CancellationToken, stats: Arc<IngestStats>) {
    async move {
        info!("reading ticks from stdin");
        match run_reader(&engine, stdin_reader(), SourceKind::Stdin, "stdin", ts_unit, &shutdown, &stats).await {
            Ok(counts) => info!(published = counts.published, malformed = counts.malformed, "stdin finished"),
            Err(error) => error!(%error, "reading stdin failed"),
        }
    }
    .instrument(info_span!("stdin"))
    .await;
}

/// Binds a TCP listener for [`run_tcp`].
///
/// # Errors
/// [`Error::Bind`] naming the address.
pub async fn bind_tcp(addr: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr: addr.to_owned(), source })
}

/// Accepts TCP publishers of JSON lines on `listener` until `shutdown` is cancelled, then
/// stops every connection and waits for them to finish. With `token`, each publisher must
/// send `AUTH <token>` as its first line.
///
/// # Errors
/// None at present: accept failures are logged and retried with back-off, so a burst of
/// them (out of file descriptors) never ends the source. The `Result` leaves room for
/// failures a caller must act on.
pub async fn run_tcp(
    engine: Engine,
    listener: TcpListener,
    ts_unit: TsUnit,
    token: Option<PublisherToken>,
    shutdown: CancellationToken,
    stats: Arc<IngestStats>,
) -> Result<(), Error> {
    let listen = listener.local_addr().map(|addr| addr.to_string()).unwrap_or_default();
    let token = token.map(Arc::new);
    async move {
        info!(authenticated = token.is_some(), "accepting tick publishers");
        let tracker = TaskTracker::new();
        let mut backoff = Duration::ZERO;
        loop {
            let accepted = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::ZERO;
                    if tracker.len() >= MAX_TCP_PUBLISHERS {
                        warn!(%peer, limit = MAX_TCP_PUBLISHERS, "too many tick publishers; connection closed");
                        continue;
                    }
                    let publisher = serve_publisher(
                        engine.clone(),
                        stream,
                        peer,
                        ts_unit,
                        token.clone(),
                        shutdown.child_token(),
                        Arc::clone(&stats),
                    );
                    tracker.spawn(publisher.instrument(info_span!("tcp_publisher", %peer)));
                }
                // The peer gave up before we got to it: nothing to do with the listener.
                Err(error) if is_connection_error(&error) => debug!(%error, "publisher vanished during accept"),
                Err(error) => {
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                    error!(%error, ?backoff, "accepting tick publishers failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
        tracker.close();
        tracker.wait().await;
        info!("tick publishers closed");
        Ok(())
    }
    .instrument(info_span!("tcp_ingest", %listen))
    .await
}

async fn serve_publisher(
    engine: Engine,
    stream: TcpStream,
    peer: SocketAddr,
    ts_unit: TsUnit,
    token: Option<Arc<PublisherToken>>,
    shutdown: CancellationToken,
    stats: Arc<IngestStats>,
) {
    stats.tcp_publishers.fetch_add(1, Ordering::Relaxed);
    debug!("publisher connected");
    let name = peer.to_string();
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, stream);
    let mut lines_before = 0;
    if let Some(token) = token {
        if !admit(&mut reader, &token, &shutdown).await {
            stats.tcp_publishers.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        lines_before = 1;
    }
    match run_lines(&engine, reader, SourceKind::Tcp, &name, ts_unit, &shutdown, &stats, lines_before).await {
        Ok(counts) => info!(published = counts.published, malformed = counts.malformed, "publisher disconnected"),
        // A reset connection loses only its unfinished line, which was never published.
        Err(error) => warn!(%error, "publisher connection failed"),
    }
    stats.tcp_publishers.fetch_sub(1, Ordering::Relaxed);
}

/// Checks the publisher's `AUTH` line; a refused publisher is told so and closed.
/// `false` when the connection must not be read further (refused, or shutting down).
async fn admit(reader: &mut BufReader<TcpStream>, token: &PublisherToken, shutdown: &CancellationToken) -> bool {
    let checked = tokio::select! {
        () = shutdown.cancelled() => return false,
        checked = publisher::authenticate(reader, token) => checked,
    };
    match checked {
        Ok(()) => {
            debug!("publisher authenticated");
            true
        }
        Err(refusal) => {
            warn!(reason = refusal.as_str(), "publisher refused");
            publisher::refuse(reader.get_mut()).await;
            false
        }
    }
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Standard input as an [`AsyncRead`], read by a plain thread.
///
/// Tokio's own `stdin()` reads on the blocking pool, and a read blocked on a terminal cannot
/// be cancelled, so runtime shutdown would hang until the user pressed Enter. A detached
/// thread blocked in `read` does not hold the process up: when the receiver is gone, the
/// thread ends at its next send, or with the process.
fn stdin_reader() -> ChunkReader {
    let (sender, receiver) = mpsc::channel(STDIN_CHUNKS);
    let reader = ChunkReader { receiver, chunk: Vec::new(), offset: 0 };
    let spawned = std::thread::Builder::new().name("tickfeed-stdin".into()).spawn(move || {
        use std::io::Read as _;
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut chunk = vec![0; READ_BUFFER_BYTES];
            let read = match stdin.read(&mut chunk) {
                Ok(0) => return,
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    let _ = sender.blocking_send(Err(error));
                    return;
                }
            };
            chunk.truncate(read);
            if sender.blocking_send(Ok(chunk)).is_err() {
                return;
            }
        }
    });
    if let Err(error) = spawned {
        // The sender went with the closure, so the reader sees end of input; say why.
        error!(%error, "cannot start the stdin thread");
    }
    reader
}

/// An [`AsyncRead`] over chunks of bytes arriving on a channel; the channel closing is the
/// end of input.
struct ChunkReader {
    receiver: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    offset: usize,
}

impl AsyncRead for ChunkReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.offset == this.chunk.len() {
            match ready!(this.receiver.poll_recv(cx)) {
                Some(Ok(chunk)) => {
                    this.chunk = chunk;
                    this.offset = 0;
                }
                Some(Err(error)) => return Poll::Ready(Err(error)),
                None => return Poll::Ready(Ok(())),
            }
        }
        let len = buf.remaining().min(this.chunk.len() - this.offset);
        buf.put_slice(&this.chunk[this.offset..this.offset + len]);
        this.offset += len;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt as _;

    use super::*;

    #[tokio::test]
    async fn chunk_reader_reassembles_the_stream() {
        let (sender, receiver) = mpsc::channel(4);
        let mut reader = ChunkReader { receiver, chunk: Vec::new(), offset: 0 };
        tokio::spawn(async move {
            for chunk in [&b"ab"[..], b"", b"cde", b"f"] {
                sender.send(Ok(chunk.to_vec())).await.expect("reader alive");
            }
        });
        let mut all = Vec::new();
        reader.read_to_end(&mut all).await.expect("no error");
        assert_eq!(all, b"abcdef");
    }

    #[tokio::test]
    async fn chunk_reader_passes_errors_on() {
        let (sender, receiver) = mpsc::channel(1);
        let mut reader = ChunkReader { receiver, chunk: Vec::new(), offset: 0 };
        sender.send(Err(io::Error::other("boom"))).await.expect("reader alive");
        let mut all = Vec::new();
        assert!(reader.read_to_end(&mut all).await.is_err());
    }
}
