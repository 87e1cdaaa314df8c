#!/usr/bin/env bash
# Read-through benchmark: zipfian reads of a PostgreSQL table through Larder,
# against an application doing cache-aside itself (Redis + PostgreSQL), and
# against PostgreSQL alone. Results: docs/benchmarks.md, "Read-through (zipfian)".
#
#   tests/bench/read_through/read_bench.sh      # builds, sets up, runs all three modes
#
# It starts its own redis-server and PostgreSQL 15 (trust auth, fsync off) on
# free 127.0.0.1 ports in a temp dir, loads public.items with ROWS rows, then
# for each mode: FLUSHALL Redis (cold cache), (re)start Larder for the larder
# mode, run larder_read_bench for DURATION seconds, and finally prints a table,
# the goals, and (when gnuplot is installed) plots throughput over time.
#
# Environment (defaults in brackets):
#   ROWS [1000000]  CLIENTS [50]  DURATION [30]  THETA [0.99]  SEED [42]
#   MODES ["larder cache-aside postgres"]   order of the runs
#   COLD [5] WARM [10]         seconds of the cold (first) and warm (last) phases
#   LARDER_THREADS [2]  PG_POOL [4]  BATCH_WINDOW [500us]  MAX_BATCH [256]
#   BUILD [1]                  0: use LARDER_BIN and BENCH_BIN as they are
#   LARDER_BIN [<repo>/build-bench/larder]
#   BENCH_BIN [<repo>/build-bench/read_through_bench/larder_read_bench]
#   PLOT [<repo>/docs/img/read_through.png]   "" skips the plot (plot.sh, needs gnuplot;
#                              without it the benchmark runs and only the plot is skipped)
#   RESULTS_DIR                also copy per-second CSVs, summaries and the table here
#   BASE_PORT [17700]          first port tried; busy ports are skipped
#   PERF [0]                   1: profile Larder (perf record -e cpu-clock) during its run;
#                              the report (by thread, by library, by symbol) is
#                              perf-larder.txt in the work dir (kept) and RESULTS_DIR
#   KEEP_WORK [0]              1: keep the temp dir (configs, logs, CSVs)
#   NICE [-10]                 niceness of everything started after the build (Redis,
#                              PostgreSQL, Larder, the generator) so that other jobs
#                              on a shared machine disturb less; 0 leaves it alone
#   WAIT_IDLE [0]              wait up to this many seconds for the machine to be
#                              <= 10% busy before the runs (other jobs skew results)
#
# Everything listens on 127.0.0.1 only; every wait is bounded; every process
# started here is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
HERE="$ROOT/tests/bench/read_through"

ROWS=${ROWS:-1000000}
CLIENTS=${CLIENTS:-50}
DURATION=${DURATION:-30}
THETA=${THETA:-0.99}
SEED=${SEED:-42}
MODES=${MODES:-"larder cache-aside postgres"}
COLD=${COLD:-5}
WARM=${WARM:-10}
LARDER_THREADS=${LARDER_THREADS:-2}
PG_POOL=${PG_POOL:-4}
BATCH_WINDOW=${BATCH_WINDOW:-500us}
MAX_BATCH=${MAX_BATCH:-256}
BUILD=${BUILD:-1}
LARDER_BIN=${LARDER_BIN:-$ROOT/build-bench/larder}
BENCH_BIN=${BENCH_BIN:-$ROOT/build-bench/read_through_bench/larder_read_bench}
PLOT=${PLOT-$ROOT/docs/img/read_through.png}
RESULTS_DIR=${RESULTS_DIR:-}
BASE_PORT=${BASE_PORT:-17700}
PERF=${PERF:-0}
KEEP_WORK=${KEEP_WORK:-0}
[[ $PERF != 1 ]] || KEEP_WORK=1
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for tool in redis-server redis-cli psql ss timeout cmake; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install redis-server redis-tools postgresql-15 iproute2 cmake)"
done
[[ $PERF != 1 ]] || command -v perf >/dev/null || die "PERF=1 needs perf (apt-get install linux-perf)"
[[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl ]] || die "no PostgreSQL 15 in $PG_BIN"
for v in ROWS CLIENTS DURATION COLD WARM; do
  [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer"
done

# ---------------------------------------------------------------- clean-up
WORK="$(mktemp -d /tmp/larder-read-bench.XXXXXX)"
chmod 755 "$WORK"
declare -a PIDS=()
PG_DATA="$WORK/pg/data"
PG_STARTED=0
as_pg=()
if [[ $(id -u) == 0 ]]; then as_pg=(runuser -u postgres --); fi

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ $PG_STARTED == 1 ]]; then
    "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -t 20 stop >/dev/null 2>&1 || true
  fi
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

