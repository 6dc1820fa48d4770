# Sourced by the bench scripts after they set `bench` (their name): the helpers
# they all need the same way.
#
#   say MESSAGE / die MESSAGE   progress on stdout / a fatal error on stderr, prefixed "$bench: "
#   dataset_name KIND N         the file stem gen_dataset writes: mixed 1000000 → mixed-1m,
#                               with -s<SEED> appended when SEED is set and not 42
#   commit_id                   HEAD's short hash, +dirty when the tree has changes
#   write_section NAME FILE     FILE as the BENCHMARKS.md section NAME (replaced, or appended)

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
