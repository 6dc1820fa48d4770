#!/usr/bin/env bash
# bench-verify.sh — whole-process benchmark of `shardsync verify --mode full` (issue 5).
#
# 1. Builds the PERF.md mixed dataset once (the same $BENCH_DIR/mixed-<N>.rdb that
#    scripts/bench-rdb.sh and bench-sync.sh build and reuse: gen_dataset → redis-cli --pipe
#    → SAVE), VERIFY_KEYS keys.
# 2. Starts a source and a destination, both loading that RDB (hard links: the servers
#    never write the file), so the pair is equal; one task file for the pair.
# 3. One untimed run checks that verify finds the pair equal and compares every key; then
#    RUNS runs of `shardsync verify --config T --mode full --json` under /usr/bin/time -v:
#    keys compared (from the report), wall and CPU time and peak RSS of the process, and
#    the CPU the two redis-servers spent answering it (/proc/<pid>/stat).
# 4. Writes the `verify-full` section of BENCHMARKS.md (median, min–max).
#
# Settings (environment): VERIFY_KEYS (1000000), RUNS (3), SEED (42), BENCH_DIR
# (target/bench-data), SHARDSYNC_BIN (<cargo target>/release/shardsync), BENCHMARKS_MD,
# REDIS_SERVER / REDIS_CLI.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/redis-lib.sh
. "$root/scripts/redis-lib.sh"
bench=bench-verify
# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"

target_dir=${CARGO_TARGET_DIR:-$root/target}
BENCH_DIR=${BENCH_DIR:-$root/target/bench-data}
VERIFY_KEYS=${VERIFY_KEYS:-1000000}
RUNS=${RUNS:-3}
SEED=${SEED:-42}
SHARDSYNC_BIN=${SHARDSYNC_BIN:-$target_dir/release/shardsync}
BENCHMARKS_MD=${BENCHMARKS_MD:-$root/BENCHMARKS.md}
gen_bin=$target_dir/release/examples/gen_dataset

[ -x /usr/bin/time ] || die "/usr/bin/time is missing: run scripts/deps.sh"
[ -x "$SHARDSYNC_BIN" ] || die "$SHARDSYNC_BIN is missing: run cargo build --release"

name=$(dataset_name mixed "$VERIFY_KEYS")
mkdir -p "$BENCH_DIR"
work=$(mktemp -d "$BENCH_DIR/verify.XXXXXX")

# ---- servers (two at once; redis-lib.sh keeps one) ---------------------------------
declare -A PORT=() PID=()

srv_start() { # NAME DIR: a server on the dump.rdb in DIR, waiting long enough for it to load
  REDIS_READY_TRIES=1200 redis_start "$2" </dev/null || die "cannot start redis-server $1"
  PORT[$1]=$REDIS_PORT
  PID[$1]=$REDIS_PID
  REDIS_PID=
}

srv_stop() {
  [ -n "${PID[$1]:-}" ] || return 0
  REDIS_PORT=${PORT[$1]} REDIS_PID=${PID[$1]} redis_stop
  unset "PID[$1]"
}

