#!/usr/bin/env bash
# User-space instructions per pass-through GET, counted by valgrind's callgrind
# (instruction counts do not depend on what else the machine is doing, unlike
# timings on a shared 2-core box). Each proxy runs under callgrind twice,
# serving N1 and then N2 GETs from CLIENTS redis-benchmark clients;
#
#     (Ir(N2) - Ir(N1)) / (N2 - N1)
#
# is the cost of one request, start-up and shutdown cancelled out. Larder runs
# with `threads: 1` and one backend connection; nutcracker the same way.
#
#   tests/bench/callgrind/passthrough_cost.sh                  # build-bench/larder
#   LARDER_BIN=/path/to/larder tests/bench/callgrind/passthrough_cost.sh
#
# Environment (defaults in brackets): LARDER_BIN [<repo>/build-bench/larder],
# N1 [20000], N2 [60000], CLIENTS [10], PIPELINES ["1 16"], NUTCRACKER [1]
# (0: Larder only), BASE_PORT [17800]. About 2-4 minutes. Loopback only; every
# process started here is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
LARDER_BIN=${LARDER_BIN:-$ROOT/build-bench/larder}
N1=${N1:-20000}
N2=${N2:-60000}
CLIENTS=${CLIENTS:-10}
PIPELINES=${PIPELINES:-"1 16"}
NUTCRACKER=${NUTCRACKER:-1}
BASE_PORT=${BASE_PORT:-17800}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
for tool in valgrind redis-server redis-benchmark redis-cli timeout ss; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
[[ $NUTCRACKER == 0 ]] || command -v nutcracker >/dev/null || die "nutcracker not found"
[[ -x $LARDER_BIN ]] || die "no larder binary at $LARDER_BIN"

WORK="$(mktemp -d /tmp/larder-callgrind.XXXXXX)"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

NEXT_PORT=$BASE_PORT
alloc_port() {
  local p
  for _ in $(seq 500); do
    p=$NEXT_PORT; NEXT_PORT=$((NEXT_PORT + 1))
    if [[ -z $(ss -Htan "( sport = :$p )" 2>/dev/null) ]]; then PORT=$p; return 0; fi
  done
  die "no free port from $BASE_PORT"
}

wait_answer() {  # port want command...: up to 120 s (valgrind starts slowly)
  local port=$1 want=$2; shift 2
  for _ in $(seq 1200); do
    [[ $(timeout 5 redis-cli -p "$port" "$@" 2>/dev/null) == "$want" ]] && return 0
    sleep 0.1
  done
  return 1
}

alloc_port; REDIS_PORT=$PORT
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
  --daemonize no --loglevel warning >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_answer "$REDIS_PORT" PONG ping || die "redis-server did not start"
redis-cli -p "$REDIS_PORT" set key:__rand_int__ xxx >/dev/null  # redis-benchmark's GET key

# Starts target $1 under callgrind on a fresh port; sets PROXY_PORT, PROXY_PID, OUT.
start_under_callgrind() {
  local target=$1
  alloc_port; PROXY_PORT=$PORT
  OUT="$WORK/callgrind.$target.$RANDOM"
  case $target in
    larder)
      cat >"$WORK/larder.yaml" <<EOF
listen: 127.0.0.1:$PROXY_PORT
threads: 1
admin: ""
redis:
  address: 127.0.0.1:$REDIS_PORT
  connections_per_worker: 1
EOF
      valgrind --tool=callgrind --callgrind-out-file="$OUT" "$LARDER_BIN" \
        --config "$WORK/larder.yaml" --log-level warn >"$WORK/larder.log" 2>&1 &
      ;;
    nutcracker)
      alloc_port; local stats=$PORT
      cat >"$WORK/nutcracker.yml" <<EOF
pool:
  listen: 127.0.0.1:$PROXY_PORT
  hash: fnv1a_64
  distribution: ketama
  redis: true
  servers:
   - 127.0.0.1:$REDIS_PORT:1
EOF
      valgrind --tool=callgrind --callgrind-out-file="$OUT" nutcracker -c "$WORK/nutcracker.yml" \
        -s "$stats" -a 127.0.0.1 -v 1 -o "$WORK/nutcracker.log" >"$WORK/nc.out" 2>&1 &
      ;;
  esac
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  wait_answer "$PROXY_PORT" xxx get key:__rand_int__ || die "$target did not start under valgrind"
}

# Instructions of one run of $3 GETs at pipeline $2 through target $1.
instructions() {
  local target=$1 p=$2 n=$3
  start_under_callgrind "$target"
  timeout 600 redis-benchmark -p "$PROXY_PORT" -c "$CLIENTS" -n "$n" -P "$p" -t get -q \
    >"$WORK/bench.out" 2>&1 || die "redis-benchmark through $target failed: $(tail -3 "$WORK/bench.out")"
  kill -TERM "$PROXY_PID"
  wait "$PROXY_PID" 2>/dev/null || true
  local ir
  ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$OUT")
  [[ -n $ir ]] || die "no callgrind summary in $OUT"
  echo "$ir"
}

TARGETS=(larder)
[[ $NUTCRACKER == 0 ]] || TARGETS+=(nutcracker)
echo "# instructions per pass-through GET (callgrind Ir), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "# $LARDER_BIN; redis-benchmark -t get -c $CLIENTS; (Ir($N2) - Ir($N1)) / $((N2 - N1))"
printf '%-12s %3s %14s %14s %12s\n' target P "Ir($N1)" "Ir($N2)" "Ir/request"
for target in "${TARGETS[@]}"; do
  for p in $PIPELINES; do
    a=$(instructions "$target" "$p" "$N1")
    b=$(instructions "$target" "$p" "$N2")
    printf '%-12s %3s %14s %14s %12.0f\n' "$target" "$p" "$a" "$b" \
      "$(awk -v a="$a" -v b="$b" -v n=$((N2 - N1)) 'BEGIN { print (b - a) / n }')"
  done
done
