"""The second ledger: kill -9 Redis (not Larder) under a write load.

Real redis-server and PostgreSQL 15 on loopback, started through harness.py.
Writer threads write their own keys with strictly increasing values and
remember the last value Larder acknowledged. Redis, running with AOF
(appendfsync always, then everysec), is killed with SIGKILL at a random
moment, restarted from its files, and once Larder's queue has drained:

* what was lost matches docs/writes.md ("What a Redis crash loses"): with
  AOF, a crash of the Redis process loses no acknowledged write (for
  everysec, unless Redis logged that a slow disk made it postpone a write:
  then at most the last ~2 s),
* PostgreSQL's value equals what Redis holds and what a read through Larder
  shows,
* no row ever went backwards (an audit trigger records every row write).

Run: /usr/bin/python3 tests/integration/test_write_redis_crash.py [-v]
Set LARDER_CRASH_SEED to replay a run (the seed is printed).
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import LarderTestCase, PostgresServer, close_client, wait_until  # noqa: E402

import redis  # noqa: E402

DB = "app"
SCHEMA = r"""
CREATE TABLE counters (id bigint PRIMARY KEY, v bigint);
CREATE TABLE audit (seq bigserial PRIMARY KEY, id bigint NOT NULL, v bigint);
CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO audit (id, v) VALUES (NEW.id, NEW.v);
  RETURN NEW;
END $$;
CREATE TRIGGER counters_audit AFTER INSERT OR UPDATE ON counters
  FOR EACH ROW EXECUTE FUNCTION audit_row();
