#!/usr/bin/python3
"""Near-cache benchmark (driven by near_bench.sh; results in RESULTS.md).

1. Throughput: zipfian (theta 0.99) GETs of hot string keys, in rounds, each
   round running the same load (nc_load) against
     redis        redis-server directly,
     larder-near  Larder with the keyspace's near cache on,
     larder       Larder with it off (the proxy's own cost),
   in a rotating order, so that machine noise hits every mode alike. Ratios
   are per round (larder-near / redis in the same round), then the median.
2. Invalidation delay: a write acknowledged by Larder A, then reads at Larder
   B (near cache on, holding the old value) until B answers the new value;
   p50/p99 of ack -> first fresh read at B, of write sent -> fresh at B, and
   how often the first read after the ack was stale.

Real redis-server and PostgreSQL (tests/integration/harness.py), loopback.
Environment: see near_bench.sh.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))

from harness import HOST, Larder, PostgresServer, RedisServer, free_port  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = float(os.environ.get("DURATION", "5"))
KEYS = int(os.environ.get("KEYS", "100000"))
THETA = float(os.environ.get("THETA", "0.99"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "50"))
PIPELINE = int(os.environ.get("PIPELINE", "1"))
LOAD_THREADS = int(os.environ.get("LOAD_THREADS", "1"))
LARDER_THREADS = int(os.environ.get("LARDER_THREADS", "2"))
VALUE_BYTES = int(os.environ.get("VALUE_BYTES", "100"))
DELAY_ROUNDS = int(os.environ.get("DELAY_ROUNDS", "1000"))
MAX_BYTES = os.environ.get("MAX_BYTES", "64mb")
MAX_TTL = os.environ.get("MAX_TTL", "10s")
LOAD_BIN = os.environ["LOAD_BIN"]


def notes_ks(near: bool) -> dict:
    ks = {"key": "note:{id}", "table": "public.notes", "shape": "string", "columns": ["body"],
          "ttl": "1h", "write": "behind"}
    if near:
        ks["near_cache"] = {"max_bytes": MAX_BYTES, "max_ttl": MAX_TTL}
    return ks


def start_larder(redis_server, pg, near: bool) -> Larder:
    admin = free_port()
    larder = Larder(redis_server, threads=LARDER_THREADS, log_level="info", config={
        "postgres": {"dsn": pg.dsn("bench"), "pool_size": 2}, "admin": f"{HOST}:{admin}",
        "keyspaces": {"notes": notes_ks(near)}})
    larder.admin_port = admin
    return larder.start()


def metric(larder: Larder, name: str) -> float:
    with urllib.request.urlopen(f"http://{HOST}:{larder.admin_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(v) for v in re.findall(r"^" + name + r"(?:\{[^}]*\})?\s+(\S+)$", text, re.M))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(port: int) -> float:
    out = subprocess.run(
        [LOAD_BIN, "--port", str(port), "--threads", str(LOAD_THREADS), "--connections",
         str(CONNECTIONS), "--pipeline", str(PIPELINE), "--duration", str(DURATION), "--keys",
         str(KEYS), "--theta", str(THETA), "--prefix", "note:"],
        capture_output=True, text=True, timeout=DURATION + 60)
    m = re.search(r"ops_per_sec=(\d+)", out.stdout)
    if out.returncode != 0 or not m or " errors=0" not in out.stdout:
        raise SystemExit(f"nc_load failed: {out.stdout} {out.stderr}")
    return float(m.group(1))


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def profile(larder: Larder):
    """perf record of Larder (near cache on) during one more load run; prints
    the top symbols."""
    data = os.path.join(larder.dir, "perf.data")
    perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-o", data,
                             "-p", str(larder.pid), "--", "sleep", str(DURATION)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ops = load(larder.port)
    perf.wait(timeout=DURATION + 60)
    report = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                             "--sort", "dso,symbol", "--percent-limit", "0.7"],
                            capture_output=True, text=True, timeout=300).stdout
    print(f"perf (larder-near, {ops:.0f}/s during the profile), symbols >= 0.7%:")
    for line in report.splitlines():
        if line.strip() and not line.startswith("#"):
            print("  " + line.strip()[:400])


def reader(port: int, key: str, stop, out):
    """Reads `key` back to back until told to stop; (sent, received, value) each."""
    import redis
    c = redis.Redis(host=HOST, port=port)
    log = []
    while not stop.is_set():
        sent = time.perf_counter()
        value = c.get(key)
        log.append((sent, time.perf_counter(), value))
    out.put(log)


def concurrent_delay(a: Larder, b: Larder):
    """Writes at A while another process reads the key at B back to back: how
    long after A's ack do reads *sent after the ack* still answer the old value?"""
    import multiprocessing as mp
    import random
    key = "note:2"
    ctx = mp.get_context("fork")
    stop, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=reader, args=(b.port, key, stop, out))
    ca = a.client()
    ca.set(key, "w-1")
    proc.start()
    acks = []
    time.sleep(0.2)
    for i in range(DELAY_ROUNDS):
        time.sleep(random.uniform(0.002, 0.004))
        sent = time.perf_counter()
        ca.set(key, f"w{i}")
        acks.append((sent, time.perf_counter()))
    time.sleep(0.05)
    stop.set()
    log = out.get(timeout=60)
    proc.join(10)
    version = [int(v[1:]) if v and v.startswith(b"w") else None for _, _, v in log]
    stale_reads, windows, fresh = 0, [], []
    j = 0
    for i, (sent, acked) in enumerate(acks):
        while j < len(log) and log[j][0] < acked:
            j += 1
        k, last_stale = j, None
        while k < len(log) and (version[k] is None or version[k] < i):
            stale_reads += 1
            last_stale = log[k][1]
            k += 1
        if last_stale is not None:
            windows.append(last_stale - acked)
        if k < len(log):
            fresh.append(log[k][1] - sent)
    ms = lambda s: f"{s * 1000:.3f} ms"  # noqa: E731
    rtt = statistics.median(r - s for s, r, _ in log)
    print(f"concurrent reader at B ({len(log)} reads, median {ms(rtt)} each) during "
          f"{DELAY_ROUNDS} writes at A: {len(windows)} writes ({100 * len(windows) / DELAY_ROUNDS:.2f}%) "
          f"had reads sent after A's ack that answered the old value ({stale_reads} reads)"
          + (f"; those stale windows after the ack: p50 {ms(pct(windows, 50))}, max "
             f"{ms(max(windows))}" if windows else ""))
    print(f"  write sent at A -> first fresh read at B received: p50 {ms(pct(fresh, 50))}, "
          f"p99 {ms(pct(fresh, 99))}, max {ms(max(fresh))}")


