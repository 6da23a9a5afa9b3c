#!/usr/bin/env bash
# Runs the peer comparison: tickfeed against uWebSockets.js, a plain Node `ws` server and
# Socket.IO 4, each scenario in turn, the server pinned to core 0 and the fan-out load tool
# (one client thread) pinned to core 1, all on loopback.
#
# Usage:
#   benches/peers/run.sh [--scenarios quiet,dashboard,storm,firehose,idle,sse,sweep]
#                        [--servers tickfeed,uwebsockets,node-ws,socketio]
#                        [--duration SECONDS] [--warmup SECONDS] [--sweep 100,250,500,1000,2000]
#                        [--firehose-rates 25000,50000,100000] [--idle-rate 0]
#                        [--rounds N] [--out DIR] [--no-build]
#
#   --scenarios  which scenarios to run (default: all seven)
#   --servers    which servers to measure (default: all four)
#   --duration   seconds measured per run, after ramp-up and the warm-up (default 10)
#   --warmup     seconds between the last connection opened and measuring (default 2)
#   --sweep      connection counts of the sweep scenario (default 100,250,500,1000,2000)
#   --firehose-rates  simulator rates of the firehose steps (default 25000,50000,100000)
#   --idle-rate  simulator rate of the idle scenario, every server (default 0)
#   --rounds     run everything N times over, servers interleaved in each round; the report
#                gives each figure's median over the rounds and the spread of p99 (default 1)
#   --out        results folder (default benches/results/<UTC timestamp>)
#   --no-build   skip `npm ci` and `cargo build` (use what is already there)
#
# Writes <out>/results.jsonl (one row per round × server × scenario × step:
#   {"server":…,"scenario":…,"step":…,"round":…,"result":<fanout's JSON line>}, or with "error" /
#   "skipped" instead of a result), <out>/machine.json and <out>/logs/. Then:
#   python3 benches/peers/report.py <out>
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

all_scenarios="quiet,dashboard,storm,firehose,idle,sse,sweep"
all_servers="tickfeed,uwebsockets,node-ws,socketio"
scenarios="$all_scenarios"
servers="$all_servers"
duration=10
warmup=2
sweep="100,250,500,1000,2000"
firehose_rates="25000,50000,100000"
idle_rate=0
rounds=1
out=""
build=1
seed=42
server_core=0
client_core=1

die() { echo "run.sh: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --scenarios) scenarios="${2:?--scenarios needs a list}"; shift 2 ;;
    --servers) servers="${2:?--servers needs a list}"; shift 2 ;;
    --duration) duration="${2:?--duration needs seconds}"; shift 2 ;;
    --warmup) warmup="${2:?--warmup needs seconds}"; shift 2 ;;
    --sweep) sweep="${2:?--sweep needs a list}"; shift 2 ;;
    --firehose-rates) firehose_rates="${2:?--firehose-rates needs a list}"; shift 2 ;;
    --idle-rate) idle_rate="${2:?--idle-rate needs ticks/s}"; shift 2 ;;
    --rounds) rounds="${2:?--rounds needs a count}"; shift 2 ;;
    --out) out="${2:?--out needs a folder}"; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

