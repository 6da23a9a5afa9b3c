#!/usr/bin/env python3
"""Summarises a results folder written by benches/peers/run.sh.

Usage:
    python3 benches/peers/report.py benches/results/<UTC timestamp> [--no-plot]

Prints Markdown: one table per scenario (server, msgs/s, p50/p99/p99.9 ms, server CPU %,
RSS per connection, gaps, conflated, and how late the server's simulator published), then
the ratio table (tickfeed ÷ peer for msgs/s;
peer ÷ tickfeed for p99, RSS per connection and server CPU). A folder of several rounds
(`run.sh --rounds N`) gets one row per server × scenario × step: each figure's median over
the rounds, with the range of p99 in brackets, and the ratios from those medians. Writes
plot.png into the
folder: p50 and p99 latency against connection count from the sweep, one colour per server,
log y axis. matplotlib is installed on first use into benches/peers/.venv when missing.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv"
SERVERS = ["tickfeed", "uwebsockets", "node-ws", "socketio"]
SCENARIOS = ["quiet", "dashboard", "storm", "firehose", "idle", "sse", "sweep"]
STEP_NAME = {"firehose": "ticks/s", "sweep": "connections"}


def ensure_matplotlib():
    """Imports matplotlib, or installs it into benches/peers/.venv and re-runs this script
    with that venv's Python. Returns the pyplot module, or None if it cannot be had."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt
    except ImportError:
        pass
    if os.environ.get("TICKFEED_REPORT_IN_VENV"):
        return None
    python = VENV / "bin" / "python"
    try:
        if not python.exists():
            print(f"report.py: creating {VENV} for matplotlib", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
        requirements = HERE / "requirements.txt"
        spec = ["-r", str(requirements)] if requirements.exists() else ["matplotlib"]
        probe = subprocess.run([str(python), "-c", "import matplotlib"], capture_output=True)
        if probe.returncode != 0:
            print("report.py: pip install matplotlib (into the venv)", file=sys.stderr)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *spec],
                check=True,
                timeout=900,
                stdout=sys.stderr,
            )
    except (subprocess.SubprocessError, OSError) as err:
        print(f"report.py: cannot install matplotlib ({err}); no plot", file=sys.stderr)
        return None
    env = dict(os.environ, TICKFEED_REPORT_IN_VENV="1")
    sys.stdout.flush()
    os.execve(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]], env)


def load(folder):
    rows = []
    with open(folder / "results.jsonl") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                print(f"report.py: results.jsonl line {n} is not JSON; skipped", file=sys.stderr)
    machine = {}
    try:
        machine = json.loads((folder / "machine.json").read_text())
    except (OSError, ValueError):
        pass
    return rows, machine


# Figures a row of several rounds shows as their median over the rounds.
MEDIAN_FIELDS = ("msgs_per_s", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "server_cpu_pct",
                 "rss_per_connection_bytes", "client_cpu_pct", "src_p50_us", "src_p99_us", "src_p999_us",
                 "kernel_p50_us", "kernel_p99_us", "kernel_p999_us")
# Latencies: taken only from the rounds whose clocks the load tool trusted, if any were.
LATENCY_FIELDS = ("p50_us", "p90_us", "p99_us", "p999_us", "max_us", "src_p50_us", "src_p99_us", "src_p999_us",
                  "kernel_p50_us", "kernel_p99_us", "kernel_p999_us")
# The p99s whose range over the rounds is kept beside the median, as `<name>_range`.
RANGE_FIELDS = ("p99_us", "src_p99_us", "kernel_p99_us")
# Counts it sums, so a loss or failure in any round shows.
SUM_FIELDS = ("ticks", "gaps", "conflated_skipped", "connect_errors", "dropped")


