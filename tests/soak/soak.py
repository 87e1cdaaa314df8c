"""Larder soak: a bounded run of a mixed workload with faults, then a check.

Run it through tests/soak/soak.sh (see docs/soak.md), or directly:

    /usr/bin/python3 tests/soak/soak.py --larder build/larder --duration 60

What it does (every process on 127.0.0.1, in temp dirs, via tests/integration/harness.py):

1. Starts PostgreSQL 15 (as user postgres through runuser when root), a
   redis-server with `appendonly yes, appendfsync always` (so an acknowledged
   write survives a Redis restart, docs/writes.md) and `noeviction`, and
   Larder with two write-behind keyspaces: `sstr:{id}` (string, public.soak_str)
   and `shash:{id}` (hash, public.soak_hash), ttl 20s, negative_ttl 5s, and
   the admin HTTP port.
2. Starts --workers client processes (soak_worker.py) of --threads writer
   threads each, for --duration seconds: reads (hits and misses), writes with a
   per-key version journaled before the send and after the ack, pass-through
   commands, pipelines, pub/sub, connection churn, pipelines cut by a reset.
3. Injects faults on a schedule (all from this process' main thread):
   Larder kill -9 + restart once (at 15% of the run), Redis SIGTERM + restart
   and PostgreSQL fast shutdown + start (alternating, between 22% and 82%),
   and SIGKILL of a client process every max(10 s, duration/20) (restarted
   10 s later, continuing from its journal). No faults after 85%.
4. Samples Larder's VmRSS, open fds, threads, INFO larder (clients, queue
   depth) and /metrics queue depth every --sample-interval seconds.
5. At the end: stops the clients, LARDER FLUSH until every queue is empty,
   then checks in PostgreSQL that each key holds its last acked version (or a
   higher version whose outcome was unknown), that reads through Larder agree
   with PostgreSQL, that no key's committed versions ever went backwards (an
   audit trigger), no dead letters, no wrong values read, and that RSS after
   the warm-up stayed flat (last third's average within --rss-bound of the
   first third's, on the post-warm-up samples of the last Larder process).
   Then SIGTERM to Larder (must exit 0) and its log must have no red flags.

Exit status: 0 all checks passed, 1 a check failed, 2 the soak could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from harness import HOST, Larder, PostgresServer, RedisServer, close_client, free_port  # noqa: E402
import redis  # noqa: E402
import soak_worker as sw  # noqa: E402

DB = "soak"

SCHEMA = f"""
CREATE TABLE soak_str (id bigint PRIMARY KEY, v text);
CREATE TABLE soak_hash (id bigint PRIMARY KEY, ver bigint, a text, b text);
CREATE TABLE audit (seq bigserial PRIMARY KEY, tbl text NOT NULL, op text NOT NULL,
                    id bigint NOT NULL, ver bigint);
CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE r record; v bigint;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  IF r.id < {sw.OWN_BASE} THEN RETURN NULL; END IF;
  IF TG_OP = 'DELETE' THEN
    v := NULL;
  ELSIF TG_TABLE_NAME = 'soak_str' THEN
    v := CASE WHEN NEW.v ~ '^[0-9]+:' THEN split_part(NEW.v, ':', 1)::bigint END;
  ELSE
    v := NEW.ver;
  END IF;
  INSERT INTO audit (tbl, op, id, ver) VALUES (TG_TABLE_NAME, TG_OP, r.id, v);
  RETURN NULL;
END $$;
CREATE TRIGGER soak_str_audit AFTER INSERT OR UPDATE OR DELETE ON soak_str
  FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE TRIGGER soak_hash_audit AFTER INSERT OR UPDATE OR DELETE ON soak_hash
  FOR EACH ROW EXECUTE FUNCTION audit_row();
