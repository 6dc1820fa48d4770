#!/usr/bin/env bash
# bench-stream-cpu.sh — the tool's CPU per streamed command, for one or more shardsync binaries
# measured in the same run, rounds alternating between them (the machine is shared and noisy;
# compare medians, never single runs).
#
# Two shapes, each round starting from fresh servers (redis-server 7.0 from PATH):
#   catch-up  a first run leaves the task incremental on an empty source; `redis-benchmark -t
#             set,lpush,hset -n REQUESTS -P 16 -r 1000000 -d 64` then writes 3×REQUESTS commands
#             while no tool runs; the measured run (`run --headless --until-synced`) continues from
#             the checkpoint (PSYNC continue) and applies them all. CPU (user+sys), wall and peak
#             RSS of that run from /usr/bin/time, start-up included.
#   live      the task runs incremental while the same load is written; CPU of the tool from
#             /proc between the load's start and a marker written after it arriving on the
#             destination.
#
# Usage: scripts/bench-stream-cpu.sh BIN [BIN...]   Settings: ROUNDS (5), REQUESTS (500000),
# SHAPES ("catch-up live"). Prints one line per run, then the medians per 1M commands.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
REQUESTS=${REQUESTS:-500000}
SHAPES=${SHAPES:-catch-up live}
[ $# -ge 1 ] || { sed -n '2,17p' "$0" >&2; exit 2; }
for b in "$@"; do [ -x "$b" ] || { echo "$b is not an executable" >&2; exit 2; }; done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench=bench-stream-cpu
# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"
# shellcheck source=scripts/redis-lib.sh
. "$root/scripts/redis-lib.sh"

bench_work stream-cpu
hz=$(getconf CLK_TCK)

# A throwaway redis-server in DIR (redis-lib.sh): sets REDIS_PORT and REDIS_PID.
server() {
  local dir=$1
  shift
  mkdir -p "$dir"
  redis_start "$dir" "$@" >/dev/null || die "redis-server did not start in $dir"
}

load() { redis-benchmark -p "$1" -t set,lpush,hset -n "$REQUESTS" -P 16 -r 1000000 -d 64 -q >/dev/null 2>&1; }

round() { # SHAPE BIN N
  local shape=$1 bin=$2 n=$3 dir sp dp spid dpid name
  name=$(basename "$bin")
  dir=$work/$shape-$n-$name
  server "$dir/src" --repl-backlog-size 512mb --client-output-buffer-limit "replica 0 0 0"
  sp=$REDIS_PORT spid=$REDIS_PID
  server "$dir/dst"
  dp=$REDIS_PORT dpid=$REDIS_PID
  pids+=("$spid" "$dpid")
  one_source_task "$dir/task.toml" stream-cpu "$dir" "$sp" "$dp"
  local cpu wall rss
  if [ "$shape" = catch-up ]; then
    "$bin" run --config "$dir/task.toml" --headless --until-synced >/dev/null 2>"$dir/err1" </dev/null
    load "$sp"
    /usr/bin/time -f "%U %S %e %M" -o "$dir/time" \
      "$bin" run --config "$dir/task.toml" --headless --until-synced >/dev/null 2>"$dir/err2" </dev/null
    read -r cpu wall rss < <(awk '{ printf "%.2f %.2f %d\n", $1 + $2, $3, $4 / 1024 }' "$dir/time")
  else
    "$bin" run --config "$dir/task.toml" --headless --json >"$dir/out.ndjson" 2>"$dir/err" </dev/null &
    local tool=$! i c0 c1 t0 t1
    pids+=("$tool")
    for i in $(seq 1 300); do
      grep -q '"state":"incremental".*"lag_bytes":0,' "$dir/out.ndjson" 2>/dev/null && break
      sleep 0.1
    done
    sleep 0.5
    c0=$(cpu_ticks "$tool")
    t0=$EPOCHREALTIME
    load "$sp"
    redis-cli -p "$sp" set bench:stream-cpu:end done >/dev/null
    until [ "$(redis-cli -p "$dp" get bench:stream-cpu:end)" = done ]; do sleep 0.01; done
    t1=$EPOCHREALTIME
    c1=$(cpu_ticks "$tool")
    rss=$(awk '/VmHWM/ { print int($2 / 1024) }' "/proc/$tool/status")
    cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN { printf "%.2f", (b - a) / hz }')
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    kill "$tool"
    wait "$tool" 2>/dev/null || true
  fi
  local keys_src keys_dst
  keys_src=$(redis-cli -p "$sp" dbsize)
  keys_dst=$(redis-cli -p "$dp" dbsize)
  kill "$spid" "$dpid"
  wait "$spid" "$dpid" 2>/dev/null || true
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$shape" "$name" "$cpu" "$wall" "$rss" "$n" >>"$results"
  echo "$shape $name round $n: tool CPU ${cpu} s, wall ${wall} s, peak RSS ${rss} MB, keys source ${keys_src} / destination ${keys_dst}"
}

for shape in $SHAPES; do
  for n in $(seq 1 "$ROUNDS"); do
    for bin in "$@"; do round "$shape" "$bin" "$n"; done
  done
done

python3 - "$results" "$REQUESTS" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
commands = 3 * int(sys.argv[2])
print(f"\nmedians ({commands:,} commands a run; CPU-s per 1M commands = median CPU / {commands / 1e6:g})")
for shape in dict.fromkeys(r[0] for r in rows):
    for name in dict.fromkeys(r[1] for r in rows if r[0] == shape):
        sel = [r for r in rows if r[0] == shape and r[1] == name]
        cpu = [float(r[2]) for r in sel]
        wall = statistics.median(float(r[3]) for r in sel)
        rss = [int(r[4]) for r in sel]
        med = statistics.median(cpu)
        print(f"{shape:9} {name:24} CPU {med:.2f} s ({min(cpu):.2f}–{max(cpu):.2f}), "
              f"{med / (commands / 1e6):.2f} CPU-s per 1M commands, wall {wall:.2f} s, peak RSS {min(rss)}–{max(rss)} MB")
PY
