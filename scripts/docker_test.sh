#!/usr/bin/env bash
# End-to-end test of the Docker image (docker/Dockerfile) on this machine.
#
#   scripts/docker_test.sh [--cold] [--rebuild-base] [--no-cache] [--no-compose] [--keep]
#
# What it does, each step bounded in time and timed:
#   1. tools    installs docker.io (and debootstrap, docker-compose when needed)
#               with apt-get, and starts dockerd (vfs storage, no bridge, no
#               iptables) when no Docker engine answers; it stops that dockerd
#               again at the end.
#   2. base     builds the base image debian:bookworm with debootstrap and
#               `docker import` when it is missing (no registry is reachable
#               here). Cached: skipped when the tag exists.
#   3. images   builds larder:dev from docker/Dockerfile, and stand-ins for
#               redis:7 and postgres:15 (Debian's redis-server and postgresql-15
#               on the same base; the PostgreSQL one follows the official image's
#               POSTGRES_* / docker-entrypoint-initdb.d conventions). It uses
#               BuildKit when the client has it (docker.io's does): on vfs the
#               classic builder copies the whole file system for every
#               instruction and takes about twice as long.
#   4. run      starts Redis, PostgreSQL (with docker/init.sql) and Larder with
#               `docker run --network host` on loopback ports that stay clear of
#               the defaults, then checks: the HEALTHCHECK turns healthy, /readyz
#               answers 200 inside the container, pass-through, a read-through
#               round trip (row inserted in PostgreSQL -> HGETALL via Larder ->
#               cached in Redis), and a write round trip (HSET via Larder -> row
#               in PostgreSQL within a few seconds).
#   5. compose  brings docker/compose.yaml up on the same ports, waits for the
#               example app to read user:1 through Larder, and takes it down.
#
# --cold          --rebuild-base and --no-cache: everything from scratch
# --rebuild-base  delete debian:bookworm first and debootstrap it again
# --no-cache      build the images without Docker's build cache
# --no-compose    skip step 5
# --keep          leave the step-4 containers running (skips step 5); only
#                 when the engine was already running, since a dockerd this
#                 script started is stopped at the end
#
# Runs as root (re-runs itself with sudo otherwise). Exit status 0 only when
# every check passed; the last line is "docker_test: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "docker_test: run as root" >&2; exit 2; }
  exec sudo -E bash "$0" "$@"
fi

rebuild_base=0 no_cache=0 run_compose=1 keep=0
for arg in "$@"; do
  case $arg in
    --cold) rebuild_base=1 no_cache=1 ;;
    --rebuild-base) rebuild_base=1 ;;
    --no-cache) no_cache=1 ;;
    --no-compose) run_compose=0 ;;
    --keep) keep=1 run_compose=0 ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d; s/^# \{0,1\}//; p}' "$0"; exit 0 ;;
    *) echo "docker_test: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

# Loopback ports, away from the defaults (6379/5432/6380/9121) and from the
# ones scripts/demo.sh and the integration tests use.
REDIS_PORT=6479
PG_PORT=5479
LARDER_PORT=6480
ADMIN_PORT=9179
# Secrets reach Larder only as environment variables; the PostgreSQL one has a
# space, which docker/larder.yaml's quoting must survive.
REDIS_SECRET="redis-$RANDOM$RANDOM"
PG_SECRET="pg secret $RANDOM"

BASE_IMAGE=debian:bookworm
LARDER_IMAGE=larder:dev
REDIS_IMAGE=larder-test/redis:7
POSTGRES_IMAGE=larder-test/postgres:15
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
C_REDIS=larder-test-redis
C_PG=larder-test-postgres
C_LARDER=larder-test-larder
COMPOSE_PROJECT=larder-test
export DEBIAN_FRONTEND=noninteractive

work=$(mktemp -d /tmp/larder-docker-test.XXXXXX)
started=$(date +%s)
dockerd_pid=""
compose=()
compose_up=0
passed=0
failed=0
failures=()

# ---------------------------------------------------------------- helpers
say() { printf '%s\n' "docker_test: $*"; }
die() { say "ERROR: $*" >&2; exit 1; }

phase_name="" phase_start=0 phase_report=()
phase() {
  phase_end
  phase_name=$1
  phase_start=$(date +%s)
  printf '\n== %s\n' "$phase_name"
}
phase_end() {
  if [ -n "$phase_name" ]; then
    local took=$(($(date +%s) - phase_start))
    say "phase '$phase_name' took ${took}s"
    phase_report+=("$(printf '%-8s %5ss' "$phase_name" "$took")")
    phase_name=""
  fi
}

