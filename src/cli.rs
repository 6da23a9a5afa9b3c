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

    /// Accept JSON-lines ticks from publishers on this TCP address (several at once).
    /// Keep it on loopback: any peer that can connect can publish.
    #[arg(long, env = "TICKFEED_INGEST_TCP")]
    pub ingest_tcp: Option<SocketAddr>,

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

    /// WebSocket writes per second to stay under: above it, each connection coalesces the
    /// ticks of a short window into one write (the busier the server, the longer the
    /// window, up to --max-coalesce-ms). 0 writes every tick at once, whatever the load.
    #[arg(long, env = "TICKFEED_WRITE_BUDGET", default_value_t = 50_000)]
    pub write_budget: u64,

    /// Longest a tick may wait to be coalesced with others, in milliseconds.
    #[arg(long, env = "TICKFEED_MAX_COALESCE_MS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=1_000))]
    pub max_coalesce_ms: u64,

    /// Log format on stderr. `RUST_LOG` overrides the default level (info).
    #[arg(long, env = "TICKFEED_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
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
            ..gateway::GatewayConfig::default()
        }
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
    fn bad_values_are_refused_with_a_message() {
        for args in [
            &["tickfeed", "--sim-rate", "-1"][..],
            &["tickfeed", "--replay-speed", "nan"],
            &["tickfeed", "--history", "1"],
            &["tickfeed", "--listen", "nowhere"],
            &["tickfeed", "--slow-consumer", "sometimes"],
        ] {
            let err = Cli::try_parse_from(args).expect_err("must be refused");
            assert!(!err.to_string().is_empty());
        }
    }
}
