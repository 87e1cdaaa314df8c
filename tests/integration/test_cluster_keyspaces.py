#!/usr/bin/python3
"""Read-only keyspaces on a Redis Cluster (docs/cluster.md, "Keyspaces on a
cluster"): misses load from PostgreSQL and fill the owner of each key's slot;
stampede leases live beside their key, in its slot, so one load serves two
Larder instances; PostgreSQL's changes drop keys on whichever primary holds
them; a whole keyspace is dropped by SCAN over every primary. Write modes are
refused by the config (tests/unit/config/loader_test.cpp), and what a
read-only keyspace refuses is refused here in the same words.

One cluster (3 primaries, 1 replica each), one PostgreSQL and one Larder
serve the file; each test uses its own rows.
"""

import subprocess
import sys
import re
import threading
import time
import unittest
import urllib.request

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
import harness  # noqa: E402
from harness import ClusterLarder, LarderTestCase, RedisCluster, RespError  # noqa: E402

DB = "app"
CHANNEL = "larder_changes"
PUBLISH = "larder:invalidate"
PG = None
CLUSTER = None


def setUpModule():
    global PG, CLUSTER
    PG = harness.module_postgres(
        DB, "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, email text);"
            "CREATE TABLE names (id bigint PRIMARY KEY, name text NOT NULL);"
            "INSERT INTO users SELECT g, 'user' || g, NULL FROM generate_series(1, 300) g;"
            "INSERT INTO names SELECT g, 'name' || g FROM generate_series(1, 300) g;"
            "CREATE TABLE accounts (id bigint PRIMARY KEY, name text NOT NULL, balance int);"
            "INSERT INTO accounts SELECT g, 'acct' || g, g FROM generate_series(1, 300) g;"
            "CREATE TABLE items (id bigint PRIMARY KEY, v text NOT NULL);"
            "INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 600) g;")
    CLUSTER = RedisCluster()
    unittest.addModuleCleanup(CLUSTER.cleanup)
    CLUSTER.start()


def config(**stampede):
    users = {"key": "user:{id}", "table": "public.users", "write": "none", "ttl": "1h",
             "negative_ttl": "30s"}
    if stampede:
        users["stampede"] = stampede
    return {
        "postgres": {"dsn": PG.dsn(DB)},
        "invalidation": {"listen": CHANNEL, "publish": PUBLISH},
        "keyspaces": {
            "users": users,
            "names": {"key": "name:{id}", "table": "public.names", "shape": "string",
                      "write": "none"},
            "items": {"key": "item:{id}", "table": "public.items", "shape": "string",
                      "write": "none", "ttl": "1h"},
            "accounts": {"key": "account:{id}", "table": "public.accounts", "write": "through"},
        },
    }


def install_triggers(larder):
    """larder --install-triggers for every keyspace, then waits for LISTEN."""
    out = subprocess.run([larder.binary, "--config", larder.config_path, "--install-triggers"],
                         capture_output=True, text=True, timeout=harness.scaled(60))
    if out.returncode != 0:
        raise AssertionError(out.stderr)
    harness.wait_until(lambda: "listening on PostgreSQL channel" in larder.log(), 10,
                       "Larder to LISTEN")


