"""Write-behind crash safety: kill -9 Larder under a sustained write load.

Real redis-server and PostgreSQL 15 on loopback, started through harness.py.
Several writer threads write their own keys with strictly increasing values
and remember the last value Larder ACKED for each key. Larder is killed with
SIGKILL at a random moment (several rounds), restarted on the same Redis and
PostgreSQL, and once its queue has drained:

* every acked write is in PostgreSQL (row value >= last acked value),
* PostgreSQL's value equals the value Redis holds for the key,
* values never went backwards: an audit trigger records every row write, and
  each key's sequence of committed values is non-decreasing.

Run: /usr/bin/python3 tests/integration/test_write_crash.py [-v]
Set LARDER_CRASH_SEED to replay a run (the seed is printed).
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import HeldSession, HOST, PG_BIN, LarderTestCase, PostgresServer, close_client, wait_until  # noqa: E402

import redis  # noqa: E402

DB = "app"
PSQL = os.path.join(PG_BIN, "psql")
if not os.path.exists(PSQL):
    import shutil
    PSQL = shutil.which("psql") or "psql"

SCHEMA = r"""
CREATE TABLE counters (id bigint PRIMARY KEY, v bigint);
CREATE TABLE hcounters (id bigint PRIMARY KEY, v bigint, w text);
CREATE TABLE audit (seq bigserial PRIMARY KEY, tbl text NOT NULL, op text NOT NULL,
                    id bigint NOT NULL, v bigint);
CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    INSERT INTO audit (tbl, op, id, v) VALUES (TG_TABLE_NAME, TG_OP, OLD.id, NULL);
    RETURN OLD;
  END IF;
  INSERT INTO audit (tbl, op, id, v) VALUES (TG_TABLE_NAME, TG_OP, NEW.id, NEW.v);
  RETURN NEW;
END $$;
CREATE TRIGGER counters_audit AFTER INSERT OR UPDATE OR DELETE ON counters
  FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE TRIGGER hcounters_audit AFTER INSERT OR UPDATE OR DELETE ON hcounters
  FOR EACH ROW EXECUTE FUNCTION audit_row();
