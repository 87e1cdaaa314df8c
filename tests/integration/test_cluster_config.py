#!/usr/bin/python3
"""redis.cluster in the config (docs/configuration.md, docs/cluster.md):
seeds exclusive with redis.address, the errors that say so, --check-config
naming the nodes and slots it found, and a cluster that cannot be reached at
start-up."""

import os
import subprocess
import sys

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
import harness  # noqa: E402
from harness import LarderTestCase, RedisCluster  # noqa: E402


class ClusterConfigTest(LarderTestCase):
    def setUp(self):
        self.dir = harness.make_tmpdir("cluster-config")
        self.addCleanup(harness.remove_tmpdir, self.dir)

    def check(self, text):
        path = os.path.join(self.dir, "larder.yaml")
        with open(path, "w") as f:
            f.write(text)
        res = subprocess.run([harness.LARDER_BINARY, "--config", path, "--check-config"],
                             capture_output=True, timeout=harness.scaled(30),
                             stdin=subprocess.DEVNULL)
        return path, res.returncode, res.stdout.decode(), res.stderr.decode()

    def assertConfigError(self, text, message):
        path, code, out, err = self.check(text)
        self.assertEqual(code, 2, f"stdout={out!r} stderr={err!r}")
        self.assertEqual(err.strip(), f"larder: {path}: {message}")

    def test_seeds_and_address_are_exclusive(self):
        self.assertConfigError(
            "redis:\n  address: 127.0.0.1:6379\n  cluster:\n    seeds: [127.0.0.1:7000]\n",
            "redis.address: and redis.cluster.seeds are exclusive: give one Redis or a "
            "cluster's seeds")

    def test_bad_cluster_settings(self):
        self.assertConfigError("redis:\n  cluster:\n    read_from_replicas: false\n",
                               "redis.cluster.seeds: is required")
        self.assertConfigError("redis:\n  cluster:\n    seeds: []\n",
                               "redis.cluster.seeds: must list at least one node")
        self.assertConfigError("redis:\n  cluster:\n    seeds: [127.0.0.1:7000, 127.0.0.1:7000]\n",
                               "redis.cluster.seeds[1]: duplicate seed 127.0.0.1:7000")
        self.assertConfigError("redis:\n  cluster:\n    seeds: [127.0.0.1]\n",
                               "redis.cluster.seeds[0]: missing port (expected host:port such as "
                               "127.0.0.1:6380 or [::1]:6380)")
        self.assertConfigError("redis:\n  cluster:\n    seeds: [127.0.0.1:7000]\n    sedes: 1\n",
                               "redis.cluster.sedes: unknown key (did you mean 'seeds'?)")
        self.assertConfigError("redis:\n  db: 2\n  cluster:\n    seeds: [127.0.0.1:7000]\n",
                               "redis.db: must be 0 with a Redis Cluster (it has db 0 only)")
        self.assertConfigError(
            "redis:\n  cluster:\n    seeds: [127.0.0.1:7000]\n    redirect_limit: 0\n",
            "redis.cluster.redirect_limit: must be between 1 and 100")

    def test_check_config_names_nodes_and_slots(self):
        cluster = RedisCluster()
        self.addCleanup(cluster.cleanup)
        cluster.start()
        # One seed is enough: the nodes it names are asked too, and two agree.
        path, code, out, err = self.check(
            f"redis:\n  cluster:\n    seeds: [{cluster.seeds[0]}]\n    retry_timeout: 1s\n")
        self.assertEqual(code, 0, err)
        self.assertIn(f"redis: cluster seeds={cluster.seeds[0]} read_from_replicas=false "
                      "redirect_limit=5 retry_timeout=1s refresh_interval=5s db=0", out)
        line = next(x for x in out.splitlines() if x.startswith("cluster: "))
        self.assertTrue(line.startswith("cluster: 3 primaries, 3 replicas, 16384/16384 slots: "),
                        line)
        for port in [n.port for n in cluster.primaries()]:
            self.assertIn(f"127.0.0.1:{port} ", line)

    def test_unreachable_cluster(self):
        port = harness.free_port()
        path, code, out, err = self.check(
            f"redis:\n  connect_timeout: 300ms\n  cluster:\n    seeds: [127.0.0.1:{port}]\n")
        self.assertEqual(code, 0, err)  # the config is valid; the cluster is not there
        self.assertIn(f"cluster: no map agreed: 127.0.0.1:{port}: ERR Larder: Redis backend "
                      "unavailable: connect to", out)
        # Larder itself starts, says why it has no map, and answers meanwhile.
        larder = harness.start_cluster_larder(
            self, [f"127.0.0.1:{port}"], wait_backend=False,
            config={"redis": {"connect_timeout": "300ms", "cluster": {"retry_timeout": "200ms"}}})
        self.assertIn("redis cluster: no map agreed at start-up", larder.log())
        r = self.client(larder)
        self.assertEqual(r.ping(), True)
        with self.assertRaises(harness.redis.ResponseError) as e:
            r.get("k")
        self.assertIn("CLUSTERDOWN Hash slot not served", str(e.exception))
        self.assertEqual(larder.info_larder()["backend_redis_status"], "down")


if __name__ == "__main__":
    harness.main()
