#!/usr/bin/env bash
# bench-sync.sh — whole-process benchmark of `shardsync run` against real servers,
# with the reference methods measured in the same run (issue 3, PERF.md).
#
# Datasets (built once in $BENCH_DIR, reused while they exist; other sizes get other
# names, so a small trial never passes for the real one):
#   mixed-<N>.rdb              the PERF.md dataset, SYNC_KEYS keys (gen_dataset → redis-cli
#                              --pipe → SAVE; the same file scripts/bench-rdb.sh builds)
#   mixed-<N>.restore.resp     one `RESTORE key ttl payload [ABSTTL]` per key of that RDB
#                              (examples/dump_restore_stream.rs), the --pipe reference
#   mixed-<N>-part<I>of2.rdb   every other key of it: two disjoint halves, together the whole
#   mixed-<S>.rdb              the same dataset at SMALL_KEYS keys, for peak RSS vs size
#
# Full copy (sections 1–3), RUNS rounds; each round runs every method once, in this order
# (A B C … A B C …), each into a freshly started empty destination:
#   shardsync  diskless   `shardsync run --headless --json --until-synced`, source with Redis
#                         7.0's default repl-diskless-sync yes (repl-diskless-sync-delay 0)
#   native     diskless   an empty redis-server (defaults: repl-diskless-load disabled)
#                         doing REPLICAOF, until master_link_status:up and DBSIZE = the source's
#   native     swapdb     the same, replica with repl-diskless-load swapdb (PERF.md's
#                         physical reference)
#   shardsync  disk       source with repl-diskless-sync no (RDB written to disk first)
#   native     disk       the same source settings
#   --pipe     RESTORE    redis-cli --pipe < mixed-<N>.restore.resp
#   shardsync  2 sources  the two halves, each on its own source, one task, full_syncs_per_host = 2
#                         (copies at once, as on two hosts) and the default 1 (one after the other)
#   shardsync  small      the SMALL_KEYS source (peak RSS)
# shardsync is timed from process start to its {"event":"synced"} line, and also to the
# moment the destination's DBSIZE reaches the source's (polled every 20 ms, like the
# native replica); peak RSS and CPU from /usr/bin/time -v.
#
# Incremental (section 4), INCR_RUNS rounds of (shardsync, native replica): fresh source
# loaded from mixed-<N>.rdb, full copy, then `redis-benchmark -t set,lpush,hset -P 16
# -r 100000 -n INCR_REQUESTS` on the source. During the load a probe writes a key on the
# source every 50 ms and polls the destination (every ms) until it is there: the
# end-to-end lag in ms, measured the same way for both. shardsync's own NDJSON lag_ms
# values during the load are recorded too. After the load a sentinel key is written and
# waited for on the destination: the catch-up time. INCR_REQUESTS (per test) defaults to
# 2,500,000: about 20–25 s with shardsync attached on the 2-core benchmark machine (the
# source runs faster with a native replica, which costs it less CPU: the same load, shorter).
#
# Writes four sections into BENCHMARKS.md (sync-full, sync-two-sources, sync-rss,
# sync-incremental), replacing their previous figures.
#
# Settings (environment): SYNC_KEYS (1000000), SMALL_KEYS (100000), RUNS (3),
# INCR_RUNS (RUNS; 0 skips section 4), INCR_REQUESTS (2500000 per test),
# SEED (42), BENCH_DIR (target/bench-data), SHARDSYNC_BIN, BENCHMARKS_MD,
# REDIS_SERVER / REDIS_CLI / REDIS_BENCHMARK.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/redis-lib.sh
. "$root/scripts/redis-lib.sh"
bench=bench-sync
# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"

target_dir=${CARGO_TARGET_DIR:-$root/target}
BENCH_DIR=${BENCH_DIR:-$root/target/bench-data}
SYNC_KEYS=${SYNC_KEYS:-1000000}
SMALL_KEYS=${SMALL_KEYS:-100000}
RUNS=${RUNS:-3}
INCR_RUNS=${INCR_RUNS:-$RUNS}
INCR_REQUESTS=${INCR_REQUESTS:-2500000}
SEED=${SEED:-42}
SHARDSYNC_BIN=${SHARDSYNC_BIN:-$target_dir/release/shardsync}
BENCHMARKS_MD=${BENCHMARKS_MD:-$root/BENCHMARKS.md}
REDIS_BENCHMARK=${REDIS_BENCHMARK:-redis-benchmark}
gen_bin=$target_dir/release/examples/gen_dataset
dump_bin=$target_dir/release/examples/dump_restore_stream

[ -x /usr/bin/time ] || die "/usr/bin/time is missing: run scripts/deps.sh"
[ -x "$SHARDSYNC_BIN" ] || die "$SHARDSYNC_BIN is missing: run cargo build --release"
command -v "$REDIS_BENCHMARK" >/dev/null || die "$REDIS_BENCHMARK is missing"
[ "${BASH_VERSINFO[0]}" -ge 5 ] || die "bash 5 is needed (EPOCHREALTIME)"

big=$(dataset_name mixed "$SYNC_KEYS")
small=$(dataset_name mixed "$SMALL_KEYS")

mkdir -p "$BENCH_DIR"
work=$(mktemp -d "$BENCH_DIR/sync.XXXXXX")

# ---- servers -----------------------------------------------------------------
# Several servers at once (redis-lib.sh keeps one): NAME → port and pid.
declare -A PORT=() PID=()
ss_pid=

