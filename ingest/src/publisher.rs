//! Who may publish over TCP (`--ingest-tcp`): the shared publisher token and the `AUTH` line
//! a publisher sends before its first tick.
//!
//! Why: any peer that can open a connection to the ingest listener can move every price the
//! feed serves. On loopback that is the local machine; anywhere else it needs a secret. With
//! a token, a connection's first line must be `AUTH <token>`; anything else (a wrong token, a
//! tick, silence past [`AUTH_TIMEOUT`], a line longer than [`MAX_AUTH_LINE_BYTES`]) gets
//! `ERR unauthorized` and the connection is closed with none of its lines published. The
//! token is compared in constant time and never logged.
//!
//! The protocol is a line rather than a TLS client certificate so `nc` and a few lines of
//! any language remain a complete publisher.

use std::{fmt, time::Duration};

use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::{
    framing::{Frame, LineReader},
    Error,
};

/// How long a new connection has to send its `AUTH` line.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `AUTH` line accepted (`AUTH ` and the longest token, with room for a `\r`).
pub const MAX_AUTH_LINE_BYTES: usize = 5 + MAX_TOKEN_BYTES + 1;
/// Longest publisher token.
pub const MAX_TOKEN_BYTES: usize = 256;
/// The line a refused publisher reads before the connection closes.
pub const UNAUTHORIZED_LINE: &[u8] = b"ERR unauthorized\n";
/// After refusing, how long to keep reading (and discarding) what the publisher still sends,
/// so closing does not reset the connection before it has read [`UNAUTHORIZED_LINE`].
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// The secret a TCP publisher must present (`--publisher-token`).
///
/// `Debug` prints no part of it.
#[derive(Clone, PartialEq, Eq)]
pub struct PublisherToken(String);

impl PublisherToken {
    /// A token of 1 to [`MAX_TOKEN_BYTES`] printable ASCII characters without spaces, so it
    /// survives being written on one line after `AUTH `.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming `publisher-token` (never the token itself).
    pub fn new(token: impl Into<String>) -> Result<Self, Error> {
        let token = token.into();
        let reason = if token.is_empty() {
            Some("must not be empty".to_owned())
        } else if token.len() > MAX_TOKEN_BYTES {
            Some(format!("must be at most {MAX_TOKEN_BYTES} bytes"))
        } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
            Some("must be printable ASCII without spaces".to_owned())
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidConfig { setting: "publisher-token", reason }),
            None => Ok(Self(token)),
        }
    }

    /// Is `candidate` this token? Takes the same time wherever the first difference is, so
    /// the response time does not reveal how much of a guess was right (only its length).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        if candidate.len() != expected.len() {
            return false;
        }
        let difference = expected.iter().zip(candidate).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        // black_box: keep the optimiser from turning the fold into an early-exit comparison.
        std::hint::black_box(difference) == 0
    }
}

impl fmt::Debug for PublisherToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublisherToken(<redacted>)")
    }
}

/// Why a publisher was refused, for the log (never containing what it sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The first line was not `AUTH <token>` with the right token.
    BadToken,
    /// The first line was longer than [`MAX_AUTH_LINE_BYTES`].
    TooLong,
    /// The connection ended before a complete first line.
    Closed,
    /// No complete first line within [`AUTH_TIMEOUT`].
    TimedOut,
}

impl Refusal {
    /// A short name for log fields.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadToken => "wrong or missing token",
            Self::TooLong => "first line too long",
            Self::Closed => "closed before authenticating",
            Self::TimedOut => "no AUTH line in time",
        }
    }
}

