//! Replaying a recorded file (`--replay FILE`): CSV under a header, or JSON lines.
//!
//! - Format: from the extension (`.csv`; `.jsonl` or `.ndjson`) unless given explicitly.
//! - Pacing: each row is published when `(ts - first ts) / speed` has passed since the
//!   pass began; `speed` 0 publishes as fast as the engine takes them. Rows without a `ts`,
//!   and rows whose time has already passed (out of order, or a slow machine), go at once.
//! - Looping: at the end the file is read again from the start with a fresh time origin;
//!   `seq` keeps growing because the engine, not the file, numbers ticks. A pass that
//!   published nothing stops the loop instead of spinning on a file of bad rows.
//! - Line numbers count from 1 at the first line of the file, so for CSV the header is
//!   line 1 and the first row is line 2. A last line without a newline is a normal row.
//! - The CSV header is read by [`open`], so a bad header or a missing file is refused at
//!   startup, before anything is published.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use feed_engine::Engine;
use tokio::{fs::File, io::BufReader};
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument as _};

use crate::{
    framing::{Frame, LineReader},
    line::{CsvParser, HeaderError, JsonParser, LineError, Parser, TsUnit, MAX_LINE_BYTES},
    sink::LineSink,
    stats::{IngestStats, SourceKind},
    Error,
};

/// Read buffer per file: large enough that a fast replay is not bound by read calls.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// The two file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFormat {
    /// CSV with a header naming its columns.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// A `--replay-format` value that is not `csv`, `jsonl` or `ndjson`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown replay format {0:?}: expected csv or jsonl")]
pub struct UnknownReplayFormat(pub String);

impl std::str::FromStr for ReplayFormat {
    type Err = UnknownReplayFormat;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "csv" => Ok(Self::Csv),
            "jsonl" | "ndjson" => Ok(Self::Jsonl),
            other => Err(UnknownReplayFormat(other.to_owned())),
        }
    }
}

impl ReplayFormat {
    /// The format a file name implies (`.csv`, `.jsonl`, `.ndjson`, any case).
    pub fn from_path(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            _ => None,
        }
    }
}

/// Replay settings (`--replay`, `--replay-format`, `--replay-speed`, `--loop`, `--ts-unit`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayConfig {
    /// The file to replay.
    pub path: PathBuf,
    /// The format; `None` means by extension.
    pub format: Option<ReplayFormat>,
    /// 1 keeps the recorded pacing, 2 is twice as fast, 0 is as fast as possible.
    pub speed: f64,
    /// Start over at the end of the file.
    pub looped: bool,
    /// The unit of the file's `ts` values.
    pub ts_unit: TsUnit,
}

impl ReplayConfig {
    /// Defaults for `path`: format by extension, original pacing, no loop, `ts` in ns.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), format: None, speed: 1.0, looped: false, ts_unit: TsUnit::Ns }
    }

    /// Checks the settings and settles the format.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a negative or non-finite speed, [`Error::UnknownFormat`]
    /// when neither the config nor the extension names a format.
    pub fn validate(&self) -> Result<ReplayFormat, Error> {
        if !(self.speed.is_finite() && self.speed >= 0.0) {
            return Err(Error::InvalidConfig {
                setting: "replay-speed",
                reason: format!("{} is not a speed (0 = as fast as possible, 1 = recorded pacing)", self.speed),
            });
        }
        self.format
            .or_else(|| ReplayFormat::from_path(&self.path))
            .ok_or_else(|| Error::UnknownFormat { path: self.path.clone() })
    }
}

/// An opened replay: the file is readable and, for CSV, its header is valid.
#[derive(Debug)]
pub struct Replay {
    config: ReplayConfig,
    format: ReplayFormat,
    first_pass: Pass,
}

/// Opens the file and checks the settings and the CSV header, without publishing anything.
///
/// # Errors
/// See [`ReplayConfig::validate`]; [`Error::Io`] when the file cannot be opened or read;
/// [`Error::MissingHeader`], [`Error::UnknownColumn`], [`Error::DuplicateColumn`],
/// [`Error::MissingColumn`] or [`Error::BadHeader`] for a CSV file whose header is unusable.
pub async fn open(config: ReplayConfig) -> Result<Replay, Error> {
    let format = config.validate()?;
    let first_pass = Pass::open(&config, format).await?;
    Ok(Replay { config, format, first_pass })
}

