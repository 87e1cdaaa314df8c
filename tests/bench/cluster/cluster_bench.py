#!/usr/bin/python3
"""Larder in front of a Redis Cluster against `redis-benchmark --cluster`
straight to the cluster (docs/benchmarks.md, "Redis Cluster backend").

    /usr/bin/python3 tests/bench/cluster/cluster_bench.py

Starts a private cluster on loopback (tests/integration/harness.py's
RedisCluster) and Larder (redis.cluster.seeds), then, for a few rounds in
alternating order:

  * GET and SET at pipeline 1 and 16: redis-benchmark through Larder (a plain,
    non-cluster client) and redis-benchmark --cluster straight to the nodes;
  * the same GET and SET through twemproxy (nutcracker), the reference proxy,
    in front of the node that owns redis-benchmark's one key
    (`key:__rand_int__`, one slot): what any proxy hop costs on this machine;
  * the same GET and SET through the same Larder build in front of one
    redis-server, and straight to it: the control that shows what the proxy
    hop itself costs on this machine;
  * MGET of 10 keys: keys in 10 slots through Larder (split and merged),
    keys in one slot ({tag}) through Larder, and keys in one slot straight to
    the node that owns it (what a cluster client can send in one round trip).

Prints Markdown tables: medians, and the median over rounds of each round's
ratio Larder/direct (goals: GET and SET >= 0.9x at P1, >= 0.7x at P16) and
twemproxy/direct; the control's; Larder's CPU time per request with each
backend; and, at P1, the CPU per request of every process (redis-benchmark,
the nodes, the proxy): the machine's two cores are the limit at P1.

The request counts are large because `redis-benchmark --cluster` spends
about 0.1 s at its start (CLUSTER NODES, connecting to every node) inside
its timing: at 50,000 requests that cut its P1 rate by a sixth, which
flattered Larder's ratio.

Environment (defaults in brackets): LARDER_BIN [build/larder], ROUNDS [3],
N_P1 [200000], N_P16 [1000000], N_MGET [50000], CLIENTS [50], THREADS [2]
(Larder's workers), REPLICAS [0] (per primary), NICE [0].
Everything listens on 127.0.0.1; every process started here is stopped.
"""

import csv
import io
import os
import resource
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
N = {1: int(os.environ.get("N_P1", "200000")), 16: int(os.environ.get("N_P16", "1000000"))}
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
    before = children_cpu_seconds()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    bench.cpu_seconds = children_cpu_seconds() - before
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


def children_cpu_seconds():
    """user + system CPU seconds of every child waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start_twemproxy(port, server_port, workdir):
    """nutcracker on `port` in front of one redis-server (the node that owns
    redis-benchmark's key); its Popen."""
    conf = os.path.join(workdir, "nutcracker.yml")
    with open(conf, "w") as f:
        f.write(f"pool:\n  listen: 127.0.0.1:{port}\n  hash: fnv1a_64\n"
                f"  distribution: ketama\n  redis: true\n  servers:\n"
                f"   - 127.0.0.1:{server_port}:1\n")
    proc = subprocess.Popen(["nutcracker", "-c", conf, "-s", str(harness.free_port()),
                             "-a", "127.0.0.1", "-o", os.path.join(workdir, "nutcracker.log")])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ping = subprocess.run(["redis-cli", "-p", str(port), "SET", "__bench_probe", "1"],
                              capture_output=True, text=True)
        if ping.stdout.strip() == "OK":
            return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"nutcracker did not start (see {workdir}/nutcracker.log)")


def cpu_seconds(pid):
    """user + system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    cluster = harness.RedisCluster(replicas=REPLICAS)
    single = harness.RedisServer()
    larder = plain = twem = None
    workdir = harness.make_tmpdir("larder-cluster-bench-")
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
        # redis-benchmark -t get,set without -r uses one key: twemproxy in
        # front of its owner serves every request without a redirect.
        twem_port = harness.free_port()
        twem = start_twemproxy(twem_port, cluster.owner_of("key:__rand_int__").port, workdir)
        results = {}  # (target, test) -> [ops/s per round]

        def add(target, test, value):
            results.setdefault((target, test), []).append(value)

        cpu = {}  # (target, P) -> [CPU microseconds of Larder per request]
        ports = {"larder": larder.port, "direct": node, "twemproxy": twem_port,
                 "larder-single": plain.port, "single": single.port}
        pids = {"larder": larder.pid, "larder-single": plain.pid, "twemproxy": twem.pid}
        node_pids = [n.proc.pid for n in cluster.nodes]
        # (target, process) -> [CPU microseconds per request at P1]
        shares = {}
        for rnd in range(ROUNDS):
            order = list(ports) if rnd % 2 == 0 else list(reversed(ports))
            for p in (1, 16):
                for target in order:
                    before = cpu_seconds(pids[target]) if target in pids else 0
                    nodes_before = sum(cpu_seconds(pid) for pid in node_pids)
                    rows = bench(ports[target], ["-t", "get,set", "-q"], N[p],
                                 cluster=target == "direct", pipeline=p)
                    per_request = 1e6 / (2 * N[p])
                    if target in pids:
                        used = cpu_seconds(pids[target]) - before
                        cpu.setdefault((target, p), []).append(used * per_request)
                    if p == 1 and target in ("larder", "direct", "twemproxy"):
                        nodes = sum(cpu_seconds(pid) for pid in node_pids) - nodes_before
                        proxy = cpu[(target, p)][-1] if target in pids else 0.0
                        for name, value in (("redis-benchmark", bench.cpu_seconds * per_request),
                                            ("cluster nodes", nodes * per_request),
                                            ("proxy", proxy)):
                            shares.setdefault((target, name), []).append(value)
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
        print("\ntwemproxy (nutcracker) in front of the node that owns the benchmark's key:\n")
        print("| test | through twemproxy (ops/s) | ratio to straight | ratio to Larder |")
        print("|---|---:|---:|---:|")
        for test in [t for t in tests if not t.startswith("MGET")]:
            twems = results[("twemproxy", test)]
            to_direct = statistics.median(a / b for a, b in zip(twems, results[("direct", test)]))
            to_larder = statistics.median(a / b for a, b in zip(twems, results[("larder", test)]))
            print(f"| {test} | {statistics.median(twems):,.0f} | {to_direct:.2f} | "
                  f"{to_larder:.2f} |")
        print("\nCPU per request at P1 (user + system microseconds, GET and SET together):\n")
        print("| process | straight to the cluster | through Larder | through twemproxy |")
        print("|---|---:|---:|---:|")
        for name in ("redis-benchmark", "cluster nodes", "proxy"):
            print(f"| {name} | " + " | ".join(
                f"{statistics.median(shares[(t, name)]):.1f}"
                for t in ("direct", "larder", "twemproxy")) + " |")
        totals = [statistics.median(sum(v) for v in zip(*(shares[(t, n)] for n in
                  ("redis-benchmark", "cluster nodes", "proxy"))))
                  for t in ("direct", "larder", "twemproxy")]
        print("| **total** | " + " | ".join(f"**{v:.1f}**" for v in totals) + " |")
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
        if twem is not None:
            twem.kill()
            twem.wait()
        harness.remove_tmpdir(workdir)
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
