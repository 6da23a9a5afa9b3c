//! One system call for the writes of many connections: those of one publish's wake-ups
//! (see `direct`'s `Batch`) and those of the connections whose pacing windows end together
//! (see `held`).
//!
//! Why: each write to a socket is a system call, and on a host whose kernel clears CPU
//! buffers and fences returns on every crossing (mitigations against speculative-execution
//! attacks, common on cloud machines), the crossing is a large part of a small write's
//! cost. An io_uring submission carries the sends to many sockets into the kernel at once.
//! On such a host, with the same writes, the server used about a tenth less of its core for
//! the held connections alone (1,000 connections each written every 20 ms), and with the
//! wake-ups too it was lower in five of seven pairs with every tick written at once; the p99
//! of 1,000 dashboards and of the storm was lower in most pairs (BENCHMARKS.md, "Writes to
//! many sockets in one system call").
//!
//! Each send is non-blocking (`MSG_DONTWAIT`), so the kernel completes it while it takes
//! the submission, and the answer is the same as `send`'s: how many bytes the socket took,
//! or nothing. Where io_uring is not there (an old kernel, a container's seccomp profile, or
//! `--io-uring false`) every write is its own `send`, with the same results.

use std::{
    io,
    os::fd::RawFd,
    sync::atomic::{AtomicBool, Ordering},
};

use io_uring::{opcode, types, IoUring};
use tracing::warn;

/// Set when the kernel first refused a ring.
static REFUSED: AtomicBool = AtomicBool::new(false);

/// One write: the socket and the bytes for it.
pub(crate) type Write<'a> = (RawFd, &'a [u8]);

/// See the module docs; one per flusher and one per publishing thread.
pub(crate) struct Sends {
    /// `None`: one `send` per write.
    ring: Option<IoUring>,
    /// Most writes per call of [`Sends::send_all`] (the ring's size).
    most: usize,
    /// What the last call's sockets took, kept so that a call allocates nothing.
    written: Vec<usize>,
}

impl Sends {
    /// Up to `most` writes per call; through io_uring if `use_ring` and the kernel allows it.
    pub(crate) fn new(use_ring: bool, most: usize) -> Self {
        let ring = use_ring.then(|| new_ring(most)).and_then(|ring| match ring {
            Ok(ring) => Some(ring),
            Err(error) => {
                // Once per process: every publishing thread would find the same.
                if !REFUSED.swap(true, Ordering::Relaxed) {
                    warn!(%error, "io_uring is not available: WebSocket ticks are written with one send each");
                }
                None
            }
        });
        Self { ring, most, written: Vec::with_capacity(most) }
    }

    /// Whether writes go through io_uring: false once the kernel refused the ring or it was
    /// dropped.
    pub(crate) fn uses_ring(&self) -> bool {
        self.ring.is_some()
    }

    /// Sends each write without waiting; returns how many bytes each socket took, in order
    /// (0 when it took none or failed: the connection's task meets the error on its own next
    /// write). The writes are walked twice at most (again if the kernel refuses the ring).
    ///
    /// # Panics
    /// When given more than `most` writes (a caller's bug).
    pub(crate) fn send_all<'a>(&mut self, writes: impl Iterator<Item = Write<'a>> + Clone) -> &[usize] {
        let count = writes.clone().count();
        assert!(count <= self.most, "{count} writes for a ring of {}", self.most);
        self.written.clear();
        self.written.resize(count, 0);
        if count == 0 {
            return &self.written;
        }
        if let Some(ring) = &mut self.ring {
            match submit(ring, writes.clone(), count, &mut self.written) {
                Ok(()) => return &self.written,
                Err(Failed::Refused(error)) => {
                    // The kernel took no send of it: every write is still to do, and later
                    // ones go without the ring.
                    warn!(%error, "io_uring submission refused: this thread writes with one send each from now on");
                    self.ring = None;
                }
                Err(Failed::Missing(Missing { error, reaped })) => {
                    // Sends whose results never came are counted as not written. The ring is
                    // dropped with them, so nothing of this call can come back in a later one.
                    let missing = count - reaped;
                    warn!(%error, missing, "io_uring completions missing: this thread writes with one send each from now on");
                    self.ring = None;
                    return &self.written;
                }
            }
        }
        for (slot, (fd, bytes)) in self.written.iter_mut().zip(writes) {
            *slot = send(fd, bytes);
        }
        &self.written
    }
}

