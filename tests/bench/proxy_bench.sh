#!/usr/bin/env bash
# Pass-through benchmark: redis-benchmark GET/SET against direct Redis,
# twemproxy (nutcracker) and Larder, all on one redis-server, then the memory
# cost of idle client connections. Results: docs/benchmarks.md.
#
#   tests/bench/proxy_bench.sh                    # builds build-bench/larder, runs everything
#   LARDER_REV=HEAD tests/bench/proxy_bench.sh    # benchmarks a commit, not the work tree
#
# About 3-4 minutes with the defaults on 2 idle cores (longer on a busy machine).
#
# Environment (defaults in brackets):
#   N_P1 [100000]  N_P16 [500000]    requests per redis-benchmark test at -P 1 / -P 16
#   CLIENTS [50]                     redis-benchmark -c
#   ROUNDS [7]                       rounds; each runs every contender once, the
#                                    order rotating/reversing from round to round
#   PIPELINES ["1 16"]
#   LARDER_VARIANTS ["2x2 1x1"]      Larder instances as THREADSxCONNECTIONS_PER_WORKER, all
#                                    on the same Redis; the first is also used for the idle
#                                    test. Settings sweep: "2x2 1x1 1x2 1x4 2x1 2x4"
#   IDLE_COUNTS ["1000 10000"]       idle connections per target ("" skips the idle test)
#   SKIP_BENCH [0]                   1: idle test only
#   BUILD [1]                        0: use LARDER_BIN as it is
#   LARDER_BIN [<repo>/build-bench/larder]
#   LARDER_REV                       e.g. HEAD: benchmark this commit instead of the work
#                                    tree (git archive + Release build in build-bench-rev-COMMIT/)
#   BASE_PORT [17400]                first port tried; busy ports are skipped
#   RESULTS_FILE                     also copy the raw results (round target P metric value) here
#   KEEP_WORK [0]                    1: keep the temp dir (configs, logs)
#   BENCH_NICE [0]                   nice value for every process of the benchmark (servers,
#                                    proxies, redis-benchmark), e.g. -10 (root) so that other
#                                    work on a shared machine disturbs the measurement less
#
# Everything listens on 127.0.0.1 only; every loop and wait is bounded; all
# processes started here are stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HELPER="$ROOT/tests/bench/proxy_bench_helper.py"
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

N_P1=${N_P1:-100000}
N_P16=${N_P16:-500000}
CLIENTS=${CLIENTS:-50}
ROUNDS=${ROUNDS:-7}
PIPELINES=${PIPELINES:-"1 16"}
LARDER_VARIANTS=${LARDER_VARIANTS:-"2x2 1x1"}
IDLE_COUNTS=${IDLE_COUNTS-"1000 10000"}
SKIP_BENCH=${SKIP_BENCH:-0}
BUILD=${BUILD:-1}
LARDER_BIN=${LARDER_BIN:-$ROOT/build-bench/larder}
LARDER_REV=${LARDER_REV:-}
BASE_PORT=${BASE_PORT:-17400}
KEEP_WORK=${KEEP_WORK:-0}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-300}   # seconds, per redis-benchmark invocation
BENCH_NICE=${BENCH_NICE:-0}
NICE=(nice -n "$BENCH_NICE")

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for tool in redis-server redis-benchmark redis-cli nutcracker ss timeout; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install redis-server redis-tools nutcracker iproute2)"
done

# ---------------------------------------------------------------- clean-up
WORK="$(mktemp -d /tmp/larder-proxy-bench.XXXXXX)"
declare -a PIDS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  touch "$WORK/release" 2>/dev/null || true   # lets an idle opener go
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ $KEEP_WORK == 1 ]]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_pid() {  # stop one process we started and drop it from PIDS
  local pid=$1 i
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local keep=()
  for i in "${PIDS[@]}"; do [[ $i == "$pid" ]] || keep+=("$i"); done
  PIDS=("${keep[@]}")
}

# Runs a command in the background and waits for it: a trapped INT/TERM then
# interrupts `wait` at once (bash would otherwise let a foreground child finish
# first), and cleanup() stops the child. Returns the command's status.
run_child() {
  "$@" &
  local child=$! rc=0
  PIDS+=("$child")
  wait "$child" || rc=$?
  local keep=() i
  for i in "${PIDS[@]}"; do [[ $i == "$child" ]] || keep+=("$i"); done
  PIDS=("${keep[@]}")
  return "$rc"
}

# ---------------------------------------------------------------- limits
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
log "open-file limit: $NOFILE"