ulimit -n 65536 2>/dev/null || true

# ---------------------------------------------------------------- build
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=""
[[ -z $(git -C "$ROOT" status --porcelain --untracked-files=no -- src include CMakeLists.txt 2>/dev/null) ]] \
  || DIRTY=" + uncommitted changes in src/"
if [[ $BUILD == 1 ]]; then
  log "building larder (Release) in $ROOT/build-bench"
  cmake -S "$ROOT" -B "$ROOT/build-bench" -DCMAKE_BUILD_TYPE=Release >"$WORK/cmake.log" 2>&1 \
    || { tail -n 30 "$WORK/cmake.log" >&2; die "cmake configure failed"; }
  cmake --build "$ROOT/build-bench" -j2 --target larder >"$WORK/build.log" 2>&1 \
    || { tail -n 30 "$WORK/build.log" >&2; die "larder build failed"; }
  log "building larder_read_bench (Release)"
  cmake -S "$HERE" -B "$(dirname "$BENCH_BIN")" -DCMAKE_BUILD_TYPE=Release >"$WORK/cmake-bench.log" 2>&1 \
    || { tail -n 30 "$WORK/cmake-bench.log" >&2; die "cmake configure of the generator failed"; }
  cmake --build "$(dirname "$BENCH_BIN")" -j2 >"$WORK/build-bench.log" 2>&1 \
    || { tail -n 30 "$WORK/build-bench.log" >&2; die "generator build failed"; }
fi
[[ $BUILD == 1 ]] || { COMMIT="prebuilt $(basename "$LARDER_BIN")"; DIRTY=" (built $(date -u -r "$LARDER_BIN" +%H:%MZ), tree at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null))"; }
[[ -x $LARDER_BIN ]] || die "no larder binary at $LARDER_BIN"
[[ -x $BENCH_BIN ]] || die "no generator at $BENCH_BIN"

# Everything from here on (servers, generator) runs at NICE: a shared machine's
# builds then take CPU from the benchmark only when it leaves some idle.
NICE=${NICE:--10}
if [[ $NICE != 0 ]]; then
  renice -n "$NICE" -p $$ >/dev/null 2>&1 || { log "could not renice to $NICE: running at $(nice)"; NICE=$(nice); }
fi

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

wait_pong() {  # port: until it answers PING (10 s max)
  for _ in $(seq 100); do
    [[ $(timeout 2 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]] && return 0
    sleep 0.1
  done
  return 1
}

# CPU time (clock ticks) of one process, with its reaped children when $2 = 1.
TICK=$(getconf CLK_TCK)
cpu_ticks() {
  awk -v kids="${2:-0}" '{ s = $14 + $15; if (kids) s += $16 + $17; print s }' "/proc/$1/stat" 2>/dev/null || echo 0
}
pg_cpu_ticks() {  # postmaster + its live children + the ones already reaped
  local total kid
  total=$(cpu_ticks "$PG_PID" 1)
  for kid in $(pgrep -P "$PG_PID" 2>/dev/null); do total=$((total + $(cpu_ticks "$kid"))); done
  echo "$total"
}
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 }' /proc/stat; }   # user + nice + system
irq_ticks() { awk '/^cpu / { print $7 + $8 }' /proc/stat; }         # irq + softirq (loopback TCP)

