#!/usr/bin/python3
"""Read-only keyspace hits through Larder in front of a Redis Cluster, against
plain keys through the same Larder and `redis-benchmark --cluster` straight
to the cluster (docs/cluster.md, "Keyspaces on a cluster").

    /usr/bin/python3 tests/bench/cluster/cluster_keyspace_bench.py

Starts a private PostgreSQL (table items: 10,000 rows keyed by 12-digit ids,
the keys redis-benchmark's -r 10000 makes of __rand_int__), a private
cluster on loopback (tests/integration/harness.py's RedisCluster) with Larder
in front of it (redis.cluster.seeds, keyspace items: `item:{id}`, string,
write: none), and one redis-server with the same Larder build and keyspace in
front of it. Every item:<id> key is read once through each Larder first, so
the GETs measured are hits. Then, for a few rounds in alternating order, GET
at pipeline 1 and 16, keys drawn from 10,000:

  (a) `GET item:__rand_int__` through Larder on the cluster (mapped hits);
  (b) `GET plain:__rand_int__` through the same Larder (unmapped keys, set
      beforehand: the pass-through baseline);
  (c) `redis-benchmark --cluster` straight to the cluster. It sends each key
      to the node it picked, so its keys carry redis-benchmark's per-node
      hash tag: `GET item:{tag}:__rand_int__`, every key set beforehand;
  (d) `GET item:__rand_int__` through Larder on one redis-server (warmed);
  (e) the same straight to that redis-server: with (d), the control that
      shows what the proxy hop costs on this machine.

Prints Markdown tables: medians, and the median over rounds of each round's
ratios a/c, b/c and d/e; Larder's CPU time per request; and the GETs that
missed (Larder's INFO keyspace_items, Redis's keyspace_misses) while measuring.

Environment (defaults in brackets): LARDER_BIN [build/larder], ROUNDS [3],
N_P1 [50000], N_P16 [300000], CLIENTS [50], THREADS [2] (Larder's workers),
REPLICAS [0] (per primary), NICE [0].
Everything listens on 127.0.0.1; every process started here is stopped.
"""

import os
import statistics
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The settings (LARDER_BIN, ROUNDS, N_P1 ...), redis-benchmark and the CPU
# clock are cluster_bench.py's.
from cluster_bench import (CLIENTS, LARDER_BIN, N, REPLICAS, ROUNDS, THREADS,  # noqa: E402
                           cpu_seconds, harness, stop_everything)
from cluster_bench import bench as run_bench  # noqa: E402

KEYS = 10000  # -r: __rand_int__ is 000000000000 .. 000000009999
VALUE = "x" * 16
DB = "bench"
SCHEMA = ("CREATE TABLE items (id text PRIMARY KEY, v text NOT NULL);"
          f"INSERT INTO items SELECT lpad(g::text, 12, '0'), repeat('x', {len(VALUE)}) "
          f"FROM generate_series(0, {KEYS - 1}) g;")
TARGETS = {  # target -> (redis-benchmark command, --cluster)
    "mapped": (["GET", "item:__rand_int__"], False),
    "plain": (["GET", "plain:__rand_int__"], False),
    "direct": (["GET", "item:{tag}:__rand_int__"], True),
    "single-mapped": (["GET", "item:__rand_int__"], False),
    "single": (["GET", "item:__rand_int__"], False),
}


def bench(port, args, n, cluster=False, pipeline=1):
    """requests per second of the one command in `args`."""
    rows = run_bench(port, args, n, cluster=cluster, pipeline=pipeline, options=["-r", str(KEYS)])
    return next(iter(rows.values()))


def keyspace_config(pg):
    return {"postgres": {"dsn": pg.dsn(DB)},
            "keyspaces": {"items": {"key": "item:{id}", "table": "public.items",
                                    "shape": "string", "columns": ["v"], "write": "none",
                                    "ttl": "1h"}}}


def items(larder):
    """INFO larder's keyspace_items: hits, misses, queries, ..."""
    return larder.info_larder()["keyspace_items"]


def redis_misses(nodes):
    """keyspace_misses summed over redis-servers."""
    total = 0
    for n in nodes:
        c = n.client()
        try:
            total += c.info("stats")["keyspace_misses"]
        finally:
            harness.close_client(c)
    return total