# srv_start NAME DIR [redis-server options…]: starts a server in DIR (which may hold a
# dump.rdb to load) and waits until it answers PING (loading a big RDB takes seconds).
srv_start() {
  local name=$1 dir=$2; shift 2
  local attempt i port pid
  mkdir -p "$dir"
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    "$REDIS_SERVER" --bind 127.0.0.1 --port "$port" --dir "$dir" --dbfilename dump.rdb \
      --save "" --appendonly no --daemonize no --logfile "$dir/redis.log" "$@" </dev/null &
    pid=$!
    for i in $(seq 1 1200); do
      kill -0 "$pid" 2>/dev/null || break
      if [ "$("$REDIS_CLI" -h 127.0.0.1 -p "$port" ping 2>/dev/null </dev/null)" = PONG ]; then
        PORT[$name]=$port
        PID[$name]=$pid
        return 0
      fi
      sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    say "$name: redis-server did not start on port $port (attempt $attempt); log: $dir/redis.log"
    tail -n 5 "$dir/redis.log" >&2 || true
  done
  die "cannot start redis-server $name"
}

srv_stop() {
  local name=$1 pid=${PID[$1]:-} i
  [ -n "$pid" ] || return 0
  "$REDIS_CLI" -h 127.0.0.1 -p "${PORT[$name]}" shutdown nosave >/dev/null 2>&1 || true
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
  unset "PID[$name]"
}

cli() { local name=$1; shift; "$REDIS_CLI" -h 127.0.0.1 -p "${PORT[$name]}" "$@"; }

# stop_timed PID: SIGTERM to the program /usr/bin/time (PID) runs, which GNU time does
# not forward; then waits for time to exit and returns its status.
stop_timed() {
  local child
  child=$(pgrep -P "$1" || true)
  if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null || true; else kill -TERM "$1" 2>/dev/null || true; fi
  wait "$1"
}

