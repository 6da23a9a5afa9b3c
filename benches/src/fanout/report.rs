//! Counters and histograms one client thread collects, merged into the final report
//! (a table for people, one JSON line for scripts).

use hdrhistogram::Histogram;

/// What one client thread saw.
pub struct Stats {
    /// End-to-end latency of live ticks in the measurement window, µs.
    pub latency_us: Histogram<u64>,
    /// Latency from the source's own time (`src_ts`: when a simulated tick was due) of the
    /// live ticks that carry one, µs: `latency_us` plus however long the tick waited to be
    /// published, which `ts` cannot show.
    pub source_latency_us: Histogram<u64>,
    /// Latency up to the client's socket: when its kernel received the bytes, minus `ts`
    /// ([`super::kernel_time`]), µs. The server's share, without the load tool's own queue.
    pub kernel_latency_us: Histogram<u64>,
    /// Time from connect start to the first server message, µs.
    pub connect_us: Histogram<u64>,
    /// Live ticks received in the window.
    pub ticks: u64,
    /// Snapshot ticks received (any time).
    pub snapshots: u64,
    /// Seq jumps not flagged `conflated` (in the window): lost ticks.
    pub gaps: u64,
    /// Ticks skipped behind a `conflated` jump (in the window).
    pub conflated_skipped: u64,
    /// Connections that failed to open.
    pub connect_errors: u64,
    /// Connections that ended before the run did.
    pub dropped: u64,
    /// Connections open when the window started.
    pub connected: u64,
    /// Live ticks in the window whose `ts` was later than their arrival: the server's clock
    /// and this one disagree (another host, or a clock stepped), and each such tick's
    /// latency was recorded as 1 µs.
    pub early: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds are valid"),
            source_latency_us: Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds are valid"),
            kernel_latency_us: Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds are valid"),
            connect_us: Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds are valid"),
            ticks: 0,
            snapshots: 0,
            gaps: 0,
            conflated_skipped: 0,
            connect_errors: 0,
            dropped: 0,
            connected: 0,
            early: 0,
        }
    }
}

impl Stats {
    /// Adds another thread's numbers.
    pub fn merge(&mut self, other: &Self) {
        // Both histograms share bounds, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        let _ = self.source_latency_us.add(&other.source_latency_us);
        let _ = self.kernel_latency_us.add(&other.kernel_latency_us);
        let _ = self.connect_us.add(&other.connect_us);
        self.ticks += other.ticks;
        self.snapshots += other.snapshots;
        self.gaps += other.gaps;
        self.conflated_skipped += other.conflated_skipped;
        self.connect_errors += other.connect_errors;
        self.dropped += other.dropped;
        self.connected += other.connected;
        self.early += other.early;
    }
}

/// The whole run's result.
pub struct Report<'a> {
    /// Name of the preset or "custom".
    pub scenario: &'a str,
    /// URL measured.
    pub url: &'a str,
    /// Connections asked for.
    pub connections: usize,
    /// Measurement window, seconds.
    pub duration_s: f64,
    /// Merged stats.
    pub stats: &'a Stats,
    /// Server CPU use in the window, percent of one core.
    pub server_cpu_pct: Option<f64>,
    /// Server RSS before connecting and at the end of the window, KiB.
    pub server_rss_kib: Option<(u64, u64)>,
    /// This tool's CPU use in the window, percent of one core.
    pub client_cpu_pct: f64,
    /// Client threads.
    pub client_threads: usize,
    /// How far this host's wall clock moved against its monotonic clock during the window
    /// (µs, signed): a clock stepped mid-run shifts every latency after the step.
    pub clock_step_us: i64,
}

/// Share of live ticks arriving before their `ts` past which latencies are not trusted.
const EARLY_LIMIT: f64 = 0.001;
/// Wall-clock step during the window past which latencies are not trusted.
const STEP_LIMIT_US: i64 = 1_000;

