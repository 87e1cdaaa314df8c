#!/usr/bin/env bash
# Near-cache benchmark: zipfian hot-key GETs through Larder with the near cache
# on, against redis-server directly and Larder without it, in the same run; then
# the invalidation delay (write acknowledged at Larder A -> fresh read at B).
# Results: tests/bench/near_cache/RESULTS.md, docs/near_cache.md.
#
#   tests/bench/near_cache/near_bench.sh
#
# Builds nc_load (g++ -O2) and, unless LARDER_BIN is given, Larder itself
# (RelWithDebInfo in build-bench/); starts its own redis-server, PostgreSQL and
# two Larders on free loopback ports (tests/integration/harness.py), all gone
# at exit.
#
# Environment (defaults in brackets):
#   ROUNDS [3]  DURATION [5] seconds per mode per round  KEYS [100000]  THETA [0.99]
#   CONNECTIONS [50]  PIPELINE [1]  LOAD_THREADS [1]  LARDER_THREADS [2]
#   VALUE_BYTES [100]  MAX_BYTES [64mb]  MAX_TTL [10s]  DELAY_ROUNDS [1000]
#   LARDER_BIN [<repo>/build-bench/larder]   BUILD [1]: 0 uses LARDER_BIN as it is
#   PERF [0]: 1 profiles Larder (perf record -e cpu-clock) during one more larder-near run
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
HERE="$ROOT/tests/bench/near_cache"
LARDER_BIN=${LARDER_BIN:-$ROOT/build-bench/larder}
BUILD=${BUILD:-1}
WORK=$(mktemp -d /tmp/larder-near-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

if [[ $BUILD == 1 && $LARDER_BIN == "$ROOT/build-bench/larder" ]]; then
  cmake -S "$ROOT" -B "$ROOT/build-bench" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLARDER_TESTS=OFF >/dev/null
  cmake --build "$ROOT/build-bench" -j"$(nproc)" --target larder >/dev/null
fi
g++ -std=c++20 -O2 -Wall -Wextra -pthread -o "$WORK/nc_load" "$HERE/nc_load.cpp"

export ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-5}
export LOAD_BIN="$WORK/nc_load" LARDER_BINARY="$LARDER_BIN" PYTHONDONTWRITEBYTECODE=1
# The whole run is bounded: rounds x modes x duration, plus set-up and the delay phase.
timeout $(( ROUNDS * 3 * ${DURATION%.*} + 600 )) /usr/bin/python3 "$HERE/near_bench.py"