cleanup() {
  local name
  if [ -n "$ss_pid" ] && kill -0 "$ss_pid" 2>/dev/null; then stop_timed "$ss_pid" || true; fi
  for name in "${!PID[@]}"; do srv_stop "$name"; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- helpers in Python (a tiny RESP client; no redis module needed) ------------
cat >"$work/helper.py" <<'PY'
import socket, sys, time

class R:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", int(port)))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")
    def cmd(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.s.sendall(b"".join(out))
        return self.reply()
    def reply(self):
        line = self.f.readline()
        t, rest = line[:1], line[1:-2]
        if t in (b"+", b"-"):
            return rest.decode() if t == b"+" else RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data
        if t == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise RuntimeError("bad reply %r" % line)

def wait_keys(t0, port, n, link, timeout=900):
    """Polls every 20 ms until DBSIZE = n (and, with link, the replica's link is up);
    prints the seconds since the epoch time t0."""
    r = R(port)
    deadline = time.time() + timeout
    while time.time() < deadline:
        ok = True
        if link:
            info = r.cmd("INFO", "replication")
            ok = isinstance(info, bytes) and b"master_link_status:up" in info
        if ok:
            size = r.cmd("DBSIZE")
            if size == n:
                print("%.3f" % (time.time() - t0))
                return 0
        time.sleep(0.02)
    print("timeout")
    return 1

def probe(src, dst, out, stop):
    """Until the file `stop` exists: SET a probe key on the source, poll the destination
    every ms until it holds that value; one line per probe: epoch ms, lag ms."""
    import os
    s, d = R(src), R(dst)
    seq = 0
    with open(out, "w") as f:
        while not os.path.exists(stop):
            seq += 1
            val = "%d-%d" % (os.getpid(), seq)
            s.cmd("SET", "bench:probe", val)
            t = time.time()
            while d.cmd("GET", "bench:probe") != val.encode():
                if time.time() - t > 120:
                    break
                time.sleep(0.001)
            f.write("%d\t%.2f\n" % (t * 1000, (time.time() - t) * 1000))
            f.flush()
            time.sleep(0.05)
    return 0

def catchup(src, dst):
    """Writes a sentinel on the source, prints the seconds until the destination has it."""
    import os
    s, d = R(src), R(dst)
    val = "end-%d-%f" % (os.getpid(), time.time())
    s.cmd("SET", "bench:sentinel", val)
    t = time.time()
    while d.cmd("GET", "bench:sentinel") != val.encode():
        if time.time() - t > 600:
            print("timeout"); return 1
        time.sleep(0.001)
    print("%.3f" % (time.time() - t))
    return 0

cmd = sys.argv[1]
if cmd == "wait":
    sys.exit(wait_keys(float(sys.argv[2]), sys.argv[3], int(sys.argv[4]), len(sys.argv) > 5))
elif cmd == "probe":
    sys.exit(probe(*sys.argv[2:6]))
elif cmd == "catchup":
    sys.exit(catchup(*sys.argv[2:4]))
PY
helper() { python3 "$work/helper.py" "$@"; }

# ---- datasets --------------------------------------------------------------------
build_tools() {
  if [ ! -x "$gen_bin" ] || [ ! -x "$dump_bin" ] || [ "$root/examples/gen_dataset.rs" -nt "$gen_bin" ] ||
    [ "$root/examples/dump_restore_stream.rs" -nt "$dump_bin" ]; then
    say "building the dataset tools"
    cargo build --release --quiet --example gen_dataset --example dump_restore_stream
  fi
}

# load_and_save NAME KEYS: feeds stdin to an empty server with --pipe, checks it then
# holds KEYS keys, SAVEs into $BENCH_DIR/NAME.rdb and writes NAME.keys.
load_and_save() {
  local name=$1 keys=$2 dir=$work/build-$1
  srv_start build "$dir"
  redis_pipe_out=$dir/pipe.out
  "$REDIS_CLI" -h 127.0.0.1 -p "${PORT[build]}" --pipe >"$redis_pipe_out"
  grep -q 'errors: 0,' "$redis_pipe_out" || { cat "$redis_pipe_out" >&2; die "$name: redis-cli --pipe reported errors"; }
  [ "$(cli build dbsize)" = "$keys" ] || die "$name: the server holds $(cli build dbsize) keys, expected $keys"
  cli build save >/dev/null
  cli build dbsize >"$dir/dump.keys"
  srv_stop build
  mv "$dir/dump.keys" "$BENCH_DIR/$name.keys"
  mv "$dir/dump.rdb" "$BENCH_DIR/$name.rdb"
  rm -rf "$dir"
  say "$name: wrote $BENCH_DIR/$name.rdb ($(du -h "$BENCH_DIR/$name.rdb" | cut -f1), $(cat "$BENCH_DIR/$name.keys") keys)"
}

mixed_rdb() {
  local name=$1 keys=$2
  if [ -s "$BENCH_DIR/$name.rdb" ] && [ -s "$BENCH_DIR/$name.keys" ]; then
    say "reusing $BENCH_DIR/$name.rdb"
    return
  fi
  say "$name: generating $keys keys (seed $SEED)"
  load_and_save "$name" "$keys" < <("$gen_bin" --seed "$SEED" mixed --keys "$keys")
}

build_tools
mixed_rdb "$big" "$SYNC_KEYS"
mixed_rdb "$small" "$SMALL_KEYS"
big_keys=$(cat "$BENCH_DIR/$big.keys")
small_keys=$(cat "$BENCH_DIR/$small.keys")
restore=$BENCH_DIR/$big.restore.resp
if [ ! -s "$restore" ] || [ "$BENCH_DIR/$big.rdb" -nt "$restore" ]; then
  say "$big: writing the RESTORE stream"
  "$dump_bin" "$BENCH_DIR/$big.rdb" >"$restore.tmp" 2>"$work/dump.err" || { cat "$work/dump.err" >&2; die "dump_restore_stream failed"; }
  mv "$restore.tmp" "$restore"
fi
for part in 1 2; do
  half=$big-part${part}of2
  if [ ! -s "$BENCH_DIR/$half.rdb" ] || [ "$BENCH_DIR/$big.rdb" -nt "$BENCH_DIR/$half.rdb" ]; then
    say "$half: every other key of $big.rdb"
    load_and_save "$half" $((big_keys / 2 + (part == 1 ? big_keys % 2 : 0))) < <("$dump_bin" "$BENCH_DIR/$big.rdb" --part "$part/2" 2>/dev/null)
  fi
done
half_keys=$(($(cat "$BENCH_DIR/$big-part1of2.keys") + $(cat "$BENCH_DIR/$big-part2of2.keys")))
[ "$half_keys" -eq "$big_keys" ] || die "the two halves hold $half_keys keys, $big.rdb $big_keys"

# source NAME RDB-NAME [options…]: a source server loaded from $BENCH_DIR/RDB-NAME.rdb
# (hard link: the server never writes that file; a disk-based sync renames a new one
# over the link). Redis 7.0 defaults but for repl-diskless-sync-delay 0: the default 5 s
# wait for more replicas would add 5 s to shardsync and native alike.
source_start() {
  local name=$1 rdb=$2; shift 2
  mkdir -p "$work/$name"
  ln -f "$BENCH_DIR/$rdb.rdb" "$work/$name/dump.rdb" 2>/dev/null || cp "$BENCH_DIR/$rdb.rdb" "$work/$name/dump.rdb"
  srv_start "$name" "$work/$name" --repl-diskless-sync-delay 0 "$@"
  rm -f "$work/$name/dump.rdb"
}

# ---- one measurement -------------------------------------------------------------
# Kept in $BENCH_DIR (not $work) so that figures survive a failed run.
results=$BENCH_DIR/sync-results-$big.tsv
: >"$results"
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$results"; }

# task_file DIR SOURCE-NAME…: the task for the given sources into server dest.
# TASK_SYNC_EXTRA (environment) adds lines to its [sync] table.
task_file() {
  local dir=$1; shift
  local s
  {
    printf 'name = "bench"\nstate_dir = "%s/state"\n\n' "$dir"
    for s in "$@"; do printf '[[source]]\nname = "%s"\naddr = "127.0.0.1:%s"\n\n' "$s" "${PORT[$s]}"; done
    printf '[destination]\naddr = "127.0.0.1:%s"\n\n[sync]\nconflict = "intercept"\n' "${PORT[dest]}"
    # Extra [sync] lines for one method (TASK_SYNC_EXTRA).
    [ -z "${TASK_SYNC_EXTRA:-}" ] || printf '%s\n' "$TASK_SYNC_EXTRA"
  } >"$dir/task.toml"
}

# time_v_fields FILE: peak RSS (KB), CPU s, from /usr/bin/time -v.
time_v_fields() {
  awk -F': ' '/Maximum resident set size/ { rss = $2 } /User time/ { u = $2 } /System time/ { s = $2 }
    END { printf "%d %.2f\n", rss, u + s }' "$1"
}

# run_shardsync METHOD RUN EXPECTED-KEYS SOURCE…: a full copy until synced.
run_shardsync() {
  local method=$1 run=$2 expect=$3; shift 3
  # Every key, and each shard's checkpoint key (the tool's own, in DB 0).
  expect=$((expect + $#))
  local dir=$work/$method-$run t0 status=0 t_keys t_synced rss cpu
  mkdir -p "$dir"
  srv_start dest "$dir/dest"
  task_file "$dir" "$@"
  t0=$EPOCHREALTIME
  helper wait "$t0" "${PORT[dest]}" "$expect" >"$dir/keys.time" &
  local poll=$!
  /usr/bin/time -v -o "$dir/time.txt" "$SHARDSYNC_BIN" run --config "$dir/task.toml" --headless --json --until-synced \
    2>"$dir/stderr.txt" | while IFS= read -r line; do printf '%s\t%s\n' "$EPOCHREALTIME" "$line"; done >"$dir/out.ndjson" ||
    status=$?
  wait "$poll" || true
  [ "$status" -eq 0 ] || die "$method run $run: shardsync failed: $(tail -n 3 "$dir/stderr.txt") $(tail -n 2 "$dir/out.ndjson")"
  t_synced=$(awk -F'\t' -v t0="$t0" '$2 ~ /"event":"synced"/ { printf "%.3f", $1 - t0 }' "$dir/out.ndjson")
  [ -n "$t_synced" ] || die "$method run $run: no synced event"
  t_keys=$(cat "$dir/keys.time")
  [ "$(cli dest dbsize)" = "$expect" ] || die "$method run $run: destination has $(cli dest dbsize) keys, expected $expect"
  read -r rss cpu < <(time_v_fields "$dir/time.txt")
  record "$method" "$run" synced_s "$t_synced"
  record "$method" "$run" keys_s "$t_keys"
  record "$method" "$run" rss_kb "$rss"
  record "$method" "$run" cpu_s "$cpu"
  say "$method run $run: synced after $t_synced s (all keys on the destination after $t_keys s), peak RSS $((rss / 1024)) MB, CPU $cpu s"
  srv_stop dest
  rm -rf "$dir"
}

# run_native METHOD RUN SOURCE [replica options…]
run_native() {
  local method=$1 run=$2 src=$3; shift 3
  local dir=$work/$method-$run t0 t
  local expect
  expect=$(cli "$src" dbsize)
  srv_start dest "$dir/dest" "$@"
  t0=$EPOCHREALTIME
  cli dest replicaof 127.0.0.1 "${PORT[$src]}" >/dev/null
  t=$(helper wait "$t0" "${PORT[dest]}" "$expect" link) || die "$method run $run: replica never caught up"
  record "$method" "$run" keys_s "$t"
  say "$method run $run: link up with $expect keys after $t s"
  cli dest replicaof no one >/dev/null
  srv_stop dest
  rm -rf "$dir"
}

run_pipe() {
  local method=$1 run=$2 expect=$3
  local dir=$work/$method-$run t0 t1
  srv_start dest "$dir/dest"
  t0=$EPOCHREALTIME
  cli dest --pipe <"$restore" >"$dir/pipe.out"
  t1=$EPOCHREALTIME
  grep -q 'errors: 0,' "$dir/pipe.out" || { cat "$dir/pipe.out" >&2; die "$method: redis-cli --pipe reported errors"; }
  [ "$(cli dest dbsize)" = "$expect" ] || die "$method run $run: destination has $(cli dest dbsize) keys, expected $expect"
  t=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  record "$method" "$run" keys_s "$t"
  say "$method run $run: $t s"
  srv_stop dest
  rm -rf "$dir"
}

repl_diskless() { cli src config set repl-diskless-sync "$1" >/dev/null; }

# ---- sections 1–3: full copy -------------------------------------------------------
say "full copy: $big ($big_keys keys), $RUNS rounds; sources loading"
source_start src "$big"
source_start half1 "$big-part1of2"
source_start half2 "$big-part2of2"
source_start small "$small"
[ "$(cli src dbsize)" = "$big_keys" ] || die "source holds $(cli src dbsize) keys, expected $big_keys"
load_full_before=$(cut -d' ' -f1-3 /proc/loadavg)
full_started=$SECONDS
for run in $(seq 1 "$RUNS"); do
  repl_diskless yes
  run_shardsync ss-diskless "$run" "$big_keys" src
  run_native native-diskless "$run" src
  run_native native-swapdb "$run" src --repl-diskless-load swapdb
  repl_diskless no
  run_shardsync ss-disk "$run" "$big_keys" src
  run_native native-disk "$run" src
  repl_diskless yes
  run_pipe pipe "$run" "$big_keys"
  # Both sources are on this one host, where the default full_syncs_per_host = 1 makes
  # their copies take turns; 2 lets them run at once, as masters on their own hosts do.
  TASK_SYNC_EXTRA='full_syncs_per_host = 2' run_shardsync ss-2src "$run" "$big_keys" half1 half2
  run_shardsync ss-2src-serial "$run" "$big_keys" half1 half2
  run_shardsync ss-small "$run" "$small_keys" small
done
load_full_after=$(cut -d' ' -f1-3 /proc/loadavg)
say "full copy: $((SECONDS - full_started)) s"
for s in src half1 half2 small; do srv_stop "$s"; done

# ---- section 4: incremental ----------------------------------------------------------
load_incr_before=
load_incr_after=
if [ "$INCR_RUNS" -gt 0 ]; then
  record incr-setup 0 requests "$INCR_REQUESTS"
  load_incr_before=$(cut -d' ' -f1-3 /proc/loadavg)
  incr_started=$SECONDS

  # cpu_ticks PID…: user+system clock ticks used so far by each PID (space-separated).
  cpu_ticks() {
    local p
    for p in "$@"; do awk '{ printf "%d ", $14 + $15 }' "/proc/$p/stat"; done
  }
  clk_tck=$(getconf CLK_TCK)

  # incr_load METHOD RUN DIR TOOL-PID [DEST-PID]: the load, the probe and the catch-up;
  # src and dest run. CPU seconds during the load: the consumer (shardsync, or the native
  # replica) and, for shardsync, the destination server that applies its writes.
  incr_load() {
    local method=$1 run=$2 dir=$3 t_start t_end catch cpu0 cpu1
    shift 3
    rm -f "$dir/probe.stop"
    helper probe "${PORT[src]}" "${PORT[dest]}" "$dir/probe.tsv" "$dir/probe.stop" &
    local probe_pid=$!
    sleep 1
    cpu0=$(cpu_ticks "$@")
    t_start=$EPOCHREALTIME
    "$REDIS_BENCHMARK" -h 127.0.0.1 -p "${PORT[src]}" -t set,lpush,hset -P 16 -n "$INCR_REQUESTS" -r 100000 --csv \
      >"$dir/benchmark.csv" 2>"$dir/benchmark.err"
    t_end=$EPOCHREALTIME
    catch=$(helper catchup "${PORT[src]}" "${PORT[dest]}")
    cpu1=$(cpu_ticks "$@")
    touch "$dir/probe.stop"
    wait "$probe_pid" || true
    record "$method" "$run" load_start_ms $((${t_start/./} / 1000))
    record "$method" "$run" load_end_ms $((${t_end/./} / 1000))
    record "$method" "$run" load_s "$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.3f", b - a }')"
    record "$method" "$run" catchup_s "$catch"
    read -r -a cpu0 <<<"$cpu0"
    read -r -a cpu1 <<<"$cpu1"
    record "$method" "$run" cpu_tool_s "$(awk -v a="${cpu0[0]}" -v b="${cpu1[0]}" -v t="$clk_tck" 'BEGIN { printf "%.2f", (b - a) / t }')"
    if [ "${#cpu0[@]}" -gt 1 ]; then
      record "$method" "$run" cpu_dest_s "$(awk -v a="${cpu0[1]}" -v b="${cpu1[1]}" -v t="$clk_tck" 'BEGIN { printf "%.2f", (b - a) / t }')"
    fi
    awk -F'"' 'NR > 1 { printf "%s\t%s\n", $2, $4 }' "$dir/benchmark.csv" | while IFS=$'\t' read -r test rps; do
      record "$method" "$run" "rps_$test" "$rps"
    done
    awk -F'\t' -v m="$method" -v r="$run" '{ printf "%s\t%s\tprobe_ms\t%s\n", m, r, $2 }' "$dir/probe.tsv" >>"$results"
    say "$method run $run: load $(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.1f", b - a }') s ($(awk -F'"' 'NR > 1 { printf "%s %.0f/s ", $2, $4 }' "$dir/benchmark.csv")), probe lag p50 $(sort -t$'\t' -k2 -n "$dir/probe.tsv" | awk -F'\t' '{ a[NR] = $2 } END { print a[int((NR + 1) / 2)] }') ms, catch-up $catch s"
  }

  for run in $(seq 1 "$INCR_RUNS"); do
    # shardsync
    dir=$work/incr-ss-$run
    mkdir -p "$dir"
    source_start src "$big"
    srv_start dest "$dir/dest"
    task_file "$dir" src
    : >"$dir/out.ndjson"
    /usr/bin/time -v -o "$dir/time.txt" "$SHARDSYNC_BIN" run --config "$dir/task.toml" --headless --json \
      >"$dir/out.ndjson" 2>"$dir/stderr.txt" &
    ss_pid=$!
    # incremental and caught up: applied = source offset
    for i in $(seq 1 1800); do
      if grep -q '"state":"incremental".*"lag_bytes":0,' "$dir/out.ndjson"; then break; fi
      kill -0 "$ss_pid" 2>/dev/null || die "incremental run $run: shardsync exited: $(tail -n 3 "$dir/stderr.txt")"
      sleep 0.1
    done
    grep -q '"state":"incremental".*"lag_bytes":0,' "$dir/out.ndjson" || die "incremental run $run: never caught up"
    incr_load ss-incr "$run" "$dir" "$(pgrep -P "$ss_pid")" "${PID[dest]}"
    sleep 1.5
    stop_timed "$ss_pid" || die "incremental run $run: shardsync exited $? on SIGTERM: $(tail -n 3 "$dir/stderr.txt")"
    ss_pid=
    # NDJSON lag_ms values during the load
    start_ms=$(awk -F'\t' '$1 == "ss-incr" && $2 == '"$run"' && $3 == "load_start_ms" { print $4 }' "$results")
    end_ms=$(awk -F'\t' '$1 == "ss-incr" && $2 == '"$run"' && $3 == "load_end_ms" { print $4 }' "$results")
    python3 - "$dir/out.ndjson" "$start_ms" "$end_ms" "$run" >>"$results" <<'PY'
import json, sys
path, start, end, run = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for line in open(path):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    if "ts_ms" not in r:
        continue
    if start <= r["ts_ms"] <= end:
        if r.get("lag_ms") is not None:
            print(f"ss-incr\t{run}\tndjson_lag_ms\t{r['lag_ms']}")
        if r.get("lag_bytes") is not None:
            print(f"ss-incr\t{run}\tndjson_lag_bytes\t{r['lag_bytes']}")
        print(f"ss-incr\t{run}\tndjson_ops\t{r['ops_per_sec']}")
    if r.get("state") in ("reconnecting", "failed") or r.get("errors", 0) > 0:
        print(f"ss-incr\t{run}\ttrouble\t1")
PY
    read -r rss cpu < <(time_v_fields "$dir/time.txt")
    record ss-incr "$run" rss_kb "$rss"
    dropped=$(grep -c 'output buffer limits' "$work/src/redis.log" || true)
    record ss-incr "$run" dropped "$dropped"
    srv_stop dest
    srv_stop src
    rm -rf "$dir" "$work/src"

    # native replica
    dir=$work/incr-native-$run
    mkdir -p "$dir"
    source_start src "$big"
    srv_start dest "$dir/dest"
    t0=$EPOCHREALTIME
    cli dest replicaof 127.0.0.1 "${PORT[src]}" >/dev/null
    helper wait "$t0" "${PORT[dest]}" "$(cli src dbsize)" link >/dev/null || die "incremental run $run: replica never caught up"
    incr_load native-incr "$run" "$dir" "${PID[dest]}"
    dropped=$(grep -c 'output buffer limits' "$work/src/redis.log" || true)
    record native-incr "$run" dropped "$dropped"
    srv_stop dest
    srv_stop src
    rm -rf "$dir" "$work/src"
  done
  load_incr_after=$(cut -d' ' -f1-3 /proc/loadavg)
  say "incremental: $((SECONDS - incr_started)) s"
fi

# ---- report ------------------------------------------------------------------------
python3 - "$results" "$BENCHMARKS_MD" "$BENCH_DIR" "$big" "$small" "$big_keys" "$small_keys" \
  "$load_full_before" "$load_full_after" "$load_incr_before" "$load_incr_after" \
  "$(commit_id)" \
  "$("$REDIS_SERVER" --version | awk '{print $3}' | sed 's/v=//')" "$(nproc)" "$RUNS" "$INCR_RUNS" <<'PY'
import datetime, os, re, statistics, sys
(results, md_path, bench_dir, big, small, big_keys, small_keys, lf0, lf1, li0, li1, commit, redis_ver,
 cores, runs, incr_runs) = sys.argv[1:]
big_keys, small_keys = int(big_keys), int(small_keys)
data = {}
for line in open(results):
    method, run, metric, value = line.rstrip("\n").split("\t")
    try:
        v = float(value)
    except ValueError:
        continue
    data.setdefault((method, metric), []).append(v)

def vals(m, k):
    return data.get((m, k), [])

def med(m, k):
    v = vals(m, k)
    return statistics.median(v) if v else None

def fig(v, fmt="{:.2f}"):
    if not v:
        return "n/a"
    return f"{fmt.format(statistics.median(v))} ({fmt.format(min(v))}–{fmt.format(max(v))})"

def pct(v, p):
    if not v:
        return None
    s = sorted(v)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]

