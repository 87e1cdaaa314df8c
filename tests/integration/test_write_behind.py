"""Write integration tests: clients -> Larder -> Redis (cache + write queue) -> PostgreSQL.

Real redis-server and PostgreSQL 15 on loopback, started through harness.py.
The contract under test is the write-behind spec (write: behind | through |
none, the `write_behind:` config block, the `__larder:` Redis layout and the
LARDER operator commands); docs/keyspaces.md describes the read side.

Run: /usr/bin/python3 tests/integration/test_write_behind.py [-v]

One PostgreSQL cluster is shared by the module; every test starts its own
redis-server and Larder and uses its own id range (test N uses ids around
N*100), so tests do not see each other's rows. Tests that stop PostgreSQL use
a cluster of their own. Every table has an audit trigger that records each
INSERT/UPDATE/DELETE, so tests can count (and order) the row writes Larder
really made.

The flusher is held back by a psql session holding
`LOCK TABLE ... IN ACCESS EXCLUSIVE MODE` (HeldSession). Redis internals
(`__larder:q:<ks>`, `__larder:pending:<key>`, `__larder:dead:<ks>`) are only
ever inspected with a direct Redis client, never through Larder.

Assertions that expose a bug of the implementation (or a place where it
departs from the contract) carry a "PROXY BUG" comment; they fail until fixed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (HeldSession, HOST, PG_BIN, LarderTestCase, PostgresServer, RespError, close_client,  # noqa: E402
                     free_port, run_threads, wait_until)

import redis  # noqa: E402

DB = "app"
PSQL = os.path.join(PG_BIN, "psql")
if not os.path.exists(PSQL):
    import shutil
    PSQL = shutil.which("psql") or "psql"

SCHEMA = r"""
CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, email text, age int);
CREATE TABLE notes (id bigint PRIMARY KEY, body text);
CREATE TABLE coal (id bigint PRIMARY KEY, body text);
CREATE TABLE items (id bigint PRIMARY KEY, name text,
                    qty int CONSTRAINT items_qty_check CHECK (qty >= 0));

CREATE TABLE audit (seq bigserial PRIMARY KEY, tbl text NOT NULL, op text NOT NULL,
                    id bigint NOT NULL, row jsonb);
CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    INSERT INTO audit (tbl, op, id, row) VALUES (TG_TABLE_NAME, TG_OP, OLD.id, NULL);
    RETURN OLD;
  END IF;
  INSERT INTO audit (tbl, op, id, row) VALUES (TG_TABLE_NAME, TG_OP, NEW.id, to_jsonb(NEW));
  RETURN NEW;
END $$;
CREATE TRIGGER users_audit AFTER INSERT OR UPDATE OR DELETE ON users
  FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE TRIGGER notes_audit AFTER INSERT OR UPDATE OR DELETE ON notes
  FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE TRIGGER coal_audit AFTER INSERT OR UPDATE OR DELETE ON coal
  FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE TRIGGER items_audit AFTER INSERT OR UPDATE OR DELETE ON items
  FOR EACH ROW EXECUTE FUNCTION audit_row();
"""

WRITE_BEHIND = {"flush_interval": "50ms", "max_batch": 1000, "max_queue": 1000000,
                "on_full": "error", "block_timeout": "2s", "retry_min": "100ms",
                "retry_max": "5s", "drain_timeout": "10s"}

FLUSH_WAIT = 5.0  # "PostgreSQL gets it within about flush_interval": bounded poll

RESERVED = "ERR Larder: keys under '__larder:' are reserved for Larder"

PG: PostgresServer | None = None
OUTAGE_PG: PostgresServer | None = None


def users_ks(write: str = "behind", **extra) -> dict:
    ks = {"key": "user:{id}", "table": "public.users", "shape": "hash",
          "columns": ["name", "email", "age"], "write": write, "ttl": "1h",
          "negative_ttl": "30s"}
    ks.update(extra)
    return ks


def notes_ks(write: str = "behind", **extra) -> dict:
    ks = {"key": "note:{id}", "table": "public.notes", "shape": "string", "columns": ["body"],
          "write": write, "ttl": "1h", "negative_ttl": "30s"}
    ks.update(extra)
    return ks


def items_ks(write: str = "behind") -> dict:
    return {"key": "item:{id}", "table": "public.items", "shape": "hash",
            "columns": ["name", "qty"], "write": write, "ttl": "1h"}


def make_cluster() -> PostgresServer:
    pg = PostgresServer()
    pg.start()
    pg.create_database(DB)
    pg.psql(f"ALTER DATABASE {DB} SET timezone TO 'UTC'")
    pg.psql(SCHEMA, dbname=DB)
    return pg


def setUpModule():
    global PG
    PG = PostgresServer()
    unittest.addModuleCleanup(PG.cleanup)
    PG.start()
    PG.create_database(DB)
    PG.psql(f"ALTER DATABASE {DB} SET timezone TO 'UTC'")
    PG.psql(SCHEMA, dbname=DB)


# ------------------------------------------------------------------ helpers


def sql(query: str, pg: PostgresServer | None = None) -> str:
    return (pg or PG).psql(query, dbname=DB)


def query(q: str, pg: PostgresServer | None = None) -> list:
    """Rows as lists of str (None for NULL); separators make any text safe."""
    pg = pg or PG
    argv = [PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-F", "\x1f", "-R", "\x1e",
            "-P", "null=\x01", "-h", HOST, "-p", str(pg.port), "-U", pg.SUPERUSER, "-d", DB,
            "-c", q]
    res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                         env=pg._env())
    if res.returncode != 0:
        raise AssertionError(f"psql failed for {q!r}: {res.stderr.decode(errors='replace')}")
    out = res.stdout.decode()
    if out.endswith("\n"):
        out = out[:-1]
    return [[None if v == "\x01" else v for v in r.split("\x1f")]
            for r in out.split("\x1e") if r != ""]


def rows(table: str, cols, ids, pg: PostgresServer | None = None) -> dict:
    """{id: tuple of column values} for the ids that have a row."""
    cols = [cols] if isinstance(cols, str) else list(cols)
    id_list = ", ".join(str(int(i)) for i in ids)
    out = {}
    for r in query(f"SELECT id, {', '.join(cols)} FROM {table} WHERE id IN ({id_list})", pg):
        out[int(r[0])] = tuple(r[1:]) if len(cols) > 1 else r[1]
    return out


def audit(table: str, ids=None, pg: PostgresServer | None = None) -> list:
    """[(id, op, row-dict-or-None)] in commit order of the audit trigger."""
    where = f"tbl = '{table}'"
    if ids is not None:
        where += f" AND id IN ({', '.join(str(int(i)) for i in ids)})"
    out = []
    for seq, op, rid, row in query(f"SELECT seq, op, id, row FROM audit WHERE {where} "
                                   "ORDER BY seq", pg):
        out.append((int(rid), op, json.loads(row) if row else None))
    return out


def b(s) -> bytes:
    return s if isinstance(s, bytes) else str(s).encode()


def bdict(d: dict) -> dict:
    return {b(k): b(v) for k, v in d.items()}


def call(client, *args):
    """execute_command, returning the exception instead of raising it."""
    try:
        return client.execute_command(*args)
    except redis.ResponseError as e:
        return e


def flat_to_dict(entry) -> dict:
    return {(k.decode() if isinstance(k, bytes) else k): v
            for k, v in zip(entry[0::2], entry[1::2])}


def larder_pending(client) -> dict:
    """LARDER PENDING as {keyspace: {"depth": N, "oldest_age_ms": N, "dead_letters": N}}."""
    reply = client.execute_command("LARDER", "PENDING")
    out = {}
    for entry in reply:
        d = flat_to_dict(entry)
        name = d.pop("keyspace")
        out[name.decode() if isinstance(name, bytes) else name] = d
    return out


def depth(client, keyspace: str) -> int:
    return int(larder_pending(client)[keyspace]["depth"])


def wait_drained(client, keyspace: str, timeout: float = 15.0):
    wait_until(lambda: depth(client, keyspace) == 0, timeout,
               f"LARDER PENDING depth of {keyspace} to reach 0")


def keyspace_info(larder, keyspace: str) -> dict:
    """INFO larder's keyspace_<name> line as a dict of str."""
    line = larder.info_larder().get(f"keyspace_{keyspace}", {})
    if isinstance(line, dict):
        return {k: str(v) for k, v in line.items()}
    return dict(part.split("=", 1) for part in str(line).split(",") if "=" in part)


def wait_flushing(larder, *keyspaces):
    """Until this instance owns the write queue of each keyspace (and has
    looked at it once): a write after this waits for the next flush."""
    for ks in keyspaces:
        wait_until(lambda: keyspace_info(larder, ks).get("flusher_active") == "1", 10,
                   f"the flusher of {ks} to take its queue")
    time.sleep(0.2)


def stream_entries(direct, stream: str) -> list:
    """[(id, {field(str): value(bytes)})] of a stream, read directly from Redis."""
    return [(i.decode(), {k.decode(): v for k, v in f.items()})
            for i, f in direct.xrange(stream, "-", "+")]


def user_keys(direct) -> list:
    return sorted(k for k in direct.keys("*") if not k.startswith(b"__larder:"))


def http_get(port: int, path: str):
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric_value(text: str, name: str, keyspace: str):
    """The sample of `name` whose labels include keyspace="<keyspace>" (loose
    match: other labels may be present), or None."""
    pattern = (r"^" + re.escape(name) + r"\{[^}]*keyspace=\"" + re.escape(keyspace) +
               r"\"[^}]*\}\s+(\S+)")
    m = re.search(pattern, text, re.M)
    return float(m.group(1)) if m else None


class Stack:
    def __init__(self, larder, client, redis_server, direct, raw, admin_port=None):
        self.larder = larder
        self.c = client
        self.redis_server = redis_server
        self.direct = direct
        self.raw = raw
        self.admin_port = admin_port


# --------------------------------------------------------------- base class


