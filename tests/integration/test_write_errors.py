"""What a PostgreSQL error does to queued writes (issue 14, items 2 and 3).

Real redis-server and PostgreSQL 15 on loopback, started through harness.py.
Only errors about the row's own data (SQLSTATE classes 22 and 23) send a row
to the dead letters. Anything else (a renamed column, a read-only database,
terminated backends) pauses the keyspace's flush: the queue and the cached
value stay, /readyz says why, the SQLSTATE is logged once, and the writes
arrive once PostgreSQL is fixed. A value too long for varchar(n) is refused
(22001), never cut. DEADLETTERS RETRY never puts an old value over a newer
write, and re-queues in the original order.

Run: /usr/bin/python3 tests/integration/test_write_errors.py [-v]
"""

from __future__ import annotations

import os
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import HOST, LarderTestCase, PostgresServer, close_client, free_port, wait_until  # noqa: E402

DB = "app"
SCHEMA = r"""
CREATE TABLE notes (id bigint PRIMARY KEY, body text);
CREATE TABLE codes (id bigint PRIMARY KEY, code varchar(3), tag char(2));
CREATE TABLE items (id bigint PRIMARY KEY, qty int CONSTRAINT items_qty_check CHECK (qty >= 0));
"""
PG: PostgresServer | None = None


def setUpModule():
    global PG
    PG = harness.module_postgres(DB, SCHEMA)


def sql(q: str) -> str:
    return PG.psql(q, dbname=DB).strip()


def readyz(port: int):
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/readyz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class ErrorCase(LarderTestCase):

    def stack(self, keyspaces: dict, **extra):
        self.admin = free_port()
        rs = self.start_redis()
        config = {"admin": f"{HOST}:{self.admin}",
                  "postgres": {"dsn": PG.dsn(DB), "pool_size": 2},
                  "write_behind": {"flush_interval": "50ms", "retry_min": "50ms",
                                   "retry_max": "300ms", "drain_timeout": "2s"},
                  "keyspaces": keyspaces}
        larder = self.start_larder(rs, config=harness._merge(config, extra))
        direct = rs.client()
        self.addCleanup(close_client, direct)
        return larder, self.client(larder), direct

    def paused(self, larder, ks: str) -> bool:
        return larder.info_larder().get(f"keyspace_{ks}", {}).get("flush_paused") == 1

    def assertPausedNotDead(self, larder, direct, ks: str, key: str, value: bytes, state: str):
        wait_until(lambda: self.paused(larder, ks), 10, f"the flush of {ks} to pause")
        # The pause shows the latest error: a terminated session (57P01) may
        # come first, then the error of the retries on fresh sessions.
        expected = f"flush of keyspace {ks}: paused (SQLSTATE {state})"
        wait_until(lambda: expected in readyz(self.admin)[1], 10, f"/readyz to show {expected}")
        status, body = readyz(self.admin)
        self.assertEqual(status, 503, body)
        self.assertIn(expected, body)
        self.assertEqual(direct.xlen(f"__larder:dead:{ks}"), 0, "nothing is dead-lettered")
        self.assertGreaterEqual(direct.xlen(f"__larder:q:{ks}"), 1, "the write stays queued")
        self.assertEqual(direct.get(key), value, "the cached value stays")
        time.sleep(0.8)  # several retries with backoff
        self.assertEqual(larder.log().count(f"SQLSTATE {state}"), 1, "logged once")


class PauseTest(ErrorCase):

    def test_renamed_column_pauses_then_resumes(self):
        notes = {"key": "note:{id}", "table": "public.notes", "shape": "string",
                 "columns": ["body"], "write": "behind"}
        larder, c, direct = self.stack({"notes": notes})
        self.assertTrue(c.set("note:1", "before"))
        wait_until(lambda: sql("SELECT body FROM notes WHERE id = 1") == "before", 10, "flushed")
        sql("ALTER TABLE notes RENAME COLUMN body TO text_body")
        try:
            self.assertTrue(c.set("note:1", "after"))
            self.assertPausedNotDead(larder, direct, "notes", "note:1", b"after", "42703")
            self.assertEqual(c.get("note:1"), b"after")
        finally:
            sql("ALTER TABLE notes RENAME COLUMN text_body TO body")
        wait_until(lambda: sql("SELECT body FROM notes WHERE id = 1") == "after", 10,
                   "the paused write to arrive")
        wait_until(lambda: not self.paused(larder, "notes"), 5, "the pause to end")
        self.assertEqual(readyz(self.admin)[0], 200)
        self.assertIn("flush resumed", larder.log())

    def test_read_only_database_and_terminated_backends(self):
        notes = {"key": "note:{id}", "table": "public.notes", "shape": "string",
                 "columns": ["body"], "write": "behind"}
        larder, c, direct = self.stack({"notes": notes})
        self.assertTrue(c.set("note:2", "rw"))
        wait_until(lambda: sql("SELECT body FROM notes WHERE id = 2") == "rw", 10, "flushed")
        # A failover to a read-only standby, as PostgreSQL shows it: new
        # sessions are read-only, the old ones are gone.
        # From another database: the setting applies to new sessions of app.
        PG.psql(f"ALTER DATABASE {DB} SET default_transaction_read_only = on")
        try:
            PG.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{DB}'")
            self.assertTrue(c.set("note:2", "ro"))
            self.assertPausedNotDead(larder, direct, "notes", "note:2", b"ro", "25006")
        finally:
            PG.psql(f"ALTER DATABASE {DB} RESET default_transaction_read_only")
        # The paused flusher retries on fresh sessions: read-write again.
        PG.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{DB}'")
        wait_until(lambda: sql("SELECT body FROM notes WHERE id = 2") == "ro", 15,
                   "the paused write to arrive")
        self.assertEqual(direct.xlen("__larder:dead:notes"), 0)


