//! # gateway
//!
//! The transports of tickfeed: the HTTP/1.1 accept loop, WebSocket (`/ws`), Server-Sent
//! Events (`/sse`) and the plain JSON endpoints (`/symbols`, `/snapshot`, `/health`), built to
//! the public contract in `PROTOCOL.md`.
//!
//! It reads from the [`feed_engine::Engine`] and never changes a tick or a sequence: the
//! engine hands out events already ordered, deduplicated and conflated; the gateway only adds
//! framing (a WebSocket header, an SSE `id:`/`event:`/`data:` prefix) around the tick's shared
//! JSON bytes and writes many ticks per syscall.
//!
//! Entry point: [`serve`] with a [`GatewayConfig`]. Shutdown is one
//! [`tokio_util::sync::CancellationToken`]: WebSockets are closed with 1001, SSE streams end,
//! and `serve` returns once every connection task has finished or the grace period ran out.
//!
//! Map of the crate:
//! - `server`: accept loop, per-connection TLS handshake and HTTP serving, timeouts, shutdown.
//! - `routes`: which path gets which handler; `/symbols`, `/snapshot`, `/health`.
//! - `ws`: the WebSocket upgrade, the per-connection session, and the writes the engine's
//!   wake-ups make for a session waiting for ticks.
//! - `sse`: the Server-Sent Events stream.
//! - `op`: client operations (`subscribe`, `unsubscribe`, `ping`, …) parsed from JSON.
//! - `reply`: every server message and every wire error (codes, HTTP statuses, close codes).
//! - `frame`: server WebSocket frame headers written straight into an output buffer.
//! - `limits`: connection counts per server and per IP, ops per second per connection.
//! - `pacing`: the adaptive write-coalescing window under load.
//! - `query`: query-string decoding.
//! - `body`: the one response body type (fixed bytes or an event stream).
//! - `state`: what every connection shares.
//! - `closing`: shutdown as the WebSocket and SSE loops watch it, without a lock per wake-up.
//! - `config`: [`GatewayConfig`].
//! - `auth`: JWT verification ([`AuthConfig`], [`JwtKey`]) and entitlements (which symbols
//!   a token allows).
//! - `origin`: the `Origin` allow-list of `/ws` and `/sse`.
//! - `tls`: [`TlsConfig`], the rustls configuration for `https://` and `wss://`.
//! - `fuzzing`: hidden entry points for the fuzz targets in `fuzz/`, behind the `fuzzing`
//!   feature.

mod auth;
mod body;
mod closing;
mod config;
// `frame` and `sse` are public for the benches: each transport's per-tick framing is a hot path.
pub mod frame;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod limits;
mod op;
mod origin;
mod pacing;
mod query;
mod reply;
mod routes;
mod server;
pub mod sse;
mod state;
mod tls;
mod ws;

pub use auth::{AuthConfig, JwtKey, KeyError, MAX_LEEWAY};
pub use config::GatewayConfig;
pub use server::serve;
pub use tls::TlsConfig;

/// What can stop [`serve`].
///
/// Per-connection failures are not errors here: client mistakes become wire errors (error
/// messages, HTTP statuses, close codes) in `reply` and never leave their connection, and
/// failed accepts are logged and retried with back-off.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listener could not report its local address (it is not a bound TCP socket).
    #[error("the listener is not usable")]
    Listener(#[source] std::io::Error),
    /// A setting that cannot work (a zero heartbeat would spin the timers).
    #[error("invalid gateway configuration: {0}")]
    Config(&'static str),
    /// A TLS certificate or key file could not be read.
    #[error("cannot read the TLS {item} {}: {source}", path.display())]
    TlsFile {
        /// "certificate chain" or "private key".
        item: &'static str,
        /// The file as given.
        path: std::path::PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A TLS certificate chain or key is not usable: no PEM block of the right kind, or a key
    /// that does not belong to the certificate.
    #[error("invalid TLS {item}{origin}: {reason}")]
    TlsInvalid {
        /// What was wrong: "certificate chain", "private key", "certificate and key".
        item: &'static str,
        /// Where it came from (" in /path/cert.pem", with its leading space), or empty.
        origin: String,
        /// Why it was refused.
        reason: String,
    },
}
