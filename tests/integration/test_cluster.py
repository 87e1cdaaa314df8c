#!/usr/bin/python3
"""Larder in front of a Redis Cluster (docs/cluster.md): routing by slot,
multi-key commands split and merged, CROSSSLOT in Redis' words, transactions,
pub/sub, blocking calls, SCAN and the fan-outs, and cluster-aware clients.

One cluster (3 primaries, 1 replica each) and one Larder serve the whole
file; every test uses its own keys. Replies are compared with what the nodes
themselves (or a plain redis-server) answer.
"""

import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
import harness  # noqa: E402
import redis  # noqa: E402
from harness import ClusterLarder, LarderTestCase, RedisCluster, RespError  # noqa: E402


def keys_on_every_shard(cluster, prefix, per_shard=2):
    """Keys named prefix:N, at least `per_shard` owned by each primary."""
    owners = {}
    i = 0
    while min((len(v) for v in owners.values()), default=0) < per_shard or len(owners) < 3:
        key = f"{prefix}:{i}"
        owners.setdefault(cluster.owner_of(key).port, []).append(key)
        i += 1
    return [k for ks in owners.values() for k in ks[:per_shard]]


class ClusterTest(LarderTestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = RedisCluster()
        cls.addClassCleanup(cls.cluster.cleanup)
        cls.cluster.start()
        cls.larder = ClusterLarder(cls.cluster)
        cls.addClassCleanup(cls.larder.cleanup)
        cls.addClassCleanup(harness.check_log_clean, cls.larder)
        cls.addClassCleanup(cls.larder.stop_gracefully)
        cls.larder.start()
        # A plain redis-server answers the multi-key commands for comparison.
        cls.single = harness.RedisServer()
        cls.addClassCleanup(cls.single.cleanup)
        cls.single.start()

    def setUp(self):
        self.r = self.client(self.larder)
        self.raw_larder = self.raw(self.larder)

    def node(self, key):
        return self.cluster.owner_of(key)

    # -------------------------------------------------------------- routing
    def test_start_up_names_nodes_and_slots(self):
        log = self.larder.log()
        self.assertIn("redis cluster: 3 primaries, 3 replicas, 16384/16384 slots", log)
        info = self.larder.info_larder()
        self.assertEqual(info.get("backend_redis_status"), "ok")

    def test_keys_land_on_their_slot_owner(self):
        keys = keys_on_every_shard(self.cluster, "route")
        for k in keys:
            self.assertTrue(self.r.set(k, f"v-{k}"))
        for k in keys:
            self.assertEqual(self.r.get(k), f"v-{k}".encode())
            self.assertEqual(self.cluster.ask(self.node(k), "GET", k), f"v-{k}".encode())
        # Hash tags keep keys together, so multi-key commands work in one slot.
        self.assertTrue(self.r.set("{user:7}:a", 1))
        self.assertEqual(self.r.rename("{user:7}:a", "{user:7}:b"), True)
        self.assertEqual(self.r.get("{user:7}:b"), b"1")
        self.assertEqual(self.r.eval("return redis.call('GET', KEYS[1])", 1, "{user:7}:b"), b"1")

    def test_pipelined_replies_keep_the_client_order(self):
        keys = keys_on_every_shard(self.cluster, "order", per_shard=20)
        p = self.r.pipeline(transaction=False)
        for i, k in enumerate(keys):
            p.set(k, i)
            p.get(k)
            p.incr(k)
        out = p.execute()
        self.assertEqual(out, [x for i in range(len(keys)) for x in (True, str(i).encode(), i + 1)])

    # ---------------------------------------------------- multi-key commands
    def both(self, *args):
        """The same command through Larder and on a plain redis-server."""
        mine = self.raw_larder.call(*args)
        with harness.RawClient(self.single.port) as c:
            theirs = c.call(*args)
        return mine, theirs

    def test_multi_key_commands_are_split_and_merged_as_one_redis_answers(self):
        keys = keys_on_every_shard(self.cluster, "mk")
        with harness.RawClient(self.single.port) as c:
            c.call("FLUSHALL")
        mset = [x for k in keys for x in (k, f"v{k}")]
        for args in (["MSET", *mset], ["MGET", *keys, "missing", keys[0]],
                     ["EXISTS", *keys, keys[0], "missing"], ["TOUCH", *keys, "missing"],
                     ["DEL", keys[0], keys[1], keys[0]], ["EXISTS", *keys],
                     ["UNLINK", *keys[2:], "missing"], ["MGET", *keys], ["DEL", *keys]):
            mine, theirs = self.both(*args)
            self.assertEqual(mine, theirs, args)
        for k in keys:
            self.assertEqual(self.cluster.ask(self.node(k), "EXISTS", k), 0)
        # An error from one part is the answer, as Redis has one answer.
        self.r.set(keys[0], "x")
        self.assertEqual(self.raw_larder.call("MGET", keys[0], keys[-1]), [b"x", None])

    def test_crossslot_in_redis_words(self):
        a, b = "{a}x", "{b}x"  # different slots
        node = self.node(a)
        cases = [
            ["MSETNX", a, "1", b, "2"], ["RENAME", a, b], ["SUNION", a, b], ["SINTERSTORE", a, b],
            ["LMOVE", a, b, "LEFT", "RIGHT"], ["EVAL", "return 1", "2", a, b],
            ["ZUNIONSTORE", a, "1", b], ["BLPOP", a, b, "1"], ["PFCOUNT", a, b],
            ["XREAD", "STREAMS", a, b, "0", "0"], ["SMOVE", a, b, "m"],
        ]
        for args in cases:
            mine = self.raw_larder.call(*args)
            theirs = self.cluster.ask(node, *args)
            self.assertEqual(mine, theirs, args)
            self.assertEqual(mine, RespError("CROSSSLOT Keys in request don't hash to the same slot"))

    def test_transaction_across_slots(self):
        # Two slots on one node: Redis queues both and refuses EXEC itself.
        a = "tx:0"
        b = next(f"tx:{i}" for i in range(1, 10000)
                 if self.node(f"tx:{i}").port == self.node(a).port)
        node = self.node(a)
        with harness.RawClient(node.port) as direct:
            theirs = [direct.call(*c) for c in (["MULTI"], ["SET", a, 1], ["SET", b, 2], ["EXEC"])]
        mine = [self.raw_larder.call(*c) for c in (["MULTI"], ["SET", a, 1], ["SET", b, 2],
                                                   ["EXEC"])]
        self.assertEqual(mine, theirs)
        self.assertEqual(mine[-1], RespError("CROSSSLOT Keys in request don't hash to the same slot"))
        # Keys on two nodes: the second is refused with CROSSSLOT (a cluster
        # node answers MOVED there) and EXEC discards the transaction.
        c = next(f"tx:{i}" for i in range(1, 10000)
                 if self.node(f"tx:{i}").port != node.port)
        mine = [self.raw_larder.call(*c2) for c2 in (["MULTI"], ["SET", a, 1], ["SET", c, 2],
                                                    ["EXEC"])]
        self.assertEqual(mine[:3], ["OK", "QUEUED",
                                    RespError("CROSSSLOT Keys in request don't hash to the same "
                                              "slot")])
        self.assertEqual(str(mine[3]).split()[0], "EXECABORT")
        self.assertIsNone(self.r.get(c))

    # ------------------------------------------------------------ transactions
    def test_transactions_pinned_to_the_first_keys_shard(self):
        keys = keys_on_every_shard(self.cluster, "txn", per_shard=1)
        for k in keys:
            tag = "{" + k + "}"
            p = self.r.pipeline(transaction=True)
            p.set(tag + "a", 1).incr(tag + "a").lpush(tag + "l", "x").get(tag + "a")
            self.assertEqual(p.execute(), [True, 2, 1, b"2"])
        # MULTI before any key: the first key decides the node; keyless
        # commands queued before it are replayed there.
        for k in keys:
            raw = self.raw(self.larder)
            self.assertEqual(raw.call("MULTI"), "OK")
            self.assertEqual(raw.call("PING"), "QUEUED")
            self.assertEqual(raw.call("SET", k, "m"), "QUEUED")
            self.assertEqual(raw.call("GET", k), "QUEUED")
            self.assertEqual(raw.call("EXEC"), ["PONG", "OK", b"m"])
        raw = self.raw(self.larder)
        self.assertEqual(raw.call("MULTI"), "OK")
        self.assertEqual(raw.call("PING"), "QUEUED")
        self.assertEqual(raw.call("EXEC"), ["PONG"])
        self.assertEqual(raw.call("DISCARD"), RespError("ERR DISCARD without MULTI"))

    def test_watch(self):
        k = "{w}key"
        self.r.set(k, 1)
        other = self.client(self.larder)
        with self.r.pipeline() as tx:
            tx.watch(k)
            self.assertEqual(tx.get(k), b"1")
            # Keys of other shards outside the transaction still answer.
            for other_key in keys_on_every_shard(self.cluster, "wo", per_shard=1):
                tx.set(other_key, 5)
                self.assertEqual(tx.get(other_key), b"5")
            other.set(k, 2)
            tx.multi()
            tx.set(k, 3)
            self.assertRaises(redis.WatchError, tx.execute)
        self.assertEqual(self.r.get(k), b"2")
        with self.r.pipeline() as tx:
            tx.watch(k)
            tx.multi()
            tx.set(k, 4)
            self.assertEqual(tx.execute(), [True])
        self.assertEqual(self.r.get(k), b"4")

    def test_transactions_reuse_pooled_connections(self):
        before = self.connected_clients()
        for i in range(30):
            p = self.r.pipeline(transaction=True)
            p.incr(f"{{pool}}:{i % 3}")
            p.execute()
        # Dedicated connections come from per-node pools, not one per MULTI.
        self.assertLessEqual(self.connected_clients() - before, 4)

    def connected_clients(self):
        return sum(int(self.cluster.info(n, "clients")["connected_clients"])
                   for n in self.cluster.running_nodes())

    # ---------------------------------------------------------------- pub/sub
    def test_pubsub_and_shard_channels(self):
        sub = self.client(self.larder)
        ps = sub.pubsub()
        ps.subscribe("news")
        raw = self.raw(self.larder)
        self.assertEqual(raw.call("SSUBSCRIBE", "{s}events"), [b"ssubscribe", b"{s}events", 1])
        self.assertEqual(ps.get_message(timeout=harness.scaled(5))["type"], "subscribe")
        # PUBLISH on any node reaches every node's subscribers.
        for n in self.cluster.nodes[:3]:
            self.cluster.ask(n, "PUBLISH", "news", f"from-{n.port}")
            msg = None
            deadline = time.monotonic() + harness.scaled(5)
            while msg is None and time.monotonic() < deadline:
                msg = ps.get_message(timeout=0.2)
                if msg and msg["type"] != "message":
                    msg = None
            self.assertEqual(msg["data"], f"from-{n.port}".encode())
        self.assertEqual(self.r.execute_command("SPUBLISH", "{s}events", "hello"), 1)
        self.assertEqual(raw.read_reply(), [b"smessage", b"{s}events", b"hello"])
        # Shard channels of two slots at once: Redis' refusal.
        self.assertEqual(raw.call("SSUBSCRIBE", "{a}1", "{b}1"),
                         RespError("CROSSSLOT Keys in request don't hash to the same slot"))
        ps.close()

    # -------------------------------------------------------- blocking calls
    def test_blocking_calls(self):
        k = "blk:list"
        result = {}

        def pop():
            c = self.larder.client()
            try:
                result["v"] = c.blpop([k], timeout=10)
            finally:
                harness.close_client(c)

        t = threading.Thread(target=pop)
        t.start()
        time.sleep(0.3)
        # A key of another shard meanwhile: not held back by the blocked call.
        other = next(f"blk:{i}" for i in range(100) if self.node(f"blk:{i}") != self.node(k))
        self.assertTrue(self.r.set(other, 1))
        self.r.rpush(k, "x")
        t.join(harness.scaled(10))
        self.assertEqual(result.get("v"), (k.encode(), b"x"))
        self.assertIsNone(self.r.blpop(["{blk}empty"], timeout=1))

    def test_client_unblock_reaches_the_node_of_the_blocked_client(self):
        # The blocked client's dedicated connection is on its key's node, under
        # a Redis id of that node: CLIENT UNBLOCK goes there, out of band, and
        # answers as the node itself does for its own client.
        key = "unblock:list"
        node = self.cluster.owner_of(key)
        seen = {}
        for where, port in (("larder", self.larder.port), ("node", node.port)):
            with harness.RawClient(port) as blocked, harness.RawClient(port) as admin:
                cid = blocked.call("CLIENT", "ID")
                for mode in ("TIMEOUT", "ERROR"):
                    before = int(self.cluster.info(node, "clients")["blocked_clients"])
                    blocked.send_command("BLPOP", key, "0")
                    harness.wait_until(
                        lambda: int(self.cluster.info(node, "clients")["blocked_clients"]) > before,
                        10, f"BLPOP to block on {node.port}")
                    seen[where, mode] = (admin.call("CLIENT", "UNBLOCK", cid, mode),
                                         blocked.read_reply())
                seen[where, "none"] = (admin.call("CLIENT", "UNBLOCK", cid), None)
                seen[where, "unknown"] = (admin.call("CLIENT", "UNBLOCK", "987654321"), None)
        for case in ("TIMEOUT", "ERROR", "none", "unknown"):
            self.assertEqual(seen["larder", case], seen["node", case], case)
        self.assertEqual(seen["larder", "TIMEOUT"], (1, None))
        self.assertEqual(seen["larder", "ERROR"][0], 1)

    def test_blocking_call_after_a_transaction_on_another_node(self):
        # After EXEC the client still holds its dedicated connection; a
        # blocking call on another node's key must move it, not go the
        # shared way (where it would block every client of that node).
        keys = keys_on_every_shard(self.cluster, "blk2", per_shard=1)
        raw = self.raw(self.larder)
        for first, second in zip(keys, keys[1:] + keys[:1]):
            self.assertEqual(raw.call("MULTI"), "OK")
            self.assertEqual(raw.call("SET", first, 1), "QUEUED")
            self.assertEqual(raw.call("EXEC"), ["OK"])
            self.r.rpush(second + ":l", "v")
            self.assertEqual(raw.call("BLPOP", second + ":l", 1),
                             [(second + ":l").encode(), b"v"])
            raw.send_command("BLPOP", second + ":empty", 1)
            started = time.monotonic()
            self.assertEqual(self.r.get(first), b"1")  # not held back by the blocked call
            self.assertFast(started, 0.5, "a GET while another client blocks")
            self.assertIsNone(raw.read_reply())

    # ------------------------------------------------- SCAN and the fan-outs
    def test_scan_keys_dbsize_info_flushall(self):
        self.r.flushall()
        keys = {f"scan:{i}" for i in range(300)}
        p = self.r.pipeline(transaction=False)
        for k in keys:
            p.set(k, 1)
        p.execute()
        self.r.expire("scan:1", 1000)
        seen = []
        cursor = 0
        for _ in range(1000):
            cursor, batch = self.r.scan(cursor, count=50)
            seen.extend(batch)
            if cursor == 0:
                break
        self.assertEqual({k.decode() for k in seen}, keys)
        self.assertEqual(set(self.r.scan_iter(match="scan:1*", count=20)),
                         {k.encode() for k in keys if k.startswith("scan:1")})
        self.assertEqual({k.decode() for k in self.r.keys("scan:*")}, keys)
        self.assertEqual(self.r.dbsize(), 300)
        per_node = sum(self.cluster.ask(n, "DBSIZE") for n in self.cluster.primaries())
        self.assertEqual(per_node, 300)
        self.assertEqual(self.r.info("keyspace")["db0"]["keys"], 300)
        self.assertEqual(self.r.info("keyspace")["db0"]["expires"], 1)
        self.assertEqual(self.raw_larder.call("SCAN", "x"), RespError("ERR invalid cursor"))
        self.assertTrue(self.r.flushall())
        self.assertEqual(self.r.dbsize(), 0)
        for n in self.cluster.primaries():
            self.assertEqual(self.cluster.ask(n, "DBSIZE"), 0)

    def test_scripts_load_everywhere(self):
        sha = self.r.script_load("return redis.call('GET', KEYS[1])")
        for k in keys_on_every_shard(self.cluster, "sha", per_shard=1):
            self.r.set(k, k)
            self.assertEqual(self.r.evalsha(sha, 1, k), k.encode())
        self.assertEqual(self.r.script_exists(sha, "0" * 40), [True, False])

    # ---------------------------------------------------------- busy scripts
    def test_script_and_function_kill_reach_the_busy_node(self):
        # The busy node's shared connection is stuck behind the script, and
        # only that node can kill it: SCRIPT KILL and FUNCTION KILL go to
        # every primary on connections of their own and succeed when one
        # node killed something; with nothing running, Redis' NOTBUSY.
        lib = ("#!lua name=clusterbusy\n"
               "redis.register_function('spin', function(keys) while true do end end)")
        primaries = self.cluster.primaries()
        with harness.RawClient(self.larder.port) as admin:
            self.assertEqual(admin.call("CONFIG", "SET", "busy-reply-threshold", "50"), "OK")
            self.addCleanup(lambda: [self.cluster.ask(n, "CONFIG", "SET", "busy-reply-threshold",
                                                      "5000") for n in primaries])
            # Should the test fail with a script running, the next tests must not meet it.
            self.addCleanup(lambda: [self.cluster.ask(n, kill, "KILL") for n in primaries
                                     for kill in ("SCRIPT", "FUNCTION")])
            self.assertEqual(admin.call("FUNCTION", "LOAD", "REPLACE", lib), b"clusterbusy")
            for kill in (("SCRIPT", "KILL"), ("FUNCTION", "KILL")):
                with harness.RawClient(primaries[0].port) as direct:
                    self.assertEqual(admin.call(*kill), direct.call(*kill))
            keys = keys_on_every_shard(self.cluster, "busy", per_shard=2)
            owner = {k: self.cluster.owner_of(k) for k in keys}  # asked before any is busy
            runs = [(("EVAL", "while true do end", "1"), "SCRIPT"), (("FCALL", "spin", "1"), "FUNCTION"),
                    (("EVAL", "while true do end", "1"), "SCRIPT")]
            for node, (run, kill) in zip(self.cluster.primaries(), runs):
                key, neighbour = [k for k in keys if owner[k] is node][:2]
                elsewhere = next(k for k in keys if owner[k] is not node)
                with harness.RawClient(self.larder.port) as runner:
                    runner.send_command(*run, key)
                    harness.wait_until(
                        lambda: "BUSY" in str(self.cluster.ask(node, "GET", neighbour, timeout=5)),
                        10, f"{run[0]} to keep {node.port} busy")
                    # Other clients: the node's own -BUSY for its keys, at once;
                    # the other nodes answer as usual.
                    with harness.RawClient(self.larder.port) as other:
                        self.assertEqual(other.call("GET", neighbour),
                                         self.cluster.ask(node, "GET", neighbour, timeout=5))
                        self.assertIsNone(other.call("GET", elsewhere))
                    started = time.monotonic()
                    self.assertEqual(admin.call(kill, "KILL"), "OK", f"{kill} KILL of {key}")
                    self.assertIn("killed by user", str(runner.read_reply()))
                    self.assertLess(time.monotonic() - started, harness.scaled(5))
                self.assertEqual(admin.call("PING"), "PONG")
            self.assertEqual(admin.call("FUNCTION", "DELETE", "clusterbusy"), "OK")

    # --------------------------------------------------------- replica reads
    def test_reads_from_replicas_when_asked(self):
        # A replica that has not synced yet (health "loading") is not read
        # from; the map is re-read every 200 ms until it has.
        larder = harness.start_cluster_larder(
            self, self.cluster, config={"redis": {"cluster": {"read_from_replicas": True,
                                                              "refresh_interval": "200ms"}}})
        r = self.client(larder)
        k = "replica:key"
        primary = self.node(k)
        replica = self.cluster.replicas_of(primary)[0]
        self.assertTrue(r.set(k, "v"))
        harness.wait_until(lambda: self.cluster.ask(replica, "READONLY") == "OK" and
                           self._replica_has(replica, k), 10, "the replica to have the key")

        def gets(node):
            stats = self.cluster.info(node, "commandstats").get("cmdstat_get", "calls=0")
            return int(stats.split(",")[0].split("=")[1])
        direct = gets(replica)
        harness.wait_until(lambda: r.get(k) == b"v" and gets(replica) > direct, 15,
                           "a GET through Larder to reach the replica")
        before_replica, before_primary = gets(replica), gets(primary)
        for _ in range(20):
            self.assertEqual(r.get(k), b"v")
        self.assertGreaterEqual(gets(replica) - before_replica, 20)
        self.assertEqual(gets(primary) - before_primary, 0)
        # Writes and reads in a transaction stay on the primary.
        self.assertEqual(r.incr("replica:{key}n"), 1)
        p = r.pipeline(transaction=True)
        p.get(k)
        self.assertEqual(p.execute(), [b"v"])

    def _replica_has(self, replica, key):
        with harness.RawClient(replica.port) as c:
            c.call("READONLY")
            return c.call("GET", key) == b"v"

    # ------------------------------------------------- cluster-aware clients
    def test_cluster_commands_answer_as_one_node(self):
        port = self.larder.port
        slots = self.raw_larder.call("CLUSTER", "SLOTS")
        self.assertEqual(len(slots), 1)
        self.assertEqual(slots[0][:2], [0, 16383])
        self.assertEqual(slots[0][2][:2], [b"127.0.0.1", port])
        myid = self.raw_larder.call("CLUSTER", "MYID")
        self.assertEqual(slots[0][2][2], myid)
        nodes = self.raw_larder.call("CLUSTER", "NODES").decode()
        self.assertEqual(nodes, f"{myid.decode()} 127.0.0.1:{port}@0 myself,master - 0 0 1 "
                                f"connected 0-16383\n")
        self.assertIn(b"cluster_state:ok", self.raw_larder.call("CLUSTER", "INFO"))
        shards = self.raw_larder.call("CLUSTER", "SHARDS")
        self.assertEqual(shards[0][:2], [b"slots", [0, 16383]])
        for key in ("foo", "{user1000}.following", "a"):
            self.assertEqual(self.raw_larder.call("CLUSTER", "KEYSLOT", key),
                             self.cluster.ask(self.cluster.nodes[0], "CLUSTER", "KEYSLOT", key))
        self.assertEqual(self.raw_larder.call("READONLY"), "OK")
        self.assertEqual(self.raw_larder.call("ASKING"), "OK")
        reply = self.raw_larder.call("CLUSTER", "FAILOVER")
        self.assertTrue(str(reply).startswith("ERR Larder: CLUSTER FAILOVER is not supported"), reply)
        slot = self.raw_larder.call("CLUSTER", "KEYSLOT", "ck")
        self.r.set("ck", 1)
        self.assertEqual(self.raw_larder.call("CLUSTER", "COUNTKEYSINSLOT", slot), 1)
        self.assertEqual(self.raw_larder.call("CLUSTER", "GETKEYSINSLOT", slot, 10), [b"ck"])
        self.assertEqual(self.raw_larder.call("CLIENT", "TRACKING", "on"),
                         RespError("ERR Larder: CLIENT TRACKING is not supported with a Redis "
                                   "Cluster backend"))
        self.assertEqual(self.raw_larder.call("PING"), "PONG")

    def test_redis_py_cluster_client_through_larder(self):
        from redis.cluster import RedisCluster as PyRedisCluster
        rc = PyRedisCluster(host=harness.HOST, port=self.larder.port,
                            socket_timeout=harness.scaled(10))
        self.addCleanup(rc.close)
        keys = keys_on_every_shard(self.cluster, "rpc")
        for k in keys:
            self.assertTrue(rc.set(k, k))
        self.assertEqual(rc.mget_nonatomic(keys), [k.encode() for k in keys])
        self.assertEqual(rc.get(keys[0]), keys[0].encode())
        self.assertEqual(len(rc.get_nodes()), 1)  # Larder is the one node
        p = rc.pipeline()
        for k in keys:
            p.incr(k + ":n")
        self.assertEqual(p.execute(), [1] * len(keys))

    def test_redis_cli_through_larder(self):
        def cli(*args, cluster=False):
            argv = [harness.REDIS_CLI, "-p", str(self.larder.port)] + (["-c"] if cluster else [])
            res = subprocess.run(argv + list(args), capture_output=True, text=True,
                                 timeout=harness.scaled(10))
            return res.stdout.strip()

        keys = keys_on_every_shard(self.cluster, "cli", per_shard=1)
        for k in keys:
            self.assertEqual(cli("SET", k, "v"), "OK")
            self.assertEqual(cli("GET", k, cluster=True), "v")
        self.assertEqual(cli("MGET", *keys).splitlines(), ["v"] * len(keys))
        self.assertEqual(cli("DBSIZE", cluster=True), cli("DBSIZE"))
        self.assertIn("cluster_state:ok", cli("CLUSTER", "INFO"))


if __name__ == "__main__":
    harness.main()
