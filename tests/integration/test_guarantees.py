"""Larder's guarantees attacked with every command Redis has.

Real redis-server and PostgreSQL; keyspaces `users` (hash, user:{id}) and
`notes` (string, note:{id}), write: behind. For every Redis 7.0 command with
key arguments, requests are made from Redis' own description (COMMAND DOCS,
command_docs.py) and Redis says where their keys are (COMMAND
GETKEYSANDFLAGS). Then, through Larder:

- a reserved key (`__larder:q:notes`, the real write queue, or a pending
  marker) in each key position: refused with Larder's error, and nothing
  reaches Redis;
- a reserved-looking word in each position that is NOT a key: not refused
  for that (a value may say anything);
- a mapped key of each shape in each key position: refused, or handled; and
  afterwards the write queues (type and length), the pending markers, the
  mapped key's type in Redis and, at the end, the PostgreSQL rows changed only
  where the command is one of Larder's mapped writes (docs/writes.md).

Plus: SELECT of an invalid db followed by every kind of mapped write and by
FLUSHDB/FLUSHALL loses nothing acknowledged; scripts cannot reach reserved
keys even without declaring them (Redis' ACL, redis.client_acl_user).

Run: /usr/bin/python3 tests/integration/test_guarantees.py [-v]
"""

from __future__ import annotations

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import command_docs  # noqa: E402
import harness  # noqa: E402
from harness import LarderTestCase, RawClient, RespError, wait_until  # noqa: E402

DB = "app"
SCHEMA = """
CREATE TABLE users (id bigint PRIMARY KEY, name text, email text);
CREATE TABLE notes (id bigint PRIMARY KEY, body text);
"""
KEYSPACES = {
    "users": {"key": "user:{id}", "table": "public.users", "shape": "hash",
              "columns": ["name", "email"], "write": "behind", "ttl": "1h"},
    "notes": {"key": "note:{id}", "table": "public.notes", "shape": "string",
              "columns": ["body"], "write": "behind", "ttl": "1h"},
}
RESERVED = RespError("ERR Larder: keys under '__larder:' are reserved for Larder")
QUEUES = ("__larder:q:users", "__larder:q:notes")
# Larder's mapped writes (docs/writes.md): the only commands that may queue a
# row change; those that create a row when they succeed on a fresh key.
MAPPED_WRITES = {"set", "setex", "psetex", "getset", "getdel", "mset", "del", "unlink", "hset",
                 "hmset", "hdel", "expire", "pexpire", "expireat", "pexpireat", "persist"}
CREATES_ROW = {"set", "setex", "psetex", "getset", "mset", "hset", "hmset"}

PG = None


def setUpModule():
    global PG
    PG = harness.module_postgres(DB, SCHEMA)


def rows(table: str) -> set[int]:
    out = PG.psql(f"SELECT id FROM {table}", dbname=DB)
    return {int(x) for x in out.split()}


