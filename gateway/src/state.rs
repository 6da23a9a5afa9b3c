//! What every connection of one server shares: the engine, the configuration, the limits,
//! the shutdown token and the task tracker that shutdown waits on.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use feed_engine::Engine;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    auth::Verifier,
    closing::Closing,
    config::GatewayConfig,
    limits::ConnectionLimits,
    pacing::Pacing,
    ws::{held::Held, Batch},
};

/// See the module docs. Cloned into every connection as an `Arc`.
pub(crate) struct State {
    /// The engine every transport reads from.
    pub(crate) engine: Engine,
    /// Limits and timings.
    pub(crate) config: GatewayConfig,
    /// Live WebSocket and SSE connections.
    pub(crate) limits: Arc<ConnectionLimits>,
    /// Cancelled when the server shuts down; every connection task watches it.
    pub(crate) shutdown: CancellationToken,
    /// The same shutdown for the WebSocket and SSE loops, which poll it on every wake-up and
    /// so must not take the token's locks (set by the accept loop as the token fires).
    pub(crate) closing: Closing,
    /// Every connection task, so shutdown can wait for them.
    pub(crate) tracker: TaskTracker,
    /// The text before a position in a cursor (`<epoch>-`), so SSE writes a cursor without
    /// allocating per tick.
    pub(crate) cursor_prefix: String,
    /// The write-coalescing window every WebSocket session follows.
    pub(crate) pacing: Pacing,
    /// WebSocket connections parked while their ticks wait out the window.
    pub(crate) held: Held,
    /// Whether a publishing thread's share of WebSocket writes is capped (see `ws::direct`):
    /// only when the runtime has other workers to spread them over.
    pub(crate) share_writes: bool,
    /// Checks tokens; `None` when authentication is off.
    pub(crate) auth: Option<Verifier>,
    next_connection_id: AtomicU64,
}

impl State {
    /// Shared state for one server.
    pub(crate) fn new(engine: Engine, config: GatewayConfig, shutdown: CancellationToken) -> Arc<Self> {
        let limits = ConnectionLimits::new(config.max_connections, config.max_connections_per_ip);
        let cursor_prefix = cursor_prefix(&engine);
        let pacing = Pacing::new(config.write_budget_per_s, config.max_coalesce);
        let auth = config.auth.as_ref().map(Verifier::new);
        let workers = tokio::runtime::Handle::try_current().map_or(1, |runtime| runtime.metrics().num_workers());
        if config.io_uring {
            // An engine shared with another server may have it already: the same batch.
            engine.set_wake_batch(Arc::new(Batch));
        }
        Arc::new(Self {
            pacing,
            held: Held::default(),
            share_writes: workers > 1,
            auth,
            engine,
            config,
            limits,
            shutdown,
            closing: Closing::default(),
            tracker: TaskTracker::new(),
            cursor_prefix,
            next_connection_id: AtomicU64::new(1),
        })
    }

    /// A fresh id for a connection's log span.
    pub(crate) fn next_connection_id(&self) -> u64 {
        // Relaxed: ids only need to be unique, not ordered with anything else.
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// The engine owns the cursor format; derive its fixed part from a formatted cursor instead
/// of repeating the format here, and check the derivation.
fn cursor_prefix(engine: &Engine) -> String {
    let sample = engine.cursor(0);
    let prefix = sample.strip_suffix('0').unwrap_or(&sample).to_owned();
    debug_assert_eq!(format!("{prefix}12345"), engine.cursor(12_345), "cursor is <prefix><position>");
    prefix
}

#[cfg(test)]
mod tests {
    use feed_engine::EngineConfig;

    use super::*;

    #[test]
    fn cursor_prefix_plus_position_is_the_engine_cursor() {
        let engine = Engine::new(EngineConfig { epoch: Some("ep0".into()), ..EngineConfig::default() });
        let state = State::new(engine.clone(), GatewayConfig::default(), CancellationToken::new());
        for position in [0, 7, 1_000_000] {
            assert_eq!(format!("{}{position}", state.cursor_prefix), engine.cursor(position));
        }
    }
}