# ---------------------------------------------------------------- build
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=""
[[ -z $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]] || DIRTY=" + uncommitted changes"
if [[ -n $LARDER_REV ]]; then
  # Build a committed revision, untouched by work in progress in the tree.
  COMMIT=$(git -C "$ROOT" rev-parse --short "$LARDER_REV^{commit}") || die "unknown revision $LARDER_REV"
  DIRTY=""
  # Kept (git-ignored) so that a second run of the same commit builds nothing.
  REV_DIR="$ROOT/build-bench-rev-$COMMIT"
  SRC="$REV_DIR/src"; BUILD_DIR="$REV_DIR/build"; LARDER_BIN="$BUILD_DIR/larder"; BUILD=1
  if [[ ! -f $SRC/CMakeLists.txt ]]; then
    rm -rf "$SRC"; mkdir -p "$SRC"
    git -C "$ROOT" archive "$COMMIT" | tar -x -C "$SRC"
  fi
  log "building larder $COMMIT (Release) in $BUILD_DIR"
else
  SRC="$ROOT"; BUILD_DIR="$ROOT/build-bench"
  [[ $BUILD != 1 ]] || log "building larder (Release) in $BUILD_DIR"
fi
if [[ $BUILD == 1 ]]; then
  run_child cmake -S "$SRC" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >"$WORK/cmake.log" 2>&1 \
    || { tail -n 30 "$WORK/cmake.log" >&2; die "cmake configure failed"; }
  run_child cmake --build "$BUILD_DIR" -j2 --target larder >"$WORK/build.log" 2>&1 \
    || { tail -n 30 "$WORK/build.log" >&2; die "build failed"; }
else
  DIRTY=" (prebuilt binary $LARDER_BIN)"
fi
[[ -x $LARDER_BIN ]] || die "no larder binary at $LARDER_BIN"

# ---------------------------------------------------------------- ports
NEXT_PORT=$BASE_PORT
PORT=""
alloc_port() {  # sets PORT to a port nobody uses (and we have not handed out)
  local p
  for _ in $(seq 500); do
    p=$NEXT_PORT; NEXT_PORT=$((NEXT_PORT + 1))
    if [[ -z $(ss -Htan "( sport = :$p )" 2>/dev/null) ]]; then PORT=$p; return 0; fi
  done
  die "no free port from $BASE_PORT"
}

