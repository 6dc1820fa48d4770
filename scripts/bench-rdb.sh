#!/usr/bin/env bash
# bench-rdb.sh — whole-process benchmark of `shardsync rdb --json` on big RDB files.
#
# 1. Builds the benchmark RDBs once, with a real redis-server fed by the seeded
#    generator (examples/gen_dataset.rs) through `redis-cli --pipe`, then SAVE:
#      $BENCH_DIR/mixed-1m.rdb  the standard dataset of PERF.md (MIXED_KEYS keys)
#      $BENCH_DIR/list-5m.rdb   one list of LIST_LEN elements
#    A file that exists is reused (delete it to rebuild). Other sizes get other
#    names (mixed-10k.rdb …), so a small trial run never passes for the real one.
# 2. Runs `shardsync rdb --json FILE > /dev/null` under /usr/bin/time -v, RUNS times
#    per file, files interleaved (A B A B …) so that machine noise hits both alike.
# 3. Writes a section per file into BENCHMARKS.md (replacing that section's previous
#    figures): date, commit, load average, median and min–max of peak RSS, wall
#    time and CPU time, keys/s where the key count is known.
#
# Settings (environment): BENCH_DIR (target/bench-data), MIXED_KEYS (1000000),
# LIST_LEN (5000000), SEED (42), RUNS (3), SHARDSYNC_BIN (<cargo target>/release/shardsync),
# BENCHMARKS_MD (BENCHMARKS.md), REDIS_SERVER / REDIS_CLI (system ones).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/redis-lib.sh
. "$root/scripts/redis-lib.sh"
bench=bench-rdb
# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"

target_dir=${CARGO_TARGET_DIR:-$root/target}
BENCH_DIR=${BENCH_DIR:-$root/target/bench-data}
MIXED_KEYS=${MIXED_KEYS:-1000000}
LIST_LEN=${LIST_LEN:-5000000}
SEED=${SEED:-42}
RUNS=${RUNS:-3}
SHARDSYNC_BIN=${SHARDSYNC_BIN:-$target_dir/release/shardsync}
BENCHMARKS_MD=${BENCHMARKS_MD:-$root/BENCHMARKS.md}
gen_bin=$target_dir/release/examples/gen_dataset

[ -x /usr/bin/time ] || die "/usr/bin/time is missing: run scripts/deps.sh"
[ -x "$SHARDSYNC_BIN" ] || die "$SHARDSYNC_BIN is missing: run cargo build --release"

