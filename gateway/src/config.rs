//! The gateway's settings. The binary fills them from its flags; tests build them directly.

use std::time::Duration;

use crate::{auth::AuthConfig, tls::TlsConfig};

/// Limits and timings of every transport. See the contract's "Limits" section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Largest client WebSocket message, fragments included (`--max-message-bytes`); a larger
    /// one closes the connection with 1009.
    pub max_message_bytes: usize,
    /// Selectors (symbols and patterns) one connection may hold (`--max-subscriptions`).
    pub max_subscriptions: usize,
    /// Client operations per second per connection (`--max-ops-per-sec`); over it each op
    /// gets a `limit` error, and sustained abuse closes the connection with 1008.
    pub max_ops_per_sec: u32,
    /// Live WebSocket and SSE connections for the whole server (`--max-connections`).
    pub max_connections: usize,
    /// Live WebSocket and SSE connections per client IP (`--max-connections-per-ip`).
    pub max_connections_per_ip: usize,
    /// WebSocket ping and JSON heartbeat interval, and SSE keepalive (`--heartbeat-ms`);
    /// must not be zero. A WebSocket peer silent for two intervals is dropped.
    pub heartbeat: Duration,
    /// How long shutdown waits for connections to close before `serve` returns anyway.
    pub shutdown_grace: Duration,
    /// WebSocket and SSE writes per second the server always allows (`--write-budget`):
    /// above it, each connection coalesces the ticks of a short window into one write, and
    /// while the server's cores are less than 85% busy the budget rises, so spare CPU goes
    /// to latency (see `pacing`). 0 writes every tick at once, whatever the load.
    pub write_budget_per_s: u64,
    /// The longest a tick may wait to be coalesced (`--max-coalesce-ms`), stretched up to 2×
    /// while the cores are saturated and the cap forces more writes than the budget asks for.
    pub max_coalesce: Duration,
    /// Write WebSocket ticks from the publishing thread while a connection waits for them,
    /// without its task (`--direct-writes`, see `ws::direct`); false leaves every write to
    /// the connection's task.
    pub direct_writes: bool,
    /// Write the WebSocket ticks of one publish's wake-ups, and of the connections whose
    /// pacing windows end together, with one io_uring submission (`--io-uring`, see
    /// `ws::sends`) rather than one `send` each; where the kernel refuses io_uring, one
    /// `send` each all the same.
    pub io_uring: bool,
    /// From accepting a connection to having its first request head: the TLS handshake plus
    /// the head of the first request, WebSocket upgrades included (`--handshake-timeout-ms`).
    /// A client that sends nothing, or half a head, is dropped after it. Must not be zero.
    pub handshake_timeout: Duration,
    /// How long a keep-alive HTTP connection may wait for its next request, head included
    /// (`--idle-timeout-ms`); then it is closed. Responses in progress (SSE streams,
    /// long-polls) are not idle, and WebSockets have heartbeats instead. Must not be zero.
    pub idle_timeout: Duration,
    /// Serve `https://` and `wss://` with this certificate (`--tls-cert`, `--tls-key`);
    /// `None` serves plain `http://` and `ws://`.
    pub tls: Option<TlsConfig>,
    /// JWT authentication and entitlements (`--jwt-secret` or `--jwt-public-key`, see
    /// `auth`); `None` (the default) leaves every endpoint open.
    pub auth: Option<AuthConfig>,
    /// Origins allowed to open `/ws` and `/sse` (`--allowed-origin`), such as
    /// `https://app.example.com`; empty (the default) allows any origin. A request without an
    /// `Origin` header (not a browser) is always allowed.
    pub allowed_origins: Vec<String>,
    /// Serve the WebSocket echo route `/ws-echo` (`--conformance-echo`), for the Autobahn
    /// conformance cases only: it carries no ticks and is off by default.
    pub conformance_echo: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 64 * 1024,
            max_subscriptions: 1000,
            max_ops_per_sec: 50,
            max_connections: 20_000,
            max_connections_per_ip: 1000,
            heartbeat: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(3),
            write_budget_per_s: 75_000,
            max_coalesce: Duration::from_millis(20),
            direct_writes: true,
            io_uring: true,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            tls: None,
            auth: None,
            allowed_origins: Vec::new(),
            conformance_echo: false,
        }
    }
}