class ClusterKeyspaceTest(LarderTestCase):
    @classmethod
    def setUpClass(cls):
        cls.larder = ClusterLarder(CLUSTER, config=config())
        cls.addClassCleanup(cls.larder.cleanup)
        cls.addClassCleanup(harness.check_log_clean, cls.larder)
        cls.addClassCleanup(cls.larder.stop_gracefully)
        cls.larder.start()
        install_triggers(cls.larder)

    def setUp(self):
        self.r = self.client(self.larder)

    def owner(self, key):
        return CLUSTER.owner_of(key)

    def on_owner(self, *args):
        """args[1] is a key: the command on the node that owns its slot."""
        return CLUSTER.ask(self.owner(args[1]), *args)

    def internal_keys(self):
        """Every __larder:* key of every primary, as (node, key)."""
        found = []
        for node in CLUSTER.primaries():
            cursor = b"0"
            while True:
                cursor, keys = CLUSTER.ask(node, "SCAN", cursor, "MATCH", "__larder:*",
                                           "COUNT", "1000")
                found.extend((node, k) for k in keys)
                if cursor == b"0":
                    break
        return found

    def stats(self, keyspace):
        return self.larder.info_larder()[f"keyspace_{keyspace}"]

    # ------------------------------------------------------------ read-through
    def test_misses_fill_the_owner_of_each_keys_slot(self):
        ids = range(1, 61)
        owners = {self.owner(f"user:{i}").port for i in ids}
        self.assertEqual(len(owners), 3, "the keys span every primary")
        for i in ids:
            self.assertEqual(self.r.hgetall(f"user:{i}"), {b"name": f"user{i}".encode()})
        for i in ids:
            self.assertEqual(self.on_owner("HGET", f"user:{i}", "name"), f"user{i}".encode())
        # A second read is a hit: no more queries.
        before = self.stats("users")["queries"]
        for i in ids:
            self.assertEqual(self.r.hget(f"user:{i}", "name"), f"user{i}".encode())
        self.assertEqual(self.stats("users")["queries"], before)
        # A row that does not exist: nil, and no key anywhere.
        self.assertEqual(self.r.hgetall("user:100000"), {})
        self.assertEqual(self.on_owner("EXISTS", "user:100000"), 0)

    def test_mget_across_slots_loads_each_missing_key(self):
        keys = [f"name:{i}" for i in range(1, 31)] + ["name:99999", "unmapped:x"]
        self.r.get("name:3")  # one hit among the misses
        got = self.r.mget(keys)
        want = [f"name{i}".encode() for i in range(1, 31)] + [None, None]
        self.assertEqual(got, want)
        for i in range(1, 31):
            self.assertEqual(self.on_owner("GET", f"name:{i}"), f"name{i}".encode())
        self.assertEqual(self.r.exists(*keys), 30)

    def test_internal_keys_share_their_keys_slot(self):
        # A missing row leaves its lease saying "absent" for negative_ttl.
        for i in range(200001, 200021):
            self.assertIsNone(self.r.hget(f"user:{i}", "name"))
        leases = [(n, k) for n, k in self.internal_keys() if b":lease:" in k]
        self.assertGreaterEqual(len(leases), 20)
        for node, key in leases:
            # __larder:lease:{<tag>}<key>: the tag puts it in <key>'s slot.
            self.assertTrue(key.startswith(b"__larder:lease:{"), key)
            user_key = key[key.index(b"}") + 1:]
            slot = CLUSTER.ask(node, "CLUSTER", "KEYSLOT", key)
            self.assertEqual(slot, CLUSTER.ask(node, "CLUSTER", "KEYSLOT", user_key), key)
            self.assertEqual(node.port, self.owner(user_key.decode()).port)
        # Reserved from clients all the same, tag or not.
        self.assertEqual(self.raw(self.larder).call("GET", leases[0][1]),
                         RespError("ERR Larder: keys under '__larder:' are reserved for Larder"))

    def test_scripts_cannot_reach_reserved_keys_on_any_node(self):
        """Client traffic runs as redis.client_acl_user on every node: a
        script sent to a reserved key's node (by a key of the same slot)
        cannot touch it, though it names it only in ARGV."""
        for i in range(300001, 300031):  # "absent" leases, on every primary
            self.assertIsNone(self.r.hget(f"user:{i}", "name"))
        leases = {}
        for node, key in self.internal_keys():
            if b":lease:" in key:
                leases.setdefault(node.port, key)
        self.assertEqual(len(leases), 3, "a lease on every primary")
        raw = self.raw(self.larder)
        for port, lease in leases.items():
            # A plain key with the lease's tag: the lease's slot, so its node.
            plain = lease[lease.index(b"{"):lease.index(b"}") + 1] + b"plain"
            for script in ("return redis.call('GET', ARGV[1])",
                           "return redis.call('DEL', ARGV[1])"):
                reply = raw.call("EVAL", script, "1", plain, lease)
                self.assertIsInstance(reply, RespError, (port, script))
                self.assertIn("can't access at least one of the keys", str(reply), port)
            node = CLUSTER.by_port(port)
            self.assertEqual(CLUSTER.ask(node, "EXISTS", lease), 1, port)  # untouched
            self.assertIn(b"larder-client", CLUSTER.ask(node, "ACL", "USERS"))
        # Ordinary scripts run as before, on their key's node.
        self.assertEqual(raw.call("EVAL", "return redis.call('SET', KEYS[1], 'v')", "1",
                                  "plain:script"), "OK")
        self.assertEqual(self.on_owner("GET", "plain:script"), b"v")

    def test_read_only_keyspace_refuses_writes_in_its_own_words(self):
        raw = self.raw(self.larder)
        self.assertEqual(raw.call("HSET", "user:5", "name", "x"),
                         RespError("READONLY Larder: keyspace 'users' is read-only (write: none)"))
        # A cache-only write (EXPIRE) runs the write script on the key's node.
        self.assertEqual(self.r.hget("user:5", "name"), b"user5")
        self.assertEqual(raw.call("EXPIRE", "user:5", "100"), 1)
        self.assertTrue(0 < self.on_owner("TTL", "user:5") <= 100)
        self.assertEqual(raw.call("PERSIST", "user:5"), 1)
        self.assertEqual(self.on_owner("TTL", "user:5"), -1)
        # Unmapped keys are not touched by any of this.
        self.assertTrue(self.r.set("plain:1", "v"))
        self.assertEqual(self.r.get("plain:1"), b"v")

    # ----------------------------------------------------------- write-through
    def test_write_through_commits_then_updates_each_keys_owner(self):
        ids = list(range(1, 61))
        owners = {self.owner(f"account:{i}").port for i in ids}
        self.assertEqual(len(owners), 3, "the keys span every primary")
        for i in ids[:30]:  # half cached before the write, half not
            self.assertEqual(self.r.hget(f"account:{i}", "name"), f"acct{i}".encode())
        p = self.r.pipeline(transaction=False)
        for i in ids:
            p.hset(f"account:{i}", "balance", 1000 + i)
        # A field that existed: 0, as Redis says, cached or not (an uncached
        # row is loaded first, on its key's node).
        self.assertEqual(p.execute(), [0] * len(ids))
        rows = dict(line.split("|") for line in PG.psql(
            "SELECT id, balance FROM accounts WHERE id BETWEEN 1 AND 60", dbname=DB).split())
        self.assertEqual(rows, {str(i): str(1000 + i) for i in ids})
        for i in ids:
            self.assertEqual(self.r.hget(f"account:{i}", "balance"), str(1000 + i).encode())
        for i in ids[:30]:  # the cached ones were updated in place, on their node
            self.assertEqual(self.on_owner("HGET", f"account:{i}", "balance"),
                             str(1000 + i).encode())
        # A new row, and a delete.
        self.assertEqual(self.r.hset("account:5000", mapping={"name": "new", "balance": 1}), 2)
        self.assertEqual(PG.psql("SELECT name FROM accounts WHERE id = 5000", dbname=DB).strip(),
                         "new")
        self.assertEqual(self.r.delete("account:5000"), 1)
        self.assertEqual(PG.psql("SELECT count(*) FROM accounts WHERE id = 5000",
                                 dbname=DB).strip(), "0")
        self.assertEqual(self.on_owner("EXISTS", "account:5000"), 0)
        self.assertEqual(self.r.hgetall("account:5000"), {})

    def test_write_through_refused_by_postgresql_leaves_the_cache_alone(self):
        self.assertEqual(self.r.hget("account:77", "name"), b"acct77")
        # name is NOT NULL: PostgreSQL refuses, the client hears it, nothing changes.
        reply = self.raw(self.larder).call("HDEL", "account:77", "name")
        self.assertIsInstance(reply, RespError)
        self.assertEqual(PG.psql("SELECT name FROM accounts WHERE id = 77", dbname=DB).strip(),
                         "acct77")
        self.assertEqual(self.on_owner("HGET", "account:77", "name"), b"acct77")
        self.assertEqual(self.r.hget("account:77", "name"), b"acct77")

    # ------------------------------------------------------------ invalidation
    def test_changes_in_postgresql_drop_keys_on_every_primary(self):
        ids = list(range(101, 161))
        for i in ids:
            self.assertEqual(self.r.hget(f"user:{i}", "name"), f"user{i}".encode())
        harness.wait_until(lambda: all(self.on_owner("EXISTS", f"user:{i}") for i in ids), 5,
                           "the fills")
        started = time.monotonic()
        PG.psql("UPDATE users SET name = 'changed' || id WHERE id BETWEEN 101 AND 160",
                dbname=DB)
        harness.wait_until(
            lambda: all(self.r.hget(f"user:{i}", "name") == f"changed{i}".encode() for i in ids),
            10, "every UPDATE to show through Larder")
        self.assertLess(time.monotonic() - started, harness.scaled(5.0))
        PG.psql("DELETE FROM users WHERE id BETWEEN 101 AND 110", dbname=DB)
        harness.wait_until(lambda: all(self.r.hget(f"user:{i}", "name") is None
                                       for i in range(101, 111)), 10, "the DELETEs to show")
        for i in range(111, 161):
            self.assertEqual(self.r.hget(f"user:{i}", "name"), f"changed{i}".encode())

    def test_larder_invalidate_a_whole_keyspace_scans_every_primary(self):
        ids = list(range(201, 261))
        for i in ids:
            self.assertEqual(self.r.get(f"name:{i}"), f"name{i}".encode())
        harness.wait_until(lambda: all(self.on_owner("EXISTS", f"name:{i}") for i in ids), 5,
                           "the fills")
        dropped = self.r.execute_command("LARDER", "INVALIDATE", "names")
        self.assertGreaterEqual(dropped, len(ids))
        for i in ids:
            self.assertEqual(self.on_owner("EXISTS", f"name:{i}"), 0, f"name:{i}")
        # By key, too: the key's own node.
        self.assertEqual(self.r.get("name:201"), b"name201")
        self.assertEqual(self.r.execute_command("LARDER", "INVALIDATE", "names", "name:201"), 1)
        self.assertEqual(self.on_owner("EXISTS", "name:201"), 0)
        self.assertEqual(self.r.get("name:201"), b"name201")


