# Sourced by the bench scripts after they set `bench` (their name): the helpers
# they all need the same way.
#
#   say MESSAGE / die MESSAGE   progress on stdout / a fatal error on stderr, prefixed "$bench: "
#   dataset_name KIND N         the file stem gen_dataset writes: mixed 1000000 → mixed-1m,
#                               with -s<SEED> appended when SEED is set and not 42
#   commit_id                   HEAD's short hash, +dirty when the tree has changes
#   write_section NAME FILE     FILE as the BENCHMARKS.md section NAME (replaced, or appended)
#   cpu_ticks PID               user+system CPU of a running process, in clock ticks (getconf CLK_TCK)
#   one_source_task FILE NAME DIR SP DP  a task file: one source on 127.0.0.1:SP into 127.0.0.1:DP,
#                               state in DIR/state
#   bench_work NAME             a temporary directory in $work (removed on exit), an empty
#                               $work/results.tsv in $results, and $pids: processes killed on exit

say() { printf '%s: %s\n' "$bench" "$*"; }
die() { printf '%s: error: %s\n' "$bench" "$*" >&2; exit 1; }

dataset_name() {
  local kind=$1 n=$2 size
  if [ $((n % 1000000)) -eq 0 ]; then size="$((n / 1000000))m"
  elif [ $((n % 1000)) -eq 0 ]; then size="$((n / 1000))k"
  else size=$n; fi
  if [ "${SEED:-42}" = 42 ]; then echo "$kind-$size"; else echo "$kind-$size-s$SEED"; fi
}

commit_id() {
  echo "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo '+dirty')"
}

# write_section NAME FILE — puts FILE's text in $BENCHMARKS_MD between
# <!-- bench:NAME --> and <!-- /bench:NAME -->, replacing what was there (or
# appending the section).
write_section() {
  python3 - "$1" "$2" "$BENCHMARKS_MD" <<'PY'
import re, sys
name, src, md = sys.argv[1:]
body = open(src).read().rstrip("\n")
section = "<!-- bench:%s -->\n%s\n<!-- /bench:%s -->" % (name, body, name)
pattern = re.compile(r"<!-- bench:%s -->.*?<!-- /bench:%s -->" % (re.escape(name), re.escape(name)), re.S)
text = open(md).read()
text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
open(md, "w").write(text)
PY
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

bench_work() {
  work=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  results=$work/results.tsv
  : >"$results"
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # Let the killed servers go before their directories do.
  sleep 0.3
  rm -rf "$work"
}

one_source_task() {
  cat >"$1" <<T
name = "$2"
state_dir = "$3/state"
[[source]]
name = "s1"
addr = "127.0.0.1:$4"
[destination]
addr = "127.0.0.1:$5"
T
}
