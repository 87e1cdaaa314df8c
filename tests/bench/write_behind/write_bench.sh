#!/usr/bin/env bash
# Write benchmark: SETs on mapped keys through Larder (write: behind and
# write: through) against the same SETs on Redis directly, unmapped SETs
# through Larder, and one single-row upsert per write straight into
# PostgreSQL (pgbench); then how fast the Flusher drains a burst into
# PostgreSQL; then the flush lag (PostgreSQL commit time - write time) under a
# steady, rate-limited write load. Results: RESULTS.md in this folder.
#
#   tests/bench/write_behind/write_bench.sh        # builds build-bench/larder, runs all three phases
#   LARDER_REV=HEAD tests/bench/write_behind/write_bench.sh   # a commit, not the work tree
#
# About 4.5-6 minutes with the defaults on a busy 2-core machine (plus the build).
#
# It starts its own redis-server (no persistence) and PostgreSQL 15 (fsync on,
# synchronous_commit on, track_commit_timestamp on, pg_stat_statements) on
# free 127.0.0.1 ports in a temp dir. Tables have a text primary key because redis-benchmark's
# __rand_int__ is a zero-padded 12-digit number.
#
# Phase "throughput" (ROUNDS rounds, contender order rotating/reversing):
#   direct          redis-benchmark SET dr:__rand_int__ on redis-server
#   direct-hot      the same on a hot key set (-r HOT_KEYRANGE)
#   larder-behind-hot  SET wb:__rand_int__ -r HOT_KEYRANGE through Larder (hot keys
#                   coalesce in the flusher); its ratio is against direct-hot
#   larder-pass     SET pt:__rand_int__ through Larder (no keyspace: pass-through)
#   larder-behind   SET wb:__rand_int__ through Larder, keyspace wb, write: behind;
#                   then LARDER FLUSH and LARDER PENDING until the queue is empty
#                   (timed: "drain after the run"; an OK with writes still queued
#                   is listed under Anomalies)
#   larder-through  SET wt:__rand_int__ through Larder, keyspace wt, write: through
#   pg-sync         pgbench: one INSERT .. ON CONFLICT DO UPDATE per write,
#                   synchronous_commit=on (what write: through promises)
#   pg-async        the same with synchronous_commit=off (closer to what
#                   write: behind promises: acknowledged before it is durable)
#   redis-benchmark: -c CLIENTS -P PIPELINE -r KEYRANGE; pgbench: -c CLIENTS -j 2 -M prepared.
#   CPU per write of Larder, Redis and PostgreSQL from /proc (for larder-behind
#   over the run and the drain after it, i.e. including the flush work).
# Phase "flush" (per MAX_BATCHES entry, on a fresh Larder with only keyspace wf):
#   pg-bulk the bulk-upsert ceiling: one psql session upserts BURST new rows into
#          items_x (preloaded like items_f) with INSERT .. SELECT FROM unnest(..)
#          ON CONFLICT, max_batch rows per statement, one transaction each
#          (wb_driver.py bulksql); the flush's rows/s are compared with it
#   held   the Flusher is kept from PostgreSQL (a psql session holds its
#          advisory lock) while redis-benchmark queues BURST writes on distinct
#          keys (-r 1e9); then the lock is released and LARDER PENDING is
#          polled every 20 ms until the queue is empty: rows/s.
#   live   a second burst with the Flusher running; the time from the end of
#          the burst until the queue is empty.
# Phase "sustained": wb_driver.py steady writes at SUSTAIN_FRACTION (0.8) of the
#   median larder-behind rate of phase throughput (or SUSTAIN_RATE) for
#   SUSTAIN_SECONDS on distinct keys of keyspace wl; the queue depth's maximum
#   per quarter of the run shows whether the flusher keeps up (bounded: the
#   last quarter no deeper than max(2 x the first, 2 x max_batch)).
# Phase "lag" (per LAG_RATES entry): wb_driver.py steady writes RATE SETs/s
#   on distinct keys of keyspace wl for LAG_SECONDS; each value is the send
#   time in us. Lag = pg_xact_commit_timestamp(xmin) - value, per row (first
#   LAG_WARMUP s left out); LARDER PENDING oldest_age_ms is sampled every 20 ms.
#
# Environment (defaults in brackets):
#   PHASES ["throughput flush sustained lag"]
#   CONTENDERS ["direct larder-pass larder-behind larder-through pg-sync pg-async direct-hot larder-behind-hot"]
#   HOT_KEYRANGE [1000]   SUSTAIN_SECONDS [20]  SUSTAIN_FRACTION [0.8]  SUSTAIN_RATE [from phase throughput]
#   ROUNDS [3]  CLIENTS [50]  PIPELINE [1]  KEYRANGE [100000]  VALUE [16 bytes]
#   N_REDIS [100000]  (direct, larder-pass)   N_BEHIND [100000]   N_THROUGH [10000]
#   PG_SECONDS [5]                             pgbench -T
#   BURST [300000]  BURST_PIPELINE [16]  MAX_BATCHES ["1000 5000"]
#   LAG_RATES ["10000 30000"]  LAG_SECONDS [12]  LAG_WARMUP [2]  LAG_CONNS [8]
#   PRELOAD_ROWS [500000]      rows in items_f and items_l (ANALYZEd) before the runs
#   PG_AUTOVACUUM [on]
#   FLUSH_INTERVAL [50ms]  MAX_BATCH [1000] (phases throughput and lag)
#   LARDER_THREADS [2]  PG_POOL [4]  APPLY_CONNECTIONS [2]
#   LARDER_LOG_LEVEL [warn]    debug: each flushed batch logs its steps' times
#                              (with KEEP_WORK=1: larder-f-<max_batch>.log)
#   BUILD [1]                  0: use LARDER_BIN as it is
#   LARDER_BIN [<repo>/build-bench/larder]   (built RelWithDebInfo from the work tree)
#   LARDER_REV                 e.g. HEAD: benchmark this commit, not the work tree
#                              (git archive, RelWithDebInfo build in build-bench-rev/)
#   BASE_PORT [17900]          first port tried; busy ports are skipped
#   NICE [-10]                 niceness of everything started after the build
#   PERF [0]                   1: perf record Larder during round 1's larder-behind
#                              run and the first held drain (report in the work dir, kept)
#   RESULTS_DIR                also copy the raw results and the summary here
#   KEEP_WORK [0]              1: keep the temp dir (configs, logs, JSON)
#
# Everything listens on 127.0.0.1 only; every wait is bounded; every process
# started here is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
HERE="$ROOT/tests/bench/write_behind"
DRIVER="$HERE/wb_driver.py"
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

