#!/usr/bin/python3
"""Write queues no keyspace flushes any more, on a Redis Cluster
(docs/cluster.md, "Write-behind on a cluster"; docs/writes.md, "Queues nobody
flushes any more"): a keyspace's queue is one stream per slot, spread over
every primary, and the audit SCANs each primary for them.

Checked against a real 3-primary cluster (1 replica each) and PostgreSQL.
Writes are left queued for real: the table is locked while a `behind` Larder
takes them, and that Larder stops with its drain timing out. Then:
- the keyspace switched to `write: through`: its writes get the draining
  error while the old slot queues (on every primary) cannot be applied, the
  old values reach PostgreSQL once they can, writes are accepted only after
  that, and a new write lands over the old values;
- the keyspace renamed (the same keys, another name): writes to the new
  keyspace are refused, the log names the old slot queues with their count
  and the command that deletes them, /readyz names them; the command as
  logged deletes them on every primary, and writes are accepted again.

Run: /usr/bin/python3 tests/integration/test_cluster_stranded.py [-v]
"""

import shlex
import subprocess
import sys
import unittest
import urllib.error
import urllib.request

import redis

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
import harness  # noqa: E402
from harness import HOST, HeldSession, LarderTestCase, RedisCluster, wait_until  # noqa: E402

DB = "app"
PG = None
CLUSTER = None
SCHEMA = ("CREATE TABLE notes (id bigint PRIMARY KEY, v text NOT NULL);"
          "CREATE TABLE memos (id bigint PRIMARY KEY, v text NOT NULL);")
NOTES = {"key": "note:{id}", "table": "public.notes", "shape": "string", "write": "behind"}
MEMOS = {"key": "memo:{id}", "table": "public.memos", "shape": "string", "write": "behind"}


def setUpModule():
    global PG, CLUSTER
    PG = harness.module_postgres(DB, SCHEMA)
    CLUSTER = RedisCluster()
    unittest.addModuleCleanup(CLUSTER.cleanup)
    CLUSTER.start()


def rows(table):
    out = PG.psql(f"SELECT id, v FROM {table}", dbname=DB)
    return {int(a): b for a, b in (line.split("|") for line in out.split() if "|" in line)}


def call(client, *args):
    try:
        return client.execute_command(*args)
    except redis.ResponseError as e:
        return e


def queues(keyspace):
    """Every slot queue __larder:q:{tag}:<keyspace> with entries, read straight
    from the primaries: {name: (primary's port, XLEN)}."""
    return {k: (node.port, n)
            for k, (node, n) in CLUSTER.streams(f"__larder:q:{{*}}:{keyspace}").items() if n > 0}