class WriteCase(LarderTestCase):

    def start_stack(self, keyspaces: dict, write_behind: dict | None = None,
                    pg: PostgresServer | None = None, redis_server=None,
                    admin: bool = False, start: bool = True, postgres: dict | None = None,
                    read_through: dict | None = None) -> Stack:
        pg = pg or PG
        redis_server = redis_server or self.start_redis()
        wb = dict(WRITE_BEHIND)
        wb.update(write_behind or {})
        pg_cfg = {"dsn": pg.dsn(DB), "pool_size": 4}
        pg_cfg.update(postgres or {})
        rt = {"batch_window": "500us", "max_batch": 256, "load_timeout": "2s"}
        rt.update(read_through or {})
        config = {"postgres": pg_cfg, "read_through": rt,
                  "write_behind": wb, "keyspaces": keyspaces}
        admin_port = None
        if admin:
            admin_port = free_port()
            config["admin"] = f"{HOST}:{admin_port}"
        larder = self.start_larder(redis_server, config=config, start=start)
        direct = redis_server.client()
        self.addCleanup(close_client, direct)
        if not start:
            return Stack(larder, None, redis_server, direct, None, admin_port)
        client = self.client(larder)
        raw = self.raw(larder)
        return Stack(larder, client, redis_server, direct, raw, admin_port)

    def outage_cluster(self) -> PostgresServer:
        """A second cluster, shared by the tests that stop or kill PostgreSQL
        (each uses its own ids); started on first use, running on return."""
        global OUTAGE_PG
        if OUTAGE_PG is None:
            OUTAGE_PG = make_cluster()
            unittest.addModuleCleanup(OUTAGE_PG.cleanup)
        if not OUTAGE_PG.running():
            OUTAGE_PG.restart()
        return OUTAGE_PG

    def hold(self, tables: str, pg: PostgresServer | None = None,
             mode: str = "ACCESS EXCLUSIVE") -> HeldSession:
        held = HeldSession(pg or PG, DB, mode)
        self.addCleanup(held.kill)
        return held.lock(tables)

    # -- assertions
    def assertError(self, reply, exact: str | None = None, prefix: str | None = None,
                    contains: str | None = None, what=""):
        """reply is a RawClient reply (RespError text includes the error code)."""
        self.assertIsInstance(reply, RespError, f"{what}: expected an error reply, got {reply!r}")
        text = str(reply)
        if exact is not None:
            self.assertEqual(text, exact, what)
        if prefix is not None:
            self.assertTrue(text.startswith(prefix), f"{what}: {text!r} does not start with "
                                                     f"{prefix!r}")
        if contains is not None:
            self.assertIn(contains.lower(), text.lower(), what)

    def assertEntry(self, entries, want: dict):
        """Some stream entry has (at least) these fields with these values."""
        for _, fields in entries:
            if all(fields.get(k) == v for k, v in want.items()):
                return
        self.fail(f"no entry with {want} in {entries[-10:]}")

    def wait_rows(self, table, cols, expected: dict, timeout: float = FLUSH_WAIT,
                  pg: PostgresServer | None = None, what: str = ""):
        """Polls PostgreSQL until the rows of expected's ids are exactly expected
        (an id missing from expected's values, i.e. value None, must have no row)."""
        ids = list(expected)
        want = {i: v for i, v in expected.items() if v is not None}
        last = {}

        def check():
            last["rows"] = rows(table, cols, ids, pg)
            return last["rows"] == want
        try:
            wait_until(check, timeout, f"PostgreSQL {table} rows {what}")
        except AssertionError:
            self.assertEqual(last.get("rows"), want, f"PostgreSQL {table} after {timeout}s {what}")


# ======================================================= 1. modes end to end


class BehindModeTest(WriteCase):

    def test_string_keyspace_behind(self):
        s = self.start_stack({"notes": notes_ks(), "users": users_ks()})
        r, direct = s.raw, s.direct
        sql("INSERT INTO notes VALUES (110, 'pg-110')")
        ids = list(range(101, 111))

        self.assertEqual(r.call("SET", "note:101", "hello"), "OK")
        self.assertEqual(r.call("GET", "note:101"), b"hello")
        self.assertEqual(direct.get("note:101"), b"hello")  # the value is in Redis at +OK

        # Expiry options apply to the cache key.
        self.assertEqual(r.call("SET", "note:102", "a", "EX", 100), "OK")
        self.assertIn(direct.ttl("note:102"), (99, 100))
        self.assertEqual(r.call("SET", "note:102", "b", "PX", 100000), "OK")
        self.assertGreater(direct.pttl("note:102"), 90000)
        self.assertEqual(r.call("SET", "note:102", "c", "KEEPTTL"), "OK")
        self.assertGreater(direct.pttl("note:102"), 90000)
        self.assertEqual(r.call("SET", "note:103", "x", "NX"), "OK")      # new row
        self.assertIsNone(r.call("SET", "note:103", "y", "NX"))           # exists: not set
        self.assertEqual(r.call("SET", "note:103", "z", "XX"), "OK")
        self.assertIsNone(r.call("SET", "note:104", "q", "XX"))           # no key, no row
        self.assertEqual(r.call("SET", "note:103", "w", "GET"), b"z")
        self.assertEqual(r.call("SETEX", "note:105", 100, "s"), "OK")
        self.assertEqual(r.call("PSETEX", "note:106", 100000, "p"), "OK")
        self.assertEqual(r.call("GETSET", "note:105", "s2"), b"s")
        self.assertEqual(r.call("GETDEL", "note:106"), b"p")
        self.assertIsNone(r.call("GET", "note:106"))
        now = int(time.time())
        self.assertEqual(r.call("SET", "note:107", "e", "EXAT", now + 100), "OK")
        self.assertGreater(direct.ttl("note:107"), 90)
        self.assertEqual(r.call("SET", "note:107", "e2", "PXAT", (now + 200) * 1000), "OK")
        self.assertGreater(direct.ttl("note:107"), 150)
        # MSET mixing mapped and unmapped keys.
        self.assertEqual(r.call("MSET", "note:108", "m1", "plain:1", "pv", "note:109", "m2"),
                         "OK")
        self.assertEqual(direct.get("plain:1"), b"pv")
        self.assertEqual(r.call("MGET", "note:108", "note:109", "plain:1"), [b"m1", b"m2", b"pv"])
        # The rows reach PostgreSQL before the deletes below.
        self.wait_rows("notes", "body", {108: "m1", 109: "m2"}, what="after MSET")
        # DEL/UNLINK mixing mapped and unmapped keys: reply = keys removed.
        self.assertEqual(r.call("DEL", "note:108", "plain:1", "note:109", "plain:none"), 3)
        self.assertEqual(r.call("UNLINK", "note:107"), 1)
        self.assertEqual(r.call("MGET", "note:107", "note:108", "note:109"), [None, None, None])

        self.wait_rows("notes", "body", {101: "hello", 102: "c", 103: "w", 104: None, 105: "s2",
                                         106: None, 107: None, 108: None, 109: None,
                                         110: "pg-110"}, what="after the string writes")

        # EXPIRE family: cache TTL only, never PostgreSQL.
        wait_drained(s.c, "notes")
        audit_before = audit("notes", ids)
        self.assertEqual(r.call("EXPIRE", "note:101", 100), 1)
        self.assertIn(direct.ttl("note:101"), (99, 100))
        self.assertEqual(r.call("PERSIST", "note:101"), 1)
        self.assertEqual(direct.ttl("note:101"), -1)
        self.assertEqual(r.call("EXPIREAT", "note:103", int(time.time()) + 300), 1)
        self.assertGreater(direct.ttl("note:103"), 250)
        self.assertEqual(r.call("PEXPIREAT", "note:105", int(time.time() * 1000) + 300000), 1)
        self.assertGreater(direct.ttl("note:105"), 250)
        self.assertEqual(r.call("PEXPIRE", "note:101", 200), 1)
        wait_until(lambda: not direct.exists("note:101"), 5, "note:101 to expire from the cache")
        time.sleep(0.2)
        self.assertEqual(rows("notes", "body", [101]), {101: "hello"},
                         "cache expiry deleted the row")
        self.assertEqual(r.call("GET", "note:101"), b"hello")  # reloaded from PostgreSQL
        wait_until(lambda: direct.get("note:101") == b"hello", 5, "note:101 to be filled again")
        self.assertEqual(audit("notes", ids), audit_before,
                         "EXPIRE/PERSIST/expiry wrote to PostgreSQL")

    def test_hash_keyspace_behind(self):
        s = self.start_stack({"notes": notes_ks(), "users": users_ks()})
        r, direct = s.raw, s.direct
        sql("INSERT INTO users VALUES (113, 'pg', 'pg@example.com', 13)")

        self.assertEqual(r.call("HSET", "user:111", "name", "a", "email", "e@x"), 2)
        self.assertEqual(r.call("HSET", "user:111", "age", 7, "name", "b"), 1)  # 1 new field
        self.assertEqual(r.call("HMSET", "user:112", "name", "c", "age", 1), "OK")
        self.assertEqual(direct.hgetall("user:111"), bdict({"name": "b", "email": "e@x",
                                                            "age": 7}))
        hg = r.call("HGETALL", "user:111")
        self.assertEqual(dict(zip(hg[0::2], hg[1::2])),
                         bdict({"name": "b", "email": "e@x", "age": 7}))
        self.wait_rows("users", ["name", "email", "age"],
                       {111: ("b", "e@x", "7"), 112: ("c", None, "1")}, what="after HSET")
        self.assertEqual(r.call("EXPIRE", "user:111", 100), 1)
        self.assertEqual(r.call("PERSIST", "user:111"), 1)
        self.assertEqual(r.call("HSET", "user:111", "age", 8, "email", "e2@x", "name", "b2"), 0)
        self.wait_rows("users", ["name", "email", "age"], {111: ("b2", "e2@x", "8")},
                       what="after HSET of every column")

    def test_hash_del_then_read(self):
        s = self.start_stack({"users": users_ks()})
        r = s.raw
        self.assertEqual(r.call("HMSET", "user:114", "name", "c", "age", 1), "OK")
        self.wait_rows("users", ["name", "age"], {114: ("c", "1")}, what="after HMSET")
        self.assertEqual(r.call("DEL", "user:114"), 1)
        self.assertEqual(r.call("HGETALL", "user:114"), [])
        self.assertEqual(r.call("EXISTS", "user:114"), 0)
        self.wait_rows("users", "name", {114: None}, what="after DEL")
        self.assertEqual(r.call("HGETALL", "user:114"), [])

    def test_refused_commands_change_nothing(self):
        s = self.start_stack({"notes": notes_ks(), "users": users_ks()})
        r, direct = s.raw, s.direct
        sql("INSERT INTO notes VALUES (120, 'n120'); "
            "INSERT INTO users VALUES (120, 'u120', 'u@x', 20)")
        self.assertEqual(r.call("GET", "note:120"), b"n120")
        wait_until(lambda: direct.exists("note:120"), 5, "note:120 to be filled")
        hg = r.call("HGETALL", "user:120")
        self.assertEqual(len(hg), 6)
        wait_until(lambda: direct.exists("user:120"), 5, "user:120 to be filled")
        before_redis = {k: direct.dump(k) for k in user_keys(direct)}
        before_audit = audit("notes", [120, 121]) + audit("users", [120, 121])

        # WRONGTYPE: string commands on hash keys and vice versa.
        for args in (("SET", "user:120", "x"), ("SET", "user:121", "x"),
                     ("HSET", "note:120", "body", "x"), ("HSET", "note:121", "body", "x")):
            self.assertError(r.call(*args), prefix="WRONGTYPE", what=str(args))
        # A field that is not a mapped column.
        self.assertError(r.call("HSET", "user:120", "nosuch", "1"),
                         exact="ERR Larder: 'nosuch' is not a column of keyspace 'users'")
        self.assertError(r.call("HSET", "user:120", "name", "ok", "nosuch", "1"),
                         exact="ERR Larder: 'nosuch' is not a column of keyspace 'users'")
        self.assertError(r.call("HMSET", "user:121", "id", "5"),  # the key column is no field
                         exact="ERR Larder: 'id' is not a column of keyspace 'users'")
        # Other write commands are not supported on mapped keys.
        for cmd_args, ks in ((("INCR", "note:120"), "notes"),
                             (("INCRBY", "note:120", 2), "notes"),
                             (("APPEND", "note:120", "x"), "notes"),
                             (("SETRANGE", "note:120", 0, "x"), "notes"),
                             (("MSETNX", "note:121", "x"), "notes"),
                             (("HINCRBY", "user:120", "age", 1), "users"),
                             (("HSETNX", "user:121", "name", "x"), "users")):
            self.assertError(
                r.call(*cmd_args),
                exact=f"ERR Larder: {cmd_args[0]} is not supported on keys of keyspace '{ks}'",
                what=str(cmd_args))
        time.sleep(0.3)  # anything wrongly queued would flush by now
        self.assertEqual({k: direct.dump(k) for k in user_keys(direct)}, before_redis)
        self.assertEqual(audit("notes", [120, 121]) + audit("users", [120, 121]), before_audit)
        self.assertEqual(rows("notes", "body", [120, 121]), {120: "n120"})
        self.assertEqual(larder_pending(s.c)["notes"]["depth"], 0)
        self.assertEqual(larder_pending(s.c)["users"]["depth"], 0)

    def test_hset_on_uncached_row_merges(self):
        """Test 3 of the issue: only the named columns change in PostgreSQL.
        Once with both HSETs in one flush, once with a flush in between."""
        s = self.start_stack({"users": users_ks()})
        r = s.raw
        sql("INSERT INTO users VALUES (301, 'orig', 'orig@example.com', 30), "
            "(302, 'orig', 'orig@example.com', 30)")
        self.assertIn(r.call("HSET", "user:301", "name", "X"), (0, 1))
        self.assertIn(r.call("HSET", "user:301", "age", 5), (0, 1))
        self.wait_rows("users", ["name", "email", "age"], {301: ("X", "orig@example.com", "5")},
                       what="after HSET name then HSET age (one batch)")
        # The same with the first write committed before the second is made.
        self.assertIn(r.call("HSET", "user:302", "name", "X"), (0, 1))
        self.wait_rows("users", ["name", "email", "age"], {302: ("X", "orig@example.com", "30")},
                       what="after HSET name")
        self.assertIn(r.call("HSET", "user:302", "age", 5), (0, 1))
        self.wait_rows("users", ["name", "email", "age"], {302: ("X", "orig@example.com", "5")},
                       what="after HSET age in a later flush")
        # Every audit row kept the original email: no write ever cleared it.
        for rid, op, row in audit("users", [301, 302]):
            self.assertEqual(row["email"], "orig@example.com", (op, row))
        # Reads through Larder show the whole merged row (not a partial hash).
        for key in ("user:301", "user:302"):
            hg = r.call("HGETALL", key)
            self.assertEqual(dict(zip(hg[0::2], hg[1::2])),
                             bdict({"name": "X", "email": "orig@example.com", "age": 5}), key)
        self.assertEqual(s.direct.xlen("__larder:dead:users"), 0, "a partial HSET was refused")


