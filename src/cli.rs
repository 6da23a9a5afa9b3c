//! The command line: one clap struct whose doc comments are the `--help` text. Every flag
//! also reads `TICKFEED_<FLAG>`. It is converted into the plain config structs of each
//! crate, so library crates never depend on clap.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};

/// tickfeed: a live market price streaming feed (WebSocket, Server-Sent Events).
///
/// With no flags it serves a simulated market on 127.0.0.1:8080.
#[derive(Debug, Parser)]
#[command(name = "tickfeed", version, about, long_about = None)]
pub struct Cli {
    /// Address the gateway listens on.
    #[arg(long, env = "TICKFEED_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Simulator: number of symbols (built-in names first, then generated ones).
    /// Giving any --sim-* flag runs the simulator beside other sources.
    #[arg(long, env = "TICKFEED_SIM_SYMBOLS", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub sim_symbols: Option<u32>,

    /// Simulator: total ticks per second across all symbols.
    #[arg(long, env = "TICKFEED_SIM_RATE", value_parser = parse_rate)]
    pub sim_rate: Option<f64>,

    /// Simulator: seed; the same seed gives the same symbols, prices and sizes.
    #[arg(long, env = "TICKFEED_SIM_SEED")]
    pub sim_seed: Option<u64>,

    /// Replay a file of ticks: CSV with a header (ts,symbol,price[,size][,bid][,ask]…) or
    /// JSON lines (.jsonl / .ndjson).
    #[arg(long, env = "TICKFEED_REPLAY")]
    pub replay: Option<PathBuf>,

    /// Replay file format, when the extension does not say.
    #[arg(long, env = "TICKFEED_REPLAY_FORMAT", value_enum)]
    pub replay_format: Option<ReplayFormatArg>,

    /// Replay pace: 1 keeps the original gaps between `ts`, 2 is twice as fast, 0 is as
    /// fast as possible.
    #[arg(long, env = "TICKFEED_REPLAY_SPEED", default_value_t = 1.0, value_parser = parse_speed)]
    pub replay_speed: f64,

    /// Start the replay file over when it ends (`seq` keeps growing).
    #[arg(long = "loop", env = "TICKFEED_LOOP")]
    pub looped: bool,

    /// Unit of input `ts` values (replay files, stdin, TCP): published as `src_ts` in µs.
    #[arg(long, env = "TICKFEED_TS_UNIT", value_enum, default_value_t = TsUnitArg::Ns)]
    pub ts_unit: TsUnitArg,

    /// Read JSON-lines ticks from standard input.
    #[arg(long, env = "TICKFEED_STDIN")]
    pub stdin: bool,

    /// Accept JSON-lines ticks from publishers on this TCP address (several at once); a
    /// bare port means 127.0.0.1:PORT. An address other than loopback needs
    /// --publisher-token: anyone who can connect could publish.
    #[arg(long, env = "TICKFEED_INGEST_TCP", value_parser = parse_ingest_addr)]
    pub ingest_tcp: Option<SocketAddr>,

    /// Secret every --ingest-tcp publisher must send first, as the line `AUTH <token>`
    /// (printable ASCII without spaces, at most 256 bytes); others get `ERR unauthorized`
    /// and are closed. Required when --ingest-tcp is not on loopback.
    #[arg(long, env = "TICKFEED_PUBLISHER_TOKEN", hide_env_values = true, requires = "ingest_tcp")]
    pub publisher_token: Option<String>,

    /// TLS certificate chain, PEM, leaf first: the gateway serves https:// and wss://
    /// itself. Needs --tls-key.
    #[arg(long, env = "TICKFEED_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key of --tls-cert, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "TICKFEED_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Milliseconds a new connection has for its TLS handshake and first request head
    /// (WebSocket upgrades included); a client that takes longer is dropped.
    #[arg(long, env = "TICKFEED_HANDSHAKE_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub handshake_timeout_ms: u64,

    /// Milliseconds a keep-alive HTTP connection may wait for its next request before it
    /// is closed (streams in progress and WebSockets are not idle).
    #[arg(long, env = "TICKFEED_IDLE_TIMEOUT_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub idle_timeout_ms: u64,