# ---------------------------------------------------------------- PostgreSQL
alloc_port; PG_PORT=$PORT
alloc_port; REDIS_PORT=$PORT
alloc_port; LARDER_PORT=$PORT
mkdir -p "$WORK/pg"
[[ ${#as_pg[@]} == 0 ]] || chown -R postgres:postgres "$WORK/pg"
log "PostgreSQL 15 on 127.0.0.1:$PG_PORT"
"${as_pg[@]}" "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -A trust --no-sync >"$WORK/initdb.log" 2>&1 \
  || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
"${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$WORK/pg/postgres.log" -w -t 30 start -o \
  "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $WORK/pg -c fsync=off -c synchronous_commit=off \
   -c full_page_writes=off -c shared_buffers=512MB -c max_connections=300 \
   -c shared_preload_libraries=pg_stat_statements,pg_prewarm -c pg_stat_statements.max=1000 \
   -c pg_stat_statements.track=top -c autovacuum=off" >/dev/null \
  || { tail -n 30 "$WORK/pg/postgres.log" >&2; die "PostgreSQL did not start"; }
PG_STARTED=1
PG_PID=$(head -n 1 "$PG_DATA/postmaster.pid")

ADMIN_DSN="host=127.0.0.1 port=$PG_PORT dbname=bench user=postgres"
APP_DSN="host=127.0.0.1 port=$PG_PORT dbname=bench user=bench"
psql_admin() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAtX "$@"; }
psql_admin -d postgres -c "CREATE ROLE bench LOGIN" -c "CREATE DATABASE bench OWNER bench"
log "loading $ROWS rows into public.items"
t0=$(date +%s)
psql_admin -d bench >/dev/null <<SQL
CREATE EXTENSION pg_stat_statements;
CREATE EXTENSION pg_prewarm;
SET ROLE bench;
CREATE TABLE public.items (
  id bigint PRIMARY KEY,
  name text NOT NULL,
  price numeric(10,2) NOT NULL,
  stock int NOT NULL,
  updated_at timestamptz NOT NULL
);
INSERT INTO public.items
SELECT g, 'item ' || g || ' ' || md5(g::text), round((((g * 7919) % 100000) / 100.0)::numeric, 2),
       (g * 31) % 1000, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
FROM generate_series(1::bigint, $ROWS) AS g;
RESET ROLE;
VACUUM ANALYZE public.items;
SELECT pg_prewarm('public.items'), pg_prewarm('public.items_pkey');
SQL
TABLE_SIZE=$(psql_admin -d bench -c "SELECT pg_size_pretty(pg_table_size('public.items')) || ' + ' || pg_size_pretty(pg_indexes_size('public.items')) || ' index'")
log "loaded in $(( $(date +%s) - t0 )) s: $TABLE_SIZE (prewarmed into shared_buffers)"

# ---------------------------------------------------------------- Redis
mkdir -p "$WORK/redis"
log "redis-server on 127.0.0.1:$REDIS_PORT"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$WORK/redis" --daemonize no --maxclients 10000 --loglevel warning \
  --logfile "$WORK/redis/redis.log" &
REDIS_PID=$!; PIDS+=("$REDIS_PID")
wait_pong "$REDIS_PORT" || die "redis-server did not start (see $WORK/redis/redis.log)"

# ---------------------------------------------------------------- Larder
cat >"$WORK/larder.yaml" <<EOF
listen: 127.0.0.1:$LARDER_PORT
threads: $LARDER_THREADS
redis: {address: 127.0.0.1:$REDIS_PORT}
postgres: {dsn: "$APP_DSN", pool_size: $PG_POOL}
read_through: {batch_window: $BATCH_WINDOW, max_batch: $MAX_BATCH, load_timeout: 5s}
keyspaces:
  items: {key: "item:{id}", table: public.items, shape: hash, ttl: 1h, ttl_jitter: 10%, negative_ttl: 30s}
limits: {maxclients: 20000}
EOF
LARDER_PID=""
start_larder() {
  "$LARDER_BIN" --config "$WORK/larder.yaml" --log-level warn >>"$WORK/larder.log" 2>&1 &
  LARDER_PID=$!; PIDS+=("$LARDER_PID")
  wait_pong "$LARDER_PORT" || { tail -n 20 "$WORK/larder.log" >&2; die "larder did not start"; }
}
stop_larder() { [[ -z $LARDER_PID ]] || stop_pid "$LARDER_PID"; LARDER_PID=""; }

# ---------------------------------------------------------------- runs
declare -A S=()          # S[mode.key] = value from the SUMMARY line (and CPU use)
SAMPLE_KEY=""; declare -A SAMPLE=()      # the hottest key as each cache stored it
run_mode() {
  local mode=$1 args=()
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" flushall >/dev/null || die "FLUSHALL failed"
  case $mode in
    larder)
      stop_larder; start_larder
      args=(--host 127.0.0.1 --port "$LARDER_PORT") ;;
    cache-aside)
      args=(--host 127.0.0.1 --port "$REDIS_PORT" --pg "$APP_DSN") ;;
    postgres)
      args=(--pg "$APP_DSN") ;;
    *) die "unknown mode $mode" ;;
  esac
  log "run: $mode (Redis flushed${LARDER_PID:+, Larder restarted}), $CLIENTS clients, ${DURATION}s"
  local perf_pid=""
  if [[ $PERF == 1 && $mode == larder ]]; then
    perf record -e cpu-clock -F 999 -p "$LARDER_PID" -o "$WORK/perf-larder.data" -- sleep "$DURATION" \
      >"$WORK/perf-larder.log" 2>&1 &
    perf_pid=$!
  fi
  local l0=0 r0 p0 b0 i0 t0 l1=0 r1 p1 b1 i1 t1
  [[ -z $LARDER_PID ]] || l0=$(cpu_ticks "$LARDER_PID")
  r0=$(cpu_ticks "$REDIS_PID"); p0=$(pg_cpu_ticks); b0=$(busy_ticks); i0=$(irq_ticks); t0=$(date +%s.%N)
  timeout $((DURATION + 120)) "$BENCH_BIN" --mode "$mode" "${args[@]}" --pg-admin "$ADMIN_DSN" \
    --rows "$ROWS" --clients "$CLIENTS" --duration "$DURATION" --theta "$THETA" --seed "$SEED" \
    --cold "$COLD" --warm "$WARM" --csv "$WORK/$mode.csv" >"$WORK/$mode.summary" 2>"$WORK/$mode.log" \
    || { tail -n 20 "$WORK/$mode.log" >&2; die "generator failed in mode $mode"; }
  b1=$(busy_ticks); i1=$(irq_ticks); t1=$(date +%s.%N)
  sleep 0.5   # let the generator's PostgreSQL backends exit and be reaped
  [[ -z $LARDER_PID ]] || l1=$(cpu_ticks "$LARDER_PID")
  r1=$(cpu_ticks "$REDIS_PID"); p1=$(pg_cpu_ticks)
  echo "$mode larder $l0 $l1 redis $r0 $r1 pg $p0 $p1 busy $b0 $b1 irq $i0 $i1 wall $t0 $t1 tick $TICK" >>"$WORK/cpu.log"
  [[ -z $perf_pid ]] || wait "$perf_pid" || true
  local line kv
  line=$(grep '^SUMMARY ' "$WORK/$mode.summary") || die "no summary from mode $mode"
  for kv in ${line#SUMMARY }; do S[$mode.${kv%%=*}]=${kv#*=}; done
  local wall; wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  S[$mode.cpu_larder]=$(awk -v d=$((l1 - l0)) -v t="$TICK" -v w="$wall" 'BEGIN { printf "%.2f", d / t / w }')
  S[$mode.cpu_redis]=$(awk -v d=$((r1 - r0)) -v t="$TICK" -v w="$wall" 'BEGIN { printf "%.2f", d / t / w }')
  S[$mode.cpu_pg]=$(awk -v d=$((p1 - p0)) -v t="$TICK" -v w="$wall" 'BEGIN { printf "%.2f", d / t / w }')
  S[$mode.cpu_busy]=$(awk -v d=$((b1 - b0)) -v t="$TICK" -v w="$wall" 'BEGIN { printf "%.2f", d / t / w }')
  S[$mode.cpu_irq]=$(awk -v d=$((i1 - i0)) -v t="$TICK" -v w="$wall" 'BEGIN { printf "%.2f", d / t / w }')
  S[$mode.cpu_client]=$(awk -v c="${S[$mode.client_cpu_s]}" -v w="$wall" 'BEGIN { printf "%.2f", c / w }')
  S[$mode.cpu_other]=$(awk -v b="${S[$mode.cpu_busy]}" -v c="${S[$mode.cpu_client]}" -v l="${S[$mode.cpu_larder]}" \
    -v r="${S[$mode.cpu_redis]}" -v p="${S[$mode.cpu_pg]}" 'BEGIN { o = b - c - l - r - p; printf "%.2f", o < 0 ? 0 : o }')
  log "  $mode: cold ${S[$mode.cold_tput]} req/s, warm ${S[$mode.warm_tput]} req/s," \
      "warm p99 ${S[$mode.warm_p99_us]} us, PG statements ${S[$mode.pg_queries]}, errors ${S[$mode.errors]}"
  # What a filled key looks like, to check that both caches store the same thing.
  if [[ $mode != postgres ]]; then
    SAMPLE_KEY="item:${S[$mode.hottest_id]}"   # the same id in every mode (same seed)
    SAMPLE[$mode]=$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" hgetall "$SAMPLE_KEY" | tr '\n' ' ')
    SAMPLE[$mode.ttl]=$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ttl "$SAMPLE_KEY")
    SAMPLE[$mode.keys]=$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" dbsize)
  fi
  [[ $mode != larder ]] || stop_larder
  sleep 1
}