def median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def merge_rounds(rows):
    """One result row per server × scenario × step, in the order they first appear. Of
    several rounds it keeps each figure's median, sums the counts of loss, keeps the fewest
    connections open, is client-bound if any round was, and adds `rounds` and `p99_range`.
    Latencies come from the rounds whose clocks the load tool trusted, when there are any
    (`untrusted_rounds` counts the rest); otherwise the row is marked untrusted.
    Failed and skipped rows stay rows of their own, so no failure is hidden by a median."""
    merged, groups, skipped = [], {}, set()
    for row in rows:
        if "skipped" in row:
            # The same reason every round: listed once.
            key = (row.get("server"), row.get("scenario"), row.get("step"), row["skipped"])
            if key not in skipped:
                skipped.add(key)
                merged.append(row)
            continue
        if not isinstance(row.get("result"), dict):
            merged.append(row)
            continue
        key = (row.get("server"), row.get("scenario"), row.get("step"))
        if key not in groups:
            groups[key] = []
            merged.append(key)
        groups[key].append(row)
    out = []
    for item in merged:
        if isinstance(item, dict):
            out.append(item)
            continue
        group = groups[item]
        if len(group) == 1:
            out.append(group[0])
            continue
        results = [row["result"] for row in group]
        # Older rows have no such field: their latency was never doubted.
        trusted = [r for r in results if r.get("latency_trusted", True)]
        timed = trusted or results
        result = dict(results[0])
        for field in MEDIAN_FIELDS:
            result[field] = median(r.get(field) for r in (timed if field in LATENCY_FIELDS else results))
        for field in SUM_FIELDS:
            result[field] = sum(r.get(field) or 0 for r in results)
        result["connected"] = min(r.get("connected", 0) for r in results)
        result["client_bound"] = any(r.get("client_bound") for r in results)
        result["latency_trusted"] = bool(trusted)
        result["untrusted_rounds"] = len(results) - len(trusted)
        for field in RANGE_FIELDS:
            values = [r[field] for r in timed if r.get(field) is not None]
            result[range_key(field)] = [min(values), max(values)] if values else None
        result["rounds"] = len(results)
        loads = [row["load1"] for row in group if row.get("load1") is not None]
        out.append({"server": item[0], "scenario": item[1], "step": item[2], "result": result,
                    "load1": max(loads) if loads else None, "source": merge_sources(group)})
    return out


def range_key(field):
    """Where a p99 field's range over the rounds is kept: `p99_us` → `p99_range`."""
    return field.removesuffix("_us") + "_range"


def order(names, known):
    return sorted(names, key=lambda n: (known.index(n) if n in known else len(known), n))


def fmt_ms(us):
    if us is None:
        return "–"
    ms = us / 1000
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def fmt_num(v, digits=0):
    return "–" if v is None else f"{v:,.{digits}f}"


def fmt_bytes(b):
    if b is None:
        return "–"
    if abs(b) >= 1024 * 1024:
        return f"{b / 1024 / 1024:.1f} MiB"
    if abs(b) >= 1024:
        return f"{b / 1024:.1f} KiB"
    return f"{b:.0f} B"


def fmt_ratio(x):
    if x is None:
        return "–"
    return f"{x:.1f}×" if x >= 10 else f"{x:.2f}×"


def ratio(a, b):
    if a is None or b is None or b <= 0 or a < 0:
        return None
    return a / b


def trusted_p99(result, field="p99_us"):
    """The p99 to compare, or None when the load tool said the clocks disagreed in the run."""
    return None if result.get("latency_trusted") is False else result.get(field)


def short_error(text, limit=170):
    """The kind of failure and the end of its message (where the reason usually is)."""
    text = " ".join(str(text).replace("|", "/").split())
    if len(text) <= limit:
        return text
    head, _, rest = text.partition(": ")
    return f"{head}: …{rest[-(limit - len(head) - 3):]}"


def merge_sources(group):
    """The simulator's counts over the rounds that reported them: sums, and the latest tick."""
    sources = [row["source"] for row in group if isinstance(row.get("source"), dict)]
    if not sources:
        return None
    counts = ("published", "skipped", "late_over_2ms", "late_over_5ms")
    merged = {key: sum(s.get(key, 0) for s in sources) for key in counts}
    merged["late_max_us"] = max(s.get("late_max_us", 0) for s in sources)
    return merged


def fmt_late(row):
    """Shares of the published ticks the server's simulator sent more than 2 and 5 ms late."""
    source = row.get("source")
    if not isinstance(source, dict) or not source.get("published"):
        return ""
    share = lambda key: 100.0 * source.get(key, 0) / source["published"]
    return f"{share('late_over_2ms'):.1f} / {share('late_over_5ms'):.1f}"


def fmt_load(row):
    load = row.get("load1")
    return "" if load is None else f"{load:.1f}"


def fmt_p99(r, field):
    """A p99 in ms with, for rows of several rounds, its range in brackets; empty when not
    measured."""
    if r.get(field) is None:
        return ""
    text = fmt_ms(r[field])
    if r.get("rounds", 1) > 1 and r.get(range_key(field)):
        text += " ({}–{})".format(*(fmt_ms(v) for v in r[range_key(field)]))
    return text


