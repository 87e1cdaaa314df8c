#!/usr/bin/python3
"""Write-behind flush rate with 3 shards against 1 (issue #15): how fast
Larder's flusher moves a burst of queued writes into PostgreSQL when its
Redis is a 3-primary Redis Cluster (a queue per slot, one flusher per
keyspace: src/cache/flusher_slots.cpp, docs/cluster.md) against the same
build and config in front of one redis-server (one stream per keyspace:
src/cache/flusher.cpp), in the same run, reported as ratios.

    /usr/bin/python3 tests/bench/write_behind/cluster_flush_rate.py

Starts a private PostgreSQL (database bench, table public.items (id bigint
PRIMARY KEY, v text NOT NULL), empty), a private cluster on loopback
(tests/integration/harness.py's RedisCluster: 3 primaries, REPLICAS replicas
each) with Larder (A) in front of it (redis.cluster.seeds), and one
redis-server with Larder (B) in front of it. Both Larders have the same
config: keyspace items `{key: "item:{id}", table: public.items, shape:
string, columns: [v]}`, default write: behind, and Larder's default
write_behind settings (flush_interval 50ms, max_batch 1000,
apply_connections 2, max_queue 1000000: the values write_bench.sh uses too),
postgres.pool_size 4 (as write_bench.sh). Both share the one table; it is
truncated before each run (the idle Larder's flusher has nothing to flush
meanwhile).

One run, for target A or B:

  * TRUNCATE public.items; N writes `SET item:<i> <v>` for i = 0 .. N-1
    (exactly N distinct keys, hence N rows; v is 16 bytes naming the target,
    round and id, e.g. c01-000000000042) are sent as fast as possible through
    Larder by PIPES parallel `redis-cli --pipe` processes (raw RESP made
    beforehand, each a contiguous share of the ids; redis-cli --pipe sends
    without waiting and counts the replies; redis-benchmark's __rand_int__
    cannot make N distinct keys);
  * meanwhile one psql session polls `SELECT count(*) FROM public.items`
    every POLL_MS ms;
  * write rate = N / (last redis-cli done - first write sent): every write
    acknowledged by Larder (in Redis, queued);
    flush rate = N / (PostgreSQL has all N rows - first write sent);
    flush lag  = (PostgreSQL has all N rows) - (last write acknowledged): the
    flusher alone, after the load (resolution: one poll, about POLL_MS);
  * then LARDER FLUSH items, and the checks (a run failing one is VOID, left
    out of the medians, and the script exits 1): each redis-cli saw 0 errors
    and all its replies; the run's flushed_rows (INFO larder, keyspace_items)
    >= N; PostgreSQL holds exactly N rows, ids 0..N-1, each with its value.

Runs come in rounds (A then B, B then A, ... : ROUNDS rounds) and the rounds
in phases (PHASES):

  fresh     larder.flush_state (the applied marks: one row per slot on a
            cluster, per apply connection on one Redis) as the flushers make
            it: created empty at start-up, never analyzed within the run. The
            cluster flusher's marks UPDATE (`larder_flush_marks`, one per
            apply transaction) is prepared while the table is small; its
            cached generic plan stays a nested loop over a seq scan of
            flush_state when the table has ~16k rows.
  analyzed  `ANALYZE larder.flush_state` first (what autovacuum does in
            time; it also drops the cached plans), then the same rounds.
            Alone (PHASES=analyzed), one unmeasured burst per target runs
            first, so that the table has its rows when it is analyzed.

Prints, per phase, Markdown tables: the medians per target of write rate,
flush rate and flush lag, and the median over rounds of each round's ratio
cluster/one Redis; every run's figures (with rows already in PostgreSQL when
the last write was acknowledged, Larder's CPU per write over the run, and the
keyspace_items fields flushed_rows, flush_retries, dead_letters at the end of
the run); then the lines of each Larder's log (at LOG_LEVEL warn, all of
them: warnings and errors, verbatim).

Environment (defaults in brackets): LARDER_BIN [build/larder], ROUNDS [3]
(per phase), PHASES ["fresh analyzed"], N [100000], PIPES [4] (parallel
redis-cli --pipe connections), POLL_MS [50], RUN_TIMEOUT [90] (seconds a run
may take to reach N rows), THREADS [2] (Larder's workers), REPLICAS [0] (per
primary), LOG_LEVEL [warn] (Larder's), NICE [0] (niceness of redis-cli),
WAIT_REPLICAS [0] (write_behind.wait_replicas of the cluster's Larder only,
wait_timeout 1s; needs REPLICAS >= it: compare two invocations' cluster
write rates for what WAIT per write costs).
PostgreSQL runs as the harness starts it (fsync=off, full_page_writes=off),
unlike write_bench.sh's (fsync on): the absolute rows/s are not comparable
with RESULTS.md; the ratios are the figures. About 2-3 minutes with the
defaults on the 2-core development machine (most of it phase fresh's cluster
runs).
Everything listens on 127.0.0.1; every process started here is stopped.
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "bench", "cluster"))
# LARDER_BIN, ROUNDS, THREADS, REPLICAS, NICE and the process handling are
# cluster_bench.py's (which puts tests/integration on the path for harness).
from cluster_bench import (LARDER_BIN, NICE, REPLICAS, ROUNDS, THREADS,  # noqa: E402
                           cpu_seconds, harness, stop_everything)

N = int(os.environ.get("N", "100000"))
PIPES = int(os.environ.get("PIPES", "4"))
POLL_MS = int(os.environ.get("POLL_MS", "50"))
RUN_TIMEOUT = float(os.environ.get("RUN_TIMEOUT", "90"))
PHASES = os.environ.get("PHASES", "fresh analyzed").split()
PHASE_TEXT = {
    "fresh": "larder.flush_state as Larder leaves it (created by the flushers at start-up, "
             "never analyzed)",
    "analyzed": "after `ANALYZE larder.flush_state` (what autovacuum does in time; it drops "
                "the plans cached for the table's statements)",
}
if not PHASES or any(p not in PHASE_TEXT for p in PHASES):
    sys.exit(f"PHASES={os.environ.get('PHASES')!r}: give 'fresh', 'analyzed' or both")
LOG_LEVEL = os.environ.get("LOG_LEVEL", "warn")
WAIT_REPLICAS = int(os.environ.get("WAIT_REPLICAS", "0"))
if WAIT_REPLICAS > REPLICAS:
    sys.exit(f"WAIT_REPLICAS={WAIT_REPLICAS} needs REPLICAS >= {WAIT_REPLICAS}")
DB = "bench"
TABLE = "public.items"
SCHEMA = f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, v text NOT NULL);"
TARGETS = ("cluster", "one-redis")
TAG = {"cluster": "c", "one-redis": "s"}  # first letter of each value
LOG_FLAGS = re.compile(r"warn|error|critical", re.IGNORECASE)


def config(pg):
    """The same for both Larders: write_behind left at Larder's defaults."""
    return {"postgres": {"dsn": pg.dsn(DB), "pool_size": 4},
            "keyspaces": {"items": {"key": "item:{id}", "table": TABLE, "shape": "string",
                                    "columns": ["v"]}}}


