#!/usr/bin/env bash
# Runs the PostgreSQL client tests against a throwaway PostgreSQL 15: initdb in
# a temporary directory, a free loopback port, trust auth, one database. The
# server is stopped and the directory removed on exit, whatever happens.
#
#   run_pg_tests.sh <larder_pg_tests binary> [Catch2 arguments...]
#
# PostgreSQL refuses to run as root: as root, the server tools run as the
# `postgres` account (runuser) and the directory is handed to it.
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 <larder_pg_tests binary> [catch2 args...]" >&2
  exit 2
fi
binary=$(realpath "$1")
shift
pg_bin=${LARDER_PG_BIN:-/usr/lib/postgresql/15/bin}
for tool in initdb pg_ctl createdb; do
  if [[ ! -x $pg_bin/$tool ]]; then
    echo "PostgreSQL tool $pg_bin/$tool not found (set LARDER_PG_BIN)" >&2
    exit 1
  fi
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/larder-pg-test.XXXXXX")
as_pg=()
if [[ $(id -u) -eq 0 ]]; then
  chown postgres: "$dir"
  as_pg=(runuser -u postgres --)
fi

stop_server() {
  if [[ -f $dir/data/postmaster.pid ]]; then
    (cd "$dir" && "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$dir/data" -m immediate -w stop) \
      >/dev/null 2>&1 || true
  fi
}

cleanup() {
  local status=$?
  stop_server
  rm -rf "$dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  # Bind port 0 and report what the kernel chose; fall back to a random port.
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  else
    echo $((20000 + RANDOM % 20000))
  fi
}

cd "$dir"  # the postgres account may not be able to enter the caller's directory
if ! "${as_pg[@]}" "$pg_bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
  --no-locale >"$dir/initdb.log" 2>&1; then
  echo "initdb failed:" >&2
  cat "$dir/initdb.log" >&2
  exit 1
fi

# Another process may take the port between choosing and binding it: retry.
port=
for attempt in 1 2 3; do
  candidate=$(free_port)
  if "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
    -o "-p $candidate -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c fsync=off" \
    start >/dev/null 2>&1; then
    port=$candidate
    break
  fi
  stop_server
  echo "PostgreSQL did not start on port $candidate (attempt $attempt)" >&2
done
if [[ -z $port ]]; then
  echo "could not start PostgreSQL; server log:" >&2
  cat "$dir/postgres.log" >&2 || true
  exit 1
fi

"${as_pg[@]}" "$pg_bin/createdb" -h 127.0.0.1 -p "$port" -U postgres larder_test
export LARDER_TEST_PG_DSN="host=127.0.0.1 port=$port user=postgres dbname=larder_test"
echo "PostgreSQL 15 on 127.0.0.1:$port (data in $dir)"

# Not exec: the trap must still stop the server after the tests.
"$binary" "$@"