class RowErrorTest(ErrorCase):

    def test_varchar_overflow_is_a_row_error_not_a_cut(self):
        codes = {"key": "code:{id}", "table": "public.codes", "shape": "hash",
                 "columns": ["code", "tag"], "write": "behind"}
        larder, c, direct = self.stack({"codes": codes})
        self.assertEqual(c.hset("code:1", mapping={"code": "abcd", "tag": "x"}), 2)
        self.assertEqual(c.hset("code:2", mapping={"code": "abc", "tag": "yz"}), 2)
        self.assertEqual(c.hset("code:3", mapping={"code": "ok", "tag": "xyz"}), 2)
        wait_until(lambda: direct.xlen("__larder:dead:codes") == 2, 10, "two dead letters")
        wait_until(lambda: sql("SELECT code || '/' || tag FROM codes WHERE id = 2") == "abc/yz",
                   10, "the good row in the same batch")
        self.assertEqual(sql("SELECT count(*) FROM codes WHERE id IN (1, 3)"), "0",
                         "a value too long was stored (cut)")
        states = sorted(f[b"sqlstate"] for _, f in direct.xrange("__larder:dead:codes"))
        self.assertEqual(states, [b"22001", b"22001"])
        self.assertFalse(self.paused(larder, "codes"))


class RetryTest(ErrorCase):

    def test_retry_skips_keys_written_since_and_keeps_order(self):
        items = {"key": "item:{id}", "table": "public.items", "shape": "hash",
                 "columns": ["qty"], "write": "behind"}
        larder, c, direct = self.stack({"items": items})
        # item:1: refused, then written again (accepted): its dead letter is old.
        # item:2..: refused twice in order (-1 then -2) and never written since.
        c.hset("item:1", "qty", -1)
        wait_until(lambda: direct.xlen("__larder:dead:items") == 1, 10, "item:1 dead-lettered")
        c.hset("item:1", "qty", 5)
        wait_until(lambda: sql("SELECT qty FROM items WHERE id = 1") == "5", 10, "item:1 = 5")
        n = 120  # more than one page of the retry
        for i in range(2, 2 + n):
            c.hset(f"item:{i}", "qty", -1)
        wait_until(lambda: direct.xlen("__larder:dead:items") == 1 + n, 10, "first dead letters")
        for i in range(2, 2 + n):
            c.hset(f"item:{i}", "qty", -2)
        wait_until(lambda: direct.xlen("__larder:dead:items") == 1 + 2 * n, 10, "second ones")
        sql("ALTER TABLE items DROP CONSTRAINT items_qty_check")
        try:
            retried = c.execute_command("LARDER", "DEADLETTERS", "items", "RETRY", "ALL")
            self.assertEqual(retried, 2 * n)
            c.execute_command("LARDER", "FLUSH", "items")
            self.assertEqual(sql("SELECT qty FROM items WHERE id = 1"), "5",
                             "a retried old value overwrote a newer write")
            # Both dead letters of each key, in their original order: -2 last.
            self.assertEqual(sql(f"SELECT count(*) FROM items WHERE id BETWEEN 2 AND {1 + n} "
                                 "AND qty = -2"), str(n))
            self.assertEqual(direct.xlen("__larder:dead:items"), 1, "item:1's stays listed")
            self.assertEqual(c.hget("item:7", "qty"), b"-2")
        finally:
            sql("DELETE FROM items WHERE qty < 0")
            sql("ALTER TABLE items ADD CONSTRAINT items_qty_check CHECK (qty >= 0)")


if __name__ == "__main__":
    harness.main()
