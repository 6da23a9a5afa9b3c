//! Getting the raw TCP socket back after hyper's upgrade, split into the half the session
//! reads client frames from and the half it writes batches of frames to, and the one read
//! that hands client bytes to a [`Decoder`].
//!
//! Why: hyper's `Upgraded` is a boxed, type-erased stream; writing through it costs a dynamic
//! call and, split with `tokio::io::split`, a lock per write. Downcasting to the `TcpStream`
//! we served the connection on gives `into_split` halves with no lock and lets the session try
//! a non-blocking `try_write` first, so a batch that fits the socket buffer never creates a
//! timer or a future. Bytes hyper already read past the request head go in front of the read
//! half so no client frame is lost.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpStream,
    },
};

use super::codec::LazyDecoder;

/// Bytes one read takes from the socket. The buffer lives on the stack only while a read is
/// polled, never in the connection's state, so an idle connection holds no read buffer at
/// all; client ops are small, and a larger message simply takes several reads.
const READ_CHUNK_BYTES: usize = 2048;

/// The read side of an upgraded connection.
///
/// Not a boxed `dyn AsyncRead`: the session polls its reader on every turn of its loop, ticks
/// or not, so that poll should be a direct call on the socket.
pub(crate) enum Reader {
    /// The connection's own TCP read half.
    Tcp(OwnedReadHalf),
    /// Fallback when the upgraded stream is not our `TcpStream` (TLS).
    Upgraded(tokio::io::ReadHalf<TokioIo<Upgraded>>),
}

impl Reader {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Tcp(half) => Pin::new(half).poll_read(cx, buf),
            Self::Upgraded(half) => Pin::new(half).poll_read(cx, buf),
        }
    }
}

/// The write side of an upgraded connection.
pub(crate) enum Sink {
    /// The connection's own TCP write half: lock-free, with a non-blocking fast path.
    Tcp(OwnedWriteHalf),
    /// Every connection served over TLS (`--tls-cert`): the upgraded stream is then a
    /// `TlsStream`, whose reads and writes share one TLS state, so its halves share a lock
    /// and the session always takes the async write path.
    Upgraded(tokio::io::WriteHalf<TokioIo<Upgraded>>),
}

impl Sink {
    /// Writes what the socket takes without waiting.
    ///
    /// # Errors
    /// `WouldBlock` when nothing can be written now (always, for the fallback), or the
    /// socket's error.
    pub(crate) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(half) => half.try_write(buf),
            Self::Upgraded(_) => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl AsyncWrite for Sink {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(half) => Pin::new(half).poll_write(cx, buf),
            Self::Upgraded(half) => Pin::new(half).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(half) => Pin::new(half).poll_flush(cx),
            Self::Upgraded(half) => Pin::new(half).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(half) => Pin::new(half).poll_shutdown(cx),
            Self::Upgraded(half) => Pin::new(half).poll_shutdown(cx),
        }
    }
}

/// Reads what the client sent into `decoder`; `Ok(0)` at EOF.
///
/// # Cancel safety
/// Cancel safe: bytes are handed to the decoder in the same poll that reads them, so a
/// dropped future never loses any (which is why the session may `select!` on it, unlike
/// fastwebsockets' `read_frame`).
pub(crate) async fn read_into(reader: &mut Reader, decoder: &mut LazyDecoder) -> io::Result<usize> {
    std::future::poll_fn(|cx| {
        // Uninitialised: most polls find nothing to read, and zeroing 2 KiB each time showed
        // in profiles.
        let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK_BYTES];
        let mut buf = ReadBuf::uninit(&mut chunk);
        match reader.poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                decoder.feed(buf.filled());
                Poll::Ready(Ok(buf.filled().len()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// An upgraded connection, split.
pub(crate) struct Split {
    pub(crate) reader: Reader,
    pub(crate) sink: Sink,
    /// What the client sent right after its request head, already read by hyper: feed it to
    /// the decoder before reading the socket.
    pub(crate) early: Bytes,
}

/// Splits an upgraded connection into its reader and its sink.
pub(crate) fn split(upgraded: Upgraded) -> Split {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let (read, write) = parts.io.into_inner().into_split();
            // `read_buf` is a view into hyper's whole read buffer (8 KiB and more): keeping it,
            // even empty, would keep that buffer alive for the connection's life. Copy out the
            // few bytes a client may have sent after its request head, if any.
            let early = if parts.read_buf.is_empty() { Bytes::new() } else { Bytes::copy_from_slice(&parts.read_buf) };
            Split { reader: Reader::Tcp(read), sink: Sink::Tcp(write), early }
        }
        Err(upgraded) => {
            tracing::debug!("upgraded stream is not a TcpStream; using the generic split");
            // hyper's own stream replays the bytes it read ahead: nothing is early here.
            let (read, write) = tokio::io::split(TokioIo::new(upgraded));
            Split { reader: Reader::Upgraded(read), sink: Sink::Upgraded(write), early: Bytes::new() }
        }
    }
}