def row_cells(row):
    """The cells after the server (and step) columns."""
    if "skipped" in row:
        return [row["skipped"]] + [""] * 12
    if "error" in row or not isinstance(row.get("result"), dict):
        return ["**error**: " + short_error(row.get("error", "no result"))] + [""] * 8 + [fmt_load(row), "", "", ""]
    r = row["result"]
    if not r.get("ticks"):
        # No live ticks (the idle scenario): no latency to speak of.
        r = dict(r, p50_us=None, p99_us=None, p999_us=None)
    connected = f"{r.get('connected', 0)}/{r.get('connections', 0)}"
    issues = []
    if r.get("connect_errors"):
        issues.append(f"{r['connect_errors']} connect errors")
    if r.get("dropped"):
        issues.append(f"{r['dropped']} dropped")
    if r.get("client_bound"):
        issues.append("client-bound")
    if r.get("latency_trusted") is False:
        issues.append("latency untrusted: clocks disagreed")
    elif r.get("untrusted_rounds"):
        kept = r["rounds"] - r["untrusted_rounds"]
        issues.append(f"latency from {kept} of {r['rounds']} rounds: clocks disagreed in the rest")
    if r.get("rounds", 1) > 1:
        issues.append(f"{r['rounds']} rounds")
    return [
        fmt_num(r.get("msgs_per_s")),
        fmt_ms(r.get("p50_us")),
        fmt_p99(r, "p99_us") or fmt_ms(None),
        fmt_ms(r.get("p999_us")),
        fmt_num(r.get("server_cpu_pct"), 1),
        fmt_bytes(r.get("rss_per_connection_bytes")),
        fmt_num(r.get("gaps")),
        fmt_num(r.get("conflated_skipped")),
        connected + (" (" + ", ".join(issues) + ")" if issues else ""),
        fmt_load(row),
        fmt_late(row),
        fmt_p99(r, "src_p99_us"),
        fmt_p99(r, "kernel_p99_us"),
    ]


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def result_of(rows, server, scenario, step):
    for row in rows:
        if row.get("server") == server and row.get("scenario") == scenario and row.get("step") == step:
            r = row.get("result")
            return r if isinstance(r, dict) else None
    return None


def report(rows, machine):
    lines = []
    if machine:
        lines.append(
            "Machine: {nproc} cores, {cpu}; kernel {kernel}; {node}; {rustc}; {date}; {d:g} s per run{rounds}; "
            "server on core {sc}, load tool on core {cc} (1 thread).".format(
                nproc=machine.get("nproc"),
                cpu=machine.get("cpu_model"),
                kernel=machine.get("kernel"),
                node=f"node {machine.get('node')}",
                rustc=machine.get("rustc"),
                date=machine.get("date_utc"),
                d=machine.get("duration_s", 0) or 0,
                rounds=f", {machine['rounds']} rounds" if machine.get("rounds", 1) > 1 else "",
                sc=machine.get("server_core", 0),
                cc=machine.get("client_core", 1),
            )
        )
        lines.append("")
    scenarios = order({r.get("scenario") for r in rows}, SCENARIOS)
    servers = order({r.get("server") for r in rows}, SERVERS)
    header_tail = ["msgs/s", "p50 ms", "p99 ms", "p99.9 ms", "server CPU %", "RSS/conn", "gaps", "conflated",
                   "connected", "load", "late % >2/>5 ms", "p99 from due ms", "p99 to kernel ms"]
    ratio_rows = []
    for scenario in scenarios:
        mine = [r for r in rows if r.get("scenario") == scenario]
        steps = sorted({r.get("step") for r in mine}, key=lambda s: (s is None, s or 0))
        has_step = any(s is not None for s in steps)
        header = ["server"] + ([STEP_NAME.get(scenario, "step")] if has_step else []) + header_tail
        body = []
        for step in steps:
            for server in servers:
                for row in (r for r in mine if r.get("server") == server and r.get("step") == step):
                    body.append([server] + ([fmt_num(step)] if has_step else []) + row_cells(row))
            base = result_of(rows, "tickfeed", scenario, step)
            for server in servers:
                if server == "tickfeed":
                    continue
                peer = result_of(rows, server, scenario, step)
                if not any(
                    r.get("server") == server and r.get("scenario") == scenario and r.get("step") == step and "skipped" not in r
                    for r in rows
                ):
                    continue
                b, p = base or {}, peer or {}
                ratio_rows.append(
                    [scenario + (f" {fmt_num(step)}" if step is not None else ""), server]
                    + [
                        fmt_ratio(ratio(b.get("msgs_per_s"), p.get("msgs_per_s"))),
                        fmt_ratio(ratio(trusted_p99(p), trusted_p99(b))),
                        fmt_ratio(ratio(p.get("rss_per_connection_bytes"), b.get("rss_per_connection_bytes"))),
                        fmt_ratio(ratio(p.get("server_cpu_pct"), b.get("server_cpu_pct"))),
                        fmt_ratio(ratio(trusted_p99(p, "src_p99_us"), trusted_p99(b, "src_p99_us"))),
                        fmt_ratio(ratio(trusted_p99(p, "kernel_p99_us"), trusted_p99(b, "kernel_p99_us"))),
                    ]
                )
        lines.append(f"### {scenario}")
        lines.append("")
        lines.append(table(header, body))
        lines.append("")
    if rows:
        lines.append(
            "connected: connections open when the measurement window started / asked for (later ones still "
            "count their messages). load: the machine's 1-minute load average after the run (2 cores; "
            "above ~2 means other processes competed with the server or the load tool). late: the shares of "
            "ticks the server's own simulator published more than 2 and more than 5 ms after they were due. "
            "Every server stamps `ts` as it publishes, so the latencies above do not include that wait: a "
            "server whose core is too busy to publish on time looks faster by as much. p99 from due: the p99 "
            "measured from each tick's `src_ts`, when the simulator says it was due, which includes it. "
            "p99 to kernel: the p99 up to when the load tool's kernel received each read, not when the tool "
            "parsed it: the server's share, without the tool's own queue (the two part when it is client-bound)."
        )
        lines.append("")
    if any(isinstance(r.get("result"), dict) and r["result"].get("rounds", 1) > 1 for r in rows):
        lines.append(
            "Rows of several rounds: each figure is the median over the rounds, with the range of p99 in "
            "brackets; gaps and conflated are totals, connected the fewest of any round, load the highest. "
            "Latencies leave out any round whose clocks the load tool did not trust."
        )
        lines.append("")
    if ratio_rows:
        lines.append("### tickfeed against each peer")
        lines.append("")
        lines.append(
            "msgs/s: tickfeed ÷ peer; p99, RSS/conn, server CPU, p99 from due and to kernel: peer ÷ tickfeed (above 1× "
            "favours tickfeed; – where a side has no number)."
        )
        lines.append("")
        header = ["scenario", "peer", "msgs/s", "p99", "RSS/conn", "server CPU", "p99 from due", "p99 to kernel"]
        lines.append(table(header, ratio_rows))
        lines.append("")
    return "\n".join(lines)