/// Reads the first line from `reader` and checks it is `AUTH <token>` (a trailing `\r` is
/// allowed). What follows the line stays buffered in `reader` for the tick lines.
///
/// # Errors
/// The [`Refusal`]; I/O errors count as [`Refusal::Closed`].
///
/// # Cancel safety
/// Not cancel safe: a cancelled call may have consumed part of the first line. Callers drop
/// the connection when they cancel it.
pub async fn authenticate<R: AsyncBufRead + Unpin>(reader: &mut R, token: &PublisherToken) -> Result<(), Refusal> {
    let mut lines = LineReader::new(reader, MAX_AUTH_LINE_BYTES);
    let frame = match tokio::time::timeout(AUTH_TIMEOUT, lines.next_frame()).await {
        Err(_elapsed) => return Err(Refusal::TimedOut),
        Ok(Err(_) | Ok(None) | Ok(Some(Frame::Unterminated(_)))) => return Err(Refusal::Closed),
        Ok(Ok(Some(Frame::TooLong { .. }))) => return Err(Refusal::TooLong),
        Ok(Ok(Some(Frame::Line(line)))) => line,
    };
    let line = frame.strip_suffix(b"\r").unwrap_or(frame);
    match line.strip_prefix(b"AUTH ") {
        Some(candidate) if token.matches(candidate) => Ok(()),
        _ => Err(Refusal::BadToken),
    }
}

/// Tells a refused publisher [`UNAUTHORIZED_LINE`] and closes the connection: the write side
/// at once, the read side after draining what is still in flight for at most a second.
pub async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    // Best effort: the publisher may already be gone.
    if stream.write_all(UNAUTHORIZED_LINE).await.is_ok() && stream.shutdown().await.is_ok() {
        let mut discard = [0u8; 4096];
        let drain = async {
            while matches!(stream.read(&mut discard).await, Ok(read) if read > 0) {}
        };
        let _ = tokio::time::timeout(REFUSAL_LINGER, drain).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> PublisherToken {
        PublisherToken::new("s3cret-token").expect("valid token")
    }

    #[test]
    fn only_the_exact_token_matches() {
        let token = token();
        assert!(token.matches(b"s3cret-token"));
        for wrong in [&b""[..], b"s3cret-toke", b"s3cret-tokeN", b"s3cret-token ", b"S3cret-token"] {
            assert!(!token.matches(wrong), "{:?}", String::from_utf8_lossy(wrong));
        }
    }

    #[test]
    fn tokens_that_cannot_be_sent_on_one_line_are_refused() {
        for bad in [String::new(), "has space".into(), "tab\there".into(), "é".into(), "x".repeat(MAX_TOKEN_BYTES + 1)] {
            let error = PublisherToken::new(bad.clone()).expect_err("invalid");
            assert!(!error.to_string().contains(&bad) || bad.is_empty(), "the token is not echoed: {error}");
        }
    }

    #[test]
    fn debug_output_hides_the_token() {
        assert!(!format!("{:?}", token()).contains("s3cret"));
    }

    #[tokio::test]
    async fn auth_line_accepts_crlf_and_leaves_the_ticks_buffered() {
        let mut input = &b"AUTH s3cret-token\r\n{\"symbol\":\"A\",\"price\":1}\n"[..];
        assert_eq!(authenticate(&mut input, &token()).await, Ok(()));
        assert_eq!(input, b"{\"symbol\":\"A\",\"price\":1}\n");
    }

    #[tokio::test]
    async fn anything_but_the_right_auth_line_is_refused() {
        for (input, refusal) in [
            (&b"AUTH wrong\n"[..], Refusal::BadToken),
            (b"auth s3cret-token\n", Refusal::BadToken),
            (b"{\"symbol\":\"A\",\"price\":1}\n", Refusal::BadToken),
            (b"AUTH s3cret-token", Refusal::Closed),
            (b"", Refusal::Closed),
        ] {
            let mut reader = input;
            assert_eq!(authenticate(&mut reader, &token()).await, Err(refusal), "{:?}", String::from_utf8_lossy(input));
        }
        let long = format!("AUTH {}\n", "x".repeat(MAX_AUTH_LINE_BYTES));
        assert_eq!(authenticate(&mut long.as_bytes(), &token()).await, Err(Refusal::TooLong));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_publisher_is_refused_after_the_auth_timeout() {
        let (_client, server) = tokio::io::duplex(64);
        let mut reader = tokio::io::BufReader::new(server);
        assert_eq!(authenticate(&mut reader, &token()).await, Err(Refusal::TimedOut));
    }
}