def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "n/a"

date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
rdb_mb = os.path.getsize(os.path.join(bench_dir, big + ".rdb")) / 1e6
head = f"* date: {date}; commit {commit}; Redis {redis_ver}; {cores} cores (shared)"
sections = {}

# 1. full copy
ss_d, ss_k = vals("ss-diskless", "synced_s"), vals("ss-diskless", "keys_s")
rows = [
    ("shardsync, diskless source: start → `synced` event", vals("ss-diskless", "synced_s")),
    ("shardsync, diskless source: start → all keys on the destination", vals("ss-diskless", "keys_s")),
    ("native replica, diskless source (replica defaults: repl-diskless-load disabled)", vals("native-diskless", "keys_s")),
    ("native replica, diskless source, replica repl-diskless-load swapdb", vals("native-swapdb", "keys_s")),
    ("shardsync, disk-based source: start → `synced` event", vals("ss-disk", "synced_s")),
    ("shardsync, disk-based source: start → all keys on the destination", vals("ss-disk", "keys_s")),
    ("native replica, disk-based source (repl-diskless-sync no)", vals("native-disk", "keys_s")),
    ("`redis-cli --pipe` of the RESTORE stream (1 RESTORE per key)", vals("pipe", "keys_s")),
]
lines = [
    f"## Full copy: one source → one empty destination ({big}, {big_keys:,} keys)",
    "",
    "`scripts/bench-sync.sh`: each round runs every method once into a freshly started empty",
    "destination, in the table's order (A B C … A B C …). Source: Redis defaults",
    "(`repl-diskless-sync yes`) but `repl-diskless-sync-delay 0` (the default 5 s wait for more",
    "replicas would add 5 s to everyone); the disk-based rows set `repl-diskless-sync no`.",
    "shardsync: `shardsync run --headless --json --until-synced`, timed from process start;",
    "native: `REPLICAOF` on an empty redis-server until `master_link_status:up` and `DBSIZE`",
    "equals the source's (polled every 20 ms); --pipe: the RESTORE stream of the same RDB",
    "(`examples/dump_restore_stream.rs`, the bytes shardsync sends too).",
    "",
    head,
    f"* load average {lf0} before, {lf1} after; {runs} rounds",
    f"* dataset: {rdb_mb:.1f} MB RDB, {big_keys:,} keys",
    "",
    "| method | seconds, median (min–max) | keys/s |",
    "|---|---|---|",
]
for name, v in rows:
    lines.append(f"| {name} | {fig(v)} | {big_keys / statistics.median(v):,.0f} |" if v else f"| {name} | n/a | |")