"""

KEYSPACES = {
    "counters": {"key": "ctr:{id}", "table": "public.counters", "shape": "string",
                 "columns": ["v"], "write": "behind", "ttl": 0},
    "hcounters": {"key": "hctr:{id}", "table": "public.hcounters", "shape": "hash",
                  "columns": ["v", "w"], "write": "behind", "ttl": 0},
}
WRITE_BEHIND = {"flush_interval": "50ms", "max_batch": 1000, "max_queue": 1000000,
                "on_full": "error", "block_timeout": "2s", "retry_min": "100ms",
                "retry_max": "2s", "drain_timeout": "10s"}

SEED = int(os.environ.get("LARDER_CRASH_SEED", str(int(time.time() * 1000) % 1000000)))

PG: PostgresServer | None = None


def setUpModule():
    global PG
    sys.stderr.write(f"test_write_crash: LARDER_CRASH_SEED={SEED}\n")
    PG = PostgresServer()
    unittest.addModuleCleanup(PG.cleanup)
    PG.start()
    PG.create_database(DB)
    PG.psql(SCHEMA, dbname=DB)


def query(q: str) -> list:
    argv = [PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-F", "\x1f", "-R", "\x1e",
            "-P", "null=\x01", "-h", HOST, "-p", str(PG.port), "-U", PG.SUPERUSER, "-d", DB,
            "-c", q]
    res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                         env=PG._env())
    if res.returncode != 0:
        raise AssertionError(f"psql failed for {q!r}: {res.stderr.decode(errors='replace')}")
    out = res.stdout.decode()
    if out.endswith("\n"):
        out = out[:-1]
    return [[None if v == "\x01" else v for v in r.split("\x1f")]
            for r in out.split("\x1e") if r != ""]


def pg_values(table: str, ids) -> dict:
    id_list = ", ".join(str(int(i)) for i in ids)
    return {int(r[0]): (int(r[1]) if r[1] is not None else None)
            for r in query(f"SELECT id, v FROM {table} WHERE id IN ({id_list})")}


def audit_history(table: str, ids) -> dict:
    id_list = ", ".join(str(int(i)) for i in ids)
    out = {}
    for rid, op, v in query(f"SELECT id, op, v FROM audit WHERE tbl = '{table}' AND id IN "
                            f"({id_list}) ORDER BY seq"):
        out.setdefault(int(rid), []).append((op, int(v) if v is not None else None))
    return out


def queue_depth(client) -> int:
    total = 0
    for entry in client.execute_command("LARDER", "PENDING"):
        d = {k.decode() if isinstance(k, bytes) else k: v for k, v in zip(entry[0::2], entry[1::2])}
        total += int(d["depth"])
    return total


class Load:
    """Writer threads, each owning some keys of both keyspaces, writing each key
    with a strictly increasing counter. `acked` = last value acked per key;
    `attempted` = highest value ever sent per key (acked or not)."""

    def __init__(self, larder: harness.Larder, writers: int, keys_per_writer: int, base: int,
                 start_values: dict | None = None, hash_command: str = "HSET"):
        self.larder = larder
        # HSET's reply depends on the row, so on a cold key it reads PostgreSQL
        # first; HMSET never does (use it while the flush is held by a lock).
        self.hash_command = hash_command
        self.writers = writers
        self.keys = [(kind, base + w * keys_per_writer + j)
                     for w in range(writers) for j in range(keys_per_writer)
                     for kind in ("ctr", "hctr")]
        self.by_writer = [[k for k in self.keys if (k[1] - base) // keys_per_writer == w]
                          for w in range(writers)]
        self.acked: dict = {}
        self.attempted: dict = dict(start_values or {})
        self.stop = threading.Event()
        self.threads = []
        self.acks = 0
        self.lock = threading.Lock()
        self.unexpected = []

    def start(self):
        for w in range(self.writers):
            t = threading.Thread(target=self.run, args=(w,), daemon=True)
            t.start()
            self.threads.append(t)

    def run(self, w: int):
        c = self.larder.client(socket_timeout=5, socket_connect_timeout=2)
        try:
            i = 0
            while not self.stop.is_set() and i < 200000:
                kind, rid = self.by_writer[w][i % len(self.by_writer[w])]
                i += 1
                key = f"{kind}:{rid}"
                with self.lock:
                    value = self.attempted.get((kind, rid), 0) + 1
                    self.attempted[(kind, rid)] = value
                try:
                    if kind == "ctr":
                        ok = c.set(key, str(value)) is True
                    else:
                        reply = c.execute_command(self.hash_command, key, "v", value, "w", f"w{w}")
                        ok = reply in (0, 1, 2) if self.hash_command == "HSET" else bool(reply)
                except (redis.ConnectionError, redis.TimeoutError, OSError):
                    return  # Larder was killed: this write's outcome is unknown
                except redis.ResponseError as e:
                    self.unexpected.append((key, value, str(e)))
                    return
                if not ok:
                    self.unexpected.append((key, value, "bad reply"))
                    return
                with self.lock:
                    self.acked[(kind, rid)] = value
                    self.acks += 1
        finally:
            close_client(c)

    def join(self, timeout: float = 15.0):
        self.stop.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        alive = sum(t.is_alive() for t in self.threads)
        if alive:
            raise AssertionError(f"{alive} writer threads still running")


class CrashTest(LarderTestCase):

    def start_stack(self):
        redis_server = self.start_redis()
        larder = self.start_larder(redis_server, config={
            "postgres": {"dsn": PG.dsn(DB), "pool_size": 4},
            "write_behind": WRITE_BEHIND, "keyspaces": KEYSPACES})
        direct = redis_server.client()
        self.addCleanup(close_client, direct)
        return larder, redis_server, direct

    def wait_drained(self, larder, timeout: float = 30.0):
        c = larder.client(socket_timeout=5)
        try:
            wait_until(lambda: queue_depth(c) == 0, timeout, "the write queues to drain")
        finally:
            close_client(c)

    def check(self, load: Load, direct, what: str):
        """After a drain: acked writes in PostgreSQL, equal to Redis, no regressions."""
        larder_client = load.larder.client(socket_timeout=10)
        self.addCleanup(close_client, larder_client)
        for kind, table in (("ctr", "counters"), ("hctr", "hcounters")):
            ids = sorted(rid for k, rid in load.keys if k == kind)
            in_pg = pg_values(table, ids)
            problems = []
            for rid in ids:
                acked = load.acked.get((kind, rid))
                attempted = load.attempted.get((kind, rid))
                got = in_pg.get(rid)
                if acked is not None and (got is None or got < acked):
                    problems.append(f"{kind}:{rid} acked {acked} but PostgreSQL has {got}")
                if got is not None and attempted is not None and got > attempted:
                    problems.append(f"{kind}:{rid} PostgreSQL has {got} > ever written "
                                    f"{attempted}")
                if kind == "ctr":
                    cached = direct.get(f"ctr:{rid}")
                else:
                    cached = direct.hget(f"hctr:{rid}", "v")
                if cached is not None and got is not None and int(cached) != got:
                    problems.append(f"{kind}:{rid} Redis holds {int(cached)}, PostgreSQL {got}")
                # A hash written without its whole row may be left uncached
                # (HMSET on a cold key): then a read through Larder must agree.
                through = (larder_client.get(f"ctr:{rid}") if kind == "ctr"
                           else larder_client.hget(f"hctr:{rid}", "v"))
                if (int(through) if through is not None else None) != got:
                    key = f"{kind}:{rid}"
                    marker = direct.hgetall(f"__larder:pending:{key}")
                    problems.append(f"{key} reads {through!r} through Larder, "
                                    f"PostgreSQL has {got} (Redis: type {direct.type(key)!r}, "
                                    f"{direct.hgetall(key) if kind == 'hctr' else cached!r}, "
                                    f"marker {marker!r}, lease "
                                    f"{direct.get(f'__larder:lease:{key}')!r} "
                                    f"pttl {direct.pttl(f'__larder:lease:{key}')}, "
                                    f"stats {load.larder.info_larder().get('keyspace_' + table)})")
            history = audit_history(table, ids)
            for rid, events in history.items():
                values = [v for op, v in events if op != "DELETE"]
                if any(op == "DELETE" for op, _ in events):
                    problems.append(f"{kind}:{rid} was deleted: {events[-10:]}")
                for a, b_ in zip(values, values[1:]):
                    if b_ < a:
                        problems.append(f"{kind}:{rid} went backwards {a} -> {b_} "
                                        f"(history tail {values[-12:]})")
                        break
            self.assertEqual(problems[:20], [], f"{what} (seed {SEED}): {len(problems)} problems")

    def test_kill_9_under_write_load(self):
        rng = random.Random(SEED)
        larder, redis_server, direct = self.start_stack()
        attempted: dict = {}
        acked_total: dict = {}
        total_acks = 0
        rounds = 8
        load = None
        for rnd in range(rounds):
            load = Load(larder, writers=8, keys_per_writer=4, base=1000, start_values=attempted)
            load.acked = dict(acked_total)
            load.start()
            delay = rng.uniform(0.5, 4.0)
            time.sleep(delay)
            with load.lock:
                acks_before_kill = load.acks
            larder.kill()  # SIGKILL
            load.join()
            self.assertEqual(load.unexpected, [], f"round {rnd}: unexpected replies")
            self.assertGreater(acks_before_kill, 20, f"round {rnd}: too few writes acked")
            total_acks += load.acks
            attempted = dict(load.attempted)
            acked_total = dict(load.acked)
            larder.start()  # same config, same Redis and PostgreSQL
            self.wait_drained(larder)
            self.check(load, direct, f"round {rnd} (killed after {delay:.2f}s, "
                                     f"{load.acks} acks)")
        self.assertGreater(total_acks, 300)

    def test_kill_9_with_flush_held(self):
        """Killed while the flusher is blocked mid-transaction with a big
        backlog; restarted while still blocked; then released."""
        larder, redis_server, direct = self.start_stack()
        held = HeldSession(PG, DB)
        self.addCleanup(held.kill)
        load = Load(larder, writers=4, keys_per_writer=5, base=5000, hash_command="HMSET")
        held.lock("counters, hcounters")
        try:
            load.start()
            time.sleep(2.0)
            larder.kill()
            load.join()
            self.assertEqual(load.unexpected, [])
            self.assertGreater(load.acks, 100)
            self.assertGreater(direct.xlen("__larder:q:counters"), 0)
            # Nothing committed while held (the audit table is not locked).
            self.assertEqual(audit_history("counters", [k[1] for k in load.keys]), {})
            larder.start()
            time.sleep(0.5)
        finally:
            held.release()
        self.wait_drained(larder)
        self.check(load, direct, "after a kill with the flush held")

        # A second load on the restarted Larder, killed once more, then drained.
        load2 = Load(larder, writers=4, keys_per_writer=5, base=5000,
                     start_values=load.attempted)
        load2.acked = dict(load.acked)
        load2.start()
        time.sleep(random.Random(SEED + 1).uniform(1.0, 3.0))
        larder.kill()
        load2.join()
        self.assertEqual(load2.unexpected, [])
        larder.start()
        self.wait_drained(larder)
        self.check(load2, direct, "after the second kill")


if __name__ == "__main__":
    harness.main()