def in_batches(client, commands, size=1000):
    """Runs (name, *args) commands through a pipeline, `size` at a time."""
    replies = []
    for i in range(0, len(commands), size):
        pipe = client.pipeline(transaction=False)
        for cmd in commands[i:i + size]:
            pipe.execute_command(*cmd)
        replies.extend(pipe.execute())
    return replies


def warm(larder):
    """Reads every item:<id> once through `larder`; returns its keyspace
    counters afterwards."""
    r = larder.client()
    try:
        if r.get("item:000000000042") != VALUE.encode():
            raise RuntimeError(f"GET item:000000000042 through Larder on port {larder.port} "
                               "did not return the row's value")
        replies = in_batches(r, [("GET", f"item:{i:012d}") for i in range(KEYS)])
        wrong = sum(v != VALUE.encode() for v in replies)
        if wrong:
            raise RuntimeError(f"{wrong} of {KEYS} item keys read wrong through Larder")
    finally:
        harness.close_client(r)
    return items(larder)


def main():
    pg = harness.PostgresServer()
    cluster = harness.RedisCluster(replicas=REPLICAS)
    single = harness.RedisServer()
    larder = plain = None
    try:
        pg.start()
        pg.create_database(DB)
        pg.psql(SCHEMA, dbname=DB)
        cluster.start()
        larder = harness.ClusterLarder(cluster, config=keyspace_config(pg), binary=LARDER_BIN,
                                       threads=THREADS, log_level="warn")
        larder.start()
        # The control: the same Larder build and keyspace in front of one redis-server.
        single.start()
        plain = harness.Larder(single, config=keyspace_config(pg), binary=LARDER_BIN,
                               threads=THREADS, log_level="warn")
        plain.start()
        warmed = {"mapped": warm(larder), "single-mapped": warm(plain)}
        r = larder.client()
        in_batches(r, [("SET", f"plain:{i:012d}", VALUE) for i in range(KEYS)])
        harness.close_client(r)
        # redis-benchmark --cluster replaces {tag} with a tag of a slot of the
        # node each client talks to; run it once to learn the tags, then set
        # every key of every tag.
        node = cluster.nodes[0].port
        bench(node, ["SET", "item:{tag}:__rand_int__", VALUE], 20000, cluster=True, pipeline=16)
        primaries = cluster.primaries()
        tags = set()
        for n in primaries:
            c = cluster.node_client(n)
            # A 2-character tag comes padded with "}": item:{8M}}:000000000042.
            tags |= {k[:-13] for k in c.scan_iter(match="item:{*", count=1000)}
            harness.close_client(c)
        direct = cluster.cluster_client()
        try:
            for tag in sorted(tags):
                prefix = tag.decode()
                pipe = direct.pipeline()
                for i in range(KEYS):
                    pipe.set(f"{prefix}:{i:012d}", VALUE)
                pipe.execute()
        finally:
            harness.close_client(direct)
        results = {}  # (target, P) -> [ops/s per round]
        cpu = {}  # (target, P) -> [CPU microseconds of Larder per request]
        misses = {}  # target -> [Larder keyspace misses, Redis keyspace_misses]
        ports = {"mapped": larder.port, "plain": larder.port, "direct": node,
                 "single-mapped": plain.port, "single": single.port}
        pids = {"mapped": larder.pid, "plain": larder.pid, "single-mapped": plain.pid}
        owners = {"mapped": larder, "plain": larder, "single-mapped": plain}
        backends = {"mapped": primaries, "plain": primaries, "direct": primaries,
                    "single-mapped": [single], "single": [single]}
        before_items = {"mapped": items(larder), "single-mapped": items(plain)}
        for rnd in range(ROUNDS):
            order = list(ports) if rnd % 2 == 0 else list(reversed(ports))
            for p in (1, 16):
                for target in order:
                    args, to_cluster = TARGETS[target]
                    before = cpu_seconds(pids[target]) if target in pids else 0
                    ks = items(owners[target])["misses"] if target in owners else 0
                    rm = redis_misses(backends[target])
                    value = bench(ports[target], args, N[p], cluster=to_cluster, pipeline=p)
                    if target in pids:
                        used = cpu_seconds(pids[target]) - before
                        cpu.setdefault((target, p), []).append(used * 1e6 / N[p])
                    m = misses.setdefault(target, [0, 0])
                    if target in owners:
                        m[0] += items(owners[target])["misses"] - ks
                    m[1] += redis_misses(backends[target]) - rm
                    results.setdefault((target, p), []).append(value)
            print(f"round {rnd + 1}/{ROUNDS} done", file=sys.stderr)
        after_items = {"mapped": items(larder), "single-mapped": items(plain)}

        def med(target, p):
            return statistics.median(results[(target, p)])

        def ratio(a, b, p):
            # The median of each round's ratio: contenders of one round ran
            # back to back, under the same load.
            return statistics.median(x / y for x, y in zip(results[(a, p)], results[(b, p)]))

        print(f"\nLarder {THREADS} worker thread(s), cluster of 3 primaries x {REPLICAS} "
              f"replica(s), redis-benchmark -c {CLIENTS} -r {KEYS}, GET of a {len(VALUE)}-byte "
              f"string; medians of {ROUNDS} rounds (P1 -n {N[1]}, P16 -n {N[16]})\n")
        print("| test | (a) Larder, keyspace hits `item:*` (ops/s) | (b) Larder, plain keys "
              "(ops/s) | (c) straight to the cluster (ops/s) | a/c | b/c |")
        print("|---|---:|---:|---:|---:|---:|")
        for p in (1, 16):
            print(f"| GET P{p} | {med('mapped', p):,.0f} | {med('plain', p):,.0f} | "
                  f"{med('direct', p):,.0f} | {ratio('mapped', 'direct', p):.2f} | "
                  f"{ratio('plain', 'direct', p):.2f} |")
        print(f"\n(c) is `redis-benchmark --cluster GET item:{{tag}}:__rand_int__`: one hash tag "
              f"per primary ({len(tags)} tags), every key set.\n")
        print("The control, the same build and keyspace in front of one redis-server (no "
              "cluster):\n")
        print("| test | (d) Larder -> one Redis, keyspace hits (ops/s) | (e) one Redis (ops/s) "
              "| d/e |")
        print("|---|---:|---:|---:|")
        for p in (1, 16):
            print(f"| GET P{p} | {med('single-mapped', p):,.0f} | {med('single', p):,.0f} | "
                  f"{ratio('single-mapped', 'single', p):.2f} |")
        print("\nLarder's CPU per request (user + system microseconds):\n")
        print("| P | (a) cluster, keyspace hits | (b) cluster, plain keys | "
              "(d) one Redis, keyspace hits |")
        print("|---|---:|---:|---:|")
        for p in (1, 16):
            print(f"| {p} | {statistics.median(cpu[('mapped', p)]):.1f} | "
                  f"{statistics.median(cpu[('plain', p)]):.1f} | "
                  f"{statistics.median(cpu[('single-mapped', p)]):.1f} |")
        print("\nMisses while measuring (all rounds; Larder's INFO keyspace_items, and "
              "keyspace_misses summed over the Redis servers behind):\n")
        print("| target | GETs sent | Larder keyspace misses | Redis keyspace_misses |")
        print("|---|---:|---:|---:|")
        sent = ROUNDS * (N[1] + N[16])
        for target, label in (("mapped", "(a)"), ("plain", "(b)"), ("direct", "(c)"),
                              ("single-mapped", "(d)"), ("single", "(e)")):
            lm = f"{misses[target][0]:,}" if target in owners else "-"
            print(f"| {label} {target} | {sent:,} | {lm} | {misses[target][1]:,} |")
        print("\nkeyspace_items counters (warm-up, then the whole measurement):\n")
        print("| Larder | warm-up hits | warm-up misses | warm-up queries | hits | misses | "
              "queries |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for target, label in (("mapped", "cluster"), ("single-mapped", "one Redis")):
            w, b, a = warmed[target], before_items[target], after_items[target]
            print(f"| {label} | {w['hits']:,} | {w['misses']:,} | {w['queries']:,} | "
                  f"{a['hits'] - b['hits']:,} | {a['misses'] - b['misses']:,} | "
                  f"{a['queries'] - b['queries']:,} |")
    finally:
        stop_everything((larder, plain), single, cluster, pg)


if __name__ == "__main__":
    main()
