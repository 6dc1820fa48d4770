#!/usr/bin/env bash
# bench-heavy-lag.sh — incremental lag under heavy load (issue 13's benchmark shape), against
# a native replica measured in the same run, rounds alternating (shardsync, native) because
# the machine is shared and noisy.
#
# Each round: a fresh source with KEYS keys (DEBUG POPULATE) and a fresh destination; either
# shardsync runs a task from the source into the destination (until its record shows
# `incremental` with lag_bytes 0) or the destination becomes a native replica (until its
# link is up). Then `redis-benchmark -t set,lpush,hset -n REQUESTS -P 16 -r 1000000 -d 64`
# on the source, while a Lua probe `SET`s a key every 2 ms (scripts replicate as MULTI/EXEC)
# and a probe `SET`s another every 50 ms and polls the destination every ms until it is
# there (end-to-end lag). After the load a sentinel is written and waited for (catch-up).
# CPU seconds of the tool (or the replica) and of the destination during the load come
# from /proc.
#
# Writes the section `heavy-lag` into BENCHMARKS.md. Settings: ROUNDS (3), KEYS (1000000),
# REQUESTS (2000000), SHARDSYNC_BIN, BENCHMARKS_MD.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
KEYS=${KEYS:-1000000}
REQUESTS=${REQUESTS:-2000000}
SHARDSYNC_BIN=${SHARDSYNC_BIN:-$root/target/release/shardsync}
BENCHMARKS_MD=${BENCHMARKS_MD:-$root/BENCHMARKS.md}
bench=bench-heavy-lag
# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"
[ -x "$SHARDSYNC_BIN" ] || die "$SHARDSYNC_BIN is missing: cargo build --release"

bench_work heavy-lag

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

cat >"$work/probe.py" <<'PY'
import os, socket, sys, time

class R:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", int(port)))
        self.f = self.s.makefile("rb")
    def cmd(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)
        return self.read()
    def read(self):
        line = self.f.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if kind == b"*":
            return [self.read() for _ in range(int(rest))]
        if kind == b"-":
            raise RuntimeError(rest.decode())
        return rest

mode = sys.argv[1]
if mode == "lua":
    src, stop = R(sys.argv[2]), sys.argv[3]
    while not os.path.exists(stop):
        src.cmd("EVAL", "redis.call('SET', KEYS[1], ARGV[1])", "1", "bench:lua", repr(time.time()))
        time.sleep(0.002)
elif mode == "probe":
    src, dst, out, stop = R(sys.argv[2]), R(sys.argv[3]), sys.argv[4], sys.argv[5]
    seq = 0
    with open(out, "w") as f:
        while not os.path.exists(stop):
            seq += 1
            val = "%d-%d" % (os.getpid(), seq)
            src.cmd("SET", "bench:probe", val)
            t = time.time()
            while dst.cmd("GET", "bench:probe") != val.encode() and time.time() - t < 120:
                time.sleep(0.001)
            f.write("%.2f\n" % ((time.time() - t) * 1000))
            f.flush()
            time.sleep(0.05)
elif mode == "catchup":
    src, dst = R(sys.argv[2]), R(sys.argv[3])
    val = "end-%f" % time.time()
    src.cmd("SET", "bench:sentinel", val)
    t = time.time()
    while dst.cmd("GET", "bench:sentinel") != val.encode():
        time.sleep(0.001)
    print("%.3f" % (time.time() - t))
PY

start_redis() { # DIR PORT [options…]: prints the pid
  local dir=$1 port=$2
  shift 2
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no --daemonize no \
    --logfile "$dir/redis.log" "$@" >/dev/null 2>&1 &
  local pid=$!
  local i
  for i in $(seq 1 200); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.05
  done
  echo "$pid"
}