cleanup() {
  local srv
  redis_stop
  for srv in "${!PID[@]}"; do srv_stop "$srv"; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- dataset -------------------------------------------------------------------------
rdb=$BENCH_DIR/$name.rdb
if [ -s "$rdb" ] && [ -s "$BENCH_DIR/$name.keys" ]; then
  say "reusing $rdb ($(du -h "$rdb" | cut -f1))"
else
  if [ ! -x "$gen_bin" ] || [ "$root/examples/gen_dataset.rs" -nt "$gen_bin" ]; then
    say "building the dataset generator"
    cargo build --release --quiet --example gen_dataset
  fi
  mkdir -p "$work/build"
  redis_start "$work/build"
  say "$name: generating $VERIFY_KEYS keys (seed $SEED)"
  "$gen_bin" --seed "$SEED" mixed --keys "$VERIFY_KEYS" | redis_cli --pipe >"$work/build/pipe.out"
  grep -q 'errors: 0,' "$work/build/pipe.out" || { cat "$work/build/pipe.out" >&2; die "redis-cli --pipe reported errors"; }
  redis_cli save >/dev/null
  redis_cli dbsize >"$work/build/dump.keys"
  redis_stop
  mv "$work/build/dump.keys" "$BENCH_DIR/$name.keys"
  mv "$work/build/dump.rdb" "$rdb"
  say "$name: wrote $rdb ($(du -h "$rdb" | cut -f1), $(cat "$BENCH_DIR/$name.keys") keys)"
fi
keys=$(cat "$BENCH_DIR/$name.keys")

for srv in src dest; do
  mkdir -p "$work/$srv"
  ln -f "$rdb" "$work/$srv/dump.rdb" 2>/dev/null || cp "$rdb" "$work/$srv/dump.rdb"
  srv_start "$srv" "$work/$srv"
  rm -f "$work/$srv/dump.rdb"
  [ "$("$REDIS_CLI" -h 127.0.0.1 -p "${PORT[$srv]}" dbsize)" = "$keys" ] || die "$srv holds the wrong number of keys"
done
cat >"$work/task.toml" <<EOF
name = "bench-verify"
state_dir = "$work/state"

[[source]]
name = "src"
addr = "127.0.0.1:${PORT[src]}"

[destination]
addr = "127.0.0.1:${PORT[dest]}"
EOF

# ---- measure -------------------------------------------------------------------------
cpu_ticks() { awk '{ printf "%d", $14 + $15 }' "/proc/$1/stat"; }
clk_tck=$(getconf CLK_TCK)
results=$BENCH_DIR/verify-results-$name.tsv
: >"$results"

# verify_once OUT: runs verify --mode full --json into OUT; checks it says equal.
verify_once() {
  local out=$1 status=0
  "$SHARDSYNC_BIN" verify --config "$work/task.toml" --mode full --json >"$out" 2>"$work/stderr.txt" || status=$?
  [ "$status" -eq 0 ] || die "verify exited $status: $(tail -n 3 "$work/stderr.txt") $(tail -n 1 "$out")"
  python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).read().splitlines()[-1]); assert r["equal"], r; print(r["compared"])' "$out"
}

say "untimed run (checks the pair is equal and every key is compared)"
compared=$(verify_once "$work/warm.ndjson")
[ "$compared" -eq "$keys" ] || die "verify compared $compared keys, the dataset has $keys"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq 1 "$RUNS"); do
  s0=$(cpu_ticks "${PID[src]}")
  d0=$(cpu_ticks "${PID[dest]}")
  /usr/bin/time -v -o "$work/time-$run.txt" "$SHARDSYNC_BIN" verify --config "$work/task.toml" --mode full --json \
    >"$work/out-$run.ndjson" 2>"$work/stderr.txt" || die "verify run $run failed: $(tail -n 3 "$work/stderr.txt")"
  s1=$(cpu_ticks "${PID[src]}")
  d1=$(cpu_ticks "${PID[dest]}")
  compared=$(python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).read().splitlines()[-1]); assert r["equal"], r; print(r["compared"])' "$work/out-$run.ndjson")
  awk -v run="$run" -v keys="$compared" -v s="$((s1 - s0))" -v d="$((d1 - d0))" -v hz="$clk_tck" -F': ' '
    /Maximum resident set size/ { rss = $2 }
    /User time \(seconds\)/     { user = $2 }
    /System time \(seconds\)/   { sys = $2 }
    /Elapsed \(wall clock\)/    { n = split($2, p, ":"); wall = 0; for (i = 1; i <= n; i++) wall = wall * 60 + p[i] }
    END { printf "%s\t%d\t%d\t%.3f\t%.3f\t%.2f\t%.2f\n", run, keys, rss, wall, user + sys, s / hz, d / hz }' \
    "$work/time-$run.txt" >>"$results"
  say "run $run: $(tail -n 1 "$results" | awk -F'\t' '{printf "%d keys in %.2f s (%.0f keys/s), peak RSS %.1f MB, CPU %.2f s (source %.2f s, destination %.2f s)", $2, $4, $2/$4, $3/1024, $5, $6, $7}')"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report --------------------------------------------------------------------------