pass() { passed=$((passed + 1)); say "PASS $*"; }
fail() { failed=$((failed + 1)); failures+=("$*"); say "FAIL $*"; }

# wait_for SECONDS COMMAND...: runs COMMAND every half second until it succeeds
# or SECONDS have passed (then returns 1).
wait_for() {
  local limit=$1 deadline
  shift
  deadline=$(($(date +%s) + limit))
  while :; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

# apt_install PACKAGE...: installs the ones that are missing.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "apt-get install ${missing[*]}"
  timeout 10m apt-get update -qq
  timeout 20m apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$work/apt.log" 2>&1 ||
    { tail -20 "$work/apt.log"; die "apt-get install ${missing[*]} failed"; }
}

# The Docker client: Debian's (docker.io) when installed, since it matches the
# dockerd this script may start and has BuildKit built in; else the one on PATH.
docker_bin=docker
pick_client() { if [ -x /usr/bin/docker ]; then docker_bin=/usr/bin/docker; else docker_bin=$(command -v docker); fi; }
d() { timeout "${DOCKER_TIMEOUT:-120}" "$docker_bin" "$@"; }
engine_answers() { timeout 15 "$docker_bin" info >/dev/null 2>&1; }
# Prints Larder's reply, through Larder, with the redis-cli of the Redis container.
via_larder() { d exec "$C_REDIS" redis-cli -h 127.0.0.1 -p "$LARDER_PORT" "$@"; }
via_redis() { d exec "$C_REDIS" redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --no-auth-warning -a "$REDIS_SECRET" "$@"; }
# psql as the superuser over the container's local socket.
pg_sql() { d exec "$C_PG" psql -v ON_ERROR_STOP=1 -qAt -U larder -d larder -c "$1"; }

remove_containers() {
  local c
  for c in "$C_LARDER" "$C_PG" "$C_REDIS"; do
    DOCKER_TIMEOUT=60 d rm -f "$c" >/dev/null 2>&1 || true
  done
}

