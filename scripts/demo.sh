#!/usr/bin/env bash
# README command 1: set up this machine, build Larder, start a local Redis and
# PostgreSQL (with a demo table) under .larder/, and run Larder in the
# foreground with config/demo.yaml. Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target larder

data="$root/.larder"
redis_port=6390
pg_port=5440
pg_bin=/usr/lib/postgresql/15/bin
mkdir -p "$data/redis" "$data/pg"

# PostgreSQL refuses to run as root: run it as the postgres user then.
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  as_pg=(runuser -u postgres --)
  chown postgres:postgres "$data/pg"
fi

cleanup() {
  redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$data/pg/db" -m fast stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$data/redis" --daemonize yes \
  --appendonly yes --appendfsync everysec --logfile "$data/redis/redis.log"

if [ ! -f "$data/pg/db/PG_VERSION" ]; then
  "${as_pg[@]}" "$pg_bin/initdb" -D "$data/pg/db" -U postgres -A trust >/dev/null
fi
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$data/pg/db" -l "$data/pg/postgres.log" -w start \
  -o "-p $pg_port -k $data/pg -c listen_addresses=127.0.0.1" >/dev/null
psql_admin=(psql -h 127.0.0.1 -p "$pg_port" -U postgres -v ON_ERROR_STOP=1 -q)
"${psql_admin[@]}" -d postgres -tc "SELECT 1 FROM pg_roles WHERE rolname='larder'" | grep -q 1 ||
  "${psql_admin[@]}" -d postgres -c "CREATE ROLE larder LOGIN"
"${psql_admin[@]}" -d postgres -tc "SELECT 1 FROM pg_database WHERE datname='larder'" | grep -q 1 ||
  "${psql_admin[@]}" -d postgres -c "CREATE DATABASE larder OWNER larder"
psql -h 127.0.0.1 -p "$pg_port" -U larder -d larder -v ON_ERROR_STOP=1 -q <<'SQL'
CREATE TABLE IF NOT EXISTS users (
  id    bigint PRIMARY KEY,
  name  text NOT NULL,
  email text
);
INSERT INTO users VALUES (1, 'Ada Lovelace', 'ada@example.org'),
                         (2, 'Alan Turing', 'alan@example.org')
ON CONFLICT (id) DO NOTHING;
SQL

cat <<EOF

  Larder is starting on 127.0.0.1:6380 (Redis on $redis_port, PostgreSQL on $pg_port).
  Point any Redis client at it, for example:

      redis-cli -p 6380 HGETALL user:1
      redis-cli -p 6380 SET greeting hello

  Ctrl-C stops Larder, Redis and PostgreSQL. Data stays in .larder/.

EOF
build/larder --config config/demo.yaml
