#!/usr/bin/env bash
# bench-cluster.sh — full copy of mixed-1m into a 3-master Redis Cluster (without and with
# one replica per master) against the same copy into one standalone destination, measured
# in the same run, rounds alternating (cluster, cluster with replicas, standalone) because
# the machine is shared and noisy. With replicas, every batch counts as done only once
# each master's replica acknowledged it (WAIT): the figures show what that costs.
#
# Each round: the source is a redis-server started on mixed-<N>.rdb (built by
# scripts/bench-rdb.sh, which `make bench` runs first); the destination is a fresh
# 3-master cluster (redis-cli --cluster create, no replicas) or a fresh standalone
# redis-server. `shardsync run --headless --json --until-synced` copies, timed from start to
# exit; CPU seconds of the tool (/usr/bin/time) and of the source and every destination
# process (/proc, before and after) are recorded.
#
# Writes the section `cluster-copy` into BENCHMARKS.md. Settings: ROUNDS (3), SYNC_KEYS
# (1000000), BENCH_DIR (target/bench-data), SHARDSYNC_BIN, BENCHMARKS_MD.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
SYNC_KEYS=${SYNC_KEYS:-1000000}
BENCH_DIR=${BENCH_DIR:-$root/target/bench-data}
SHARDSYNC_BIN=${SHARDSYNC_BIN:-$root/target/release/shardsync}
BENCHMARKS_MD=${BENCHMARKS_MD:-$root/BENCHMARKS.md}
bench=bench-cluster
# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"
[ -x "$SHARDSYNC_BIN" ] || die "$SHARDSYNC_BIN is missing: cargo build --release"
rdb=$BENCH_DIR/$(dataset_name mixed "$SYNC_KEYS").rdb
[ -s "$rdb" ] || die "$rdb is missing: run scripts/bench-rdb.sh (MIXED_KEYS=$SYNC_KEYS) first"

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-cluster.XXXXXX")
results=$work/results.tsv
: >"$results"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  rm -rf "$work"
}
trap cleanup EXIT

# A free port below 55536: a cluster node's bus port is its port + 10000.
free_port() {
  python3 -c '
import random, socket
while True:
    p = random.randint(20000, 55000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); s2 = socket.socket(); s2.bind(("127.0.0.1", p + 10000)); print(p); break
    except OSError:
        pass
'
}
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# start_server DIR PORT [ARGS…] — a redis-server in DIR; prints its pid.
start_server() {
  local dir=$1 port=$2; shift 2
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
    --logfile "$dir/redis.log" "$@" >/dev/null 2>&1 &
  local pid=$!
  pids+=("$pid")
  local i
  for i in $(seq 1 1200); do
    if redis-cli -p "$port" ping >/dev/null 2>&1 && ! redis-cli -p "$port" info persistence | grep -q 'loading:1'; then
      echo "$pid"; return
    fi
    sleep 0.05
  done
  die "redis-server on port $port did not start: $(tail -5 "$dir/redis.log" 2>/dev/null)"
}

stop_all() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.05; done; done
  pids=()
}

# one_round KIND ROUND — KIND is cluster or standalone.
one_round() {
  local kind=$1 round=$2
  local dir=$work/$kind-$round
  mkdir -p "$dir/src"
  cp "$rdb" "$dir/src/dump.rdb"
  local sport; sport=$(free_port)
  local spid; spid=$(start_server "$dir/src" "$sport" --dbfilename dump.rdb --repl-diskless-sync yes --repl-diskless-sync-delay 0)
  local dpids=() seed
  if [ "$kind" != standalone ]; then
    local addrs=() n port nodes=3 replicas=0
    if [ "$kind" = cluster-replicas ]; then nodes=6 replicas=1; fi
    for n in $(seq 1 $nodes); do
      port=$(free_port)
      dpids+=("$(start_server "$dir/n$n" "$port" --cluster-enabled yes --cluster-config-file "$dir/n$n/nodes.conf")")
      addrs+=("127.0.0.1:$port")
    done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas $replicas --cluster-yes >/dev/null
    for port in "${addrs[@]##*:}"; do
      until redis-cli -p "$port" cluster info | grep -q 'cluster_state:ok'; do sleep 0.1; done
    done
    # Replicas linked before the copy starts, so every batch waits for them.
    for port in "${addrs[@]##*:}"; do
      until redis-cli -p "$port" info replication | grep -Eq 'role:master|master_link_status:up'; do sleep 0.1; done
    done
    seed=${addrs[0]}
  else
    local dport; dport=$(free_port)
    dpids+=("$(start_server "$dir/dst" "$dport")")
    seed=127.0.0.1:$dport
  fi
  cat >"$dir/task.toml" <<T
name = "bench"
state_dir = "$dir/state"
[[source]]
name = "s1"
addr = "127.0.0.1:$sport"
[destination]
addr = "$seed"
T
  local s0 d0=0 p
  s0=$(ticks "$spid")
  for p in "${dpids[@]}"; do d0=$((d0 + $(ticks "$p"))); done
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -f '%U %S %M' -o "$dir/time" "$SHARDSYNC_BIN" run --config "$dir/task.toml" --headless --json --until-synced \
    >"$dir/out" 2>"$dir/err" || die "$kind round $round: shardsync failed: $(tail -3 "$dir/err")"
  end=$(date +%s.%N)
  local s1 d1=0
  s1=$(ticks "$spid")
  for p in "${dpids[@]}"; do d1=$((d1 + $(ticks "$p"))); done
  local keys=0
  if [ "$kind" != standalone ]; then
    for port in "${addrs[@]##*:}"; do
      redis-cli -p "$port" role | head -1 | grep -q master && keys=$((keys + $(redis-cli -p "$port" dbsize)))
    done
  else
    keys=$(redis-cli -p "${seed##*:}" dbsize)
  fi
  read -r user sys rss <"$dir/time"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" \
    "$(echo "$end - $start" | bc)" "$(echo "$user + $sys" | bc)" \
    "$(echo "scale=2; ($s1 - $s0) / $hz" | bc)" "$(echo "scale=2; ($d1 - $d0) / $hz" | bc)" \
    "$keys" "$rss" >>"$results"
  say "$kind round $round: $(tail -1 "$results")"
  stop_all
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq 1 "$ROUNDS"); do
  one_round cluster "$r"
  one_round cluster-replicas "$r"
  one_round standalone "$r"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$results" "$work/section.md" "$(commit_id)" "$load_before" "$load_after" "$ROUNDS" "$SYNC_KEYS" <<'PY'
