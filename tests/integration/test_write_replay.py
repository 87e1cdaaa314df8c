"""Replays never revert a row (issue 14, item 1).

Real redis-server and PostgreSQL 15 on loopback, started through harness.py.
A queued write v1 is flushed, then a newer v2 is; Redis then comes back with
an older state: restarted from an RDB snapshot or from an AOF taken at an
earlier point (with v1 still queued, or with v1 flushed and v2 unknown), or a
second instance that read the queue before it held the lock. PostgreSQL must
keep v2 (an audit trigger records every row write, so a v1 written after v2
is seen even if something wrote v2 again later), and reads through Larder
must show v2 once the flusher has noticed (docs/writes.md, "Replays").

Run: /usr/bin/python3 tests/integration/test_write_replay.py [-v]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (HeldSession, HOST, PG_BIN, LarderTestCase, PostgresServer, TcpRelay,  # noqa: E402
                     close_client, wait_until)

DB = "app"
SCHEMA = r"""
CREATE TABLE notes (id bigint PRIMARY KEY, body text);
CREATE TABLE audit (seq bigserial PRIMARY KEY, id bigint NOT NULL, body text);
CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO audit (id, body) VALUES (NEW.id, NEW.body);
  RETURN NEW;
END $$;
CREATE TRIGGER notes_audit AFTER INSERT OR UPDATE ON notes
  FOR EACH ROW EXECUTE FUNCTION audit_row();
"""
NOTES = {"key": "note:{id}", "table": "public.notes", "shape": "string", "columns": ["body"],
         "write": "behind", "ttl": "1h"}
PG: PostgresServer | None = None


def setUpModule():
    global PG
    PG = harness.module_postgres(DB, SCHEMA)


def sql(q: str) -> str:
    return PG.psql(q, dbname=DB).strip()


def pg_body(i: int):
    out = sql(f"SELECT body FROM notes WHERE id = {int(i)}")
    return out or None


def history(i: int) -> list:
    out = sql(f"SELECT body FROM audit WHERE id = {int(i)} ORDER BY seq")
    return out.split("\n") if out else []


class ReplayCase(LarderTestCase):

    def stack(self, redis_server, pg_dsn=None, **extra):
        config = {"postgres": {"dsn": pg_dsn or PG.dsn(DB), "pool_size": 2},
                  "write_behind": {"flush_interval": "50ms", "retry_min": "50ms",
                                   "retry_max": "500ms", "drain_timeout": "5s"},
                  "keyspaces": {"notes": dict(NOTES)}}
        harness_merge = harness._merge(config, extra)
        larder = self.start_larder(redis_server, config=harness_merge)
        c = self.client(larder)
        return larder, c

    def hold(self):
        held = HeldSession(PG, DB, "EXCLUSIVE")
        self.addCleanup(held.kill)
        return held.lock("notes")

    def assertNeverBack(self, i: int, old: str, new: str):
        """PostgreSQL's row history never shows `old` after `new`."""
        h = history(i)
        self.assertIn(new, h, h)
        self.assertNotIn(old, h[h.index(new):], f"row {i} went back from {new} to {old}: {h}")

    def flushed(self, i: int, value: str):
        wait_until(lambda: pg_body(i) == value, 10, f"note {i} = {value} in PostgreSQL")

    def restart_from_older_state(self, c, larder, i: int, old: str, new: str):
        """After Redis came back older: v2 stays, reads show it, the flusher counted it."""
        larder.wait_backend_status("ok", 15)
        wait_until(lambda: c.get(f"note:{i}") == new.encode(), 10,
                   f"a read of note:{i} through Larder to show {new} again")
        time.sleep(0.5)  # a replayed v1, if any, would have been applied by now
        self.assertEqual(pg_body(i), new)
        self.assertNeverBack(i, old, new)
        info = larder.info_larder().get("keyspace_notes", {})
        self.assertGreaterEqual(int(info.get("replayed", 0)) + larder.log().count(
            "write queue is behind PostgreSQL"), 1, info)


