#!/usr/bin/env bash
# Runs units of Redis' own TCL test suite (tag 7.0.15) against a private
# redis-server directly and then through Larder (no keyspaces), and prints a
# table of what passed each way. docs/compatibility.md keeps its latest table
# and explains every test that passes directly but not through Larder.
#
#   tests/conformance/redis_suite.sh CHECKOUT_DIR [UNIT...]
#
# CHECKOUT_DIR: a checkout of redis/redis at tag 7.0.15, outside this
# repository (its files are never committed here), e.g.
#   git --git-dir=/work/.mirror/redis+redis/repo worktree add /tmp/redis-7.0.15 7.0.15
# Without one the script says so and exits 0 (it is not part of CI: the units
# take about an hour each way on two cores).
#
# Environment:
#   LARDER_BINARY     the binary (default: build/larder of this repository)
#   SUITE_UNITS       units to run when none are given (default: the issue's list)
#   SUITE_UNIT_LIMIT  seconds one unit may take before it counts as hung (default 900)
#   SUITE_THREADS     Larder's worker threads (default 1: the suite sends some
#                     blocking calls of two clients microseconds apart and
#                     expects Redis' order, which Larder keeps for clients read
#                     by one thread; docs/compatibility.md, "Blocked clients")
#   SUITE_KEEP=1      keep the logs (printed at the end) instead of removing them
#   SUITE_ONLY=direct|larder   run one side only
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

checkout=${1:-}
if [[ -z $checkout ]]; then
  echo "redis_suite: skipped: no Redis checkout given."
  echo "  usage: $0 CHECKOUT_DIR [UNIT...]  (redis/redis at tag 7.0.15, outside this repository)"
  exit 0
fi
shift
if [[ ! -f $checkout/tests/test_helper.tcl ]]; then
  echo "redis_suite: skipped: $checkout is not a redis/redis checkout (no tests/test_helper.tcl)"
  exit 0
