//! # ingest
//!
//! The tick sources of tickfeed: the built-in [`simulator`], [`replay`] of a recorded file,
//! and JSON lines on stdin or a TCP listener ([`stream`], guarded by a [`publisher`] token).
//! Each source reads, parses, validates and publishes [`feed_engine::Quote`]s through
//! [`feed_engine::Engine::publish`]; a source's own clock goes in `src_ts`. The engine
//! assigns `seq` and `ts`, never a source.
//!
//! This crate knows only the engine's publish side. It must not touch clients, subscriptions,
//! HTTP or anything a transport owns; the gateway reads the shared [`IngestStats`] counters
//! to export them.
//!
//! Every source is bounded: lines longer than [`line::MAX_LINE_BYTES`] are discarded without
//! being buffered, malformed lines are counted and logged at a limited rate, and nothing
//! partial is ever published.

pub mod framing;
pub mod line;
pub mod market;
pub mod publisher;
pub mod replay;
pub mod simulator;
pub mod stats;
pub mod stream;

mod sink;
mod throttle;

use std::path::PathBuf;

pub use line::{LineError, TsUnit};
pub use market::Market;
pub use replay::{ReplayConfig, ReplayFormat};
pub use simulator::SimConfig;
pub use stats::{IngestStats, LineCounts, SourceKind};

/// What can stop a source from starting or running. Malformed lines are not errors of the
/// source: they are counted in [`IngestStats`] and skipped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The replay format could not be told from the file name and none was given.
    #[error("{}: unknown replay format: name the file .csv, .jsonl or .ndjson, or give the format", path.display())]
    UnknownFormat {
        /// The file concerned.
        path: PathBuf,
    },
    /// A CSV file has no header line (it is empty).
    #[error("{}: empty file: a CSV replay starts with a header naming its columns", path.display())]
    MissingHeader {
        /// The file concerned.
        path: PathBuf,
    },
    /// The CSV header names a column this crate does not know.
    #[error("{}: unknown CSV column {column:?}: columns are ts, symbol, price, size, bid, ask, bid_size, ask_size", path.display())]
    UnknownColumn {
        /// The file concerned.
        path: PathBuf,
        /// The column as written in the header.
        column: String,
    },
    /// The CSV header names the same column twice.
    #[error("{}: CSV column {column:?} appears twice in the header", path.display())]
    DuplicateColumn {
        /// The file concerned.
        path: PathBuf,
        /// The repeated column.
        column: String,
    },
    /// The CSV header lacks a required column (`symbol` or `price`).
    #[error("{}: the CSV header has no {column} column (symbol and price are required)", path.display())]
    MissingColumn {
        /// The file concerned.
        path: PathBuf,
        /// The missing column.
        column: &'static str,
    },
    /// The CSV header line itself cannot be read (invalid UTF-8 or too long).
    #[error("{}: unreadable CSV header: {source}", path.display())]
    BadHeader {
        /// The file concerned.
        path: PathBuf,
        /// Why the header line was refused.
        #[source]
        source: LineError,
    },
    /// A TCP ingest listener could not be bound.
    #[error("cannot listen for ingest on {addr}: {source}")]
    Bind {
        /// The address as given.
        addr: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A source setting is out of range (rate, speed, symbol count).
    #[error("invalid {setting}: {reason}")]
    InvalidConfig {
        /// The setting concerned, named as on the command line.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}
