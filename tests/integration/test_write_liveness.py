"""Liveness and durability you can see (issue 14, items 3, 4 and 5).

Real redis-server and PostgreSQL 15 on loopback, started through harness.py.
A pausable TCP relay (harness.TcpRelay) between Larder and Redis or
PostgreSQL makes the peer go silent without closing anything: requests must
fail within the documented bounds (docs/failures.md), and the LISTEN
connection must notice. Redis' persistence settings are checked at connect,
write queues no keyspace flushes any more are reported by name, and the
negative cache never answers for a key with a pending write.

Run: /usr/bin/python3 tests/integration/test_write_liveness.py [-v]
"""

from __future__ import annotations

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (HOST, HeldSession, LarderTestCase, PostgresServer, TcpRelay,  # noqa: E402
                     close_client, scaled, wait_until)

import redis  # noqa: E402

DB = "app"
SCHEMA = r"""
CREATE TABLE notes (id bigint PRIMARY KEY, body text);
CREATE TABLE users (id bigint PRIMARY KEY, name text, email text);
CREATE TABLE days (day date PRIMARY KEY, body text);
"""
NOTES = {"key": "note:{id}", "table": "public.notes", "shape": "string", "columns": ["body"],
         "write": "behind"}
USERS = {"key": "user:{id}", "table": "public.users", "shape": "hash",
         "columns": ["name", "email"], "write": "behind", "negative_ttl": "30s"}
PG: PostgresServer | None = None


def setUpModule():
    global PG
    PG = harness.module_postgres(DB, SCHEMA)


def sql(q: str) -> str:
    return PG.psql(q, dbname=DB).strip()


def call(client, *args):
    try:
        return client.execute_command(*args)
    except redis.ResponseError as e:
        return e


class LivenessCase(LarderTestCase):

    def larder(self, redis_server, keyspaces=None, dsn=None, wait_backend=True, **extra):
        config = {"postgres": {"dsn": dsn or PG.dsn(DB), "pool_size": 2},
                  "write_behind": {"flush_interval": "50ms", "retry_min": "50ms",
                                   "retry_max": "300ms", "drain_timeout": "2s"},
                  "keyspaces": keyspaces if keyspaces is not None else {"notes": dict(NOTES)}}
        larder = self.start_larder(redis_server, config=harness._merge(config, extra),
                                   wait_backend=wait_backend)
        return larder, self.client(larder)


class BlackholeTest(LivenessCase):

    def test_silent_redis_fails_requests_within_request_timeout(self):
        rs = self.start_redis()
        relay = TcpRelay(rs.port)
        self.addCleanup(relay.close)
        larder, c = self.larder(relay.address, redis={"request_timeout": "1s",
                                                      "reconnect_max": "200ms"})
        self.assertTrue(c.set("plain", "1"))
        self.assertTrue(c.set("note:1", "a"))
        relay.pause()
        started = time.monotonic()
        reply = call(c, "GET", "plain")
        took = time.monotonic() - started
        self.assertIsInstance(reply, redis.ResponseError)
        self.assertIn("no reply from Redis within 1000 ms", str(reply))
        self.assertLess(took, scaled(2.5), "a silent Redis must fail a request within ~1 s")
        self.assertGreater(took, 0.7)
        relay.resume()
        wait_until(lambda: c.get("plain") == b"1", 10, "Redis to be used again")
        self.assertEqual(c.get("note:1"), b"a")

    def test_silent_postgres_pauses_the_flush_and_fails_loads_in_time(self):
        rs = self.start_redis()
        relay = TcpRelay(PG.port)
        self.addCleanup(relay.close)
        dsn = f"host={HOST} port={relay.port} dbname={DB} user={PG.SUPERUSER}"
        larder, c = self.larder(
            rs, keyspaces={"notes": dict(NOTES), "users": dict(USERS)}, dsn=dsn,
            postgres={"statement_timeout": "1s", "connect_timeout": "1s", "keepalive": "1s"},
            read_through={"load_timeout": "1500ms"},
            invalidation={"listen": "larder_changes"})
        wait_until(lambda: larder.info_larder().get("keyspace_notes", {}).get("flusher_active")
                   == 1, 10, "the flusher to own the queue")
        relay.pause()
        self.assertTrue(c.set("note:2", "queued"))  # behind: only Redis is needed
        started = time.monotonic()
        reply = call(c, "HGET", "user:9", "name")  # a miss: needs PostgreSQL
        self.assertIsInstance(reply, redis.ResponseError)
        self.assertLess(time.monotonic() - started, scaled(3.0), "the load must fail in time")
        wait_until(lambda: larder.info_larder().get("keyspace_notes", {}).get("flush_paused")
                   == 1, 15, "the flush to pause")
        # The LISTEN connection is silent too: probed after postgres.keepalive.
        wait_until(lambda: "did not answer a probe" in larder.log(), 15,
                   "the LISTEN connection's probe to fail")
        relay.resume()
        wait_until(lambda: sql("SELECT body FROM notes WHERE id = 2") == "queued", 20,
                   "the queued write to arrive once PostgreSQL answers again")
        wait_until(lambda: larder.log().count("listening on PostgreSQL channel") >= 2, 15,
                   "LISTEN to be back (with its resync)")