import statistics, sys, datetime
res, out, commit, lb, la, rounds, nkeys = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(res) if l.strip()]
def col(kind, i):
    return [float(r[i]) for r in rows if r[0] == kind]
def med(v):
    return "%.2f (%.2f–%.2f)" % (statistics.median(v), min(v), max(v))
lines = [
    "## Full copy into a Redis Cluster (3 masters) vs one standalone destination",
    "",
    "`scripts/bench-cluster.sh`: `shardsync run --until-synced` of the mixed dataset, %s keys (a redis-server started on the RDB, "
    "diskless replication), into a fresh 3-master cluster (`redis-cli --cluster create`), without replicas and with "
    "one replica per master (every batch then waits for the replicas' acknowledgement, `WAIT`, before it counts as "
    "done), or a fresh standalone redis-server, rounds alternating. Wall time from start to exit; CPU from "
    "/usr/bin/time and /proc (the destination's includes the replicas). All processes share the 2 cores." % nkeys,
    "",
    "* date: %s UTC; commit %s; 2 cores; load average %s before, %s after; %s rounds each"
    % (datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"), commit, lb, la, rounds),
    "",
    "| destination | wall, s | tool CPU, s | tool CPU per 1M keys, s | source CPU, s | destination CPU (all nodes), s | keys on the destination |",
    "|---|---|---|---|---|---|---|",
]
for kind, name in (("cluster", "3-master cluster"), ("cluster-replicas", "3 masters + 3 replicas (WAIT)"), ("standalone", "standalone")):
    keys = col(kind, 5)
    per = [c / (k / 1e6) for c, k in zip(col(kind, 2), keys)]
    lines.append("| %s | %s | %s | %s | %s | %s | %d |" % (
        name, med(col(kind, 1)), med(col(kind, 2)), med(per), med(col(kind, 3)), med(col(kind, 4)), int(statistics.median(keys))))
c = statistics.median(col("cluster", 2)) / (statistics.median(col("cluster", 5)) / 1e6)
lines += [
    "",
    "The tool's own ceiling: at %.2f CPU-s per 1M keys into the cluster, one core of the tool drives at most "
    "%s keys/s when the destinations are not the bottleneck (here every process shares 2 cores). The copy's "
    "pipeline (reader, parser, writer) runs on about two threads, so a process tops out near twice that on a "
    "larger machine; the 1M keys/s per process target is not reached." % (c, "{:,}".format(int(1e6 / c))),
]
def floor(kind):
    # Every process's CPU over the 2 cores: the wall time no scheduling can beat.
    return (statistics.median(col(kind, 2)) + statistics.median(col(kind, 3)) + statistics.median(col(kind, 4))) / 2
lines += [
    "",
    "With replicas: the wall time is %.2f s against %.2f s, while the CPU-bound floor (every process's CPU over "
    "the 2 cores) is %.2f s against %.2f s, since the replicas redo the masters' work on the same cores; the "
    "tool's CPU moves from %.2f to %.2f s (the `WAIT` round trips and the copies of each part kept until the "
    "replicas acknowledge it)." % (
        statistics.median(col("cluster-replicas", 1)), statistics.median(col("cluster", 1)),
        floor("cluster-replicas"), floor("cluster"),
        statistics.median(col("cluster", 2)), statistics.median(col("cluster-replicas", 2))),
]
open(out, "w").write("\n".join(lines) + "\n")
PY
write_section cluster-copy "$work/section.md"
cat "$work/section.md"
