#!/usr/bin/python3
"""LARDER PENDING and LARDER DEADLETTERS on a Redis Cluster backend
(docs/cluster.md, "Write-behind on a cluster"; docs/writes.md, "Operator
commands"), where each keyspace has a queue, a dead-letter stream and a
dead-keys hash per slot.

Checked against a real 3-primary cluster (1 replica each) and PostgreSQL:
with the flush held by a table lock, PENDING's depth is the sum of XLEN of
every slot's queue read straight from the nodes (entries on all three
primaries), its oldest_age_ms grows, and it stays right after 1000 slots
moved to another primary under it; rows refused by a CHECK on keys of every
primary are listed oldest first with <slot>/<stream id> ids that name real
entries of their slot's stream, LIST <count> gives the oldest, one id is
dropped, one retried, RETRY ALL after the constraint is fixed lands the rows
in PostgreSQL but for a key written since it was refused, DROP ALL empties
them; malformed ids and unknown keyspaces get clear errors.
"""

import re
import sys
import time
import unittest

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
import harness  # noqa: E402
from harness import HeldSession, LarderTestCase, RedisCluster  # noqa: E402

DB = "app"
PG = None
CLUSTER = None
SCHEMA = ("CREATE TABLE items (id bigint PRIMARY KEY, v text NOT NULL);"
          "CREATE TABLE stock (id bigint PRIMARY KEY, name text NOT NULL, "
          "qty int CONSTRAINT stock_qty_check CHECK (qty >= 0));"
          "CREATE TABLE notes (id bigint PRIMARY KEY, v text NOT NULL);")
KEYSPACES = ["items", "stock", "notes"]
ID_FORM = re.compile(rb"^(\d+)/(\d+)-(\d+)$")


def setUpModule():
    global PG, CLUSTER
    PG = harness.module_postgres(DB, SCHEMA)
    CLUSTER = RedisCluster()
    unittest.addModuleCleanup(CLUSTER.cleanup)
    CLUSTER.start()


def config():
    return {
        "postgres": {"dsn": PG.dsn(DB)},
        "write_behind": {"flush_interval": "20ms"},
        "keyspaces": {
            "items": {"key": "item:{id}", "table": "public.items", "shape": "string"},
            "stock": {"key": "stock:{id}", "table": "public.stock"},
            "notes": {"key": "note:{id}", "table": "public.notes", "shape": "string"},
        },
    }


def rows(table, column="v"):
    out = PG.psql(f"SELECT id, {column} FROM {table}", dbname=DB)
    return {int(a): b for a, b in (line.split("|") for line in out.split() if "|" in line)}


def keyslot(key):
    return CLUSTER.ask(CLUSTER.running_nodes()[0], "CLUSTER", "KEYSLOT", key)


def streams(kind, keyspace):
    """Every __larder:<kind>:{tag}:<keyspace> of every primary, read straight
    from the nodes: {name: (primary's port, XLEN)}."""
    return {k: (node.port, n)
            for k, (node, n) in CLUSTER.streams(f"__larder:{kind}:*:{keyspace}").items()}


def xlen_sum(kind, keyspace):
    return sum(n for _, n in streams(kind, keyspace).values())


def script_calls():
    """EVAL and EVALSHA calls so far, summed over the primaries."""
    total = 0
    for node in CLUSTER.primaries():
        stats = CLUSTER.info(node, "commandstats")
        for name in ("cmdstat_evalsha", "cmdstat_eval"):
            if name in stats:
                total += int(stats[name].split("calls=")[1].split(",")[0])
    return total


def pending(client):
    """LARDER PENDING as {keyspace: {"depth": N, "oldest_age_ms": N, "dead_letters": N}}."""
    out = {}
    for entry in client.execute_command("LARDER", "PENDING"):
        self_check = [entry[i] for i in range(0, 8, 2)]
        assert self_check == [b"keyspace", b"depth", b"oldest_age_ms", b"dead_letters"], entry
        out[entry[1].decode()] = {"depth": entry[3], "oldest_age_ms": entry[5],
                                  "dead_letters": entry[7]}
    return out


