//! Counters shared by every source and read by whoever exports metrics (the gateway).
//!
//! Plain relaxed atomics: each counter is independent and only ever read for display, so no
//! ordering between them is promised or needed. Totals and per-kind counters are updated
//! separately, so a reader may briefly see a total one batch ahead of its kind.

use std::sync::atomic::{AtomicU64, Ordering};

/// The kinds of source, for per-kind counters and log fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// The built-in simulated market.
    Simulator,
    /// A replayed file.
    Replay,
    /// JSON lines on standard input.
    Stdin,
    /// JSON lines from TCP publishers.
    Tcp,
}

impl SourceKind {
    /// Every kind, in a fixed order (for metrics exporters).
    pub const ALL: [Self; 4] = [Self::Simulator, Self::Replay, Self::Stdin, Self::Tcp];

    /// A short lowercase name for labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Simulator => "simulator",
            Self::Replay => "replay",
            Self::Stdin => "stdin",
            Self::Tcp => "tcp",
        }
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Published and malformed counts of one source kind.
#[derive(Debug, Default)]
pub struct SourceCounters {
    /// Ticks this kind handed to the engine and the engine accepted.
    pub published: AtomicU64,
    /// Lines this kind skipped: unparsable, invalid, too long, or cut off.
    pub malformed: AtomicU64,
}

/// Counters of all sources. Share it as `Arc<IngestStats>`.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Ticks published by every source together.
    pub published: AtomicU64,
    /// Lines skipped by every source together.
    pub malformed: AtomicU64,
    /// TCP publishers connected right now.
    pub tcp_publishers: AtomicU64,
    simulator: SourceCounters,
    replay: SourceCounters,
    stdin: SourceCounters,
    tcp: SourceCounters,
}

/// A plain copy of a pair of counters, for tests and summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineCounts {
    /// Ticks published.
    pub published: u64,
    /// Lines skipped.
    pub malformed: u64,
}

impl IngestStats {
    /// The counters of one source kind.
    pub fn source(&self, kind: SourceKind) -> &SourceCounters {
        match kind {
            SourceKind::Simulator => &self.simulator,
            SourceKind::Replay => &self.replay,
            SourceKind::Stdin => &self.stdin,
            SourceKind::Tcp => &self.tcp,
        }
    }

    /// Adds `count` published ticks to the total and to `kind`.
    pub fn add_published(&self, kind: SourceKind, count: u64) {
        if count > 0 {
            self.published.fetch_add(count, Ordering::Relaxed);
            self.source(kind).published.fetch_add(count, Ordering::Relaxed);
        }
    }

    /// Adds `count` skipped lines to the total and to `kind`.
    pub fn add_malformed(&self, kind: SourceKind, count: u64) {
        if count > 0 {
            self.malformed.fetch_add(count, Ordering::Relaxed);
            self.source(kind).malformed.fetch_add(count, Ordering::Relaxed);
        }
    }

    /// Totals over every source.
    pub fn totals(&self) -> LineCounts {
        LineCounts {
            published: self.published.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
        }
    }

    /// The counts of one source kind.
    pub fn counts(&self, kind: SourceKind) -> LineCounts {
        let source = self.source(kind);
        LineCounts {
            published: source.published.load(Ordering::Relaxed),
            malformed: source.malformed.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_add_up_to_the_totals() {
        let stats = IngestStats::default();
        stats.add_published(SourceKind::Replay, 3);
        stats.add_published(SourceKind::Tcp, 2);
        stats.add_malformed(SourceKind::Tcp, 1);
        assert_eq!(stats.totals(), LineCounts { published: 5, malformed: 1 });
        assert_eq!(stats.counts(SourceKind::Tcp), LineCounts { published: 2, malformed: 1 });
        assert_eq!(stats.counts(SourceKind::Stdin), LineCounts::default());
    }
}
