#!/usr/bin/python3
"""Larder in front of a Redis Cluster against `redis-benchmark --cluster`
straight to the cluster (docs/benchmarks.md, "Redis Cluster backend").

    /usr/bin/python3 tests/bench/cluster/cluster_bench.py

Starts a private cluster on loopback (tests/integration/harness.py's
RedisCluster) and Larder (redis.cluster.seeds), then, for a few rounds in
alternating order:

  * GET and SET at pipeline 1 and 16: redis-benchmark through Larder (a plain,
    non-cluster client) and redis-benchmark --cluster straight to the nodes;
  * the same GET and SET through the same Larder build in front of one
    redis-server, and straight to it: the control that shows what the proxy
    hop itself costs on this machine;
  * MGET of 10 keys: keys in 10 slots through Larder (split and merged),
    keys in one slot ({tag}) through Larder, and keys in one slot straight to
    the node that owns it (what a cluster client can send in one round trip).

Prints Markdown tables: medians, and the median over rounds of each round's
ratio Larder/direct (goals: GET and SET >= 0.9x at P1, >= 0.7x at P16); the
control's; and Larder's CPU time per request with each backend.

Environment (defaults in brackets): LARDER_BIN [build/larder], ROUNDS [3],
N_P1 [50000], N_P16 [300000], N_MGET [50000], CLIENTS [50], THREADS [2]
(Larder's workers), REPLICAS [0] (per primary), NICE [0].
Everything listens on 127.0.0.1; every process started here is stopped.
"""

import csv
import io
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.dont_write_bytecode = True
import harness  # noqa: E402