    /// Require a JWT signed with this HS256 secret on /ws, /sse and /snapshot (header
    /// `Authorization: Bearer <token>` or `?token=`). Its `symbols` claim limits what the
    /// holder may subscribe to. Off when neither this nor --jwt-public-key is given.
    #[arg(long, env = "TICKFEED_JWT_SECRET", hide_env_values = true, group = "jwt_key", conflicts_with = "jwt_public_key")]
    pub jwt_secret: Option<String>,

    /// Require a JWT verified with this public key, a PEM file (`BEGIN PUBLIC KEY`): an RSA
    /// key accepts RS256 tokens, an EC P-256 key ES256 tokens. Checked at startup.
    #[arg(long, env = "TICKFEED_JWT_PUBLIC_KEY", value_name = "PEM_FILE", group = "jwt_key", conflicts_with = "jwt_secret")]
    pub jwt_public_key: Option<PathBuf>,

    /// Accept only tokens whose `aud` claim contains this (not checked when absent).
    #[arg(long, env = "TICKFEED_JWT_AUDIENCE", requires = "jwt_key")]
    pub jwt_audience: Option<String>,

    /// Accept only tokens whose `iss` claim is this (not checked when absent).
    #[arg(long, env = "TICKFEED_JWT_ISSUER", requires = "jwt_key")]
    pub jwt_issuer: Option<String>,

    /// Clock difference tolerated on a token's `exp` and `nbf`, in seconds (at most 5). A
    /// connection whose token expires is closed this long after `exp`.
    #[arg(long, env = "TICKFEED_JWT_LEEWAY_S", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=5))]
    pub jwt_leeway_s: u64,

    /// An origin allowed to open /ws and /sse from a browser, e.g. https://app.example.com;
    /// repeat the flag (or separate with commas) for several. Without it any origin may.
    /// Clients that send no Origin header (not browsers) are always allowed.
    #[arg(long, env = "TICKFEED_ALLOWED_ORIGIN", value_name = "ORIGIN", value_delimiter = ',', value_parser = parse_origin)]
    pub allowed_origin: Vec<String>,

    /// What happens to a client that cannot keep up: keep only the newest tick per symbol
    /// for it, flagged `conflated` (default), or close it with code 4000.
    #[arg(long, env = "TICKFEED_SLOW_CONSUMER", value_enum, default_value_t = SlowConsumerArg::Conflate)]
    pub slow_consumer: SlowConsumerArg,

    /// Ticks kept per symbol for resume (rounded up to a power of two).
    #[arg(long, env = "TICKFEED_HISTORY", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(2..=1_048_576))]
    pub history: u32,

    /// Ticks of all symbols a client may fall behind before the slow-consumer policy applies
    /// (rounded up to a power of two).
    #[arg(long, env = "TICKFEED_BUS_CAPACITY", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(16..=16_777_216))]
    pub bus_capacity: u32,

    /// Heartbeat interval in milliseconds: WebSocket pings, `heartbeat` messages and SSE
    /// keepalive comments after this much silence.
    #[arg(long, env = "TICKFEED_HEARTBEAT_MS", default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub heartbeat_ms: u64,

    /// Largest WebSocket message a client may send, in bytes (larger: close 1009).
    #[arg(long, env = "TICKFEED_MAX_MESSAGE_BYTES", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(64..=16_777_216))]
    pub max_message_bytes: u32,

    /// Most symbols and patterns one connection may subscribe to (more: `limit` error).
    #[arg(long, env = "TICKFEED_MAX_SUBSCRIPTIONS", default_value_t = 1_000)]
    pub max_subscriptions: u32,

    /// Most ops per second one connection may send (more: `limit` error; sustained: 1008).
    #[arg(long, env = "TICKFEED_MAX_OPS_PER_SEC", default_value_t = 50)]
    pub max_ops_per_sec: u32,

    /// Most client connections in total (more: HTTP 503 before any upgrade).
    #[arg(long, env = "TICKFEED_MAX_CONNECTIONS", default_value_t = 20_000)]
    pub max_connections: u32,