impl Report<'_> {
    fn rate(&self) -> f64 {
        self.stats.ticks as f64 / self.duration_s
    }

    fn rss_per_connection_bytes(&self) -> Option<f64> {
        let (before, after) = self.server_rss_kib?;
        let connected = self.stats.connected.max(1) as f64;
        Some((after as f64 - before as f64) * 1024.0 / connected)
    }

    /// Was the client, not the server, the limit? (Its threads nearly all busy.)
    pub fn is_client_bound(&self) -> bool {
        self.client_cpu_pct > 90.0 * self.client_threads as f64
    }

    /// Why the latency figures cannot be trusted, if they cannot: they are receive time
    /// minus the server's `ts`, so they assume both read one clock that stood still.
    pub fn clock_warning(&self) -> Option<String> {
        let s = self.stats;
        let early_share = s.early as f64 / s.ticks.max(1) as f64;
        if early_share > EARLY_LIMIT {
            return Some(format!(
                "{} of {} ticks ({:.2}%) arrived before their ts: the server's clock is ahead of this host's",
                s.early,
                s.ticks,
                early_share * 100.0
            ));
        }
        if self.clock_step_us.abs() >= STEP_LIMIT_US {
            return Some(format!("this host's wall clock was stepped by {} µs during the window", self.clock_step_us));
        }
        None
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let s = self.stats;
        let mut out = format!(
            "scenario {}  url {}  connections {}/{} (errors {}, dropped {})\n",
            self.scenario, self.url, s.connected, self.connections, s.connect_errors, s.dropped
        );
        out += &format!(
            "delivered {:.0} msgs/s over {:.1} s ({} live ticks, {} snapshots)\n",
            self.rate(),
            self.duration_s,
            s.ticks,
            s.snapshots
        );
        out += &format!("latency µs  {}\n", percentiles(&s.latency_us));
        let from_source = &s.source_latency_us;
        if !from_source.is_empty() {
            let carried = from_source.len();
            out += &format!("from src_ts µs  {}  ({carried} ticks carried one)\n", percentiles(from_source));
        }
        let to_kernel = &s.kernel_latency_us;
        if !to_kernel.is_empty() {
            out += &format!("to the client's kernel µs  {}\n", percentiles(to_kernel));
        }
        if let Some(warning) = self.clock_warning() {
            out += &format!("LATENCY NOT TRUSTWORTHY: {warning}\n");
        }
        out += &format!("seq gaps {}  conflated-skipped {}\n", s.gaps, s.conflated_skipped);
        out += &format!(
            "connect ms  p50 {:.2}  p99 {:.2}  max {:.2}\n",
            s.connect_us.value_at_quantile(0.5) as f64 / 1000.0,
            s.connect_us.value_at_quantile(0.99) as f64 / 1000.0,
            s.connect_us.max() as f64 / 1000.0
        );
        if let Some(cpu) = self.server_cpu_pct {
            out += &format!("server cpu {cpu:.1}% of one core\n");
        }
        if let (Some((before, after)), Some(per)) = (self.server_rss_kib, self.rss_per_connection_bytes()) {
            out += &format!("server rss {before} KiB -> {after} KiB ({per:.0} bytes per connection)\n");
        }
        out += &format!("client cpu {:.1}% over {} threads", self.client_cpu_pct, self.client_threads);
        if self.is_client_bound() {
            out += "  (CLIENT-BOUND: the load tool, not the server, was the limit)";
        }
        out
    }

    /// One JSON object on one line.
    pub fn json(&self) -> String {
        let s = self.stats;
        let h = &s.latency_us;
        let opt = |v: Option<f64>| v.map_or("null".to_owned(), |v| format!("{v:.1}"));
        let quantile =
            |h: &Histogram<u64>, q| if h.is_empty() { "null".to_owned() } else { h.value_at_quantile(q).to_string() };
        let (from_source, to_kernel) = (&s.source_latency_us, &s.kernel_latency_us);
        format!(
            concat!(
                "{{\"scenario\":\"{}\",\"url\":\"{}\",\"connections\":{},\"connected\":{},\"connect_errors\":{},",
                "\"dropped\":{},\"duration_s\":{:.1},\"ticks\":{},\"msgs_per_s\":{:.0},\"snapshots\":{},",
                "\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"gaps\":{},",
                "\"conflated_skipped\":{},\"connect_p50_us\":{},\"connect_p99_us\":{},\"server_cpu_pct\":{},",
                "\"server_rss_before_kib\":{},\"server_rss_after_kib\":{},\"rss_per_connection_bytes\":{},",
                "\"client_cpu_pct\":{:.1},\"client_bound\":{},\"early_ticks\":{},\"clock_step_us\":{},",
                "\"latency_trusted\":{},\"src_ticks\":{},\"src_p50_us\":{},\"src_p99_us\":{},\"src_p999_us\":{},",
                "\"kernel_ticks\":{},\"kernel_p50_us\":{},\"kernel_p99_us\":{},\"kernel_p999_us\":{}}}"
            ),
            self.scenario,
            self.url,
            self.connections,
            s.connected,
            s.connect_errors,
            s.dropped,
            self.duration_s,
            s.ticks,
            self.rate(),
            s.snapshots,
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.9),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
            s.gaps,
            s.conflated_skipped,
            s.connect_us.value_at_quantile(0.5),
            s.connect_us.value_at_quantile(0.99),
            opt(self.server_cpu_pct),
            self.server_rss_kib.map_or("null".to_owned(), |r| r.0.to_string()),
            self.server_rss_kib.map_or("null".to_owned(), |r| r.1.to_string()),
            opt(self.rss_per_connection_bytes()),
            self.client_cpu_pct,
            self.is_client_bound(),
            s.early,
            self.clock_step_us,
            self.clock_warning().is_none(),
            from_source.len(),
            quantile(from_source, 0.5),
            quantile(from_source, 0.99),
            quantile(from_source, 0.999),
            to_kernel.len(),
            quantile(to_kernel, 0.5),
            quantile(to_kernel, 0.99),
            quantile(to_kernel, 0.999)
        )
    }
}