n_d, n_disk, n_swap, pipe = (med("native-diskless", "keys_s"), med("native-disk", "keys_s"),
                             med("native-swapdb", "keys_s"), med("pipe", "keys_s"))
s_d, s_dk, s_disk, s_diskk = (med("ss-diskless", "synced_s"), med("ss-diskless", "keys_s"),
                              med("ss-disk", "synced_s"), med("ss-disk", "keys_s"))
lines += [
    "",
    "Ratios of medians (target: ≤ 1.2× `--pipe`; ≤ 1.2× native with the same source settings):",
    "",
    "| shardsync | / native (same source settings) | / native swapdb | / `--pipe` RESTORE |",
    "|---|---|---|---|",
    f"| diskless, to `synced` | {ratio(s_d, n_d)} | {ratio(s_d, n_swap)} | {ratio(s_d, pipe)} |",
    f"| diskless, to all keys applied | {ratio(s_dk, n_d)} | {ratio(s_dk, n_swap)} | {ratio(s_dk, pipe)} |",
    f"| disk-based, to `synced` | {ratio(s_disk, n_disk)} | | {ratio(s_disk, pipe)} |",
    f"| disk-based, to all keys applied | {ratio(s_diskk, n_disk)} | | {ratio(s_diskk, pipe)} |",
    "",
    f"shardsync CPU (user+sys) per full copy: {fig(vals('ss-diskless', 'cpu_s'))} s (diskless), "
    f"{fig(vals('ss-disk', 'cpu_s'))} s (disk-based).",
    "",
    "The `synced` event comes on the headless loop's 1 s tick (and only once the shard's state",
    "has turned `incremental`, which waits for the reader's next progress update), so it lands",
    "0.5–1.5 s after the last key is applied: the \"all keys on the destination\" rows are the",
    "copy itself. With a disk-based source nothing arrives until the source's BGSAVE is done,",
    "so shardsync's apply rate is not hidden behind the RDB build as it is with diskless.",
]
sections["sync-full"] = lines

