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
//! - `server`: accept loop, per-connection HTTP serving, shutdown.
//! - `routes`: which path gets which handler; `/symbols`, `/snapshot`, `/health`.
//! - `ws`: the WebSocket upgrade and the per-connection session.
//! - `sse`: the Server-Sent Events stream.
//! - `op`: client operations (`subscribe`, `unsubscribe`, `ping`, …) parsed from JSON.
//! - `reply`: every server message and every wire error (codes, HTTP statuses, close codes).
//! - `frame`: server WebSocket frame headers written straight into an output buffer.
//! - `limits`: connection counts per server and per IP, ops per second per connection.
//! - `pacing`: the adaptive write-coalescing window under load.
//! - `query`: query-string decoding.
//! - `body`: the one response body type (fixed bytes or an event stream).
//! - `state`: what every connection shares.
//! - `config`: [`GatewayConfig`].

mod body;
mod config;
// `frame` and `sse` are public for the benches: each transport's per-tick framing is a hot path.
pub mod frame;
mod limits;
mod op;
mod pacing;
mod query;
mod reply;
mod routes;
mod server;
pub mod sse;
mod state;
mod ws;

pub use config::GatewayConfig;
pub use server::serve;

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
}