    /// Most client connections from one IP address (more: HTTP 503 before any upgrade).
    #[arg(long, env = "TICKFEED_MAX_CONNECTIONS_PER_IP", default_value_t = 1_000)]
    pub max_connections_per_ip: u32,

    /// Writes per second always allowed: above it, each connection coalesces the ticks of a
    /// short window into one write (the busier the server, the longer the window, up to
    /// --max-coalesce-ms), and while the cores are less than 85% busy the budget rises
    /// above this one. 0 writes every tick at once, whatever the load.
    #[arg(long, env = "TICKFEED_WRITE_BUDGET", default_value_t = 75_000)]
    pub write_budget: u64,

    /// Longest a tick may wait to be coalesced with others, in milliseconds, while the server
    /// can afford the writes this forces: on cores more than 90% busy, where more writes would
    /// only queue, the cap stretches (10% each 100 ms, up to 2×) and comes back below 75% busy.
    #[arg(long, env = "TICKFEED_MAX_COALESCE_MS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=1_000))]
    pub max_coalesce_ms: u64,

    /// Write WebSocket ticks from the publishing thread while a connection waits for them
    /// (one `send` each, without waking the connection's task); false leaves every write to
    /// the connection's task. With more than one worker thread, a publishing thread spends
    /// at most half its time on such writes and leaves the rest to the tasks.
    #[arg(long, env = "TICKFEED_DIRECT_WRITES", default_value_t = true, action = clap::ArgAction::Set)]
    pub direct_writes: bool,

    /// Write WebSocket ticks to many connections with one io_uring submission (Linux) rather
    /// than one `send` each: those one publish wakes, and those whose coalescing windows end
    /// together. Fewer system calls under load. Where the kernel refuses io_uring, the server
    /// logs a warning once and sends one by one.
    #[arg(long, env = "TICKFEED_IO_URING", default_value_t = true, action = clap::ArgAction::Set)]
    pub io_uring: bool,

    /// Also serve a WebSocket echo at /ws-echo, for the WebSocket conformance tests
    /// (scripts/autobahn). Testing only: the route carries no ticks and echoes anything.
    #[arg(long, env = "TICKFEED_CONFORMANCE_ECHO")]
    pub conformance_echo: bool,

    /// Log format on stderr. `RUST_LOG` overrides the default level (info).
    #[arg(long, env = "TICKFEED_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

/// Why the --jwt-* flags cannot be used. The messages name the flag and the file, never
/// the secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// The --jwt-public-key file cannot be read.
    #[error("--jwt-public-key {}: cannot read it: {source}", path.display())]
    Read {
        /// The file as given.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The --jwt-public-key file holds no usable public key.
    #[error("--jwt-public-key {}: {source}", path.display())]
    PublicKey {
        /// The file as given.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: gateway::KeyError,
    },
    /// The --jwt-secret cannot be used.
    #[error("--jwt-secret: {0}")]
    Secret(#[source] gateway::KeyError),
}

/// `--replay-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplayFormatArg {
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// `--ts-unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TsUnitArg {
    /// Nanoseconds since the Unix epoch.
    Ns,
    /// Microseconds.
    Us,
    /// Milliseconds.
    Ms,
    /// Seconds.
    S,
}

/// `--slow-consumer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SlowConsumerArg {
    /// Keep only the newest tick per symbol for a client that is behind.
    Conflate,
    /// Close a client that is behind with code 4000.
    Disconnect,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
    if rate.is_finite() && (0.0..=10_000_000.0).contains(&rate) {
        Ok(rate)
    } else {
        Err("must be between 0 and 10000000 ticks per second".into())
    }
}

/// `HOST:PORT`, or a bare `PORT` on loopback.
fn parse_ingest_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|_| format!("{text:?} is neither HOST:PORT (an IP address) nor a port"))
}