fi
checkout=$(cd "$checkout" && pwd)
case $checkout/ in
  "$repo"/*) echo "redis_suite: $checkout is inside this repository; check it out elsewhere" >&2
    exit 2 ;;
esac
tclsh=$(command -v tclsh8.6 || command -v tclsh || true)
if [[ -z $tclsh ]]; then
  echo "redis_suite: skipped: tclsh (8.6) is not installed (apt-get install tcl)"
  exit 0
fi
larder=${LARDER_BINARY:-$repo/build/larder}
if [[ ! -x $larder ]]; then
  echo "redis_suite: $larder not found; build it (cmake --build build --target larder)" >&2
  exit 2
fi
redis_server=$(command -v redis-server)

default_units="unit/type/incr unit/type/string unit/type/list unit/type/list-2 unit/type/list-3
  unit/type/hash unit/type/set unit/type/zset unit/type/stream unit/type/stream-cgroups
  unit/keyspace unit/expire unit/protocol unit/multi unit/quit unit/scan unit/pubsub
  unit/pubsubshard unit/info-command unit/other unit/bitops unit/scripting unit/functions
  unit/tracking unit/introspection unit/introspection-2 unit/limits unit/querybuf unit/acl"
if [[ $# -gt 0 ]]; then
  units=("$@")
else
  read -r -d '' -a units <<<"${SUITE_UNITS:-$default_units}" || true  # words of all lines
fi
limit=${SUITE_UNIT_LIMIT:-900}
# The issue's command line for an external server: no tests that need to
# restart, reconfigure or debug the server.
tags="-slow -needs:debug -needs:repl -needs:config-maxmemory -needs:save -needs:reset"
tags+=" -needs:config-resetstat -needs:pfdebug"

work=$(mktemp -d /tmp/larder-suite-XXXXXX)
pids=()
# shellcheck disable=SC2317  # cleanup is called by the EXIT trap
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  if [[ ${SUITE_KEEP:-0} == 1 ]]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {  # wait_port PORT: up to 10 s for PING to be answered
  for _ in $(seq 100); do
    [[ $(redis-cli -p "$1" ping 2>/dev/null) == PONG ]] && return 0
    sleep 0.1
  done
  return 1
}
start_redis() {  # start_redis DIR -> sets redis_port, redis_pid
  mkdir -p "$1"
  redis_port=$(free_port)
  "$redis_server" --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$1" --protected-mode no >"$1/redis.log" 2>&1 &
  redis_pid=$!
  pids+=("$redis_pid")
  wait_port "$redis_port"
}
start_larder() {  # start_larder DIR REDIS_PORT -> sets larder_port, larder_pid
  larder_port=$(free_port)
  cat >"$1/larder.yaml" <<EOF
listen: 127.0.0.1:$larder_port
threads: ${SUITE_THREADS:-1}
idle_timeout: 0
redis:
  address: 127.0.0.1:$2
limits:
  max_inflight_per_client: 1024
  client_output_limit: 1gb
EOF
  "$larder" --config "$1/larder.yaml" --log-level warn >"$1/larder.log" 2>&1 &
  larder_pid=$!
  pids+=("$larder_pid")
  wait_port "$larder_port"
}
stop() { kill "$@" 2>/dev/null; wait "$@" 2>/dev/null; }

# run_unit UNIT SIDE -> the unit's log in $work/<unit>.<side>.log
run_unit() {
  local unit=$1 side=$2 dir="$work/${1//\//_}.$2" port
  mkdir -p "$dir"
  start_redis "$dir" || { echo "redis-server did not start" >"$dir.log"; return; }
  port=$redis_port
  if [[ $side == larder ]]; then
    start_larder "$dir" "$redis_port" || { echo "larder did not start" >"$dir.log"; return; }
    port=$larder_port
  fi
  # exec: $! is timeout itself, which passes a TERM from cleanup on to tclsh.
  (cd "$checkout" && exec timeout -k 10 "$limit" "$tclsh" tests/test_helper.tcl --host 127.0.0.1 \
    --port "$port" --singledb --ignore-encoding --timeout 120 --tags "$tags" --single "$unit" \
    --skipfile "$here/larder_skips.txt" \
    </dev/null >"$dir.raw" 2>&1) &
  local runner=$!
  pids+=("$runner")
  wait "$runner"
  local status=$?
  sed 's/\x1b\[[0-9;]*m//g' "$dir.raw" >"$dir.log"  # no colours
  [[ $status -eq 124 || $status -eq 137 ]] && echo "[HUNG] unit did not finish in ${limit}s" >>"$dir.log"
  [[ $side == larder ]] && stop "$larder_pid"
  stop "$redis_pid"
}

# summary LOG -> "ok err state"
summary() {
  local log=$1 ok err state="done"
  ok=$(grep -c '^\[ok\]:' "$log")
  err=$(grep -Ec '^\[(err|exception)\]:' "$log")
  if grep -q '^\[HUNG\]\|\[TIMEOUT\]' "$log"; then state=hung
  elif grep -q 'All tests passed' "$log"; then state=passed
  elif [[ $err -eq 0 ]]; then state=stopped
  fi
  echo "$ok $err $state"
}

started=$(date +%s)
for unit in "${units[@]}"; do
  for side in direct larder; do
    [[ -n ${SUITE_ONLY:-} && $SUITE_ONLY != "$side" ]] && continue
    echo "== $unit ($side)" >&2
    run_unit "$unit" "$side"
  done
done

echo
echo "Redis 7.0.15 test units, direct vs through Larder ($(date -u +%Y-%m-%d), $(( ($(date +%s) - started) / 60 )) min)"
echo "runtest --host H --port P --singledb --ignore-encoding --timeout 120 --tags \"$tags\" --single UNIT"
echo "(both sides skip the tests in tests/conformance/larder_skips.txt)"
echo
printf '| %-22s | %-22s | %-22s | %-4s |\n' unit "direct (ok/failed)" "Larder (ok/failed)" same
printf '|%s|%s|%s|%s|\n' "------------------------" "------------------------" "------------------------" "------"
same_count=0
for unit in "${units[@]}"; do
  d=(- - -) l=(- - -)
  f="$work/${unit//\//_}"
  [[ -f $f.direct.log ]] && read -r -a d <<<"$(summary "$f.direct.log")"
  [[ -f $f.larder.log ]] && read -r -a l <<<"$(summary "$f.larder.log")"
  same=no
  if [[ ${d[0]} == "${l[0]}" && ${d[1]} == "${l[1]}" && ${d[2]} == "${l[2]}" ]]; then
    same=yes
    same_count=$((same_count + 1))
  fi
  printf '| %-22s | %-22s | %-22s | %-4s |\n' "$unit" "${d[0]}/${d[1]} ${d[2]}" "${l[0]}/${l[1]} ${l[2]}" "$same"
done
echo
echo "$same_count of ${#units[@]} units end the same through Larder as directly."
# The tests that fail through Larder only, by name.
for unit in "${units[@]}"; do
  f="$work/${unit//\//_}"
  [[ -f $f.larder.log && -f $f.direct.log ]] || continue
  only=$(comm -23 <(grep -E '^\[(err|exception)\]:' "$f.larder.log" | sed 's/ in tests.*//' | sort -u) \
                  <(grep -E '^\[(err|exception)\]:' "$f.direct.log" | sed 's/ in tests.*//' | sort -u))
  hung=$(grep -h '^\[HUNG\]\|\[TIMEOUT\]' "$f.larder.log" | head -1)
  if [[ -n $only || -n $hung ]]; then
    echo
    echo "$unit, through Larder only:"
    [[ -n $only ]] && echo "  ${only//$'\n'/$'\n'  }"
    [[ -n $hung ]] && echo "  $hung (last test: $(grep -E '^\[(ok|err)\]' "$f.larder.log" | tail -1))"
  fi
done
exit 0
