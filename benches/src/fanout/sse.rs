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
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(input.len());
                self.skip -= n;
                input = &input[n..];
            } else if self.left > 0 {
                let n = self.left.min(input.len());
                out.extend_from_slice(&input[..n]);
                self.left -= n;
                input = &input[n..];
                if self.left == 0 {
                    self.skip = 2;
                }
            } else if let Some(pos) = input.iter().position(|&b| b == b'\n') {
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
}