def value(target, rnd, i):
    return f"{TAG[target]}{rnd + 1:02d}-{i:012d}"  # 16 bytes


class Psql:
    """One psql session kept open on a pipe: a query costs a round trip, not
    a process start (the poll runs every POLL_MS ms)."""

    def __init__(self, pg):
        psql = os.path.join(harness.PG_BIN, "psql")
        if not os.path.exists(psql):
            psql = shutil.which("psql") or "psql"
        self.proc = subprocess.Popen(
            [psql, "-X", "-At", "-q", "-v", "ON_ERROR_STOP=1", "-h", harness.HOST, "-p",
             str(pg.port), "-U", pg.SUPERUSER, "-d", DB],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=pg._env(), text=True, bufsize=1)

    def query(self, sql):
        """The first line of the result (one row expected)."""
        self.proc.stdin.write(sql.rstrip(";") + ";\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"psql ended on {sql!r}: {self.proc.stderr.read()[-500:]}")
        return line.strip()

    def command(self, sql):
        """A statement without rows, then a marker so that we know it ran."""
        if self.query(f"{sql.rstrip(';')}; SELECT 'done'") != "done":
            raise RuntimeError(f"psql: no answer to {sql!r}")

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(5)
            except Exception:  # noqa: BLE001 - killed below
                self.proc.kill()
                self.proc.wait(5)


def write_files(workdir, target, rnd):
    """PIPES files of raw RESP: SET item:<i> <value> for contiguous shares of
    0..N-1. Returns [(path, writes in it)]."""
    out = []
    per = -(-N // PIPES)
    for p in range(PIPES):
        lo, hi = p * per, min(N, (p + 1) * per)
        if lo >= hi:
            break
        chunks = []
        for i in range(lo, hi):
            k = f"item:{i}".encode()
            v = value(target, rnd, i).encode()
            chunks.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
        path = os.path.join(workdir, f"{target}-{rnd}-{p}.resp")
        with open(path, "wb") as f:
            f.write(b"".join(chunks))
        out.append((path, hi - lo))
    return out


def items(larder):
    """INFO larder's keyspace_items as a dict (flushed_rows, flush_retries ...)."""
    return larder.info_larder()["keyspace_items"]


def run_once(target, larder, psql, workdir, rnd, children):
    """One measured burst; returns a dict of figures and `void` (a reason or None)."""
    psql.command(f"TRUNCATE {TABLE}")
    files = write_files(workdir, target, rnd)
    before = items(larder)
    cpu0 = cpu_seconds(larder.pid)
    done = {}  # pipe index -> (monotonic end, redis-cli output, exit code)

    def pipe(p, path):
        with open(path, "rb") as stdin:
            proc = subprocess.Popen(NICE + [harness.REDIS_CLI, "-h", harness.HOST, "-p",
                                            str(larder.port), "--pipe"],
                                    stdin=stdin, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT)
            children.append(proc)
            out, _ = proc.communicate()
        done[p] = (time.monotonic(), out.decode(errors="replace"), proc.returncode)

    threads = [threading.Thread(target=pipe, args=(p, path), daemon=True)
               for p, (path, _) in enumerate(files)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    samples = []  # (monotonic when the count was asked, rows)
    t_all = None
    while True:
        asked = time.monotonic()
        rows = int(psql.query(f"SELECT count(*) FROM {TABLE}"))
        samples.append((asked, rows))
        if rows >= N and len(done) == len(files):
            t_all = next(t for t, r in samples if r >= N)
            break
        if asked - t0 > RUN_TIMEOUT:
            break
        time.sleep(max(0.0, POLL_MS / 1000 - (time.monotonic() - asked)))
    for t in threads:
        t.join(max(1.0, RUN_TIMEOUT - (time.monotonic() - t0)))
    cpu1 = cpu_seconds(larder.pid)
    void = []
    if len(done) < len(files):
        void.append(f"{len(files) - len(done)} redis-cli --pipe still running after "
                    f"{RUN_TIMEOUT:.0f} s")
    t_ack = max((d[0] for d in done.values()), default=None)
    for p, (path, count) in enumerate(files):
        if p not in done:
            continue
        _, out, code = done[p]
        m = re.search(r"errors: (\d+), replies: (\d+)", out)
        if code != 0 or not m or int(m.group(1)) != 0 or int(m.group(2)) != count:
            void.append(f"redis-cli --pipe {p} (exit {code}): {out.strip()[-300:]!r}")
    if t_all is None:
        void.append(f"PostgreSQL had {samples[-1][1]} of {N} rows after {RUN_TIMEOUT:.0f} s")
    for proc in children:  # a run that timed out: its writers go now
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    c = larder.client(socket_timeout=60)
    try:
        flushed = c.execute_command("LARDER", "FLUSH", "items")
    except Exception as e:  # noqa: BLE001 - an error reply voids the run, no more
        flushed = e
    finally:
        harness.close_client(c)
    if flushed not in (b"OK", "OK"):
        void.append(f"LARDER FLUSH items answered {flushed!r}")
    after = items(larder)
    count, right, lo, hi = psql.query(
        f"SELECT count(*), count(*) FILTER (WHERE v = '{TAG[target]}{rnd + 1:02d}-' || "
        f"lpad(id::text, 12, '0')), coalesce(min(id), -1), coalesce(max(id), -1) "
        f"FROM {TABLE}").split("|")
    if (int(count), int(right), int(lo), int(hi)) != (N, N, 0, N - 1):
        void.append(f"PostgreSQL: {count} rows ({right} with the value written), ids {lo}..{hi}; "
                    f"expected {N} rows, all right, ids 0..{N - 1}")
    delta = {k: after[k] - before[k] for k in ("flushed_rows", "flush_retries", "dead_letters",
                                                "coalesced")}
    if delta["flushed_rows"] < N:
        void.append(f"flushed_rows grew by {delta['flushed_rows']} during the run, < N={N}")
    at_ack = max((r for t, r in samples if t_ack is not None and t <= t_ack), default=0)
    result = {
        "target": target, "round": rnd + 1, "void": "; ".join(void) or None,
        "write_s": (t_ack - t0) if t_ack else None,
        "flush_s": (t_all - t0) if t_all else None,
        "lag_s": (t_all - t_ack) if t_all and t_ack else None,
        "rows_at_ack": at_ack, "polls": len(samples),
        "cpu_us": (cpu1 - cpu0) * 1e6 / N,
        "delta": delta, "after": after,
    }
    for path, _ in files:
        os.unlink(path)
    return result


def fmt_rate(seconds):
    return f"{N / seconds:,.0f}" if seconds else "-"


def log_lines(larder):
    """Lines of the log at warning level or worse (the log level is warn:
    anything else there is unexpected too, so it is kept)."""
    if larder is None:
        return []
    return [line for line in larder.log().splitlines() if line.strip()]


def print_log_report(larders):
    print("\nLarder logs: lines at warning level or worse (verbatim; each distinct message "
          "once, with its count):\n")
    for label, larder in larders:
        lines = log_lines(larder)
        flagged = [line for line in lines if LOG_FLAGS.search(line)]
        other = [line for line in lines if not LOG_FLAGS.search(line)]
        print(f"- {label}: {len(flagged)} warning/error line(s), {len(other)} other line(s)")
        seen = {}
        for line in flagged + other:
            key = re.sub(r"^\S+ ", "", line)  # without the timestamp
            seen.setdefault(key, [line, 0])[1] += 1
        for first, n in list(seen.values())[:30]:
            print(f"    {first}" + (f"   (x{n})" if n > 1 else ""))
        if len(seen) > 30:
            print(f"    ... {len(seen) - 30} more distinct lines")


def state_stats(psql):
    """larder.flush_state (the applied marks: one row per slot on the
    cluster, one per apply connection on one Redis): rows, dead rows, when
    autovacuum last analyzed it."""
    return psql.query(
        "SELECT n_live_tup || ' rows, ' || n_dead_tup || ' dead, last autoanalyze ' || "
        "coalesce(to_char(last_autoanalyze, 'HH24:MI:SS'), 'never') || ', last analyze ' || "
        "coalesce(to_char(last_analyze, 'HH24:MI:SS'), 'never') FROM pg_stat_user_tables "
        "WHERE schemaname = 'larder' AND relname = 'flush_state'") or "not there"


def report(runs, phase, state):
    """The phase's tables; runs: its run_once() results."""

    def good(target):
        return [r for r in runs if r["target"] == target and not r["void"]]

    def med(target, key):
        vals = [r[key] for r in good(target) if r[key] is not None]
        return statistics.median(vals) if vals else None

    def ratio(key, invert):
        # Each round's cluster/one-Redis ratio (the two ran back to back),
        # the median over rounds; rates are N / seconds, so their ratio is
        # the inverse of the times'.
        per = []
        for rnd in sorted({r["round"] for r in runs}):
            pair = {r["target"]: r for r in runs if r["round"] == rnd and not r["void"]}
            if len(pair) == 2 and pair["cluster"][key] and pair["one-redis"][key]:
                a, b = pair["cluster"][key], pair["one-redis"][key]
                per.append(b / a if invert else a / b)
        return statistics.median(per) if per else None, len(per)

    rounds = len({r["round"] for r in runs})
    print(f"\n### Phase {phase}: {PHASE_TEXT[phase]}\n")
    print(f"Medians of {rounds} round(s); A/B is the median of each round's ratio, over the "
          f"{ratio('flush_s', True)[1]} round(s) with both runs valid. larder.flush_state at the "
          f"end of the phase: {state}.\n")
    print("| figure | (A) cluster, 3 shards | (B) one Redis | A/B |")
    print("|---|---:|---:|---:|")
    for label, key, unit in (("write rate, writes/s (all acknowledged)", "write_s", "rate"),
                             ("flush rate, rows/s (first write -> all N rows in PG)", "flush_s",
                              "rate"),
                             ("time to all N rows in PostgreSQL, s", "flush_s", "s"),
                             ("flush lag, s (all rows in PG - last write acked)", "lag_s", "s"),
                             ("Larder CPU per write over the run, us", "cpu_us", "us")):
        a, b = med("cluster", key), med("one-redis", key)
        if unit == "rate":
            r = ratio(key, True)[0]
            cells = (fmt_rate(a), fmt_rate(b))
        else:
            r = ratio(key, False)[0]
            cells = tuple("-" if x is None else (f"{x:.2f}" if unit == "s" else f"{x:.1f}")
                          for x in (a, b))
        print(f"| {label} | {cells[0]} | {cells[1]} | " + ("-" if r is None else f"{r:.2f}")
              + " |")
    print(f"\nEvery run of phase {phase}, in the order run (INFO keyspace_items at the end of "
          "the run; flushed_rows is cumulative, + this run's):\n")
    print("| round | target | writes/s | rows/s flushed | all rows after, s | lag, s | "
          "rows in PG at last ack | Larder CPU us/write | flushed_rows | flush_retries | "
          "dead_letters | coalesced (+run) | valid |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in runs:
        a, d = r["after"], r["delta"]
        print(f"| {r['round']} | {r['target']} | {fmt_rate(r['write_s'])} | "
              f"{fmt_rate(r['flush_s'])} | "
              + (f"{r['flush_s']:.2f}" if r["flush_s"] else "-") + " | "
              + (f"{r['lag_s']:.2f}" if r["lag_s"] is not None else "-") + " | "
              f"{r['rows_at_ack']:,} | {r['cpu_us']:.1f} | "
              f"{a['flushed_rows']:,} (+{d['flushed_rows']:,}) | {a['flush_retries']} | "
              f"{a['dead_letters']} | +{d['coalesced']:,} | "
              + ("yes" if not r["void"] else f"VOID: {r['void']}") + " |")


def main():
    pg = harness.PostgresServer()
    cluster = harness.RedisCluster(replicas=REPLICAS)
    single = harness.RedisServer()
    larders = {}
    psql = None
    children = []  # redis-cli processes
    workdir = harness.make_tmpdir("flushrate")
    failed = True
    try:
        load0 = os.getloadavg()
        pg.start()
        pg.create_database(DB)
        pg.psql(SCHEMA, dbname=DB)
        cluster.start()
        cluster_config = config(pg)
        if WAIT_REPLICAS:
            cluster_config["write_behind"] = {"wait_replicas": WAIT_REPLICAS,
                                              "wait_timeout": "1s"}
        larders["cluster"] = harness.ClusterLarder(cluster, config=cluster_config,
                                                   binary=LARDER_BIN,
                                                   threads=THREADS, log_level=LOG_LEVEL)
        larders["cluster"].start()
        single.start()
        larders["one-redis"] = harness.Larder(single, config=config(pg), binary=LARDER_BIN,
                                              threads=THREADS, log_level=LOG_LEVEL)
        larders["one-redis"].start()
        for target, larder in larders.items():
            harness.wait_until(lambda: items(larder).get("flusher_active") == 1, 30,
                               f"the {target} Larder's flusher to hold its lock")
        psql = Psql(pg)
        results = {}  # phase -> ([run_once results], flush_state at its end)
        for phase in PHASES:
            if phase == "analyzed":
                if "fresh" not in results:  # give flush_state its rows first
                    for target in TARGETS:
                        r = run_once(target, larders[target], psql, workdir, 98, children)
                        if r["void"]:
                            raise RuntimeError(f"the unmeasured {target} burst: {r['void']}")
                psql.command("ANALYZE larder.flush_state")
            runs = []
            for rnd in range(ROUNDS):
                order = TARGETS if rnd % 2 == 0 else tuple(reversed(TARGETS))
                for target in order:
                    r = run_once(target, larders[target], psql, workdir, rnd, children)
                    runs.append(r)
                    print(f"{phase} round {rnd + 1}/{ROUNDS} {target}: writes "
                          f"{r['write_s'] or 0:.2f} s, all rows in PostgreSQL "
                          f"{r['flush_s'] or 0:.2f} s"
                          + (f"  VOID: {r['void']}" if r["void"] else ""), file=sys.stderr)
            results[phase] = (runs, state_stats(psql))

        print(f"\n## Write-behind flush rate, 3 shards (A) against 1 (B)\n\n"
              f"Redis Cluster of 3 primaries x {REPLICAS} replica(s) against one redis-server, "
              f"write_behind.wait_replicas {WAIT_REPLICAS} (the cluster's Larder), "
              f"the same Larder build and config (Larder {THREADS} worker thread(s), write_behind "
              f"defaults: flush_interval 50ms, max_batch 1000, apply_connections 2; pool_size "
              f"4); N={N:,} SETs on distinct keys item:0..{N - 1} by {PIPES} x redis-cli "
              f"--pipe; PostgreSQL (fsync off) polled every {POLL_MS} ms; {os.cpu_count()} "
              f"cores, load average {load0[0]:.2f} at start, {os.getloadavg()[0]:.2f} at the "
              f"end.")
        for phase in PHASES:
            report(results[phase][0], phase, results[phase][1])
        print_log_report([("(A) cluster", larders.get("cluster")),
                          ("(B) one Redis", larders.get("one-redis"))])
        void = [r for runs, _ in results.values() for r in runs if r["void"]]
        failed = bool(void)
        if void:
            print(f"\n{len(void)} run(s) VOID (left out of the medians and ratios)",
                  file=sys.stderr)
    finally:
        if failed:
            for label, larder in larders.items():
                sys.stderr.write(f"\n--- {label} Larder log (tail) ---\n"
                                 f"{harness.tail(larder.log(), 30)}\n")
        for proc in children:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        if psql is not None:
            psql.close()
        harness.remove_tmpdir(workdir)
        stop_everything((larders.get("cluster"), larders.get("one-redis")), single, cluster, pg)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