round() { # METHOD N
  local method=$1 n=$2 dir=$work/$1-$2 sp dp spid dpid tool t0 t1 c0 c1 d0 d1 catch
  mkdir -p "$dir"
  sp=$(free_port)
  dp=$(free_port)
  spid=$(start_redis "$dir/src" "$sp" --repl-backlog-size 256mb --client-output-buffer-limit "replica 0 0 0")
  dpid=$(start_redis "$dir/dst" "$dp")
  pids+=("$spid" "$dpid")
  redis-cli -p "$sp" debug populate "$KEYS" >/dev/null
  if [ "$method" = shardsync ]; then
    one_source_task "$dir/task.toml" heavy-lag "$dir" "$sp" "$dp"
    "$SHARDSYNC_BIN" run --config "$dir/task.toml" --headless --json >"$dir/out.ndjson" 2>"$dir/err.txt" </dev/null &
    tool=$!
    pids+=("$tool")
    local i
    for i in $(seq 1 600); do
      grep -q '"state":"incremental".*"lag_bytes":0,' "$dir/out.ndjson" 2>/dev/null && break
      sleep 0.1
    done
  else
    redis-cli -p "$dp" replicaof 127.0.0.1 "$sp" >/dev/null
    for i in $(seq 1 600); do
      redis-cli -p "$dp" info replication | grep -q master_link_status:up && break
      sleep 0.1
    done
    tool=$dpid
  fi
  sleep 1
  python3 "$work/probe.py" lua "$sp" "$dir/stop" &
  local lua=$!
  python3 "$work/probe.py" probe "$sp" "$dp" "$dir/probe.txt" "$dir/stop" &
  local probe=$!
  c0=$(cpu_ticks "$tool")
  d0=$(cpu_ticks "$dpid")
  t0=$EPOCHREALTIME
  redis-benchmark -p "$sp" -t set,lpush,hset -n "$REQUESTS" -P 16 -r 1000000 -d 64 -q >/dev/null 2>&1
  t1=$EPOCHREALTIME
  touch "$dir/stop"
  wait "$lua" "$probe" || true
  catch=$(python3 "$work/probe.py" catchup "$sp" "$dp")
  c1=$(cpu_ticks "$tool")
  d1=$(cpu_ticks "$dpid")
  local hz
  hz=$(getconf CLK_TCK)
  while read -r ms; do printf '%s\t%s\tprobe_ms\t%s\n' "$method" "$n" "$ms"; done <"$dir/probe.txt" >>"$results"
  {
    printf '%s\t%s\tload_s\t%s\n' "$method" "$n" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
    printf '%s\t%s\tcatchup_s\t%s\n' "$method" "$n" "$catch"
    printf '%s\t%s\tcpu_s\t%s\n' "$method" "$n" "$(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN { print (b - a) / hz }')"
    printf '%s\t%s\tdest_cpu_s\t%s\n' "$method" "$n" "$(awk -v a="$d0" -v b="$d1" -v hz="$hz" 'BEGIN { print (b - a) / hz }')"
  } >>"$results"
  echo "$method round $n: load $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s, catch-up $catch s" >&2
  [ "$method" = shardsync ] && { kill "$tool" 2>/dev/null; wait "$tool" 2>/dev/null || true; }
  kill "$spid" "$dpid" 2>/dev/null || true
  wait "$spid" "$dpid" 2>/dev/null || true
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for n in $(seq 1 "$ROUNDS"); do
  round shardsync "$n"
  round native "$n"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$results" "$BENCHMARKS_MD" "$ROUNDS" "$KEYS" "$REQUESTS" "$load_before" "$load_after" \
  "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')" <<'PY'
import datetime, re, statistics, sys
results, md, rounds, keys, requests, lb, la, commit = sys.argv[1:9]
vals = {}
for line in open(results):
    m, r, k, v = line.rstrip("\n").split("\t")
    vals.setdefault((m, k), []).append(float(v))
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")
def med(m, k, f="{:.2f}"):
    xs = vals.get((m, k), [])
    if not xs:
        return "—"
    return f"{f.format(statistics.median(xs))} ({f.format(min(xs))}–{f.format(max(xs))})"
lines = [
    "## Incremental lag under heavy load (`scripts/bench-heavy-lag.sh`, issue 13)",
    "",
    f"A {int(keys):,}-key source (DEBUG POPULATE), then `redis-benchmark -t set,lpush,hset -n {int(requests):,} -P 16 "
    "-r 1000000 -d 64` on it, a Lua `SET` every 2 ms (replicated as MULTI/EXEC) and an end-to-end probe "
    "(a `SET` on the source every 50 ms, polled on the destination every ms). Rounds alternate shardsync "
    "and a native replica; medians of the rounds with min–max, probe lags pooled over every round.",
    "",
    f"* date: {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC; commit {commit}; {rounds} rounds each; "
    f"load average {lb} before, {la} after; everything (source, load generator, tool, destination) on 2 shared cores",
    "",
    "| | shardsync | native replica |",
    "|---|---|---|",
    f"| load duration, s | {med('shardsync', 'load_s', '{:.1f}')} | {med('native', 'load_s', '{:.1f}')} |",
    f"| catch-up after the load, s | {med('shardsync', 'catchup_s', '{:.3f}')} | {med('native', 'catchup_s', '{:.3f}')} |",
    f"| CPU during the load: the tool / the replica, s | {med('shardsync', 'cpu_s', '{:.1f}')} | {med('native', 'cpu_s', '{:.1f}')} |",
    f"| CPU during the load: the destination, s | {med('shardsync', 'dest_cpu_s', '{:.1f}')} | (the replica is the destination) |",
]
def lag(m):
    xs = vals.get((m, "probe_ms"), [])
    return f"{pct(xs, .5):.1f} / {pct(xs, .95):.1f} / {max(xs):.1f} ({len(xs)} probes)" if xs else "—"
lines.append(f"| probe lag p50 / p95 / max, ms | {lag('shardsync')} | {lag('native')} |")
ss = vals.get(("shardsync", "probe_ms"), [])
lines += [
    "",
    "Target (issue 13): probe lag p50 ≤ 50 ms and p95 ≤ 250 ms, exactly-once kept. "
    + (f"Measured p50 {pct(ss, .5):.0f} ms, p95 {pct(ss, .95):.0f} ms: "
       + ("met." if pct(ss, .5) <= 50 and pct(ss, .95) <= 250 else "not met.") if ss else ""),
]
text = open(md).read()
section = "<!-- bench:heavy-lag -->\n" + "\n".join(lines) + "\n<!-- /bench:heavy-lag -->"
if "<!-- bench:heavy-lag -->" in text:
    text = re.sub(r"<!-- bench:heavy-lag -->.*?<!-- /bench:heavy-lag -->", lambda _: section, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
open(md, "w").write(text)
print("\n".join(lines))
PY