class ThroughModeTest(WriteCase):

    def start_through(self):
        return self.start_stack({"notes": notes_ks("through"), "users": users_ks("through")})

    def test_through_string(self):
        s = self.start_through()
        r, direct = s.raw, s.direct
        # The reply comes after the commit: psql sees each write right after it.
        self.assertEqual(r.call("SET", "note:201", "v1"), "OK")
        self.assertEqual(rows("notes", "body", [201]), {201: "v1"})
        self.assertEqual(r.call("GET", "note:201"), b"v1")
        self.assertEqual(r.call("SET", "note:201", "v2", "EX", 100), "OK")
        self.assertEqual(rows("notes", "body", [201]), {201: "v2"})
        self.assertEqual(r.call("GET", "note:201"), b"v2")
        self.assertEqual(r.call("SETEX", "note:204", 100, "sx"), "OK")
        self.assertEqual(rows("notes", "body", [204]), {204: "sx"})
        self.assertEqual(r.call("MSET", "note:202", "m", "plain:2", "p"), "OK")
        self.assertEqual(rows("notes", "body", [202]), {202: "m"})
        self.assertEqual(direct.get("plain:2"), b"p")
        self.assertEqual(r.call("DEL", "note:202"), 1)
        self.assertEqual(rows("notes", "body", [202]), {})
        self.assertIsNone(r.call("GET", "note:202"))
        self.assertEqual(larder_pending(s.c).get("notes", {}).get("depth", 0), 0)
        self.assertFalse(direct.exists("__larder:q:notes"))

    def test_through_hash(self):
        s = self.start_through()
        r = s.raw
        sql("INSERT INTO users VALUES (203, 'u203', 'u@x', 23)")
        self.assertEqual(r.call("HSET", "user:201", "name", "t1", "email", "t@x"), 2)
        self.assertEqual(rows("users", ["name", "email", "age"], [201]),
                         {201: ("t1", "t@x", None)})
        self.assertEqual(r.call("HSET", "user:201", "age", 9), 1)
        self.assertEqual(rows("users", ["name", "email", "age"], [201]),
                         {201: ("t1", "t@x", "9")})
        self.assertEqual(r.call("HDEL", "user:201", "email"), 1)
        self.assertEqual(rows("users", ["name", "email", "age"], [201]),
                         {201: ("t1", None, "9")})
        hg = r.call("HGETALL", "user:201")
        self.assertEqual(dict(zip(hg[0::2], hg[1::2])), bdict({"name": "t1", "age": 9}))
        # An existing row, not cached: its age existed, so 0 new fields, as Redis says.
        self.assertEqual(r.call("HSET", "user:203", "age", 24), 0)
        self.assertEqual(rows("users", ["name", "email", "age"], [203]),
                         {203: ("u203", "u@x", "24")})
        self.assertEqual(r.call("UNLINK", "user:201"), 1)
        self.assertEqual(rows("users", "name", [201]), {})

    def test_through_refusals(self):
        """Values PostgreSQL refuses: -ERR Larder: PostgreSQL refused the write,
        nothing changes anywhere."""
        s = self.start_through()
        r, direct = s.raw, s.direct
        sql("INSERT INTO users VALUES (205, 'u205', 'u@x', 25)")
        self.assertEqual(r.call("HGET", "user:205", "name"), b"u205")
        wait_until(lambda: direct.exists("user:205"), 5, "user:205 to be filled")
        before = (rows("users", ["name", "email", "age"], [202, 205]),
                  direct.exists("user:202"), direct.hgetall("user:205"))
        for args in (("HMSET", "user:202", "email", "no-name@x"),   # name is NOT NULL: 23502
                     ):
            self.assertError(r.call(*args), prefix="ERR Larder: PostgreSQL refused the write: ",
                             what=str(args))
        # Values Larder can check cheaply are refused before PostgreSQL sees them.
        for args in (("HSET", "user:202", "name", "n", "age", "abc"),
                     ("HSET", "user:205", "age", "abc")):
            self.assertError(r.call(*args), contains="is not a valid integer", what=str(args))
        self.assertEqual((rows("users", ["name", "email", "age"], [202, 205]),
                          direct.exists("user:202"), direct.hgetall("user:205")), before)

    def test_through_hmset_on_uncached_row_caches_no_partial_row(self):
        s = self.start_through()
        sql("INSERT INTO users VALUES (211, 'u211', 'u211@x', 21)")
        self.assertEqual(s.raw.call("HMSET", "user:211", "age", "22"), "OK")
        self.assertEqual(rows("users", ["name", "age"], [211]), {211: ("u211", "22")})
        self.assertIn(s.direct.hgetall("user:211"),
                      ({}, {b"name": b"u211", b"email": b"u211@x", b"age": b"22"}),
                      "a partial row was cached")
        self.assertEqual(s.c.hgetall("user:211"),
                         {b"name": b"u211", b"email": b"u211@x", b"age": b"22"})

    def test_through_group_commit(self):
        """Concurrent write-through clients share commits; each is answered
        only once its row is committed."""
        s = self.start_stack({"notes": notes_ks("through")}, admin=True)
        ids = list(range(260, 300))

        def writer(i):
            c = s.larder.client(socket_timeout=10)
            try:
                for round_ in range(5):
                    value = f"g{i}-{round_}"
                    self.assertTrue(c.set(f"note:{i}", value))
                    if round_ == 4:  # answered: committed
                        self.assertEqual(rows("notes", "body", [i]), {i: value})
            finally:
                close_client(c)

        run_threads(writer, len(ids), args_for=lambda n: (ids[n],))
        text = http_get(s.admin_port, "/metrics")[1]
        commits = metric_value(text, "larder_write_through_commits_total", "notes")
        writes = metric_value(text, "larder_write_through_total", "notes")
        self.assertEqual(writes, 5 * len(ids))
        self.assertLess(commits, writes, "every write had a commit of its own")

    def test_through_unsupported_options(self):
        s = self.start_through()
        r = s.raw
        sql("INSERT INTO notes VALUES (203, 'n203')")
        for args in (("SET", "note:203", "x", "NX"), ("SET", "note:203", "x", "XX"),
                     ("SET", "note:203", "x", "GET"), ("GETSET", "note:203", "x"),
                     ("GETDEL", "note:203")):
            self.assertError(r.call(*args), contains="through", what=str(args))
        self.assertEqual(rows("notes", "body", [203]), {203: "n203"})
        self.assertEqual(r.call("GET", "note:203"), b"n203")

    def test_through_mode_postgres_down(self):
        pg = self.outage_cluster()
        s = self.start_stack({"notes": notes_ks("through"), "users": users_ks("through")}, pg=pg)
        r, direct = s.raw, s.direct
        self.assertEqual(r.call("SET", "note:210", "before"), "OK")
        self.assertEqual(rows("notes", "body", [210], pg), {210: "before"})
        pg.kill()
        self.addCleanup(lambda: pg.running() or pg.restart())
        for args in (("SET", "note:210", "during"), ("SET", "note:211", "during"),
                     ("HSET", "user:210", "name", "during"), ("DEL", "note:210")):
            started = time.monotonic()
            reply = r.call(*args)
            took = time.monotonic() - started
            self.assertError(reply, prefix="ERR Larder: PostgreSQL unavailable", what=str(args))
            self.assertLess(took, 5.0, f"{args} took {took:.1f}s")
        self.assertIn(direct.get("note:210"), (b"before", None))
        self.assertFalse(direct.exists("note:211"))
        self.assertFalse(direct.exists("user:210"))
        pg.restart()
        self.assertEqual(rows("notes", "body", [210, 211], pg), {210: "before"})
        wait_until(lambda: r.call("SET", "note:211", "after") == "OK", 20,
                   "through writes to work again after PostgreSQL restarted")
        self.assertEqual(rows("notes", "body", [210, 211], pg), {210: "before", 211: "after"})


