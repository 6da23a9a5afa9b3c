//! Getting the raw TCP socket back after hyper's upgrade, split into the half that reads
//! client frames (handed to fastwebsockets in the reader task) and the half the session
//! writes batches of frames to.
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

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite},
    net::{tcp::OwnedWriteHalf, TcpStream},
};

/// The read side of an upgraded connection. Boxed: client ops are rare next to ticks, so a
/// dynamic call per read does not matter.
pub(crate) type Reader = Pin<Box<dyn AsyncRead + Send>>;

/// The write side of an upgraded connection.
pub(crate) enum Sink {
    /// The connection's own TCP write half: lock-free, with a non-blocking fast path.
    Tcp(OwnedWriteHalf),
    /// Fallback when the upgraded stream is not our `TcpStream` (never expected with the
    /// server as built, kept so a future transport such as TLS still works).
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

/// Splits an upgraded connection into its reader and its sink.
pub(crate) fn split(upgraded: Upgraded) -> (Reader, Sink) {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let (read, write) = parts.io.into_inner().into_split();
            let reader = std::io::Cursor::new(parts.read_buf).chain(read);
            (Box::pin(reader), Sink::Tcp(write))
        }
        Err(upgraded) => {
            tracing::debug!("upgraded stream is not a TcpStream; using the generic split");
            let (read, write) = tokio::io::split(TokioIo::new(upgraded));
            (Box::pin(read), Sink::Upgraded(write))
        }
    }
}