fn new_ring(entries: usize) -> io::Result<IoUring> {
    let entries = u32::try_from(entries.max(1)).unwrap_or(u32::MAX);
    // Submit every entry even when one fails early, so each gets its completion.
    IoUring::builder().setup_submit_all().build(entries)
}

/// How often waiting for completions may fail before the missing ones are given up.
const MAX_FAILED_WAITS: u32 = 100;

/// How the ring's half of [`Sends::send_all`] failed.
enum Failed {
    /// The kernel took no send.
    Refused(io::Error),
    /// It took them, but not every completion came back.
    Missing(Missing),
}

/// See [`Failed::Missing`].
struct Missing {
    error: io::Error,
    /// How many did.
    reaped: usize,
}

impl From<Missing> for Failed {
    fn from(missing: Missing) -> Self {
        Self::Missing(missing)
    }
}

/// The ring's half of [`Sends::send_all`].
fn submit<'a>(
    ring: &mut IoUring,
    writes: impl Iterator<Item = Write<'a>>,
    count: usize,
    written: &mut [usize],
) -> Result<(), Failed> {
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    {
        let mut queue = ring.submission();
        for (i, (fd, bytes)) in writes.enumerate() {
            let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            let entry = opcode::Send::new(types::Fd(fd), bytes.as_ptr(), len).flags(flags).build().user_data(i as u64);
            // SAFETY: `fd` is an open socket and `bytes` stay borrowed until every completion
            // is reaped below, before this function returns; if some never come, the caller
            // drops the ring, and the kernel's references with it, before the borrow ends.
            unsafe { queue.push(&entry) }.expect("the ring holds `most` entries and is empty between calls");
        }
    }
    let mut reaped = 0;
    let mut submitted = false;
    let mut failed_waits = 0;
    while reaped < count {
        match ring.submit_and_wait(count - reaped) {
            Ok(_) => submitted = true,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            // Nothing was taken: the caller sends them itself. The entries go with the ring.
            Err(error) if !submitted => return Err(Failed::Refused(error)),
            // Submitted, each send has its completion already (non-blocking, done at once):
            // reap what is there. Never seen; bounded so that it cannot hang the writer.
            Err(error) => {
                failed_waits += 1;
                if failed_waits > MAX_FAILED_WAITS {
                    return Err(Missing { error, reaped }.into());
                }
            }
        }
        for completion in ring.completion() {
            let i = completion.user_data() as usize;
            written[i] = usize::try_from(completion.result()).unwrap_or(0);
            reaped += 1;
        }
    }
    Ok(())
}

