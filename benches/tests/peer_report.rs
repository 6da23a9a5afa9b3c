//! `benches/peers/report.py` on a results folder of several rounds: one row per server and
//! scenario with medians and the range of p99, ratios from the medians, failures kept as
//! rows of their own, a peer's skipped scenario listed once, and a run whose clocks
//! disagreed marked and left out of the p99 ratio.

use std::{path::Path, process::Command};

use serde_json::{json, Value};

/// One row as `run.sh` appends it: the load tool's JSON line under `result`.
fn result_row(server: &str, scenario: &str, round: u32, p50_us: u64, p99_us: u64, cpu: f64) -> Value {
    json!({
        "server": server, "scenario": scenario, "step": null, "round": round, "load1": 0.5,
        "result": {
            "connections": 100, "connected": 100, "connect_errors": 0, "dropped": 0, "ticks": 20000,
            "msgs_per_s": 2000, "snapshots": 0, "p50_us": p50_us, "p90_us": p50_us, "p99_us": p99_us,
            "p999_us": p99_us, "max_us": p99_us, "gaps": 0, "conflated_skipped": 0,
            "server_cpu_pct": cpu, "rss_per_connection_bytes": 1024.0, "client_cpu_pct": 10.0,
            "client_bound": false
        }
    })
}

/// Writes `rows` as a results folder and returns what `report.py --no-plot` prints.
fn report(dir: &Path, rows: &[Value]) -> String {
    std::fs::create_dir_all(dir).expect("results folder");
    let lines: String = rows.iter().map(|row| format!("{row}\n")).collect();
    std::fs::write(dir.join("results.jsonl"), lines).expect("results.jsonl");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/report.py");
    let output = Command::new("python3").arg(script).arg(dir).arg("--no-plot").output().expect("python3 runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8")
}

fn rows_starting(text: &str, prefix: &str) -> Vec<String> {
    text.lines().filter(|line| line.starts_with(prefix)).map(str::to_owned).collect()
}

#[test]
fn rounds_become_one_row_of_medians_with_the_range_of_p99() {
    let dir = std::env::temp_dir().join(format!("tickfeed-peer-report-{}", std::process::id()));
    let mut rows = Vec::new();
    for (round, (p99, peer_p99)) in [(300, 600), (200, 400), (900, 500)].into_iter().enumerate() {
        let round = round as u32 + 1;
        rows.push(result_row("tickfeed", "quiet", round, 100, p99, 3.0));
        rows.push(result_row("uwebsockets", "quiet", round, 120, peer_p99, 6.0));
        rows.push(json!({"server": "uwebsockets", "scenario": "sse", "step": null, "round": round,
                         "skipped": "n/a: no SSE endpoint"}));
    }
    rows.push(json!({"server": "tickfeed", "scenario": "sse", "step": null, "round": 2, "load1": 0.5,
                     "error": "load tool timed out after 80 s"}));
    let text = report(&dir, &rows);
    std::fs::remove_dir_all(&dir).ok();

    // Medians 300 and 500 µs, ranges 200–900 and 400–600 µs, three rounds each.
    assert_eq!(rows_starting(&text, "| tickfeed | 2,000 | 0.100 | 0.300 (0.200–0.900) |").len(), 1, "{text}");
    assert_eq!(rows_starting(&text, "| uwebsockets | 2,000 | 0.120 | 0.500 (0.400–0.600) |").len(), 1, "{text}");
    assert!(text.contains("100/100 (3 rounds)"), "{text}");
    // The ratio comes from the medians: 500 / 300 for p99, 6 / 3 for CPU.
    assert_eq!(rows_starting(&text, "| quiet | uwebsockets | 1.00× | 1.67× | 1.00× | 2.00× |").len(), 1, "{text}");
    // The failed round stays visible; the skip is listed once, not once per round.
    assert!(text.contains("**error**: load tool timed out after 80 s"), "{text}");
    assert_eq!(rows_starting(&text, "| uwebsockets | n/a: no SSE endpoint").len(), 1, "{text}");
}