class DurabilityTest(LivenessCase):

    def test_risky_persistence_is_named_and_refused_when_required(self):
        rs = self.start_redis()  # no AOF, no RDB: the harness default
        larder, c = self.larder(rs, write_behind={"require_durable_redis": True})
        wait_until(lambda: "appendonly is no" in larder.log(), 10, "the check at connect")
        reply = call(c, "SET", "note:3", "x")
        self.assertIsInstance(reply, redis.ResponseError)
        self.assertIn("require_durable_redis", str(reply))
        self.assertTrue(c.set("unmapped", "fine"), "other keys are not affected")
        # AOF on: the next connect finds Redis durable.
        direct = rs.client()
        self.addCleanup(close_client, direct)
        direct.config_set("appendonly", "yes")
        direct.execute_command("CLIENT", "KILL", "TYPE", "normal")
        wait_until(lambda: call(c, "SET", "note:3", "y") is True, 15,
                   "behind writes once Redis keeps them")

    def test_warnings_name_each_risky_setting(self):
        rs = self.start_redis(extra_args=["--appendonly", "yes", "--appendfsync", "no",
                                          "--maxmemory-policy", "allkeys-lru"])
        larder, c = self.larder(rs)
        wait_until(lambda: "maxmemory-policy is allkeys-lru" in larder.log(), 10, "the warning")
        self.assertIn("appendfsync is no", larder.log())
        self.assertTrue(c.set("note:4", "accepted"), "only a warning without the requirement")

    def test_wait_replicas_holds_the_ack(self):
        rs = self.start_redis()
        larder, c = self.larder(rs, write_behind={"wait_replicas": 1, "wait_timeout": "200ms"})
        started = time.monotonic()
        reply = call(c, "SET", "note:5", "lonely")
        self.assertIsInstance(reply, redis.ResponseError)
        self.assertIn("0 of 1 replica(s) confirmed it", str(reply))
        self.assertGreater(time.monotonic() - started, 0.15)
        replica = self.start_redis(extra_args=["--replicaof", HOST, str(rs.port)])
        wait_until(lambda: rs.client().info("replication")["connected_slaves"] == 1, 10,
                   "the replica to attach")
        wait_until(lambda: call(c, "SET", "note:5", "seen") is True, 10, "a confirmed ack")
        self.assertEqual(replica.client().get("note:5"), b"seen")