"""
KEYSPACES = {"counters": {"key": "ctr:{id}", "table": "public.counters", "shape": "string",
                          "columns": ["v"], "write": "behind", "ttl": 0}}
SEED = int(os.environ.get("LARDER_CRASH_SEED", str(int(time.time() * 1000) % 1000000)))
POSTPONED = "Asynchronous AOF fsync is taking too long"
PG: PostgresServer | None = None


def setUpModule():
    global PG
    sys.stderr.write(f"test_write_redis_crash: LARDER_CRASH_SEED={SEED}\n")
    PG = harness.module_postgres(DB, SCHEMA)


def rows(sql: str) -> list:
    out = PG.psql(sql, dbname=DB).strip()
    return [line.split("|") for line in out.split("\n")] if out else []


class Writers:
    """Each thread owns some keys and writes each with an increasing value.
    A reply saying Redis went away leaves that write's outcome unknown."""

    def __init__(self, larder, threads: int, keys_per_thread: int, start: dict):
        self.larder = larder
        self.keys = [[t * keys_per_thread + j + 1 for j in range(keys_per_thread)]
                     for t in range(threads)]
        self.attempted = dict(start)
        self.acked: dict = {}
        self.acks = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.unexpected = []
        self.threads = [threading.Thread(target=self.run, args=(t,), daemon=True)
                        for t in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()

    def run(self, t: int):
        c = self.larder.client(socket_timeout=5)
        try:
            i = 0
            while not self.stop.is_set():
                rid = self.keys[t][i % len(self.keys[t])]
                i += 1
                with self.lock:
                    value = self.attempted.get(rid, 0) + 1
                    self.attempted[rid] = value
                try:
                    ok = c.set(f"ctr:{rid}", str(value)) is True
                except redis.ResponseError as e:
                    if "Redis backend" in str(e):
                        return  # Redis is gone: this write's outcome is unknown
                    self.unexpected.append((rid, value, str(e)))
                    return
                except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
                    self.unexpected.append((rid, value, repr(e)))
                    return
                if not ok:
                    self.unexpected.append((rid, value, "bad reply"))
                    return
                with self.lock:
                    self.acked[rid] = value
                    self.acks += 1
        finally:
            close_client(c)

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(10)
        assert not any(t.is_alive() for t in self.threads), "writers still running"


class RedisCrashTest(LarderTestCase):

    def ledger(self, fsync: str, rounds: int):
        rng = random.Random(SEED + (1 if fsync == "always" else 2))
        rs = self.start_redis(extra_args=["--appendonly", "yes", "--appendfsync", fsync,
                                          "--auto-aof-rewrite-percentage", "0"])
        larder = self.start_larder(rs, config={
            "redis": {"reconnect_min": "20ms", "reconnect_max": "200ms"},
            "postgres": {"dsn": PG.dsn(DB), "pool_size": 2},
            "write_behind": {"flush_interval": "20ms", "retry_min": "50ms", "retry_max": "500ms",
                             "drain_timeout": "5s"},
            "keyspaces": KEYSPACES})
        reader = self.client(larder, socket_timeout=10)
        attempted: dict = {}
        acked: dict = {}
        base = 1000 if fsync == "always" else 2000
        for rnd in range(rounds):
            w = Writers(larder, threads=6, keys_per_thread=4, start=attempted)
            w.keys = [[base + k for k in ks] for ks in w.keys]
            w.acked = dict(acked)
            w.start()
            delay = rng.uniform(0.5, 2.5)
            time.sleep(delay)
            rs.kill()  # SIGKILL: the AOF is what Redis has
            w.join()
            self.assertEqual(w.unexpected, [], f"round {rnd}: unexpected replies")
            self.assertGreater(w.acks, 20, f"round {rnd}: too few acks")
            attempted, acked = dict(w.attempted), dict(w.acked)
            rs.restart()
            larder.wait_backend_status("ok", 15)
            wait_until(lambda: reader.execute_command("LARDER", "FLUSH") in (b"OK", "OK", True),
                       20, "the queue to drain after the restart")
            self.check(rs, reader, acked, attempted, fsync,
                       f"{fsync} round {rnd} (killed after {delay:.2f}s, {w.acks} acks)")

    def check(self, rs, reader, acked: dict, attempted: dict, fsync: str, what: str):
        ids = sorted(attempted)
        in_pg = {int(r[0]): int(r[1]) for r in rows(
            f"SELECT id, v FROM counters WHERE id IN ({', '.join(map(str, ids))})")}
        direct = rs.client()
        self.addCleanup(close_client, direct)
        lost, problems = [], []
        for rid in ids:
            got = in_pg.get(rid)
            if rid in acked and (got is None or got < acked[rid]):
                lost.append(f"ctr:{rid} acked {acked[rid]}, PostgreSQL has {got}")
            if got is not None and got > attempted[rid]:
                problems.append(f"ctr:{rid}: {got} was never written")
            cached = direct.get(f"ctr:{rid}")
            if cached is not None and got is not None and int(cached) != got:
                problems.append(f"ctr:{rid}: Redis holds {int(cached)}, PostgreSQL {got}")
            through = reader.get(f"ctr:{rid}")
            if (int(through) if through is not None else None) != got:
                problems.append(f"ctr:{rid}: Larder reads {through!r}, PostgreSQL {got}")
        history = {}
        for rid, v in rows(f"SELECT id, v FROM audit WHERE id IN ({', '.join(map(str, ids))}) "
                           "ORDER BY seq"):
            history.setdefault(int(rid), []).append(int(v))
        for rid, values in history.items():
            if any(b < a for a, b in zip(values, values[1:])):
                problems.append(f"ctr:{rid} went backwards: {values[-12:]}")
        self.assertEqual(problems[:20], [], f"{what} (seed {SEED})")
        # docs/writes.md: AOF loses nothing when only the Redis process dies,
        # except a write Redis itself postponed for a slow fsync (everysec).
        excused = fsync == "everysec" and POSTPONED in rs.log()
        if not excused:
            self.assertEqual(lost[:20], [], f"{what}: acknowledged writes lost (seed {SEED})")

    def test_kill_9_redis_aof_always(self):
        self.ledger("always", rounds=3)

    def test_kill_9_redis_aof_everysec(self):
        self.ledger("everysec", rounds=3)


if __name__ == "__main__":
    harness.main()