LARDER_BIN = os.environ.get("LARDER_BIN", os.path.join(ROOT, "build", "larder"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
N = {1: int(os.environ.get("N_P1", "50000")), 16: int(os.environ.get("N_P16", "300000"))}
N_MGET = int(os.environ.get("N_MGET", "50000"))
CLIENTS = int(os.environ.get("CLIENTS", "50"))
THREADS = int(os.environ.get("THREADS", "2"))
REPLICAS = int(os.environ.get("REPLICAS", "0"))
NICE = ["nice", "-n", os.environ.get("NICE", "0")]
BENCH = "redis-benchmark"
GOALS = {1: 0.9, 16: 0.7}


def bench(port, args, n, cluster=False, pipeline=1, options=()):
    """redis-benchmark's --csv rows as {test: requests per second}; `options`
    go before the command (such as -r)."""
    argv = NICE + [BENCH, "-h", "127.0.0.1", "-p", str(port), "-c", str(CLIENTS), "-n", str(n),
                   "-P", str(pipeline), "--csv", *options] + \
        (["--cluster"] if cluster else []) + args
    res = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {res.stderr[-500:]}")
    rows = {}
    for row in csv.reader(io.StringIO(res.stdout)):
        if len(row) >= 2 and row[0] != "test":
            try:
                rows[row[0]] = float(row[1])
            except ValueError:
                pass
    if not rows:
        raise RuntimeError(f"no results from {' '.join(argv)}: {res.stdout[-500:]}")
    return rows


def cpu_seconds(pid):
    """user + system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    cluster = harness.RedisCluster(replicas=REPLICAS)
    single = harness.RedisServer()
    larder = plain = None
    try:
        cluster.start()
        larder = harness.ClusterLarder(cluster, binary=LARDER_BIN, threads=THREADS,
                                       log_level="warn")
        larder.start()
        # The control: the same Larder build in front of one redis-server.
        single.start()
        plain = harness.Larder(single, binary=LARDER_BIN, threads=THREADS, log_level="warn")
        plain.start()
        node = cluster.nodes[0].port
        r = larder.client()
        spread = [f"mget:{i}" for i in range(10)]
        tagged = [f"{{mget}}:{i}" for i in range(10)]
        for k in spread + tagged:
            r.set(k, "x" * 16)
        slots = {r.execute_command("CLUSTER", "KEYSLOT", k) for k in spread}
        owner = cluster.owner_of(tagged[0]).port
        harness.close_client(r)
        results = {}  # (target, test) -> [ops/s per round]

        def add(target, test, value):
            results.setdefault((target, test), []).append(value)

        cpu = {}  # (target, P) -> [CPU microseconds of Larder per request]
        ports = {"larder": larder.port, "direct": node, "larder-single": plain.port,
                 "single": single.port}
        pids = {"larder": larder.pid, "larder-single": plain.pid}
        for rnd in range(ROUNDS):
            order = list(ports) if rnd % 2 == 0 else list(reversed(ports))
            for p in (1, 16):
                for target in order:
                    before = cpu_seconds(pids[target]) if target in pids else 0
                    rows = bench(ports[target], ["-t", "get,set", "-q"], N[p],
                                 cluster=target == "direct", pipeline=p)
                    if target in pids:
                        used = cpu_seconds(pids[target]) - before
                        cpu.setdefault((target, p), []).append(used * 1e6 / (2 * N[p]))
                    for test, value in rows.items():
                        add(target, f"{test} P{p}", value)
            for target, port, keys in (("larder", larder.port, spread),
                                       ("larder", larder.port, tagged),
                                       ("direct", owner, tagged)):
                name = "MGET 10 (10 slots)" if keys is spread else "MGET 10 (1 slot)"
                rows = bench(port, ["MGET"] + keys, N_MGET)
                add(target, name, next(iter(rows.values())))
            print(f"round {rnd + 1}/{ROUNDS} done", file=sys.stderr)

        print(f"\nLarder {THREADS} worker thread(s), cluster of 3 primaries x {REPLICAS} "
              f"replica(s), redis-benchmark -c {CLIENTS}; medians of {ROUNDS} rounds; the "
              f"10-slot MGET keys are in {len(slots)} slots\n")
        print("| test | through Larder (ops/s) | straight to the cluster (ops/s) | ratio | goal |")
        print("|---|---:|---:|---:|---:|")
        tests = sorted({t for _, t in results}, key=lambda t: (t.startswith("MGET"), t))
        for test in tests:
            mine = results.get(("larder", test))
            theirs = results.get(("direct", test))
            m = statistics.median(mine) if mine else None
            d = statistics.median(theirs) if theirs else None
            # The median of each round's ratio: contenders of one round ran
            # back to back, under the same load.
            ratio = (f"{statistics.median(a / b for a, b in zip(mine, theirs)):.2f}"
                     if mine and theirs else "-")
            goal = next((f">= {g}" for p, g in GOALS.items() if test.endswith(f" P{p}")), "")
            print(f"| {test} | {m:,.0f} | " + (f"{d:,.0f}" if d else "-") + f" | {ratio} | {goal} |")
        print("\nThe control, the same build in front of one redis-server (no cluster):\n")
        print("| test | Larder -> one Redis (ops/s) | one Redis (ops/s) | ratio |")
        print("|---|---:|---:|---:|")
        for test in [t for t in tests if not t.startswith("MGET")]:
            mine, theirs = results[("larder-single", test)], results[("single", test)]
            ratio = statistics.median(a / b for a, b in zip(mine, theirs))
            print(f"| {test} | {statistics.median(mine):,.0f} | {statistics.median(theirs):,.0f} | "
                  f"{ratio:.2f} |")
        print("\nLarder's CPU per request (user + system microseconds, GET and SET together):\n")
        print("| P | cluster backend | one Redis |")
        print("|---|---:|---:|")
        for p in (1, 16):
            print(f"| {p} | {statistics.median(cpu[('larder', p)]):.1f} | "
                  f"{statistics.median(cpu[('larder-single', p)]):.1f} |")
    finally:
        stop_everything((larder, plain), single, cluster)


def stop_everything(larders, *servers):
    """Larders killed (not drained: a benchmark's state is not kept) and
    their directories removed, then the servers cleaned up."""
    for proc in larders:
        if proc is not None:
            proc.kill()
            harness.remove_tmpdir(proc.dir)
    for server in servers:
        server.cleanup()


if __name__ == "__main__":
    main()