wait_ready() {  # port [command...]: until redis-cli answers as expected (10 s max)
  local port=$1; shift
  local want=$1; shift
  for _ in $(seq 100); do
    if [[ $(timeout 2 redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null) == "$want" ]]; then return 0; fi
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------- processes
REDIS_PORT=""; REDIS_PID=""
start_redis() {
  alloc_port; REDIS_PORT=$PORT
  mkdir -p "$WORK/redis"
  "${NICE[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$WORK/redis" --daemonize no --maxclients 15000 --loglevel warning \
    --logfile "$WORK/redis/redis.log" &
  REDIS_PID=$!; PIDS+=("$REDIS_PID")
  wait_ready "$REDIS_PORT" PONG ping || die "redis-server did not start (see $WORK/redis/redis.log)"
}

TWEM_PORT=""; TWEM_PID=""
start_twemproxy() {
  alloc_port; TWEM_PORT=$PORT
  alloc_port; local stats_port=$PORT
  cat >"$WORK/nutcracker.yml" <<EOF
pool:
  listen: 127.0.0.1:$TWEM_PORT
  hash: fnv1a_64
  distribution: ketama
  redis: true
  servers:
   - 127.0.0.1:$REDIS_PORT:1
EOF
  "${NICE[@]}" nutcracker -c "$WORK/nutcracker.yml" -s "$stats_port" -a 127.0.0.1 -v 4 \
    -o "$WORK/nutcracker.log" -p "$WORK/nutcracker.pid" &
  TWEM_PID=$!; PIDS+=("$TWEM_PID")
  wait_ready "$TWEM_PORT" OK set __bench_probe 1 || die "nutcracker did not start (see $WORK/nutcracker.log)"
}

declare -A LARDER_PORT=() LARDER_PID=()
start_larder() {  # variant "TxC"
  local v=$1 threads=${1%x*} cpw=${1#*x}
  [[ $threads =~ ^[0-9]+$ && $cpw =~ ^[0-9]+$ ]] || die "bad LARDER_VARIANTS entry '$v' (want THREADSxCONNS)"
  alloc_port; local port=$PORT
  cat >"$WORK/larder-$v.yaml" <<EOF
listen: 127.0.0.1:$port
threads: $threads
redis:
  address: 127.0.0.1:$REDIS_PORT
  connections_per_worker: $cpw
limits:
  maxclients: 20000
EOF
  "${NICE[@]}" "$LARDER_BIN" --config "$WORK/larder-$v.yaml" --log-level warn >"$WORK/larder-$v.log" 2>&1 &
  LARDER_PID[$v]=$!; PIDS+=("$!"); LARDER_PORT[$v]=$port
  wait_ready "$port" OK set __bench_probe 1 || die "larder $v did not start (see $WORK/larder-$v.log)"
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# ---------------------------------------------------------------- throughput
RESULTS="$WORK/results.tsv"
: >"$RESULTS"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime+stime, all threads

run_bench() {  # round target port pid P
  local round=$1 target=$2 port=$3 pid=$4 p=$5 n=$N_P1
  [[ $p == 1 ]] || n=$N_P16
  local out="$WORK/bench-$round-$target-P$p.csv"
  local t0 r0
  t0=$(cpu_ticks "$pid"); r0=$(cpu_ticks "$REDIS_PID")
  run_child timeout "$BENCH_TIMEOUT" "${NICE[@]}" redis-benchmark -h 127.0.0.1 -p "$port" \
    -t get,set -c "$CLIENTS" -n "$n" -P "$p" --csv >"$out" 2>"$out.err" \
    || die "redis-benchmark against $target P$p failed or timed out: $(tail -n 3 "$out.err")"
  local t1 r1
  t1=$(cpu_ticks "$pid"); r1=$(cpu_ticks "$REDIS_PID")
  # CPU microseconds per request (SET and GET together: 2n requests)
  local cpu_proxy cpu_redis
  cpu_proxy=$(awk -v a="$t0" -v b="$t1" -v n="$n" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", (b - a) * 1e6 / hz / (2 * n) }')
  cpu_redis=$(awk -v a="$r0" -v b="$r1" -v n="$n" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", (b - a) * 1e6 / hz / (2 * n) }')
  local get set
  get=$(awk -F'"' '$2=="GET" {print $4}' "$out")
  set=$(awk -F'"' '$2=="SET" {print $4}' "$out")
  [[ -n $get && -n $set ]] || die "could not parse redis-benchmark output for $target P$p: $(cat "$out")"
  {
    printf '%s %s %s GET %s\n' "$round" "$target" "$p" "$get"
    printf '%s %s %s SET %s\n' "$round" "$target" "$p" "$set"
    [[ $target == direct ]] || printf '%s %s %s cpu_proxy %s\n' "$round" "$target" "$p" "$cpu_proxy"
    printf '%s %s %s cpu_redis %s\n' "$round" "$target" "$p" "$cpu_redis"
  } >>"$RESULTS"
  log "round $round  $(printf '%-12s' "$target") P$(printf '%-3s' "$p") GET $(printf '%10s' "$get")  SET $(printf '%10s' "$set")  CPU us/req proxy $cpu_proxy redis $cpu_redis"
}

port_of() {
  case $1 in
    direct) echo "$REDIS_PORT" ;;
    twemproxy) echo "$TWEM_PORT" ;;
    larder-*) echo "${LARDER_PORT[${1#larder-t}]}" ;;
  esac
}
pid_of() {
  case $1 in
    direct) echo "$REDIS_PID" ;;
    twemproxy) echo "$TWEM_PID" ;;
    larder-*) echo "${LARDER_PID[${1#larder-t}]}" ;;
  esac
}
CLK_TCK=$(getconf CLK_TCK)

