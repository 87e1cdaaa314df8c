#!/usr/bin/python3
"""Where Larder's time goes in front of a Redis Cluster at pipeline 1
(docs/benchmarks.md, "Redis Cluster backend"): Larder (one worker thread)
runs under `valgrind --tool=callgrind` while redis-benchmark sends GET and SET
through it; then callgrind_annotate prints the functions by inclusive cost.

    /usr/bin/python3 tests/bench/cluster/cluster_profile.py

Environment (defaults in brackets): LARDER_BIN [build/larder], N [20000]
(requests per test), CLIENTS [50], PIPELINE [1], OUT [/tmp/larder-cluster.callgrind],
BACKEND [cluster] (`single`: the control, Larder in front of one redis-server).
Everything listens on 127.0.0.1; every process started here is stopped.
Callgrind counts instructions (Ir), not time: system calls count as the
instructions that make them, so kernel time (send, recv, epoll) is not in it;
`perf` or the CPU-per-request figures of cluster_bench.py show that part.
"""

import os
import stat
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.dont_write_bytecode = True
os.environ.setdefault("LARDER_TEST_SLOW", "10")  # Larder starts slowly under valgrind
import harness  # noqa: E402

LARDER_BIN = os.environ.get("LARDER_BIN", os.path.join(ROOT, "build", "larder"))
N = int(os.environ.get("N", "20000"))
CLIENTS = int(os.environ.get("CLIENTS", "50"))
PIPELINE = int(os.environ.get("PIPELINE", "1"))
OUT = os.environ.get("OUT", "/tmp/larder-cluster.callgrind")
BACKEND = os.environ.get("BACKEND", "cluster")


def main():
    cluster = harness.RedisCluster(replicas=0) if BACKEND == "cluster" else harness.RedisServer()
    larder = None
    wrapper = os.path.join(harness.make_tmpdir("cluster-profile"), "larder-callgrind")
    try:
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec valgrind --tool=callgrind --quiet "
                    f"--callgrind-out-file={OUT} {os.path.abspath(LARDER_BIN)} \"$@\"\n")
        os.chmod(wrapper, os.stat(wrapper).st_mode | stat.S_IXUSR)
        cluster.start()
        kind = harness.ClusterLarder if BACKEND == "cluster" else harness.Larder
        larder = kind(cluster, binary=wrapper, threads=1, log_level="warn")
        larder.start()
        argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(larder.port), "-c", str(CLIENTS),
                "-n", str(N), "-P", str(PIPELINE), "-t", "get,set", "-q"]
        print(subprocess.run(argv, capture_output=True, text=True, timeout=900).stdout.strip())
        larder.stop_gracefully()  # callgrind writes its file when Larder exits
        larder = None
        for inclusive in ("yes", "no"):
            res = subprocess.run(["callgrind_annotate", f"--inclusive={inclusive}", OUT],
                                 capture_output=True, text=True, timeout=300)
            print("\n".join(res.stdout.splitlines()[:70]))
    finally:
        if larder is not None:
            larder.kill()
        cluster.cleanup()
        harness.remove_tmpdir(os.path.dirname(wrapper))


if __name__ == "__main__":
    main()