[[ "$duration" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--duration must be a number of seconds"
[[ "$warmup" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--warmup must be a number of seconds"
[[ "$idle_rate" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--idle-rate must be a number of ticks/s"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a whole number from 1"
IFS=, read -r -a scenario_list <<< "$scenarios"
IFS=, read -r -a server_list <<< "$servers"
IFS=, read -r -a sweep_list <<< "$sweep"
IFS=, read -r -a firehose_list <<< "$firehose_rates"
for s in "${scenario_list[@]}"; do [[ ",$all_scenarios," == *",$s,"* ]] || die "unknown scenario $s"; done
for s in "${server_list[@]}"; do [[ ",$all_servers," == *",$s,"* ]] || die "unknown server $s"; done
for c in "${sweep_list[@]}"; do [[ "$c" =~ ^[0-9]+$ ]] || die "--sweep takes connection counts"; done
for r in "${firehose_list[@]}"; do [[ "$r" =~ ^[0-9]+$ ]] || die "--firehose-rates takes ticks/s"; done
for tool in taskset timeout curl python3; do command -v "$tool" > /dev/null || die "needs $tool"; done
if [[ " ${server_list[*]} " != " tickfeed " ]]; then command -v node > /dev/null || die "needs node"; fi

if [[ -z "$out" ]]; then out="$root/benches/results/$(date -u +%Y%m%dT%H%M%SZ)"; fi
mkdir -p "$out/logs"
out="$(cd "$out" && pwd)"
results="$out/results.jsonl"
touch "$results"

# --- setup -------------------------------------------------------------------------------
if (( build )); then
  if [[ " ${server_list[*]} " != " tickfeed " ]]; then
    echo "== npm ci (benches/peers)"
    (cd "$here" && timeout 600 npm ci --no-audit --no-fund)
  fi
  echo "== cargo build --release (tickfeed, fanout)"
  # Others edit the workspace concurrently: a build broken mid-edit gets two more tries.
  for try in 1 2 3; do
    if (cd "$root" && timeout 1800 cargo build --release -p tickfeed -p benches --bin tickfeed --bin fanout); then break; fi
    (( try < 3 )) || die "cargo build failed three times"
    echo "== cargo build failed; retrying in 60 s"
    sleep 60
  done
fi
tickfeed_bin="$root/target/release/tickfeed"
fanout_bin="$root/target/release/fanout"
[[ -x "$tickfeed_bin" && -x "$fanout_bin" ]] || die "missing $tickfeed_bin or $fanout_bin (run without --no-build)"

# Enough descriptors for 10,000 idle connections on each side (root may raise the hard limit).
ulimit -n 65536 2> /dev/null || ulimit -n "$(ulimit -Hn)"
echo "== open-file limit $(ulimit -n)"

python3 - "$out/machine.json" "$duration" "$scenarios" "$servers" "$sweep" "$firehose_rates" "$root" "$idle_rate" "$warmup" "$rounds" << 'PY'
import json, os, platform, subprocess, sys, datetime
path, duration, scenarios, servers, sweep, rates, root, idle_rate, warmup, rounds = sys.argv[1:]
def cmd(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=20).stdout.strip() or None
    except Exception:
        return None
model = None
try:
    for line in open("/proc/cpuinfo"):
        if line.lower().startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
mem_kib = None
try:
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
except OSError:
    pass
json.dump({
    "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "nproc": int(cmd("nproc") or os.cpu_count() or 0),
    "cpu_model": model,
    "mem_total_kib": mem_kib,
    "kernel": platform.release(),
    "os": cmd("sh", "-c", ". /etc/os-release && echo \"$PRETTY_NAME\""),
    "node": cmd("node", "--version"),
    "rustc": cmd("rustc", "--version"),
    "git_commit": cmd("git", "-C", root, "rev-parse", "HEAD"),
    "git_dirty": bool(cmd("git", "-C", root, "status", "--porcelain", "--untracked-files=no")),
    "server_core": 0, "client_core": 1, "client_threads": 1,
    "duration_s": float(duration),
    "warmup_s": float(warmup),
    "rounds": int(rounds),
    "scenarios": scenarios.split(","), "servers": servers.split(","),
    "sweep_connections": [int(c) for c in sweep.split(",")],
    "firehose_rates": [int(r) for r in rates.split(",")],
    "idle_rate": float(idle_rate),
    "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
}, open(path, "w"), indent=2)
PY

# Both cores are in use during a run: anything else busy on the machine skews the numbers.
read -r load1 _ < /proc/loadavg
if python3 -c "import sys; sys.exit(0 if float('$load1') > 0.5 else 1)"; then
  echo "== WARNING: load average $load1 before starting: other processes compete for the two cores;"
  echo "   each row records the 1-minute load average at its end (field load1)."
fi

# --- helpers -----------------------------------------------------------------------------
server_pid=""

stop_server() {
  [[ -n "$server_pid" ]] || return 0
  if kill -0 "$server_pid" 2> /dev/null; then
    kill -TERM "$server_pid" 2> /dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2> /dev/null || break; sleep 0.1; done
    if kill -0 "$server_pid" 2> /dev/null; then
      echo "   server $server_pid ignored SIGTERM for 5 s: SIGKILL"
      kill -KILL "$server_pid" 2> /dev/null || true
    fi
  fi
  wait "$server_pid" 2> /dev/null || true
  server_pid=""
}
trap 'stop_server' EXIT
trap 'stop_server; exit 130' INT TERM

# The line of a log that says why: its last one, less blank lines, stack frames and Node's banner.
last_words() {
  { grep -vE '^[[:space:]]*$|^[[:space:]]+at |^Node\.js v' "$1" || true; } | tail -n 1 | cut -c 1-300
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# append_row SERVER SCENARIO STEP KIND [TEXT|FILE [SERVER_LOG]]: KIND is result (FILE:
# fanout's stdout), error (TEXT) or skipped (TEXT). The row is of the current round. With
# SERVER_LOG, the simulator's last words there (how many ticks it published and how late,
# the same line from tickfeed and from the peers' sim.js) go in as the row's "source".
append_row() {
  python3 - "$results" "$1" "$2" "$3" "$round" "${@:4}" << 'PY'
import json, re, sys
results, server, scenario, step, round_, kind = sys.argv[1:7]
arg = sys.argv[7] if len(sys.argv) > 7 else ""
server_log = sys.argv[8] if len(sys.argv) > 8 else None
row = {"server": server, "scenario": scenario, "step": int(step) if step.isdigit() else None, "round": int(round_)}
try:
    load1 = float(open("/proc/loadavg").read().split()[0])
except (OSError, ValueError, IndexError):
    load1 = None
if kind == "result":
    last = None
    try:
        lines = [l for l in open(arg, errors="replace").read().splitlines() if l.strip()]
        last = json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        last = None
    if isinstance(last, dict):
        row["result"] = last
    else:
        row["error"] = "the load tool printed no JSON line"
    try:
        stopped = [l for l in open(server_log, errors="replace") if "simulator stopped" in l] if server_log else []
    except OSError:
        stopped = []
    keys = ("published", "skipped", "late_over_2ms", "late_over_5ms", "late_max_us")
    fields = dict(re.findall(r"\b(" + "|".join(keys) + r")=(\d+)", stopped[-1])) if stopped else {}
    if len(fields) == len(keys):
        row["source"] = {key: int(fields[key]) for key in keys}
else:
    row[kind] = arg
if kind != "skipped":
    row["load1"] = load1
with open(results, "a") as f:
    f.write(json.dumps(row) + "\n")
print("   -> " + ("error: " + row["error"] if "error" in row else kind if kind != "result" else
      "{msgs_per_s} msgs/s, p99 {p99_us} µs, {connected}/{connections} connected, server cpu {server_cpu_pct}%".format(**row["result"])))
PY
}

# Presets' connection counts, to size the load tool's timeout (ramp 2,000 connections/s).
preset_connections() {
  case "$1" in quiet) echo 100 ;; dashboard) echo 1000 ;; storm) echo 5000 ;; firehose) echo 20 ;;
    idle) echo 10000 ;; sse) echo 200 ;; *) echo 1000 ;; esac
}

