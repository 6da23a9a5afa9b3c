//! A minimal WebSocket client: the upgrade handshake, server-frame parsing (unmasked, per
//! RFC 6455), and masked client frames for ops and pongs.

use std::net::SocketAddr;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Frame opcodes the client acts on.
pub mod opcode {
    /// Continuation frame.
    pub const CONTINUATION: u8 = 0x0;
    /// Text frame.
    pub const TEXT: u8 = 0x1;
    /// Close frame.
    pub const CLOSE: u8 = 0x8;
    /// Ping frame.
    pub const PING: u8 = 0x9;
}

/// Sends the upgrade request and reads the 101 response. Returns bytes read past it.
///
/// # Errors
/// I/O errors, or `InvalidData` when the server does not answer 101.
pub async fn handshake(stream: &mut TcpStream, addr: SocketAddr, path: &str) -> std::io::Result<Vec<u8>> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed during handshake"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                let line = String::from_utf8_lossy(&buf[..buf.iter().position(|&b| b == b'\r').unwrap_or(0)]).into_owned();
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, line));
            }
            return Ok(buf[end + 4..].to_vec());
        }
        if buf.len() > 16 * 1024 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "handshake response too long"));
        }
    }
}

/// A complete server frame at the start of `buf`: opcode, payload range, total length.
pub fn parse_frame(buf: &[u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut offset): (usize, usize) = match buf[1] & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    if masked {
        // Servers never mask; skip the key so a misbehaving server is still readable.
        offset += 4;
    }
    let end = offset.checked_add(len)?;
    (buf.len() >= end).then_some((opcode, offset..end, end))
}

/// A masked client frame (FIN set) with the given opcode and payload.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc_6455_unmasked_hello() {
        let frame = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let (op, payload, total) = parse_frame(&frame).expect("complete");
        assert_eq!((op, &frame[payload], total), (opcode::TEXT, &b"Hello"[..], 7));
        assert!(parse_frame(&frame[..5]).is_none());
    }

    #[test]
    fn masks_client_frames_like_rfc_6455() {
        let frame = client_frame(opcode::TEXT, b"Hello");
        assert_eq!(&frame[..2], &[0x81, 0x85]);
        let mask = &frame[2..6];
        let unmasked: Vec<u8> = frame[6..].iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
        assert_eq!(unmasked, b"Hello");
    }
}
