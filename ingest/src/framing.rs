//! Splitting a byte stream into bounded lines, for every line-based source (file, stdin, TCP).
//!
//! A line ends at `\n` (a preceding `\r` is left for the parser, which trims it). A line
//! longer than its limit is not buffered: the reader drops what it holds, skips to the next
//! `\n`, and reports [`Frame::TooLong`]; its memory never exceeds about twice the limit
//! whatever a publisher sends. The bytes after the last `\n` at end of input come back as
//! [`Frame::Unterminated`], and the source decides what that means (a file's last line
//! without a newline is fine; a TCP publisher that disconnects mid-line is not).

use tokio::io::{AsyncBufRead, AsyncBufReadExt as _};

/// One unit of input.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line, without its `\n`.
    Line(&'a mut [u8]),
    /// A line longer than the limit, discarded; `len_bytes` is its length without the `\n`.
    TooLong {
        /// How many bytes the discarded line had.
        len_bytes: u64,
    },
    /// The bytes after the last `\n` when the input ended.
    Unterminated(&'a mut [u8]),
}

/// Reads [`Frame`]s from a buffered reader.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    max_bytes: usize,
    line: Vec<u8>,
    /// The previous call handed out `line`; clear it before reading on.
    handed_out: bool,
    /// Bytes of an overlong line skipped so far, while looking for its end.
    discarding: Option<u64>,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// A reader of lines of at most `max_bytes` bytes (usually [`crate::line::MAX_LINE_BYTES`]).
    pub fn new(inner: R, max_bytes: usize) -> Self {
        Self { inner, max_bytes, line: Vec::new(), handed_out: false, discarding: None }
    }

    /// The next frame, or `None` at the end of input.
    ///
    /// # Errors
    /// Any I/O error of the underlying reader.
    ///
    /// # Cancel safety
    /// Cancel safe: the only await is `fill_buf`, and everything read is moved into the
    /// reader's own state before the next await, so a cancelled call loses nothing and the
    /// next call carries on.
    pub async fn next_frame(&mut self) -> std::io::Result<Option<Frame<'_>>> {
        if std::mem::take(&mut self.handed_out) {
            self.line.clear();
        }
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                return Ok(self.end_of_input());
            }
            let Some(newline) = memchr::memchr(b'\n', available) else {
                // No end of line yet: keep the bytes, or start discarding once the line
                // outgrows its limit.
                let read = available.len();
                if let Some(skipped) = self.discarding.as_mut() {
                    *skipped += read as u64;
                } else if self.line.len() + read > self.max_bytes {
                    self.discarding = Some((self.line.len() + read) as u64);
                    self.line.clear();
                } else {
                    self.line.extend_from_slice(available);
                }
                self.inner.consume(read);
                continue;
            };
            if let Some(skipped) = self.discarding.take() {
                self.inner.consume(newline + 1);
                return Ok(Some(Frame::TooLong { len_bytes: skipped + newline as u64 }));
            }
            let len_bytes = self.line.len() + newline;
            if len_bytes > self.max_bytes {
                self.line.clear();
                self.inner.consume(newline + 1);
                return Ok(Some(Frame::TooLong { len_bytes: len_bytes as u64 }));
            }
            self.line.extend_from_slice(&available[..newline]);
            self.inner.consume(newline + 1);
            self.handed_out = true;
            return Ok(Some(Frame::Line(&mut self.line)));
        }
    }

    fn end_of_input(&mut self) -> Option<Frame<'_>> {
        if let Some(skipped) = self.discarding.take() {
            return Some(Frame::TooLong { len_bytes: skipped });
        }
        if self.line.is_empty() {
            return None;
        }
        self.handed_out = true;
        Some(Frame::Unterminated(&mut self.line))
    }

    /// Bytes currently reserved for the line buffer (for tests of the memory bound).
    pub fn buffer_capacity(&self) -> usize {
        self.line.capacity()
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::BufReader;

    use super::*;

    /// Collects frames as owned text for easy comparison.
    async fn frames(input: &[u8], max_bytes: usize, buffer_bytes: usize) -> Vec<String> {
        let mut reader = LineReader::new(BufReader::with_capacity(buffer_bytes, input), max_bytes);
        let mut out = Vec::new();
        while let Some(frame) = reader.next_frame().await.expect("in-memory read") {
            out.push(match frame {
                Frame::Line(line) => format!("line {}", String::from_utf8_lossy(line)),
                Frame::TooLong { len_bytes } => format!("too long {len_bytes}"),
                Frame::Unterminated(rest) => format!("unterminated {}", String::from_utf8_lossy(rest)),
            });
        }
        out
    }

    #[tokio::test]
    async fn splits_on_newlines_whatever_the_buffer_size() {
        for buffer_bytes in [1, 2, 3, 7, 64] {
            let got = frames(b"a\r\nbb\n\nccc\nd", 16, buffer_bytes).await;
            assert_eq!(got, ["line a\r", "line bb", "line ", "line ccc", "unterminated d"], "{buffer_bytes}");
        }
    }

    #[tokio::test]
    async fn overlong_lines_are_reported_and_the_next_line_survives() {
        for buffer_bytes in [1, 4, 64] {
            let got = frames(b"12345\n123456\n1234567890123\nok\n123456", 5, buffer_bytes).await;
            assert_eq!(got, ["line 12345", "too long 6", "too long 13", "line ok", "too long 6"], "{buffer_bytes}");
        }
    }

    #[tokio::test]
    async fn an_endless_line_does_not_grow_the_buffer() {
        let mut input = vec![b'x'; 10 << 20];
        input.extend_from_slice(b"\ngood\n");
        let mut reader = LineReader::new(BufReader::with_capacity(8192, &input[..]), 1024);
        let first = reader
            .next_frame()
            .await
            .expect("read")
            .map(|f| matches!(f, Frame::TooLong { len_bytes } if len_bytes == 10 << 20));
        assert_eq!(first, Some(true));
        assert!(reader.buffer_capacity() <= 2 * 1024, "capacity {}", reader.buffer_capacity());
        assert_eq!(reader.next_frame().await.expect("read"), Some(Frame::Line(&mut b"good".to_vec())));
        assert_eq!(reader.next_frame().await.expect("read"), None);
    }

    #[tokio::test]
    async fn empty_input_has_no_frames() {
        assert!(frames(b"", 8, 8).await.is_empty());
    }
}
