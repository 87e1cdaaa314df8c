#!/usr/bin/python3
"""Larder in front of a Redis Cluster that changes under load
(docs/cluster.md, "Failover"): slots resharded with `redis-cli --cluster
reshard` while clients read and write (ASK and MOVED are followed, no error
reaches a client), and a primary killed under read and write load (Larder
follows the promoted replica without a restart; every write acknowledged
with WAIT survives; plain writes lost in the replication gap are counted).

The module starts one cluster (3 primaries, 1 replica each,
cluster-node-timeout 1 s) for both tests: the reshard first (every node up),
then the failover (which kills a node). Each test starts its own Larder and
prints a ledger line that docs/cluster.md quotes.
"""

import random
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
import harness  # noqa: E402
import redis  # noqa: E402
from harness import ClusterLarder, LarderTestCase, RedisCluster  # noqa: E402


class Load:
    """Client threads through Larder: each owns its keys, writes a counter
    value, reads it back, and MGETs keys of several shards; every reply is
    checked, every error kept with its time."""

    def __init__(self, larder, keys, threads=3, wait_replicas=False):
        self.larder = larder
        self.keys = keys
        self.stop = threading.Event()
        self.errors = []  # (monotonic time, key, text)
        self.acked = {}  # key -> last acknowledged value
        self.waited = {}  # key -> last value a replica acknowledged (WAIT)
        self.ops = 0
        self.last_ok = {}  # key -> monotonic time of its last successful write
        self.lock = threading.Lock()
        self.wait_replicas = wait_replicas
        self.threads = [threading.Thread(target=self.run, args=(i, threads), daemon=True)
                        for i in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(harness.scaled(30))

    def run(self, index, count):
        mine = self.keys[index::count]
        c = self.larder.client(socket_timeout=harness.scaled(10))
        n = 0
        try:
            while not self.stop.is_set():
                key = mine[n % len(mine)]
                n += 1
                value = f"{index}:{n}"
                try:
                    if self.wait_replicas and n % 2 == 0:
                        # On one dedicated connection: the write, then WAIT for it.
                        p = c.pipeline(transaction=True)
                        p.set(key, value)
                        p.execute()
                        replicas = c.execute_command("WAIT", 1, 1000)
                        with self.lock:
                            self.acked[key] = value
                            if replicas >= 1:
                                self.waited[key] = value
                    else:
                        c.set(key, value)
                        with self.lock:
                            self.acked[key] = value
                    with self.lock:
                        self.last_ok[key] = time.monotonic()
                    got = c.get(key)
                    if got != value.encode():
                        raise AssertionError(f"read {got!r} after writing {value!r}")
                    sample = random.sample(self.keys, 3)
                    if len(c.mget(sample)) != 3:
                        raise AssertionError("MGET lost keys")
                    self.ops += 3
                except (redis.RedisError, AssertionError, OSError) as e:
                    with self.lock:
                        self.errors.append((time.monotonic(), key, str(e)))
                    time.sleep(0.01)
        finally:
            harness.close_client(c)


class ClusterChangesTest(LarderTestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = RedisCluster(node_timeout_ms=1000)
        cls.addClassCleanup(cls.cluster.cleanup)
        cls.cluster.start()

    # test_1_, test_2_: unittest runs them in name order, the kill last.
    def test_1_reshard_under_load_reaches_no_client(self):
        cluster = self.cluster
        cluster.wait_healthy()
        larder = harness.start_cluster_larder(self, cluster)
        r = self.client(larder)
        primaries = cluster.primaries()
        source, target = primaries[0], primaries[1]
        # Keys of the source (they move) and of the others (they must not stall).
        keys = [f"rs:{i}" for i in range(600)]
        p = r.pipeline(transaction=False)
        for k in keys:
            p.set(k, "init")
        p.execute()
        load = Load(larder, keys).start()
        time.sleep(0.5)
        started = time.monotonic()
        cluster.reshard(source, target, 1500, pipeline=5)
        took = time.monotonic() - started
        time.sleep(0.5)
        load.finish()
        cluster.wait_healthy()
        info = larder.info_larder()
        print(f"\nledger reshard: 1500 slots in {took:.1f}s, {load.ops} ops, "
              f"{len(load.errors)} client errors, moved={info['cluster_moved']} "
              f"ask={info['cluster_ask']} retries={info['cluster_retries']}", file=sys.stderr)
        self.assertEqual(load.errors[:5], [], f"{len(load.errors)} errors reached clients")
        self.assertGreater(load.ops, 100)
        self.assertGreater(int(info["cluster_moved"]) + int(info["cluster_ask"]), 0)
        # Every key has its last acknowledged value, on the node that owns it now.
        for k, v in load.acked.items():
            self.assertEqual(r.get(k), v.encode(), k)
            self.assertEqual(cluster.ask(cluster.owner_of(k), "GET", k), v.encode(), k)
        harness.wait_until(lambda: int(larder.info_larder()["cluster_map_changes"]) >= 2, 10,
                           "every worker to adopt the resharded map")

    def test_2_primary_killed_under_load(self):
        cluster = self.cluster
        cluster.wait_healthy()
        # Requests to the dead shard wait for the promotion rather than fail.
        larder = harness.start_cluster_larder(self, cluster,
                                             config={"redis": {"cluster": {"retry_timeout": "8s"},
                                                     "connect_timeout": "500ms",
                                                     "reconnect_max": "500ms"}})
        r = self.client(larder)
        victim = cluster.owner_of("fo:0")
        replicas = cluster.replicas_of(victim)
        keys = [f"fo:{i}" for i in range(300)]
        victim_keys = {k for k in keys if cluster.owner_of(k) is victim}
        self.assertTrue(victim_keys)
        p = r.pipeline(transaction=False)
        for k in keys:
            p.set(k, "init")
        p.execute()
        load = Load(larder, keys, wait_replicas=True).start()
        # A probe writes one key of the victim's shard every 10 ms: when its
        # writes stop and start again is the failover as a client sees it.
        probe_key = next(f"probe:{i}" for i in range(10000)
                         if cluster.owner_of(f"probe:{i}") is victim)
        probe = {"ok": [], "errors": []}
        probe_stop = threading.Event()

        def run_probe():
            c = larder.client(socket_timeout=harness.scaled(15))
            n = 0
            while not probe_stop.is_set():
                n += 1
                try:
                    c.set(probe_key, n)
                    probe["ok"].append(time.monotonic())
                except (redis.RedisError, OSError) as e:
                    probe["errors"].append((time.monotonic(), str(e)))
                time.sleep(0.01)
            harness.close_client(c)

        # Another starts a transaction on that shard every 20 ms: one started
        # while the shard has no primary waits for the promotion, as a plain
        # write does, rather than failing at once.
        tx_key = next(f"txprobe:{i}" for i in range(10000)
                      if cluster.owner_of(f"txprobe:{i}") is victim)
        tx = {"ok": [], "errors": []}

        def run_tx_probe():
            c = larder.client(socket_timeout=harness.scaled(15))
            n = 0
            while not probe_stop.is_set():
                n += 1
                started = time.monotonic()
                try:
                    p = c.pipeline(transaction=True)
                    p.set(tx_key, n)
                    p.get(tx_key)
                    self.assertEqual(p.execute(), [True, str(n).encode()])
                    tx["ok"].append((started, time.monotonic()))
                except (redis.RedisError, OSError) as e:
                    tx["errors"].append((started, str(e)))
                time.sleep(0.02)
            harness.close_client(c)

        prober = threading.Thread(target=run_probe, daemon=True)
        prober.start()
        tx_prober = threading.Thread(target=run_tx_probe, daemon=True)
        tx_prober.start()
        time.sleep(1.0)
        cluster.kill(victim)  # SIGKILL, and waits until it is gone
        killed = time.monotonic()
        new = cluster.wait_promoted(replicas, timeout=30)
        promoted = time.monotonic()
        harness.wait_until(lambda: any(t > promoted for t in probe["ok"]), 20,
                           "writes to the failed shard to resume")
        resumed_at = next(t for t in probe["ok"] if t > killed)
        time.sleep(1.0)
        probe_stop.set()
        prober.join(harness.scaled(20))
        tx_prober.join(harness.scaled(20))
        load.finish()

        def sequence(value):  # "thread:n" -> n; "init" (never overwritten) -> 0
            parts = value.split(b":") if value is not None else []
            return int(parts[1]) if len(parts) == 2 else 0

        lost, lost_waited = [], []
        for k, v in load.acked.items():
            if r.get(k) != v.encode():
                lost.append(k)
        for k, v in load.waited.items():
            got = r.get(k)
            # A later plain write may have replaced the waited value; only a
            # value older than the waited one counts as lost.
            if got != v.encode() and sequence(got) < sequence(v.encode()):
                lost_waited.append(k)
        # The loss window: how long before the kill the lost writes were acked.
        window_ms = max((killed - load.last_ok[k] for k in lost), default=0) * 1000
        settled = promoted + harness.scaled(1.0)
        errors_after = [e for e in load.errors + probe["errors"] if e[0] > settled]
        print(f"\nledger failover: promotion seen {promoted - killed:.1f}s after the kill, a "
              f"write to the shard answered again {resumed_at - killed:.1f}s after it (probe "
              f"errors: {len(probe['errors'])}); {load.ops} ops, "
              f"{len(load.errors)} client errors during the failover "
              f"({sorted({e[2][:60] for e in load.errors})[:3]}); acked writes "
              f"{len(load.acked)} keys, lost {len(lost)} (acked up to {window_ms:.0f} ms "
              f"before the kill); WAIT-acked {len(load.waited)} keys, "
              f"lost {len(lost_waited)}", file=sys.stderr)
        # Only a transaction on the wire at the kill may fail (its connection
        # broke); every one started later waited for the new primary.
        tx_waited = [t for t in tx["ok"] if killed < t[0] < promoted]
        print(f"ledger failover: transactions started during the outage: "
              f"{[(round(a - killed, 2), round(b - killed, 2)) for a, b in tx_waited]} "
              f"(started, answered; s after the kill) waited and succeeded; "
              f"{len(tx['errors'])} failed ({[(round(t - killed, 2), e[:60]) for t, e in tx['errors']]})",
              file=sys.stderr)
        self.assertEqual([e for e in tx["errors"] if e[0] > killed + 0.2], [],
                         "a transaction started while the shard had no primary failed")
        self.assertGreater(len(tx["ok"]), 0)
        self.assertEqual(lost_waited, [], "a write a replica acknowledged was lost")
        # During the failover a client may see only a request in flight at the
        # kill fail (its error, or, for a transaction whose dedicated connection
        # died, the end of its connection), or Redis Cluster's own CLUSTERDOWN
        # while it votes; never a reply out of step (a MULTI failed while its
        # EXEC ran) or a hang.
        expected = ("Redis backend connection lost", "CLUSTERDOWN")
        at_the_kill = ("Connection reset by peer", "Connection closed by server")

        def odd_error(e):
            if any(x in e[2] for x in expected):
                return False
            return not (any(x in e[2] for x in at_the_kill) and abs(e[0] - killed) < 0.5)

        odd = [e for e in load.errors + [(t, "", m) for t, m in tx["errors"]] if odd_error(e)]
        self.assertEqual(odd, [], "client errors other than a request in flight at the kill")
        self.assertEqual(errors_after, [], "errors after the failover was over")
        self.assertLess(resumed_at - killed, harness.scaled(20))
        self.assertTrue(larder.running())
        self.assertEqual(cluster.owner_of(next(iter(victim_keys))).port, new.port)


if __name__ == "__main__":
    harness.main()