compose_down() {
  [ ${#compose[@]} -gt 0 ] || return 0
  timeout 90 "${compose[@]}" down --volumes --timeout 5 >/dev/null 2>&1 || true
}

# The script's own stdout and stderr, for cleanup: a signal can arrive while a
# command with its output sent to /dev/null or a log file is running.
exec 3>&1 4>&2
cleanup() {
  local status=$?
  set +e
  exec 1>&3 2>&4
  phase_end
  if [ -n "$dockerd_pid" ] || engine_answers; then
    if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ]; then
      for c in "$C_LARDER" "$C_PG" "$C_REDIS"; do
        if DOCKER_TIMEOUT=10 d inspect "$c" >/dev/null 2>&1; then
          echo "---- last log lines of $c"
          DOCKER_TIMEOUT=10 d logs --tail 25 "$c" 2>&1 | sed 's/^/  /'
        fi
      done
    fi
    if [ "$compose_up" -eq 1 ]; then
      [ "$status" -eq 0 ] && [ "$failed" -eq 0 ] ||
        timeout 20 "${compose[@]}" logs --no-color --tail 20 2>&1 | sed 's/^/  /'
      compose_down
    fi
    if [ "$keep" -eq 1 ] && [ -z "$dockerd_pid" ]; then
      say "--keep: containers left running; remove them with: docker rm -f $C_LARDER $C_PG $C_REDIS"
    else
      remove_containers
    fi
  fi
  if [ -n "$dockerd_pid" ]; then
    say "stopping the dockerd this script started (pid $dockerd_pid)"
    kill -TERM "$dockerd_pid" 2>/dev/null
    for _ in $(seq 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$dockerd_pid" 2>/dev/null && kill -KILL "$dockerd_pid" 2>/dev/null
  fi
  rm -rf "$work"
  echo
  say "timings:"
  for line in "${phase_report[@]}"; do echo "  $line"; done
  echo "  total    $(($(date +%s) - started))s"
  for f in "${failures[@]}"; do say "failed: $f"; done
  [ "$status" -eq 0 ] || say "stopped early with status $status"
  echo "docker_test: $passed passed, $failed failed"
  if [ "$status" -eq 0 ] && [ "$failed" -ne 0 ]; then status=1; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- 1. tools
phase tools
command -v docker >/dev/null || apt_install docker.io
pick_client
if engine_answers; then
  say "using the running Docker engine ($(d version --format '{{.Server.Version}}' 2>/dev/null))"
else
  command -v dockerd >/dev/null || apt_install docker.io
  pick_client
  say "no Docker engine answers: starting dockerd --storage-driver=vfs --iptables=false --bridge=none"
  dockerd --storage-driver=vfs --iptables=false --bridge=none >"$work/dockerd.log" 2>&1 3>&- 4>&- &
  dockerd_pid=$!
  if ! wait_for 60 engine_answers; then
    tail -20 "$work/dockerd.log"
    die "dockerd did not answer within 60s"
  fi
  say "dockerd $(d version --format '{{.Server.Version}}') is up (pid $dockerd_pid)"
fi
# BuildKit: built into clients before 23.0 (docker.io 20.10); newer ones need buildx.
if [ -z "${DOCKER_BUILDKIT:-}" ]; then
  client_version=$(d version --format '{{.Client.Version}}' 2>/dev/null || echo 0)
  if [ "${client_version%%.*}" -lt 23 ] 2>/dev/null || d buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=1
  else
    export DOCKER_BUILDKIT=0
  fi
fi
build_args=(--network host)
if [ "$DOCKER_BUILDKIT" = 1 ]; then
  build_args+=(--progress plain)
  say "client $docker_bin, builder: BuildKit"
else
  say "client $docker_bin, builder: classic (no BuildKit in this client: expect a slow build on vfs)"
fi
[ "$no_cache" -eq 0 ] || build_args+=(--no-cache)
# A stale run (killed before its cleanup) may have left these behind.
remove_containers

# ---------------------------------------------------------------- 2. base image
phase base
if [ "$rebuild_base" -eq 1 ] && d image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  say "--rebuild-base: removing $BASE_IMAGE"
  d image rm -f "$BASE_IMAGE" >/dev/null
fi
if d image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  say "$BASE_IMAGE exists: no debootstrap needed"
else
  command -v debootstrap >/dev/null || apt_install debootstrap
  rootfs="$work/rootfs"
  say "debootstrap --variant=minbase bookworm from $DEBIAN_MIRROR (takes a few minutes)"
  if ! timeout 30m debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1; then
    tail -20 "$work/debootstrap.log"
    die "debootstrap failed"
  fi
  # The same APT sources as the official image (updates and security too), and
  # its habit of dropping downloaded packages.
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: ${DEBIAN_MIRROR}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${DEBIAN_MIRROR}-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
  # debootstrap unmounts /proc and /sys itself; make sure before tar and rm.
  if findmnt -rno TARGET | grep -q "^$rootfs"; then
    findmnt -rno TARGET | grep "^$rootfs" | sort -r | xargs -r -n1 umount -l
  fi
  say "docker import -> $BASE_IMAGE"
  tar --numeric-owner -C "$rootfs" -c . |
    d import --change 'CMD ["bash"]' --message "debootstrap --variant=minbase bookworm" - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
fi
say "$BASE_IMAGE: $(($(d image inspect --format '{{.Size}}' "$BASE_IMAGE") / 1000000)) MB"

# ---------------------------------------------------------------- 3. images
phase images
say "docker build -f docker/Dockerfile -t $LARDER_IMAGE (context: CMakeLists.txt include src docker)"
# Only what the Dockerfile copies is sent: the work tree may hold GBs of build*/ dirs.
if ! tar -C "$root" -c CMakeLists.txt include src docker |
  DOCKER_TIMEOUT=45m d build "${build_args[@]}" -f docker/Dockerfile -t "$LARDER_IMAGE" - >"$work/build-larder.log" 2>&1; then
  tail -40 "$work/build-larder.log"
  die "docker build of $LARDER_IMAGE failed"
fi
say "$LARDER_IMAGE: $(d run --rm --entrypoint larder "$LARDER_IMAGE" --version), $(($(d image inspect --format '{{.Size}}' "$LARDER_IMAGE") / 1000000)) MB"

# Stand-ins for the official redis:7 and postgres:15 images.
mkdir -p "$work/redis-image" "$work/postgres-image"
cat >"$work/redis-image/Dockerfile" <<EOF
FROM $BASE_IMAGE
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \\
 && rm -rf /var/lib/apt/lists/* && mkdir /data && chown redis:redis /data
WORKDIR /data
USER redis
CMD ["redis-server"]
EOF
cat >"$work/postgres-image/Dockerfile" <<EOF
FROM $BASE_IMAGE
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \\
 && rm -rf /var/lib/apt/lists/* /var/lib/postgresql/15/main \\
 && mkdir -p /var/lib/postgresql/data /docker-entrypoint-initdb.d \\
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql && chmod 700 /var/lib/postgresql/data
COPY docker-entrypoint.sh /usr/local/bin/
ENV PATH=/usr/lib/postgresql/15/bin:\$PATH PGDATA=/var/lib/postgresql/data
USER postgres
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
EOF
cat >"$work/postgres-image/docker-entrypoint.sh" <<'EOF'
#!/bin/bash
# The part of the official postgres image's entrypoint that Larder's examples
# use: POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB, the scripts in
# /docker-entrypoint-initdb.d run once on an empty PGDATA, PGPORT.
set -euo pipefail
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  initdb -D "$PGDATA" -U "$user" --auth-local=trust --auth-host=scram-sha-256 \
    --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") >/dev/null
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
  [ "$db" = postgres ] || psql -v ON_ERROR_STOP=1 -q -U "$user" -d postgres -c "CREATE DATABASE \"$db\""
  for f in /docker-entrypoint-initdb.d/*; do
    case $f in
      *.sql) echo "running $f"; psql -v ON_ERROR_STOP=1 -q -U "$user" -d "$db" -f "$f" ;;
      *.sh) echo "running $f"; . "$f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "PostgreSQL init process complete; ready for start up."
fi
exec "$@"
EOF
chmod +x "$work/postgres-image/docker-entrypoint.sh"
for pair in "redis-image:$REDIS_IMAGE" "postgres-image:$POSTGRES_IMAGE"; do
  dir=${pair%%:*} tag=${pair#*:}
  say "docker build $tag (stand-in)"
  if ! DOCKER_TIMEOUT=20m d build "${build_args[@]}" -t "$tag" "$work/$dir" >"$work/build-$dir.log" 2>&1; then
    tail -30 "$work/build-$dir.log"
    die "docker build of $tag failed"
  fi
done

# ---------------------------------------------------------------- 4. run
phase run
say "Redis on 127.0.0.1:$REDIS_PORT, PostgreSQL on $PG_PORT, Larder on $LARDER_PORT (admin $ADMIN_PORT)"
d run -d --name "$C_REDIS" --network host "$REDIS_IMAGE" \
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --requirepass "$REDIS_SECRET" --save "" >/dev/null
POSTGRES_PASSWORD=$PG_SECRET d run -d --name "$C_PG" --network host \
  -e POSTGRES_USER=larder -e POSTGRES_DB=larder -e POSTGRES_PASSWORD -e PGPORT="$PG_PORT" \
  -v "$root/docker/init.sql:/docker-entrypoint-initdb.d/init.sql:ro" \
  "$POSTGRES_IMAGE" postgres -c listen_addresses=127.0.0.1 >/dev/null
redis_pong() { [ "$(via_redis PING)" = PONG ]; }
wait_for 30 redis_pong || die "Redis did not answer PING within 30s"
wait_for 60 d exec "$C_PG" pg_isready -q -h 127.0.0.1 -U larder -d larder ||
  die "PostgreSQL did not accept TCP connections within 60s"
say "Redis and PostgreSQL are up"

# The passwords go in through the environment only (-e NAME without a value).
# Read-only root, no capabilities: as the Kubernetes example in docs/deployment.md.
REDIS_PASSWORD=$REDIS_SECRET PG_PASSWORD=$PG_SECRET d run -d --name "$C_LARDER" --network host \
  -e LARDER_LISTEN="127.0.0.1:$LARDER_PORT" -e LARDER_ADMIN="127.0.0.1:$ADMIN_PORT" -e LARDER_THREADS=2 \
  -e REDIS_ADDRESS="127.0.0.1:$REDIS_PORT" -e PG_PORT="$PG_PORT" -e REDIS_PASSWORD -e PG_PASSWORD \
  --read-only --cap-drop ALL --security-opt no-new-privileges --health-interval 1s \
  "$LARDER_IMAGE" >/dev/null

t0=$(date +%s)
larder_healthy() { [ "$(d inspect -f '{{.State.Health.Status}}' "$C_LARDER")" = healthy ]; }
if wait_for 30 larder_healthy; then
  pass "HEALTHCHECK: $C_LARDER is healthy after $(($(date +%s) - t0))s"
else
  fail "HEALTHCHECK: $C_LARDER not healthy within 30s (state: $(d inspect -f '{{.State.Status}} {{.State.Health.Status}}' "$C_LARDER" 2>&1))"
fi

if wait_for 30 d exec "$C_LARDER" larder-probe /readyz; then
  pass "/readyz answers 200 inside the container ($(d exec "$C_LARDER" larder-probe /readyz))"
else
  fail "/readyz: no 200 within 30s (last: $(d exec "$C_LARDER" larder-probe /readyz 2>&1 | head -1))"
fi

# Pass-through of an unmapped key.
reply=$(via_larder SET docker-test:greeting hello 2>&1; via_larder GET docker-test:greeting 2>&1) || true
if [ "$reply" = $'OK\nhello' ]; then
  pass "pass-through: SET/GET docker-test:greeting via Larder"
else
  fail "pass-through: SET/GET via Larder gave: $reply"
fi

# Read-through: a row inserted in PostgreSQL, read via Larder, then cached in Redis.
# hash_pairs turns HGETALL output (field, value, ...) into sorted "field=value" lines.
hash_pairs() { paste -d= - - | sort; }
expected=$'email=grace@example.org\nname=Grace Hopper'
pg_sql "INSERT INTO users (id, name, email) VALUES (1001, 'Grace Hopper', 'grace@example.org')"
got=$(via_larder HGETALL user:1001 2>&1 | hash_pairs)
if [ "$got" = "$expected" ]; then
  pass "read-through: row 1001 inserted in PostgreSQL, HGETALL user:1001 via Larder returns it"
else
  fail "read-through: HGETALL user:1001 via Larder gave '$got', want '$expected'"
fi
cached=$(via_redis HGETALL user:1001 2>&1 | hash_pairs)
if [ "$cached" = "$expected" ]; then
  pass "read-through: user:1001 is now cached in Redis (ttl $(via_redis TTL user:1001)s)"
else
  fail "read-through: Redis holds '$cached' for user:1001, want '$expected'"
fi
got=$(via_larder HGET user:1 name 2>&1)
if [ "$got" = "Ada Lovelace" ]; then
  pass "read-through: HGET user:1 name = 'Ada Lovelace' (row of docker/init.sql)"
else
  fail "read-through: HGET user:1 name via Larder gave '$got'"
fi

# Write: HSET via Larder, then the row must reach PostgreSQL (write: behind).
reply=$(via_larder HSET user:1002 name "Katherine Johnson" email katherine@example.org 2>&1) || true
if [[ $reply == *"not supported yet"* ]]; then
  fail "write round trip: Larder refuses writes to mapped keys (\"$reply\"): write-behind is not implemented in this build yet"
elif [[ $reply == *ERR* ]]; then
  fail "write round trip: HSET user:1002 via Larder answered: $reply"
else
  row_is_there() { [ "$(pg_sql "SELECT name || '|' || coalesce(email, '') FROM users WHERE id = 1002")" = "Katherine Johnson|katherine@example.org" ]; }
  t0=$(date +%s)
  if wait_for 15 row_is_there; then
    pass "write round trip: HSET user:1002 via Larder (reply $reply) -> row in PostgreSQL after $(($(date +%s) - t0))s"
  else
    fail "write round trip: HSET user:1002 answered '$reply' but no matching row in PostgreSQL after 15s (row: '$(pg_sql "SELECT id, name, email FROM users WHERE id = 1002" 2>&1)')"
  fi
fi

# ---------------------------------------------------------------- 5. compose
if [ "$run_compose" -eq 1 ]; then
  phase compose
  remove_containers
  if d compose version >/dev/null 2>&1; then
    compose=("$docker_bin" compose)
  else
    command -v docker-compose >/dev/null || apt_install docker-compose
    compose=(docker-compose)
  fi
  say "${compose[*]} -f docker/compose.yaml up -d --no-build (images: $REDIS_IMAGE, $POSTGRES_IMAGE, $LARDER_IMAGE)"
  compose+=(-p "$COMPOSE_PROJECT" -f "$root/docker/compose.yaml")
  export REDIS_IMAGE POSTGRES_IMAGE REDIS_PORT PG_PORT LARDER_PORT ADMIN_PORT
  export REDIS_PASSWORD=$REDIS_SECRET PG_PASSWORD=$PG_SECRET
  compose_up=1
  # On vfs every container start copies a whole file system: on a loaded
  # machine that outlasts docker-compose's 60 s HTTP timeout.
  if ! COMPOSE_HTTP_TIMEOUT=600 timeout 900 "${compose[@]}" up -d --no-build \
      >"$work/compose-up.log" 2>&1; then
    tail -20 "$work/compose-up.log"
    fail "compose: up failed"
  else
    app_read_user1() { timeout 20 "${compose[@]}" logs --no-color app 2>/dev/null | grep -q "name Ada Lovelace email ada@example.org"; }
    if wait_for 60 app_read_user1; then
      pass "compose: the app container read user:1 through Larder ($(timeout 20 "${compose[@]}" logs --no-color app 2>/dev/null | grep -m1 -o 'HGETALL user:1 -> .*'))"
    else
      fail "compose: the app container did not read user:1 within 60s"
    fi
  fi
  compose_down
  compose_up=0
fi
phase_end