python3 - "$results" "$BENCHMARKS_MD" "$rdb" "$name" "$keys" "$load_before" "$load_after" \
  "$(commit_id)" \
  "$("$REDIS_SERVER" --version | awk '{print $3}' | sed 's/v=//')" "$(nproc)" <<'PY'
import datetime, os, re, statistics, sys
results, md_path, rdb, name, keys, lb, la, commit, redis_ver, cores = sys.argv[1:]
keys = int(keys)
runs = [line.rstrip("\n").split("\t") for line in open(results)]
col = lambda i, f=float: [f(r[i]) for r in runs]
compared, rss, wall, cpu, src_cpu, dst_cpu = col(1, int), col(2), col(3), col(4), col(5), col(6)

def fig(values, fmt):
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"

date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
rate = [c / max(w, 1e-3) for c, w in zip(compared, wall)]
lines = [
    f"## shardsync verify --mode full: {name}",
    "",
    "`scripts/bench-verify.sh`: a source and a destination both loaded from the same RDB (an",
    "equal pair), `shardsync verify --config T --mode full --json` under `/usr/bin/time -v`;",
    "keys/s = keys compared (from the report) / wall time of the whole process (connect, counts,",
    "comparison). Every value and TTL of every key is compared.",
    "",
    f"* date: {date}; commit {commit}; Redis {redis_ver}; {cores} cores (shared); load average {lb} before, {la} after",
    f"* dataset: {os.path.getsize(rdb) / 1e6:.1f} MB RDB, {keys:,} keys (PERF.md mix); {len(runs)} runs after an untimed one",
    "",
    "| measure | median (min–max) |",
    "|---|---|",
    f"| keys/s | {fig(rate, '{:,.0f}')} |",
    f"| wall time | {fig(wall, '{:.2f}')} s |",
    f"| peak RSS | {fig([r / 1024 for r in rss], '{:.1f}')} MB |",
    f"| shardsync CPU (user+sys) | {fig(cpu, '{:.2f}')} s |",
    f"| source redis-server CPU during the run | {fig(src_cpu, '{:.2f}')} s |",
    f"| destination redis-server CPU during the run | {fig(dst_cpu, '{:.2f}')} s |",
    "",
    "CPU per key compared (medians): shardsync "
    f"{statistics.median(cpu) / keys * 1e6:.2f} µs, source {statistics.median(src_cpu) / keys * 1e6:.2f} µs, "
    f"destination {statistics.median(dst_cpu) / keys * 1e6:.2f} µs: the three together "
    f"{(statistics.median(cpu) + statistics.median(src_cpu) + statistics.median(dst_cpu)) / keys * 1e6:.2f} µs, "
    f"so {cores} cores wholly free for them would allow at most "
    f"{keys * int(cores) / (statistics.median(cpu) + statistics.median(src_cpu) + statistics.median(dst_cpu)):,.0f} keys/s, "
    f"and the source alone (one thread) {keys / statistics.median(src_cpu):,.0f} keys/s.",
    "",
    "Per key the source answers `SCAN` (its share), `TYPE`, `PTTL` and one bounded value read, "
    "the destination `PTTL` and one bounded value read: the two redis-servers spend three quarters "
    "of the CPU, and on a machine whose cores the three processes share, that total bounds the rate.",
    "",
    "Targets (issue 5): ≥ 200,000 keys/s, peak RSS < 100 MB.",
]
section = "<!-- bench:verify-full -->\n" + "\n".join(lines) + "\n<!-- /bench:verify-full -->\n"
md = open(md_path).read() if os.path.exists(md_path) else "# Benchmarks\n"
pattern = re.compile(r"<!-- bench:verify-full -->.*?<!-- /bench:verify-full -->\n", re.S)
md = pattern.sub(lambda _m: section, md) if pattern.search(md) else md.rstrip("\n") + "\n\n" + section
open(md_path, "w").write(md)
print(f"bench-verify: wrote verify-full into {md_path}")
PY