class ReadOnlyModeTest(WriteCase):

    def test_none_mode(self):
        s = self.start_stack({"notes": notes_ks("none"), "users": users_ks("none")})
        r, direct = s.raw, s.direct
        sql("INSERT INTO notes VALUES (220, 'n220'); "
            "INSERT INTO users VALUES (220, 'u220', 'u@x', 22)")
        self.assertEqual(r.call("GET", "note:220"), b"n220")  # reads still work
        wait_until(lambda: direct.exists("note:220"), 5, "note:220 to be filled")
        before_redis = direct.get("note:220")
        before_audit = audit("notes", [220, 221]) + audit("users", [220, 221])
        for args, ks in ((("SET", "note:220", "x"), "notes"), (("SET", "note:221", "x"), "notes"),
                         (("SETEX", "note:221", 10, "x"), "notes"),
                         (("PSETEX", "note:221", 10000, "x"), "notes"),
                         (("GETSET", "note:220", "x"), "notes"), (("GETDEL", "note:220"), "notes"),
                         (("MSET", "plain:3", "p", "note:221", "x"), "notes"),
                         (("DEL", "note:220"), "notes"), (("UNLINK", "note:220"), "notes"),
                         (("DEL", "plain:4", "user:220"), "users"),
                         (("HSET", "user:220", "name", "x"), "users"),
                         (("HMSET", "user:221", "name", "x"), "users"),
                         (("HDEL", "user:220", "email"), "users")):
            self.assertError(r.call(*args),
                             prefix=f"READONLY Larder: keyspace '{ks}' is read-only",
                             what=str(args))
        time.sleep(0.3)
        self.assertEqual(direct.get("note:220"), before_redis)
        self.assertFalse(direct.exists("note:221"))
        self.assertFalse(direct.exists("plain:3"), "MSET was refused but set the plain key")
        self.assertEqual(audit("notes", [220, 221]) + audit("users", [220, 221]), before_audit)
        self.assertEqual(rows("notes", "body", [220, 221]), {220: "n220"})
        self.assertEqual(rows("users", "name", [220, 221]), {220: "u220"})
        self.assertEqual([k for k in direct.keys("__larder:q:*")], [])


# ======================================================= 2. coalescing


