# Sourced by the scripts beside it: start and stop a throwaway redis-server.
#
#   redis_start DIR [redis-server options...]   sets REDIS_PORT and REDIS_PID
#   redis_cli ARGS...                            redis-cli against that server
#   redis_stop                                   shuts it down (SHUTDOWN NOSAVE, then kill)
#
# The server binds 127.0.0.1 on a free port, keeps its files and log in DIR, and
# never saves on its own (save ""): the callers SAVE when they mean to. It waits up to
# REDIS_READY_TRIES × 0.1 s (default 100) for PONG: more for a big dump.rdb to load. Callers
# put `trap redis_stop EXIT` (or their own cleanup calling it) so that a failure
# never leaves a server behind. REDIS_SERVER / REDIS_CLI pick other binaries.

REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_CLI=${REDIS_CLI:-redis-cli}
REDIS_PORT=
REDIS_PID=

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

redis_start() {
  local dir=$1; shift
  local attempt i
  # Another process can take the port between free_port and the bind: try again.
  for attempt in 1 2 3 4 5; do
    REDIS_PORT=$(free_port)
    "$REDIS_SERVER" --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$dir" \
      --dbfilename dump.rdb --save "" --appendonly no --daemonize no \
      --logfile "$dir/redis.log" "$@" &
    REDIS_PID=$!
    for i in $(seq 1 "${REDIS_READY_TRIES:-100}"); do
      if ! kill -0 "$REDIS_PID" 2>/dev/null; then break; fi
      if [ "$("$REDIS_CLI" -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; then
        return 0
      fi
      sleep 0.1
    done
    if kill -0 "$REDIS_PID" 2>/dev/null; then kill "$REDIS_PID" 2>/dev/null || true; fi
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=
    echo "redis-server did not start on port $REDIS_PORT (attempt $attempt); log: $dir/redis.log" >&2
    tail -n 5 "$dir/redis.log" >&2 || true
  done
  return 1
}

redis_cli() {
  "$REDIS_CLI" -h 127.0.0.1 -p "$REDIS_PORT" "$@"
}

redis_stop() {
  [ -n "${REDIS_PID:-}" ] || return 0
  redis_cli shutdown nosave >/dev/null 2>&1 || true
  local i
  for i in $(seq 1 50); do
    kill -0 "$REDIS_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$REDIS_PID" 2>/dev/null; then kill -9 "$REDIS_PID" 2>/dev/null || true; fi
  wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=
}