work=
cleanup() { redis_stop; if [ -n "$work" ]; then rm -rf "$work"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# build_rdb NAME GENERATOR-ARGS… — makes $BENCH_DIR/NAME.rdb unless it exists.
build_rdb() {
  local name=$1; shift
  local rdb=$BENCH_DIR/$name.rdb
  if [ -s "$rdb" ]; then
    say "reusing $rdb ($(du -h "$rdb" | cut -f1))"
    return
  fi
  if [ ! -x "$gen_bin" ] || [ "$root/examples/gen_dataset.rs" -nt "$gen_bin" ]; then
    say "building the dataset generator"
    cargo build --release --quiet --example gen_dataset
  fi
  work=$(mktemp -d "$BENCH_DIR/build-$name.XXXXXX")
  redis_start "$work"
  say "$name: loading ($*) into $("$REDIS_SERVER" --version | awk '{print $3}') on port $REDIS_PORT"
  local started=$SECONDS
  "$gen_bin" --seed "$SEED" "$@" | redis_cli --pipe >"$work/pipe.out"
  grep -q 'errors: 0,' "$work/pipe.out" || { cat "$work/pipe.out" >&2; die "$name: redis-cli --pipe reported errors"; }
  say "$name: $(redis_cli dbsize) keys, used_memory $(redis_cli info memory | sed -n 's/^used_memory_human:\(.*\)\r$/\1/p') in $((SECONDS - started)) s; SAVE"
  redis_cli save >/dev/null
  redis_cli dbsize >"$work/dump.keys"
  redis_stop
  mv "$work/dump.keys" "$BENCH_DIR/$name.keys"
  mv "$work/dump.rdb" "$rdb"
  rm -rf "$work"
  work=
  say "$name: wrote $rdb ($(du -h "$rdb" | cut -f1))"
}

mkdir -p "$BENCH_DIR"
mixed=$(dataset_name mixed "$MIXED_KEYS")
list=$(dataset_name list "$LIST_LEN")
build_rdb "$mixed" mixed --keys "$MIXED_KEYS"
build_rdb "$list" list --len "$LIST_LEN"

# ---- measure ---------------------------------------------------------------
results=$BENCH_DIR/results.tsv
: >"$results"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# One untimed run per file: warms the page cache and counts what shardsync prints,
# so a report never shows the figures of a command that did nothing.
for name in "$mixed" "$list"; do
  "$SHARDSYNC_BIN" rdb --json "$BENCH_DIR/$name.rdb" 2>"$BENCH_DIR/stderr-$name.txt" | wc -c >"$BENCH_DIR/$name.out-bytes" ||
    die "shardsync rdb --json $name.rdb failed: $(tail -n 3 "$BENCH_DIR/stderr-$name.txt")"
  if [ "$(cat "$BENCH_DIR/$name.out-bytes")" -eq 0 ]; then
    say "warning: shardsync rdb --json $name.rdb printed nothing (is the rdb command implemented yet?)"
  fi
done
for run in $(seq 1 "$RUNS"); do
  for name in "$list" "$mixed"; do
    log=$BENCH_DIR/time-$name-$run.txt
    status=0
    /usr/bin/time -v -o "$log" "$SHARDSYNC_BIN" rdb --json "$BENCH_DIR/$name.rdb" >/dev/null 2>"$BENCH_DIR/stderr-$name.txt" || status=$?
    [ "$status" -eq 0 ] || die "shardsync rdb --json $name.rdb exited $status: $(tail -n 3 "$BENCH_DIR/stderr-$name.txt")"
    awk -v name="$name" -v run="$run" -F': ' '
      /Maximum resident set size/ { rss = $2 }
      /User time \(seconds\)/     { user = $2 }
      /System time \(seconds\)/   { sys = $2 }
      /Elapsed \(wall clock\)/    { n = split($2, p, ":"); wall = 0; for (i = 1; i <= n; i++) wall = wall * 60 + p[i] }
      END { printf "%s\t%s\t%d\t%.3f\t%.3f\n", name, run, rss, wall, user + sys }' "$log" >>"$results"
    say "$name run $run: $(tail -n 1 "$results" | awk -F'\t' '{printf "peak RSS %.1f MB, wall %.2f s, cpu %.2f s", $3/1024, $4, $5}')"
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report ----------------------------------------------------------------
python3 - "$results" "$BENCHMARKS_MD" "$BENCH_DIR" "$load_before" "$load_after" \
  "$(commit_id)" \
  "$("$REDIS_SERVER" --version | awk '{print $3}' | sed 's/v=//')" "$(nproc)" <<'PY'
import datetime, os, re, statistics, sys
results, md_path, bench_dir, load_before, load_after, commit, redis_ver, cores = sys.argv[1:]
rows = {}
for line in open(results):
    name, _run, rss, wall, cpu = line.rstrip("\n").split("\t")
    rows.setdefault(name, []).append((int(rss) / 1024, float(wall), float(cpu)))

def fig(values, fmt):
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"

md = open(md_path).read() if os.path.exists(md_path) else (
    "# Benchmarks\n\nWritten by `make bench` (scripts/bench-rdb.sh and later scripts): each "
    "benchmark owns the section between its `<!-- bench:… -->` markers and rewrites it on "
    "every run. Medians of the runs, min–max in brackets; the machine is shared and noisy, "
    "so compare figures from the same run only.\n")
date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
for name, runs in rows.items():
    rss, wall, cpu = ([r[i] for r in runs] for i in range(3))
    rdb = os.path.join(bench_dir, name + ".rdb")
    keys_file = os.path.join(bench_dir, name + ".keys")
    keys = int(open(keys_file).read().split()[0]) if os.path.exists(keys_file) else None
    out_file = os.path.join(bench_dir, name + ".out-bytes")
    out_bytes = int(open(out_file).read().split()[0]) if os.path.exists(out_file) else None
    lines = [
        f"## shardsync rdb --json: {name}",
        "",
        f"`shardsync rdb --json target/bench-data/{name}.rdb > /dev/null`, whole process under `/usr/bin/time -v`.",
        "",
        f"* date: {date}; commit {commit}; {cores} cores; load average {load_before} before, {load_after} after",
        f"* input: {os.path.getsize(rdb) / 1e6:.1f} MB RDB written by Redis {redis_ver}"
        + (f", {keys:,} key{'' if keys == 1 else 's'}" if keys is not None else ""),
        f"* output: {out_bytes / 1e6:.1f} MB of NDJSON" if out_bytes else "* output: **none** (the command printed nothing)",
        f"* runs: {len(runs)}, interleaved with the other files",
        "",
        "| measure | median (min–max) |",
        "|---|---|",
        f"| peak RSS | {fig(rss, '{:.1f}')} MB |",
        f"| wall time | {fig(wall, '{:.2f}')} s |",
        f"| CPU time (user+sys) | {fig(cpu, '{:.2f}')} s |",
    ]
    if keys and keys > 1 and out_bytes:
        lines.append(f"| keys/s (wall) | {fig([keys / max(w, 1e-3) for w in wall], '{:,.0f}')} |")
    section = f"<!-- bench:rdb-{name} -->\n" + "\n".join(lines) + f"\n<!-- /bench:rdb-{name} -->\n"
    pattern = re.compile(rf"<!-- bench:rdb-{re.escape(name)} -->.*?<!-- /bench:rdb-{re.escape(name)} -->\n", re.S)
    md = pattern.sub(lambda _m: section, md) if pattern.search(md) else md.rstrip("\n") + "\n\n" + section
open(md_path, "w").write(md)
print(f"bench-rdb: wrote {', '.join(rows)} into {md_path}")
PY