read -r -a VARIANTS <<<"$LARDER_VARIANTS"
((${#VARIANTS[@]} > 0)) || die "LARDER_VARIANTS is empty"
MAIN_VARIANT=${VARIANTS[0]}

echo "# Larder pass-through benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $COMMIT$DIRTY"
echo "# $(nproc) cores; $(redis-server --version | awk '{print $3}'), nutcracker $(nutcracker -V 2>&1 | awk '{print $NF}' | head -n 1)"
echo "# redis-benchmark -t get,set -c $CLIENTS -n $N_P1 (P1) / $N_P16 (P16); rounds: $ROUNDS"
echo "# larder-tTxC = threads T, redis.connections_per_worker C; nice $BENCH_NICE; load before start: $(cut -d' ' -f1-3 /proc/loadavg)"

if [[ $SKIP_BENCH != 1 ]]; then
  start_redis
  start_twemproxy
  for v in "${VARIANTS[@]}"; do start_larder "$v"; done
  CONTENDERS=(direct twemproxy)
  for v in "${VARIANTS[@]}"; do CONTENDERS+=("larder-t$v"); done
  NC=${#CONTENDERS[@]}
  log "redis :$REDIS_PORT  twemproxy :$TWEM_PORT  larder $(for v in "${VARIANTS[@]}"; do printf 't%s:%s ' "$v" "${LARDER_PORT[$v]}"; done)"
  # warm-up (connections, allocator, CPU frequency), not recorded
  for c in "${CONTENDERS[@]}"; do
    run_child timeout 60 "${NICE[@]}" redis-benchmark -h 127.0.0.1 -p "$(port_of "$c")" -t get,set -c "$CLIENTS" -n 20000 -P 1 -q \
      >/dev/null 2>&1 || die "warm-up against $c failed"
  done
  for ((r = 1; r <= ROUNDS; r++)); do
    order=()
    for ((i = 0; i < NC; i++)); do order+=("${CONTENDERS[$(((i + r - 1) % NC))]}"); done
    if ((r % 2 == 0)); then  # reverse every other round
      rev=(); for ((i = NC - 1; i >= 0; i--)); do rev+=("${order[$i]}"); done; order=("${rev[@]}")
    fi
    for p in $PIPELINES; do
      for c in "${order[@]}"; do run_bench "$r" "$c" "$(port_of "$c")" "$(pid_of "$c")" "$p"; done
    done
  done
  for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || die "a server died during the run (logs in $WORK; KEEP_WORK=1 keeps them)"
  done
  echo
  echo "## Throughput"
  "$PY" "$HELPER" report "$RESULTS"
  [[ -z ${RESULTS_FILE:-} ]] || cp "$RESULTS" "$RESULTS_FILE"
  # fresh processes for the idle test
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  LARDER_PORT=(); LARDER_PID=()
fi

# ---------------------------------------------------------------- idle connections
idle_test() {  # target pid port count -> prints a table row
  local target=$1 pid=$2 port=$3 count=$4
  rm -f "$WORK/ready" "$WORK/release"
  sleep 1
  local before; before=$(rss_kib "$pid")
  "$PY" "$HELPER" idle "$port" "$count" "$WORK/ready" "$WORK/release" 120 2>"$WORK/idle.err" &
  local opener=$!; PIDS+=("$opener")
  local ok=0
  for _ in $(seq 1500); do  # 150 s at most
    if [[ -s $WORK/ready ]]; then ok=1; break; fi
    kill -0 "$opener" 2>/dev/null || break
    sleep 0.1
  done
  local held; held=$(cat "$WORK/ready" 2>/dev/null || echo "none")
  if [[ $ok != 1 || ! $held =~ ^[0-9]+$ ]]; then
    touch "$WORK/release"; stop_pid "$opener"
    printf '%-12s %7s  %s\n' "$target" "$count" "FAILED: ${held} $(cat "$WORK/idle.err")"
    return 0
  fi
  sleep 1
  local after; after=$(rss_kib "$pid")
  touch "$WORK/release"
  for _ in $(seq 100); do kill -0 "$opener" 2>/dev/null || break; sleep 0.1; done
  stop_pid "$opener"
  sleep 1
  local closed; closed=$(rss_kib "$pid")
  awk -v t="$target" -v n="$held" -v b="$before" -v a="$after" -v c="$closed" \
    'BEGIN { printf "%-12s %7d %12d %12d %12.2f %14d\n", t, n, b, a, (a - b) / n, c }'
}

read -r -a COUNTS <<<"$IDLE_COUNTS"
if ((${#COUNTS[@]} > 0)); then
  for c in "${COUNTS[@]}"; do
    ((c + 64 <= NOFILE)) || die "open-file limit $NOFILE is too low for $c idle connections"
  done
  start_redis
  start_twemproxy
  start_larder "$MAIN_VARIANT"
  echo
  echo "## Idle connections (each sent PING and read +PONG; fresh processes; larder-t$MAIN_VARIANT)"
  printf '%-12s %7s %12s %12s %12s %14s\n' target conns "RSS0 KiB" "RSS KiB" "KiB/conn" "RSS closed KiB"
  for c in "${COUNTS[@]}"; do
    idle_test "larder-t$MAIN_VARIANT" "${LARDER_PID[$MAIN_VARIANT]}" "${LARDER_PORT[$MAIN_VARIANT]}" "$c"
    idle_test twemproxy "$TWEM_PID" "$TWEM_PORT" "$c"
    idle_test redis "$REDIS_PID" "$REDIS_PORT" "$c"
  done
  echo "# RSS0: before opening; RSS: with the connections open; RSS closed: 1 s after they closed."
fi
log "done"