# Other processes on the machine skew every number: say how busy it is, and
# wait (up to WAIT_IDLE seconds) for it to calm down when asked to.
idle_share() {  # busy share of all cores over 2 s, in percent
  local b0 b1; b0=$(busy_ticks); sleep 2; b1=$(busy_ticks)
  awk -v d=$((b1 - b0)) -v t="$TICK" -v n="$(nproc)" 'BEGIN { printf "%.0f", 100 * d / t / 2 / n }'
}
BUSY=$(idle_share)
if [[ ${WAIT_IDLE:-0} -gt 0 ]]; then
  deadline=$(( $(date +%s) + WAIT_IDLE ))
  while [[ $BUSY -gt 10 && $(date +%s) -lt $deadline ]]; do
    log "machine ${BUSY}% busy before the runs: waiting for it to calm down"
    sleep 8; BUSY=$(idle_share)
  done
fi
log "machine ${BUSY}% busy before the runs (other processes)"
START_DATE=$(date -u +%Y-%m-%dT%H:%MZ)
for mode in $MODES; do run_mode "$mode"; done

if [[ $PERF == 1 && -s $WORK/perf-larder.data ]]; then
  { perf report -i "$WORK/perf-larder.data" --sort pid --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12
    echo
    perf report -i "$WORK/perf-larder.data" --sort dso --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12
    echo
    perf report -i "$WORK/perf-larder.data" --sort dso,sym --percent-limit 0.3 --stdio 2>/dev/null \
      | grep -v '^#' | grep -v '^$' | head -100 | cut -c1-160
  } >"$WORK/perf-larder.txt"
  log "perf profile of Larder: $WORK/perf-larder.txt"
