//! Getting the raw TCP socket back after hyper's upgrade, the one read that hands client
//! bytes to a [`Decoder`](super::codec::Decoder), and the writes that send batches of frames.
//!
//! Why: hyper's `Upgraded` is a boxed, type-erased stream, and writing through it costs a
//! dynamic call. Downcasting to the `TcpStream` we served the connection on gives the socket
//! itself, with a non-blocking `try_write` first, so a batch that fits the socket buffer never
//! creates a timer or a future. Neither kind is split into halves: the session is one task
//! that reads and writes in turn, and halves would cost every connection a shared allocation
//! (and a lock per read or write over TLS). Bytes hyper already read past the request head are
//! handed back with the socket so no client frame is lost.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

use super::codec::LazyDecoder;

/// Bytes one read takes from the socket. The buffer lives on the stack only while a read is
/// polled, never in the connection's state, so an idle connection holds no read buffer at
/// all; client ops are small, and a larger message simply takes several reads.
const READ_CHUNK_BYTES: usize = 2048;

/// An upgraded connection.
///
/// Not a boxed `dyn AsyncRead + AsyncWrite`: the session polls its socket on every turn of its
/// loop, ticks or not, so that poll should be a direct call.
pub(crate) enum Socket {
    /// The connection's own TCP socket: lock-free, with a non-blocking write fast path.
    Tcp(TcpStream),
    /// Every connection served over TLS (`--tls-cert`): the upgraded stream is then a
    /// `TlsStream` behind hyper's type erasure, and the session always takes the async write
    /// path. Boxed, so that plain TCP connections do not carry its size.
    Upgraded(Box<TokioIo<Upgraded>>),
}

impl Socket {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Upgraded(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }

    /// The plain TCP socket's descriptor, for the engine's wake-ups to write to (see
    /// `direct`); `None` over TLS.
    pub(crate) fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd as _;
        match self {
            Self::Tcp(stream) => Some(stream.as_raw_fd()),
            Self::Upgraded(..) => None,
        }
    }

    /// Writes what the socket takes without waiting.
    ///
    /// # Errors
    /// `WouldBlock` when nothing can be written now (always, for the fallback), or the
    /// socket's error.
    pub(crate) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(stream) => stream.try_write(buf),
            Self::Upgraded(..) => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Upgraded(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Self::Upgraded(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Upgraded(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

/// Reads what the client sent into `decoder`; `Ok(0)` at EOF.
///
/// # Cancel safety
/// Cancel safe: bytes are handed to the decoder in the same poll that reads them, so a
/// dropped future never loses any (which is why the session may `select!` on it, unlike
/// fastwebsockets' `read_frame`).
///
/// Not an `async fn`, for the same reason as `Subscriber::ready`: the session's loop keeps
/// this future in every idle connection's task, and this way it is just the two references.
pub(crate) fn read_into<'a>(
    socket: &'a mut Socket,
    decoder: &'a mut LazyDecoder,
) -> impl Future<Output = io::Result<usize>> + Send + 'a {
    std::future::poll_fn(move |cx| {
        // Uninitialised: most polls find nothing to read, and zeroing 2 KiB each time showed
        // in profiles.
        let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK_BYTES];
        let mut buf = ReadBuf::uninit(&mut chunk);
        match socket.poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                decoder.feed(buf.filled());
                Poll::Ready(Ok(buf.filled().len()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    })
}

/// An upgraded connection, and what the client sent right after its request head, already
/// read by hyper: feed that to the decoder before reading the socket.
pub(crate) struct Upgrade {
    pub(crate) socket: Socket,
    pub(crate) early: Bytes,
}

/// Takes the socket back out of hyper's upgraded connection.
pub(crate) fn unwrap(upgraded: Upgraded) -> Upgrade {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            // `read_buf` is a view into hyper's whole read buffer (8 KiB and more): keeping it,
            // even empty, would keep that buffer alive for the connection's life. Copy out the
            // few bytes a client may have sent after its request head, if any.
            let early = if parts.read_buf.is_empty() { Bytes::new() } else { Bytes::copy_from_slice(&parts.read_buf) };
            Upgrade { socket: Socket::Tcp(parts.io.into_inner()), early }
        }
        Err(upgraded) => {
            tracing::debug!("upgraded stream is not a TcpStream; using it through hyper");
            // hyper's own stream replays the bytes it read ahead: nothing is early here.
            Upgrade { socket: Socket::Upgraded(Box::new(TokioIo::new(upgraded))), early: Bytes::new() }
        }
    }
}
