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
# Then, when `perf` is installed, STAGE_ROUNDS more cluster copies (without replicas) run
# under `perf record` (call graphs from DWARF, the release build keeps debug info): each
# sample goes to the pipeline stage whose function is on its stack (the shard's applier
# task, the task of each master's writer, the blocking consumer thread that reads the spool
# and parses, the source link task, the blocking spool writer). The stages run at once on
# their own threads, so the busiest one bounds what one process can drive: its CPU per key
# is the tool's ceiling when the destinations are not the bottleneck.
#
# Writes the section `cluster-copy` into BENCHMARKS.md. Settings: ROUNDS (3), STAGE_ROUNDS
# (3), SYNC_KEYS (1000000), BENCH_DIR (target/bench-data), SHARDSYNC_BIN, BENCHMARKS_MD.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
STAGE_ROUNDS=${STAGE_ROUNDS:-3}
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

bench_work bench-cluster

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
hz=$(getconf CLK_TCK)

# start_server DIR PORT [ARGS…] — a redis-server in DIR; prints its pid, which the
# caller adds to `pids` (this runs in a command substitution: a variable set here is
# gone with it, and the servers of every round were left running).
start_server() {
  local dir=$1 port=$2; shift 2
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
    --logfile "$dir/redis.log" "$@" >/dev/null 2>&1 &
  local pid=$!
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
  pids+=("$spid")
  local dpids=() seed
  if [ "$kind" != standalone ]; then
    local addrs=() n port nodes=3 replicas=0
    if [ "$kind" = cluster-replicas ]; then nodes=6 replicas=1; fi
    # cluster-stages: a plain cluster, the tool under perf (see the top).
    for n in $(seq 1 $nodes); do
      port=$(free_port)
      dpids+=("$(start_server "$dir/n$n" "$port" --cluster-enabled yes --cluster-config-file "$dir/n$n/nodes.conf")")
      pids+=("${dpids[-1]}")
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
    pids+=("${dpids[-1]}")
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
  s0=$(cpu_ticks "$spid")
  for p in "${dpids[@]}"; do d0=$((d0 + $(cpu_ticks "$p"))); done
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -f '%U %S %M' -o "$dir/time" "$SHARDSYNC_BIN" run --config "$dir/task.toml" --headless --json --until-synced \
    >"$dir/out" 2>"$dir/err" &
  local runner=$! recorder=""
  if [ "$kind" = cluster-stages ]; then
    # The tool is /usr/bin/time's one child; a tool that ended before it
    # was seen fails at the wait below.
    local tool=""
    until tool=$(pgrep -P "$runner"); do
      kill -0 "$runner" 2>/dev/null || break
      sleep 0.01
    done
    if [ -n "$tool" ]; then
      perf record -F 999 --call-graph dwarf,16384 -o "$dir/perf.data" -p "$tool" >"$dir/perf.log" 2>&1 &
      recorder=$!
    fi
  fi
  wait "$runner" || die "$kind round $round: shardsync failed: $(tail -3 "$dir/err")"
  end=$(date +%s.%N)
  if [ -n "$recorder" ]; then
    wait "$recorder" || true
    perf script -i "$dir/perf.data" -F tid,ip,sym 2>/dev/null | stage_shares "$round" >>"$stages" \
      || say "perf recorded nothing in round $round (not allowed here? $(tail -1 "$dir/perf.log")): that round is left out of the per-stage table"
  fi
  local s1 d1=0
  s1=$(cpu_ticks "$spid")
  for p in "${dpids[@]}"; do d1=$((d1 + $(cpu_ticks "$p"))); done
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

# stage_shares ROUND < `perf script` output: one line per stage, "ROUND STAGE SAMPLES".
stage_shares() {
  python3 -c '
import collections, sys
# Most specific first: a master writer runs inside the applier'"'"'s round, the
# spool writer inside the link'"'"'s function.
STAGES = [("run_lane", "writers"), ("write_spool", "spool-writer"), ("consumer::consume", "consumer"),
          ("engine::applier::", "applier"), ("source::replication::", "link")]
counts = collections.Counter()
stack = []
def close():
    if stack:
        counts[next((name for key, name in STAGES if any(key in f for f in stack)), "other")] += 1
for line in sys.stdin:
    if not line.strip():
        close(); stack = []
    elif line.startswith("\t"):
        stack.append(line)
close()
for stage, n in counts.items():
    print(sys.argv[1], stage, n)
' "$1"
}

stages=$work/stages.tsv
: >"$stages"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq 1 "$ROUNDS"); do
  one_round cluster "$r"
  one_round cluster-replicas "$r"
  one_round standalone "$r"