fi

# ---------------------------------------------------------------- report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
ms() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }
has() { [[ " $MODES " == *" $1 "* ]]; }
{
  echo "Read-through benchmark, $START_DATE, commit $COMMIT$DIRTY, $(nproc) cores (shared by everything; ${BUSY}% busy before the runs; bench processes at nice $NICE)"
  echo "rows=$ROWS ($TABLE_SIZE) clients=$CLIENTS duration=${DURATION}s theta=$THETA" \
       "(exact zipf, scrambled ids) cold=first ${COLD}s warm=last ${WARM}s," \
       "larder threads=$LARDER_THREADS pool=$PG_POOL batch_window=$BATCH_WINDOW max_batch=$MAX_BATCH"
  echo
  echo "| mode | cold req/s | warm req/s | cold p50 / p99 ms | warm p50 / p99 / p99.9 ms | hit ratio (last s) | PG statements | PG rows read | distinct keys | errors | CPU cores: client / larder / redis / postgres / softirq / other (of $(nproc)) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  for mode in $MODES; do
    echo "| $mode | ${S[$mode.cold_tput]} | ${S[$mode.warm_tput]}" \
         "| $(ms "${S[$mode.cold_p50_us]}") / $(ms "${S[$mode.cold_p99_us]}")" \
         "| $(ms "${S[$mode.warm_p50_us]}") / $(ms "${S[$mode.warm_p99_us]}") / $(ms "${S[$mode.warm_p999_us]}")" \
         "| ${S[$mode.hit_ratio_end]} | ${S[$mode.pg_queries]} | ${S[$mode.pg_rows]} | ${S[$mode.distinct_keys]}" \
         "| ${S[$mode.errors]} | ${S[$mode.cpu_client]} / ${S[$mode.cpu_larder]} / ${S[$mode.cpu_redis]} / ${S[$mode.cpu_pg]} / ${S[$mode.cpu_irq]} / ${S[$mode.cpu_other]} |"
  done
  echo
  if has larder && has cache-aside; then
    rc=$(ratio "${S[larder.cold_tput]}" "${S[cache-aside.cold_tput]}")
    rw=$(ratio "${S[larder.warm_tput]}" "${S[cache-aside.warm_tput]}")
    verdict() { awk -v r="$1" -v g="$2" 'BEGIN { print (r != "-" && r + 0 >= g) ? "met" : "MISSED" }'; }
    echo "- Larder / cache-aside throughput, cold phase: ${rc}x (goal >= 2x: $(verdict "$rc" 2))"
    echo "- Larder / cache-aside throughput, warm phase: ${rw}x (goal >= 1x: $(verdict "$rw" 1))"
  fi
  if has larder; then
    q=${S[larder.pg_queries]} k=${S[larder.distinct_keys]} r=${S[larder.pg_rows]}
    v=MISSED; [[ $q -ge 0 && $q -le $k ]] && v=met
    echo "- Larder PostgreSQL statements ${q} <= distinct keys ${k} (goal: $v);" \
         "rows read ${r} ($(ratio "$r" "$k") per distinct key); Larder INFO: queries=${S[larder.larder_queries]:-?}" \
         "keys_queried=${S[larder.larder_keys_queried]:-?} joins=${S[larder.larder_joins]:-?}" \
         "fills=${S[larder.larder_fills]:-?} fills_skipped=${S[larder.larder_fills_skipped]:-?} load_errors=${S[larder.larder_load_errors]:-?}"
  fi
  if has cache-aside; then
    echo "- cache-aside PostgreSQL statements ${S[cache-aside.pg_queries]} for ${S[cache-aside.distinct_keys]} distinct keys" \
         "($(ratio "${S[cache-aside.pg_queries]}" "${S[cache-aside.distinct_keys]}") per key: concurrent misses of one key each query it)"
  fi
  if has larder && has cache-aside; then
    same="differ"; [[ ${SAMPLE[larder]} == "${SAMPLE[cache-aside]}" ]] && same="identical"
    echo "- the hottest key $SAMPLE_KEY as Larder and as cache-aside stored it in Redis: $same" \
         "(TTL ${SAMPLE[larder.ttl]} s / ${SAMPLE[cache-aside.ttl]} s; Redis keys at end ${SAMPLE[larder.keys]} / ${SAMPLE[cache-aside.keys]})"
  fi
} >"$WORK/table.md"
echo
cat "$WORK/table.md"

# ---------------------------------------------------------------- plot
if [[ -n $PLOT ]]; then
  if command -v gnuplot >/dev/null; then
    csvs=(); for mode in $MODES; do csvs+=("$WORK/$mode.csv"); done
    if "$HERE/plot.sh" "$PLOT" \
        "Read-through: zipf $THETA over $ROWS rows, $CLIENTS clients, cold start (Redis flushed) - commit $COMMIT, $(nproc) shared cores" \
        "$DURATION" "$COLD" "$WARM" "${csvs[@]}" >"$WORK/gnuplot.log" 2>&1; then
      log "plot: $PLOT"
    else
      log "plot failed (see $WORK/gnuplot.log)"
    fi
  else
    log "gnuplot not installed (apt-get install -y gnuplot-nox): no plot"
  fi
fi

if [[ -n $RESULTS_DIR ]]; then
  mkdir -p "$RESULTS_DIR"
  cp "$WORK"/*.csv "$WORK"/*.summary "$WORK/table.md" "$WORK/cpu.log" "$RESULTS_DIR/"
  [[ ! -s $WORK/perf-larder.txt ]] || cp "$WORK/perf-larder.txt" "$RESULTS_DIR/"
  log "results copied to $RESULTS_DIR"
fi
