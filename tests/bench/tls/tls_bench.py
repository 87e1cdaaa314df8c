"""TLS vs plain client throughput through Larder (docs/benchmarks.md#tls).

Starts a redis-server and one Larder with both listeners (harness.py), makes a
throwaway CA and server certificate with the openssl CLI, then runs
redis-benchmark against the plain and the TLS port, interleaved over ROUNDS
rounds, and prints medians, the TLS/plain ratio and Larder's CPU time per
request (from /proc/PID/stat). Pass-through keys only: no PostgreSQL.

Run: LARDER_BINARY=build/larder /usr/bin/python3 tests/bench/tls/tls_bench.py
Env: ROUNDS (3), REQUESTS (100000), CLIENTS (50), PIPELINE (1).
"""

import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))

import harness  # noqa: E402
from test_tls import Certs, listener_config  # noqa: E402
import test_tls  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "3"))
REQUESTS = int(os.environ.get("REQUESTS", "100000"))
CLIENTS = int(os.environ.get("CLIENTS", "50"))
PIPELINE = int(os.environ.get("PIPELINE", "1"))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench(port: int, tls: bool, pid: int):
    argv = ["redis-benchmark", "-h", harness.HOST, "-p", str(port), "-t", "set,get",
            "-n", str(REQUESTS), "-c", str(CLIENTS), "-P", str(PIPELINE), "-q"]
    if tls:
        argv += ["--tls", "--cacert", test_tls.CERTS.ca]
    before = cpu_seconds(pid)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600).stdout
    cpu = cpu_seconds(pid) - before
    rates = {m.group(1): float(m.group(2))
             for m in re.finditer(r"^(\w+): ([\d.]+) requests per second", out, re.M)}
    return rates, cpu * 1e6 / (2 * REQUESTS)


def main():
    test_tls.CERTS = Certs()
    r = harness.RedisServer().start()
    port = harness.free_port()
    larder = harness.Larder(r, config=listener_config(port), log_level="info").start()
    try:
        results = {"plain": [], "tls": []}
        for _ in range(ROUNDS):
            for name, p, tls in (("plain", larder.port, False), ("tls", port, True)):
                results[name].append(bench(p, tls, larder.pid))
        print(f"redis-benchmark -t set,get -n {REQUESTS} -c {CLIENTS} -P {PIPELINE}, "
              f"{ROUNDS} rounds, medians")
        med = {}
        for name, runs in results.items():
            med[name] = {op: statistics.median(run[0][op] for run in runs)
                         for op in ("SET", "GET")}
            cpu = statistics.median(run[1] for run in runs)
            print(f"{name:5}  SET {med[name]['SET']:>9.0f}/s  GET {med[name]['GET']:>9.0f}/s  "
                  f"Larder CPU {cpu:.1f} us/request")
        for op in ("SET", "GET"):
            print(f"TLS/plain {op}: {med['tls'][op] / med['plain'][op]:.2f}")
    finally:
        larder.cleanup()
        r.cleanup()
        test_tls.CERTS.cleanup()


if __name__ == "__main__":
    main()
