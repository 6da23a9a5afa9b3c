//! A minimal SSE client: the request, the response head, chunked transfer decoding and
//! `data:` line extraction.

use std::net::SocketAddr;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Sends the request and reads the response head. Returns (is chunked, bytes past the head).
///
/// # Errors
/// I/O errors, or `InvalidData` when the status is not 200.
pub async fn open(stream: &mut TcpStream, addr: SocketAddr, path: &str) -> std::io::Result<(bool, Vec<u8>)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 2048];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before the stream started"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, head.lines().next().unwrap_or("").to_owned()));
            }
            return Ok((head.contains("transfer-encoding: chunked"), buf[end + 4..].to_vec()));
        }
    }
}

/// Incremental chunked-transfer decoder: feed raw bytes, get the body bytes.
#[derive(Debug, Default)]
pub struct Dechunker {
    /// Body bytes left in the current chunk.
    left: usize,
    /// Partial chunk-size line.
    line: Vec<u8>,
    /// Bytes of the CRLF after a chunk still to skip.
    skip: usize,
}

impl Dechunker {
    /// Appends the body bytes contained in `input` to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.feed_with(input, |body| out.extend_from_slice(body));
    }

    /// Hands the body bytes contained in `input` to `body`, as slices of `input`: nothing is
    /// copied.
    pub fn feed_with(&mut self, mut input: &[u8], mut body: impl FnMut(&[u8])) {
        while !input.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(input.len());
                self.skip -= n;
                input = &input[n..];
            } else if self.left > 0 {
                let n = self.left.min(input.len());
                body(&input[..n]);
                self.left -= n;
                input = &input[n..];
                if self.left == 0 {
                    self.skip = 2;
                }
            } else if let Some(pos) = memchr::memchr(b'\n', input) {
                self.line.extend_from_slice(&input[..pos]);
                input = &input[pos + 1..];
                let text = String::from_utf8_lossy(&self.line);
                let size = text.trim().split(';').next().unwrap_or("");
                self.left = usize::from_str_radix(size, 16).unwrap_or(0);
                self.line.clear();
            } else {
                self.line.extend_from_slice(input);
                input = &[];
            }
        }
    }
}

/// Splits a byte stream into lines (without their `\n`), however it is cut into reads. Lines
/// are handed out as slices of the bytes fed in; only a line cut by the end of a read is
/// copied, to be completed by the next. (Copying every read into one buffer first was an
/// eighth of the load tool's time on the SSE scenario.)
#[derive(Debug, Default)]
pub struct Lines {
    /// The start of a line the previous bytes did not finish.
    carry: Vec<u8>,
}

impl Lines {
    /// Hands each line that `bytes` completes to `line`.
    pub fn feed(&mut self, mut bytes: &[u8], mut line: impl FnMut(&[u8])) {
        if !self.carry.is_empty() {
            let Some(end) = memchr::memchr(b'\n', bytes) else {
                self.carry.extend_from_slice(bytes);
                return;
            };
            self.carry.extend_from_slice(&bytes[..end]);
            line(&self.carry);
            self.carry.clear();
            bytes = &bytes[end + 1..];
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', bytes) {
            line(&bytes[start..end]);
            start = end + 1;
        }
        self.carry.extend_from_slice(&bytes[start..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_across_arbitrary_splits() {
        let raw = b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
        for split in 0..raw.len() {
            let (mut d, mut out) = (Dechunker::default(), Vec::new());
            d.feed(&raw[..split], &mut out);
            d.feed(&raw[split..], &mut out);
            assert_eq!(out, b"hello, world", "split at {split}");
        }
    }

    #[test]
    fn lines_come_whole_across_arbitrary_splits() {
        let raw = b"id: 1\nevent: tick\ndata: {\"a\":1}\n\nid: 2\ndata: x\n\npartial";
        let expected: Vec<&[u8]> = vec![b"id: 1", b"event: tick", b"data: {\"a\":1}", b"", b"id: 2", b"data: x", b""];
        for first in 0..raw.len() {
            for second in first..raw.len() {
                let (mut lines, mut seen) = (Lines::default(), Vec::new());
                for part in [&raw[..first], &raw[first..second], &raw[second..]] {
                    lines.feed(part, |line| seen.push(line.to_vec()));
                }
                assert_eq!(seen, expected, "split at {first} and {second}");
                assert_eq!(lines.carry, b"partial", "the unfinished line waits");
            }
        }
    }
}