# run_one SERVER SCENARIO STEP SYMBOLS RATE PRESET [CONNECTIONS]
run_one() {
  local server="$1" scenario="$2" step="$3" symbols="$4" rate="$5" preset="$6" connections="${7:-}"
  local tag="${scenario}${step:+-$step}-${server}"
  (( rounds > 1 )) && tag="$tag-round$round"
  local log="$out/logs/$tag"
  echo "== $scenario${step:+ (step $step)}: $server (sim $symbols symbols, $rate ticks/s)${round_label}"

  if [[ "$preset" == sse && "$server" != tickfeed ]]; then
    append_row "$server" "$scenario" "$step" skipped "n/a: no SSE endpoint"
    return 0
  fi

  local port; port="$(free_port)"
  local url="ws://127.0.0.1:$port/ws" protocol=tickfeed
  case "$server" in
    tickfeed)
      taskset -c "$server_core" "$tickfeed_bin" --listen "127.0.0.1:$port" --sim-symbols "$symbols" \
        --sim-rate "$rate" --sim-seed "$seed" --max-connections 50000 --max-connections-per-ip 50000 \
        > "$log.server.log" 2>&1 &
      [[ "$preset" == sse ]] && url="http://127.0.0.1:$port/sse" ;;
    uwebsockets|node-ws|socketio)
      local script=uws_server.js
      [[ "$server" == node-ws ]] && script=ws_server.js
      if [[ "$server" == socketio ]]; then script=socketio_server.js; url="ws://127.0.0.1:$port/socket.io/"; protocol=socketio; fi
      PORT="$port" SIM_SYMBOLS="$symbols" SIM_RATE="$rate" SIM_SEED="$seed" \
        taskset -c "$server_core" node "$here/$script" > "$log.server.log" 2>&1 &
      ;;
  esac
  server_pid=$!

  # Up when /symbols lists every simulated symbol (tickfeed lists a symbol from its first
  # tick on: the load tool must not pick its subscriptions from a partial list); bounded at 30 s.
  local up=0 listed=none deadline=$((SECONDS + 30))
  while (( SECONDS < deadline )); do
    if ! kill -0 "$server_pid" 2> /dev/null; then break; fi
    listed="$(curl -fsS --max-time 1 "http://127.0.0.1:$port/symbols" 2> /dev/null |
      python3 -c 'import json, sys; print(len(json.load(sys.stdin)))' 2> /dev/null || echo none)"
    if [[ "$listed" =~ ^[0-9]+$ ]] && (( listed >= symbols )); then up=1; break; fi
    sleep 0.1
  done
  if (( ! up )); then
    local why="server did not answer /symbols within 30 s"
    [[ "$listed" =~ ^[0-9]+$ ]] && why="/symbols listed $listed of $symbols symbols after 30 s"
    kill -0 "$server_pid" 2> /dev/null || why="server exited at start: $(last_words "$log.server.log")"
    stop_server
    append_row "$server" "$scenario" "$step" error "$why"
    return 0
  fi

  local conns="${connections:-$(preset_connections "$preset")}"
  local limit; limit="$(python3 -c "print(int($conns / 2000 + $warmup + $duration + 60))")"
  local args=(--url "$url" --preset "$preset" --threads 1 --duration "$duration" --warmup "$warmup" --server-pid "$server_pid" --protocol "$protocol")
  [[ -n "$connections" ]] && args+=(--connections "$connections")
  local rc=0
  timeout --kill-after=5 "$limit" taskset -c "$client_core" "$fanout_bin" "${args[@]}" \
    > "$log.fanout.log" 2> "$log.fanout.err" || rc=$?
  cat "$log.fanout.log" | sed '$d' | sed 's/^/   /'
  [[ -s "$log.fanout.err" ]] && sed 's/^/   stderr: /' "$log.fanout.err" | head -5
  local alive=1
  kill -0 "$server_pid" 2> /dev/null || alive=0
  stop_server
  if (( rc == 124 || rc == 137 )); then
    append_row "$server" "$scenario" "$step" error "load tool timed out after $limit s"
  elif (( rc != 0 )); then
    append_row "$server" "$scenario" "$step" error "load tool exit $rc: $(last_words "$log.fanout.err")"
  elif (( ! alive )); then
    append_row "$server" "$scenario" "$step" error "server died during the run: $(last_words "$log.server.log")"
  else
    append_row "$server" "$scenario" "$step" result "$log.fanout.log" "$log.server.log"
  fi
}

# --- the runs ----------------------------------------------------------------------------
started=$SECONDS
round_label=""
for round in $(seq "$rounds"); do
  (( rounds > 1 )) && round_label=", round $round of $rounds"
  for scenario in "${scenario_list[@]}"; do
    for server in "${server_list[@]}"; do
      case "$scenario" in
        quiet) run_one "$server" quiet "" 100 200 quiet ;;
        dashboard) run_one "$server" dashboard "" 100 2000 dashboard ;;
        storm) run_one "$server" storm "" 1 100 storm ;;
        firehose) for rate in "${firehose_list[@]}"; do run_one "$server" firehose "$rate" 100 "$rate" firehose; done ;;
        idle) run_one "$server" idle "" 100 "$idle_rate" idle ;;
        sse) run_one "$server" sse "" 100 5000 sse ;;
        sweep) for c in "${sweep_list[@]}"; do run_one "$server" sweep "$c" 100 2000 dashboard "$c"; done ;;
      esac
    done
  done
done
echo "== done in $((SECONDS - started)) s: $results"
echo "   python3 $here/report.py $out"
