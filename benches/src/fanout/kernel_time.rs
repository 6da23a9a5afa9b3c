//! When the kernel received the bytes of each read (`SO_TIMESTAMPNS`), so that latency can
//! be measured up to the client's socket as well as up to the load tool's parser.
//!
//! On loopback the client's kernel stamps a segment as the server's write delivers it. Its
//! stamp minus a tick's `ts` is the server's share of the latency: what the tick waited in
//! the server, and not what it waited in the load tool's own queue. When the load tool is
//! the bottleneck (client-bound), the two latencies part, and the gap between them is the
//! tool's, until the tool falls so far behind that its receive buffers fill and hold up the
//! server's writes: that wait then counts on both. A read that drains several segments
//! carries the stamp of the last one, so for the ticks in the earlier ones the figure is an
//! upper bound.
//!
//! `recvmsg` with a control message costs little more than a plain read: 2.26 s of the
//! tool's CPU against 2.18 s over 4 s of 1,000 dashboards at 100k msgs/s, with one read per
//! message either way. `--no-kernel-time` reads plainly.

use std::{
    io::{self, IoSliceMut},
    os::fd::{AsRawFd, RawFd},
    task::{ready, Poll},
};

use nix::sys::socket::{recv, recvmsg, setsockopt, sockopt::ReceiveTimestampns, ControlMessageOwned, MsgFlags};
use tokio::{io::Interest, net::TcpStream};

/// Asks the kernel to stamp what this socket receives from now on.
pub fn enable(stream: &TcpStream) -> io::Result<()> {
    setsockopt(stream, ReceiveTimestampns, &true).map_err(io::Error::from)
}

/// Reads a connection's bytes, with the kernel's receive time if asked for; one per
/// connection, to reuse its control buffer.
pub struct SocketReader {
    /// Room for the kernel's stamp; `None` for plain reads.
    control: Option<Vec<u8>>,
}

impl SocketReader {
    /// A reader that asks for the kernel's receive time when `stamped` (the socket must have
    /// been [`enable`]d), or reads plainly.
    pub fn new(stamped: bool) -> Self {
        Self { control: stamped.then(|| nix::cmsg_space!(nix::sys::time::TimeSpec)) }
    }

    /// Reads into `buf` once it is readable: the bytes read (0 at end of stream) and when the
    /// kernel received the last of them, in µs since the epoch (`None` if not asked for or
    /// not said).
    pub async fn read(&mut self, stream: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
        // Polled like `AsyncRead` polls, not through `readable().await`: that future queues a
        // waiter under a lock on every wait.
        std::future::poll_fn(|cx| loop {
            ready!(stream.poll_read_ready(cx))?;
            // A read shorter than asked for drained the socket: report it as `WouldBlock` to
            // `try_io`, which then forgets the readiness, as tokio's own reads do. Without
            // this every read was followed by one that found nothing, twice the syscalls.
            let mut drained = None;
            let result = stream.try_io(Interest::READABLE, || {
                let (n, stamp) = self.read_now(stream, buf)?;
                if n > 0 && n < buf.len() {
                    drained = Some((n, stamp));
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok((n, stamp))
            });
            match (result, drained) {
                (_, Some(read)) => return Poll::Ready(Ok(read)),
                (Err(err), None) if err.kind() == io::ErrorKind::WouldBlock => continue,
                (result, None) => return Poll::Ready(result),
            }
        })
        .await
    }

    fn read_now(&mut self, stream: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
        let fd = stream.as_raw_fd();
        match &mut self.control {
            None => Ok((recv(fd, buf, MsgFlags::MSG_DONTWAIT)?, None)),
            Some(control) => read_stamped(fd, buf, control),
        }
    }
}

fn read_stamped(fd: RawFd, buf: &mut [u8], control: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(fd, &mut iov, Some(control), MsgFlags::MSG_DONTWAIT)?;
    let stamp = msg.cmsgs().ok().and_then(|mut cmsgs| {
        cmsgs.find_map(|cmsg| match cmsg {
            ControlMessageOwned::ScmTimestampns(ts) => {
                Some(ts.tv_sec() as u64 * 1_000_000 + ts.tv_nsec() as u64 / 1_000)
            }
            _ => None,
        })
    });
    Ok((msg.bytes, stamp))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use tokio::{
        io::AsyncWriteExt,
        net::{TcpListener, TcpStream},
    };

    use super::*;

    fn now_us() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_micros() as u64
    }

    /// A connected pair over loopback: (the writer, the reader's stream).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let writer = TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
        let (reader, _) = listener.accept().await.expect("accept");
        (writer, reader)
    }

    async fn read(reader: &mut SocketReader, stream: &TcpStream, buf: &mut [u8]) -> (usize, Option<u64>) {
        tokio::time::timeout(Duration::from_secs(5), reader.read(stream, buf)).await.expect("a read").expect("no error")
    }

    /// Each read says when the kernel received its bytes: after they were written, no later
    /// than the read returned. A short read drained the socket, and the next write still
    /// wakes the reader.
    #[tokio::test]
    async fn stamped_reads_say_when_the_kernel_received_their_bytes() {
        let (mut writer, stream) = pair().await;
        enable(&stream).expect("the option");
        let mut reader = SocketReader::new(true);
        let mut buf = [0u8; 64];
        // The kernel turns stamping on for the whole host from a work queue, a moment after
        // the first socket asks: until then reads come unstamped.
        let mut unstamped = 0;
        loop {
            writer.write_all(b"x").await.expect("write");
            if read(&mut reader, &stream, &mut buf).await.1.is_some() {
                break;
            }
            unstamped += 1;
            assert!(unstamped < 1_000, "the kernel never stamped a read");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for message in [&b"first"[..], b"second one"] {
            let written = now_us();
            writer.write_all(message).await.expect("write");
            let (n, stamp) = read(&mut reader, &stream, &mut buf).await;
            let stamp = stamp.expect("a stamp");
            assert_eq!(&buf[..n], message);
            assert!(written <= stamp && stamp <= now_us(), "{written} {stamp}");
        }
        drop(writer);
        assert_eq!(read(&mut reader, &stream, &mut buf).await, (0, None));
    }

    /// A read that fills the buffer may have left bytes behind: the next read gets them.
    #[tokio::test]
    async fn a_full_read_leaves_the_rest_for_the_next() {
        let (mut writer, stream) = pair().await;
        let mut reader = SocketReader::new(false);
        writer.write_all(b"0123456789").await.expect("write");
        let mut buf = [0u8; 4];
        let mut got = Vec::new();
        while got.len() < 10 {
            let (n, stamp) = read(&mut reader, &stream, &mut buf).await;
            assert_eq!(stamp, None, "plain reads carry no stamp");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"0123456789");
    }
}