done
if command -v perf >/dev/null; then
  for r in $(seq 1 "$STAGE_ROUNDS"); do one_round cluster-stages "$r"; done
else
  say "perf is not installed (Debian: linux-perf): the per-stage table is left out"
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$results" "$work/section.md" "$(commit_id)" "$load_before" "$load_after" "$ROUNDS" "$SYNC_KEYS" "$stages" <<'PY'
import collections, statistics, sys, datetime
res, out, commit, lb, la, rounds, nkeys, stages = sys.argv[1:]
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
    "One core at %.2f CPU-s per 1M keys drives %s keys/s. The copy is a pipeline, though, whose stages run at "
    "once on threads of their own, so what bounds one process is its busiest stage (below)."
    % (c, "{:,}".format(int(1e6 / c))),
]
stage_rows = [l.split() for l in open(stages) if l.strip()]
if stage_rows:
    per_round = collections.defaultdict(collections.Counter)
    for r, stage, n in stage_rows:
        per_round[r][stage] += int(n)
    names = sorted({stage for _, stage, _ in stage_rows})
    share = {st: statistics.median([cnt[st] / sum(cnt.values()) for cnt in per_round.values()]) for st in names}
    samples = statistics.median([sum(cnt.values()) for cnt in per_round.values()])
    attributed = sum(v for st, v in share.items() if st != "other")
    masters = 3
    DESC = [
        ("consumer", "a blocking thread", "reads the spool, parses the RDB, filters"),
        ("applier", "the shard's task", "batches, builds the RESTOREs, splits by slot, merges the replies"),
        ("writers", "a task per master", "encodes, sends, reads replies (the 3 masters together)"),
        ("link", "a task", "reads the source's socket into the spool's channel"),
        ("spool-writer", "a blocking thread", "writes the spool's segments"),
        ("other", "every thread", "the runtime: scheduling, epoll, futex"),
    ]
    lines += [
        "",
        "Where the tool's CPU goes, by pipeline stage: `perf record` of %d more cluster copies (%d samples each, "
        "median), each sample given to the stage whose function is on its stack; CPU-s are the shares of the "
        "plain cluster rows' median." % (len(per_round), samples),
        "",
        "| stage | runs on | does | share of tool CPU | CPU-s per 1M keys |",
        "|---|---|---|---|---|",
    ]
    for st, where, what in DESC:
        if st in share:
            lines.append("| %s | %s | %s | %.1f%% | %.2f |" % (st, where, what, 100 * share[st], c * share[st]))
    # The runtime's share spread over the stages in proportion. A round of
    # the applier waits for its masters' writers before the next batch is
    # cut, so the applier and one master's writer (a third of the writers'
    # work here, less with more masters) are one stage.
    per = lambda st: c * share.get(st, 0.0) / attributed
    busy = {st: per(st) for st in ("consumer", "link", "spool-writer")}
    busy["applier and a master's writer"] = per("applier") + per("writers") / masters
    top = max(busy, key=busy.get)
    ceiling = 1e6 / busy[top]
    lines += [
        "",
        "The busiest stage is the %s at %.2f CPU-s per 1M keys (the runtime's share spread over the stages in "
        "proportion; the applier waits for its round's writers before it cuts the next batch, so it counts "
        "with one master's writer, %.2f of the writers' %.2f): one process drives at most %s keys/s into a "
        "cluster of enough masters, given a core per stage. That is computed from CPU per key, not measured: "
        "here the source and the masters share the 2 cores with it. Target (issue 14): 1M keys/s per process, "
        "%s."
        % (top, busy[top], per("writers") / masters, per("writers"), "{:,}".format(int(ceiling)),
           "met" if ceiling >= 1e6 else "not met"),
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
