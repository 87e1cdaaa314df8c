#!/usr/bin/env bash
# Larder soak test: a bounded mixed workload with faults (Redis restart,
# PostgreSQL restart, client kills, one Larder kill -9), then a check that no
# acknowledged write was lost and that Larder's RSS stayed flat. See docs/soak.md.
#
#   tests/soak/soak.sh                              # 10 minutes, build/larder
#   tests/soak/soak.sh --duration 60                # a short run
#   tests/soak/soak.sh --build --duration 60        # build the work tree first (RelWithDebInfo,
#                                                   # in $SOAK_BUILD_DIR, default /tmp/larder-soak-build)
#   tests/soak/soak.sh --larder /path/to/larder --out /tmp/soak-results --seed 42
#
# Every other option goes to soak.py (--workers, --threads, --rate, --rss-bound,
# --warmup, --faults, --restarts, --no-larder-kill, --keep-journals, --build-label,
# --inject-loss; see `soak.sh --help`). Exit status: 0 pass, 1 a check failed, 2 the soak could not run
# (124 when the hard time limit, duration + 15 minutes, was hit).
#
# Everything listens on 127.0.0.1 only, in temp dirs; the processes it starts
# are stopped on exit. Needs redis-server, PostgreSQL 15 (/usr/lib/postgresql/15)
# and Debian's python3-redis (/usr/bin/python3), as scripts/setup.sh installs.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

duration=600
build=0
pass=()
while (($#)); do
  case $1 in
    --build) build=1 ;;
    --duration) [[ $# -ge 2 ]] || die "--duration needs a value"; duration=$2; pass+=("$1" "$2"); shift ;;
    --duration=*) duration=${1#*=}; pass+=("$1") ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exec "$PY" "$HERE/soak.py" --help ;;
    *) pass+=("$1") ;;
  esac
  shift
done
[[ $duration =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--duration must be a number of seconds"

for tool in redis-server redis-cli timeout; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh installs it)"
done
[[ -x ${LARDER_PG_BIN:-/usr/lib/postgresql/15/bin}/initdb ]] || die "no PostgreSQL 15 in /usr/lib/postgresql/15/bin"
"$PY" -c 'import redis' 2>/dev/null || die "$PY has no 'redis' module (apt-get install python3-redis)"

if [[ $build == 1 ]]; then
  bdir=${SOAK_BUILD_DIR:-/tmp/larder-soak-build}
  log "building larder (RelWithDebInfo) from $ROOT in $bdir"
  cmake -S "$ROOT" -B "$bdir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$bdir.cmake.log" 2>&1 \
    || { tail -n 30 "$bdir.cmake.log" >&2; die "cmake configure failed"; }
  cmake --build "$bdir" -j2 --target larder >"$bdir.build.log" 2>&1 \
    || { tail -n 30 "$bdir.build.log" >&2; die "build failed"; }
  export LARDER_BINARY="$bdir/larder"
  label="work tree at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  [[ -z $(git -C "$ROOT" status --porcelain --untracked-files=no -- src include CMakeLists.txt 2>/dev/null) ]] \
    || label+=" + uncommitted changes in src/include"
  export LARDER_SOAK_BUILD_LABEL=${LARDER_SOAK_BUILD_LABEL:-$label}
fi

ulimit -n 65536 2>/dev/null || true
limit=$(awk -v d="$duration" 'BEGIN { printf "%d", d + 900 }')
rc=0
timeout --signal=TERM --kill-after=60 "$limit" "$PY" "$HERE/soak.py" "${pass[@]}" || rc=$?
[[ $rc != 124 ]] || log "ERROR: the soak hit its hard time limit of ${limit}s"
exit "$rc"