/// Opens and plays the file until its end (or forever with `looped`), or until `shutdown`.
///
/// # Errors
/// Whatever [`open`] refuses, and [`Error::Io`] when reading fails midway. Malformed rows
/// are not errors: they are counted in `stats`, logged, and skipped.
pub async fn run(
    engine: Engine,
    config: ReplayConfig,
    shutdown: CancellationToken,
    stats: Arc<IngestStats>,
) -> Result<(), Error> {
    open(config).await?.run(engine, shutdown, stats).await
}

impl Replay {
    /// The format in use.
    pub fn format(&self) -> ReplayFormat {
        self.format
    }

    /// Plays the opened file; see [`run`].
    ///
    /// # Errors
    /// [`Error::Io`] when reading fails, or a later pass finds the file changed into one
    /// that [`open`] would refuse.
    pub async fn run(self, engine: Engine, shutdown: CancellationToken, stats: Arc<IngestStats>) -> Result<(), Error> {
        let span = info_span!("replay", path = %self.config.path.display());
        self.play_all(&engine, &shutdown, &stats).instrument(span).await
    }

    async fn play_all(self, engine: &Engine, shutdown: &CancellationToken, stats: &IngestStats) -> Result<(), Error> {
        let Self { config, format, first_pass } = self;
        let name = config.path.display().to_string();
        info!(?format, speed = config.speed, looped = config.looped, "replay started");
        let mut pass = first_pass;
        for pass_number in 1u64.. {
            let mut sink = LineSink::new(engine, stats, SourceKind::Replay, &name);
            let outcome = pass.play(&config, &mut sink, shutdown).await;
            let counts = sink.finish();
            info!(
                pass = pass_number,
                published = counts.published,
                malformed = counts.malformed,
                "replay pass finished"
            );
            if outcome? == Outcome::Cancelled || !config.looped {
                break;
            }
            if counts.published == 0 {
                warn!("nothing was published in a whole pass; not looping over a file with no valid rows");
                break;
            }
            pass = Pass::open(&config, format).await?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Finished,
    Cancelled,
}

/// One read through the file.
struct Pass {
    lines: LineReader<BufReader<File>>,
    parser: Parser,
    /// Number of the line read last.
    line_number: u64,
}

impl std::fmt::Debug for Pass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pass").field("line_number", &self.line_number).finish_non_exhaustive()
    }
}

impl Pass {
    async fn open(config: &ReplayConfig, format: ReplayFormat) -> Result<Self, Error> {
        let path = &config.path;
        let io_error = |source| Error::Io { path: path.clone(), source };
        let file = File::open(path).await.map_err(io_error)?;
        let mut lines = LineReader::new(BufReader::with_capacity(READ_BUFFER_BYTES, file), MAX_LINE_BYTES);
        let (parser, line_number) = match format {
            ReplayFormat::Jsonl => (Parser::Json(JsonParser::new(config.ts_unit)), 0),
            ReplayFormat::Csv => {
                let header = match lines.next_frame().await.map_err(io_error)? {
                    Some(Frame::Line(line) | Frame::Unterminated(line)) if !line.trim_ascii().is_empty() => {
                        CsvParser::from_header(line, config.ts_unit).map_err(|error| header_error(path, error))?
                    }
                    Some(Frame::TooLong { len_bytes }) => {
                        return Err(Error::BadHeader { path: path.clone(), source: LineError::TooLong { len_bytes } })
                    }
                    Some(_) | None => return Err(Error::MissingHeader { path: path.clone() }),
                };
                (Parser::Csv(header), 1)
            }
        };
        Ok(Self { lines, parser, line_number })
    }

    async fn play(
        &mut self,
        config: &ReplayConfig,
        sink: &mut LineSink<'_>,
        shutdown: &CancellationToken,
    ) -> Result<Outcome, Error> {
        let Self { lines, parser, line_number } = self;
        let mut pacer = Pacer::new(config.speed);
        // A file read always completes, so checking the token between lines is enough; the
        // only long wait, pacing, listens to it directly.
        while !shutdown.is_cancelled() {
            let frame = lines.next_frame().await.map_err(|source| Error::Io { path: config.path.clone(), source })?;
            let Some(frame) = frame else { return Ok(Outcome::Finished) };
            *line_number += 1;
            let line = match frame {
                Frame::Line(line) | Frame::Unterminated(line) => line,
                Frame::TooLong { len_bytes } => {
                    sink.reject(*line_number, &LineError::TooLong { len_bytes });
                    continue;
                }
            };
            let line = if *line_number == 1 { strip_byte_order_mark(line) } else { line };
            match parser.parse(line) {
                Ok(None) => {}
                Ok(Some(quote)) => {
                    if let Some(deadline) = quote.src_ts_us.and_then(|ts| pacer.deadline(ts)) {
                        tokio::select! {
                            () = shutdown.cancelled() => return Ok(Outcome::Cancelled),
                            () = tokio::time::sleep_until(deadline.into()) => {}
                        }
                    }
                    sink.publish(*line_number, &quote);
                }
                Err(error) => sink.reject(*line_number, &error),
            }
            // At speed 0 nothing else ever yields: give other tasks their turn now and then.
            tokio::task::consume_budget().await;
        }
        Ok(Outcome::Cancelled)
    }
}