class GuaranteesTest(LarderTestCase):

    def setUp(self):
        PG.psql("TRUNCATE users, notes", dbname=DB)
        self.redis_server = self.start_redis()
        self.larder = self.start_larder(self.redis_server, config={
            "postgres": {"dsn": PG.dsn(DB)},
            # The flusher waits until asked (LARDER FLUSH): queues and markers
            # change only when a command writes.
            "write_behind": {"flush_interval": "1h", "max_batch": 100000},
            "keyspaces": KEYSPACES})
        self.direct = RawClient(self.redis_server.port)
        self.addCleanup(self.direct.close)
        self.proxy = self.raw(self.larder)
        # A real queue entry and marker to protect: one acknowledged write.
        harness.wait_until(lambda: self.proxy.call("SET", "note:1", "one") == "OK", 10,
                           "the first write")

    # ---------------------------------------------------------------- state

    def snapshot(self) -> dict:
        """What no command but a mapped write may change."""
        d = self.direct
        state = {}
        for q in QUEUES:
            # The last id the stream gave out: a new entry moves it, the
            # flusher trimming what it applied meanwhile does not.
            kind = d.call("TYPE", q)
            info = d.call("XINFO", "STREAM", q) if kind == "stream" else []
            fields = dict(zip(info[::2], info[1::2]))
            state[q] = (kind, fields.get(b"last-generated-id"))
        state["markers"] = sorted(d.call("KEYS", "__larder:pending:*"))
        state["reserved"] = sorted(k for k in d.call("KEYS", "__larder:*")
                                   if not k.startswith((b"__larder:pending:", b"__larder:q:",
                                                        b"__larder:lease:", b"__larder:delta:")))
        return state

    def drained(self):
        d = self.direct
        return all(d.call("TYPE", q) == "none" or d.call("XLEN", q) == 0 for q in QUEUES)

    # ---------------------------------------------------------------- tests

    def test_every_key_position_of_every_command(self):
        commands = [c for c in command_docs.load_commands(self.direct)
                    if c.name not in command_docs.NEVER_RUN]
        self.assertGreater(len(commands), 300)
        next_id = [1000]
        created = {"users": set(), "notes": set()}
        attempts = 0
        with_keys = set()
        for command in commands:
            for words in command_docs.invocations(command):
                positions = command_docs.key_positions(self.direct, words)
                if not positions:
                    continue
                with_keys.add(command.name)
                for pos, _flags in positions:
                    attempts += 1
                    self.attack_reserved(command, words, pos)
                    for shape in ("users", "notes"):
                        next_id[0] += 1
                        self.attack_mapped(command, words, pos, shape, next_id[0], created)
                # Reserved-looking words that are not keys are left alone.
                keys = {p for p, _ in positions}
                for i in range(1, len(words)):
                    if i in keys:
                        continue
                    probe = list(words)
                    probe[i] = "__larder:q:notes"
                    reply = self.proxy.call(*probe)
                    self.assertNotEqual(reply, RESERVED, f"{probe}: argument {i} is no key")
        self.assertGreater(attempts, 300)
        # Every command Redis gives key specs to was exercised.
        registry_keyed = {c.name for c in commands
                          if any(a.get("type") == "key" for a in _flatten(c.arguments))}
        self.assertEqual(registry_keyed - with_keys, set())
        # PostgreSQL got exactly the rows of the mapped writes that succeeded.
        self.assertNotIsInstance(self.proxy.call("LARDER", "FLUSH"), RespError)
        wait_until(self.drained, 15, "the write queues to drain")
        self.assertEqual(rows("users"), created["users"])
        self.assertEqual(rows("notes"), created["notes"] | {1})

    def attack_reserved(self, command, words, pos):
        for reserved in ("__larder:q:notes", "__larder:pending:note:1"):
            before = self.snapshot()
            attack = list(words)
            attack[pos] = reserved
            reply = self.proxy.call(*attack)
            self.assertEqual(reply, RESERVED, f"{attack}")
            self.assertEqual(self.snapshot(), before, f"{attack} changed Larder's keys")

    def attack_mapped(self, command, words, pos, shape, row, created):
        key = f"user:{row}" if shape == "users" else f"note:{row}"
        attack = list(words)
        attack[pos] = key
        before = self.snapshot()
        reply = self.proxy.call(*attack)
        after = self.snapshot()
        if command.name in MAPPED_WRITES:
            if command.name in CREATES_ROW and not isinstance(reply, RespError):
                created[shape].add(row)
            return
        self.assertEqual(after, before, f"{attack} -> {reply!r} changed queues or markers")
        kind = self.direct.call("TYPE", key)
        allowed = ("none", "hash") if shape == "users" else ("none", "string")
        self.assertIn(kind, allowed, f"{attack} -> {reply!r} made {key} a {kind}")

    def test_select_invalid_db_then_writes_lose_nothing(self):
        c = self.proxy
        self.assertEqual(c.call("SELECT", "99"), RespError("ERR DB index is out of range"))
        for args in (("SET", "note:2", "two"), ("MSET", "note:3", "three"),
                     ("SETEX", "note:4", "100", "four"), ("GETSET", "note:5", "five"),
                     ("HSET", "user:2", "name", "ann"), ("HMSET", "user:3", "name", "bob")):
            reply = c.call(*args)
            self.assertNotIsInstance(reply, RespError, args)
        # Every acknowledged write is queued (not only cached) ...
        self.assertNotIsInstance(c.call("LARDER", "FLUSH"), RespError)
        wait_until(lambda: rows("notes") >= {1, 2, 3, 4, 5} and rows("users") >= {2, 3}, 15,
                   "the writes to reach PostgreSQL")
        # ... and FLUSHDB / FLUSHALL after a refused SELECT drain the queue first.
        self.assertEqual(c.call("SELECT", "-1"), RespError("ERR DB index is out of range"))
        self.assertEqual(c.call("SET", "note:6", "six"), "OK")
        self.assertEqual(c.call("FLUSHDB"), "OK")
        self.assertEqual(c.call("SET", "note:7", "seven"), "OK")
        self.assertEqual(c.call("FLUSHALL"), "OK")
        self.assertEqual({6, 7} & rows("notes"), {6, 7})  # drained before the flush
        self.assertEqual(PG.psql("SELECT body FROM notes WHERE id = 7", dbname=DB).strip(),
                         "seven")

    def test_select_of_another_db_then_mapped_names_are_plain(self):
        c = self.proxy
        self.assertEqual(c.call("SELECT", "3"), "OK")
        self.assertEqual(c.call("SET", "note:40", "plain"), "OK")
        self.assertEqual(c.call("SELECT", "0"), "OK")
        time.sleep(0.2)
        self.assertNotIn(40, rows("notes"))  # db 3 holds no mapped keys
        # But nothing may be moved into the keyspaces' db over a mapped key.
        self.assertEqual(c.call("SELECT", "3"), "OK")
        reply = c.call("MOVE", "note:40", "0")
        self.assertIsInstance(reply, RespError)
        self.assertIn("not supported on keys of keyspace 'notes'", str(reply))

    def test_scripts_cannot_reach_reserved_keys(self):
        c = self.proxy
        queue_before = self.snapshot()
        for script in ("return redis.call('XLEN', '__larder:q:notes')",
                       "return redis.call('DEL', '__larder:q:notes')",
                       "return redis.call('XADD', '__larder:q:users', '*', 'k', 'user:9')",
                       "return redis.call('GET', '__larder:pending:note:1')"):
            reply = c.call("EVAL", script, "0")
            self.assertIsInstance(reply, RespError, script)
            self.assertIn("can't access at least one of the keys", str(reply), script)
        # A function is no way round either.
        lib = ("#!lua name=attack\n"
               "redis.register_function('attack', function(keys, args) "
               "return redis.call('DEL', '__larder:q:notes') end)")
        self.assertEqual(c.call("FUNCTION", "LOAD", "REPLACE", lib), b"attack")
        self.assertIn("can't access", str(c.call("FCALL", "attack", "0")))
        self.assertEqual(self.snapshot(), queue_before)
        # Ordinary scripts run as before.
        self.assertEqual(c.call("EVAL", "return redis.call('SET', KEYS[1], 'v')", "1", "plain"),
                         "OK")
        self.assertEqual(c.call("EVAL_RO", "return redis.call('GET', KEYS[1])", "1", "note:1"),
                         b"one")
        self.assertIn(b"larder-client", self.direct.call("ACL", "USERS"))

    def test_the_client_user_cannot_lift_its_restrictions(self):
        c = self.proxy
        for words in (["ACL", "SETUSER", "larder-client", "~*"], ["ACL", "DELUSER", "larder-client"],
                      ["ACL", "LOAD"], ["CONFIG", "SET", "requirepass", "x"]):
            reply = c.call(*words)
            self.assertIsInstance(reply, RespError, words)
            self.assertIn("refused while keyspaces are configured", str(reply), words)
        # Nor from a script (Redis refuses: ACL is noscript) or on its own login.
        admin = RawClient(self.redis_server.port)
        self.addCleanup(admin.close)
        user = admin.call("ACL", "GETUSER", "larder-client")
        self.assertIn(b"-acl|setuser", user[user.index(b"commands") + 1])
        self.assertEqual(self.snapshot()["__larder:q:notes"][0], "stream")

    def test_without_the_client_user_scripts_are_refused(self):
        larder = self.start_larder(self.redis_server, config={
            "postgres": {"dsn": PG.dsn(DB)}, "keyspaces": KEYSPACES,
            "redis": {"client_acl_user": ""}})
        c = self.raw(larder)
        reply = c.call("EVAL", "return 1", "0")
        self.assertIsInstance(reply, RespError)
        self.assertIn("without redis.client_acl_user", str(reply))
        self.assertEqual(c.call("GET", "note:1"), b"one")


def _flatten(arguments):
    for a in arguments:
        yield a
        yield from _flatten(a.get("arguments", []))


if __name__ == "__main__":
    harness.main()
