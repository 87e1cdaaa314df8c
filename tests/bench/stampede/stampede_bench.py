"""What stampede control costs (docs/benchmarks.md#stampede-control).

One redis-server, one PostgreSQL and two Larder instances on them (harness.py):
`base` has the defaults (lease on, no refresh); `refresh` has early_refresh 1
and stale_while_revalidate 1m, so every single-key read also carries PTTL and
the delta's GET. Three measurements, interleaved over ROUNDS rounds, medians:

  hits     redis-benchmark GET over 1000 warm keys: direct Redis, base, refresh
  misses   GETs of keys never read (each one a miss and a SELECT), base with
           the lease (1 script before and 1 after each batch) vs lease 0s
  CPU      Larder's CPU time per hit (/proc/PID/stat)

Run: LARDER_BINARY=build/larder /usr/bin/python3 tests/bench/stampede/stampede_bench.py
Env: ROUNDS (3), REQUESTS (100000), CLIENTS (50).
"""

import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))

import harness  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "3"))
REQUESTS = int(os.environ.get("REQUESTS", "100000"))
CLIENTS = int(os.environ.get("CLIENTS", "50"))
ROWS = 200000
MISSES = 20000  # per round and instance, on keys not read before


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_benchmark(port: int, *command: str, n: int = REQUESTS, r: int = 0) -> float:
    argv = ["redis-benchmark", "-h", harness.HOST, "-p", str(port), "-n", str(n),
            "-c", str(CLIENTS), "-q"]
    if r:
        argv += ["-r", str(r)]
    out = subprocess.run(argv + list(command), capture_output=True, text=True,
                         timeout=600).stdout
    m = re.search(r"([\d.]+) requests per second", out)
    if not m:
        raise AssertionError(f"redis-benchmark said: {out!r}")
    return float(m.group(1))


def keyspace(stampede: dict) -> dict:
    return {"items": {"key": "item:{id}", "table": "public.items", "shape": "string",
                      "columns": ["body"], "ttl": "1h", "write": "behind",
                      "stampede": stampede}}


def main():
    pg = harness.PostgresServer().start()
    pg.create_database("app")
    pg.psql("CREATE TABLE items (id bigint PRIMARY KEY, body text NOT NULL);"
            f"INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, {ROWS}) g;",
            dbname="app")
    server = harness.RedisServer().start()
    common = {"postgres": {"dsn": pg.dsn("app"), "pool_size": 2}}
    larders = {
        "base": harness.Larder(server, config=dict(common, keyspaces=keyspace({"lease": "3s"})),
                               log_level="info").start(),
        "no_lease": harness.Larder(server, config=dict(common, keyspaces=keyspace(
            {"lease": "0s"})), log_level="info").start(),
        "refresh": harness.Larder(server, config=dict(common, keyspaces=keyspace(
            {"early_refresh": 1, "stale_while_revalidate": "1m"})), log_level="info").start(),
    }
    try:
        # Warm keys 1..1000 through each instance (redis-benchmark's
        # __rand_int__ is 12 digits, zero-padded: item:000000000042).
        for name in ("base", "refresh"):
            redis_benchmark(larders[name].port, "GET", "item:__rand_int__", n=20000, r=1000)
        hits = {"direct": [], "base": [], "refresh": []}
        cpu = {"base": [], "refresh": []}
        misses = {"base": [], "no_lease": []}
        zeros = 1
        for _ in range(ROUNDS):
            hits["direct"].append(redis_benchmark(server.port, "GET", "item:__rand_int__",
                                                  r=1000))
            for name in ("base", "refresh"):
                pid = larders[name].pid
                before = cpu_seconds(pid)
                hits[name].append(redis_benchmark(larders[name].port, "GET",
                                                  "item:__rand_int__", r=1000))
                cpu[name].append((cpu_seconds(pid) - before) * 1e6 / REQUESTS)
            for name in ("base", "no_lease"):
                # Keys never read before: a new run of leading zeros names the
                # same rows under new Redis keys (item:0000000000042 is row 42).
                # -r draws ids at random, so about 5% repeat (hits).
                misses[name].append(redis_benchmark(
                    larders[name].port, "GET", "item:" + "0" * zeros + "__rand_int__",
                    n=MISSES, r=ROWS))
                zeros += 1
        print(f"{ROUNDS} rounds, medians; redis-benchmark -c {CLIENTS}")
        med = {k: statistics.median(v) for k, v in hits.items()}
        for name, v in med.items():
            extra = ""
            if name in cpu:
                extra = f"  Larder CPU {statistics.median(cpu[name]):.1f} us/hit"
            print(f"hits   {name:9} GET {v:>9.0f}/s  ({v / med['direct']:.2f}x direct){extra}")
        print(f"refresh/base hits: {med['refresh'] / med['base']:.2f}")
        mm = {k: statistics.median(v) for k, v in misses.items()}
        for name, v in mm.items():
            print(f"misses {name:9} GET {v:>9.0f}/s")
        print(f"lease/no_lease misses: {mm['base'] / mm['no_lease']:.2f}")
    finally:
        for larder in larders.values():
            larder.cleanup()
        server.cleanup()
        pg.cleanup()


if __name__ == "__main__":
    main()