class RdbTest(ReplayCase):

    def test_rdb_snapshot_with_the_old_write_still_queued(self):
        rs = self.start_redis()
        larder, c = self.stack(rs)
        direct = rs.client()
        self.addCleanup(close_client, direct)
        held = self.hold()
        self.assertTrue(c.set("note:1", "v1"))
        wait_until(lambda: direct.xlen("__larder:q:notes") == 1, 5, "v1 queued")
        self.assertEqual(direct.execute_command("SAVE"), True)  # the snapshot: v1 queued
        held.release()
        self.flushed(1, "v1")
        self.assertTrue(c.set("note:1", "v2"))
        self.flushed(1, "v2")
        wait_until(lambda: direct.xlen("__larder:q:notes") == 0, 5, "the queue acknowledged")
        close_client(direct)
        rs.kill()
        rs.restart()  # dump.rdb: v1 queued and cached
        self.restart_from_older_state(c, larder, 1, "v1", "v2")

    def test_rdb_snapshot_after_the_old_write_was_flushed(self):
        rs = self.start_redis()
        larder, c = self.stack(rs)
        direct = rs.client()
        self.addCleanup(close_client, direct)
        self.assertTrue(c.set("note:2", "v1"))
        self.flushed(2, "v1")
        wait_until(lambda: direct.xlen("__larder:q:notes") == 0, 5, "v1 acknowledged")
        self.assertEqual(direct.execute_command("SAVE"), True)  # nothing queued, v1 cached
        self.assertTrue(c.set("note:2", "v2"))
        self.flushed(2, "v2")
        close_client(direct)
        rs.kill()
        rs.restart()
        # No entry replays here; the cached v1 is what must not survive.
        self.restart_from_older_state(c, larder, 2, "v1", "v2")
        self.assertIn("write queue is behind PostgreSQL", larder.log())


class AofTest(ReplayCase):

    def test_aof_taken_with_the_old_write_queued(self):
        rs = self.start_redis(extra_args=["--appendonly", "yes", "--appendfsync", "always",
                                          "--auto-aof-rewrite-percentage", "0"])
        larder, c = self.stack(rs)
        direct = rs.client()
        self.addCleanup(close_client, direct)
        held = self.hold()
        self.assertTrue(c.set("note:3", "v1"))
        wait_until(lambda: direct.xlen("__larder:q:notes") == 1, 5, "v1 queued")
        aof = os.path.join(rs.dir, "appendonlydir")
        snapshot = os.path.join(rs.dir, "aof-snapshot")
        shutil.copytree(aof, snapshot)  # appendfsync always: on disk already
        held.release()
        self.flushed(3, "v1")
        self.assertTrue(c.set("note:3", "v2"))
        self.flushed(3, "v2")
        close_client(direct)
        rs.kill()
        shutil.rmtree(aof)
        shutil.move(snapshot, aof)
        rs.restart()
        self.restart_from_older_state(c, larder, 3, "v1", "v2")


class TwoInstancesTest(ReplayCase):

    def test_a_standby_with_a_delayed_lock_never_applies_a_stale_batch(self):
        """Instance A reaches PostgreSQL through a relay that goes silent
        while it tries to take the lock; meanwhile B flushes v1 and v2 and
        stops. When A's lock finally comes, it must not apply anything it
        could have read before (v1)."""
        rs = self.start_redis()
        b, cb = self.stack(rs)
        wait_until(lambda: b.info_larder().get("keyspace_notes", {}).get("flusher_active") == 1,
                   10, "B to own the queue")
        relay = TcpRelay(PG.port)
        self.addCleanup(relay.close)
        dsn = f"host={HOST} port={relay.port} dbname={DB} user={PG.SUPERUSER}"
        a, _ = self.stack(rs, pg_dsn=dsn,
                          postgres={"statement_timeout": "30s", "connect_timeout": "20s",
                                    "keepalive": 0})
        held = self.hold()
        self.assertTrue(cb.set("note:4", "v1"))
        time.sleep(0.3)
        relay.pause()  # A's next lock attempt (every 0.5 s) hangs
        time.sleep(1.2)
        held.release()
        self.flushed(4, "v1")
        self.assertTrue(cb.set("note:4", "v2"))
        self.flushed(4, "v2")
        wait_until(lambda: rs.client().xlen("__larder:q:notes") == 0, 5, "B's ack")
        b.stop()  # its lock goes with its connections
        relay.resume()
        wait_until(lambda: a.info_larder().get("keyspace_notes", {}).get("flusher_active") == 1,
                   30, "A to own the queue")
        time.sleep(0.5)
        self.assertEqual(pg_body(4), "v2")
        self.assertNeverBack(4, "v1", "v2")


if __name__ == "__main__":
    harness.main()