def listed(client, keyspace, *count):
    """LARDER DEADLETTERS <ks> LIST as dicts of their fields (bytes)."""
    out = []
    for entry in client.execute_command("LARDER", "DEADLETTERS", keyspace, "LIST", *count):
        out.append(dict(zip(entry[::2], entry[1::2])))
    return out


class ClusterOperatorTest(LarderTestCase):
    @classmethod
    def setUpClass(cls):
        cls.larder = harness.ClusterLarder(CLUSTER, config=config())
        cls.addClassCleanup(cls.larder.cleanup)
        cls.addClassCleanup(harness.check_log_clean, cls.larder)
        cls.addClassCleanup(cls.larder.stop_gracefully)
        cls.larder.start()

    def setUp(self):
        self.r = self.client(self.larder)

    def error_of(self, *command):
        with self.assertRaises(Exception) as e:
            self.r.execute_command(*command)
        return str(e.exception)

    def test_1_pending_is_the_sum_of_every_slots_queue(self):
        self.assertEqual(self.r.execute_command("LARDER", "FLUSH"), b"OK")
        before = pending(self.r)
        self.assertEqual(list(before), KEYSPACES)  # every keyspace, in the config's order
        for ks in KEYSPACES:
            self.assertEqual(before[ks]["depth"], 0, ks)
            self.assertEqual(before[ks]["oldest_age_ms"], 0, ks)
        # The flush is held: PostgreSQL's writers wait on the lock (loads
        # go on), so every write stays in its slot's queue.
        held = HeldSession(PG, DB, mode="EXCLUSIVE")
        self.addCleanup(held.kill)
        held.lock("items")
        ids = range(1, 401)
        for i in ids:
            self.assertTrue(self.r.set(f"item:{i}", f"a{i}"))
        for i in range(1, 51):  # a second entry in some queues
            self.assertTrue(self.r.set(f"item:{i}", f"b{i}"))
        queues = streams("q", "items")
        owners = {port for port, n in queues.values() if n > 0}
        self.assertEqual(len(owners), 3, "entries on every primary")
        self.assertGreater(len([n for _, n in queues.values() if n > 0]), 300)
        real = xlen_sum("q", "items")
        self.assertEqual(real, 450)
        # One script per 1024 slots of a range (18 per keyspace here), not
        # one per slot; the flushers' sweeps run meanwhile (as many a second).
        calls_before = script_calls()
        got = pending(self.r)
        self.assertLess(script_calls() - calls_before, 500)
        self.assertEqual(got["items"]["depth"], real)
        self.assertEqual(got["items"]["dead_letters"], xlen_sum("dead", "items"))
        self.assertEqual(got["notes"], {"depth": 0, "oldest_age_ms": 0, "dead_letters": 0})
        time.sleep(0.6)
        aged = pending(self.r)["items"]
        self.assertEqual(aged["depth"], real)
        self.assertGreaterEqual(aged["oldest_age_ms"], 500)
        self.assertLess(aged["oldest_age_ms"], 120_000)
        self.assertGreaterEqual(aged["oldest_age_ms"], got["items"]["oldest_age_ms"])
        held.release()
        self.assertEqual(self.r.execute_command("LARDER", "FLUSH", "items"), b"OK")
        after = pending(self.r)["items"]
        self.assertEqual(after["depth"], 0)
        self.assertEqual(after["oldest_age_ms"], 0)
        self.assertEqual(xlen_sum("q", "items"), 0)
        got_rows = rows("items")
        for i in ids:
            self.assertEqual(got_rows.get(i), f"b{i}" if i <= 50 else f"a{i}", i)

    def test_2_dead_letters_on_every_primary(self):
        r = self.r
        ids = CLUSTER.spread_ids("stock", 2)
        self.assertEqual(len(ids), 6)
        for i in ids:
            self.assertEqual(r.hset(f"stock:{i}", mapping={"name": f"s{i}", "qty": i}), 2)
        self.assertEqual(r.execute_command("LARDER", "FLUSH", "stock"), b"OK")
        # qty -1 breaks the CHECK: each goes to its slot's dead letters.
        for i in ids:
            r.hset(f"stock:{i}", "qty", -1)
        self.assertEqual(r.execute_command("LARDER", "FLUSH", "stock"), b"OK")
        dead_streams = streams("dead", "stock")
        self.assertEqual(len({port for port, n in dead_streams.values() if n}), 3)
        self.assertEqual(xlen_sum("dead", "stock"), 6)
        self.assertEqual(pending(r)["stock"]["dead_letters"], 6)
        self.assertEqual(pending(r)["stock"]["depth"], 0)

        entries = listed(r, "stock")
        self.assertEqual(len(entries), 6)
        # Ids are given when a row is refused, so the order is the flusher's.
        self.assertEqual(sorted(e[b"k"] for e in entries),
                         sorted(f"stock:{i}".encode() for i in ids))
        previous = (0, 0, -1)
        for e in entries:
            m = ID_FORM.match(e[b"id"])
            self.assertIsNotNone(m, e[b"id"])
            slot, stream_id = int(m.group(1)), e[b"id"].split(b"/")[1]
            self.assertEqual(slot, keyslot(e[b"k"]))
            self.assertEqual(e[b"sqlstate"], b"23514")
            self.assertEqual(e[b"f:qty"], b"-1")
            # The id names that entry of that slot's stream, on its owner.
            name = next(n for n in dead_streams if keyslot(n) == slot)
            node = CLUSTER.owner_of(name)
            found = CLUSTER.ask(node, "XRANGE", name, stream_id, stream_id)
            self.assertEqual(len(found), 1)
            self.assertIn(b"stock:", found[0][1][1])
            # Oldest first across slots (one clock: the nodes share this
            # machine's); two streams can hold one id: then by slot.
            order = (int(m.group(2)), int(m.group(3)), slot)
            self.assertGreater(order, previous)
            previous = order
        # LIST <count>: the oldest, across slots.
        self.assertEqual(listed(r, "stock", 2), entries[:2])
        self.assertEqual(listed(r, "stock", 5), entries[:5])
        self.assertEqual(listed(r, "stock", 0), [])
        self.assertIn("not an integer", self.error_of("LARDER", "DEADLETTERS", "stock", "LIST",
                                                      "many"))

        # DROP one id: that one only, once.
        first = entries[0][b"id"]
        self.assertEqual(r.execute_command("LARDER", "DEADLETTERS", "stock", "DROP", first), 1)
        self.assertEqual(r.execute_command("LARDER", "DEADLETTERS", "stock", "DROP", first), 0)
        self.assertEqual(listed(r, "stock"), entries[1:])
        self.assertEqual(pending(r)["stock"]["dead_letters"], 5)

        # Fix the constraint; one key is written after its refusal: RETRY
        # must not put its older value over that write.
        def id_of(entry):
            return int(entry[b"k"].split(b":")[1])
        dropped, one, rewritten = id_of(entries[0]), id_of(entries[1]), id_of(entries[-1])
        PG.psql("ALTER TABLE stock DROP CONSTRAINT stock_qty_check", dbname=DB)
        r.hset(f"stock:{rewritten}", "qty", 500)
        # RETRY one id, then ALL.
        self.assertEqual(r.execute_command("LARDER", "DEADLETTERS", "stock", "RETRY",
                                           entries[1][b"id"]), 1)
        self.assertEqual(r.execute_command("LARDER", "FLUSH", "stock"), b"OK")
        self.assertEqual(rows("stock", "qty")[one], "-1")
        self.assertEqual(r.execute_command("LARDER", "DEADLETTERS", "stock", "RETRY", "ALL"), 3)
        self.assertEqual(r.execute_command("LARDER", "FLUSH", "stock"), b"OK")
        got = rows("stock", "qty")
        self.assertEqual(got[dropped], str(dropped))  # dropped: PostgreSQL kept its row
        for i in ids:
            if i not in (dropped, rewritten):
                self.assertEqual(got[i], "-1", i)
                self.assertEqual(r.hget(f"stock:{i}", "qty"), b"-1")
        self.assertEqual(got[rewritten], "500")
        self.assertEqual(r.hget(f"stock:{rewritten}", "qty"), b"500")
        self.assertIn("1 dead letter(s) not retried", self.larder.log())
        left = listed(r, "stock")
        self.assertEqual([e[b"k"] for e in left], [f"stock:{rewritten}".encode()])
        self.assertEqual(r.execute_command("LARDER", "DEADLETTERS", "stock", "RETRY", "ALL"), 0)
        # DROP ALL: every slot's.
        self.assertEqual(r.execute_command("LARDER", "DEADLETTERS", "stock", "DROP", "ALL"), 1)
        self.assertEqual(listed(r, "stock"), [])
        self.assertEqual(xlen_sum("dead", "stock"), 0)
        self.assertEqual(pending(r)["stock"]["dead_letters"], 0)
        self.assertEqual(r.execute_command("LARDER", "DEADLETTERS", "stock", "DROP", "ALL"), 0)

    def test_3_malformed_ids_and_unknown_keyspaces(self):
        self.assertIn("no keyspace named 'nosuch'",
                      self.error_of("LARDER", "DEADLETTERS", "nosuch", "LIST"))
        self.assertIn("no keyspace named 'nosuch'",
                      self.error_of("LARDER", "DEADLETTERS", "nosuch", "RETRY", "ALL"))
        for action in ("RETRY", "DROP"):
            for bad in ("1733500000000-0", "16384/1-0", "-1/1-0", "abc", "5/1", "5/-", "5/+",
                        "5/1-0/1", "/1-0", "5/", "5/1-0\r\n+OK"):
                text = self.error_of("LARDER", "DEADLETTERS", "stock", action, bad)
                self.assertIn("is not a dead letter id: on a Redis Cluster backend they are "
                              "<slot>/<stream id>", text, (action, bad))
            # Well formed, but no such entry: nothing happens.
            self.assertEqual(self.r.execute_command("LARDER", "DEADLETTERS", "stock", action,
                                                    "77/1-0"), 0)
        self.assertIn("usage: LARDER DEADLETTERS",
                      self.error_of("LARDER", "DEADLETTERS", "stock", "EXPLODE", "ALL"))
        self.assertIn("usage: LARDER FLUSH", self.error_of("LARDER", "PENDING", "items"))
        # The connection is still in step after all those errors.
        self.assertEqual(self.r.ping(), True)
        self.assertEqual(len(pending(self.r)), 3)

    def test_4_pending_right_after_slots_moved(self):
        """1000 slots holding queued entries move to another primary; PENDING
        asked at once (Larder's map may still be the old one: the moved slots
        are asked again on their own) still counts every entry."""
        self.assertEqual(self.r.execute_command("LARDER", "FLUSH"), b"OK")
        held = HeldSession(PG, DB, mode="EXCLUSIVE")
        self.addCleanup(held.kill)
        held.lock("notes")
        for i in range(1, 601):
            self.assertTrue(self.r.set(f"note:{i}", f"n{i}"))
        self.assertEqual(xlen_sum("q", "notes"), 600)
        self.assertEqual(pending(self.r)["notes"]["depth"], 600)
        source, target = CLUSTER.primaries()[0], CLUSTER.primaries()[1]
        CLUSTER.reshard(source, target, 1000, pipeline=20)
        self.assertEqual(xlen_sum("q", "notes"), 600)
        for _ in range(5):
            self.assertEqual(pending(self.r)["notes"]["depth"], 600)
        held.release()
        self.assertEqual(self.r.execute_command("LARDER", "FLUSH", "notes"), b"OK")
        self.assertEqual(pending(self.r)["notes"]["depth"], 0)
        self.assertEqual(len(rows("notes")), 600)


if __name__ == "__main__":
    unittest.main()
