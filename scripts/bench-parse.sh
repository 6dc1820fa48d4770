#!/usr/bin/env bash
# bench-parse.sh — parser throughput on the 1M-key dataset, against a reference
# measured in the same run: Redis's own `redis-check-rdb`, which reads the same
# file (it builds every object, so it is an upper bound for any loader, not a
# like-for-like parser; it tells whether our parser could ever be what limits a
# sync). Alternates A B A B … RUNS times; writes the medians into BENCHMARKS.md.
# Needs target/bench-data/mixed-1m.rdb (scripts/bench-rdb.sh builds it).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}
BENCH_DIR=${BENCH_DIR:-$root/target/bench-data}
RUNS=${RUNS:-5}
file=$BENCH_DIR/mixed-1m.rdb
[ -f "$file" ] || { echo "bench-parse: $file is missing: run scripts/bench-rdb.sh first" >&2; exit 1; }
cargo build -q --release --example parse_speed
probe=$target_dir/release/examples/parse_speed
ours=() ; sync=() ; ref=()
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for i in $(seq "$RUNS"); do
  ours+=("$("$probe" "$file" | sed -E 's/.* in ([0-9.]+) s.*/\1/')")
  sync+=("$("$probe" "$file" --as-sync | sed -E 's/.* in ([0-9.]+) s.*/\1/')")
  start=$(date +%s%N)
  redis-check-rdb "$file" >/dev/null
  ns=$(( $(date +%s%N) - start ))
  ref+=("$(printf '%d.%09d' $((ns / 1000000000)) $((ns % 1000000000)))")
  echo "bench-parse: run $i: shardsync parser ${ours[-1]} s, as a copy parses ${sync[-1]} s, redis-check-rdb ${ref[-1]} s"
done
python3 - "$root/BENCHMARKS.md" "$file" "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(git rev-parse --short HEAD)" "${ours[*]}" "${sync[*]}" "${ref[*]}" <<'PY'
import re, statistics, sys, datetime, os
md, file, lb, la, commit, ours, sync, ref = sys.argv[1:9]
ours, sync, ref = (sorted(float(x) for x in v.split()) for v in (ours, sync, ref))
size = os.path.getsize(file)
keys = 1_000_000
def row(name, xs):
    m = statistics.median(xs)
    return f"| {name} | {m:.3f} ({xs[0]:.3f}–{xs[-1]:.3f}) s | {keys/m/1e6:.2f} M keys/s | {size/m/1e6:.0f} MB/s |"
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
body = f"""<!-- bench:parse -->
## RDB parser throughput (one core), vs redis-check-rdb

`scripts/bench-parse.sh`: parse `mixed-1m.rdb` from the file, events consumed, no output
(`examples/parse_speed.rs`), alternating with `redis-check-rdb` on the same file. Two
modes: every value decoded into elements (what `shardsync rdb` does), and as a full copy
parses (`--as-sync`: DUMP payloads captured, compact encodings left undecoded since the
payload carries them, each payload's CRC-64 left to the writer that sends it).

* date: {now}; commit {commit}; load average {lb} before, {la} after; {len(ours)} runs each

| what | median (min–max) | keys/s | MB/s |
|---|---|---|---|
{row("shardsync parser, every value decoded", ours)}
{row("shardsync parser, as a full copy parses", sync)}
{row("redis-check-rdb 7.0 (reference)", ref)}
<!-- /bench:parse -->
"""
text = open(md).read()
pat = re.compile(r"<!-- bench:parse -->.*?<!-- /bench:parse -->\n", re.S)
text = pat.sub(lambda _: body, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + body
open(md, "w").write(text)
PY
echo "bench-parse: wrote BENCHMARKS.md"