/// Sends what the socket takes now, without waiting; how many bytes it took. An error is
/// left for the connection's task to meet on its own next read or write.
pub(crate) fn send(fd: RawFd, bytes: &[u8]) -> usize {
    let mut written = 0;
    while written < bytes.len() {
        let rest = &bytes[written..];
        // SAFETY: the caller vouches that `fd` is an open socket (see `direct`); `rest` is
        // valid for reads of its length.
        let n = unsafe {
            libc::send(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        if n <= 0 {
            // EAGAIN, EINTR or a dead socket: the task retries and sees which.
            break;
        }
        written += n as usize;
    }
    written
}

#[cfg(test)]
mod tests {
    use std::{
        io::{ErrorKind, Read},
        net::{TcpListener, TcpStream},
        os::fd::AsRawFd,
        time::Duration,
    };

    use super::*;

    /// `count` connected pairs: (the server's side, non-blocking; the client's side).
    fn pairs(count: usize) -> Vec<(TcpStream, TcpStream)> {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        (0..count)
            .map(|_| {
                let client = TcpStream::connect(address).expect("connect");
                let (server, _) = listener.accept().expect("accept");
                server.set_nonblocking(true).expect("non-blocking");
                client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
                (server, client)
            })
            .collect()
    }

    fn read_exactly(client: &mut TcpStream, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        client.read_exact(&mut bytes).expect("the bytes sent");
        bytes
    }

    /// Whether this process may make a ring at all (a kernel setting or a seccomp profile
    /// may refuse it).
    fn io_uring_allowed() -> bool {
        IoUring::new(2).is_ok()
    }

    /// Through the ring or one `send` each, every socket gets its own bytes and each count
    /// is what its socket took.
    #[test]
    fn each_socket_gets_its_own_bytes_with_or_without_the_ring() {
        for use_ring in [true, false] {
            let mut sends = Sends::new(use_ring, 8);
            assert_eq!(sends.uses_ring(), use_ring && io_uring_allowed(), "the ring, where the kernel allows one");
            let mut pairs = pairs(5);
            let messages: Vec<Vec<u8>> = (0..5).map(|i| format!("message {i} ").repeat(i + 1).into_bytes()).collect();
            let writes: Vec<Write<'_>> =
                pairs.iter().zip(&messages).map(|((server, _), message)| (server.as_raw_fd(), &message[..])).collect();
            let written = sends.send_all(writes.iter().copied()).to_vec();
            let lens: Vec<usize> = messages.iter().map(Vec::len).collect();
            assert_eq!(written, lens, "ring {use_ring}");
            for ((_, client), message) in pairs.iter_mut().zip(&messages) {
                assert_eq!(&read_exactly(client, message.len()), message, "ring {use_ring}");
            }
        }
    }

    /// A socket that takes part of a write, or none of it, says so in its count, through the
    /// ring as through `send`; the sockets beside it are written all the same.
    #[test]
    fn a_full_socket_takes_what_it_can_and_the_others_are_written() {
        for use_ring in [true, false] {
            let mut sends = Sends::new(use_ring, 4);
            let mut pairs = pairs(2);
            // Fill the first socket until it takes nothing more.
            let block = vec![7u8; 64 * 1024];
            let mut filled = 0;
            loop {
                let written = sends.send_all([(pairs[0].0.as_raw_fd(), &block[..])].iter().copied()).to_vec();
                if written[0] == 0 {
                    break;
                }
                filled += written[0];
            }
            let writes = [(pairs[0].0.as_raw_fd(), &b"more"[..]), (pairs[1].0.as_raw_fd(), &b"beside"[..])];
            let written = sends.send_all(writes.iter().copied()).to_vec();
            assert_eq!(written, [0, 6], "ring {use_ring}: the full socket took nothing");
            assert_eq!(read_exactly(&mut pairs[1].1, 6), b"beside");
            assert!(read_exactly(&mut pairs[0].1, filled).iter().all(|&byte| byte == 7), "what it took, whole");
            pairs[0].1.set_nonblocking(true).expect("non-blocking");
            let mut rest = [0u8; 16];
            let nothing = pairs[0].1.read(&mut rest).expect_err("nothing more was sent");
            assert_eq!(nothing.kind(), ErrorKind::WouldBlock);
        }
    }

    /// A socket whose peer is gone fails its send (0 taken, no signal that kills the
    /// process), and the others in the same submission are written.
    #[test]
    fn a_dead_socket_fails_alone() {
        for use_ring in [true, false] {
            let mut sends = Sends::new(use_ring, 4);
            let mut pairs = pairs(2);
            let (dead_server, dead_client) = &pairs[0];
            dead_client.shutdown(std::net::Shutdown::Both).expect("shutdown");
            let fd = dead_server.as_raw_fd();
            // The first write after the peer closed may be taken; the one after fails.
            let mut written = Vec::new();
            for _ in 0..50 {
                written = sends.send_all([(fd, &b"into the void"[..])].iter().copied()).to_vec();
                if written[0] == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(written, [0], "ring {use_ring}: the dead socket takes nothing");
            let writes = [(fd, &b"again"[..]), (pairs[1].0.as_raw_fd(), &b"alive"[..])];
            written = sends.send_all(writes.iter().copied()).to_vec();
            assert_eq!(written, [0, 5], "ring {use_ring}");
            assert_eq!(read_exactly(&mut pairs[1].1, 5), b"alive");
        }
    }
}