PHASES=${PHASES:-"throughput flush sustained lag"}
CONTENDERS_LIST=${CONTENDERS:-"direct larder-pass larder-behind larder-through pg-sync pg-async direct-hot larder-behind-hot"}
HOT_KEYRANGE=${HOT_KEYRANGE:-1000}
SUSTAIN_SECONDS=${SUSTAIN_SECONDS:-20}
SUSTAIN_FRACTION=${SUSTAIN_FRACTION:-0.8}
SUSTAIN_RATE=${SUSTAIN_RATE:-}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-50}
PIPELINE=${PIPELINE:-1}
KEYRANGE=${KEYRANGE:-100000}
VALUE=${VALUE:-v123456789abcdef}
N_REDIS=${N_REDIS:-100000}
N_BEHIND=${N_BEHIND:-100000}
N_THROUGH=${N_THROUGH:-10000}
PG_SECONDS=${PG_SECONDS:-5}
BURST=${BURST:-300000}
BURST_PIPELINE=${BURST_PIPELINE:-16}
MAX_BATCHES=${MAX_BATCHES:-"1000 5000"}
LAG_RATES=${LAG_RATES:-"10000 30000"}
LAG_SECONDS=${LAG_SECONDS:-12}
LAG_WARMUP=${LAG_WARMUP:-2}
LAG_CONNS=${LAG_CONNS:-8}
PRELOAD_ROWS=${PRELOAD_ROWS:-500000}
PG_AUTOVACUUM=${PG_AUTOVACUUM:-on}
FLUSH_INTERVAL=${FLUSH_INTERVAL:-50ms}
MAX_BATCH=${MAX_BATCH:-1000}
LARDER_THREADS=${LARDER_THREADS:-2}
APPLY_CONNECTIONS=${APPLY_CONNECTIONS:-2}
LARDER_LOG_LEVEL=${LARDER_LOG_LEVEL:-warn}
PG_POOL=${PG_POOL:-4}
BUILD=${BUILD:-1}
LARDER_REV=${LARDER_REV:-}
LARDER_BIN=${LARDER_BIN:-$ROOT/build-bench/larder}
BASE_PORT=${BASE_PORT:-17900}
NICE=${NICE:--10}
PERF=${PERF:-0}
RESULTS_DIR=${RESULTS_DIR:-}
KEEP_WORK=${KEEP_WORK:-0}
[[ $PERF != 1 ]] || KEEP_WORK=1
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-240}   # seconds, per load generator invocation

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for tool in redis-server redis-cli redis-benchmark psql ss timeout cmake; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install redis-server redis-tools postgresql-15 iproute2 cmake)"
done
[[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl && -x $PG_BIN/pgbench ]] || die "no PostgreSQL 15 (with pgbench) in $PG_BIN"
[[ $PERF != 1 ]] || command -v perf >/dev/null || die "PERF=1 needs perf"
for v in ROUNDS CLIENTS PIPELINE KEYRANGE N_REDIS N_BEHIND N_THROUGH PG_SECONDS BURST BURST_PIPELINE LAG_SECONDS LAG_CONNS; do
  [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer"
done
has_phase() { [[ " $PHASES " == *" $1 "* ]]; }

# ---------------------------------------------------------------- clean-up
WORK="$(mktemp -d /tmp/larder-write-bench.XXXXXX)"
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
  if [[ $rc != 0 && -n $RESULTS_DIR ]]; then
    mkdir -p "$RESULTS_DIR/failed-logs" && cp "$WORK"/*.log "$WORK"/*.tsv "$RESULTS_DIR/failed-logs/" 2>/dev/null || true
  fi
  if [[ $KEEP_WORK == 1 ]]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

drop_pid() {
  local keep=() i
  for i in "${PIDS[@]}"; do [[ $i == "$1" ]] || keep+=("$i"); done
  PIDS=("${keep[@]}")
}
stop_pid() {  # stop one process we started and drop it from PIDS
  local pid=$1
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  drop_pid "$pid"
}
# Runs a command in the background and waits for it, so that a trapped INT/TERM
# interrupts at once and cleanup() stops the child. Returns its status.
run_child() {
  "$@" &
  local child=$! rc=0
  PIDS+=("$child")
  wait "$child" || rc=$?
  drop_pid "$child"
  return "$rc"
}

ulimit -n 65536 2>/dev/null || true

# ---------------------------------------------------------------- build
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=""
SRC="$ROOT"; BUILD_DIR="$ROOT/build-bench"
if [[ -n $LARDER_REV ]]; then
  # A committed revision, untouched by work in progress in the tree. Its
  # sources live in build-bench-rev/src (git-ignored); only files that changed
  # since the last sync are rewritten, so make rebuilds only what changed.
  COMMIT=$(git -C "$ROOT" rev-parse --short "$LARDER_REV^{commit}") || die "unknown revision $LARDER_REV"
  SRC="$ROOT/build-bench-rev/src"; BUILD_DIR="$ROOT/build-bench-rev/build"; LARDER_BIN="$BUILD_DIR/larder"; BUILD=1
  mkdir -p "$SRC" "$WORK/rev"
  git -C "$ROOT" archive "$COMMIT" | tar -x -C "$WORK/rev"
  (cd "$WORK/rev" && find . -type f) | while read -r f; do
    if ! cmp -s "$WORK/rev/$f" "$SRC/$f"; then mkdir -p "$(dirname "$SRC/$f")"; cp -p "$WORK/rev/$f" "$SRC/$f"; touch "$SRC/$f"; fi
  done
  (cd "$SRC" && find . -type f) | while read -r f; do [[ -e $WORK/rev/$f ]] || rm -f "$SRC/$f"; done
  rm -rf "$WORK/rev"
else
  [[ -z $(git -C "$ROOT" status --porcelain --untracked-files=no -- src include CMakeLists.txt 2>/dev/null) ]] \
    || DIRTY=" + uncommitted changes in src/"
fi
if [[ $BUILD == 1 ]]; then
  log "building larder $COMMIT$DIRTY (RelWithDebInfo) in $BUILD_DIR"
  run_child cmake -S "$SRC" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$WORK/cmake.log" 2>&1 \
    || { tail -n 30 "$WORK/cmake.log" >&2; die "cmake configure failed"; }
  run_child cmake --build "$BUILD_DIR" -j2 --target larder >"$WORK/build.log" 2>&1 \
    || { tail -n 30 "$WORK/build.log" >&2; die "larder build failed"; }
else
  DIRTY=" (prebuilt $LARDER_BIN, built $(date -u -r "$LARDER_BIN" +%H:%MZ), tree at $COMMIT)"
fi
[[ -x $LARDER_BIN ]] || die "no larder binary at $LARDER_BIN"

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

# ---------------------------------------------------------------- CPU
TICK=$(getconf CLK_TCK)
cpu_ticks() {  # pid [1: with reaped children]
  awk -v kids="${2:-0}" '{ s = $14 + $15; if (kids) s += $16 + $17; print s }' "/proc/$1/stat" 2>/dev/null || echo 0
}
pg_cpu_ticks() {  # postmaster + its live children + the ones already reaped
  local total kid
  total=$(cpu_ticks "$PG_PID" 1)
  for kid in $(pgrep -P "$PG_PID" 2>/dev/null); do total=$((total + $(cpu_ticks "$kid"))); done
  echo "$total"
}
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
per_write_us() {  # ticks0 ticks1 writes
  awk -v a="$1" -v b="$2" -v n="$3" -v t="$TICK" 'BEGIN { if (n > 0) printf "%.1f", (b - a) * 1e6 / t / n; else print "-" }'
}
now_s() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
metric() {  # admin-port name keyspace -> value ("0" when absent)
  curl -s --max-time 5 "http://127.0.0.1:$1/metrics" 2>/dev/null \
    | awk -v n="$2{" -v k="keyspace=\"$3\"" 'index($0, n) == 1 && index($0, k) { v = $NF } END { print v == "" ? 0 : v }'
}
flush_stats() {  # admin-port keyspace -> "batches duration_sum rows"
  echo "$(metric "$1" larder_flush_batches_total "$2") $(metric "$1" larder_flush_duration_seconds_sum "$2") $(metric "$1" larder_flush_rows_total "$2")"
}
batch_summary() {  # "b0 s0 r0" "b1 s1 r1" -> "rows/batch / ms per batch"
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); n = y[1] - x[1];
    if (n > 0) printf "%.0f / %.1f", (y[3] - x[3]) / n, (y[2] - x[2]) * 1000 / n; else print "- / -" }'
}
jget() { "$PY" -c 'import json,sys; v=json.load(open(sys.argv[1])).get(sys.argv[2]); print("-" if v is None else v)' "$1" "$2"; }

# ---------------------------------------------------------------- PostgreSQL
alloc_port; PG_PORT=$PORT
alloc_port; REDIS_PORT=$PORT
alloc_port; LARDER_PORT=$PORT
alloc_port; ADMIN_PORT=$PORT
alloc_port; LARDER_F_PORT=$PORT
alloc_port; ADMIN_F_PORT=$PORT
mkdir -p "$WORK/pg"
[[ ${#as_pg[@]} == 0 ]] || chown -R postgres:postgres "$WORK/pg"
log "PostgreSQL 15 on 127.0.0.1:$PG_PORT (fsync on, synchronous_commit on, autovacuum $PG_AUTOVACUUM)"
"${as_pg[@]}" "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -A trust --no-sync >"$WORK/initdb.log" 2>&1 \
  || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
"${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$WORK/pg/postgres.log" -w -t 30 start -o \
  "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $WORK/pg -c shared_buffers=256MB -c max_connections=200 \
   -c track_commit_timestamp=on -c autovacuum=$PG_AUTOVACUUM -c max_wal_size=4GB \
   -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_utility=on -c track_wal_io_timing=on" >/dev/null \
  || { tail -n 30 "$WORK/pg/postgres.log" >&2; die "PostgreSQL did not start"; }
PG_STARTED=1
PG_PID=$(head -n 1 "$PG_DATA/postmaster.pid")
APP_DSN="host=127.0.0.1 port=$PG_PORT dbname=bench user=bench"
psql_admin() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAtX "$@"; }
psql_bench() { psql -h 127.0.0.1 -p "$PG_PORT" -U bench -d bench -v ON_ERROR_STOP=1 -qAtX "$@"; }
psql_admin -d postgres -c "CREATE ROLE bench LOGIN" -c "CREATE DATABASE bench OWNER bench"
psql_admin -d bench -c "CREATE EXTENSION pg_stat_statements"
psql_bench <<'SQL'
CREATE TABLE public.items_b (id text PRIMARY KEY, v text);
CREATE TABLE public.items_t (id text PRIMARY KEY, v text);
CREATE TABLE public.items_p (id text PRIMARY KEY, v text);
CREATE TABLE public.items_f (id text PRIMARY KEY, v text);
CREATE TABLE public.items_l (id text PRIMARY KEY, v text);
CREATE TABLE public.items_x (id text PRIMARY KEY, v text);
SQL
if ((PRELOAD_ROWS > 0)); then
  # The flusher's tables start with rows and fresh statistics, like a table in
  # production. (A table that grows from empty without an ANALYZE makes the
  # planner pick a sequential scan for the flusher's UPDATE .. FROM: see RESULTS.md.)
  log "loading $PRELOAD_ROWS rows into items_f and items_l, ANALYZE"
  psql_bench -c "INSERT INTO public.items_f SELECT 'p' || g, 'preloaded' FROM generate_series(1, $PRELOAD_ROWS) g" \
    -c "INSERT INTO public.items_l SELECT 'p' || g, '0' FROM generate_series(1, $PRELOAD_ROWS) g" \
    -c "INSERT INTO public.items_x SELECT 'p' || g, 'preloaded' FROM generate_series(1, $PRELOAD_ROWS) g" \
    -c "VACUUM ANALYZE public.items_f" -c "VACUUM ANALYZE public.items_l" -c "VACUUM ANALYZE public.items_x"
fi
cat >"$WORK/upsert.sql" <<EOF
\set id random(1, $KEYRANGE)
INSERT INTO public.items_p (id, v) VALUES (lpad(:id::text, 12, '0'), '$VALUE') ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v;
EOF

# ---------------------------------------------------------------- Redis
mkdir -p "$WORK/redis"
log "redis-server on 127.0.0.1:$REDIS_PORT (no persistence)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$WORK/redis" --daemonize no --maxclients 10000 --loglevel warning \
  --logfile "$WORK/redis/redis.log" &
REDIS_PID=$!; PIDS+=("$REDIS_PID")
wait_pong "$REDIS_PORT" || die "redis-server did not start (see $WORK/redis/redis.log)"
rcli() { timeout 60 redis-cli -h 127.0.0.1 -p "$@"; }

# ---------------------------------------------------------------- Larder
write_config() {  # file port max_batch admin keyspaces-yaml
  cat >"$1" <<EOF
listen: 127.0.0.1:$2
threads: $LARDER_THREADS
${4:+admin: 127.0.0.1:$4}
redis: {address: 127.0.0.1:$REDIS_PORT}
postgres: {dsn: "$APP_DSN", pool_size: $PG_POOL}
write_behind: {flush_interval: $FLUSH_INTERVAL, max_batch: $3, max_queue: 1000000, on_full: error, drain_timeout: 60s, apply_connections: $APPLY_CONNECTIONS}
limits: {maxclients: 20000}
keyspaces:
$5
EOF
}
write_config "$WORK/larder.yaml" "$LARDER_PORT" "$MAX_BATCH" "$ADMIN_PORT" \
"  wb: {key: \"wb:{id}\", table: public.items_b, shape: string, columns: [v], ttl: 1h, write: behind}
  wt: {key: \"wt:{id}\", table: public.items_t, shape: string, columns: [v], ttl: 1h, write: through}
  wl: {key: \"wl:{id}\", table: public.items_l, shape: string, columns: [v], ttl: 1h, write: behind}"
LARDER_PID=""
start_larder() {  # config port log -> sets STARTED_PID
  "$LARDER_BIN" --config "$1" --log-level "$LARDER_LOG_LEVEL" >>"$3" 2>&1 &
  STARTED_PID=$!; PIDS+=("$STARTED_PID")
  wait_pong "$2" || { tail -n 20 "$3" >&2; die "larder did not start ($1)"; }
}
start_larder "$WORK/larder.yaml" "$LARDER_PORT" "$WORK/larder.log"; LARDER_PID=$STARTED_PID
log "larder on 127.0.0.1:$LARDER_PORT (admin :$ADMIN_PORT), threads $LARDER_THREADS, keyspaces wb (behind) wt (through) wl (behind)"

# LARDER FLUSH, then make sure: every keyspace's queue must really be empty
# (polled with LARDER PENDING, 180 s at most). An OK with writes still queued
# is recorded in anomalies.txt and shown in the summary.
larder_flush() {  # port what
  local out left ks
  out=$(rcli "$1" larder flush 2>&1) || true
  [[ $out == OK ]] || die "LARDER FLUSH on :$1 answered: $out"
  left=$("$PY" "$DRIVER" pending --port "$1" | awk '{ s += $2 } END { print s + 0 }')
  if ((left > 0)); then
    log "WARNING: LARDER FLUSH answered OK with $left writes still queued ($2); waiting for the queues to empty"
    echo "LARDER FLUSH answered OK with $left writes still queued ($2)" >>"$WORK/anomalies.txt"
    for ks in $("$PY" "$DRIVER" pending --port "$1" | awk '$2 > 0 { print $1 }'); do
      "$PY" "$DRIVER" drain --port "$1" --keyspace "$ks" --timeout 180 --out "$WORK/flush-wait.json" >/dev/null \
        || die "queue of keyspace $ks did not empty within 180 s"
    done
  fi
}

BUSY0=$(awk '{print $1" "$2" "$3}' /proc/loadavg)
START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
RESULTS="$WORK/results.tsv"; : >"$RESULTS"
SUMMARY="$WORK/summary.md"; : >"$SUMMARY"

# ================================================================ phase 1: throughput
PERF_DONE=0
perf_start() {  # pid name
  [[ $PERF == 1 ]] || return 0
  perf record -F 999 -g -p "$1" -o "$WORK/perf-$2.data" >"$WORK/perf-$2.log" 2>&1 &
  PERF_PID=$!; PIDS+=("$PERF_PID")
  sleep 0.3
}
perf_stop() {  # name
  [[ $PERF == 1 && -n ${PERF_PID:-} ]] || return 0
  kill -INT "$PERF_PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$PERF_PID" 2>/dev/null || break; sleep 0.1; done
  stop_pid "$PERF_PID"; PERF_PID=""
  { perf report -i "$WORK/perf-$1.data" --no-children --sort comm,dso -g none --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -20 || true
    echo
    perf report -i "$WORK/perf-$1.data" --no-children --sort sym --percent-limit 0.7 --stdio -g none 2>/dev/null \
      | grep -v '^#' | grep -v '^$' | head -60 | cut -c1-160 || true
  } >"$WORK/perf-$1.txt"
  log "perf report: $WORK/perf-$1.txt"
}

run_contender() {  # round contender
  local r=$1 c=$2 port n out l0 l1 r0 r1 p0 p1 t0 t1 wps drain=0 writes redis_cmd=""
  out="$WORK/tp-$r-$c.out"
  l0=$(cpu_ticks "$LARDER_PID"); r0=$(cpu_ticks "$REDIS_PID"); p0=$(pg_cpu_ticks)
  case $c in
    pg-sync|pg-async)
      local sc=on; [[ $c == pg-async ]] && sc=off
      PGOPTIONS="-c synchronous_commit=$sc" run_child timeout "$BENCH_TIMEOUT" "$PG_BIN/pgbench" \
        -h 127.0.0.1 -p "$PG_PORT" -U bench -n -M prepared -c "$CLIENTS" -j 2 -T "$PG_SECONDS" \
        -f "$WORK/upsert.sql" bench >"$out" 2>"$out.err" || die "pgbench ($c) failed: $(tail -n 3 "$out.err")"
      wps=$(awk '/^tps = / {print $3; exit}' "$out")
      writes=$(awk '/number of transactions actually processed/ {split($NF, a, "/"); print a[1]; exit}' "$out")
      ;;
    *)
      local key range=$KEYRANGE
      case $c in
        direct) port=$REDIS_PORT; key=dr; n=$N_REDIS ;;
        direct-hot) port=$REDIS_PORT; key=dh; n=$N_REDIS; range=$HOT_KEYRANGE ;;
        larder-pass) port=$LARDER_PORT; key=pt; n=$N_REDIS ;;
        larder-behind) port=$LARDER_PORT; key=wb; n=$N_BEHIND ;;
        larder-behind-hot) port=$LARDER_PORT; key=wb; n=$N_BEHIND; range=$HOT_KEYRANGE ;;
        larder-through) port=$LARDER_PORT; key=wt; n=$N_THROUGH ;;
        *) die "unknown contender $c" ;;
      esac
      [[ $c != larder-behind || $r != 1 || $PERF_DONE == 1 ]] || perf_start "$LARDER_PID" behind-run
      rcli "$REDIS_PORT" config resetstat >/dev/null
      if ! run_child timeout "$BENCH_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "$port" \
        -c "$CLIENTS" -n "$n" -P "$PIPELINE" -r "$range" --csv SET "$key:__rand_int__" "$VALUE" \
        >"$out" 2>"$out.err"; then
        # redis-benchmark stops at the first error reply: note it, go on with the others
        log "round $r $c FAILED: $(tail -n 2 "$out.err" | tr '\r\n' '  ' | cut -c1-200)"
        echo "$r $c failed 1" >>"$RESULTS"
        echo "round $r $c: $(tail -n 2 "$out.err" | tr '\r\n' '  ' | cut -c1-300)" >>"$WORK/failures.txt"
        [[ $r != 1 || $PERF_DONE == 1 || $c != larder-behind ]] || { perf_stop behind-run; PERF_DONE=1; }
        return 0
      fi
      wps=$(awk -F'"' 'NR == 2 {print $4}' "$out")
      writes=$n
      # Redis' own time per write: SET, or the write script (EVALSHA, which
      # carries a loop turn's writes: its total time over the writes) for
      # mapped keys; the flusher's read/ack scripts are EVALSHA too and are in it.
      local cmd=set; [[ $key == w? ]] && cmd=evalsha
      redis_cmd=$(rcli "$REDIS_PORT" info commandstats | tr -d '\r' \
        | awk -F'[:,=]' -v c="cmdstat_$cmd" -v n="$n" '$1 == c { printf "%.2f", $5 / n }')
      if [[ $c == larder-behind || $c == larder-behind-hot ]]; then
        t0=$(now_s); larder_flush "$LARDER_PORT" "after round $r larder-behind"; t1=$(now_s); drain=$(elapsed "$t0" "$t1")
        if [[ $r == 1 && $PERF_DONE == 0 ]]; then perf_stop behind-run; PERF_DONE=1; fi
      fi
      ;;
  esac
  [[ $wps =~ ^[0-9.]+$ ]] || die "no throughput from $c: $(head -c 300 "$out")"
  sleep 0.3   # let pgbench's backends exit and be reaped
  l1=$(cpu_ticks "$LARDER_PID"); r1=$(cpu_ticks "$REDIS_PID"); p1=$(pg_cpu_ticks)
  local cl cr cp
  cl=$(per_write_us "$l0" "$l1" "$writes"); cr=$(per_write_us "$r0" "$r1" "$writes"); cp=$(per_write_us "$p0" "$p1" "$writes")
  {
    echo "$r $c wps $wps"
    [[ $c == direct || $c == pg-* ]] || echo "$r $c cpu_larder $cl"
    [[ $c == pg-* ]] || echo "$r $c cpu_redis $cr"
    [[ $c == direct || $c == larder-pass ]] || echo "$r $c cpu_pg $cp"
    [[ $c != larder-behind* ]] || echo "$r $c drain_s $drain"
    [[ -z $redis_cmd ]] || echo "$r $c redis_cmd_us $redis_cmd"
  } >>"$RESULTS"
  log "round $r $(printf '%-15s' "$c") $(printf '%9.0f' "$wps") writes/s   CPU us/write larder $cl redis $cr pg $cp$([[ $c != larder-behind ]] || echo "   drain after run ${drain}s")${redis_cmd:+   redis usec/cmd $redis_cmd}"
}

if has_phase throughput; then
  read -r -a CONTENDERS <<<"$CONTENDERS_LIST"
  NC=${#CONTENDERS[@]}
  log "phase throughput: $ROUNDS rounds of ${CONTENDERS[*]}"
  # warm-up: connections, scripts, PostgreSQL catalogs; not recorded
  for k in dr dh pt; do
    p=$LARDER_PORT; [[ $k == d? ]] && p=$REDIS_PORT
    run_child timeout 60 redis-benchmark -h 127.0.0.1 -p "$p" -c "$CLIENTS" -n 5000 -r "$KEYRANGE" SET "$k:__rand_int__" x >/dev/null 2>&1
  done
  for k in wb wt; do
    run_child timeout 60 redis-benchmark -h 127.0.0.1 -p "$LARDER_PORT" -c "$CLIENTS" -n 2000 -r "$KEYRANGE" SET "$k:__rand_int__" x >/dev/null 2>&1 \
      || die "warm-up of $k failed"
  done
  larder_flush "$LARDER_PORT" "after the warm-up"
  for ((r = 1; r <= ROUNDS; r++)); do
    order=()
    for ((i = 0; i < NC; i++)); do order+=("${CONTENDERS[$(((i + r - 1) % NC))]}"); done
    if ((r % 2 == 0)); then rev=(); for ((i = NC - 1; i >= 0; i--)); do rev+=("${order[$i]}"); done; order=("${rev[@]}"); fi
    for c in "${order[@]}"; do run_contender "$r" "$c"; done
  done
  rows_b=$(psql_bench -c "SELECT count(*) FROM public.items_b")
  keys_b=$(rcli "$REDIS_PORT" eval "return #redis.call('KEYS', 'wb:*')" 0)
  {
    echo "### Throughput (acked SETs/s; $ROUNDS rounds; redis-benchmark -c $CLIENTS -P $PIPELINE -r $KEYRANGE, $((${#VALUE}))-byte values; pgbench -c $CLIENTS -j 2 -T $PG_SECONDS -M prepared)"
    echo
    "$PY" "$DRIVER" report "$RESULTS"
    echo
    [[ ! -s $WORK/failures.txt ]] || { echo "Failed runs (left out of the medians):"; echo; sed 's/^/    /' "$WORK/failures.txt"; echo; }
    echo "larder-behind CPU includes the flush of its writes (measured until the queue is empty again); 'drain' is that time after the run."
    echo "Check: items_b has $rows_b rows for $keys_b wb:* keys in Redis (equal: every acked behind write reached PostgreSQL)."
    echo
  } >>"$SUMMARY"
fi

# ================================================================ phase 2: flush
hold_lock() {  # instance keyspace -> HOLDER_PID (psql holding the flusher's advisory lock)
  local lock="larder:$1:$2"
  # psql itself in the background (not a function: a subshell would not pass
  # the signal on, and the lock would outlive it)
  PGAPPNAME=wb-lock-holder psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d bench -qAtX -c "SELECT pg_advisory_lock(hashtextextended('$lock', 0))" \
    -c "SELECT pg_sleep(600)" >/dev/null 2>&1 &
  HOLDER_PID=$!; PIDS+=("$HOLDER_PID")
  for _ in $(seq 100); do
    [[ $(psql_admin -d bench -c "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
        WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = 'wb-lock-holder'") -ge 1 ]] && return 0
    sleep 0.1
  done
  die "could not take the flusher's advisory lock"
}

release_lock() {  # ends the holder's session (pg_sleep does not notice a closed client)
  psql_admin -d bench -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
    WHERE application_name = 'wb-lock-holder'" >/dev/null
  stop_pid "$HOLDER_PID"
}

bulk_test() {  # max_batch: the bulk-upsert contender, rows/s into items_x
  local b=$1 sqlf="$WORK/bulk-$1.sql" t0 t1
  "$PY" "$DRIVER" bulksql --table public.items_x --rows "$BURST" --batch "$b" --prefix "x$b-" >"$sqlf"
  t0=$(now_s)
  run_child psql -h 127.0.0.1 -p "$PG_PORT" -U bench -d bench -qAtX -f "$sqlf" >/dev/null \
    || die "bulk upsert failed"
  t1=$(now_s)
  F[$b.bulk]=$(awk -v n="$BURST" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.0f", n / (z - a) }')
  rm -f "$sqlf"
  log "pg-bulk max_batch=$b: $BURST rows upserted by one psql session at ${F[$b.bulk]} rows/s"
}

flush_test() {  # max_batch
  local b=$1 cfg="$WORK/larder-f-$1.yaml" lf="$WORK/larder-f-$1.log" instance pid out wps depth
  write_config "$cfg" "$LARDER_F_PORT" "$b" "$ADMIN_F_PORT" \
"  wf: {key: \"wf:{id}\", table: public.items_f, shape: string, columns: [v], ttl: 1h, write: behind}"
  local rows0; rows0=$(psql_bench -c "SELECT count(*) FROM public.items_f")
  # The flusher takes its lock before it reads the queue: hold it first. The
  # instance id is the one the main Larder claimed in this Redis.
  for _ in $(seq 100); do instance=$(rcli "$REDIS_PORT" get __larder:id); [[ -z $instance ]] || break; sleep 0.1; done
  [[ -n $instance ]] || die "no __larder:id in Redis"
  # -- held: queue the burst while a psql session holds the flusher's lock
  hold_lock "$instance" wf
  start_larder "$cfg" "$LARDER_F_PORT" "$lf"; pid=$STARTED_PID
  out="$WORK/burst-held-$b.csv"
  run_child timeout "$BENCH_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "$LARDER_F_PORT" -c "$CLIENTS" \
    -n "$BURST" -P "$BURST_PIPELINE" -r 1000000000 --csv SET "wf:__rand_int__" "$VALUE" >"$out" 2>"$out.err" \
    || die "burst failed: $(tail -n 3 "$out.err")"
  wps=$(awk -F'"' 'NR == 2 {printf "%.0f", $4}' "$out")
  depth=$("$PY" "$DRIVER" pending --port "$LARDER_F_PORT" | awk '$1 == "wf" {print $2}')
  log "flush max_batch=$b: $BURST writes queued at $wps writes/s with the flusher held; queue depth $depth"
  rm -f "$WORK/drain-ready"
  "$PY" "$DRIVER" drain --port "$LARDER_F_PORT" --keyspace wf --sample-ms 20 --timeout 120 \
    --ready "$WORK/drain-ready" --out "$WORK/drain-held-$b.json" >"$WORK/drain-held-$b.log" 2>&1 &
  local dpid=$!; PIDS+=("$dpid")
  for _ in $(seq 100); do [[ -e $WORK/drain-ready ]] && break; sleep 0.05; done
  [[ $b != "${MAX_BATCHES%% *}" ]] || perf_start "$pid" "drain-$b"
  local l0 r0 p0 l1 r1 p1
  psql_admin -d bench -c "SELECT pg_stat_statements_reset()" -c "SELECT pg_stat_reset_shared('wal')" >/dev/null
  rcli "$REDIS_PORT" config resetstat >/dev/null
  local m0 m1; m0=$(flush_stats "$ADMIN_F_PORT" wf)
  l0=$(cpu_ticks "$pid"); r0=$(cpu_ticks "$REDIS_PID"); p0=$(pg_cpu_ticks)
  release_lock   # the flusher gets the lock at its next try (<= 500 ms)
  wait "$dpid" || die "the queue did not drain in 120 s: $(cat "$WORK/drain-held-$b.log")"
  drop_pid "$dpid"
  local rows; rows=$(( $(psql_bench -c "SELECT count(*) FROM public.items_f") - rows0 ))
  l1=$(cpu_ticks "$pid"); r1=$(cpu_ticks "$REDIS_PID"); p1=$(pg_cpu_ticks)
  m1=$(flush_stats "$ADMIN_F_PORT" wf)
  F[$b.batch]=$(batch_summary "$m0" "$m1")
  # PostgreSQL's share of a batch: the flusher's statements, from pg_stat_statements
  # (APPLY marks the flusher's upsert, whatever its exact SQL)
  psql_admin -d bench -F ' ' -c "SELECT calls, round(mean_exec_time::numeric, 2), round(total_exec_time::numeric),
      CASE WHEN query ~* 'insert into' AND query ~ 'items_f' AND query !~* 'count[(]' THEN 'APPLY ' ELSE '' END
      || regexp_replace(left(query, 60), '\s+', ' ', 'g') FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
      WHERE r.rolname = 'bench' ORDER BY total_exec_time DESC LIMIT 6" >"$WORK/pgss-held-$b.txt" || true
  F[$b.burst_wps]=$wps; F[$b.depth]=$depth; F[$b.rows]=$rows
  F[$b.sustained]=$(jget "$WORK/drain-held-$b.json" sustained_per_s)
  F[$b.overall]=$(jget "$WORK/drain-held-$b.json" overall_per_s)
  F[$b.drain_s]=$("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.2f" % (d["t_zero_s"] - d["t_first_decrease_s"]))' "$WORK/drain-held-$b.json")
  local wal redis_us
  wal=$(psql_admin -d bench -F ' ' -c "SELECT wal_sync, wal_sync_time, wal_write_time FROM pg_stat_wal")
  redis_us=$(rcli "$REDIS_PORT" info commandstats | tr -d '\r' | awk -F'[:,=]' '/^cmdstat_(evalsha|eval):/ { u += $5 } END { print u + 0 }')
  # Per batch: PostgreSQL executing the INSERT, WAL fsync (COMMIT), Redis running
  # the read/ack scripts (and the 20 ms PENDING polls), the rest (round trips,
  # Larder, waiting for a CPU).
  F[$b.split]=$(awk -v m0="$m0" -v m1="$m1" -v wal="$wal" -v r="$redis_us" -v f="$WORK/pgss-held-$b.txt" -v d="${F[$b.drain_s]}" 'BEGIN {
      split(m0, x, " "); split(m1, y, " "); n = y[1] - x[1]; split(wal, w, " ")
      while ((getline line < f) > 0) if (line ~ /APPLY/) { split(line, q, " "); ins = q[3] }
      if (n <= 0) { print "-"; exit }
      tot = d * 1000 / n
      printf "%.1f = PG upsert %.1f + WAL fsync %.1f (%.1f syncs) + Redis scripts %.1f + other %.1f", tot, ins / n, w[2] / n, w[1] / n, r / 1000 / n, tot - ins / n - w[2] / n - r / 1000 / n }')
  [[ $b != "${MAX_BATCHES%% *}" ]] || perf_stop "drain-$b"
  F[$b.cpu]="$(per_write_us "$l0" "$l1" "$rows") / $(per_write_us "$r0" "$r1" "$rows") / $(per_write_us "$p0" "$p1" "$rows")"
  log "flush max_batch=$b held: $rows rows in PostgreSQL; sustained ${F[$b.sustained]} rows/s, overall ${F[$b.overall]} rows/s; CPU us/row larder/redis/pg ${F[$b.cpu]}"
  # -- live: a second burst with the flusher running
  out="$WORK/burst-live-$b.csv"
  local t0 t1
  t0=$(now_s)
  run_child timeout "$BENCH_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "$LARDER_F_PORT" -c "$CLIENTS" \
    -n "$BURST" -P "$BURST_PIPELINE" -r 1000000000 --csv SET "wf:__rand_int__" "$VALUE" >"$out" 2>"$out.err" \
    || die "burst failed: $(tail -n 3 "$out.err")"
  t1=$(now_s)
  F[$b.live_wps]=$(awk -F'"' 'NR == 2 {printf "%.0f", $4}' "$out")
  "$PY" "$DRIVER" drain --port "$LARDER_F_PORT" --keyspace wf --sample-ms 20 --timeout 120 \
    --out "$WORK/drain-live-$b.json" >"$WORK/drain-live-$b.log" 2>&1 || die "live drain did not finish"
  F[$b.live_depth]=$(jget "$WORK/drain-live-$b.json" start_depth)
  F[$b.live_tail]=$(printf '%.2f' "$(jget "$WORK/drain-live-$b.json" t_zero_s)")
  local rows2; rows2=$(( $(psql_bench -c "SELECT count(*) FROM public.items_f") - rows0 ))
  F[$b.live_e2e]=$(awk -v n=$((rows2 - rows)) -v a="$(elapsed "$t0" "$t1")" -v b="${F[$b.live_tail]}" 'BEGIN { printf "%.0f", n / (a + b) }')
  log "flush max_batch=$b live: burst at ${F[$b.live_wps]} writes/s, queue ${F[$b.live_depth]} at its end, empty ${F[$b.live_tail]} s later; $((rows2 - rows)) new rows, ${F[$b.live_e2e]} rows/s end to end"
  stop_pid "$pid"
}

declare -A F=()
if has_phase flush; then
  log "phase flush: bursts of $BURST writes (redis-benchmark -P $BURST_PIPELINE -c $CLIENTS), max_batch $MAX_BATCHES"
  for b in $MAX_BATCHES; do bulk_test "$b"; flush_test "$b"; done
  {
    echo "### Flush throughput (bursts of $BURST SETs on distinct random keys, into a table of $PRELOAD_ROWS+ rows; flush_interval $FLUSH_INTERVAL)"
    echo
    echo "| max_batch | burst writes/s (flusher held) | queued | new rows in PG | drain s | rows/s sustained (90%->10%) | rows/s overall | pg-bulk rows/s (same rows, one client) | sustained / pg-bulk | rows/batch | ms per batch (split) | CPU us/row larder / redis / pg | live burst writes/s | queue at burst end | empty after, s | rows/s end to end (live) | goal >= 100k rows/s and >= 1/3 pg-bulk |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---:|---:|---|"
    for b in $MAX_BATCHES; do
      g1=MISSED; [[ ${F[$b.sustained]} != - ]] && (( ${F[$b.sustained]%.*} >= 100000 )) && g1=met
      ratio=$(awk -v a="${F[$b.sustained]}" -v z="${F[$b.bulk]}" 'BEGIN { if (z > 0 && a != "-") printf "%.2f", a / z; else print "-" }')
      g2=MISSED; awk -v r="$ratio" 'BEGIN { exit !(r != "-" && r + 0 >= 1 / 3) }' && g2=met
      echo "| $b | ${F[$b.burst_wps]} | ${F[$b.depth]} | ${F[$b.rows]} | ${F[$b.drain_s]} | ${F[$b.sustained]} | ${F[$b.overall]} | ${F[$b.bulk]} | $ratio | ${F[$b.batch]%% /*} | ${F[$b.split]} | ${F[$b.cpu]} | ${F[$b.live_wps]} | ${F[$b.live_depth]} | ${F[$b.live_tail]} | ${F[$b.live_e2e]} | 100k: $g1, 1/3 pg-bulk: $g2 |"
    done
    echo
  } >>"$SUMMARY"
fi

# ================================================================ phase: sustained
if has_phase sustained; then
  rate=$SUSTAIN_RATE
  if [[ -z $rate && -s $RESULTS ]]; then
    rate=$(awk '$2 == "larder-behind" && $3 == "wps" { print $4 }' "$RESULTS" | sort -n \
      | awk -v f="$SUSTAIN_FRACTION" '{ v[++n] = $1 } END { if (n) {
          m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2; printf "%.0f", m * f } }')
  fi
  rate=${rate:-10000}
  out="$WORK/sustained.json"
  log "phase sustained: $rate writes/s ($SUSTAIN_FRACTION of larder-behind's median) for ${SUSTAIN_SECONDS}s on distinct keys"
  l0=$(cpu_ticks "$LARDER_PID"); r0=$(cpu_ticks "$REDIS_PID"); p0=$(pg_cpu_ticks)
  run_child timeout "$BENCH_TIMEOUT" "$PY" "$DRIVER" steady --port "$LARDER_PORT" --rate "$rate" \
    --duration "$SUSTAIN_SECONDS" --prefix "wl:s-" --keyspace wl --conns "$LAG_CONNS" --warmup "$LAG_WARMUP" \
    --out "$out" >"$WORK/sustained.log" 2>&1 || log "sustained driver reported errors: $(tail -c 300 "$WORK/sustained.log")"
  l1=$(cpu_ticks "$LARDER_PID"); r1=$(cpu_ticks "$REDIS_PID"); p1=$(pg_cpu_ticks)
  sent=$(jget "$out" sent)
  quarters=$("$PY" -c 'import json,sys; print(" ".join(str(x) for x in json.load(open(sys.argv[1]))["depth_quarters"]))' "$out")
  read -r q1 q2 q3 q4 <<<"$quarters"
  g=MISSED; (( q4 <= (2 * q1 > 2 * MAX_BATCH ? 2 * q1 : 2 * MAX_BATCH) )) && g=met
  larder_flush "$LARDER_PORT" "after the sustained run"
  {
    echo "### Sustained load at $SUSTAIN_FRACTION of the behind ingest rate (${SUSTAIN_SECONDS}s, distinct keys, keyspace wl)"
    echo
    echo "| target writes/s | achieved | queue depth max per quarter of the run | depth p50 | lag (PENDING oldest_age_ms) p50 / p99 / max | ack ms p50 / p99 | CPU us/write larder / redis / pg | errors | goal: queue depth bounded |"
    echo "|---:|---:|---|---:|---|---|---|---:|---|"
    echo "| $rate | $(jget "$out" rate_achieved) | $q1 / $q2 / $q3 / $q4 | $(jget "$out" depth_p50) | $(jget "$out" oldest_age_ms_p50) / $(jget "$out" oldest_age_ms_p99) / $(jget "$out" oldest_age_ms_max) | $(jget "$out" ack_ms_p50) / $(jget "$out" ack_ms_p99) | $(per_write_us "$l0" "$l1" "$sent") / $(per_write_us "$r0" "$r1" "$sent") / $(per_write_us "$p0" "$p1" "$sent") | $(jget "$out" errors) | $g |"
    echo
  } >>"$SUMMARY"
  log "sustained at $rate/s: achieved $(jget "$out" rate_achieved)/s, depth max per quarter $q1 / $q2 / $q3 / $q4: $g"
fi

# ================================================================ phase 3: lag
declare -A L=()
if has_phase lag; then
  log "phase lag: rates $LAG_RATES for ${LAG_SECONDS}s each, flush_interval $FLUSH_INTERVAL, max_batch $MAX_BATCH"
  for rate in $LAG_RATES; do
    out="$WORK/lag-$rate.json"
    m0=$(flush_stats "$ADMIN_PORT" wl)
    l0=$(cpu_ticks "$LARDER_PID"); r0=$(cpu_ticks "$REDIS_PID"); p0=$(pg_cpu_ticks); t0=$(now_s)
    run_child timeout "$BENCH_TIMEOUT" "$PY" "$DRIVER" steady --port "$LARDER_PORT" --rate "$rate" \
      --duration "$LAG_SECONDS" --prefix "wl:$rate-" --keyspace wl --conns "$LAG_CONNS" --warmup "$LAG_WARMUP" \
      --out "$out" >"$WORK/lag-$rate.log" 2>&1 || log "driver at $rate/s reported errors: $(tail -c 300 "$WORK/lag-$rate.log")"
    t1=$(now_s)
    larder_flush "$LARDER_PORT" "after the lag run at $rate/s"
    L[$rate.drain]=$(elapsed "$t1" "$(now_s)")
    m1=$(flush_stats "$ADMIN_PORT" wl)
    l1=$(cpu_ticks "$LARDER_PID"); r1=$(cpu_ticks "$REDIS_PID"); p1=$(pg_cpu_ticks)
    sent=$(jget "$out" sent)
    stats=$(psql_bench -F ' ' <<SQL
WITH w AS (
  SELECT v::bigint AS sent_us,
         extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1e6 AS commit_us
  FROM public.items_l WHERE id LIKE '$rate-%'),
s AS (SELECT min(sent_us) AS t0 FROM w),
l AS (SELECT (commit_us - sent_us) / 1000.0 AS ms FROM w, s WHERE sent_us >= s.t0 + $LAG_WARMUP * 1e6)
SELECT (SELECT count(*) FROM w), count(*),
       round(percentile_disc(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       round(percentile_disc(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       round(percentile_disc(0.999) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       round(max(ms)::numeric, 1)
FROM l
SQL
)
    read -r rows measured p50 p99 p999 pmax <<<"$stats"
    L[$rate]="$(jget "$out" rate_achieved) | $sent | $rows | $p50 | $p99 | $p999 | $pmax | $(jget "$out" oldest_age_ms_p50) / $(jget "$out" oldest_age_ms_p99) / $(jget "$out" oldest_age_ms_max) | $(jget "$out" depth_max) | $(jget "$out" ack_ms_p50) / $(jget "$out" ack_ms_p99) | $(batch_summary "$m0" "$m1") | ${L[$rate.drain]} | $(per_write_us "$l0" "$l1" "$sent") / $(per_write_us "$r0" "$r1" "$sent") / $(per_write_us "$p0" "$p1" "$sent") | $(jget "$out" errors)"
    fi_ms=$(awk -v f="$FLUSH_INTERVAL" 'BEGIN { v = f + 0; if (f ~ /us$/) v /= 1000; else if (f ~ /ms$/) v = v; else if (f ~ /s$/) v *= 1000; print v }')
    g=MISSED; awk -v p="$p99" -v f="$fi_ms" 'BEGIN { exit !(p != "" && p + 0 <= 2 * f) }' && g=met
    L[$rate]+=" | $g"
    log "lag at $rate/s: achieved $(jget "$out" rate_achieved)/s, rows $rows (sent $sent; $measured after the warm-up), commit lag p50 $p50 ms p99 $p99 ms max $pmax ms; PENDING oldest_age p99 $(jget "$out" oldest_age_ms_p99) ms; $g"
  done
  {
    echo "### Flush lag (steady open-loop writes on distinct keys; lag = PostgreSQL commit timestamp - send time; first ${LAG_WARMUP}s left out; flush_interval $FLUSH_INTERVAL, max_batch $MAX_BATCH)"
    echo
    echo "| target writes/s | achieved | sent | rows in PG | lag p50 ms | lag p99 ms | lag p99.9 ms | lag max ms | PENDING oldest_age_ms p50 / p99 / max | depth max | ack ms p50 / p99 | rows/batch / ms per batch | queue empty after the run, s | CPU us/write larder / redis / pg | errors | goal p99 <= 2x flush_interval |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|---:|---|---:|---|"
    for rate in $LAG_RATES; do echo "| $rate | ${L[$rate]} |"; done
    echo
  } >>"$SUMMARY"
fi

curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" >"$WORK/metrics.txt" 2>/dev/null || true
kill -0 "$LARDER_PID" 2>/dev/null || die "larder died during the run (see $WORK/larder.log)"

echo
echo "## Write benchmark, $START_DATE, commit $COMMIT$DIRTY"
echo "$(nproc) cores shared by everything; load average at start $BUSY0; bench processes at nice $NICE;" \
     "redis $(redis-server --version | awk '{print $3}' | cut -d= -f2) (no persistence), PostgreSQL 15 (fsync on, synchronous_commit on, autovacuum $PG_AUTOVACUUM);" \
     "larder threads=$LARDER_THREADS pool_size=$PG_POOL"
echo
cat "$SUMMARY"
if [[ -s $WORK/anomalies.txt ]]; then
  echo "### Anomalies"
  echo
  sed 's/^/- /' "$WORK/anomalies.txt"
  echo
fi
if [[ -n $RESULTS_DIR ]]; then
  mkdir -p "$RESULTS_DIR"
  cp "$SUMMARY" "$RESULTS" "$RESULTS_DIR/"
  cp "$WORK/anomalies.txt" "$RESULTS_DIR/" 2>/dev/null || true
  cp "$WORK"/*.json "$RESULTS_DIR/" 2>/dev/null || true
  cp "$WORK"/perf-*.txt "$WORK/metrics.txt" "$RESULTS_DIR/" 2>/dev/null || true
  log "results copied to $RESULTS_DIR"
fi
log "done"