/// `scheme://host[:port]`, as browsers send it in `Origin` (a trailing `/` is dropped).
fn parse_origin(text: &str) -> Result<String, String> {
    let origin = text.trim().trim_end_matches('/');
    let valid = origin.split_once("://").is_some_and(|(scheme, host)| {
        !scheme.is_empty()
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            && !host.is_empty()
            && !host.bytes().any(|b| b"/?#@ ".contains(&b) || b.is_ascii_control())
    });
    if valid {
        Ok(origin.to_owned())
    } else {
        Err(format!("{text:?} is not an origin like https://app.example.com or http://localhost:3000"))
    }
}

fn parse_speed(text: &str) -> Result<f64, String> {
    let speed: f64 = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
    if speed.is_finite() && speed >= 0.0 {
        Ok(speed)
    } else {
        Err("must be 0 (as fast as possible) or a positive factor".into())
    }
}

impl Cli {
    /// The simulator runs when no other source is named, or when a `--sim-*` flag is given.
    pub fn runs_simulator(&self) -> bool {
        let other_source = self.replay.is_some() || self.stdin || self.ingest_tcp.is_some();
        let sim_flag = self.sim_symbols.is_some() || self.sim_rate.is_some() || self.sim_seed.is_some();
        sim_flag || !other_source
    }

    /// The engine's settings.
    pub fn engine_config(&self) -> feed_engine::EngineConfig {
        feed_engine::EngineConfig {
            history: self.history as usize,
            bus_capacity: self.bus_capacity as usize,
            slow_consumer: match self.slow_consumer {
                SlowConsumerArg::Conflate => feed_engine::SlowConsumer::Conflate,
                SlowConsumerArg::Disconnect => feed_engine::SlowConsumer::Disconnect,
            },
            epoch: None,
        }
    }

    /// The gateway's settings.
    pub fn gateway_config(&self) -> gateway::GatewayConfig {
        gateway::GatewayConfig {
            max_message_bytes: self.max_message_bytes as usize,
            max_subscriptions: self.max_subscriptions as usize,
            max_ops_per_sec: self.max_ops_per_sec,
            max_connections: self.max_connections as usize,
            max_connections_per_ip: self.max_connections_per_ip as usize,
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            write_budget_per_s: self.write_budget,
            max_coalesce: Duration::from_millis(self.max_coalesce_ms),
            direct_writes: self.direct_writes,
            io_uring: self.io_uring,
            allowed_origins: self.allowed_origin.clone(),
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            conformance_echo: self.conformance_echo,
            ..gateway::GatewayConfig::default()
        }
    }

    /// The JWT settings of --jwt-secret or --jwt-public-key (the PEM file read and its key
    /// checked now) with --jwt-audience, --jwt-issuer and --jwt-leeway-s; `None` without a
    /// key: authentication is off.
    ///
    /// # Errors
    /// An unreadable or unusable key file, or an empty secret, naming the flag.
    pub fn auth_config(&self) -> Result<Option<gateway::AuthConfig>, AuthSetupError> {
        let key = match (&self.jwt_secret, &self.jwt_public_key) {
            (Some(secret), _) => gateway::JwtKey::hs256_secret(secret.as_bytes()).map_err(AuthSetupError::Secret)?,
            (None, Some(path)) => {
                let pem = std::fs::read(path).map_err(|source| AuthSetupError::Read { path: path.clone(), source })?;
                gateway::JwtKey::from_public_key_pem(&pem)
                    .map_err(|source| AuthSetupError::PublicKey { path: path.clone(), source })?
            }
            (None, None) => return Ok(None),
        };
        Ok(Some(gateway::AuthConfig {
            audience: self.jwt_audience.clone(),
            issuer: self.jwt_issuer.clone(),
            leeway: Duration::from_secs(self.jwt_leeway_s),
            ..gateway::AuthConfig::new(key)
        }))
    }

