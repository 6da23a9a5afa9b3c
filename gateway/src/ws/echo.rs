//! A WebSocket echo at `/ws-echo`, served only with `--conformance-echo`: what the Autobahn
//! conformance cases (`scripts/autobahn`) need to exercise this crate's own upgrade checks,
//! frame decoder, control frames and closing handshake, the same code `/ws` runs. It carries
//! no ticks and answers any message, so it is for tests only and off by default.

use std::time::Duration;

use tokio::{io::AsyncWriteExt as _, time::timeout};
use tokio_util::sync::CancellationToken;

use super::{
    codec::{Item, LazyDecoder},
    socket::{read_into, Upgrade},
};
use crate::frame::{self, Opcode};

/// Largest echoed message: Autobahn's limits cases (9.*) send up to 16 MiB.
pub(crate) const MAX_MESSAGE_BYTES: usize = 20 << 20;
/// How long the client may take to close its end after the closing handshake.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Echoes every message until the client closes, breaks the protocol or the server stops.
pub(crate) async fn run(upgrade: Upgrade, shutdown: CancellationToken) {
    let Upgrade { mut socket, early } = upgrade;
    let mut decoder = LazyDecoder::new(MAX_MESSAGE_BYTES);
    decoder.feed(&early);
    let mut out = Vec::new();
    loop {
        for item in &mut decoder {
            match item {
                Item::Text(text) => echo(&mut out, Opcode::Text, text.as_bytes()),
                Item::Binary(bytes) => echo(&mut out, Opcode::Binary, &bytes),
                Item::Ping(payload) => frame::write_control(&mut out, Opcode::Pong, &payload),
                Item::Pong => {}
                Item::Close(Some(code)) => frame::write_close(&mut out, code, ""),
                Item::Close(None) => frame::write_header(&mut out, Opcode::Close, 0),
                Item::Fail(close) => frame::write_close(&mut out, close.code, close.reason),
            }
        }
        if socket.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
        // After a close or a failure the decoder is done and its close frame was just sent.
        if decoder.is_done() {
            // Our FIN first, then wait for the client's, reading (and dropping) what is left.
            let _ = timeout(CLOSE_TIMEOUT, async {
                let _ = socket.shutdown().await;
                while let Ok(1..) = read_into(&mut socket, &mut decoder).await {}
            })
            .await;
            return;
        }
        let read = tokio::select! {
            () = shutdown.cancelled() => return,
            read = read_into(&mut socket, &mut decoder) => read,
        };
        if !matches!(read, Ok(1..)) {
            return;
        }
    }
}

fn echo(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    frame::write_header(out, opcode, payload.len());
    out.extend_from_slice(payload);
}