/// A latency histogram's line in the table.
fn percentiles(h: &Histogram<u64>) -> String {
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(stats: &Stats, clock_step_us: i64) -> Report<'_> {
        Report {
            scenario: "custom",
            url: "ws://127.0.0.1:1/ws",
            connections: 1,
            duration_s: 1.0,
            stats,
            server_cpu_pct: None,
            server_rss_kib: None,
            client_cpu_pct: 1.0,
            client_threads: 1,
            clock_step_us,
        }
    }

    #[test]
    fn latency_is_trusted_only_with_one_steady_clock() {
        let mut stats = Stats { ticks: 10_000, ..Stats::default() };
        assert_eq!(report(&stats, 0).clock_warning(), None);
        assert!(report(&stats, 0).json().contains("\"early_ticks\":0,\"clock_step_us\":0,\"latency_trusted\":true,"));
        // A few early ticks are the two clocks' reading error, not a wrong clock.
        stats.early = 10;
        assert_eq!(report(&stats, -999).clock_warning(), None);
        stats.early = 11;
        let warning = report(&stats, 0).clock_warning().expect("too many early ticks");
        assert!(warning.contains("11 of 10000 ticks"), "{warning}");
        stats.early = 0;
        let stepped = report(&stats, -1_000);
        assert!(stepped.clock_warning().expect("a step").contains("-1000 µs"));
        assert!(stepped.table().contains("LATENCY NOT TRUSTWORTHY"));
        assert!(stepped.json().contains("\"clock_step_us\":-1000,\"latency_trusted\":false,"));
    }

    /// Latency from `src_ts` is reported when ticks carried one, and null when none did.
    #[test]
    fn latency_from_the_source_is_reported_only_when_measured() {
        let mut stats = Stats { ticks: 2, ..Stats::default() };
        let none = report(&stats, 0);
        assert!(none.json().contains("\"src_ticks\":0,\"src_p50_us\":null,\"src_p99_us\":null,\"src_p999_us\":null,"));
        assert!(!none.table().contains("from src_ts"));
        for us in [100, 300] {
            stats.source_latency_us.record(us).expect("in bounds");
        }
        let some = report(&stats, 0);
        assert!(some.json().contains("\"src_ticks\":2,\"src_p50_us\":100,\"src_p99_us\":300,\"src_p999_us\":300,"));
        assert!(some.table().contains("from src_ts µs  p50 100"), "{}", some.table());
    }

    /// Latency to the client's kernel likewise: null and no table line when not measured.
    #[test]
    fn latency_to_the_kernel_is_reported_only_when_measured() {
        let mut stats = Stats { ticks: 1, ..Stats::default() };
        let none = report(&stats, 0);
        let unmeasured = "\"kernel_ticks\":0,\"kernel_p50_us\":null,\"kernel_p99_us\":null,\"kernel_p999_us\":null}";
        assert!(none.json().ends_with(unmeasured), "{}", none.json());
        assert!(!none.table().contains("kernel"));
        stats.kernel_latency_us.record(40).expect("in bounds");
        let some = report(&stats, 0);
        let measured = "\"kernel_ticks\":1,\"kernel_p50_us\":40,\"kernel_p99_us\":40,\"kernel_p999_us\":40}";
        assert!(some.json().ends_with(measured), "{}", some.json());
        assert!(some.table().contains("to the client's kernel µs  p50 40"), "{}", some.table());
    }
}
