"""Read-through integration tests: clients -> Larder -> Redis (cache) + PostgreSQL.

Real redis-server and PostgreSQL 15 on loopback, started through harness.py.
docs/keyspaces.md is the contract under test.

Run: /usr/bin/python3 tests/integration/test_read_through.py

One PostgreSQL cluster is shared by the module (initdb costs ~2 s); every test
starts its own redis-server and Larder, and uses its own rows (or tables), so
tests do not see each other's cache state. The PostgreSQL-outage test has a
cluster of its own. PostgreSQL logs every statement (log_statement = all), so
tests can count the load queries PostgreSQL really executed.

Bugs found while writing these tests are marked "BUG:" next to the assertion
that exposes them.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (HeldSession, HOST, PG_BIN, LarderTestCase, PostgresServer, RespError, close_client,  # noqa: E402
                     encode_command, free_port, to_yaml, wait_until)

import redis  # noqa: E402

DB = "app"
PSQL = os.path.join(PG_BIN, "psql")
if not os.path.exists(PSQL):
    import shutil
    PSQL = shutil.which("psql") or "psql"

SCHEMA = r"""
CREATE TABLE users (id bigint PRIMARY KEY, name text, email text, age int);
INSERT INTO users VALUES
  (1, 'ann', 'ann@example.com', 31),
  (2, 'bob', NULL, 42),
  (3, 'cid', 'cid@example.com', NULL),
  (4, 'dee', 'dee@example.com', 25),
  (5, 'eve', 'eve@example.com', 27),
  (6, NULL, 'nameless@example.com', 50),
  (7, 'gus', 'gus@example.com', 33),
  (8, NULL, NULL, NULL),
  (-7, 'neg', 'neg@example.com', 1);

CREATE TABLE typed (
  id int PRIMARY KEY,
  i int, b bigint, t text, e text, n numeric(10,2), f float8, flag bool, flag2 bool,
  ts timestamptz, d date, j jsonb, raw bytea, u uuid, arr text[],
  nothing text, nothing_int int);

CREATE TABLE orders (tenant text, id int, item text, qty int, PRIMARY KEY (tenant, id));
INSERT INTO orders VALUES
  ('acme', 1, 'widget', 3), ('acme', 2, 'gadget', 5), ('beta', 1, 'gizmo', 7),
  ('a:b', 1, 'colon-tenant', 9), ('a', 1, 'plain-a', 11);

CREATE TABLE tagged (tenant text, code text, label text, PRIMARY KEY (tenant, code));
INSERT INTO tagged VALUES ('acme', '2024:17', 'colon code'), ('acme', 'x', 'plain code');

CREATE TABLE docs (id text PRIMARY KEY, body text);
INSERT INTO docs VALUES ('a:b{c}', 'braces'), ('NULL', 'the text NULL'),
  ('with space', 'spaced'), ('quote"back\slash', 'quoted'), ('ünï', 'unicode');

CREATE TABLE sf (id bigint PRIMARY KEY, name text, email text);
INSERT INTO sf VALUES (1, 'single', 'flight@example.com');

CREATE TABLE uu (id uuid PRIMARY KEY, v text);
INSERT INTO uu VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'uuid row');

CREATE TABLE small (id int PRIMARY KEY, v text);
INSERT INTO small VALUES (2147483647, 'max');