# 2. two sources
two = vals("ss-2src", "synced_s")
lines = [
    f"## Full copy: two sources of half the keys each → one destination ({big})",
    "",
    f"The two halves are every other key of `{big}.rdb` (`dump_restore_stream --part I/2`), each",
    "loaded on its own source: together exactly the one-source dataset. One shardsync task",
    "with two `[[source]]`s, alternating with the one-source runs above (diskless sources).",
    "Both sources run on this one host: with the default `full_syncs_per_host = 1` their",
    "snapshots take turns (a diskless snapshot's child lives for the whole transfer), so the",
    "main row sets it to 2, as two masters on their own hosts would copy at once.",
    "",
    head,
    f"* load average {lf0} before, {lf1} after; {runs} rounds",
    "",
    "| method | to `synced`, s | to all keys applied, s | peak RSS, MB | CPU, s |",
    "|---|---|---|---|---|",
    f"| one source of {big_keys:,} keys | {fig(vals('ss-diskless', 'synced_s'))} | {fig(vals('ss-diskless', 'keys_s'))} | "
    f"{fig([x / 1024 for x in vals('ss-diskless', 'rss_kb')], '{:.1f}')} | {fig(vals('ss-diskless', 'cpu_s'))} |",
    f"| two sources of {big_keys // 2:,} keys, copied at once (`full_syncs_per_host = 2`) | {fig(two)} | {fig(vals('ss-2src', 'keys_s'))} | "
    f"{fig([x / 1024 for x in vals('ss-2src', 'rss_kb')], '{:.1f}')} | {fig(vals('ss-2src', 'cpu_s'))} |",
    f"| … one host, `full_syncs_per_host = 1` (the default): one copy after the other | "
    f"{fig(vals('ss-2src-serial', 'synced_s'))} | {fig(vals('ss-2src-serial', 'keys_s'))} | "
    f"{fig([x / 1024 for x in vals('ss-2src-serial', 'rss_kb')], '{:.1f}')} | {fig(vals('ss-2src-serial', 'cpu_s'))} |",
    "",
    f"Two sources / one source (to `synced`): {ratio(med('ss-2src', 'synced_s'), s_d)} (target: < 1×).",
]
sections["sync-two-sources"] = lines