def plot(rows, folder, plt):
    sweep = [r for r in rows if r.get("scenario") == "sweep" and isinstance(r.get("result"), dict)]
    if not sweep:
        print("report.py: no sweep results; no plot", file=sys.stderr)
        return None
    from matplotlib.ticker import FuncFormatter

    incomplete = False
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    colours = {"tickfeed": "#d62728", "uwebsockets": "#1f77b4", "node-ws": "#2ca02c", "socketio": "#9467bd"}
    for server in order({r["server"] for r in sweep}, SERVERS):
        points = sorted(
            (r["step"] if r.get("step") is not None else r["result"].get("connections"), r["result"])
            for r in sweep
            if r["server"] == server
        )
        points = [(c, r) for c, r in points if r.get("p50_us") and r.get("p99_us")]
        if not points:
            continue
        xs = [c for c, _ in points]
        colour = colours.get(server)
        ax.plot(xs, [r["p50_us"] / 1000 for _, r in points], "o-", color=colour, label=f"{server} p50")
        ax.plot(xs, [r["p99_us"] / 1000 for _, r in points], "s--", color=colour, label=f"{server} p99")
        # White dots where fewer connections than asked were open when measuring began.
        short = [(c, r) for c, r in points if r.get("connected", 0) < r.get("connections", 0)]
        if short:
            incomplete = True
            for key, marker in (("p50_us", "o"), ("p99_us", "s")):
                ax.plot([c for c, _ in short], [r[key] / 1000 for _, r in short], marker, color="white",
                        markersize=3.5, linestyle="none")
    ax.set_yscale("log")
    ax.set_xscale("log")
    xs = sorted({r["step"] for r in sweep if r.get("step") is not None})
    if xs:
        ax.set_xticks(xs)
        ax.set_xticklabels([str(x) for x in xs])
        ax.minorticks_off()
        ax.set_yscale("log")
    ax.set_xlabel("connections (10 symbols each; 100 symbols, 2,000 ticks/s)")
    ax.set_ylabel("end-to-end latency, ms (log)")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    if incomplete:
        fig.text(0.01, 0.01, "white dot: not all connections were open when measuring began", fontsize=7, color="#555")
    ax.set_title("Latency against connection count: p50 (solid), p99 (dashed)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path = folder / "plot.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 1 or "-h" in sys.argv or "--help" in sys.argv:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    folder = Path(args[0])
    if not (folder / "results.jsonl").exists():
        print(f"report.py: {folder}/results.jsonl not found", file=sys.stderr)
        sys.exit(1)
    # Install matplotlib (and re-exec) before printing anything, so the report prints once.
    plt = None if "--no-plot" in sys.argv else ensure_matplotlib()
    rows, machine = load(folder)
    rows = merge_rounds(rows)
    print(report(rows, machine))
    if plt is not None:
        path = plot(rows, folder, plt)
        if path:
            print(f"Plot: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