CREATE TABLE nopk (id int, name text);
CREATE TABLE twocols (id int PRIMARY KEY, a text, b text);
"""

# Keyspaces most tests use (docs/keyspaces.md examples plus the brief's config).
USERS = {"key": "user:{id}", "table": "public.users", "shape": "hash", "ttl": "1h",
         "ttl_jitter": "10%", "negative_ttl": "30s"}
NAMES = {"key": "name:{id}", "table": "public.users", "shape": "string", "columns": ["name"]}
ORDERS = {"key": "order:{tenant}:{id}", "table": "public.orders", "shape": "hash"}

READ_THROUGH = {"batch_window": "500us", "max_batch": 256, "load_timeout": "2s",
                "negative_cache_entries": 100000}

PG: PostgresServer | None = None


def setUpModule():
    global PG
    PG = PostgresServer()
    unittest.addModuleCleanup(PG.cleanup)
    PG.start()
    PG.psql("ALTER SYSTEM SET log_statement = 'all'")
    PG.psql("SELECT pg_reload_conf()")
    PG.create_database(DB)
    PG.psql(f"ALTER DATABASE {DB} SET timezone TO 'UTC'")
    PG.psql(SCHEMA, dbname=DB)


# ------------------------------------------------------------------ helpers


def sql(query: str, pg: PostgresServer | None = None) -> str:
    return (pg or PG).psql(query, dbname=DB)


def psql_row(query: str, pg: PostgresServer | None = None) -> list:
    """One row as psql -At prints it: a list of str, None for NULL.

    Unit/record separators and a NULL marker make values with newlines safe.
    """
    pg = pg or PG
    argv = [PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-F", "\x1f", "-R", "\x1e",
            "-P", "null=\x01", "-h", HOST, "-p", str(pg.port), "-U", pg.SUPERUSER, "-d", DB,
            "-c", query]
    res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                         env=pg._env())
    if res.returncode != 0:
        raise AssertionError(f"psql failed for {query!r}: {res.stderr.decode(errors='replace')}")
    out = res.stdout.decode()
    if out.endswith("\n"):
        out = out[:-1]
    records = [r for r in out.split("\x1e") if r != ""]
    assert len(records) == 1, f"expected one row from {query!r}, got {records!r}"
    return [None if v == "\x01" else v for v in records[0].split("\x1f")]


def ks_stats(larder, name: str) -> dict:
    return dict(larder.info_larder()[f"keyspace_{name}"])


def delta(after: dict, before: dict) -> dict:
    return {k: after[k] - before[k] for k in after}


def load_executions(pg: PostgresServer, since: int, table: str) -> list:
    """Load queries PostgreSQL executed for `table` after log offset `since`:
    a list of the bound-parameter lines (log_statement = all)."""
    lines = pg.log()[since:].splitlines()
    out = []
    for i, line in enumerate(lines):
        if "LOG:  execute" in line and f'FROM "public"."{table}"' in line:
            detail = lines[i + 1] if i + 1 < len(lines) and "DETAIL:  parameters" in lines[i + 1] \
                else ""
            out.append(detail)
        elif "LOG:  statement:" in line and f'"public"."{table}" t JOIN unnest' in line:
            out.append(line)
    return out


def log_offset(pg: PostgresServer | None = None) -> int:
    return len((pg or PG).log())


def table_scans(table: str, pg: PostgresServer | None = None) -> int:
    """seq_scan + idx_scan of `table` as the statistics system reports it now."""
    out = (pg or PG).psql(
        "SELECT pg_stat_clear_snapshot(); "
        "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables "
        f"WHERE relname = '{table}'", dbname=DB)
    return int(out.split()[-1])


def flushed_scans(table: str, at_least: int, timeout: float = 8.0) -> int:
    """PostgreSQL 15 backends flush table statistics asynchronously: a backend
    that flushed less than a second ago keeps its counts for up to 10 s more
    (PGSTAT_IDLE_INTERVAL). A backend always flushes when it exits, so this
    ends the backends that ran Larder's load queries on `table` (Larder's pool
    reconnects on its next load), then polls until the count is >= at_least
    and has not moved for 0.5 s."""
    PG.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE pid <> pg_backend_pid() AND query LIKE '%\"public\".\"{table}\"%'", dbname=DB)
    deadline = time.monotonic() + timeout
    value = table_scans(table)
    stable_since = time.monotonic()
    while True:
        time.sleep(0.1)
        now_value = table_scans(table)
        if now_value != value:
            value, stable_since = now_value, time.monotonic()
        elif value >= at_least and time.monotonic() - stable_since >= 0.5:
            return value
        if time.monotonic() > deadline:
            return value


def lock_waiters(table: str, pg: PostgresServer | None = None) -> int:
    """Sessions waiting for a lock on `table` (a load blocked behind LOCK TABLE)."""
    out = (pg or PG).psql(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        f"WHERE c.relname = '{table}' AND NOT l.granted", dbname=DB)
    return int(out.strip())


def b(s) -> bytes:
    return s if isinstance(s, bytes) else str(s).encode()


def bdict(d: dict) -> dict:
    return {b(k): b(v) for k, v in d.items()}


# --------------------------------------------------------------- base class


class ReadThroughCase(LarderTestCase):

    def start_stack(self, keyspaces: dict, read_through: dict | None = None,
                    pg: PostgresServer | None = None, postgres: dict | None = None,
                    redis_server=None):
        """redis-server + Larder with these keyspaces; returns
        (larder, larder client, redis-server, direct Redis client)."""
        pg = pg or PG
        redis_server = redis_server or self.start_redis()
        rt = dict(READ_THROUGH)
        rt.update(read_through or {})
        pg_cfg = {"dsn": pg.dsn(DB), "pool_size": 4}
        pg_cfg.update(postgres or {})
        larder = self.start_larder(redis_server, config={
            "postgres": pg_cfg, "read_through": rt, "keyspaces": keyspaces})
        client = self.client(larder)
        direct = redis_server.client()
        self.addCleanup(close_client, direct)
        return larder, client, redis_server, direct

    def assertErrorStartsWith(self, reply, prefix: str):
        self.assertIsInstance(reply, RespError, f"expected an error reply, got {reply!r}")
        self.assertTrue(str(reply).startswith(prefix), f"{reply!r} does not start with {prefix!r}")


def call(client, *args):
    """execute_command, returning the exception instead of raising it."""
    try:
        return client.execute_command(*args)
    except redis.ResponseError as e:
        return e


# ---------------------------------------------------------------- 1. types


TYPED_COLUMNS = ["i", "b", "t", "e", "n", "f", "flag", "flag2", "ts", "d", "j", "raw", "u", "arr",
                 "nothing", "nothing_int"]
TYPED_VALUES = (
    "-2147483648, 9223372036854775807, E'h\\u00e9llo \"w\\u00f6rld\"\\n\\ttab \\\\ back', '', "
    "12345678.9, 1.0/3, true, false, '2024-01-02 03:04:05.678+02', '2024-02-29', "
    "'{\"b\": [1, 2.50, null], \"a\": \"x\"}', '\\x00ff10'::bytea, "
    "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', ARRAY['a b', 'c,d', NULL, 'e\"f'], NULL, NULL")


class TypesTest(ReadThroughCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        rows = ", ".join(f"({i}, {TYPED_VALUES})" for i in range(1, 11))
        sql(f"INSERT INTO typed (id, {', '.join(TYPED_COLUMNS)}) VALUES {rows}")

    def expected(self, row_id: int) -> dict:
        """What psql -At prints for each column (PostgreSQL's text form)."""
        values = psql_row(f"SELECT {', '.join(TYPED_COLUMNS)} FROM typed WHERE id = {row_id}")
        return {c: v for c, v in zip(TYPED_COLUMNS, values)}

    def test_types_round_trip_as_postgres_text(self):
        ks = {"typed": {"key": "typed:{id}", "table": "public.typed", "shape": "hash",
                        "ttl": "1h", "ttl_jitter": "10%"}}
        larder, c, _, direct = self.start_stack(ks)
        expected = self.expected(1)
        present = {k: v for k, v in expected.items() if v is not None}
        # Sanity of the reference itself: NULL columns, text forms the docs name.
        self.assertIsNone(expected["nothing"])
        self.assertIsNone(expected["nothing_int"])
        self.assertEqual(expected["flag"], "t")
        self.assertEqual(expected["flag2"], "f")
        self.assertEqual(expected["e"], "")
        self.assertEqual(expected["ts"], "2024-01-02 01:04:05.678+00")
        self.assertEqual(expected["raw"], "\\x00ff10")
        self.assertEqual(expected["u"], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
        self.assertEqual(expected["n"], "12345678.90")
        self.assertEqual(expected["j"], '{"a": "x", "b": [1, 2.50, null]}')
        self.assertEqual(expected["arr"], '{"a b","c,d",NULL,"e\\"f"}')
        self.assertIn("\n", expected["t"])

        # Cold HGETALL (answered from the loaded row): fields in column order.
        raw = self.raw(larder)
        reply = raw.call("HGETALL", "typed:1")
        pairs = list(zip(reply[0::2], reply[1::2]))
        self.assertEqual([k.decode() for k, _ in pairs], list(present))
        self.assertEqual(dict(pairs), bdict(present))

        # The key really is in Redis now, as the same hash, with TTL 1h +- 10%.
        wait_until(lambda: direct.exists("typed:1"), 5, "typed:1 to be filled in Redis")
        self.assertEqual(direct.type("typed:1"), b"hash")
        self.assertEqual(direct.hgetall("typed:1"), bdict(present))
        pttl = direct.pttl("typed:1")
        self.assertGreaterEqual(pttl, 3600_000 * 0.9 - 1000)
        self.assertLessEqual(pttl, 3600_000 * 1.1)
        # Warm HGETALL (from Redis) gives the same.
        self.assertEqual(c.hgetall("typed:1"), bdict(present))

        # Every other hash read, each on its own cold key and then warm.
        reads = [
            ("HGET", "t"), ("HGET", "nothing"), ("HGET", "no_such_column"), ("HGET", "e"),
            ("HLEN",), ("HKEYS",), ("HVALS",), ("HEXISTS", "flag"), ("HEXISTS", "nothing"),
            ("HEXISTS", "no_such_column"),
            ("HMGET", "i", "nothing", "no_such_column", "raw", "e"),
        ]
        want = {
            ("HGET", "t"): b(expected["t"]),
            ("HGET", "nothing"): None,
            ("HGET", "no_such_column"): None,
            ("HGET", "e"): b"",
            ("HLEN",): len(present),
            ("HKEYS",): [b(k) for k in present],
            ("HVALS",): [b(v) for v in present.values()],
            ("HEXISTS", "flag"): 1,
            ("HEXISTS", "nothing"): 0,
            ("HEXISTS", "no_such_column"): 0,
            ("HMGET", "i", "nothing", "no_such_column", "raw", "e"):
                [b(expected["i"]), None, None, b(expected["raw"]), b""],
        }
        for n, args in enumerate(reads):
            key = f"typed:{n + 2}" if n + 2 <= 10 else "typed:10"
            before_cold = direct.exists(key)
            cold = raw.call(args[0], key, *args[1:])
            # HKEYS/HVALS from a cold load are in column order; from Redis the
            # listpack keeps insertion (= column) order too.
            self.assertEqual(cold, want[args], f"cold {args} on {key} (cached before: {before_cold})")
            wait_until(lambda: direct.exists(key), 5, f"{key} to be filled")
            warm = raw.call(args[0], key, *args[1:])
            self.assertEqual(warm, want[args], f"warm {args} on {key}")

    def test_all_null_row_is_not_cached(self):
        """A row whose cached columns are all NULL cannot be a Redis hash: it is
        answered from PostgreSQL each time."""
        ks = {"users": dict(USERS, columns=["name", "email", "age"])}
        larder, c, _, direct = self.start_stack(ks)
        before = ks_stats(larder, "users")
        self.assertEqual(c.hgetall("user:8"), {})
        self.assertEqual(c.exists("user:8"), 1)  # the row exists
        self.assertEqual(c.hlen("user:8"), 0)
        self.assertIsNone(c.hget("user:8", "name"))
        time.sleep(0.1)
        self.assertEqual(direct.exists("user:8"), 0)
        d = delta(ks_stats(larder, "users"), before)
        self.assertEqual(d["queries"], 4, d)  # not cached, not negative-cached
        self.assertEqual(d["fills"], 0, d)


# ----------------------------------------------------------- 2. string shape


class StringShapeTest(ReadThroughCase):

    def test_string_shape(self):
        larder, c, _, direct = self.start_stack({"users": USERS, "names": NAMES})
        self.assertEqual(c.get("name:1"), b"ann")
        wait_until(lambda: direct.get("name:1") == b"ann", 5, "name:1 to be filled")
        self.assertEqual(direct.ttl("name:1") > 3500, True)  # default ttl 1h, no jitter

        # NULL value: nil, and not cached.
        self.assertIsNone(c.get("name:6"))
        time.sleep(0.1)
        self.assertEqual(direct.exists("name:6"), 0)

        # MGET: mapped hit, mapped cold hit, unmapped (set directly), missing
        # row, unmapped missing, hash-keyspace key (Redis answers nil), NULL value.
        direct.set("plain:x", "vx")
        self.assertEqual(c.set("plain:y", "vy"), True)
        before = ks_stats(larder, "names")
        got = c.mget("name:1", "name:2", "plain:x", "name:999", "plain:none", "user:3",
                     "plain:y", "name:6", "name:3")
        self.assertEqual(got, [b"ann", b"bob", b"vx", None, None, None, b"vy", None, b"cid"])
        d = delta(ks_stats(larder, "names"), before)
        self.assertEqual(d["hits"], 1, d)
        self.assertEqual(d["misses"], 4, d)
        # "MGET: mapped keys that missed are loaded together (one query per keyspace)"
        self.assertEqual(d["queries"], 1, d)
        self.assertEqual(d["keys_queried"], 4, d)
        self.assertEqual(ks_stats(larder, "users")["misses"], 0)  # user:3 was left to Redis
        wait_until(lambda: direct.get("name:3") == b"cid", 5, "name:3 to be filled")

        # EXISTS with mixed keys counts rows (cold mapped keys count if the row exists).
        self.assertEqual(c.exists("name:1", "name:4", "name:999", "plain:x", "plain:none",
                                  "user:4", "user:998"), 4)
        self.assertEqual(c.exists("name:5", "name:5"), 2)  # counted per argument, as Redis

        # TTL / PTTL on a cold key load it and answer the fill's TTL.
        t = c.ttl("name:7")
        self.assertIn(t, (3599, 3600))
        wait_until(lambda: direct.get("name:7") == b"gus", 5, "TTL to fill name:7")
        self.assertLessEqual(direct.ttl("name:7"), t)
        pt = c.pttl("user:5")
        self.assertGreaterEqual(pt, 3600_000 * 0.9 - 1000)
        self.assertLessEqual(pt, 3600_000 * 1.1)
        wait_until(lambda: direct.hget("user:5", "name") == b"eve", 5, "PTTL to fill user:5")
        self.assertLessEqual(direct.pttl("user:5"), pt)
        self.assertEqual(c.ttl("name:999"), -2)
        self.assertEqual(c.pttl("user:999"), -2)

        # GETEX on a cold key: loaded with the keyspace TTL (options ignored);
        # on a cached key the options apply.
        self.assertEqual(direct.exists("name:-7"), 0)
        self.assertEqual(c.getex("name:-7", ex=100), b"neg")
        wait_until(lambda: direct.get("name:-7") == b"neg", 5, "name:-7 to be filled")
        self.assertGreater(direct.ttl("name:-7"), 3000)
        self.assertEqual(c.getex("name:-7", ex=100), b"neg")
        self.assertLessEqual(direct.ttl("name:-7"), 100)


# ------------------------------------------------------------ 3. composite


class CompositeKeyTest(ReadThroughCase):

    def test_composite_and_colon_keys(self):
        ks = {
            "orders": ORDERS,
            "tagged": {"key": "tag:{tenant}:{code}", "table": "public.tagged"},
            "docs": {"key": "doc:{id}", "table": "public.docs"},
        }
        larder, c, _, direct = self.start_stack(ks)
        self.assertEqual(c.hgetall("order:acme:1"), {b"item": b"widget", b"qty": b"3"})
        self.assertEqual(c.hget("order:beta:1", "item"), b"gizmo")
        wait_until(lambda: direct.exists("order:acme:1"), 5, "order:acme:1 to be filled")

        # Several composite keys in one pipeline: batched, each answered with its own row.
        before = ks_stats(larder, "orders")
        p = c.pipeline(transaction=False)
        for k in ("order:acme:2", "order:beta:1", "order:acme:999", "order:zeta:1",
                  "order:a:1"):
            p.hgetall(k)
        self.assertEqual(p.execute(), [
            {b"item": b"gadget", b"qty": b"5"}, {b"item": b"gizmo", b"qty": b"7"}, {}, {},
            {b"item": b"plain-a", b"qty": b"11"}])
        d = delta(ks_stats(larder, "orders"), before)
        self.assertEqual(d["keys_queried"], 4, d)  # order:beta:1 was cached by HGET above
        self.assertLessEqual(d["queries"], 2, d)

        # ':' in the first placeholder is not possible: order:a:b:1 is tenant 'a',
        # id 'b:1', which cannot be an int: nil without a query (not the 'a:b' row).
        before = ks_stats(larder, "orders")
        self.assertEqual(c.hgetall("order:a:b:1"), {})
        self.assertEqual(c.exists("order:a:b:1"), 0)
        d = delta(ks_stats(larder, "orders"), before)
        self.assertEqual(d["queries"], 0, d)

        # ':' in the last placeholder belongs to it (docs example order:acme:2024:17).
        self.assertEqual(c.hgetall("tag:acme:2024:17"), {b"label": b"colon code"})
        self.assertEqual(c.hgetall("tag:acme:x"), {b"label": b"plain code"})
        self.assertEqual(c.hgetall("tag:acme:2024"), {})

        # Text ids with ':', braces, the word NULL, quotes, backslashes, spaces, UTF-8.
        for key, body in (("doc:a:b{c}", "braces"), ("doc:NULL", "the text NULL"),
                          ("doc:with space", "spaced"), ('doc:quote"back\\slash', "quoted"),
                          ("doc:ünï", "unicode")):
            self.assertEqual(c.hgetall(key), {b"body": b(body)}, key)
            wait_until(lambda: direct.hget(key, "body") == b(body), 5, f"{key} to be filled")
        self.assertEqual(c.hgetall("doc:a:b"), {})
        # Empty values are never mapped: "doc:" and "order::1" are plain keys.
        self.assertEqual(c.set("doc:", "plain"), True)
        self.assertEqual(c.set("order::1", "plain"), True)
        self.assertEqual(c.get("doc:"), b"plain")

    def test_key_postgres_refuses_fails_alone(self):
        """A text key that is not valid UTF-8 is refused by PostgreSQL; in a
        batch with good keys it fails alone (docs: retried alone)."""
        larder, c, _, direct = self.start_stack({"docs": {"key": "doc:{id}",
                                                          "table": "public.docs"}})
        p = c.pipeline(transaction=False)
        p.hgetall("doc:with space")
        p.hgetall(b"doc:\xff\xfe")
        p.hgetall("doc:NULL")
        res = p.execute(raise_on_error=False)
        self.assertEqual(res[0], {b"body": b"spaced"})
        self.assertIsInstance(res[1], redis.ResponseError)
        self.assertTrue(str(res[1]).startswith("Larder: PostgreSQL"), res[1])
        self.assertEqual(res[2], {b"body": b"the text NULL"})
        # Every good key of the retried batch is filled.
        wait_until(lambda: direct.exists("doc:with space") and direct.exists("doc:NULL"), 5,
                   "the good keys of a retried batch to be filled")


# ---------------------------------------------------------- 4. pass-through


class PassThroughTest(ReadThroughCase):

    def test_non_matching_keys_are_plain(self):
        larder, c, _, direct = self.start_stack({"users": USERS, "names": NAMES})
        before_u, before_n = ks_stats(larder, "users"), ks_stats(larder, "names")
        for key in ("user:", "users:1", "xuser:1", "user", "USER:1", "name:", "names:1"):
            self.assertIsNone(c.get(key), key)
            self.assertEqual(c.set(key, f"v-{key}"), True, key)
            self.assertEqual(c.get(key), b(f"v-{key}"), key)
            self.assertEqual(direct.get(key), b(f"v-{key}"), key)
            self.assertEqual(c.expire(key, 100), True, key)
            self.assertEqual(c.delete(key), 1, key)
            self.assertEqual(c.hset(key, "f", "v"), 1, key)
            self.assertEqual(c.hgetall(key), {b"f": b"v"}, key)
            self.assertEqual(c.lpush("list-" + key, "x"), 1, key)
            self.assertEqual(c.exists(key), 1, key)
        self.assertEqual(c.mget("user:", "users:1", "xuser:1"), [None, None, None])
        for name, before in (("users", before_u), ("names", before_n)):
            # Counters only: gauges (a flusher taking its queue over meanwhile) move by themselves.
            gauges = {"flusher_active", "flush_paused", "queue_depth", "oldest_pending_ms", "ttl_ms"}
            d = {k: v for k, v in delta(ks_stats(larder, name), before).items() if k not in gauges}
            self.assertEqual(d, {k: 0 for k in d}, f"{name}: {d}")


# ---------------------------------------------------------- 5. single-flight


class SingleFlightTest(ReadThroughCase):

    CLIENTS = 500

    def test_500_concurrent_misses_one_query(self):
        # load_timeout is raised so that the 500 clients can be lined up behind
        # the lock without the first waiters timing out on a slow machine.
        larder, c, _, direct = self.start_stack(
            {"sf": {"key": "sf:{id}", "table": "public.sf", "shape": "hash"}},
            read_through={"load_timeout": "15s"})
        row = {b"name": b"single", b"email": b"flight@example.com"}
        commands = [("HGETALL", "sf:1"), ("HGET", "sf:1", "name"), ("HMGET", "sf:1", "email",
                                                                     "name"), ("HLEN", "sf:1")]
        wants = [row, b"single", [b"flight@example.com", b"single"], 2]

        clients = []
        for _ in range(self.CLIENTS):
            rc = harness.RawClient(larder.port, timeout=20)
            self.addCleanup(rc.close)
            clients.append(rc)
        wait_until(lambda: larder.info_larder()["connected_clients"] >= self.CLIENTS, 10,
                   "Larder to accept the 500 clients")

        scans_before = table_scans("sf")
        offset = log_offset()
        before = ks_stats(larder, "sf")

        held = HeldSession(PG, DB)
        self.addCleanup(held.kill)
        held.lock("sf")
        try:
            for i, rc in enumerate(clients):
                cmd = commands[i % len(commands)]
                rc.send(encode_command(*cmd))
            # Every request reached the Loader and joined the one flight.
            wait_until(lambda: delta(ks_stats(larder, "sf"), before)["joins"] >= self.CLIENTS - 1,
                       10, "all requests to join the flight")
            wait_until(lambda: lock_waiters("sf") >= 1, 10, "the load to wait for the lock")
        finally:
            held.release()

        for i, rc in enumerate(clients):
            reply = rc.read_reply()
            want = wants[i % len(commands)]
            if isinstance(want, dict):
                reply = dict(zip(reply[0::2], reply[1::2]))
            self.assertEqual(reply, want, f"client {i}")
        wait_until(lambda: direct.exists("sf:1"), 5, "sf:1 to be filled")

        d = delta(ks_stats(larder, "sf"), before)
        self.assertEqual(d["misses"], self.CLIENTS, d)
        self.assertEqual(d["queries"], 1, d)
        self.assertEqual(d["keys_queried"], 1, d)
        self.assertEqual(d["joins"], self.CLIENTS - 1, d)
        self.assertGreaterEqual(d["joins"], 1, d)
        self.assertEqual(d["load_errors"], 0, d)
        wait_until(lambda: delta(ks_stats(larder, "sf"), before)["fills"] == 1, 5, "one fill")
        # PostgreSQL's side: one execution in its log, one scan in its statistics.
        execs = load_executions(PG, offset, "sf")
        self.assertEqual(len(execs), 1, execs)
        self.assertEqual(flushed_scans("sf", scans_before + 1) - scans_before, 1)


# --------------------------------------------------------------- 6. batching


class BatchingTest(ReadThroughCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # ids 1000..1099; every 10th is missing.
        sql("INSERT INTO users (id, name) SELECT g, 'batch-' || g FROM generate_series(1000, 1099) g "
            "WHERE g % 10 <> 5")

    def pipeline_get(self, c, ids):
        p = c.pipeline(transaction=False)
        for i in ids:
            p.get(f"name:{i}")
        return p.execute()

    def test_100_cold_keys_in_one_pipeline(self):
        larder, c, _, _ = self.start_stack({"names": NAMES})
        ids = list(range(1000, 1100))
        offset = log_offset()
        before = ks_stats(larder, "names")
        got = self.pipeline_get(c, ids)
        self.assertEqual(got, [None if i % 10 == 5 else b(f"batch-{i}") for i in ids])
        d = delta(ks_stats(larder, "names"), before)
        self.assertEqual(d["keys_queried"], 100, d)
        self.assertLessEqual(d["queries"], 5, d)
        self.assertEqual(d["rows_found"], 90, d)
        execs = load_executions(PG, offset, "users")
        self.assertEqual(len(execs), d["queries"], execs)
        bound = sorted(int(x) for e in execs for x in re.findall(r"\d+", e.split("=", 1)[1]))
        self.assertEqual(bound, ids)

    def test_max_batch_splits(self):
        larder, c, _, _ = self.start_stack({"names": NAMES},
                                           read_through={"max_batch": 10, "batch_window": "50ms"})
        ids = list(range(1000, 1100))
        before = ks_stats(larder, "names")
        got = self.pipeline_get(c, ids)
        self.assertEqual(got, [None if i % 10 == 5 else b(f"batch-{i}") for i in ids])
        d = delta(ks_stats(larder, "names"), before)
        self.assertEqual(d["keys_queried"], 100, d)
        self.assertGreaterEqual(d["queries"], 10, d)
        self.assertLessEqual(d["queries"], 15, d)


# -------------------------------------------------------- 7. negative cache


class NegativeCacheTest(ReadThroughCase):

    def test_negative_cache(self):
        ks = {"neg": {"key": "neg:{id}", "table": "public.users", "shape": "string",
                      "columns": ["name"], "negative_ttl": "1s"},
              "noneg": {"key": "noneg:{id}", "table": "public.users", "shape": "string",
                        "columns": ["name"], "negative_ttl": 0}}
        larder, c, _, direct = self.start_stack(ks)
        sql("DELETE FROM users WHERE id IN (2001, 2002)")

        before = ks_stats(larder, "neg")
        self.assertIsNone(c.get("neg:2001"))
        started = time.monotonic()
        self.assertIsNone(c.get("neg:2001"))
        self.assertEqual(c.exists("neg:2001"), 0)
        d = delta(ks_stats(larder, "neg"), before)
        self.assertEqual(d["queries"], 1, d)
        self.assertEqual(d["negative_hits"], 2, d)
        self.assertEqual(d["misses"], 3, d)

        sql("INSERT INTO users (id, name) VALUES (2001, 'late')")
        if time.monotonic() - started < 0.7:
            # Still within negative_ttl: the remembered miss answers.
            self.assertIsNone(c.get("neg:2001"))
        wait_until(lambda: c.get("neg:2001") == b"late", 3,
                   "the inserted row to be visible after negative_ttl")
        self.assertLess(time.monotonic() - started, 2.5)
        wait_until(lambda: direct.get("neg:2001") == b"late", 5, "neg:2001 to be filled")

        # negative_ttl 0: every read of a missing row queries.
        before = ks_stats(larder, "noneg")
        for _ in range(3):
            self.assertIsNone(c.get("noneg:2002"))
        d = delta(ks_stats(larder, "noneg"), before)
        self.assertEqual(d["queries"], 3, d)
        self.assertEqual(d["negative_hits"], 0, d)
        sql("INSERT INTO users (id, name) VALUES (2002, 'now')")
        self.assertEqual(c.get("noneg:2002"), b"now")


# ------------------------------------------------------------------- 8. TTL


class TtlTest(ReadThroughCase):

    def test_update_visible_after_ttl(self):
        ks = {"short": {"key": "short:{id}", "table": "public.users", "shape": "hash",
                        "columns": ["name"], "ttl": "1s", "ttl_jitter": "0%"}}
        larder, c, _, direct = self.start_stack(ks)
        sql("INSERT INTO users (id, name) VALUES (3001, 'old')")
        self.assertEqual(c.hgetall("short:3001"), {b"name": b"old"})
        wait_until(lambda: direct.exists("short:3001"), 5, "short:3001 to be filled")
        pttl = direct.pttl("short:3001")
        self.assertGreater(pttl, 0)
        self.assertLessEqual(pttl, 1000)
        sql("UPDATE users SET name = 'new' WHERE id = 3001")
        self.assertEqual(c.hgetall("short:3001"), {b"name": b"old"})  # still cached
        wait_until(lambda: not direct.exists("short:3001"), 3, "short:3001 to expire")
        self.assertEqual(c.hgetall("short:3001"), {b"name": b"new"})
        # Expiry never touched the row in PostgreSQL.
        self.assertEqual(sql("SELECT name FROM users WHERE id = 3001").strip(), "new")

    def test_ttl_zero_means_no_expiry(self):
        ks = {"forever": {"key": "forever:{id}", "table": "public.users", "shape": "string",
                          "columns": ["name"], "ttl": 0}}
        larder, c, _, direct = self.start_stack(ks)
        self.assertEqual(c.ttl("forever:1"), -1)  # loaded by TTL: the fill sets no expiry
        wait_until(lambda: direct.get("forever:1") == b"ann", 5, "forever:1 to be filled")
        self.assertEqual(direct.pttl("forever:1"), -1)
        self.assertEqual(c.get("forever:2"), b"bob")
        wait_until(lambda: direct.exists("forever:2"), 5, "forever:2 to be filled")
        self.assertEqual(direct.ttl("forever:2"), -1)


# ------------------------------------------------------ 9. write vs. fill


class FillRaceTest(ReadThroughCase):

    def test_newer_write_wins_over_fill(self):
        larder, c, _, direct = self.start_stack({"users": USERS})
        sql("INSERT INTO users (id, name, email) VALUES (4001, 'from-pg', 'pg@example.com')")
        before = ks_stats(larder, "users")
        held = HeldSession(PG, DB)
        self.addCleanup(held.kill)
        held.lock("users")
        result = {}

        def reader():
            cl = larder.client(socket_timeout=10)
            try:
                result["reply"] = cl.hgetall("user:4001")
            except Exception as e:  # noqa: BLE001 - reported below
                result["reply"] = e
            finally:
                close_client(cl)

        t = threading.Thread(target=reader, daemon=True)
        try:
            t.start()
            wait_until(lambda: lock_waiters("users") >= 1, 5, "the load to block on the lock")
            self.assertNotIn("reply", result)
            direct.hset("user:4001", mapping={"name": "newer"})  # a newer write, bypassing Larder
        finally:
            held.release()
        t.join(10)
        self.assertFalse(t.is_alive(), "the blocked read never returned")
        # The cached value is newer than the row read before it: it is the answer.
        self.assertEqual(result["reply"], {b"name": b"newer"})
        wait_until(lambda: delta(ks_stats(larder, "users"), before)["fills_skipped"] == 1, 5,
                   "the fill to be skipped")
        self.assertEqual(direct.hgetall("user:4001"), {b"name": b"newer"})
        self.assertEqual(direct.pttl("user:4001"), -1)  # the fill did not touch it
        self.assertEqual(c.hgetall("user:4001"), {b"name": b"newer"})
        self.assertEqual(delta(ks_stats(larder, "users"), before)["fills"], 0)

    def test_client_gone_does_not_cancel_load(self):
        """docs: a client that goes away does not cancel the load."""
        larder, c, _, direct = self.start_stack({"users": USERS})
        sql("INSERT INTO users (id, name) VALUES (4002, 'orphan')")
        before = ks_stats(larder, "users")
        held = HeldSession(PG, DB)
        self.addCleanup(held.kill)
        held.lock("users")
        try:
            raw = harness.RawClient(larder.port)
            raw.send(encode_command("HGETALL", "user:4002"))
            wait_until(lambda: lock_waiters("users") >= 1, 5, "the load to block on the lock")
            raw.close()
            wait_until(lambda: larder.info_larder()["connected_clients"] <= 1, 5,
                       "the client to be gone")
        finally:
            held.release()
        wait_until(lambda: direct.hgetall("user:4002") == {b"name": b"orphan"}, 5,
                   "the orphaned load to fill user:4002")
        # The Loader counts the fill when Redis' reply reaches it, a moment
        # after the value is visible.
        wait_until(lambda: delta(ks_stats(larder, "users"), before)["fills"] == 1, 5,
                   "the fill to be counted")
        d = delta(ks_stats(larder, "users"), before)
        self.assertEqual((d["queries"], d["fills"]), (1, 1), d)
        self.assertEqual(c.hget("user:4002", "name"), b"orphan")
        self.assertTrue(larder.running())

    def test_pending_marker_overlays_fill(self):
        # A marker holds writes not yet in PostgreSQL: a miss lays them over
        # the loaded row (read-your-writes after eviction), never the reverse.
        larder, c, _, direct = self.start_stack({"users": USERS, "names": NAMES})
        before = ks_stats(larder, "users")
        direct.hset("__larder:pending:user:5", mapping={"_id": "1-1", "f:name": "EVE",
                                                        "z:email": ""})
        direct.hset("__larder:pending:name:5", mapping={"_id": "1-1", "d": "1"})
        self.assertEqual(c.hgetall("user:5"), {b"name": b"EVE", b"age": b"27"})
        self.assertIsNone(c.get("name:5"))  # deleted, not yet flushed
        self.assertEqual(direct.hgetall("user:5"), {b"name": b"EVE", b"age": b"27"})
        self.assertEqual(direct.exists("name:5"), 0)
        self.assertEqual(delta(ks_stats(larder, "users"), before)["fills"], 0)
        # Without the marker, the next read fills from PostgreSQL alone.
        direct.delete("__larder:pending:user:5", "user:5")
        time.sleep(0.1)  # past the loaded flight's linger (20 ms)
        self.assertEqual(c.hget("user:5", "name"), b"eve")
        wait_until(lambda: direct.exists("user:5"), 5, "user:5 to be filled")


# ------------------------------------------------- 10. PostgreSQL outage


class PostgresOutageTest(ReadThroughCase):

    def pg_pids(self, pg):
        pid = pg.postmaster_pid()
        return ([pid] + harness._children_of(pid)) if pid else []

    def timed(self, c, *args):
        started = time.monotonic()
        reply = call(c, *args)
        return reply, time.monotonic() - started

    def test_postgres_down_and_back(self):
        pg = PostgresServer()
        self.addCleanup(pg.cleanup)
        pg.start()
        pg.create_database(DB)
        sql("CREATE TABLE users (id bigint PRIMARY KEY, name text, email text, age int);"
            "INSERT INTO users SELECT g, 'u' || g FROM generate_series(1, 50) g", pg)
        larder, c, _, direct = self.start_stack({"users": USERS, "names": NAMES}, pg=pg)
        direct.set("plain", "p")
        self.assertEqual(c.get("name:1"), b"u1")
        self.assertEqual(c.hget("user:1", "name"), b"u1")
        wait_until(lambda: direct.exists("name:1") and direct.exists("user:1"), 5, "fills")

        # -- Frozen PostgreSQL (SIGSTOP): connections stay up but nothing answers.
        pids = self.pg_pids(pg)
        self.assertTrue(pids)

        # runuser (the postmaster's parent when root) stops itself when its child
        # stops, and only resumes on SIGCONT: wake it too, or it never reaps.
        def thaw():
            for p in pids + [pg.proc.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGCONT)
        self.addCleanup(thaw)
        for p in pids:
            os.kill(p, signal.SIGSTOP)
        try:
            reply, took = self.timed(c, "GET", "name:2")
            self.assertIsInstance(reply, redis.ResponseError)
            self.assertTrue(str(reply).startswith("Larder: PostgreSQL"), reply)
            self.assertLess(took, 4.0)
            self.assertEqual(c.get("name:1"), b"u1")  # hits still served
            self.assertPipelineBounded(larder, "name:3")
        finally:
            thaw()
        wait_until(lambda: c.get("name:4") == b"u4", 10, "loads to work after SIGCONT")

        # -- PostgreSQL killed.
        pg.kill()
        self.assertEqual(c.get("name:1"), b"u1")
        self.assertEqual(c.hgetall("user:1"), {b"name": b"u1"})
        for key in ("name:5", "name:6", "user:7"):  # first (dead pooled connection), then refused
            reply, took = self.timed(c, "GET" if key.startswith("name") else "HGETALL", key)
            self.assertIsInstance(reply, redis.ResponseError, key)
            self.assertTrue(str(reply).startswith("Larder: PostgreSQL"), reply)
            self.assertLess(took, 4.0, key)
        self.assertPipelineBounded(larder, "name:8")
        self.assertEqual(c.get("plain"), b"p")
        wait_until(lambda: larder.info_larder()["backend_postgres_status"] == "down", 5,
                   "backend_postgres_status:down")
        errors = ks_stats(larder, "names")["load_errors"]
        self.assertGreaterEqual(errors, 4)

        # -- Restarted on the same port: misses work again, Larder untouched.
        pg.restart()
        wait_until(lambda: c.get("name:9") == b"u9", 12,
                   "misses to be answered again after PostgreSQL restarted")
        self.assertEqual(c.hgetall("user:10"), {b"name": b"u10"})
        self.assertEqual(larder.info_larder()["backend_postgres_status"], "ok")
        self.assertTrue(larder.running())

    def assertPipelineBounded(self, larder, cold_key):
        """A miss with commands pipelined behind it: every reply within 4 s."""
        raw = self.raw(larder, timeout=10)
        started = time.monotonic()
        raw.send(encode_command("GET", cold_key) + encode_command("PING") +
                 encode_command("GET", "plain") + encode_command("GET", "name:1"))
        replies = [raw.read_reply() for _ in range(4)]
        took = time.monotonic() - started
        self.assertIsInstance(replies[0], RespError, replies)
        self.assertTrue(str(replies[0]).startswith("ERR Larder: PostgreSQL"), replies)
        self.assertEqual(replies[1:], ["PONG", b"p", b"u1"])
        self.assertLess(took, 4.0)
        raw.close()


# ------------------------------------------------------ 11. Redis outage


class RedisOutageTest(ReadThroughCase):

    def test_redis_down_falls_back_to_postgres(self):
        # Regression (found by this test, fixed in 043e973): Larder died of
        # SIGSEGV on the first mapped read while Redis was down.
        # BackendConnection::send() delivers "-ERR Larder: Redis backend
        # unavailable" synchronously, inside MappedRead::start(), which had not
        # yet sized replies_; afterRedis() then read replies_.back() of an empty
        # vector, and the HGETALL below got "Connection closed by server".
        larder, c, rs, direct = self.start_stack({"users": USERS, "names": NAMES})
        direct.set("plain", "p")
        self.assertEqual(c.get("name:1"), b"ann")
        wait_until(lambda: direct.exists("name:1"), 5, "name:1 to be filled")
        close_client(direct)
        rs.kill()
        larder.wait_backend_status("down")
        before_u, before_n = ks_stats(larder, "users"), ks_stats(larder, "names")

        started = time.monotonic()
        self.assertEqual(c.hgetall("user:1"), {b"name": b"ann", b"email": b"ann@example.com",
                                               b"age": b"31"})
        self.assertEqual(c.hget("user:2", "name"), b"bob")
        self.assertEqual(c.get("name:1"), b"ann")
        self.assertEqual(c.mget("name:3", "name:999"), [b"cid", None])
        self.assertEqual(c.exists("user:4", "user:999"), 1)
        self.assertLess(time.monotonic() - started, 4.0)
        d = delta(ks_stats(larder, "users"), before_u)
        self.assertEqual(d["fallbacks"], 4, d)  # user:1, user:2, user:4, user:999
        self.assertEqual(d["fills"], 0, d)
        self.assertEqual(delta(ks_stats(larder, "names"), before_n)["fallbacks"], 3)

        for args in (("GET", "plain"), ("SET", "plain", "x"), ("MGET", "name:1", "plain")):
            reply = call(c, *args)
            self.assertIsInstance(reply, redis.ResponseError, args)

        rs.restart()
        larder.wait_backend_status("ok")
        direct = rs.client()
        self.addCleanup(close_client, direct)
        self.assertIsNone(c.get("plain"))  # a fresh Redis
        self.assertEqual(c.set("plain", "back"), True)
        self.assertEqual(c.get("plain"), b"back")
        self.assertEqual(c.get("name:1"), b"ann")
        # The PostgreSQL side's own Redis connection reconnects on its own
        # backoff: until it is back a miss is answered without a fill.
        wait_until(lambda: c.get("name:1") == b"ann" and direct.get("name:1") == b"ann", 5,
                   "fills to work again")
        after = ks_stats(larder, "names")
        self.assertEqual(after["fallbacks"] - before_n["fallbacks"], 3)


# ------------------------------------------------------ 12. config mismatch


class ConfigMismatchTest(ReadThroughCase):

    def run_larder(self, keyspaces: dict):
        d = harness.make_tmpdir("rt-config")
        self.addCleanup(harness.remove_tmpdir, d)
        path = os.path.join(d, "larder.yaml")
        with open(path, "w") as f:
            f.write(to_yaml({"listen": f"{HOST}:{free_port()}", "threads": 1,
                             "redis": {"address": f"{HOST}:{free_port()}"},
                             "postgres": {"dsn": PG.dsn(DB)}, "keyspaces": keyspaces}))
        started = time.monotonic()
        try:
            res = subprocess.run([harness.LARDER_BINARY, "--config", path], capture_output=True,
                                 stdin=subprocess.DEVNULL, timeout=15)
        except subprocess.TimeoutExpired:
            self.fail(f"Larder kept running with a mismatched config {keyspaces!r}")
        return res.returncode, res.stderr.decode(errors="replace"), time.monotonic() - started

    def test_mismatches_refuse_to_start(self):
        cases = [
            # (what, keyspace name, settings, table, column, exit code)
            ("unknown column", "users",
             {"key": "user:{id}", "table": "public.users", "columns": ["name", "emial"]},
             "public.users", "emial", 1),
            ("placeholder not a column", "users",
             {"key": "user:{uid}", "table": "public.users"}, "public.users", "uid", 1),
            ("placeholder not the primary key", "byname",
             {"key": "byname:{name}", "table": "public.users"}, "public.users", "name", 1),
            ("wrong placeholder order", "orders",
             {"key": "order:{id}:{tenant}", "table": "public.orders"}, "public.orders", "tenant",
             1),
            ("too few placeholders", "orders",
             {"key": "order:{tenant}", "table": "public.orders"}, "public.orders", "id", 1),
            ("column in the primary key", "users",
             {"key": "user:{id}", "table": "public.users", "columns": ["id", "name"]},
             "public.users", "id", 1),
            ("table without primary key", "nopk",
             {"key": "nopk:{id}", "table": "public.nopk"}, "public.nopk", None, 1),
            ("missing table", "ghost",
             {"key": "ghost:{id}", "table": "public.ghost"}, "public.ghost", None, 1),
            ("string shape, two value columns", "two",
             {"key": "two:{id}", "table": "public.twocols", "shape": "string"},
             "public.twocols", None, 1),
        ]
        for what, name, settings, table, column, code in cases:
            with self.subTest(what):
                rc, err, took = self.run_larder({name: settings})
                self.assertEqual(rc, code, f"{what}: exit {rc}, stderr:\n{err}")
                self.assertLess(took, 5.0, what)
                self.assertIn(f"'{name}'", err, what)
                self.assertIn(table, err, what)
                if column:
                    self.assertRegex(err, rf"(?<![A-Za-z0-9_]){re.escape(column)}(?![A-Za-z0-9_])",
                                     what)
        # The exact documented form.
        rc, err, _ = self.run_larder({"users": cases[0][2]})
        self.assertIn("keyspace 'users' (table public.users): column 'emial' does not exist", err)

        # A string keyspace listing two columns is a config error (exit 2, key path named).
        rc, err, _ = self.run_larder({"two": {"key": "two:{id}", "table": "public.twocols",
                                              "shape": "string", "columns": ["a", "b"]}})
        self.assertNotEqual(rc, 0, err)
        self.assertIn("keyspaces.two.columns", err)

        # A good config with the same file layout does start (the cases above
        # failed for their mismatch, not for something else).
        larder = self.start_larder(self.start_redis(), config={
            "postgres": {"dsn": PG.dsn(DB)},
            "keyspaces": {"orders": ORDERS, "two": {"key": "two:{id}", "table": "public.twocols",
                                                    "shape": "string", "columns": ["b"]}}})
        self.assertTrue(larder.running())


class QuotedNamesTest(ReadThroughCase):
    """Quoted schema, table and column names (docs/configuration.md: table
    parts and columns are unquoted or double-quoted identifiers)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        sql('CREATE SCHEMA "Odd Schema"; '
            'CREATE TABLE "Odd Schema"."Mixed Case" ("Id" int PRIMARY KEY, "Full Name" text, '
            '"select" text, plain text); '
            """INSERT INTO "Odd Schema"."Mixed Case" VALUES (1, 'Ann A', 'sel', 'p')""")

    def test_quoted_table_default_columns(self):
        larder, c, _, _ = self.start_stack({"mc": {"key": "mc:{Id}",
                                                   "table": '"Odd Schema"."Mixed Case"'}})
        self.assertEqual(c.hgetall("mc:1"), {b"Full Name": b"Ann A", b"select": b"sel",
                                             b"plain": b"p"})
        self.assertEqual(c.hget("mc:1", "Full Name"), b"Ann A")

    def test_quoted_column_names(self):
        # BUG: a double-quoted column name passes config validation but is then
        # compared with its quotes against the catalog, so Larder refuses to
        # start: "keyspace 'mc' (table Odd Schema.Mixed Case): column '"Full
        # Name"' does not exist". A column whose name needs quoting (upper case,
        # spaces) cannot be listed in `columns` at all.
        larder, c, _, _ = self.start_stack({"mc": {"key": "mc:{Id}",
                                                   "table": '"Odd Schema"."Mixed Case"',
                                                   "columns": ['"Full Name"', '"select"']}})
        self.assertEqual(c.hgetall("mc:1"), {b"Full Name": b"Ann A", b"select": b"sel"})


# ------------------------------------------------------------ 13. WRONGTYPE


class WrongTypeTest(ReadThroughCase):

    def test_wrongtype_and_refused_writes(self):
        larder, c, _, direct = self.start_stack({"users": USERS, "names": NAMES})
        before_u, before_n = ks_stats(larder, "users"), ks_stats(larder, "names")
        wrongtype = "WRONGTYPE"
        for args in (("LPUSH", "user:1", "x"), ("SADD", "user:1", "x"), ("GET", "user:1"),
                     ("GETEX", "user:1"), ("LRANGE", "user:1", 0, -1),
                     ("HGET", "name:1", "f"), ("HGETALL", "name:1"), ("HLEN", "name:2"),
                     ("ZADD", "name:1", 1, "m")):
            reply = call(c, *args)
            self.assertIsInstance(reply, redis.ResponseError, args)
            self.assertTrue(str(reply).startswith(wrongtype), f"{args}: {reply}")
        # Writes of the wrong shape, or that a mapped key cannot take.
        for args in (("SET", "user:1", "x"), ("HSET", "name:1", "name", "x"),
                     ("MSET", "plain", "1", "user:1", "2"), ("INCR", "name:1"),
                     ("HINCRBY", "user:1", "age", 1), ("RENAME", "plain", "user:1")):
            reply = call(c, *args)
            self.assertIsInstance(reply, redis.ResponseError, args)
            self.assertRegex(str(reply), "^WRONGTYPE|^Larder: .* is not supported on keys", args)
        self.assertEqual(str(call(c, "INCR", "name:1")),
                         "Larder: INCR is not supported on keys of keyspace 'names'")
        # Nothing was written or read anywhere (Larder's own id aside).
        self.assertEqual([k for k in direct.keys("*") if not k.startswith(b"__larder:")], [])
        self.assertEqual(sql("SELECT name FROM users WHERE id = 1").strip(), "ann")
        du, dn = delta(ks_stats(larder, "users"), before_u), delta(ks_stats(larder, "names"),
                                                                 before_n)
        self.assertEqual(du["queries"] + dn["queries"], 0, (du, dn))
        self.assertGreaterEqual(du["refused"], 5)
        # MGET with a hash-keyspace key: Redis answers nil, as for any non-string.
        self.assertEqual(c.mget("user:1", "name:1"), [None, b"ann"])
        # Raw reads see the cache as it is: no load.
        before_u = ks_stats(larder, "users")
        self.assertEqual(c.type("user:2"), b"none")
        self.assertIsNone(c.object("encoding", "user:2"))
        self.assertEqual(delta(ks_stats(larder, "users"), before_u)["queries"], 0)
        # Cached mapped key holding the other type in Redis: Redis' own WRONGTYPE.
        self.assertEqual(c.hget("user:3", "name"), b"cid")
        wait_until(lambda: direct.exists("user:3"), 5, "user:3 to be filled")
        reply = call(c, "GET", "user:3")
        self.assertTrue(str(reply).startswith(wrongtype), reply)

    def test_transactions_cannot_write_mapped_or_reserved_keys(self):
        larder, c, _, direct = self.start_stack({"users": USERS})
        # Queued in Redis, these would bypass Larder: each is refused while
        # queueing and EXEC then discards the whole transaction, as Redis does
        # after a queue-time error.
        for bad in (("LPUSH", "user:1", "x"), ("HSET", "user:1", "name", "x"),
                    ("SET", "__larder:pending:user:1", "1")):
            tx = c.pipeline(transaction=True)
            tx.set("plain", "should-not-be-set")
            tx.execute_command(*bad)
            with self.assertRaises(redis.ResponseError) as caught:
                tx.execute()  # redis-py reports the queue-time error itself
            self.assertRegex(str(caught.exception), "WRONGTYPE|Larder:", bad)
        # EXEC discarded: not even "plain" (Larder's own id aside)
        self.assertEqual([k for k in direct.keys("*") if not k.startswith(b"__larder:")], [])
        raw = harness.RawClient(larder.port)
        self.addCleanup(raw.close)
        raw.send(b"MULTI\r\nSET plain x\r\nLPUSH user:1 x\r\nEXEC\r\n")
        replies = [raw.read_line() for _ in range(4)]
        self.assertEqual(replies[:2], [b"+OK", b"+QUEUED"])
        self.assertTrue(replies[2].startswith(b"-WRONGTYPE"), replies)
        self.assertEqual(replies[3], b"-EXECABORT Transaction discarded because of previous errors.")
        self.assertEqual([k for k in direct.keys("*") if not k.startswith(b"__larder:")], [])
        # A clean transaction still works, and mapped reads inside it see the cache.
        tx = c.pipeline(transaction=True)
        tx.set("plain", "1").hget("user:1", "name")
        self.assertEqual(tx.execute(), [True, None])
        self.assertEqual(direct.get("plain"), b"1")


# ---------------------------------------------------------- 14. key spelling


class KeySpellingTest(ReadThroughCase):

    def test_non_canonical_keys_need_no_query(self):
        larder, c, _, direct = self.start_stack({
            "users": USERS,
            "uu": {"key": "uu:{id}", "table": "public.uu"}})
        offset = log_offset()
        before = ks_stats(larder, "users")
        for key in ("user:007", "user:+7", "user:abc", "user:7 ", "user: 7", "user:7.0",
                    "user:-0", "user:00", "user:0x7", "user:1e3", "user:７"):
            self.assertEqual(c.hgetall(key), {}, key)
            self.assertIsNone(c.hget(key, "name"), key)
            self.assertEqual(c.exists(key), 0, key)
            self.assertEqual(c.ttl(key), -2, key)
        d = delta(ks_stats(larder, "users"), before)
        self.assertEqual(d["queries"], 0, d)
        self.assertEqual(load_executions(PG, offset, "users"), [])
        self.assertEqual([k for k in direct.keys("*") if not k.startswith(b"__larder:")], [])

        # uuid: only the canonical lower-case spelling names the row.
        before_uu = ks_stats(larder, "uu")
        for key in ("uu:A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "uu:a0eebc999c0b4ef8bb6d6bb9bd380a11",
                    "uu:{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", "uu:nope"):
            self.assertEqual(c.hgetall(key), {}, key)
        self.assertEqual(delta(ks_stats(larder, "uu"), before_uu)["queries"], 0)
        self.assertEqual(c.hgetall("uu:a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                         {b"v": b"uuid row"})

        # The canonical spellings do load.
        self.assertEqual(c.hget("user:7", "name"), b"gus")
        self.assertEqual(c.hget("user:-7", "name"), b"neg")
        self.assertEqual(c.hgetall("user:0"), {})
        self.assertEqual(delta(ks_stats(larder, "users"), before)["queries"], 3)

    def test_out_of_range_integer_keys(self):
        """BUG: an integer key value outside the column type's range
        (user:9223372036854775808 for bigint, 2147483648 for an integer column)
        cannot be the text of the key column, so per docs/keyspaces.md it is a
        miss that needs no query. Larder sends it to PostgreSQL, which refuses
        it, and the client gets '-ERR Larder: PostgreSQL unavailable: value ...
        is out of range for type bigint' (PostgreSQL is not unavailable)."""
        larder, c, _, _ = self.start_stack({
            "users": USERS, "small": {"key": "small:{id}", "table": "public.small"}})
        before, before_s = ks_stats(larder, "users"), ks_stats(larder, "small")
        for key in ("user:9223372036854775808", "user:-9223372036854775809",
                    "user:9999999999999999999", "small:2147483648", "small:-2147483649",
                    "small:99999999999"):
            self.assertEqual(call(c, "HGETALL", key), {}, key)  # BUG: an error reply instead
        self.assertEqual(c.hgetall("user:9223372036854775807"), {})
        self.assertEqual(c.hgetall("small:2147483647"), {b"v": b"max"})
        d = delta(ks_stats(larder, "users"), before)
        self.assertEqual(d["queries"], 1, d)
        self.assertEqual(d["load_errors"], 0, d)
        d = delta(ks_stats(larder, "small"), before_s)
        self.assertEqual(d["queries"], 1, d)


if __name__ == "__main__":
    harness.main()