# 3. RSS
lines = [
    "## shardsync peak RSS vs dataset size (full copy, one source)",
    "",
    "Whole process, `/usr/bin/time -v`, the runs of the sections above.",
    "",
    head,
    "",
    "| dataset | keys | peak RSS, MB | CPU, s | to `synced`, s |",
    "|---|---|---|---|---|",
    f"| {small} | {small_keys:,} | {fig([x / 1024 for x in vals('ss-small', 'rss_kb')], '{:.1f}')} | {fig(vals('ss-small', 'cpu_s'))} | {fig(vals('ss-small', 'synced_s'))} |",
    f"| {big} | {big_keys:,} | {fig([x / 1024 for x in vals('ss-diskless', 'rss_kb')], '{:.1f}')} | {fig(vals('ss-diskless', 'cpu_s'))} | {fig(vals('ss-diskless', 'synced_s'))} |",
    f"| {big}, disk-based source | {big_keys:,} | {fig([x / 1024 for x in vals('ss-disk', 'rss_kb')], '{:.1f}')} | {fig(vals('ss-disk', 'cpu_s'))} | {fig(vals('ss-disk', 'synced_s'))} |",
    f"| {big}, two sources | {big_keys:,} | {fig([x / 1024 for x in vals('ss-2src', 'rss_kb')], '{:.1f}')} | {fig(vals('ss-2src', 'cpu_s'))} | {fig(vals('ss-2src', 'synced_s'))} |",
]
if vals("ss-incr", "rss_kb"):
    lines.append(f"| {big}, full copy + incremental under load | {big_keys:,} | {fig([x / 1024 for x in vals('ss-incr', 'rss_kb')], '{:.1f}')} | | |")