class StrandedQueueTest(LivenessCase):

    def queue_a_write(self, rs, key: str, value: str):
        """Leaves `key`=value queued in __larder:q:notes and Larder stopped."""
        larder, c = self.larder(rs)
        held = HeldSession(PG, DB, "EXCLUSIVE")
        self.addCleanup(held.kill)
        held.lock("notes")
        self.assertTrue(c.set(key, value))
        larder.stop()  # the drain times out (2 s): the write stays queued
        held.release()
        self.assertEqual(rs.client().xlen("__larder:q:notes"), 1)

    def test_switched_keyspace_drains_its_old_queue_first(self):
        rs = self.start_redis()
        self.queue_a_write(rs, "note:6", "old")
        through = dict(NOTES, write="through")
        larder, c = self.larder(rs, keyspaces={"notes": through})
        wait_until(lambda: sql("SELECT body FROM notes WHERE id = 6") == "old", 10,
                   "the old queue to be flushed")
        self.assertIn("still holds 1 write(s)", larder.log())
        wait_until(lambda: call(c, "SET", "note:6", "new") is True, 10, "writes accepted again")
        self.assertEqual(sql("SELECT body FROM notes WHERE id = 6"), "new")

    def test_a_switched_keyspace_drains_again_when_its_old_queue_refills(self):
        """Mid-rollout: instance A has the keyspace `through`, B still has it
        `behind` and queues to the same queue. When A finds entries there
        again (after a reconnect), it refuses the keyspace's writes while B
        still owns the queue (B's queued writes would land over A's), and
        accepts them once B is gone and the queue is empty: not never."""
        rs = self.start_redis()
        self.queue_a_write(rs, "note:11", "old")
        a, ca = self.larder(rs, keyspaces={"notes": dict(NOTES, write="through")})
        wait_until(lambda: call(ca, "SET", "note:12", "a1") is True, 15, "A's first drain")
        b, cb = self.larder(rs)  # `behind`
        held = HeldSession(PG, DB, "EXCLUSIVE")
        self.addCleanup(held.kill)
        held.lock("notes")
        self.assertTrue(cb.set("note:11", "from-b"))  # queued; B cannot flush it yet
        direct = rs.client()
        self.addCleanup(close_client, direct)
        direct.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        wait_until(lambda: a.log().count("still holds") >= 2, 15,
                   "A to find the queue again after its reconnect")
        reply = call(ca, "SET", "note:12", "a2")
        self.assertIsInstance(reply, redis.ResponseError)
        self.assertIn("still flushing its old write queue", str(reply))
        held.release()
        wait_until(lambda: sql("SELECT body FROM notes WHERE id = 11") == "from-b", 15,
                   "B to flush its write")
        reply = call(ca, "SET", "note:12", "a3")
        self.assertIsInstance(reply, redis.ResponseError, "accepted while B is still `behind`")
        b.stop()
        wait_until(lambda: call(ca, "SET", "note:12", "a3") is True, 15,
                   "A to accept writes once B is gone and the queue is empty")
        self.assertEqual(sql("SELECT body FROM notes WHERE id = 11"), "from-b")
        self.assertEqual(sql("SELECT body FROM notes WHERE id = 12"), "a3")

    def test_a_through_write_before_the_first_audit_waits_for_it(self):
        """The start-up gap: a switched keyspace's write that reaches Larder
        before it has looked for the old queue must not commit and then be
        overwritten by the older queued value the drain applies."""
        rs = self.start_redis()
        self.queue_a_write(rs, "note:9", "old")
        direct = rs.client()
        self.addCleanup(close_client, direct)
        # Redis answers nobody for 1.5 s from before Larder starts: the audit
        # cannot look, while PostgreSQL takes a through write at once.
        direct.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        through = dict(NOTES, write="through")
        larder, c = self.larder(rs, keyspaces={"notes": through}, wait_backend=False)
        reply = call(c, "SET", "note:9", "new")
        wait_until(lambda: sql("SELECT body FROM notes WHERE id = 9") == "old" or
                   "writes are accepted again" in larder.log(), 15, "the old queue drained")
        wait_until(lambda: "writes are accepted again" in larder.log(), 15, "the drain's end")
        final = sql("SELECT body FROM notes WHERE id = 9")
        if reply is True:
            self.assertEqual(final, "new", "an acknowledged write was overwritten by an older one")
        else:  # refused: draining, or (a slow start) not looked for within 2 s
            self.assertIsInstance(reply, redis.ResponseError)
            self.assertRegex(str(reply), "still flushing its old write queue|not looked for yet")
            self.assertEqual(final, "old")
        self.assertTrue(call(c, "SET", "note:9", "newer"))
        self.assertEqual(sql("SELECT body FROM notes WHERE id = 9"), "newer")

    def test_a_through_write_is_refused_while_redis_was_never_reached(self):
        """The same gap, held open: Redis answers nobody for longer than a
        through write waits for the first look (5 s). The write is refused,
        not committed, and it did wait."""
        rs = self.start_redis()
        self.queue_a_write(rs, "note:13", "old")
        direct = rs.client()
        self.addCleanup(close_client, direct)
        pause = scaled(9.0)
        direct.execute_command("CLIENT", "PAUSE", str(int(pause * 1000)), "ALL")
        paused_at = time.monotonic()
        larder, c = self.larder(rs, keyspaces={"notes": dict(NOTES, write="through")},
                                wait_backend=False)
        started = time.monotonic()
        reply = call(c, "SET", "note:13", "new")
        took = time.monotonic() - started
        self.assertLess(time.monotonic() - paused_at, pause, "Redis was paused throughout")
        self.assertIsInstance(reply, redis.ResponseError, "committed before the queue was seen")
        self.assertIn("may have an old write queue in Redis, not looked for yet", str(reply))
        self.assertGreater(took, 4.5, "refused without waiting for the first look")
        self.assertEqual(sql("SELECT count(*) FROM notes WHERE id = 13 AND body = 'new'"), "0")
        wait_until(lambda: "writes are accepted again" in larder.log(), 30, "the drain's end")
        self.assertEqual(sql("SELECT body FROM notes WHERE id = 13"), "old")
        self.assertTrue(call(c, "SET", "note:13", "newer"))
        self.assertEqual(sql("SELECT body FROM notes WHERE id = 13"), "newer")

    def test_renamed_keyspace_is_refused_until_the_queue_goes(self):
        rs = self.start_redis()
        self.queue_a_write(rs, "note:7", "stranded")
        larder, c = self.larder(rs, keyspaces={"notes2": dict(NOTES)})
        wait_until(lambda: "__larder:q:notes holds 1 write(s) of keyspace 'notes'" in larder.log(),
                   10, "the stranded queue reported by name")
        reply = call(c, "SET", "note:7", "x")
        self.assertIsInstance(reply, redis.ResponseError)
        self.assertIn("old write queue", str(reply))
        status = larder.info_larder()  # still serving
        self.assertTrue(status)
        rs.client().delete("__larder:q:notes")
        wait_until(lambda: call(c, "SET", "note:7", "x") is True, 15, "accepted once deleted")