INSERT INTO soak_str SELECT g, 'pre:' || g FROM generate_series(1, {sw.PRELOAD_ROWS}) g;
INSERT INTO soak_hash SELECT g, 0, 'pa' || g, 'pb' || g FROM generate_series(1, {sw.PRELOAD_ROWS}) g;
"""

KEYSPACES = {
    sw.STR_KS: {"key": f"{sw.STR_KS}:{{id}}", "table": "public.soak_str", "shape": "string",
                "columns": ["v"], "write": "behind", "ttl": "20s", "ttl_jitter": "10%",
                "negative_ttl": "5s"},
    sw.HASH_KS: {"key": f"{sw.HASH_KS}:{{id}}", "table": "public.soak_hash", "shape": "hash",
                 "columns": ["ver", "a", "b"], "write": "behind", "ttl": "20s", "ttl_jitter": "10%",
                 "negative_ttl": "5s"},
}
WRITE_BEHIND = {"flush_interval": "50ms", "max_batch": 1000, "max_queue": 1000000,
                "on_full": "error", "retry_min": "100ms", "retry_max": "2s", "drain_timeout": "30s"}
REDIS_ARGS = ["--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction",
              "--loglevel", "notice"]

FAULT_MARGIN = 10.0        # s after a fault ends that still count as "during the fault"
WORKER_RESTART_DELAY = 10.0


def log(msg: str):
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


class SoakError(Exception):
    """The soak itself could not run (exit 2)."""


# ------------------------------------------------------------------ sampling


def proc_status(pid: int) -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon", "Threads"):
                    out[k] = int(v.split()[0])
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
        return {}
    return out


def metrics_queue_depth(admin_port: int):
    try:
        with urllib.request.urlopen(f"http://{HOST}:{admin_port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except Exception:  # noqa: BLE001
        return None
    total = 0
    found = False
    for line in text.splitlines():
        if line.startswith("larder_write_queue_depth{"):
            total += int(float(line.split()[-1]))
            found = True
    return total if found else None


class Sampler(threading.Thread):
    def __init__(self, soak: "Soak", interval: float):
        super().__init__(daemon=True, name="sampler")
        self.soak = soak
        self.interval = interval
        self.samples: list = []
        self.stop = threading.Event()

    def run(self):
        next_t = time.monotonic()
        while not self.stop.is_set():
            try:
                self.samples.append(self.sample())
            except Exception as e:  # noqa: BLE001 - a sample must never end the soak
                log(f"sampler: {e!r}")
            next_t += self.interval
            self.stop.wait(max(0.0, next_t - time.monotonic()))

    def sample(self) -> dict:
        s = self.soak
        larder = s.larder
        t = time.monotonic() - s.t0
        pid = larder.proc.pid if larder.proc is not None and larder.proc.poll() is None else None
        row = {"t": round(t, 1), "pid": pid, "rss_kb": None, "anon_kb": None, "hwm_kb": None, "fds": None,
               "threads": None, "clients": None, "qdepth": None, "metrics_qdepth": None,
               "redis_mem": None, "load1": None, "fault": s.active_fault or ""}
        with contextlib.suppress(OSError, ValueError):
            with open("/proc/loadavg") as f:
                row["load1"] = float(f.read().split()[0])
        if pid:
            st = proc_status(pid)
            row.update(rss_kb=st.get("VmRSS"), anon_kb=st.get("RssAnon"), hwm_kb=st.get("VmHWM"), fds=st.get("fds"),
                       threads=st.get("Threads"))
            c = None
            try:
                c = redis.Redis(host=HOST, port=larder.port, socket_timeout=2, socket_connect_timeout=2)
                info = c.info("larder")
                row["clients"] = info.get("connected_clients")
                q = 0
                for ks in KEYSPACES:
                    d = info.get(f"keyspace_{ks}")
                    if isinstance(d, dict):
                        q += int(d.get("queue_depth", 0))
                row["qdepth"] = q
            except Exception:  # noqa: BLE001
                pass
            finally:
                if c is not None:
                    close_client(c)
            row["metrics_qdepth"] = metrics_queue_depth(s.admin_port)
        if s.redis.running():
            c = None
            try:
                c = s.redis.client(socket_timeout=2, socket_connect_timeout=2)
                row["redis_mem"] = c.info("memory").get("used_memory")
            except Exception:  # noqa: BLE001
                pass
            finally:
                if c is not None:
                    close_client(c)
        return row


# ------------------------------------------------------------------ the soak


class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.work = harness.make_tmpdir("soak")
        os.chmod(self.work, 0o755)
        self.out = args.out or os.path.join("/tmp", "larder-soak-" + time.strftime("%Y%m%d-%H%M%S"))
        os.makedirs(self.out, exist_ok=True)
        self.faults: list = []          # dicts: kind, start, end, ok, detail
        self.active_fault = None
        self.crashes: list = []         # unexpected exits of Larder / Redis / PostgreSQL
        self.workers: dict = {}         # id -> Popen
        self.incarnation: dict = {}
        self.respawn_at: dict = {}      # id -> monotonic
        self.worker_exits: list = []
        self.larder_starts: list = []   # (t, pid)
        self.t0 = time.monotonic()
        self.admin_port = free_port()

    # -- set-up
    def start_stack(self):
        a = self.args
        log(f"work dir {self.work}, results in {self.out}")
        self.pg = PostgresServer()
        self.pg.start()
        self.pg.create_database(DB)
        self.pg.psql(SCHEMA, dbname=DB, timeout=120)
        self.pg.psql("VACUUM ANALYZE", dbname=DB, timeout=120)
        log(f"PostgreSQL on {HOST}:{self.pg.port}, {sw.PRELOAD_ROWS} rows preloaded per table")
        self.redis = RedisServer(extra_args=REDIS_ARGS)
        self.redis.start()
        c = self.redis.client()
        try:
            got = (c.config_get("appendonly").get("appendonly"), c.config_get("appendfsync").get("appendfsync"))
        finally:
            close_client(c)
        if got != ("yes", "always"):
            raise SoakError(f"redis-server persistence is {got}, wanted appendonly yes / appendfsync always")
        log(f"redis-server on {HOST}:{self.redis.port} (appendonly yes, appendfsync always)")
        self.larder = Larder(self.redis, binary=a.larder, threads=a.larder_threads, log_level="info",
                             config={"admin": f"{HOST}:{self.admin_port}",
                                     "postgres": {"dsn": self.pg.dsn(DB), "pool_size": 4},
                                     "read_through": {"negative_cache_entries": a.negative_cache_entries},
                                     "write_behind": WRITE_BEHIND, "keyspaces": KEYSPACES})
        self.start_larder()
        log(f"Larder {a.larder} on {HOST}:{self.larder.port}, admin {self.admin_port}, pid {self.larder.pid}")

    def start_larder(self):
        self.larder.start(timeout=30)
        with open(os.path.join(self.work, "larder.port.tmp"), "w") as f:
            f.write(str(self.larder.port))
        os.replace(os.path.join(self.work, "larder.port.tmp"), os.path.join(self.work, "larder.port"))
        self.larder_starts.append((time.monotonic() - self.t0, self.larder.pid))

    def spawn_worker(self, w: int):
        a = self.args
        inc = self.incarnation.get(w, -1) + 1
        self.incarnation[w] = inc
        argv = [sys.executable, os.path.join(HERE, "soak_worker.py"), "--id", str(w),
                "--workers", str(a.workers), "--incarnation", str(inc), "--work", self.work,
                "--t0", repr(self.t0), "--deadline", repr(self.deadline),
                "--threads", str(a.threads), "--keys-per-thread", str(a.keys_per_thread),
                "--rate", str(a.rate), "--seed", str(a.seed)]
        self.workers[w] = harness._spawn(argv, os.path.join(self.work, f"worker-{w}.log"))

    # -- faults
    def schedule(self) -> list:
        a = self.args
        d = a.duration
        ev = []
        if "larder_kill" in a.faults:
            ev.append((0.15 * d, "larder_kill"))
        major = [k for k in ("redis_restart", "pg_restart") if k in a.faults]
        n = a.restarts if a.restarts is not None else max(1, round(d / 150))
        total = n * len(major)
        span = 0.60 * d
        for i in range(total):
            slot = span / total
            t = 0.22 * d + (i + 0.5) * slot + self.rng.uniform(-0.1, 0.1) * slot
            ev.append((t, major[i % len(major)]))
        if "client_kill" in a.faults:
            period = max(10.0, d / 20)
            t = 0.12 * d
            while t < 0.85 * d:
                ev.append((t + self.rng.uniform(0, period / 3), "client_kill"))
                t += period
        return sorted(ev)

    def run_fault(self, kind: str):
        start = time.monotonic() - self.t0
        rec = {"kind": kind, "start": round(start, 1), "ok": True, "detail": ""}
        self.active_fault = kind
        try:
            if kind == "larder_kill":
                old = self.larder.pid
                self.larder.kill()
                time.sleep(self.rng.uniform(0.5, 2.0))
                self.start_larder()
                rec["detail"] = f"pid {old} -> {self.larder.pid}"
            elif kind == "redis_restart":
                t = time.monotonic()
                self.redis.stop()
                stopped = time.monotonic() - t
                rc = self.redis.proc.returncode
                down = self.rng.uniform(1.0, 3.0)
                time.sleep(down)
                self.redis.restart(timeout=60)
                rec["detail"] = f"SIGTERM exit {rc} after {stopped:.1f}s, down {down:.1f}s"
            elif kind == "pg_restart":
                t = time.monotonic()
                self.pg.stop()
                stopped = time.monotonic() - t
                down = self.rng.uniform(1.0, 3.0)
                time.sleep(down)
                self.pg.restart()
                rec["detail"] = f"fast shutdown in {stopped:.1f}s, down {down:.1f}s"
            elif kind == "client_kill":
                alive = [w for w, p in self.workers.items() if p.poll() is None]
                if not alive:
                    rec.update(ok=False, detail="no client process alive")
                else:
                    w = self.rng.choice(alive)
                    self.workers[w].kill()
                    self.workers[w].wait(10)
                    with harness._registry_lock:
                        harness._live_processes.discard(self.workers[w])
                    self.respawn_at[w] = time.monotonic() + WORKER_RESTART_DELAY
                    rec["detail"] = f"SIGKILL client process {w} (incarnation {self.incarnation[w]})"
        except Exception as e:  # noqa: BLE001
            rec.update(ok=False, detail=f"{rec['detail']} FAILED: {e}"[:2000])
            log(f"fault {kind} failed: {e}")
        finally:
            self.active_fault = None
        rec["end"] = round(time.monotonic() - self.t0, 1)
        self.faults.append(rec)
        log(f"fault {kind} at {rec['start']}s ({rec['end'] - rec['start']:.1f}s): {rec['detail']}")
        if not rec["ok"] and kind != "client_kill":
            self.ensure_up(f"after the failed {kind}")

    def ensure_up(self, why: str):
        """Brings back whatever is down; records an unexpected exit as a crash."""
        for name, server, restart in (("postgres", self.pg, self.pg.restart),
                                      ("redis", self.redis, lambda: self.redis.restart(timeout=60)),
                                      ("larder", self.larder, self.start_larder)):
            if server.proc is not None and server.proc.poll() is not None:
                rc = server.proc.returncode
                t = round(time.monotonic() - self.t0, 1)
                self.crashes.append({"what": name, "t": t, "returncode": rc, "why": why,
                                     "log_tail": harness.tail(server.log(), 30)})
                log(f"{name} had exited ({rc}) {why}; restarting it")
                with harness._registry_lock:
                    harness._live_processes.discard(server.proc)
                restart()

    # -- the run
    def run(self) -> int:
        a = self.args
        self.start_stack()
        self.t0 = time.monotonic()
        self.larder_starts = [(0.0, self.larder.pid)]
        self.deadline = self.t0 + a.duration
        events = self.schedule()
        log(f"soak for {a.duration}s: {a.workers} client processes x {a.threads} writer threads "
            f"(+ subscriber + churn), {a.rate}/s per thread; {len(events)} faults scheduled")
        sampler = Sampler(self, a.sample_interval)
        sampler.start()
        for w in range(a.workers):
            self.spawn_worker(w)
        next_progress = self.t0 + 60
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                break
            if events and now - self.t0 >= events[0][0]:
                _, kind = events.pop(0)
                self.run_fault(kind)
                continue
            for w, t in list(self.respawn_at.items()):
                if now >= t:
                    del self.respawn_at[w]
                    if self.deadline - now > 5:
                        self.spawn_worker(w)
            for w, p in self.workers.items():
                if p.poll() is not None and w not in self.respawn_at and p.returncode != -signal.SIGKILL \
                        and not getattr(p, "_soak_noted", False):
                    p._soak_noted = True
                    self.worker_exits.append({"worker": w, "rc": p.returncode,
                                              "t": round(now - self.t0, 1),
                                              "log": harness.tail(harness.read_text(
                                                  os.path.join(self.work, f"worker-{w}.log")), 20)})
                    log(f"client process {w} exited early with {p.returncode}")
            self.ensure_up("during the run")
            if now >= next_progress:
                next_progress += 60
                last = sampler.samples[-1] if sampler.samples else {}
                log(f"t={now - self.t0:.0f}s rss={last.get('rss_kb')} kB fds={last.get('fds')} "
                    f"clients={last.get('clients')} queue={last.get('qdepth')}")
            time.sleep(0.2)
        self.workload_end = time.monotonic() - self.t0
        log("duration reached: stopping the clients")
        for p in self.workers.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        end = time.monotonic() + 40
        for w, p in self.workers.items():
            try:
                p.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"client process {w} did not stop in time: SIGKILL")
                p.kill()
                p.wait(10)
            with harness._registry_lock:
                harness._live_processes.discard(p)
        self.ensure_up("at the end of the run")
        time.sleep(2 * a.sample_interval)
        sampler.stop.set()
        sampler.join(10)
        self.samples = sampler.samples
        return self.finish()

    # -- the end
    def drain(self) -> dict:
        start = time.monotonic()
        res = {"flush_replies": [], "ok": False}
        c = self.larder.client(socket_timeout=60)
        try:
            while time.monotonic() - start < self.args.drain_timeout:
                try:
                    reply = c.execute_command("LARDER", "FLUSH")
                    res["flush_replies"].append(str(reply))
                except Exception as e:  # noqa: BLE001
                    res["flush_replies"].append(f"error: {e}")
                    time.sleep(1)
                    continue
                pend = pending(c)
                res["pending"] = pend
                if all(v["depth"] == 0 for v in pend.values()):
                    res["ok"] = True
                    break
                time.sleep(0.5)
        finally:
            close_client(c)
        res["seconds"] = round(time.monotonic() - start, 2)
        return res

    def pg_rows(self) -> dict:
        out = {}
        q = (f"SELECT 's', id, v, NULL, NULL FROM soak_str WHERE id >= {sw.OWN_BASE} "
             f"UNION ALL SELECT 'h', id, ver::text, a, b FROM soak_hash WHERE id >= {sw.OWN_BASE}")
        text = self.pg.psql(q, dbname=DB, timeout=120)
        for line in text.splitlines():
            kind, rid, x, y, z = line.split("|")
            rid = int(rid)
            if kind == "s":
                out[f"{sw.STR_KS}:{rid}"] = sw.state_of_string(rid, x)
            else:
                fields = {"ver": x, "a": y, "b": z}
                out[f"{sw.HASH_KS}:{rid}"] = sw.state_of_hash(rid, {k: v for k, v in fields.items() if v != ""})
        return out

    def verify(self) -> dict:
        a = self.args
        journals = {}
        for w in range(a.workers):
            for t in range(a.threads):
                journals.update(sw.read_journal(os.path.join(self.work, f"journal-w{w}-t{t}.log")))
        in_pg = self.pg_rows()
        res = {"keys_written": 0, "keys_with_ack": 0, "acked_writes": 0, "writes_attempted": 0,
               "writes_error_reply": 0, "writes_unknown": 0, "final_equals_last_ack": 0,
               "final_is_later_unacked": 0, "lost": [], "cache_mismatch": [], "unexpected_rows": []}
        keys = sorted(journals)
        for key in keys:
            rec = journals[key]
            ops, acked = rec["ops"], rec["acked"]
            if not ops:
                continue
            res["keys_written"] += 1
            res["writes_attempted"] += len(ops)
            res["acked_writes"] += len(acked)
            res["writes_error_reply"] += len(rec["errors"])
            res["writes_unknown"] += len([v for v in ops if v not in acked and v not in rec["errors"]])
            last = max(acked) if acked else 0
            state = in_pg.get(key)
            allowed_last = (None if ops.get(last) == "D" else last) if last else None
            later = {v: (None if op == "D" else v) for v, op in ops.items() if v > last and v not in acked}
            if acked:
                res["keys_with_ack"] += 1
            if state == allowed_last and (last or state is None):
                res["final_equals_last_ack"] += 1
            elif state in later.values():
                res["final_is_later_unacked"] += 1
            else:
                older = [v for v, op in ops.items() if v < last and (None if op == "D" else v) == state]
                res["lost"].append({"key": key, "postgres": state, "last_acked": last,
                                    "last_acked_op": ops.get(last), "higher_unacked": sorted(later)[-5:],
                                    "matches_older_version": older[-1:] or None,
                                    "recent_ops": sorted(ops.items())[-6:],
                                    "recent_acked": sorted(acked)[-6:],
                                    "recent_errors": sorted(rec["errors"].items())[-6:]})
        for key, state in in_pg.items():
            if key not in journals and state is not None:
                res["unexpected_rows"].append({"key": key, "postgres": state})
        # reads through Larder must agree with PostgreSQL now that the queues are empty
        c = self.larder.client(socket_timeout=60)
        try:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                p = c.pipeline(transaction=False)
                for key in chunk:
                    if key.startswith(sw.STR_KS + ":"):
                        p.get(key)
                    else:
                        p.hgetall(key)
                for key, val in zip(chunk, p.execute(raise_on_error=False)):
                    kind, rid = sw.parse_key(key)
                    if isinstance(val, Exception):
                        got = f"error: {val}"
                    elif kind == sw.STR_KS:
                        got = sw.state_of_string(rid, val)
                    else:
                        got = sw.state_of_hash(rid, val)
                    if got != in_pg.get(key):
                        res["cache_mismatch"].append({"key": key, "larder": got, "postgres": in_pg.get(key)})
            pend = pending(c)
        finally:
            close_client(c)
        res["dead_letters"] = sum(v["dead_letters"] for v in pend.values())
        # committed versions of a key never go backwards
        q = ("SELECT tbl, id, prev, ver, seq FROM (SELECT tbl, id, ver, seq, lag(ver) OVER "
             "(PARTITION BY tbl, id ORDER BY seq) AS prev FROM audit WHERE op <> 'DELETE') s "
             "WHERE prev > ver ORDER BY seq LIMIT 50")
        res["regressions"] = [line for line in self.pg.psql(q, dbname=DB, timeout=300).splitlines() if line]
        res["audit_rows"] = int(self.pg.psql("SELECT count(*) FROM audit", dbname=DB).strip())
        return res

    def inject_loss(self, n: int):
        """Self-test of the checker: deletes the rows of n keys whose last acked
        write was not a DEL, behind Larder's back. The run must then FAIL."""
        a = self.args
        victims = []
        for w in range(a.workers):
            for t in range(a.threads):
                for key, rec in sw.read_journal(os.path.join(self.work, f"journal-w{w}-t{t}.log")).items():
                    if rec["acked"] and rec["ops"][max(rec["acked"])] != "D" and max(rec["ops"]) in rec["acked"]:
                        victims.append(key)
        victims = sorted(victims)[:n]
        for key in victims:
            kind, rid = sw.parse_key(key)
            table = "soak_str" if kind == sw.STR_KS else "soak_hash"
            self.pg.psql(f"DELETE FROM {table} WHERE id = {rid}", dbname=DB)
        log(f"--inject-loss: deleted the PostgreSQL rows of {victims}")

    def pubsub_probe(self) -> dict:
        c = self.larder.client(socket_timeout=5)
        got = 0
        try:
            p = c.pubsub()
            p.subscribe("soak:final")
            end = time.monotonic() + 5
            while time.monotonic() < end:   # until Redis confirmed the subscription
                m = p.get_message(timeout=0.5)
                if m is not None and m["type"] == "subscribe":
                    break
            pub = self.larder.client(socket_timeout=5)
            try:
                for i in range(10):
                    pub.publish("soak:final", f"m{i}")
            finally:
                close_client(pub)
            end = time.monotonic() + 5
            while got < 10 and time.monotonic() < end:
                m = p.get_message(timeout=0.5)
                if m is not None and m["type"] == "message":
                    got += 1
            p.close()
        except Exception as e:  # noqa: BLE001
            return {"ok": False, "received": got, "error": str(e)}
        finally:
            close_client(c)
        return {"ok": got == 10, "received": got}

    def rss_analysis(self) -> dict:
        a = self.args
        final_pid = self.larder_starts[-1][1]
        pid_start = self.larder_starts[-1][0]
        warm = a.warmup if a.warmup is not None else max(30.0, 0.2 * a.duration)
        seg = [s for s in self.samples if s["pid"] == final_pid and s["rss_kb"]
               and s["t"] >= pid_start + warm and s["t"] <= self.workload_end]
        all_rss = [s for s in self.samples if s["rss_kb"]]
        res = {"final_pid": final_pid, "final_pid_started_at_s": round(pid_start, 1),
               "warmup_s": warm, "samples_total": len(self.samples), "samples_evaluated": len(seg),
               "bound": a.rss_bound}
        if all_rss:
            res["rss_kb_min"] = min(s["rss_kb"] for s in all_rss)
            res["rss_kb_max"] = max(s["rss_kb"] for s in all_rss)
            res["fds_min"] = min(s["fds"] for s in all_rss if s["fds"] is not None)
            res["fds_max"] = max(s["fds"] for s in all_rss if s["fds"] is not None)
            res["threads_max"] = max(s["threads"] or 0 for s in all_rss)
            res["hwm_kb_last"] = all_rss[-1]["hwm_kb"]
        qd = [s["qdepth"] for s in self.samples if s["qdepth"] is not None]
        res["queue_depth_max"] = max(qd) if qd else None
        mq = [s["metrics_qdepth"] for s in self.samples if s["metrics_qdepth"] is not None]
        res["metrics_queue_depth_max"] = max(mq) if mq else None
        rm = [s["redis_mem"] for s in self.samples if s["redis_mem"]]
        if rm:
            res["redis_used_memory_mb_first_last_max"] = [round(rm[0] / 2**20, 1), round(rm[-1] / 2**20, 1),
                                                          round(max(rm) / 2**20, 1)]
        loads = [s["load1"] for s in self.samples if s.get("load1") is not None]
        if loads:
            res["load1_min_avg_max"] = [min(loads), round(sum(loads) / len(loads), 1), max(loads)]
        span = (seg[-1]["t"] - seg[0]["t"]) if seg else 0
        res["evaluated_span_s"] = round(span, 1)
        if len(seg) < 9 or span < a.rss_min_span:
            res["evaluated"] = False
            res["ok"] = True
            res["note"] = (f"not evaluated: {len(seg)} samples over {span:.0f}s after the warm-up "
                           f"(needs >= 9 samples over >= {a.rss_min_span:.0f}s)")
        else:
            third = len(seg) // 3
            first = seg[:third]
            last = seg[-third:]
            avg_first = sum(s["rss_kb"] for s in first) / len(first)
            avg_last = sum(s["rss_kb"] for s in last) / len(last)
            growth = avg_last / avg_first - 1
            fd_first = sum(s["fds"] for s in first) / len(first)
            fd_last = sum(s["fds"] for s in last) / len(last)
            res.update(evaluated=True, first_third_avg_kb=round(avg_first), last_third_avg_kb=round(avg_last),
                       growth=round(growth, 4), ok=growth <= a.rss_bound,
                       fds_first_third_avg=round(fd_first, 1), fds_last_third_avg=round(fd_last, 1),
                       evaluated_rss_kb_min=min(s["rss_kb"] for s in seg),
                       evaluated_rss_kb_max=max(s["rss_kb"] for s in seg))
        # a compact series: one average per bucket (about 20 buckets)
        bucket = max(a.sample_interval, a.duration / 20)
        series = defaultdict(list)
        for s in all_rss:
            series[int(s["t"] // bucket)].append(s)
        res["series"] = [{"t": round(b * bucket), "rss_mb": round(sum(x["rss_kb"] for x in v) / len(v) / 1024, 1),
                          "fds": round(sum(x["fds"] or 0 for x in v) / len(v)),
                          "pids": sorted({x["pid"] for x in v})}
                         for b, v in sorted(series.items())]
        return res

    def worker_stats(self) -> dict:
        counts = defaultdict(int)
        errors = defaultdict(lambda: defaultdict(int))
        stale, bad = [], []
        for name in sorted(os.listdir(self.work)):
            if not (name.startswith("stats-w") and name.endswith(".json")):
                continue
            with open(os.path.join(self.work, name)) as f:
                d = json.load(f)
            for k, v in d["counts"].items():
                counts[k] += v
            for sec, classes in d["errors"].items():
                for cls, n in classes.items():
                    errors[int(sec)][cls] += n
            stale += d["stale"]
            bad += d["bad_reads"]
        return {"counts": dict(counts), "errors": errors, "stale": stale, "bad_reads": bad}

    def fault_at(self, t: float):
        """The kind of the fault whose window (start - 1 s .. end + FAULT_MARGIN) holds t, or None."""
        for f in self.faults:
            if f["kind"] != "client_kill" and f["start"] - 1 <= t <= f["end"] + FAULT_MARGIN:
                return f["kind"]
        return None

    def in_fault(self, t: float) -> bool:
        return self.fault_at(t) is not None

    def finish(self) -> int:
        a = self.args
        log("draining the write queues (LARDER FLUSH)")
        drain = self.drain()
        log(f"drain: {'ok' if drain['ok'] else 'NOT EMPTY'} after {drain['seconds']}s")
        if a.inject_loss:
            self.inject_loss(a.inject_loss)
        log("verifying against PostgreSQL")
        ver = self.verify()
        probe = self.pubsub_probe()
        ws = self.worker_stats()
        err_in = defaultdict(int)
        err_out = defaultdict(int)
        err_out_secs = defaultdict(int)
        for sec, classes in ws["errors"].items():
            for cls, n in classes.items():
                if self.in_fault(sec) or self.in_fault(sec + 1):
                    err_in[cls] += n
                else:
                    err_out[cls] += n
                    err_out_secs[sec] += n
        stale_in = [s for s in ws["stale"] if self.in_fault(s["t"])]
        stale_by_kind = defaultdict(int)
        for item in stale_in:
            stale_by_kind[self.fault_at(item["t"])] += 1
        stale_out = [s for s in ws["stale"] if not self.in_fault(s["t"])]
        rss = self.rss_analysis()
        # graceful stop
        stop = {"ok": True}
        try:
            t = time.monotonic()
            code = self.larder.stop(timeout=30, expect_code=None)
            stop.update(exit_code=code, seconds=round(time.monotonic() - t, 2), ok=code == 0)
        except AssertionError as e:
            stop.update(ok=False, error=str(e)[:2000])
        larder_log = self.larder.log()
        red = [line for line in larder_log.splitlines() if any(f in line for f in harness.LOG_RED_FLAGS)]
        levels = defaultdict(int)
        msgs = defaultdict(int)
        for line in larder_log.splitlines():
            m = re.match(r"\S+ (warning|warn|error|critical) \[\d+\] (.*)", line)
            if m:
                levels[m.group(1)] += 1
                msgs[re.sub(r"\d+", "N", m.group(2))[:110]] += 1
        counts = ws["counts"]
        failures = []
        if not drain["ok"]:
            failures.append(f"the write queues did not drain within {a.drain_timeout}s (hang?)")
        if ver["lost"]:
            failures.append(f"{len(ver['lost'])} keys lost their last acked write")
        if ver["cache_mismatch"]:
            failures.append(f"{len(ver['cache_mismatch'])} keys read through Larder differ from PostgreSQL")
        if ver["regressions"]:
            failures.append(f"{len(ver['regressions'])}+ committed version regressions in PostgreSQL")
        if ver["unexpected_rows"]:
            failures.append(f"{len(ver['unexpected_rows'])} rows in PostgreSQL nobody wrote")
        if ver["dead_letters"]:
            failures.append(f"{ver['dead_letters']} dead letters")
        if counts.get("bad_reads"):
            failures.append(f"{counts['bad_reads']} reads returned a value nobody wrote")
        if stale_out:
            failures.append(f"{len(stale_out)} read-your-writes violations outside fault windows")
        if not rss["ok"]:
            failures.append(f"RSS grew {rss['growth'] * 100:.1f}% (bound {a.rss_bound * 100:.0f}%)")
        if self.crashes:
            failures.append(f"{len(self.crashes)} unexpected exits: "
                            + ", ".join(f"{c['what']} rc={c['returncode']} at {c['t']}s" for c in self.crashes))
        if not stop["ok"]:
            failures.append(f"Larder did not stop cleanly on SIGTERM: {stop}")
        if red:
            failures.append(f"{len(red)} red-flag lines in Larder's log")
        if not probe["ok"]:
            failures.append(f"pub/sub probe after the run: {probe}")
        if [f for f in self.faults if not f["ok"]]:
            failures.append("a fault could not be injected/recovered: "
                            + "; ".join(f["detail"] for f in self.faults if not f["ok"]))
        if self.worker_exits:
            failures.append(f"{len(self.worker_exits)} client processes exited early (see summary.json)")
        if counts.get("writes_acked", 0) == 0:
            failures.append("no write was acked at all")

        commit = "unknown"
        with contextlib.suppress(Exception):
            commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True, timeout=10).stdout.strip()
        fault_counts = defaultdict(int)
        for f in self.faults:
            fault_counts[f["kind"]] += 1
        summary = {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "commit": a.build_label or f"unknown (work tree HEAD {commit})", "tree_head": commit,
            "larder_binary": a.larder,
            "args": {k: v for k, v in vars(a).items()},
            "duration_s": a.duration, "workload_end_s": round(self.workload_end, 1),
            "ops": counts,
            "errors_total": sum(err_in.values()) + sum(err_out.values()),
            "errors_during_faults": sum(err_in.values()),
            "errors_outside_faults": sum(err_out.values()),
            "error_classes_during_faults": dict(sorted(err_in.items(), key=lambda x: -x[1])),
            "error_classes_outside_faults": dict(sorted(err_out.items(), key=lambda x: -x[1])),
            "errors_outside_faults_by_second": dict(sorted(err_out_secs.items())),
            "errors_timeline": {str(sec): dict(c) for sec, c in sorted(ws["errors"].items())},
            "faults": self.faults, "fault_counts": dict(fault_counts),
            "larder_restarts": [{"t": round(t, 1), "pid": p} for t, p in self.larder_starts],
            "crashes": self.crashes, "worker_exits": self.worker_exits,
            "drain": drain, "verify": ver,
            "stale_reads_during_faults": len(stale_in), "stale_reads_by_fault": dict(stale_by_kind), "stale_reads_outside_faults": stale_out[:50],
            "stale_examples_during_faults": stale_in[:10], "bad_reads": ws["bad_reads"][:50],
            "pubsub_probe": probe, "rss": rss, "larder_stop": stop,
            "larder_log": {"bytes": len(larder_log), "levels": dict(levels),
                           "top_messages": dict(sorted(msgs.items(), key=lambda x: -x[1])[:15]),
                           "red_flags": red[:20]},
            "failures": failures, "ok": not failures,
        }
        self.write_results(summary)
        return 0 if not failures else 1

    def write_results(self, summary: dict):
        with open(os.path.join(self.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1, default=str)
        with open(os.path.join(self.out, "samples.tsv"), "w") as f:
            cols = ["t", "pid", "rss_kb", "anon_kb", "hwm_kb", "fds", "threads", "clients", "qdepth", "metrics_qdepth",
                    "redis_mem", "load1", "fault"]
            f.write("\t".join(cols) + "\n")
            for s in self.samples:
                f.write("\t".join("" if s[c] is None else str(s[c]) for c in cols) + "\n")
        for src, name in ((self.larder.log_path, "larder.log"), (self.redis.log_path, "redis.log"),
                          (self.pg.log_path, "postgres.log")):
            with contextlib.suppress(OSError):
                shutil.copy(src, os.path.join(self.out, name))
        for name in os.listdir(self.work):
            if name.startswith("worker-") or (name.startswith("journal-") and
                                               (not summary["ok"] or self.args.keep_journals)):
                shutil.copy(os.path.join(self.work, name), os.path.join(self.out, name))
        text = render(summary)
        with open(os.path.join(self.out, "summary.txt"), "w") as f:
            f.write(text)
        sys.stdout.write(text)
        sys.stdout.flush()


def pending(client) -> dict:
    out = {}
    for entry in client.execute_command("LARDER", "PENDING"):
        d = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
             for k, v in zip(entry[0::2], entry[1::2])}
        out[d["keyspace"]] = {"depth": int(d["depth"]), "oldest_age_ms": int(d["oldest_age_ms"]),
                              "dead_letters": int(d["dead_letters"])}
    return out


def render(s: dict) -> str:
    o = s["ops"]
    v = s["verify"]
    r = s["rss"]
    lines = [
        "",
        f"== Larder soak {s['date']} commit {s['commit']}: {'PASS' if s['ok'] else 'FAIL'} ==",
        f"duration {s['duration_s']}s, {s['args']['workers']} client processes x {s['args']['threads']} writer "
        f"threads, rate {s['args']['rate']}/s per thread, seed {s['args']['seed']}",
        f"commands {o.get('cmds', 0)} (writes sent {o.get('writes_sent', 0)}, acked {o.get('writes_acked', 0)}, "
        f"error replies {o.get('writes_error_reply', 0)}; pipelines {o.get('pipelines', 0)}, "
        f"aborted pipelines {o.get('aborted_pipelines', 0)}; reads preloaded {o.get('read_preloaded', 0)}, "
        f"negative {o.get('read_negative', 0)}, own {o.get('read_own', 0)}; pass-through {o.get('passthrough', 0)}; "
        f"publish {o.get('publish', 0)}, messages received {o.get('messages_received', 0)}, "
        f"resubscribes {o.get('subscribes', 0)}; churn connections {o.get('churn_connections', 0)}, "
        f"short-lived clients {o.get('short_lived_clients', 0)})",
        "faults: " + ", ".join(f"{k} x{n}" for k, n in sorted(s["fault_counts"].items())),
    ]
    for f in s["faults"]:
        if f["kind"] != "client_kill":
            lines.append(f"  {f['start']:>7}s-{f['end']:>7}s {f['kind']}: {f['detail']}{'' if f['ok'] else ' (FAILED)'}")
    lines.append(f"errors: {s['errors_total']} total, {s['errors_during_faults']} during faults "
                 f"(+{FAULT_MARGIN:.0f}s), {s['errors_outside_faults']} outside")
    for cls, n in list(s["error_classes_during_faults"].items())[:8]:
        lines.append(f"  during: {n:>7}  {cls}")
    for cls, n in list(s["error_classes_outside_faults"].items())[:8]:
        lines.append(f"  outside: {n:>6}  {cls}")
    lines += [
        f"drain: {'empty' if s['drain']['ok'] else 'NOT EMPTY'} after {s['drain']['seconds']}s",
        f"verify: {v['keys_written']} keys written, {v['writes_attempted']} writes attempted, "
        f"{v['acked_writes']} acked, {v['writes_error_reply']} error replies, {v['writes_unknown']} unknown outcome; "
        f"final value = last ack on {v['final_equals_last_ack']} keys, a later unacked write on "
        f"{v['final_is_later_unacked']}; LOST {len(v['lost'])}; cache mismatches {len(v['cache_mismatch'])}; "
        f"version regressions {len(v['regressions'])} (of {v['audit_rows']} audited row writes); "
        f"dead letters {v['dead_letters']}; stray rows {len(v['unexpected_rows'])}",
        f"reads: bad values {o.get('bad_reads', 0)}, stale own reads during faults {s['stale_reads_during_faults']} "
        f"{s['stale_reads_by_fault']}, "
        f"outside faults {len(s['stale_reads_outside_faults'])}; pub/sub probe {s['pubsub_probe']}",
        f"larder: starts {[(x['t'], x['pid']) for x in s['larder_restarts']]}, unexpected exits {len(s['crashes'])}, "
        f"SIGTERM stop {s['larder_stop']}, log {s['larder_log']['bytes']} bytes {s['larder_log']['levels']}, "
        f"red flags {len(s['larder_log']['red_flags'])}",
    ]
    if r.get("evaluated"):
        lines.append(f"RSS (pid {r['final_pid']}, after {r['warmup_s']:.0f}s warm-up, {r['samples_evaluated']} "
                     f"samples over {r['evaluated_span_s']}s): first third {r['first_third_avg_kb'] / 1024:.1f} MiB, "
                     f"last third {r['last_third_avg_kb'] / 1024:.1f} MiB, growth {r['growth'] * 100:+.1f}% "
                     f"(bound +{r['bound'] * 100:.0f}%): {'ok' if r['ok'] else 'TOO MUCH'}; "
                     f"fds {r['fds_first_third_avg']} -> {r['fds_last_third_avg']}")
    else:
        lines.append(f"RSS: {r.get('note')}")
    lines.append(f"RSS overall {r.get('rss_kb_min', 0) / 1024:.1f}..{r.get('rss_kb_max', 0) / 1024:.1f} MiB, "
                 f"fds {r.get('fds_min')}..{r.get('fds_max')}, threads max {r.get('threads_max')}, "
                 f"queue depth max {r.get('queue_depth_max')} (metrics {r.get('metrics_queue_depth_max')}), "
                 f"redis MiB first/last/max {r.get('redis_used_memory_mb_first_last_max')}, "
                 f"machine load1 min/avg/max {r.get('load1_min_avg_max')}")
    lines.append("RSS series (MiB @ s): " + " ".join(f"{x['rss_mb']}@{x['t']}" for x in r["series"]))
    lines.append("fds series: " + " ".join(f"{x['fds']}@{x['t']}" for x in r["series"]))
    for item in v["lost"][:10]:
        lines.append(f"  LOST {item}")
    for item in v["cache_mismatch"][:10]:
        lines.append(f"  CACHE {item}")
    for item in v["regressions"][:10]:
        lines.append(f"  REGRESSION {item}")
    for item in s["stale_reads_outside_faults"][:10]:
        lines.append(f"  STALE {item}")
    for item in s["bad_reads"][:10]:
        lines.append(f"  BAD READ {item}")
    if s["failures"]:
        lines.append("FAILURES:")
        lines += [f"  - {x}" for x in s["failures"]]
    else:
        lines.append("all checks passed")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of workload (default 600)")
    ap.add_argument("--larder", default=os.environ.get("LARDER_BINARY", os.path.join(ROOT, "build", "larder")))
    ap.add_argument("--workers", type=int, default=4, help="client processes")
    ap.add_argument("--threads", type=int, default=3, help="writer threads per client process")
    ap.add_argument("--keys-per-thread", type=int, default=40, help="keys of each keyspace each thread owns")
    ap.add_argument("--rate", type=float, default=100.0, help="iterations/s per writer thread (0: no limit)")
    ap.add_argument("--larder-threads", type=int, default=2)
    ap.add_argument("--sample-interval", type=float, default=None, help="s between samples (default: 1..5)")
    ap.add_argument("--warmup", type=float, default=None, help="s after the last Larder start left out of "
                    "the RSS check (default max(30, 20%% of the duration))")
    ap.add_argument("--rss-bound", type=float, default=0.20, help="allowed RSS growth, last third vs first")
    ap.add_argument("--rss-min-span", type=float, default=90.0,
                    help="post-warm-up seconds needed to evaluate RSS (shorter runs only report it)")
    ap.add_argument("--drain-timeout", type=float, default=180.0)
    ap.add_argument("--negative-cache-entries", type=int, default=2000,
                    help="read_through.negative_cache_entries of the Larder under test (default 2000, "
                    "well under the ~2x100000 ids the clients look up with no row, so the cache is full "
                    "and sweeping long before the warm-up ends; Larder's default, 100000, only fills "
                    "after ~10 minutes and looks like a leak in the RSS series)")
    ap.add_argument("--faults", default="larder_kill,redis_restart,pg_restart,client_kill",
                    help="comma-separated fault kinds to inject (default: all four; 'none' for none)")
    ap.add_argument("--restarts", type=int, default=None,
                    help="restarts of each of Redis and PostgreSQL (default max(1, duration/150))")
    ap.add_argument("--no-larder-kill", dest="larder_kill", action="store_false")
    ap.add_argument("--no-client-kills", dest="client_kills", action="store_false")
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--out", default=None, help="results directory (default /tmp/larder-soak-<time>)")
    ap.add_argument("--build-label", default=os.environ.get("LARDER_SOAK_BUILD_LABEL"),
                    help="what the binary was built from, for the summary (soak.sh --build sets it)")
    ap.add_argument("--keep-journals", action="store_true", help="copy the write journals to --out")
    ap.add_argument("--inject-loss", type=int, default=0, metavar="N",
                    help="self-test: delete N acked rows in PostgreSQL before the check (must FAIL)")
    a = ap.parse_args()
    kinds = {"larder_kill", "redis_restart", "pg_restart", "client_kill"}
    a.faults = set() if a.faults == "none" else {k.strip() for k in a.faults.split(",") if k.strip()}
    if a.faults - kinds:
        ap.error(f"unknown fault kinds {sorted(a.faults - kinds)}; known: {sorted(kinds)}")
    if not a.larder_kill:
        a.faults.discard("larder_kill")
    if not a.client_kills:
        a.faults.discard("client_kill")
    a.faults = sorted(a.faults)
    if a.sample_interval is None:
        a.sample_interval = max(1.0, min(5.0, a.duration / 120))
    if not (5 <= a.duration <= 24 * 3600) or not (1 <= a.workers <= 32) or not (1 <= a.threads <= sw.MAX_THREADS):
        ap.error("duration 5..86400, workers 1..32, threads 1..16")
    a.larder = os.path.abspath(a.larder)
    if not os.access(a.larder, os.X_OK):
        ap.error(f"no Larder binary at {a.larder} (build it, or pass --larder / LARDER_BINARY)")
    log(f"seed {a.seed}")
    soak = Soak(a)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    try:
        return soak.run()
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); cleaning up")
        return 2
    except (SoakError, AssertionError) as e:
        log(f"the soak could not run: {e}")
        return 2
    finally:
        with contextlib.suppress(Exception):
            for p in soak.workers.values():
                if p.poll() is None:
                    p.kill()
        for name in ("larder", "redis", "pg"):
            server = getattr(soak, name, None)
            if server is not None:
                with contextlib.suppress(Exception):
                    server.cleanup()
        harness.remove_tmpdir(soak.work)


if __name__ == "__main__":
    sys.exit(main())
