#!/usr/bin/env bash
# make-sample-rdb.sh OUT — writes a small RDB holding every common type and
# encoding, produced by a real redis-server (the system one, or $REDIS_SERVER).
#
# Used by `make demo` (assets/sample.rdb) and handy for eyeballing the parser.
# What it holds, with the encoding Redis 7.0 picks for each:
#   DB 0  strings: int-encoded (small, negative, 64-bit), short, empty, long
#         compressible (LZF), long random; a binary key and value
#         lists: small (one listpack node), 1000 elements (quicklist, several nodes)
#         sets: intset, hashtable (strings), large intset turned hashtable (600 ints)
#         hashes: small (listpack), 600 fields (hashtable), a long value (hashtable)
#         zsets: small (listpack, incl. inf/-inf and fractional scores), 200 members (skiplist)
#         a stream with two consumer groups, consumers, pending and acked entries and a
#         deleted entry; an emptied stream (kept, length 0)
#         TTLs: relative (EXPIRE/PEXPIRE) and absolute far-future (PEXPIREAT 2100-01-01)
#   DB 3  a few keys of several types, one with a TTL
# Redis 7.0 has no listpack-encoded sets (7.2+), so none is in here.
set -euo pipefail

out=${1:?usage: make-sample-rdb.sh OUT}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/redis-lib.sh
. "$here/redis-lib.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/shardsync-sample.XXXXXX")
cleanup() { redis_stop; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

redis_start "$work"
echo "make-sample-rdb: $("$REDIS_SERVER" --version | awk '{print $3}') on 127.0.0.1:$REDIS_PORT"

# Commands go through redis-cli's stdin: one command a line, with redis-cli's
# quoting ("\x00" escapes in double quotes), so binary data needs no helper.
far=4102444800000 # 2100-01-01T00:00:00Z in ms: never expires during a test
{
  # strings
  echo 'SET str:int 12345'
  echo 'SET str:neg -42'
  echo 'SET str:int64 9223372036854775807'
  echo 'SET str:short hello'
  echo 'SET str:empty ""'
  printf 'SET str:long:compressible %s\n' "$(printf 'shardsync-%.0s' $(seq 1 400))"
  # sha256 chain: looks random (LZF finds nothing), yet the same every run
  printf 'SET str:long:random %s\n' "$(for i in $(seq 1 10); do printf '%s' "$i" | sha256sum | cut -c1-64; done | tr -d '\n')"
  echo 'SET "bin:\x00\xff\r\n key" "\x00\x01\x02\xfe\xff value"'
  echo 'SET "str:utf8:é✓" "naïve ✓"'
  # lists
  echo 'RPUSH list:small a b c 1 2 3'
  for chunk in 0 1 2 3 4; do
    line='RPUSH list:big'
    for i in $(seq $((chunk * 200)) $((chunk * 200 + 199))); do line+=" element-$i-padding-padding"; done
    echo "$line"
  done
  # sets
  echo 'SADD set:intset 1 2 3 100 -5 65536 4294967296'
  echo 'SADD set:strings apple banana cherry "with space"'
  line='SADD set:bigints'
  for i in $(seq 1 600); do line+=" $i"; done
  echo "$line"
  # hashes
  echo 'HSET hash:small name shardsync lang rust n 7'
  line='HSET hash:big'
  for i in $(seq 1 600); do line+=" field-$i value-$i"; done
  echo "$line"
  printf 'HSET hash:longvalue short x long %s\n' "$(printf 'v%.0s' $(seq 1 100))"
  # zsets
  echo 'ZADD zset:small 1 one 2.5 two-and-a-half -3 minus-three inf plus-inf -inf minus-inf'
  line='ZADD zset:big'
  for i in $(seq 1 200); do line+=" $i.25 member-$i"; done
  echo "$line"
  # streams: explicit IDs keep the file stable from run to run
  for i in $(seq 1 10); do echo "XADD stream:orders 1700000000000-$i item $i qty $((i * 3))"; done
  echo 'XGROUP CREATE stream:orders billing 0'
  echo 'XGROUP CREATE stream:orders shipping $'
  echo 'XREADGROUP GROUP billing alice COUNT 4 STREAMS stream:orders >'
  echo 'XREADGROUP GROUP billing bob COUNT 2 STREAMS stream:orders >'
  echo 'XACK stream:orders billing 1700000000000-1 1700000000000-2'
  echo 'XGROUP CREATECONSUMER stream:orders shipping carol'
  echo 'XDEL stream:orders 1700000000000-10'
  echo 'XADD stream:emptied 1-1 k v'
  echo 'XDEL stream:emptied 1-1'
  # TTLs
  echo 'SET ttl:str volatile EX 86400'
  echo 'RPUSH ttl:list x y z'
  echo 'PEXPIRE ttl:list 90000000'
  echo "HSET ttl:hash f v"
  echo "PEXPIREAT ttl:hash $far"
  echo "SET ttl:abs fixed PXAT $far"
  # DB 3
  echo 'SELECT 3'
  echo 'SET db3:str "in db 3"'
  echo 'SADD db3:set x y z'
  echo 'ZADD db3:zset 1 a 2 b'
  echo "SET db3:ttl soon-ish PXAT $far"
  echo 'SELECT 0'
} | redis_cli >"$work/cli.out"

if grep -q '^(error)\|^ERR\|^WRONGTYPE' "$work/cli.out"; then
  echo "make-sample-rdb: redis-cli reported errors:" >&2
  grep '^(error)\|^ERR\|^WRONGTYPE' "$work/cli.out" >&2
  exit 1
fi

echo "make-sample-rdb: db0 $(redis_cli -n 0 dbsize) keys, db3 $(redis_cli -n 3 dbsize) keys"
for k in list:big set:bigints set:intset hash:small hash:big zset:small zset:big str:int str:long:compressible; do
  printf '  %-24s %s\n' "$k" "$(redis_cli object encoding "$k")"
done

redis_cli save >/dev/null
mkdir -p "$(dirname "$out")"
cp "$work/dump.rdb" "$out.tmp"
mv "$out.tmp" "$out"
echo "make-sample-rdb: wrote $out ($(stat -c %s "$out") bytes)"