def readyz(port):
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/readyz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class ClusterStrandedTest(LarderTestCase):

    def setUp(self):
        # Each test starts from empty nodes and tables: no queue or row of
        # another test's.
        for node in CLUSTER.primaries():
            CLUSTER.ask(node, "FLUSHALL")
        PG.psql("TRUNCATE notes, memos", dbname=DB)

    def larder(self, keyspaces, **extra):
        config = {"postgres": {"dsn": PG.dsn(DB), "pool_size": 2},
                  "write_behind": {"flush_interval": "20ms", "retry_min": "50ms",
                                   "retry_max": "300ms", "drain_timeout": "1s"},
                  "keyspaces": keyspaces}
        larder = harness.start_cluster_larder(self, CLUSTER, config=harness._merge(config, extra))
        return larder, self.client(larder)

    def queue_writes(self, name, keyspace, prefix, ids):
        """Leaves <prefix>:<id> = old<id> queued in the slot queues of keyspace
        `name`, on every primary. The caller holds the table locked, so the
        flusher cannot apply them, and the Larder that took them stops with
        its drain timing out."""
        larder, c = self.larder({name: keyspace})
        for i in ids:
            self.assertTrue(c.set(f"{prefix}:{i}", f"old{i}"))
        larder.stop()  # the drain times out (1 s): the writes stay queued
        found = queues(name)
        self.assertEqual(len(found), len(ids), "a slot queue per key")
        self.assertEqual(sum(n for _, n in found.values()), len(ids))
        self.assertEqual(len({port for port, _ in found.values()}), 3, "on every primary")

    def test_switched_keyspace_drains_its_slot_queues_first(self):
        ids = CLUSTER.spread_ids("note", 3)
        held = HeldSession(PG, DB, "EXCLUSIVE")
        self.addCleanup(held.kill)
        held.lock("notes")
        self.queue_writes("notes", NOTES, "note", ids)
        # Back with the keyspace `through`, the table still locked: the old
        # writes cannot reach PostgreSQL yet.
        larder, c = self.larder({"notes": dict(NOTES, write="through")})
        found = (f"keyspace notes: its {len(ids)} slot write queue(s) __larder:q:{{*}}:notes "
                 f"(on the primaries) still hold {len(ids)} write(s)")
        wait_until(lambda: found in larder.log(), 15, "the audit to find the old slot queues")
        # Found by the look at the keyspace's own slot queues, before any SCAN.
        self.assertIn(f"keyspace notes: looked for its old slot write queues on 3 primaries: "
                      f"{len(ids)} write(s)", larder.log())
        draining = ("Larder: keyspace 'notes' is still flushing its old write queue; "
                    "try again shortly")
        for i in (ids[0], ids[-1]):
            reply = call(c, "SET", f"note:{i}", "new")
            self.assertIsInstance(reply, redis.ResponseError)
            self.assertEqual(str(reply), draining)
        self.assertEqual(rows("notes"), {})
        self.assertEqual(len(queues("notes")), len(ids), "still queued while the table is locked")
        held.release()
        wait_until(lambda: rows("notes") == {i: f"old{i}" for i in ids}, 20,
                   "the old slot queues to reach PostgreSQL")
        wait_until(lambda: call(c, "SET", f"note:{ids[0]}", "new") is True, 15,
                   "writes accepted once the old queues are empty")
        self.assertIn("keyspace notes: old write queues drained", larder.log())
        self.assertEqual(queues("notes"), {})
        # The new write lands over the old value; the others keep theirs.
        want = {i: f"old{i}" for i in ids}
        want[ids[0]] = "new"
        self.assertEqual(rows("notes"), want)
        self.assertEqual(c.get(f"note:{ids[0]}"), b"new")
        # Nothing is left to flush: the drained keyspace does not hold it up.
        self.assertEqual(c.execute_command("LARDER", "FLUSH"), b"OK")

    def test_switched_keyspace_drains_again_when_its_slot_queues_refill(self):
        """Mid-rollout: instance A has the keyspace `through`, B still has it
        `behind` and queues to the same slot queues. When A finds them holding
        writes again (the primaries changed: a failover), it refuses the
        keyspace's writes while B still owns the queues (B's queued writes
        would land over A's), and accepts them once B is gone and the queues
        are empty: not never."""
        ids = CLUSTER.spread_ids("note", 1, start=100)
        held = HeldSession(PG, DB, "EXCLUSIVE")
        self.addCleanup(held.kill)
        held.lock("notes")
        self.queue_writes("notes", NOTES, "note", ids)
        held.release()
        a, ca = self.larder({"notes": dict(NOTES, write="through")})
        wait_until(lambda: call(ca, "SET", f"note:{ids[0]}", "a1") is True, 20, "A's first drain")
        b, cb = self.larder({"notes": dict(NOTES)})
        held_again = HeldSession(PG, DB, "EXCLUSIVE")
        self.addCleanup(held_again.kill)
        held_again.lock("notes")
        for i in ids:
            self.assertTrue(cb.set(f"note:{i}", f"b{i}"))  # queued; B cannot flush them yet
        primary = CLUSTER.owner_of(f"note:{ids[0]}")
        replica = CLUSTER.replicas_of(primary)[0]
        CLUSTER.ask(replica, "CLUSTER", "FAILOVER")
        CLUSTER.wait_promoted([replica])
        wait_until(lambda: a.log().count("still hold") >= 2, 30,
                   "A to find the slot queues again once the primaries changed")
        reply = call(ca, "SET", f"note:{ids[0]}", "a2")
        self.assertIsInstance(reply, redis.ResponseError)
        self.assertIn("still flushing its old write queue", str(reply))
        held_again.release()
        wait_until(lambda: {i: v for i, v in rows("notes").items() if i in ids} ==
                   {i: f"b{i}" for i in ids}, 20, "B to flush its writes")
        reply = call(ca, "SET", f"note:{ids[0]}", "a3")
        self.assertIsInstance(reply, redis.ResponseError, "accepted while B is still `behind`")
        b.stop()
        wait_until(lambda: call(ca, "SET", f"note:{ids[0]}", "a3") is True, 30,
                   "A to accept writes once B is gone and the queues are empty")
        self.assertIn("keyspace notes: its old write queue has entries again; draining it again",
                      a.log())
        want = {i: f"b{i}" for i in ids}
        want[ids[0]] = "a3"
        self.assertEqual({i: v for i, v in rows("notes").items() if i in ids}, want)

    def test_renamed_keyspace_is_refused_until_the_queues_go(self):
        ids = CLUSTER.spread_ids("memo", 2)
        held = HeldSession(PG, DB, "EXCLUSIVE")
        self.addCleanup(held.kill)
        held.lock("memos")
        self.queue_writes("memos", MEMOS, "memo", ids)
        held.release()
        admin = harness.free_port()
        # The same keys under another name: the old queues are nobody's.
        larder, c = self.larder({"memos2": dict(MEMOS)}, admin=f"{HOST}:{admin}")
        found = (f"{len(ids)} slot write queue(s) __larder:q:{{*}}:memos (on the primaries) hold "
                 f"{len(ids)} write(s) of keyspace 'memos', which is not in the config any more")
        wait_until(lambda: found in larder.log(), 15, "the stranded slot queues reported by name")
        log = larder.log()
        self.assertIn("writes to keyspace 'memos2' (whose keys they are) are refused", log)
        reply = call(c, "SET", f"memo:{ids[0]}", "x")
        self.assertIsInstance(reply, redis.ResponseError)
        self.assertEqual(str(reply), "Larder: an old write queue holds writes to keys of keyspace "
                                     "'memos2' that no keyspace flushes any more; see the log")
        status, body = readyz(admin)
        self.assertEqual(status, 503, body)
        self.assertIn(f"__larder:q:{{*}}:memos (on the primaries): {len(ids)} write(s)", body)
        self.assertEqual(rows("memos"), {}, "neither applied")
        self.assertEqual(len(queues("memos")), len(ids), "nor dropped")
        # The fix as the log gives it, run as given.
        line = next(ln for ln in log.splitlines() if found in ln)
        command = line.split("key on every primary: ", 1)[1].strip()
        argv = shlex.split(command)
        self.assertEqual(argv[0], "redis-cli")
        res = subprocess.run([harness.REDIS_CLI] + argv[1:], stdin=subprocess.DEVNULL,
                             capture_output=True, timeout=30)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertEqual(queues("memos"), {})
        wait_until(lambda: call(c, "SET", f"memo:{ids[0]}", "x") is True, 15,
                   "writes accepted once the queues are gone")
        self.assertIn("keyspace memos2: no old write queue holds its keys any more", larder.log())
        self.assertEqual(c.execute_command("LARDER", "FLUSH"), b"OK")
        self.assertEqual(rows("memos"), {ids[0]: "x"}, "the deleted writes were never applied")
        wait_until(lambda: readyz(admin)[0] == 200, 10, "/readyz ready again")


if __name__ == "__main__":
    harness.main()