def metric(larder, name: str, **labels) -> float:
    """Sum of the samples of `name` on the admin port whose labels include `labels`."""
    with urllib.request.urlopen(f"http://{harness.HOST}:{larder.admin_port}/metrics",
                                timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for m in re.finditer(r"^" + re.escape(name) + r"(\{[^}]*\})?\s+(\S+)$", text, re.M):
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


class ClusterNearCacheTest(LarderTestCase):
    def test_near_cache_is_invalidated_by_every_primary(self):
        """Each worker tracks every primary (BCAST on each): a write straight
        to any node drops the near-cached value."""
        cfg = config()
        cfg["keyspaces"]["names"]["near_cache"] = {"max_ttl": "30s"}
        admin_port = harness.free_port()
        cfg["admin"] = f"{harness.HOST}:{admin_port}"
        larder = harness.start_cluster_larder(self, CLUSTER, config=cfg, threads=2)
        larder.admin_port = admin_port
        # Once it LISTENs, Larder drops the keyspaces' keys (changes it missed
        # are unknown): before the writes below, not among them.
        harness.wait_until(lambda: "listening on PostgreSQL channel" in larder.log(), 10,
                           "Larder to LISTEN")
        harness.wait_until(lambda: metric(larder, "larder_near_cache_tracking_up") == 2, 10,
                           "both workers' near caches to be up")
        for node in CLUSTER.primaries():  # a tracker per worker on every primary
            clients = CLUSTER.ask(node, "CLIENT", "LIST").decode()
            self.assertEqual(clients.count("name=larder-nearcache-track-"), 2, node.port)
        keys = [f"name:{i}" for i in range(1, 31)]
        self.assertEqual({self.owner_port(k) for k in keys}, {n.port for n in CLUSTER.primaries()})
        c = self.client(larder)
        for k in keys:
            self.assertEqual(c.get(k), f"name{k[5:]}".encode())
        harness.wait_until(lambda: all(c.get(k) == f"name{k[5:]}".encode() for k in keys)
                           and metric(larder, "larder_near_cache_hits_total",
                                      keyspace="names") >= len(keys), 10, "near-cache hits")
        started = time.monotonic()
        for k in keys:  # another program writes straight to each key's node
            CLUSTER.ask(CLUSTER.owner_of(k), "SET", k, f"direct-{k}")
        try:
            harness.wait_until(lambda: all(c.get(k) == f"direct-{k}".encode() for k in keys), 5,
                               "every write to reach the near caches")
        except AssertionError as e:
            stale = [(k, c.get(k), CLUSTER.ask(CLUSTER.owner_of(k), "GET", k)) for k in keys
                     if c.get(k) != f"direct-{k}".encode()]
            raise AssertionError(f"{e}: {stale[:5]} of {len(stale)}") from None
        self.assertLess(time.monotonic() - started, harness.scaled(5.0))

    @staticmethod
    def owner_port(key):
        return CLUSTER.owner_of(key).port


class ClusterStampedeTest(LarderTestCase):
    def test_two_instances_load_a_cold_key_once(self):
        """The lease of a cold key lives in its slot: of two Larders missing it
        at once, one loads and fills, the other waits for the fill."""
        cfg = config(lease="5s")
        a = harness.start_cluster_larder(self, CLUSTER, config=cfg)
        b = harness.start_cluster_larder(self, CLUSTER, config=cfg)
        # Each drops the keyspaces' keys once it LISTENs (changes it missed
        # are unknown): not in the middle of the reads.
        for larder in (a, b):
            harness.wait_until(lambda: "listening on PostgreSQL channel" in larder.log(), 10,
                               "Larder to LISTEN")
        keys = [f"user:{i}" for i in range(261, 291)]
        results = {}
        errors = []

        def read(larder, name):
            c = larder.client(socket_timeout=10)
            try:
                results[name] = [c.hget(k, "name") for k in keys]
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
            finally:
                harness.close_client(c)

        threads = [threading.Thread(target=read, args=(larder, f"{tag}{n}"))
                   for n in range(3) for tag, larder in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(harness.scaled(30))
        self.assertEqual(errors, [])
        want = [f"user{i}".encode() for i in range(261, 291)]
        for name, got in results.items():
            self.assertEqual(got, want, name)
        self.assertEqual(len(results), 6)
        sa = a.info_larder()["keyspace_users"]
        sb = b.info_larder()["keyspace_users"]
        # Each key was queried by at most one instance... unless a lease ran
        # out, which 5 s do not; the winners' count is the keys' count.
        self.assertEqual(sa["leases_won"] + sb["leases_won"], len(keys))
        self.assertEqual(sa["keys_queried"] + sb["keys_queried"], len(keys))


class Readers:
    """Threads reading item:1..600 through Larder in a loop until finish();
    every reply is checked against the values the row has had."""

    def __init__(self, larder, history, threads=3):
        self.larder, self.history = larder, history
        self.stop = threading.Event()
        self.errors, self.wrong = [], []
        self.ops = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(n,), daemon=True)
                        for n in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def run(self, n):
        c = self.larder.client(socket_timeout=harness.scaled(20))
        i = n
        while not self.stop.is_set():
            i = (i * 7 + 13) % 600 + 1
            try:
                got = c.get(f"item:{i}")
                with self.lock:
                    self.ops += 1
                    if got not in self.history[i]:
                        self.wrong.append((i, got))
            except Exception as e:  # noqa: BLE001 - every failure counts
                with self.lock:
                    self.errors.append((time.monotonic(), repr(e)))
        harness.close_client(c)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(harness.scaled(30))


class Writer:
    """A thread writing account:1..300's balance through Larder (write-through)
    until finish(); remembers each id's last acknowledged balance."""

    def __init__(self, larder):
        self.larder = larder
        self.stop = threading.Event()
        self.errors, self.acked = [], {}
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def run(self):
        c = self.larder.client(socket_timeout=harness.scaled(20))
        n = 0
        while not self.stop.is_set():
            n += 1
            i = (n * 7) % 300 + 1
            try:
                c.hset(f"account:{i}", "balance", n)
                self.acked[i] = n
            except Exception as e:  # noqa: BLE001 - every failure counts
                self.errors.append((time.monotonic(), repr(e)))
        harness.close_client(c)

    def finish(self):
        self.stop.set()
        self.thread.join(harness.scaled(30))


class ClusterKeyspaceChangesTest(LarderTestCase):
    """A reshard and a primary killed while clients read a keyspace and
    PostgreSQL changes its rows: no error reaches a client, no read answers
    a value the row never had, and once settled every key reads as its row."""

    @classmethod
    def setUpClass(cls):
        cls.cluster = RedisCluster(node_timeout_ms=1000)
        cls.addClassCleanup(cls.cluster.cleanup)
        cls.cluster.start()

    def changing_rows(self, history, stop):
        """Rows of items change every 50 ms (each value kept in `history`)."""
        n = 0
        while not stop.is_set():
            n += 1
            i = (n * 37) % 600 + 1
            value = f"v{i}.{n}"
            history[i].add(value.encode())
            PG.psql(f"UPDATE items SET v = '{value}' WHERE id = {i}", dbname=DB)
            time.sleep(0.05)

    def settled(self, larder):
        """Every item reads as its row now, through Larder and on its owner."""
        rows = dict(line.split("|") for line in PG.psql(
            "SELECT id, v FROM items", dbname=DB).split() if "|" in line)
        c = self.client(larder)

        def stale():
            return {i: (v, c.get(f"item:{i}")) for i, v in rows.items()
                    if c.get(f"item:{i}") != v.encode()}
        try:
            harness.wait_until(lambda: not stale(), 15, "every key to read as its row")
        except AssertionError as e:
            raise AssertionError(f"{e}: {list(stale().items())[:5]}") from None
        for i, v in rows.items():
            cached = self.cluster.ask(self.cluster.owner_of(f"item:{i}"), "GET", f"item:{i}")
            self.assertIn(cached, (None, v.encode()), i)

    def run_under_change(self, larder, change):
        PG.psql("UPDATE items SET v = 'v' || id", dbname=DB)
        history = {i: {f"v{i}".encode()} for i in range(1, 601)}
        stop = threading.Event()
        writer = threading.Thread(target=self.changing_rows, args=(history, stop), daemon=True)
        readers = Readers(larder, history).start()
        through = Writer(larder).start()
        writer.start()
        time.sleep(0.5)
        took = change()
        time.sleep(1.0)
        stop.set()
        writer.join(harness.scaled(30))
        readers.finish()
        through.finish()
        # Every acknowledged write-through is in PostgreSQL and reads back.
        self.assertEqual(through.errors[:5], [])
        self.assertGreater(len(through.acked), 10)
        balances = dict(line.split("|") for line in PG.psql(
            "SELECT id, balance FROM accounts WHERE id BETWEEN 1 AND 300", dbname=DB).split())
        c = self.client(larder)
        for i, n in through.acked.items():
            self.assertEqual(balances[str(i)], str(n), i)
            self.assertEqual(c.hget(f"account:{i}", "balance"), str(n).encode(), i)
        readers.writes = len(through.acked)
        return readers, took

    def start_larder(self, **redis_cfg):
        cfg = config()
        cfg["invalidation"] = {"listen": CHANNEL}
        cfg["redis"] = redis_cfg
        # The near cache too: its trackings follow the reshard and the failover.
        cfg["keyspaces"]["items"]["near_cache"] = {"max_ttl": "30s"}
        larder = harness.start_cluster_larder(self, self.cluster, config=cfg)
        install_triggers(larder)
        return larder

    # test_1_, test_2_: unittest runs them in name order, the kill last.
    def test_0_reads_under_changes(self):
        larder = self.start_larder()
        readers, took = self.run_under_change(larder, lambda: time.sleep(3) or 3)
        self.assertEqual(readers.errors[:5], [])
        self.assertEqual(readers.wrong[:5], [])
        self.settled(larder)

    def test_1_reshard_under_reads_and_changes(self):
        cluster = self.cluster
        cluster.wait_healthy()
        larder = self.start_larder()
        source, target = cluster.primaries()[0], cluster.primaries()[1]

        def reshard():
            started = time.monotonic()
            cluster.reshard(source, target, 1500, pipeline=5)
            return time.monotonic() - started

        readers, took = self.run_under_change(larder, reshard)
        info = larder.info_larder()
        print(f"\nkeyspace reshard: 1500 slots in {took:.1f}s, {readers.ops} reads, "
              f"{readers.writes} keys written through, "
              f"{len(readers.errors)} errors, {len(readers.wrong)} wrong, "
              f"moved={info['cluster_moved']} ask={info['cluster_ask']}", file=sys.stderr)
        self.assertEqual(readers.errors[:5], [])
        self.assertEqual(readers.wrong[:5], [])
        self.assertGreater(readers.ops, 100)
        self.settled(larder)

    def test_2_primary_killed_under_reads_and_changes(self):
        cluster = self.cluster
        cluster.wait_healthy()
        # Reads of the dead shard wait for the promotion (retry_timeout).
        larder = self.start_larder(cluster={"retry_timeout": "8s"}, connect_timeout="500ms",
                                   reconnect_max="500ms")
        victim = cluster.owner_of("item:1")
        replicas = cluster.replicas_of(victim)

        def kill():
            killed = time.monotonic()
            cluster.kill(victim)
            cluster.wait_promoted(replicas, timeout=30)
            return time.monotonic() - killed

        readers, took = self.run_under_change(larder, kill)
        print(f"\nkeyspace failover: promoted {took:.1f}s after the kill, {readers.ops} reads, "
              f"{readers.writes} keys written through, "
              f"{len(readers.errors)} errors, {len(readers.wrong)} wrong", file=sys.stderr)
        self.assertEqual(readers.errors[:5], [])
        self.assertEqual(readers.wrong[:5], [])
        self.settled(larder)


if __name__ == "__main__":
    unittest.main()