class NegativeCacheTest(LivenessCase):

    def test_negative_cache_never_answers_over_a_pending_write(self):
        rs = self.start_redis()
        a, ca = self.larder(rs, keyspaces={"users": dict(USERS)})
        b, cb = self.larder(rs, keyspaces={"users": dict(USERS)})
        direct = rs.client()
        self.addCleanup(close_client, direct)
        self.assertEqual(cb.hgetall("user:8"), {})  # B remembers: no such row
        held = HeldSession(PG, DB, "EXCLUSIVE")
        self.addCleanup(held.kill)
        held.lock("users")
        self.assertEqual(ca.hset("user:8", mapping={"name": "ann", "email": "a@x"}), 2)
        direct.delete("user:8")  # evicted, expired or deleted behind Larder's back
        # B must see A's pending row, not its remembered miss.
        self.assertEqual(cb.hget("user:8", "name"), b"ann")
        direct.delete("user:8")
        self.assertEqual(cb.hset("user:8", "name", "bob"), 0, "name existed (pending)")
        self.assertEqual(direct.hgetall("user:8"), {b"name": b"bob", b"email": b"a@x"},
                         "a partial row was cached")
        direct.delete("user:8")
        self.assertEqual(cb.delete("user:8"), 1, "a DEL over a pending row answered 0")
        held.release()
        wait_until(lambda: sql("SELECT count(*) FROM users WHERE id = 8") == "0", 10,
                   "the DEL to reach PostgreSQL")

    def test_non_canonical_keys_are_refused(self):
        rs = self.start_redis()
        days = {"key": "day:{day}", "table": "public.days", "shape": "string",
                "columns": ["body"], "write": "behind"}
        larder, c = self.larder(rs, keyspaces={"notes": dict(NOTES), "days": days})
        for key in ("note:007", "note:+7", "day:2024-1-5", "day:2023-02-29"):
            reply = call(c, "SET", key, "x")
            self.assertIsInstance(reply, redis.ResponseError, key)
            self.assertIn("is not a valid", str(reply))
        self.assertTrue(c.set("day:2024-01-05", "fine"))
        wait_until(lambda: sql("SELECT body FROM days WHERE day = '2024-01-05'") == "fine", 10,
                   "the canonical key flushed")


if __name__ == "__main__":
    harness.main()