def main():
    pg = PostgresServer()
    redis_server = RedisServer()
    larders = []
    try:
        pg.start()
        pg.create_database("bench")
        pg.psql("CREATE TABLE notes (id bigint PRIMARY KEY, body text); "
                f"INSERT INTO notes SELECT g, repeat('x', {VALUE_BYTES}) "
                f"FROM generate_series(1, {KEYS}) g", dbname="bench")
        redis_server.start()
        direct = redis_server.client()
        value = "x" * VALUE_BYTES
        for start in range(1, KEYS + 1, 10000):
            p = direct.pipeline(transaction=False)
            for i in range(start, min(KEYS + 1, start + 10000)):
                p.set(f"note:{i}", value)
            p.execute()
        near = start_larder(redis_server, pg, True)
        plain = start_larder(redis_server, pg, False)
        larders = [near, plain]
        ports = {"redis": redis_server.port, "larder-near": near.port, "larder": plain.port}
        # Server CPU per request: the processes that work for each mode.
        servers = {"redis": [redis_server.proc.pid],
                   "larder-near": [near.pid, redis_server.proc.pid],
                   "larder": [plain.pid, redis_server.proc.pid]}
        modes = list(ports)
        results = {m: [] for m in modes}
        cpu_us = {m: [] for m in modes}
        print(f"# {ROUNDS} rounds x {DURATION:.0f} s per mode; {KEYS} keys, theta {THETA}, "
              f"{CONNECTIONS} connections x pipeline {PIPELINE}, {LOAD_THREADS} load thread(s), "
              f"Larder threads {LARDER_THREADS}, values {VALUE_BYTES} B; {os.cpu_count()} CPUs",
              flush=True)
        load(near.port)  # warm-up: fills the near caches
        for r in range(ROUNDS):
            order = modes[r % len(modes):] + modes[:r % len(modes)]
            row = {}
            for mode in order:
                before = sum(cpu_seconds(pid) for pid in servers[mode])
                row[mode] = load(ports[mode])
                used = sum(cpu_seconds(pid) for pid in servers[mode]) - before
                results[mode].append(row[mode])
                cpu_us[mode].append(used / (row[mode] * DURATION) * 1e6)
            print(f"round {r + 1}: " + "  ".join(f"{m} {row[m]:>9.0f}/s" for m in modes) +
                  f"  near/redis {row['larder-near'] / row['redis']:.2f}"
                  f"  near/larder {row['larder-near'] / row['larder']:.2f}", flush=True)
        ratios = [n / d for n, d in zip(results["larder-near"], results["redis"])]
        hits = metric(near, "larder_near_cache_hits_total")
        misses = metric(near, "larder_near_cache_misses_total")
        print("median ops/s: " + "  ".join(f"{m} {statistics.median(results[m]):.0f}"
                                           for m in modes))
        print(f"larder-near / redis per round: {', '.join(f'{x:.2f}' for x in ratios)}; "
              f"median {statistics.median(ratios):.2f}")
        print("server CPU per request (median, us; Larder + Redis for the larder modes): " +
              "  ".join(f"{m} {statistics.median(cpu_us[m]):.2f}" for m in modes))
        print(f"near-cache hit ratio over the run: {hits / max(1.0, hits + misses):.4f} "
              f"({hits:.0f} hits, {misses:.0f} misses); entries "
              f"{metric(near, 'larder_near_cache_entries'):.0f}, bytes "
              f"{metric(near, 'larder_near_cache_bytes'):.0f}", flush=True)

        # -- invalidation delay: write at A (plain), fresh read at B (near)
        ca, cb = plain.client(), near.client()
        key = "note:1"
        after_ack, after_send = [], []
        stale_first = 0
        for i in range(DELAY_ROUNDS):
            for _ in range(2):
                cb.get(key)  # B holds the current value in its near cache
            want = f"v{i}".encode()
            sent = time.perf_counter()
            ca.set(key, want)
            acked = time.perf_counter()
            first = True
            while True:
                got = cb.get(key)
                if got == want:
                    break
                if first:
                    stale_first += 1
                first = False
                if time.perf_counter() - acked > 2:
                    raise SystemExit(f"B still stale 2 s after A's ack (round {i})")
            now = time.perf_counter()
            after_ack.append(now - acked)
            after_send.append(now - sent)
        ms = lambda s: f"{s * 1000:.3f} ms"  # noqa: E731
        print(f"invalidation delay over {DELAY_ROUNDS} writes at A: first read at B after A's "
              f"ack stale {stale_first} times ({100 * stale_first / DELAY_ROUNDS:.2f}%)")
        print(f"  A's ack -> fresh read at B: p50 {ms(pct(after_ack, 50))}, p99 "
              f"{ms(pct(after_ack, 99))}, max {ms(max(after_ack))}")
        print(f"  write sent at A -> fresh read at B: p50 {ms(pct(after_send, 50))}, p99 "
              f"{ms(pct(after_send, 99))}, max {ms(max(after_send))}")
        print(f"  (resolution: one GET through Larder from Python, "
              f"~{ms(statistics.median(after_ack) if not stale_first else pct(after_ack, 10))})")
        if os.environ.get("PERF") == "1":
            profile(near)
        concurrent_delay(plain, near)
    finally:
        for larder in larders:
            larder.cleanup()
        redis_server.cleanup()
        pg.cleanup()


if __name__ == "__main__":
    main()
