//! What every line-based source does with a parsed line: publish it, or count it as
//! malformed and warn (rate-limited) naming the source and the line number.
//!
//! Keeping this in one place means a file, stdin and every TCP publisher count and log the
//! same way, and the engine's own refusal (which the parser's checks should make
//! impossible) is still counted rather than lost.

use std::{fmt::Display, time::Instant};

use feed_engine::{Engine, Quote};
use tracing::warn;

use crate::{
    line::LineError,
    stats::{IngestStats, LineCounts, SourceKind},
    throttle::{Verdict, WarnThrottle},
};

/// Publishing and accounting for one source (one file pass, stdin, one TCP connection).
pub(crate) struct LineSink<'s> {
    engine: &'s Engine,
    stats: &'s IngestStats,
    kind: SourceKind,
    /// The file path, "stdin", or the peer address: what an operator looks for in the log.
    name: &'s str,
    throttle: WarnThrottle,
    counts: LineCounts,
}

impl<'s> LineSink<'s> {
    pub(crate) fn new(engine: &'s Engine, stats: &'s IngestStats, kind: SourceKind, name: &'s str) -> Self {
        Self { engine, stats, kind, name, throttle: WarnThrottle::default(), counts: LineCounts::default() }
    }

    /// Publishes a parsed quote; returns whether the engine took it.
    pub(crate) fn publish(&mut self, line_number: u64, quote: &Quote<'_>) -> bool {
        match self.engine.publish(quote) {
            Ok(_) => {
                self.counts.published += 1;
                self.stats.add_published(self.kind, 1);
                true
            }
            Err(error) => {
                self.skip(line_number, &error);
                false
            }
        }
    }

    /// Counts a line as malformed and warns about it, within the warning budget.
    pub(crate) fn skip(&mut self, line_number: u64, error: &dyn Display) {
        self.counts.malformed += 1;
        self.stats.add_malformed(self.kind, 1);
        if let Verdict::Log { suppressed } = self.throttle.check(Instant::now()) {
            warn!(
                source = self.name,
                kind = self.kind.as_str(),
                line = line_number,
                error = %error,
                suppressed,
                "malformed line skipped"
            );
        }
    }

    /// Counts a line the parser refused.
    pub(crate) fn reject(&mut self, line_number: u64, error: &LineError) {
        self.skip(line_number, error);
    }

    /// Reports warnings still held back by the throttle, and returns the counts.
    pub(crate) fn finish(mut self) -> LineCounts {
        let suppressed = self.throttle.take_suppressed();
        if suppressed > 0 {
            warn!(
                source = self.name,
                kind = self.kind.as_str(),
                suppressed,
                "more malformed lines were skipped without a warning each"
            );
        }
        self.counts
    }
}