class CoalescingTest(WriteCase):

    def stat_writes(self) -> int:
        out = PG.psql("SELECT pg_stat_clear_snapshot(); SELECT coalesce(n_tup_ins, 0) + "
                      "coalesce(n_tup_upd, 0) FROM pg_stat_user_tables WHERE relname = 'coal'",
                      dbname=DB)
        return int(out.split()[-1])

    def test_1000_sets_one_key_coalesce(self):
        s = self.start_stack({"coal": {"key": "coal:{id}", "table": "public.coal",
                                       "shape": "string", "columns": ["body"],
                                       "write": "behind"}})
        stat_before = self.stat_writes()
        p = s.c.pipeline(transaction=False)
        for i in range(1000):
            p.set("coal:1", f"v{i}")
        self.assertEqual(p.execute(), [True] * 1000)
        self.assertEqual(s.c.get("coal:1"), b"v999")
        self.wait_rows("coal", "body", {1: "v999"}, what="after 1000 SETs")
        wait_drained(s.c, "coal")
        time.sleep(0.3)
        # Exact count of row writes from the audit trigger.
        writes = [op for _, op, _ in audit("coal", [1])]
        self.assertGreaterEqual(len(writes), 1)
        self.assertLessEqual(len(writes), 10, f"{len(writes)} row writes for 1000 SETs")
        # The same measured with PostgreSQL's statistics: PG15 backends flush
        # them when idle (rate-limited) or on exit, so end Larder's backends
        # (it reconnects) and poll until the count settles.
        PG.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = 'app'", dbname=DB)
        deadline = time.monotonic() + 12
        value, stable_since = self.stat_writes(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = self.stat_writes()
            if now != value:
                value, stable_since = now, time.monotonic()
            elif value - stat_before >= 1 and time.monotonic() - stable_since >= 0.6:
                break
        stat_delta = value - stat_before
        self.assertGreaterEqual(stat_delta, 1)
        self.assertLessEqual(stat_delta, 10, f"n_tup_ins + n_tup_upd grew by {stat_delta}")
        # Larder still writes after its connections were ended.
        self.assertEqual(s.c.set("coal:1", "after"), True)
        self.wait_rows("coal", "body", {1: "after"}, timeout=10, what="after reconnecting")


    def test_small_max_batch(self):
        s = self.start_stack({"notes": notes_ks()}, write_behind={"max_batch": 7})
        ids = list(range(2100, 2230))
        p = s.c.pipeline(transaction=False)
        for i in ids:
            p.set(f"note:{i}", f"mb{i}")
        self.assertEqual(p.execute(), [True] * len(ids))
        self.wait_rows("notes", "body", {i: f"mb{i}" for i in ids}, timeout=10,
                       what="130 keys with max_batch 7")
        wait_drained(s.c, "notes")


class PipelineOrderTest(WriteCase):

    def test_pipelined_writes_and_reads_stay_in_order(self):
        """On one connection, a read pipelined right after a write sees it."""
        s = self.start_stack({"notes": notes_ks(), "users": users_ks()})
        sql("INSERT INTO notes SELECT g, 'pg' || g FROM generate_series(2300, 2399) g")
        p = s.c.pipeline(transaction=False)
        want = []
        for i in range(2300, 2400):
            p.get(f"note:{i}")
            want.append(b(f"pg{i}"))
            p.set(f"note:{i}", f"w{i}")
            want.append(True)
            p.get(f"note:{i}")
            want.append(b(f"w{i}"))
            if i % 3 == 0:
                p.delete(f"note:{i}")
                want.append(1)
                p.get(f"note:{i}")
                want.append(None)
            p.hset(f"user:{i}", mapping={"name": f"n{i}"})
            want.append(1)
            p.hget(f"user:{i}", "name")
            want.append(b(f"n{i}"))
        # A GET pipelined before a SET of the same key answers the old value.
        self.assertEqual(p.execute(), want)
        expected = {i: (None if i % 3 == 0 else f"w{i}") for i in range(2300, 2400)}
        self.wait_rows("notes", "body", expected, what="after the pipelined writes")
        self.wait_rows("users", "name", {i: f"n{i}" for i in range(2300, 2400)},
                       what="after the pipelined writes")


# ======================================================= 4./5. DEL, HDEL


class DeleteTest(WriteCase):

    def test_del_then_get(self):
        s = self.start_stack({"notes": notes_ks(), "users": users_ks()})
        r, direct = s.raw, s.direct
        sql("INSERT INTO notes VALUES (401, 'n401'), (402, 'n402'), (403, 'n403'); "
            "INSERT INTO users VALUES (401, 'u401', 'u@x', 41), (402, 'u402', NULL, 42)")
        self.assertEqual(r.call("GET", "note:401"), b"n401")  # cached
        wait_until(lambda: direct.exists("note:401"), 5, "note:401 to be filled")
        self.assertEqual(r.call("DEL", "note:401"), 1)
        self.assertIsNone(r.call("GET", "note:401"))
        self.assertEqual(r.call("EXISTS", "note:401"), 0)
        # A row that is not cached: DEL still deletes it (reply: 0 or 1).
        self.assertIn(r.call("DEL", "note:402"), (0, 1))
        self.assertIsNone(r.call("GET", "note:402"))
        self.assertIn(r.call("UNLINK", "note:403"), (0, 1))
        self.assertIsNone(r.call("GET", "note:403"))
        self.assertEqual(r.call("HGET", "user:401", "name"), b"u401")
        self.assertEqual(r.call("DEL", "user:401"), 1)
        self.assertEqual(r.call("HGETALL", "user:401"), [])
        self.assertIn(r.call("DEL", "user:402"), (0, 1))
        self.assertEqual(r.call("HGETALL", "user:402"), [])
        self.wait_rows("notes", "body", {401: None, 402: None, 403: None}, what="after DEL")
        self.wait_rows("users", "name", {401: None, 402: None}, what="after DEL")
        self.assertIsNone(r.call("GET", "note:401"))
        self.assertEqual(r.call("HGETALL", "user:402"), [])
        # Written again after the delete: the new value, also after the cache key goes.
        self.assertEqual(r.call("SET", "note:401", "again"), "OK")
        self.assertEqual(r.call("LARDER", "FLUSH"), "OK")
        self.assertEqual(rows("notes", "body", [401]), {401: "again"})
        direct.delete("note:401")
        self.assertEqual(r.call("GET", "note:401"), b"again")

    def test_write_after_negative_cache(self):
        """A read that found no row is remembered (negative_ttl 30s); a later
        write through Larder must not be hidden by it, also once the write's
        pending marker is gone (short timeouts make the marker linger ~4 s)."""
        s = self.start_stack({"notes": notes_ks(), "users": users_ks()},
                             postgres={"statement_timeout": "1s"},
                             read_through={"load_timeout": "1s"})
        r, direct = s.raw, s.direct
        self.assertIsNone(r.call("GET", "note:410"))
        self.assertEqual(r.call("HGETALL", "user:410"), [])
        self.assertEqual(r.call("SET", "note:410", "born"), "OK")
        self.assertEqual(r.call("HSET", "user:410", "name", "born"), 1)
        self.assertEqual(r.call("LARDER", "FLUSH"), "OK")
        self.assertEqual(rows("notes", "body", [410]), {410: "born"})
        time.sleep(0.2)
        direct.delete("note:410", "user:410")  # as an eviction would
        self.assertEqual(r.call("GET", "note:410"), b"born")
        self.assertEqual(r.call("HGETALL", "user:410"), [b"name", b"born"])
        wait_until(lambda: not direct.exists("__larder:pending:note:410",
                                             "__larder:pending:user:410"), 15,
                   "the flushed pending markers to go")
        direct.delete("note:410", "user:410")
        self.assertEqual(r.call("GET", "note:410"), b"born")
        self.assertEqual(r.call("HGETALL", "user:410"), [b"name", b"born"])

    def test_hdel_sets_columns_null(self):
        s = self.start_stack({"users": users_ks()})
        r, direct = s.raw, s.direct
        sql("INSERT INTO users VALUES (501, 'u501', 'e501@x', 51)")
        hg = r.call("HGETALL", "user:501")
        self.assertEqual(len(hg), 6)
        wait_until(lambda: direct.exists("user:501"), 5, "user:501 to be filled")
        self.assertEqual(r.call("HDEL", "user:501", "email", "age"), 2)
        self.assertEqual(r.call("HGETALL", "user:501"), [b"name", b"u501"])
        self.wait_rows("users", ["name", "email", "age"], {501: ("u501", None, None)},
                       what="after HDEL email age")
        self.assertEqual(direct.xlen("__larder:dead:users"), 0, "the HDEL was dead-lettered")
        direct.delete("user:501")
        self.assertEqual(r.call("HGETALL", "user:501"), [b"name", b"u501"])

    def test_hdel_not_null_column_refused(self):
        s = self.start_stack({"users": users_ks()})
        r, direct = s.raw, s.direct
        sql("INSERT INTO users VALUES (502, 'u502', 'e502@x', 52)")
        self.assertEqual(r.call("HGET", "user:502", "name"), b"u502")
        wait_until(lambda: direct.exists("user:502"), 5, "user:502 to be filled")
        audit_before = audit("users", [502])
        msg = "ERR Larder: column 'name' of keyspace 'users' is NOT NULL; HDEL cannot clear it"
        self.assertError(r.call("HDEL", "user:502", "name"), exact=msg)
        self.assertError(r.call("HDEL", "user:502", "email", "name"), exact=msg)
        self.assertError(r.call("HDEL", "user:503", "name"), exact=msg)  # no row, not cached
        self.assertError(r.call("HDEL", "user:502", "nosuch"),
                         exact="ERR Larder: 'nosuch' is not a column of keyspace 'users'")
        time.sleep(0.3)
        self.assertEqual(direct.hgetall("user:502"),
                         bdict({"name": "u502", "email": "e502@x", "age": 52}))
        self.assertEqual(audit("users", [502]), audit_before)
        self.assertFalse(direct.exists("__larder:q:users") and direct.xlen("__larder:q:users"))
        self.assertEqual(rows("users", ["name", "email", "age"], [502, 503]),
                         {502: ("u502", "e502@x", "52")})


# ================================================== 6. read-your-writes, layout


class ReadYourWritesTest(WriteCase):
    """Each test uses ids base+1 .. base+4 (notes) and base+1 (users)."""

    def cache_old_rows(self, r, direct, base: int, pg=None):
        n1, n2, n3 = base + 1, base + 2, base + 3
        sql(f"INSERT INTO notes VALUES ({n1}, 'old{n1}'), ({n2}, 'old{n2}'), ({n3}, 'old{n3}'); "
            f"INSERT INTO users VALUES ({n1}, 'old', 'old@x', 1)", pg)
        # Cache the old rows first, so that stale values would be at hand and
        # no write below needs to read PostgreSQL.
        self.assertEqual(r.call("MGET", f"note:{n1}", f"note:{n2}", f"note:{n3}"),
                         [b(f"old{n1}"), b(f"old{n2}"), b(f"old{n3}")])
        self.assertEqual(r.call("HGET", f"user:{n1}", "name"), b"old")
        wait_until(lambda: direct.exists(f"note:{n1}", f"note:{n2}", f"note:{n3}",
                                         f"user:{n1}") == 4, 5, "fills")

    def write_while_held(self, r, base: int):
        n1, n2, n3, n4 = base + 1, base + 2, base + 3, base + 4
        started = time.monotonic()
        self.assertEqual(r.call("SET", f"note:{n1}", f"new{n1}"), "OK")
        self.assertEqual(r.call("HSET", f"user:{n1}", "name", "new", "email", "new@x", "age", 9),
                         0)
        self.assertEqual(r.call("SET", f"note:{n2}", f"new{n2}", "PX", 200), "OK")
        self.assertEqual(r.call("DEL", f"note:{n3}"), 1)
        self.assertEqual(r.call("SET", f"note:{n4}", f"new{n4}"), "OK")
        self.assertFast(started, 1.0, "behind writes while the flush is held")

    def check_reads(self, r, direct, base: int):
        """Redis keys deleted behind Larder's back or expired: reads still
        return the written values, not PostgreSQL's old rows."""
        n1, n2, n3, n4 = base + 1, base + 2, base + 3, base + 4
        started = time.monotonic()
        direct.delete(f"note:{n1}", f"user:{n1}", f"note:{n4}")
        self.assertEqual(r.call("GET", f"note:{n1}"), b(f"new{n1}"))
        self.assertEqual(r.call("GET", f"note:{n4}"), b(f"new{n4}"))
        hg = r.call("HGETALL", f"user:{n1}")
        self.assertIsInstance(hg, list, hg)
        self.assertEqual(dict(zip(hg[0::2], hg[1::2])),
                         bdict({"name": "new", "email": "new@x", "age": 9}))
        self.assertEqual(r.call("HGET", f"user:{n1}", "email"), b"new@x")
        self.assertIsNone(r.call("GET", f"note:{n3}"))  # a pending delete
        wait_until(lambda: not direct.exists(f"note:{n2}"), 5, f"note:{n2} to expire")
        self.assertEqual(r.call("GET", f"note:{n2}"), b(f"new{n2}"))
        self.assertEqual(r.call("MGET", f"note:{n1}", f"note:{n2}", f"note:{n3}", f"note:{n4}"),
                         [b(f"new{n1}"), b(f"new{n2}"), None, b(f"new{n4}")])
        self.assertFast(started, 3.0, "reads answered from pending writes")

    def check_flushed(self, s, base: int, pg=None):
        n1, n2, n3, n4 = base + 1, base + 2, base + 3, base + 4
        self.wait_rows("notes", "body", {n1: f"new{n1}", n2: f"new{n2}", n3: None,
                                         n4: f"new{n4}"},
                       timeout=15, pg=pg, what="once the flush could go")
        self.wait_rows("users", ["name", "email", "age"], {n1: ("new", "new@x", "9")},
                       timeout=15, pg=pg, what="once the flush could go")
        wait_drained(s.c, "notes")
        wait_drained(s.c, "users")
        s.direct.delete(f"note:{n1}", f"user:{n1}")
        self.assertEqual(s.raw.call("GET", f"note:{n1}"), b(f"new{n1}"))
        self.assertEqual(s.raw.call("HGET", f"user:{n1}", "name"), b"new")

    def test_queue_layout_while_held(self):
        base = 610
        n1, n2, n3, n4 = base + 1, base + 2, base + 3, base + 4
        # Short timeouts: flushed markers linger statement_timeout + load_timeout + 2 s.
        s = self.start_stack({"notes": notes_ks(), "users": users_ks()},
                             postgres={"statement_timeout": "1s"},
                             read_through={"load_timeout": "1s"})
        r, direct = s.raw, s.direct
        self.cache_old_rows(r, direct, base)
        audit_before = audit("notes", [n1, n2, n3, n4]) + audit("users", [n1])
        held = self.hold("notes, users")
        try:
            self.write_while_held(r, base)
            self.assertEqual(r.call("HDEL", f"user:{n1}", "email"), 1)
            for key in (f"note:{n1}", f"user:{n1}", f"note:{n2}", f"note:{n3}", f"note:{n4}"):
                self.assertTrue(direct.exists(f"__larder:pending:{key}"),
                                f"no pending marker for {key}")
            self.assertEqual(direct.type(f"__larder:pending:note:{n1}"), b"hash")
            q_notes = stream_entries(direct, "__larder:q:notes")
            q_users = stream_entries(direct, "__larder:q:users")
            self.assertEntry(q_notes, {"k": b(f"note:{n1}"), "f:body": b(f"new{n1}")})
            self.assertEntry(q_notes, {"k": b(f"note:{n2}"), "f:body": b(f"new{n2}")})
            self.assertEntry(q_notes, {"k": b(f"note:{n3}"), "d": b"1"})
            self.assertEntry(q_users, {"k": b(f"user:{n1}"), "f:name": b"new",
                                       "f:email": b"new@x", "f:age": b"9"})
            self.assertEntry(q_users, {"k": b(f"user:{n1}"), "z:email": b""})
            for _, fields in q_notes + q_users:
                self.assertEqual(list(fields)[0], "k", f"the first field of an entry is k: "
                                                      f"{fields}")
                self.assertTrue(all(f == "k" or f == "d" or f.startswith(("f:", "z:"))
                                    for f in fields), fields)
            pend = larder_pending(s.c)
            self.assertEqual((pend["notes"]["depth"], pend["users"]["depth"]), (4, 2), pend)
            # Nothing committed (the audit table is not locked).
            self.assertEqual(audit("notes", [n1, n2, n3, n4]) + audit("users", [n1]),
                             audit_before)
        finally:
            held.release()
        self.wait_rows("users", ["name", "email", "age"], {n1: ("new", None, "9")},
                       what="once the lock was released")
        self.wait_rows("notes", "body", {n1: f"new{n1}", n2: f"new{n2}", n3: None,
                                         n4: f"new{n4}"}, what="once the lock was released")
        wait_drained(s.c, "notes")
        wait_drained(s.c, "users")
        self.assertEqual(direct.xlen("__larder:q:notes"), 0)
        # Flushed markers go (at once or after a short linger).
        wait_until(lambda: not direct.keys("__larder:pending:*"), 15,
                   "the pending markers to go once flushed")

    def test_read_your_writes_flush_held_by_lock(self):
        base = 620
        s = self.start_stack({"notes": notes_ks(), "users": users_ks()})
        r, direct = s.raw, s.direct
        self.cache_old_rows(r, direct, base)
        held = self.hold("notes, users", mode="EXCLUSIVE")  # the flush waits, reads do not
        try:
            self.write_while_held(r, base)
            self.check_reads(r, direct, base)
        finally:
            held.release()
        self.check_flushed(s, base)

    def test_read_your_writes_postgres_stopped(self):
        base = 630
        pg = self.outage_cluster()
        s = self.start_stack({"notes": notes_ks(), "users": users_ks()}, pg=pg)
        r, direct = s.raw, s.direct
        self.cache_old_rows(r, direct, base, pg)
        pg.stop()
        try:
            self.write_while_held(r, base)
            # Pending writes that decide the whole row (a string SET, an HSET
            # of every mapped column, a DEL) answer without PostgreSQL.
            self.check_reads(r, direct, base)
        finally:
            pg.restart()
        self.check_flushed(s, base, pg)


# ==================================================== 7. fill racing a write


class FillRaceTest(WriteCase):

    ROUNDS = 60

    def race(self, s, key: str, read_args, write_args_for, value_of, first_value):
        """Rounds of: delete the cache key directly, then a read and a write
        from two threads at once; the read sees the old or the new value,
        and every read after the write's ack sees the new one."""
        reader = s.larder.client()
        writer = s.larder.client()
        checker = s.larder.client()
        for c in (reader, writer, checker):
            self.addCleanup(close_client, c)
        prev = first_value
        deadline = time.monotonic() + 25
        for i in range(self.ROUNDS):
            if time.monotonic() > deadline:
                break
            s.direct.delete(key)
            barrier = threading.Barrier(2, timeout=5)
            out = {}

            def do_read():
                barrier.wait()
                out["read"] = value_of(reader.execute_command(*read_args))

            def do_write():
                barrier.wait()
                out["write"] = writer.execute_command(*write_args_for(i))

            run_threads(lambda n: (do_read, do_write)[n](), 2, timeout=10)
            new = f"r{i}"
            self.assertIn(out["read"], (prev, new), f"round {i}: concurrent read")
            got = value_of(checker.execute_command(*read_args))
            self.assertEqual(got, new, f"round {i}: read after the write's ack")
            cached = s.direct.type(key)
            self.assertIn(cached, (b"none", b"string", b"hash"), f"round {i}")
            if i % 7 == 0:
                time.sleep(0.06)  # sometimes let a flush land between rounds
            prev = new
        return prev

    def test_read_right_after_write_after_a_load(self):
        """No lock, no race: a read loads the row, a write is acked, the key
        leaves Redis (eviction, expiry, a direct DEL), the next read must show
        the write, not the row loaded just before it."""
        s = self.start_stack({"notes": notes_ks(), "users": users_ks()})
        r, direct = s.raw, s.direct
        sql("INSERT INTO notes SELECT g, 'old' || g FROM generate_series(710, 739) g; "
            "INSERT INTO users SELECT g, 'old' || g FROM generate_series(710, 719) g")
        stale = []
        for i in range(710, 740):
            self.assertEqual(r.call("GET", f"note:{i}"), b(f"old{i}"))
            self.assertEqual(r.call("SET", f"note:{i}", "new"), "OK")
            direct.delete(f"note:{i}")
            got = r.call("GET", f"note:{i}")
            if got != b"new":
                stale.append((f"note:{i}", got))
        for i in range(710, 720):
            self.assertEqual(r.call("HGET", f"user:{i}", "name"), b(f"old{i}"))
            self.assertIn(r.call("HSET", f"user:{i}", "name", "new"), (0, 1))
            direct.delete(f"user:{i}")
            got = r.call("HGET", f"user:{i}", "name")
            if got != b"new":
                stale.append((f"user:{i}", got))
        self.assertEqual(stale, [], "reads after an acked write returned the old row")

    def test_fill_never_beats_a_write(self):
        s = self.start_stack({"notes": notes_ks(), "users": users_ks()})
        sql("INSERT INTO notes VALUES (701, 'pg'); INSERT INTO users VALUES (701, 'pg', 'pg@x', 7)")
        last = self.race(s, "note:701", ("GET", "note:701"),
                         lambda i: ("SET", "note:701", f"r{i}"),
                         lambda v: v.decode() if v is not None else None, "pg")
        self.wait_rows("notes", "body", {701: last}, what="after the string race")
        self.assertIn(s.direct.get("note:701"), (b(last), None))
        self.assertEqual(s.c.get("note:701"), b(last))

        def name_of(reply):
            d = reply if isinstance(reply, dict) else dict(zip(reply[0::2], reply[1::2]))
            v = d.get(b"name")
            return v.decode() if v is not None else None
        last = self.race(s, "user:701", ("HGETALL", "user:701"),
                         lambda i: ("HSET", "user:701", "name", f"r{i}", "email", f"e{i}",
                                    "age", i), name_of, "pg")
        n = int(last[1:])
        self.wait_rows("users", ["name", "email", "age"], {701: (last, f"e{n}", str(n))},
                       what="after the hash race")
        self.assertIn(s.direct.hget("user:701", "name"), (b(last), None))
        self.assertEqual(s.c.hgetall("user:701"),
                         bdict({"name": last, "email": f"e{n}", "age": n}))


# ===================================================== 8. dead letters


class DeadLetterTest(WriteCase):

    def restore_constraint(self):
        sql("DELETE FROM items WHERE qty < 0; "
            "ALTER TABLE items DROP CONSTRAINT IF EXISTS items_qty_check; "
            "ALTER TABLE items ADD CONSTRAINT items_qty_check CHECK (qty >= 0)")

    def test_dead_letters_retry_drop(self):
        s = self.start_stack({"items": items_ks(), "users": users_ks()})
        r, direct = s.raw, s.direct
        self.addCleanup(self.restore_constraint)
        sql("INSERT INTO items VALUES (805, 'e', 2)")
        hg = r.call("HGETALL", "item:805")
        self.assertEqual(dict(zip(hg[0::2], hg[1::2])), {b"name": b"e", b"qty": b"2"})
        wait_until(lambda: direct.exists("item:805"), 5, "item:805 to be filled")

        # All in one batch: the flush is held while they are queued. HMSET
        # (reply +OK) needs no row, so nothing here waits for PostgreSQL.
        held = self.hold("items")
        try:
            for args in (("HMSET", "item:801", "name", "a", "qty", 1),
                         ("HMSET", "item:802", "name", "b", "qty", -5),   # 23514
                         ("HMSET", "item:803", "name", "c", "qty", 3),
                         ("HMSET", "item:804", "name", "d", "qty", -7),   # 23514
                         ("HMSET", "item:805", "qty", -1),                # 23514, cached row
                         ("HMSET", "item:806", "name", "f", "qty", 6)):
                self.assertEqual(r.call(*args), "OK", args)
        finally:
            held.release()
        self.wait_rows("items", ["name", "qty"],
                       {801: ("a", "1"), 802: None, 803: ("c", "3"), 804: None, 805: ("e", "2"),
                        806: ("f", "6")}, what="neighbours of refused rows")
        wait_until(lambda: direct.xlen("__larder:dead:items") == 3, 5,
                   "3 entries in __larder:dead:items")
        dead = stream_entries(direct, "__larder:dead:items")
        by_key = {f["k"]: (i, f) for i, f in dead}
        self.assertEqual(sorted(by_key), [b"item:802", b"item:804", b"item:805"])
        for key, (_, f) in by_key.items():
            self.assertEqual(f["sqlstate"], b"23514", f)
            self.assertIn(b"items_qty_check", f["error"], f)
            self.assertEqual(list(f)[:3], ["k", "sqlstate", "error"], f)
        self.assertEqual(by_key[b"item:802"][1].get("f:qty"), b"-5")
        self.assertEqual(by_key[b"item:802"][1].get("f:name"), b"b")
        self.assertEqual(by_key[b"item:805"][1].get("f:qty"), b"-1")
        # The refused keys were dropped from Redis: reads show PostgreSQL's row.
        for key in ("item:802", "item:804", "item:805"):
            self.assertFalse(direct.exists(key), f"{key} still cached after its dead letter")
        self.assertEqual(r.call("HGETALL", "item:802"), [])
        self.assertEqual(r.call("HGETALL", "item:804"), [])
        hg = r.call("HGETALL", "item:805")
        self.assertEqual(dict(zip(hg[0::2], hg[1::2])), {b"name": b"e", b"qty": b"2"})

        # LARDER PENDING and LARDER DEADLETTERS.
        pend = larder_pending(s.c)
        self.assertEqual(int(pend["items"]["dead_letters"]), 3, pend)
        self.assertEqual(int(pend["items"]["depth"]), 0, pend)
        self.assertEqual(int(pend["users"]["dead_letters"]), 0, pend)
        listed = r.call("LARDER", "DEADLETTERS", "items", "LIST")
        self.assertEqual(len(listed), 3, listed)
        for entry in listed:
            self.assertEqual(entry[0::2][:4], [b"id", b"k", b"sqlstate", b"error"], entry)
        listed_ids = {e[3]: e[1] for e in listed}
        self.assertEqual({k: b(v[0]) for k, v in by_key.items()}, listed_ids)
        d802 = flat_to_dict(next(e for e in listed if e[3] == b"item:802"))
        self.assertEqual(d802["sqlstate"], b"23514")
        self.assertEqual(d802.get("f:qty"), b"-5")
        self.assertEqual(len(r.call("LARDER", "DEADLETTERS", "items", "LIST", 1)), 1)
        self.assertEqual(r.call("LARDER", "DEADLETTERS", "users", "LIST"), [])

        # DROP one; fix the constraint; RETRY one, then ALL: they flush.
        self.assertEqual(r.call("LARDER", "DEADLETTERS", "items", "DROP",
                                listed_ids[b"item:804"]), 1)
        self.assertEqual(len(r.call("LARDER", "DEADLETTERS", "items", "LIST")), 2)
        sql("ALTER TABLE items DROP CONSTRAINT items_qty_check")
        self.assertEqual(r.call("LARDER", "DEADLETTERS", "items", "RETRY",
                                listed_ids[b"item:802"]), 1)
        self.wait_rows("items", ["name", "qty"], {802: ("b", "-5")}, what="after RETRY <id>")
        self.assertEqual(direct.xlen("__larder:dead:items"), 1)
        # The read of item:802 above (no row) was negative-cached; RETRY forgets it.
        self.assertEqual(r.call("HGETALL", "item:802"), [b"name", b"b", b"qty", b"-5"])
        self.assertEqual(r.call("LARDER", "DEADLETTERS", "items", "RETRY", "ALL"), 1)
        self.wait_rows("items", ["name", "qty"], {804: None, 805: ("e", "-1")},
                       what="after RETRY ALL")
        self.assertEqual(r.call("LARDER", "DEADLETTERS", "items", "LIST"), [])
        # DROP ALL.
        sql("ALTER TABLE items ADD CONSTRAINT items_qty_check CHECK (qty >= 0) NOT VALID")
        self.assertEqual(r.call("HMSET", "item:807", "name", "g", "qty", -3), "OK")
        self.assertEqual(r.call("HMSET", "item:808", "name", "h", "qty", -4), "OK")
        wait_until(lambda: direct.xlen("__larder:dead:items") == 2, 5, "two new dead letters")
        self.assertEqual(r.call("LARDER", "DEADLETTERS", "items", "DROP", "ALL"), 2)
        self.assertEqual(r.call("LARDER", "DEADLETTERS", "items", "LIST"), [])
        self.assertEqual(direct.xlen("__larder:dead:items"), 0)
        self.assertEqual(int(larder_pending(s.c)["items"]["dead_letters"]), 0)
        self.assertEqual(rows("items", "qty", [807, 808]), {})

    def test_bad_int_value_is_refused_at_write_time(self):
        """A value PostgreSQL would reject that Larder can check cheaply ('abc'
        into an int column) is refused before anything is written (the issue
        allows it; docs/writes.md); values it cannot check go to the dead
        letters (test_dead_letters_retry_drop)."""
        s = self.start_stack({"items": items_ks(), "users": users_ks()})
        r, direct = s.raw, s.direct
        sql("INSERT INTO items VALUES (811, 'k', 11)")
        self.assertEqual(r.call("HGET", "item:811", "qty"), b"11")
        wait_until(lambda: direct.exists("item:811"), 5, "item:811 to be filled")
        msg = "ERR Larder: value for column 'qty' of keyspace 'items' is not a valid integer"
        self.assertError(r.call("HMSET", "item:810", "name", "x", "qty", "abc"), exact=msg)
        self.assertError(r.call("HSET", "item:811", "qty", "abc"), exact=msg)
        self.assertError(r.call("HSET", "item:811", "qty", "99999999999"), exact=msg)  # > int
        self.assertEqual(r.call("HMSET", "item:812", "name", "ok", "qty", " +12 "), "OK")
        self.assertEqual(r.call("LARDER", "FLUSH"), "OK")
        self.assertEqual(rows("items", ["name", "qty"], [810, 811, 812]),
                         {811: ("k", "11"), 812: ("ok", "12")})
        self.assertEqual(direct.xlen("__larder:q:items"), 0)
        self.assertEqual(direct.exists("__larder:dead:items"), 0)
        self.assertEqual(r.call("HGETALL", "item:811"), [b"name", b"k", b"qty", b"11"])


# ======================================================= 9. queue bound


class QueueBoundTest(WriteCase):
    """Plain SETs (they never need the row), with the flush held by a lock."""

    def test_max_queue_error(self):
        s = self.start_stack({"notes": notes_ks()}, write_behind={"max_queue": 50})
        r = s.raw
        acked = {}
        held = self.hold("notes")
        try:
            first_error = None
            for n in range(60):
                i = 900 + n
                reply = r.call("SET", f"note:{i}", f"q{n}")
                if isinstance(reply, RespError):
                    first_error = (n, reply)
                    break
                self.assertEqual(reply, "OK")
                acked[i] = f"q{n}"
            self.assertIsNotNone(first_error, "60 writes acked with max_queue 50")
            self.assertEqual(first_error[0], 50, f"first refused write: {first_error}")
            self.assertError(first_error[1], prefix="ERR", contains="queue")
            self.assertFalse(s.direct.exists("note:950"), "a refused write changed the cache")
            self.assertEqual(int(larder_pending(s.c)["notes"]["depth"]), 50)
        finally:
            held.release()
        self.wait_rows("notes", "body", {**acked, 950: None}, timeout=10,
                       what="every acked write, not the refused one")
        wait_drained(s.c, "notes")
        self.assertEqual(r.call("SET", "note:999", "after"), "OK")
        self.wait_rows("notes", "body", {999: "after"}, what="a write after the queue drained")

    def test_max_queue_block(self):
        s = self.start_stack({"notes": notes_ks()},
                             write_behind={"max_queue": 20, "on_full": "block",
                                           "block_timeout": "3s"})
        r = s.raw
        held = self.hold("notes")
        out = {}
        t = None
        try:
            for n in range(20):
                self.assertEqual(r.call("SET", f"note:{970 + n}", "b"), "OK", n)
            started = time.monotonic()
            reply = r.call("SET", "note:990", "b")
            took = time.monotonic() - started
            self.assertError(reply, prefix="ERR", contains="queue")
            self.assertGreaterEqual(took, 2.9, "on_full: block did not wait block_timeout")
            self.assertLess(took, 5.0)
            # A blocked write goes in once the queue drains.
            t = threading.Thread(target=lambda: out.setdefault(
                "r", call(s.c, "SET", "note:991", "late")), daemon=True)
            t.start()
            time.sleep(0.3)
            self.assertNotIn("r", out, "the write did not block on a full queue")
        finally:
            held.release()
        if t is not None:
            t.join(10)
        self.assertEqual(out.get("r"), True)
        expected = {970 + n: "b" for n in range(20)}
        expected.update({990: None, 991: "late"})
        self.wait_rows("notes", "body", expected, timeout=10, what="after the queue drained")


# ======================================================= 10. FLUSHALL


class FlushAllTest(WriteCase):

    def test_flushall_and_flushdb_keep_pending_writes(self):
        s = self.start_stack({"notes": notes_ks(), "users": users_ks(), "items": items_ks()})
        r, direct = s.raw, s.direct
        # A dead letter to keep (CHECK (qty >= 0)).
        self.assertEqual(r.call("HMSET", "item:1000", "name", "bad", "qty", -1), "OK")
        wait_until(lambda: direct.exists("__larder:dead:items"), 5, "a dead letter")
        for cmd in ("FLUSHALL", "FLUSHDB"):
            base = 10001 if cmd == "FLUSHALL" else 10601
            ids = list(range(base, base + 500))
            p = s.c.pipeline(transaction=False)
            for i in ids:
                p.hset(f"user:{i}", mapping={"name": f"{cmd}-{i}", "age": i})
                p.set(f"note:{i}", f"{cmd}-{i}")
            p.set(f"plain:{cmd}", "x")
            p.execute_command(cmd)
            res = p.execute()
            self.assertEqual(res[:-2], [2, True] * 500)
            self.assertTrue(res[-1], res[-1])
            # Everything acked before FLUSHALL is in PostgreSQL right away.
            got = rows("users", ["name", "age"], ids)
            self.assertEqual(got, {i: (f"{cmd}-{i}", str(i)) for i in ids}, cmd)
            self.assertEqual(rows("notes", "body", ids), {i: f"{cmd}-{i}" for i in ids}, cmd)
            self.assertEqual(user_keys(direct), [], f"{cmd} left cache keys")
            self.assertEqual(direct.xlen("__larder:dead:items"), 1, f"{cmd} lost the dead letter")
            self.assertEqual(int(larder_pending(s.c)["items"]["dead_letters"]), 1)
            # Reads reload from PostgreSQL.
            self.assertEqual(s.c.get(f"note:{ids[0]}"), b(f"{cmd}-{ids[0]}"))
            self.assertEqual(s.c.hget(f"user:{ids[-1]}", "name"), b(f"{cmd}-{ids[-1]}"))


# ============================================== 11. PostgreSQL down under load


class PostgresOutageTest(WriteCase):

    WRITERS = 20
    OUTAGE = 30.0

    def test_postgres_stopped_under_write_load(self):
        pg = self.outage_cluster()
        self.addCleanup(lambda: pg.running() or pg.restart())
        s = self.start_stack({"notes": notes_ks()}, pg=pg)
        stop = threading.Event()
        acked = [0] * self.WRITERS          # last acked value per writer's key
        acks_during = [0] * self.WRITERS
        outage = {"on": False}
        errors = []
        max_latency = [0.0]

        def writer(w):
            c = s.larder.client(socket_timeout=10)
            try:
                n = 0
                while not stop.is_set() and n < 5000:
                    n += 1
                    started = time.monotonic()
                    try:
                        ok = c.set(f"note:{11000 + w}", str(n))
                    except Exception as e:  # noqa: BLE001 - reported below
                        errors.append((w, n, repr(e)))
                        return
                    max_latency[0] = max(max_latency[0], time.monotonic() - started)
                    if ok is not True:
                        errors.append((w, n, repr(ok)))
                        return
                    acked[w] = n
                    if outage["on"]:
                        acks_during[w] += 1
                    time.sleep(0.03)
            finally:
                close_client(c)

        threads = [threading.Thread(target=writer, args=(w,), daemon=True)
                   for w in range(self.WRITERS)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.5)
            pg.stop()
            outage["on"] = True
            time.sleep(self.OUTAGE)
            outage["on"] = False
            pg.restart()
            time.sleep(1)
        finally:
            stop.set()
            for t in threads:
                t.join(15)
        self.assertFalse(any(t.is_alive() for t in threads), "writers still running")
        self.assertEqual(errors, [], "writes failed")
        self.assertTrue(all(n >= 50 for n in acks_during),
                        f"writes not acked during the outage: {acks_during}")
        self.assertLess(max_latency[0], 5.0)
        ids = [11000 + w for w in range(self.WRITERS)]
        expected = {11000 + w: str(acked[w]) for w in range(self.WRITERS)}
        self.wait_rows("notes", "body", expected, timeout=30, pg=pg,
                       what="after PostgreSQL came back")
        wait_drained(s.c, "notes", 10)
        # In order: each key's committed values only ever went up.
        history = {}
        for rid, op, row in audit("notes", ids, pg):
            self.assertNotEqual(op, "DELETE")
            history.setdefault(rid, []).append(int(row["body"]))
        for rid, values in history.items():
            self.assertEqual(values, sorted(values), f"note:{rid} went backwards")
        for w in range(self.WRITERS):
            self.assertEqual(s.c.get(f"note:{11000 + w}"), b(acked[w]))


# ============================================ 12. two Larders, one Redis + PG


class TwoLardersTest(WriteCase):

    def test_two_instances_alternate(self):
        a = self.start_stack({"notes": notes_ks(), "users": users_ks()})
        bstack = self.start_stack({"notes": notes_ks(), "users": users_ks()},
                                  redis_server=a.redis_server)
        ca, cb = a.c, bstack.c
        keys = 30
        rounds = 7
        last = {}

        def run_key(k):
            # Each key's writes are awaited in order: A, B, A, B, ...
            ca_k = a.larder.client()
            cb_k = bstack.larder.client()
            try:
                for v in range(1, rounds + 1):
                    via, other = (ca_k, cb_k) if v % 2 else (cb_k, ca_k)
                    assert via.set(f"note:{1200 + k}", f"v{v}") is True
                    assert via.hset(f"user:{1200 + k}", mapping={"name": f"v{v}", "age": v}) in (0, 2)
                    got = other.get(f"note:{1200 + k}")
                    assert got == b(f"v{v}"), f"note:{1200 + k}: read {got!r} after v{v}"
                    last[k] = v
            finally:
                close_client(ca_k)
                close_client(cb_k)

        run_threads(run_key, keys, timeout=60)
        ids = [1200 + k for k in range(keys)]
        self.wait_rows("notes", "body", {i: f"v{rounds}" for i in ids}, timeout=10,
                       what="after alternating writes via A and B")
        self.wait_rows("users", ["name", "age"], {i: (f"v{rounds}", str(rounds)) for i in ids},
                       timeout=10, what="after alternating writes via A and B")
        wait_drained(ca, "notes")
        wait_drained(cb, "users")
        history = {}
        for rid, op, row in audit("notes", ids):
            history.setdefault(rid, []).append(int(row["body"][1:]))
        for rid, values in history.items():
            self.assertEqual(values, sorted(values), f"note:{rid} went backwards: {values}")
        a.direct.delete(*[f"note:{i}" for i in ids])
        self.assertEqual(cb.mget(*[f"note:{i}" for i in ids]), [b(f"v{rounds}")] * keys)


# ================================================== 13. reserved keys


class ReservedKeysTest(WriteCase):

    def test_reserved_keys_refused(self):
        s = self.start_stack({"users": users_ks()})
        r, direct = s.raw, s.direct
        held = self.hold("users")
        try:
            self.assertEqual(r.call("HMSET", "user:1300", "name", "r"), "OK")
            q_before = stream_entries(direct, "__larder:q:users")
            self.assertTrue(q_before)
            for args in (("GET", "__larder:q:users"),
                         ("XADD", "__larder:q:users", "*", "k", "user:1", "f:name", "evil"),
                         ("DEL", "__larder:pending:user:1"),
                         ("DEL", "__larder:pending:user:1300"),
                         ("XLEN", "__larder:q:users"),
                         ("XRANGE", "__larder:q:users", "-", "+"),
                         ("HGETALL", "__larder:pending:user:1300"),
                         ("EXISTS", "__larder:dead:users"),
                         ("SET", "__larder:x", "1"),
                         ("MSET", "plain:13", "1", "__larder:x", "1"),
                         ("DEL", "plain:13", "__larder:q:users"),
                         ("RENAME", "plain:13", "__larder:q:users"),
                         ("UNLINK", "__larder:q:users"),
                         ("EXPIRE", "__larder:q:users", 1)):
                self.assertError(r.call(*args), exact=RESERVED, what=str(args))
            self.assertEqual(stream_entries(direct, "__larder:q:users"), q_before)
            self.assertTrue(direct.exists("__larder:pending:user:1300"))
            self.assertFalse(direct.exists("__larder:x"))
            self.assertFalse(direct.exists("plain:13"))
        finally:
            held.release()
        self.wait_rows("users", "name", {1300: "r", 1: None}, what="after the reserved-key tries")


# ============================================== 14. SIGTERM drains the queues


class ShutdownDrainTest(WriteCase):

    def test_sigterm_drains(self):
        # A long flush_interval so that the writes are certainly still queued.
        s = self.start_stack({"notes": notes_ks(), "users": users_ks()},
                             write_behind={"flush_interval": "3s"})
        ids = list(range(20000, 20500))
        p = s.c.pipeline(transaction=False)
        for i in ids:
            p.set(f"note:{i}", f"t{i}")
            p.hset(f"user:{i}", mapping={"name": f"t{i}"})
        self.assertEqual(p.execute(), [True, 1] * len(ids))
        self.assertGreater(int(larder_pending(s.c)["notes"]["depth"]), 0)
        started = time.monotonic()
        close_client(s.c)
        s.larder.stop(timeout=15)
        took = time.monotonic() - started
        self.assertEqual(rows("notes", "body", ids), {i: f"t{i}" for i in ids})
        self.assertEqual(rows("users", "name", ids), {i: f"t{i}" for i in ids})
        self.assertLess(took, 10.0)

    def test_sigterm_drain_timeout_keeps_queue(self):
        """With the flush held, SIGTERM gives up after drain_timeout; the
        queued writes stay in Redis and the next Larder flushes them."""
        s = self.start_stack({"notes": notes_ks()}, write_behind={"drain_timeout": "1s"})
        held = self.hold("notes")
        try:
            for i in range(20500, 20510):
                self.assertEqual(s.c.set(f"note:{i}", f"d{i}"), True)
            close_client(s.c)
            started = time.monotonic()
            s.larder.signal(signal.SIGTERM)
            s.larder.wait_exit(timeout=10)
            took = time.monotonic() - started
            self.assertLess(took, 6.0, "drain_timeout 1s was not honoured")
            self.assertGreaterEqual(took, 0.8, "Larder exited before drain_timeout")
            self.assertGreaterEqual(s.direct.xlen("__larder:q:notes"), 10)
        finally:
            held.release()
        s2 = self.start_stack({"notes": notes_ks()}, redis_server=s.redis_server)
        self.wait_rows("notes", "body", {i: f"d{i}" for i in range(20500, 20510)}, timeout=10,
                       what="queued writes left by the previous Larder")
        wait_drained(s2.c, "notes")


# ================================================ operator commands, metrics


class OperatorTest(WriteCase):

    def test_larder_pending_and_flush(self):
        s = self.start_stack({"notes": notes_ks(), "users": users_ks()},
                             write_behind={"flush_interval": "10s"})
        wait_flushing(s.larder, "notes", "users")
        r = s.raw
        pend = r.call("LARDER", "PENDING")
        self.assertEqual(len(pend), 2, pend)
        for entry in pend:
            self.assertEqual(entry[0::2], [b"keyspace", b"depth", b"oldest_age_ms",
                                           b"dead_letters"], entry)
            self.assertTrue(all(isinstance(v, int) for v in entry[3::2]), entry)
        self.assertEqual(sorted(e[1] for e in pend), [b"notes", b"users"])
        self.assertEqual([e[3] for e in pend], [0, 0])

        # flush_interval 10s: LARDER FLUSH <keyspace> commits synchronously.
        for i in range(1500, 1503):
            self.assertEqual(r.call("SET", f"note:{i}", f"o{i}"), "OK")
        self.assertEqual(r.call("HSET", "user:1500", "name", "o"), 1)
        time.sleep(0.3)
        pend = larder_pending(s.c)
        self.assertEqual(pend["notes"]["depth"], 3, pend)
        self.assertEqual(pend["users"]["depth"], 1, pend)
        self.assertGreaterEqual(pend["notes"]["oldest_age_ms"], 250, pend)
        self.assertLess(pend["notes"]["oldest_age_ms"], 5000, pend)
        self.assertEqual(r.call("LARDER", "FLUSH", "notes"), "OK")
        self.assertEqual(rows("notes", "body", range(1500, 1503)),
                         {i: f"o{i}" for i in range(1500, 1503)})
        self.assertEqual(rows("users", "name", [1500]), {}, "FLUSH notes flushed users too")
        self.assertEqual(larder_pending(s.c)["notes"]["depth"], 0)
        self.assertEqual(r.call("LARDER", "FLUSH"), "OK")
        self.assertEqual(rows("users", "name", [1500]), {1500: "o"})
        self.assertEqual(larder_pending(s.c)["users"]["depth"], 0)

        # LARDER FLUSH waits for a held flush, and returns once it committed.
        held = self.hold("notes")
        out = {}
        try:
            self.assertEqual(r.call("SET", "note:1503", "held"), "OK")
            fl = s.larder.client(socket_timeout=20)
            self.addCleanup(close_client, fl)
            t = threading.Thread(target=lambda: out.setdefault("r", call(fl, "LARDER", "FLUSH")),
                                 daemon=True)
            t.start()
            time.sleep(0.5)
            self.assertNotIn("r", out, "LARDER FLUSH returned before the commit")
        finally:
            held.release()
        t.join(10)
        self.assertIn(out.get("r"), (True, b"OK", "OK"))
        self.assertEqual(rows("notes", "body", [1503]), {1503: "held"})

    def test_metrics(self):
        s = self.start_stack({"notes": notes_ks(), "items": items_ks()}, admin=True)
        r = s.raw
        p = s.c.pipeline(transaction=False)
        for i in range(200):
            p.set("note:1550", f"m{i}")
        p.execute()
        self.assertEqual(r.call("HMSET", "item:1550", "name", "m", "qty", -1), "OK")
        self.assertEqual(r.call("LARDER", "FLUSH"), "OK")
        wait_until(lambda: s.direct.exists("__larder:dead:items"), 5, "a dead letter")
        status, text = http_get(s.admin_port, "/metrics")
        self.assertEqual(status, 200)
        missing = []
        for name in ("larder_write_queue_depth", "larder_flush_rows_total",
                     "larder_dead_letters_total", "larder_writes_coalesced_total"):
            if metric_value(text, name, "notes") is None:
                missing.append(name)
        self.assertEqual(missing, [], "metrics missing from /metrics (with keyspace label)")
        wait_until(lambda: metric_value(http_get(s.admin_port, "/metrics")[1],
                                        "larder_write_queue_depth", "notes") == 0, 5,
                   "larder_write_queue_depth{keyspace=notes} to be 0 after LARDER FLUSH")
        self.assertGreaterEqual(metric_value(text, "larder_flush_rows_total", "notes"), 1)
        self.assertLess(metric_value(text, "larder_flush_rows_total", "notes"), 200)
        self.assertGreater(metric_value(text, "larder_writes_coalesced_total", "notes"), 0)
        self.assertEqual(metric_value(text, "larder_dead_letters_total", "items"), 1)
        self.assertEqual(metric_value(text, "larder_dead_letters_total", "notes"), 0)
        held = self.hold("notes")
        try:
            for i in range(5):
                self.assertEqual(r.call("SET", f"note:{1560 + i}", "q"), "OK")
            wait_until(lambda: metric_value(http_get(s.admin_port, "/metrics")[1],
                                            "larder_write_queue_depth", "notes") == 5, 5,
                       "larder_write_queue_depth{keyspace=notes} to be 5")
        finally:
            held.release()


if __name__ == "__main__":
    harness.main()