    /// The TLS configuration of --tls-cert and --tls-key, read and checked now; `None`
    /// without them (clap makes them come together).
    ///
    /// # Errors
    /// The file that cannot be read, or what is wrong with the certificate or key.
    pub fn tls_config(&self) -> Result<Option<gateway::TlsConfig>, gateway::Error> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => gateway::TlsConfig::from_pem_files(cert, key).map(Some),
            _ => Ok(None),
        }
    }

    /// The --ingest-tcp address and its publisher token, checked: an address other than
    /// loopback needs a token.
    ///
    /// # Errors
    /// [`ingest::Error::InvalidConfig`] for a non-loopback address without a token, or an
    /// unusable token (the message never contains the token).
    pub fn ingest_tcp(&self) -> Result<Option<(SocketAddr, Option<ingest::publisher::PublisherToken>)>, ingest::Error> {
        let Some(addr) = self.ingest_tcp else { return Ok(None) };
        let token = self.publisher_token.clone().map(ingest::publisher::PublisherToken::new).transpose()?;
        if token.is_none() && !addr.ip().is_loopback() {
            return Err(ingest::Error::InvalidConfig {
                setting: "ingest-tcp",
                reason: format!(
                    "{addr} is not a loopback address, so anyone who can reach it could publish ticks: \
                     give --publisher-token (or TICKFEED_PUBLISHER_TOKEN), or listen on 127.0.0.1"
                ),
            });
        }
        Ok(Some((addr, token)))
    }

    /// The simulator's settings (defaults for flags not given).
    pub fn sim_config(&self) -> ingest::SimConfig {
        let defaults = ingest::SimConfig::default();
        ingest::SimConfig {
            symbols: self.sim_symbols.map_or(defaults.symbols, |n| n as usize),
            rate: self.sim_rate.unwrap_or(defaults.rate),
            seed: self.sim_seed.unwrap_or(defaults.seed),
        }
    }

    /// Unit of input timestamps.
    pub fn ts_unit(&self) -> ingest::TsUnit {
        match self.ts_unit {
            TsUnitArg::Ns => ingest::TsUnit::Ns,
            TsUnitArg::Us => ingest::TsUnit::Us,
            TsUnitArg::Ms => ingest::TsUnit::Ms,
            TsUnitArg::S => ingest::TsUnit::S,
        }
    }

    /// The replay source's settings, when `--replay` is given.
    pub fn replay_config(&self) -> Option<ingest::ReplayConfig> {
        let path = self.replay.clone()?;
        Some(ingest::ReplayConfig {
            path,
            format: self.replay_format.map(|f| match f {
                ReplayFormatArg::Csv => ingest::ReplayFormat::Csv,
                ReplayFormatArg::Jsonl => ingest::ReplayFormat::Jsonl,
            }),
            speed: self.replay_speed,
            looped: self.looped,
            ts_unit: self.ts_unit(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_flags_means_simulator_on_localhost_8080() {
        let cli = Cli::try_parse_from(["tickfeed"]).expect("defaults parse");
        assert_eq!(cli.listen.to_string(), "127.0.0.1:8080");
        assert!(cli.runs_simulator());
    }

    #[test]
    fn another_source_turns_the_simulator_off_unless_a_sim_flag_is_given() {
        let cli = Cli::try_parse_from(["tickfeed", "--stdin"]).expect("parse");
        assert!(!cli.runs_simulator());
        let cli = Cli::try_parse_from(["tickfeed", "--stdin", "--sim-rate", "10"]).expect("parse");
        assert!(cli.runs_simulator());
    }

    #[test]
    fn ingest_tcp_off_loopback_needs_a_publisher_token() {
        let cli = Cli::try_parse_from(["tickfeed", "--ingest-tcp", "0.0.0.0:9000"]).expect("parse");
        let error = cli.ingest_tcp().expect_err("no token");
        assert!(error.to_string().contains("--publisher-token"), "{error}");
        let cli = Cli::try_parse_from(["tickfeed", "--ingest-tcp", "0.0.0.0:9000", "--publisher-token", "t0ken"])
            .expect("parse");
        let (addr, token) = cli.ingest_tcp().expect("token given").expect("enabled");
        assert_eq!((addr.to_string().as_str(), token.is_some()), ("0.0.0.0:9000", true));
    }

    #[test]
    fn ingest_tcp_with_a_bare_port_listens_on_loopback_and_may_still_require_a_token() {
        let cli = Cli::try_parse_from(["tickfeed", "--ingest-tcp", "9000"]).expect("parse");
        let (addr, token) = cli.ingest_tcp().expect("loopback needs no token").expect("enabled");
        assert_eq!((addr.to_string().as_str(), token), ("127.0.0.1:9000", None));
        let cli = Cli::try_parse_from(["tickfeed", "--ingest-tcp", "9000", "--publisher-token", "t0ken"]).expect("parse");
        assert!(cli.ingest_tcp().expect("valid").expect("enabled").1.is_some());
    }

    #[test]
    fn an_unusable_publisher_token_is_refused_without_being_echoed() {
        let cli = Cli::try_parse_from(["tickfeed", "--ingest-tcp", "9000", "--publisher-token", "two words"])
            .expect("parse");
        let error = cli.ingest_tcp().expect_err("space in token");
        assert!(!error.to_string().contains("two words"), "{error}");
    }

    #[test]
    fn tls_and_publisher_flags_need_their_partners() {
        for args in [
            &["tickfeed", "--tls-cert", "cert.pem"][..],
            &["tickfeed", "--tls-key", "key.pem"],
            &["tickfeed", "--publisher-token", "t0ken"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
        let cli = Cli::try_parse_from(["tickfeed", "--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"])
            .expect("parse");
        let error = cli.tls_config().expect_err("unreadable");
        assert!(error.to_string().contains("/nonexistent/c.pem"), "{error}");
    }

    #[test]
    fn jwt_flags_build_the_auth_config_and_need_a_key() {
        let cli = Cli::try_parse_from(["tickfeed"]).expect("parse");
        assert_eq!(cli.auth_config().expect("no key"), None);
        let cli = Cli::try_parse_from(["tickfeed", "--jwt-secret", "s3cret", "--jwt-audience", "feed"]).expect("parse");
        let auth = cli.auth_config().expect("valid").expect("on");
        assert_eq!((auth.key.algorithm_name(), auth.audience.as_deref()), ("HS256", Some("feed")));
        assert_eq!(auth.leeway, Duration::from_secs(5));
        for args in [
            &["tickfeed", "--jwt-secret", "a", "--jwt-public-key", "k.pem"][..],
            &["tickfeed", "--jwt-audience", "feed"],
            &["tickfeed", "--jwt-issuer", "me"],
            &["tickfeed", "--jwt-secret", "a", "--jwt-leeway-s", "6"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
        let cli = Cli::try_parse_from(["tickfeed", "--jwt-public-key", "/nonexistent/key.pem"]).expect("parse");
        let error = cli.auth_config().expect_err("unreadable");
        assert!(error.to_string().contains("/nonexistent/key.pem"), "{error}");
        let cli = Cli::try_parse_from(["tickfeed", "--jwt-secret", ""]).expect("parse");
        assert!(cli.auth_config().is_err());
    }

    #[test]
    fn allowed_origins_repeat_or_split_on_commas_and_must_be_origins() {
        let cli = Cli::try_parse_from([
            "tickfeed",
            "--allowed-origin",
            "https://a.example",
            "--allowed-origin",
            "http://localhost:3000/,https://b.example",
        ])
        .expect("parse");
        assert_eq!(cli.gateway_config().allowed_origins, ["https://a.example", "http://localhost:3000", "https://b.example"]);
        for bad in ["a.example", "https://a.example/path", "https://", "://a.example"] {
            assert!(Cli::try_parse_from(["tickfeed", "--allowed-origin", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_values_are_refused_with_a_message() {
        for args in [
            &["tickfeed", "--sim-rate", "-1"][..],
            &["tickfeed", "--replay-speed", "nan"],
            &["tickfeed", "--history", "1"],
            &["tickfeed", "--listen", "nowhere"],
            &["tickfeed", "--slow-consumer", "sometimes"],
            &["tickfeed", "--ingest-tcp", "localhost:9000"],
            &["tickfeed", "--handshake-timeout-ms", "0"],
            &["tickfeed", "--idle-timeout-ms", "0"],
        ] {
            let err = Cli::try_parse_from(args).expect_err("must be refused");
            assert!(!err.to_string().is_empty());
        }
    }
}