#[test]
fn one_round_reports_its_figures_without_a_range() {
    let dir = std::env::temp_dir().join(format!("tickfeed-peer-report-one-{}", std::process::id()));
    let text = report(&dir, &[result_row("tickfeed", "quiet", 1, 100, 300, 3.0)]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(rows_starting(&text, "| tickfeed | 2,000 | 0.100 | 0.300 | 0.300 | 3.0 |").len(), 1, "{text}");
    assert!(!text.contains("rounds"), "{text}");
}

/// A round whose clocks disagreed is left out of the latencies and said so; a row whose
/// every round did is marked and its p99 not compared.
#[test]
fn rounds_whose_clocks_disagreed_are_marked_and_left_out_of_the_p99() {
    let dir = std::env::temp_dir().join(format!("tickfeed-peer-report-clock-{}", std::process::id()));
    let mut rows = Vec::new();
    for round in 1..=2 {
        rows.push(result_row("tickfeed", "firehose", round, 300, 700, 50.0));
        // The load tool's verdict in one round: a clock stepped, every latency shifted.
        let p99 = if round == 1 { 1_400 } else { 1 };
        let mut peer = result_row("uwebsockets", "firehose", round, 1, p99, 60.0);
        peer["result"]["latency_trusted"] = json!(round != 2);
        rows.push(peer);
        let mut never = result_row("node-ws", "firehose", round, 1, 1, 60.0);
        never["result"]["latency_trusted"] = json!(false);
        rows.push(never);
    }
    let text = report(&dir, &rows);
    std::fs::remove_dir_all(&dir).ok();
    // The doubtful round is left out: uWebSockets.js's p99 is its trusted round's.
    let peer = rows_starting(&text, "| uwebsockets | 2,000 | 0.001 | 1.40 (1.40–1.40) |");
    let said = "(latency from 1 of 2 rounds: clocks disagreed in the rest, 2 rounds)";
    assert!(peer.len() == 1 && peer[0].contains(said), "{text}");
    assert_eq!(rows_starting(&text, "| firehose | uwebsockets | 1.00× | 2.00× | 1.00× | 1.20× |").len(), 1, "{text}");
    // Every round doubtful: marked, and the p99 not compared; msgs/s and CPU still are.
    assert_eq!(text.matches("100/100 (latency untrusted: clocks disagreed, 2 rounds)").count(), 1, "{text}");
    assert_eq!(rows_starting(&text, "| firehose | node-ws | 1.00× | – | 1.00× | 1.20× |").len(), 1, "{text}");
    assert_eq!(text.matches("100/100 (2 rounds)").count(), 1, "{text}");
}

/// The simulator's counts from the server's log: shares of its published ticks more than 2
/// and 5 ms late, summed over the rounds, and the p99 from each tick's due time with its
/// ratio; a row without them (an older run, a server without `src_ts`) leaves them blank.
#[test]
fn how_late_each_source_published_is_summed_over_the_rounds() {
    let dir = std::env::temp_dir().join(format!("tickfeed-peer-report-late-{}", std::process::id()));
    let mut rows = Vec::new();
    for (round, (over_2ms, over_5ms)) in [(100, 0), (300, 50)].into_iter().enumerate() {
        let mut row = result_row("tickfeed", "dashboard", round as u32 + 1, 1_000, 5_000, 80.0);
        row["source"] = json!({"published": 10_000, "skipped": 0, "late_over_2ms": over_2ms,
                               "late_over_5ms": over_5ms, "late_max_us": 6_000 + round});
        row["result"]["src_p99_us"] = json!(8_000 + 1_000 * round);
        rows.push(row);
    }
    let mut peer = result_row("uwebsockets", "dashboard", 1, 1_000, 5_000, 90.0);
    peer["result"]["src_p99_us"] = json!(17_000);
    rows.push(peer);
    rows.push(result_row("node-ws", "dashboard", 1, 1_000, 5_000, 90.0));
    let text = report(&dir, &rows);
    std::fs::remove_dir_all(&dir).ok();
    // 400 and 50 of 20,000; p99 from the source 8 and 9 ms.
    let mine = rows_starting(&text, "| tickfeed | 2,000 |");
    assert!(mine.len() == 1 && mine[0].ends_with("| 2.0 / 0.2 | 8.50 (8.00–9.00) |  |"), "{text}");
    let peer = rows_starting(&text, "| uwebsockets | 2,000 |");
    assert!(peer.len() == 1 && peer[0].ends_with("|  | 17.00 |  |"), "{text}");
    // Without a source, no cells and no ratio from it.
    let old = rows_starting(&text, "| node-ws | 2,000 |");
    assert!(old.len() == 1 && old[0].ends_with("|  |  |  |"), "{text}");
    let ratios = "| dashboard | uwebsockets | 1.00× | 1.00× | 1.00× | 1.12× | 2.00× | – |";
    assert_eq!(rows_starting(&text, ratios).len(), 1, "{text}");
    let no_source = "| dashboard | node-ws | 1.00× | 1.00× | 1.00× | 1.12× | – | – |";
    assert_eq!(rows_starting(&text, no_source).len(), 1, "{text}");
}

/// The p99 up to the load tool's kernel: the median with its range over the rounds, and a
/// ratio of its own; blank where a run did not measure it.
#[test]
fn latency_to_the_kernel_has_its_own_column_and_ratio() {
    let dir = std::env::temp_dir().join(format!("tickfeed-peer-report-kernel-{}", std::process::id()));
    let mut rows = Vec::new();
    for (round, kernel_p99) in [3_000, 5_000].into_iter().enumerate() {
        let mut row = result_row("tickfeed", "dashboard", round as u32 + 1, 1_000, 6_000, 80.0);
        row["result"]["kernel_p99_us"] = json!(kernel_p99);
        rows.push(row);
    }
    let mut peer = result_row("uwebsockets", "dashboard", 1, 1_000, 9_000, 90.0);
    peer["result"]["kernel_p99_us"] = json!(8_000);
    rows.push(peer);
    rows.push(result_row("node-ws", "dashboard", 1, 1_000, 9_000, 90.0));
    let text = report(&dir, &rows);
    std::fs::remove_dir_all(&dir).ok();
    let mine = rows_starting(&text, "| tickfeed | 2,000 |");
    assert!(mine.len() == 1 && mine[0].ends_with("|  | 4.00 (3.00–5.00) |"), "{text}");
    let peer = rows_starting(&text, "| uwebsockets | 2,000 |");
    assert!(peer.len() == 1 && peer[0].ends_with("|  | 8.00 |"), "{text}");
    let old = rows_starting(&text, "| node-ws | 2,000 |");
    assert!(old.len() == 1 && old[0].ends_with("|  |  |  |"), "{text}");
    let ratios = "| dashboard | uwebsockets | 1.00× | 1.50× | 1.00× | 1.12× | – | 2.00× |";
    assert_eq!(rows_starting(&text, ratios).len(), 1, "{text}");
    let unmeasured = "| dashboard | node-ws | 1.00× | 1.50× | 1.00× | 1.12× | – | – |";
    assert_eq!(rows_starting(&text, unmeasured).len(), 1, "{text}");
}
