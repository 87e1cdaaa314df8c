#!/usr/bin/env bash
# Instructions per request of Larder (callgrind) for a pass-through SET and a
# `write: behind` SET, and Redis' own cost of the write script's parts
# (commandstats). docs/benchmarks.md, "Write path (issue #14)".
#
#   tests/bench/write_behind/callgrind.sh [larder binary]   (default build/larder)
#
# Starts its own redis-server and PostgreSQL 15 on free 127.0.0.1 ports in a
# temp dir, runs Larder (one worker thread) under valgrind --tool=callgrind
# with instrumentation switched on only around N requests (10 redis-benchmark
# clients, after a warm-up), and prints PROGRAM TOTALS / N. All threads are
# counted: the behind figure includes the flusher's share of each write.
# Environment: N [10000]  PG_BIN [/usr/lib/postgresql/15/bin]  KEEP_WORK [0]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
BIN=${1:-$ROOT/build/larder}
N=${N:-10000}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
WORK=$(mktemp -d /tmp/larder-callgrind.XXXXXX)
chmod 755 "$WORK"
PIDS=()
as_pg=()
[[ $(id -u) != 0 ]] || as_pg=(runuser -u postgres --)
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
  [[ ${KEEP_WORK:-0} == 1 ]] || rm -rf "$WORK"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(port); PP=$(port); LP=$(port)

redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
  --daemonize no --loglevel warning >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
mkdir -p "$WORK/pg"; [[ ${#as_pg[@]} == 0 ]] || chown postgres "$WORK/pg"
"${as_pg[@]}" "$PG_BIN/initdb" -D "$WORK/pg" -U postgres -A trust --no-sync >/dev/null
"${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w start \
  -o "-c listen_addresses=127.0.0.1 -p $PP -k $WORK/pg -c fsync=off" >/dev/null
psql -h 127.0.0.1 -p "$PP" -U postgres -qAtc "CREATE TABLE items_b (id text PRIMARY KEY, v text)"
for _ in $(seq 50); do [[ $(redis-cli -p "$RP" ping 2>/dev/null) == PONG ]] && break; sleep 0.1; done

cat >"$WORK/larder.yaml" <<EOF
listen: 127.0.0.1:$LP
threads: 1
redis: {address: 127.0.0.1:$RP}
postgres: {dsn: "host=127.0.0.1 port=$PP dbname=postgres user=postgres", pool_size: 2}
write_behind: {flush_interval: 50ms, max_batch: 1000}
keyspaces:
  wb: {key: "wb:{id}", table: public.items_b, shape: string, columns: [v], ttl: 1h, write: behind}
EOF

measure() {  # key prefix
  local out="$WORK/cg.$1"
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out.%p" \
    "$BIN" --config "$WORK/larder.yaml" --log-level warn >"$WORK/larder-$1.log" 2>&1 &
  local vp=$!
  for _ in $(seq 300); do [[ $(redis-cli -p "$LP" ping 2>/dev/null) == PONG ]] && break; sleep 0.2; done
  redis-benchmark -p "$LP" -c 10 -n 2000 -r 100000 -q SET "$1:__rand_int__" v123456789abcdef >/dev/null 2>&1
  sleep 1
  callgrind_control -i on "$vp" >/dev/null
  redis-benchmark -p "$LP" -c 10 -n "$N" -r 100000 -q SET "$1:__rand_int__" v123456789abcdef >/dev/null 2>&1
  callgrind_control -i off "$vp" >/dev/null
  callgrind_control -d "$vp" >/dev/null
  sleep 1
  kill "$vp"; wait "$vp" 2>/dev/null || true
  local total
  total=$(callgrind_annotate "$out.$vp.1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  echo "$1: $((total / N)) instructions per SET ($N SETs)"
}
measure pt   # no keyspace: pass-through
measure wb   # write: behind

# Redis' side: usec per call of the write script and of its parts.
script_cost() {  # label lua
  redis-cli -p "$RP" config resetstat >/dev/null
  local sha; sha=$(redis-cli -p "$RP" script load "$2")
  redis-benchmark -p "$RP" -c 50 -n 50000 -r 100000 -q EVALSHA "$sha" 3 wb:__rand_int__ \
    __larder:pending:wb:__rand_int__ __larder:q:wb b "" 1000000 set 0 3600000 6 v v123456789abcdef "" 0 d "" \
    >/dev/null 2>&1
  echo "$1: $(redis-cli -p "$RP" info commandstats | tr -d '\r' | awk -F'[:,=]' '$1 == "cmdstat_evalsha" { print $7 }') us per EVALSHA"
}
script_cost "return 1" "return 1"
script_cost "SET PX + XADD + HSET, flat" "redis.call('SET', KEYS[1], ARGV[9], 'PX', 3600000) local id = redis.call('XADD', KEYS[3], '*', 'k', KEYS[1], 'f:v', ARGV[9]) redis.call('HSET', KEYS[2], '_id', id, 'f:v', ARGV[9]) return 1"
LUA=$(python3 - "$ROOT/src/cache/write_scripts.cpp" <<'PYEOF'
import sys
s = open(sys.argv[1]).read()
a = s.index('constexpr const char* kWriteLua = R"lua(') + len('constexpr const char* kWriteLua = R"lua(')
print(s[a:s.index(')lua";', a)])
PYEOF
)
script_cost "Larder's write script, one write per call" "$LUA"
redis-cli -p "$RP" info commandstats | tr -d '\r' | grep -E "cmdstat_(set|xadd|hset|persist|xlen):" \
  | awk -F'[:,=]' '{ print "  inside: " $1 " " $7 " us" }'