fn header_error(path: &Path, error: HeaderError) -> Error {
    let path = path.to_path_buf();
    match error {
        HeaderError::UnknownColumn(column) => Error::UnknownColumn { path, column },
        HeaderError::DuplicateColumn(column) => Error::DuplicateColumn { path, column },
        HeaderError::MissingColumn(column) => Error::MissingColumn { path, column },
        HeaderError::Unreadable(source) => Error::BadHeader { path, source },
    }
}

/// A UTF-8 byte-order mark before the first JSON line would make it invalid JSON; editors on
/// some systems add one.
fn strip_byte_order_mark(line: &mut [u8]) -> &mut [u8] {
    if line.starts_with(b"\xEF\xBB\xBF") {
        &mut line[3..]
    } else {
        line
    }
}

/// When each row is due, relative to the first timestamped row of the pass.
#[derive(Debug)]
struct Pacer {
    speed: f64,
    origin: Option<(Instant, i64)>,
}

impl Pacer {
    fn new(speed: f64) -> Self {
        Self { speed, origin: None }
    }

    /// The instant the row with this `src_ts` is due, or `None` when it is due now.
    fn deadline(&mut self, src_ts_us: i64) -> Option<Instant> {
        if self.speed == 0.0 {
            return None;
        }
        let (start, first_ts_us) = *self.origin.get_or_insert_with(|| (Instant::now(), src_ts_us));
        let offset_us = src_ts_us.saturating_sub(first_ts_us) as f64 / self.speed;
        if offset_us <= 0.0 {
            return None;
        }
        // A gap too large for an Instant (centuries) waits "forever", i.e. until shutdown.
        let offset = Duration::try_from_secs_f64(offset_us / 1e6).unwrap_or(Duration::MAX);
        Some(start.checked_add(offset).unwrap_or_else(|| start + Duration::from_secs(100 * 365 * 86_400)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_comes_from_the_extension_or_the_config() {
        assert_eq!(ReplayFormat::from_path(Path::new("a/b.CSV")), Some(ReplayFormat::Csv));
        assert_eq!(ReplayFormat::from_path(Path::new("b.ndjson")), Some(ReplayFormat::Jsonl));
        assert_eq!(ReplayFormat::from_path(Path::new("b.jsonl")), Some(ReplayFormat::Jsonl));
        assert_eq!(ReplayFormat::from_path(Path::new("b.txt")), None);
        assert_eq!(ReplayFormat::from_path(Path::new("csv")), None);
        let explicit = ReplayConfig { format: Some(ReplayFormat::Csv), ..ReplayConfig::new("ticks.txt") };
        assert_eq!(explicit.validate().ok(), Some(ReplayFormat::Csv));
        assert!(matches!(ReplayConfig::new("ticks.txt").validate(), Err(Error::UnknownFormat { .. })));
        assert_eq!("ndjson".parse::<ReplayFormat>(), Ok(ReplayFormat::Jsonl));
        assert!("xml".parse::<ReplayFormat>().is_err());
    }

    #[test]
    fn negative_or_nan_speeds_are_refused() {
        for speed in [-1.0, f64::NAN, f64::INFINITY] {
            let config = ReplayConfig { speed, ..ReplayConfig::new("a.csv") };
            assert!(matches!(config.validate(), Err(Error::InvalidConfig { setting: "replay-speed", .. })));
        }
    }

    #[test]
    fn deadlines_scale_with_speed() {
        let mut pacer = Pacer::new(2.0);
        assert_eq!(pacer.deadline(1_000_000), None);
        let (start, _) = pacer.origin.expect("set by the first row");
        assert_eq!(pacer.deadline(1_400_000), Some(start + Duration::from_millis(200)));
        assert_eq!(pacer.deadline(900_000), None, "rows out of order go at once");
        assert!(Pacer::new(0.0).deadline(5).is_none());
        assert!(Pacer::new(1.0).deadline(i64::MIN).is_none());
        let mut far = Pacer::new(1e-300);
        far.deadline(0);
        assert!(far.deadline(i64::MAX).is_some());
    }
}