lines += ["", "Target: < 100 MB, flat as the dataset grows."]
sections["sync-rss"] = lines

# 4. incremental
if vals("ss-incr", "load_s"):
    req = int(vals("incr-setup", "requests")[0])
    def total_rate(m):
        # the three tests run one after the other: requests / (sum of 1/rps)
        rs = [vals(m, f"rps_{t}") for t in ("SET", "LPUSH", "HSET")]
        per_run = [3 / sum(1 / r[i] for r in rs) for i in range(min(len(r) for r in rs))] if all(rs) else []
        return per_run
    def lag_row(name, v):
        if not v:
            return f"| {name} | n/a | | | | |"
        return (f"| {name} | {len(v)} | {pct(v, 50):.1f} | {pct(v, 95):.1f} | {pct(v, 99):.1f} | {max(v):.1f} |")
    ss_p, nat_p, ss_n = vals("ss-incr", "probe_ms"), vals("native-incr", "probe_ms"), vals("ss-incr", "ndjson_lag_ms")
    lines = [
        f"## Incremental: under `redis-benchmark -t set,lpush,hset -P 16 -r 100000 -n {req:,}` on the source",
        "",
        f"Each round: a fresh source loaded from `{big}.rdb`, full copy to a fresh destination",
        "(shardsync until its record shows `incremental` with lag_bytes 0; a native replica until",
        "its link is up), then the load. **Probe lag**: every 50 ms a probe SETs a key on the",
        "source and polls the destination every ms until the value is there, for shardsync and",
        "the native replica alike (end-to-end: source write → readable on the destination).",
        "**NDJSON lag_ms**: shardsync's own heartbeat lag, one value per record (1 s), during the",
        "load. **Catch-up**: after redis-benchmark exits, a sentinel key is written on the source;",
        "seconds until the destination has it (everything before it applied, the stream is in",
        "order). Rounds alternate shardsync, native.",
        "",
        head,
        f"* load average {li0} before, {li1} after; {incr_runs} rounds each",
        "",
        "| | shardsync | native replica |",
        "|---|---|---|",
        f"| load duration, s | {fig(vals('ss-incr', 'load_s'), '{:.1f}')} | {fig(vals('native-incr', 'load_s'), '{:.1f}')} |",
        f"| write rate the source sustained (3 tests), requests/s | {fig(total_rate('ss-incr'), '{:,.0f}')} | {fig(total_rate('native-incr'), '{:,.0f}')} |",
    ]
    for t in ("SET", "LPUSH", "HSET"):
        lines.append(f"| … {t} requests/s | {fig(vals('ss-incr', 'rps_' + t), '{:,.0f}')} | {fig(vals('native-incr', 'rps_' + t), '{:,.0f}')} |")
    lines += [
        f"| catch-up after the load, s | {fig(vals('ss-incr', 'catchup_s'), '{:.3f}')} | {fig(vals('native-incr', 'catchup_s'), '{:.3f}')} |",
        f"| CPU during the load: shardsync / the replica, s | {fig(vals('ss-incr', 'cpu_tool_s'))} | {fig(vals('native-incr', 'cpu_tool_s'))} |",
        f"| CPU during the load: the destination applying shardsync's writes, s | {fig(vals('ss-incr', 'cpu_dest_s'))} | (the replica is the destination) |",
        f"| shardsync applied ops/s during the load (NDJSON) | {fig(vals('ss-incr', 'ndjson_ops'), '{:,.0f}')} | |",
        f"| dropped by the source's output-buffer limit (runs) | {int(sum(vals('ss-incr', 'dropped')))} of {len(vals('ss-incr', 'load_s'))} | {int(sum(vals('native-incr', 'dropped')))} of {len(vals('native-incr', 'load_s'))} |",
        f"| records in reconnecting/failed state or with errors | {int(sum(vals('ss-incr', 'trouble')))} | |",
        "",
        "Lag during the load, all rounds pooled:",
        "",
        "| lag, ms | samples | p50 | p95 | p99 | max |",
        "|---|---|---|---|---|---|",
        lag_row("shardsync, probe", ss_p),
        lag_row("native replica, probe", nat_p),
        lag_row("shardsync, NDJSON lag_ms", ss_n),
        "",
    ]
    bl = vals("ss-incr", "ndjson_lag_bytes")
    if bl:
        lines.append(f"shardsync NDJSON lag_bytes during the load: p50 {pct(bl, 50):,.0f}, p99 {pct(bl, 99):,.0f}, max {max(bl):,.0f} "
                     "(replication bytes received from the source but not yet acknowledged by the destination).")
    if ss_p and nat_p:
        lines.append(f"Probe lag p99 shardsync / native: {pct(ss_p, 99) / max(pct(nat_p, 99), 0.01):.1f}× (target: ≤ 2×; issue 3: p99 < 50 ms).")
    sections["sync-incremental"] = lines

md = open(md_path).read() if os.path.exists(md_path) else "# Benchmarks\n"
for name, lines in sections.items():
    section = f"<!-- bench:{name} -->\n" + "\n".join(lines) + f"\n<!-- /bench:{name} -->\n"
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->\n", re.S)
    md = pattern.sub(lambda _m: section, md) if pattern.search(md) else md.rstrip("\n") + "\n\n" + section
open(md_path, "w").write(md)
print(f"bench-sync: wrote {', '.join(sections)} into {md_path}")
PY
