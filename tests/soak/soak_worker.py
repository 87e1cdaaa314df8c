"""One soak client process: several threads running a mixed workload through Larder.

Started by soak.py (never by hand): `soak_worker.py --id W --work DIR ...`.

Each writer thread owns its own keys of both mapped keyspaces (string `sstr:{id}`
and hash `shash:{id}`) and is the only writer of them, so every key's versions
increase strictly. Before a write is sent the thread appends `A key ver op` to
its journal; after the reply `K key ver` (acked) or `E key ver class` (an error
reply). A write with no K line has an unknown outcome (the connection died, a
timeout, the process was SIGKILLed). The journal is an O_APPEND file written
with one write(2) per event, so it survives a SIGKILL of this process and a
restarted worker continues each key from its highest attempted version.

Besides the writes: reads of preloaded (never written) rows, of ids that have
no row (misses, negative cache), read-your-writes checks on its own keys,
pass-through commands on unmapped keys, pipelines mixing all of these,
PUBLISH + a subscriber thread, connection churn (a thread opening and closing
connections, plus short-lived clients), and now and then a raw connection that
sends a pipeline and resets the connection (RST) in the middle of it.

Errors are tolerated and counted per class and per second since the start
(stats-w<W>-i<incarnation>.json, rewritten every 2 s), so soak.py can tell the
errors during a fault from those outside one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
from collections import defaultdict

import redis

HOST = "127.0.0.1"

# Key layout (ids), shared with soak.py.
PRELOAD_ROWS = 20000          # ids 1..PRELOAD_ROWS exist in both tables, never written
OWN_BASE = 1_000_000          # owned (written) ids start here
MAX_THREADS = 16              # per worker, for the id layout
NEG_BASE = 9_000_000          # ids >= NEG_BASE never have a row
NEG_RANGE = 100_000

STR_KS = "sstr"
HASH_KS = "shash"

QUARANTINE_CONN = 5.0         # s a key is left alone after a connection error on its write
QUARANTINE_TIMEOUT = 15.0     # ... after a client timeout or an aborted pipeline


def own_ids(worker: int, thread: int, keys_per_thread: int) -> list:
    first = OWN_BASE + (worker * MAX_THREADS + thread) * keys_per_thread
    return list(range(first, first + keys_per_thread))


_ALPHA = "abcdefghijklmnopqrstuvwxyz0123456789"


def pad(rid: int, ver: int) -> str:
    """A deterministic filler of 1..200 characters for (id, version)."""
    n = (rid * 7919 + ver * 104729) % 200 + 1
    seed = (rid * 2654435761 + ver * 40503) & 0xFFFFFFFF
    chunk = "".join(_ALPHA[(seed >> (i % 27)) % 36 if i % 2 else (seed + i) % 36] for i in range(36))
    return (chunk * (n // 36 + 1))[:n]


def str_value(rid: int, ver: int) -> str:
    return f"{ver}:{rid}:{pad(rid, ver)}"


def hash_value(rid: int, ver: int) -> dict:
    return {"ver": str(ver), "a": f"a{ver}-{rid}", "b": pad(rid, ver)}


def pre_str(rid: int) -> str:
    return f"pre:{rid}"


def pre_hash(rid: int) -> dict:
    return {"ver": "0", "a": f"pa{rid}", "b": f"pb{rid}"}


def parse_key(key: str):
    kind, rid = key.split(":", 1)
    return kind, int(rid)


def state_of_string(rid: int, value) -> object:
    """None (no row), a version, or 'corrupt:...' for a value we never wrote."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    try:
        ver = int(value.split(":", 1)[0])
    except ValueError:
        return "corrupt:" + value[:60]
    return ver if value == str_value(rid, ver) else "corrupt:" + value[:60]


def state_of_hash(rid: int, fields: dict) -> object:
    if not fields:
        return None
    d = {(k.decode() if isinstance(k, bytes) else k): (v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
         for k, v in fields.items()}
    try:
        ver = int(d.get("ver", ""))
    except ValueError:
        return "corrupt:" + repr(d)[:80]
    return ver if d == hash_value(rid, ver) else "corrupt:" + repr(d)[:80]


def read_journal(path: str) -> dict:
    """{key: {"ops": {ver: op}, "acked": set(ver), "errors": {ver: class}}}.
    Tolerates a torn last line (a SIGKILL while writing)."""
    out: dict = {}
    try:
        f = open(path, "r", encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return out
    with f:
        for line in f:
            if not line.endswith("\n"):
                break
            parts = line.rstrip("\n").split(" ", 3)
            if len(parts) < 3:
                continue
            kind, key = parts[0], parts[1]
            try:
                ver = int(parts[2])
            except ValueError:
                continue
            rec = out.setdefault(key, {"ops": {}, "acked": set(), "errors": {}})
            if kind == "A" and len(parts) >= 4:
                rec["ops"][ver] = parts[3]
            elif kind == "K":
                rec["acked"].add(ver)
            elif kind == "E":
                rec["errors"][ver] = parts[3] if len(parts) >= 4 else "?"
    return out


def error_class(e: BaseException) -> str:
    if isinstance(e, redis.TimeoutError):
        return "client timeout"
    if isinstance(e, redis.ConnectionError):
        msg = str(e).split("\n")[0]
        for word in ("Connection refused", "Connection reset", "closed by server", "Broken pipe",
                     "Timeout connecting", "Error 104", "Error 111", "Error 32"):
            if word in msg:
                return "connection: " + word
        return "connection: " + msg[:50]
    if isinstance(e, redis.ResponseError):
        msg = str(e)
        i = msg.find(" of pipeline caused error: ")   # redis-py's note on a pipeline's error
        if msg.startswith("Command # ") and i > 0:
            msg = msg[i + len(" of pipeline caused error: "):]
        # Strip what varies (numbers, quoted names, the reason after a colon).
        for cut in (" within ", ": connection", ": could not", ": server closed", ": FATAL",
                    ": timeout", ": no connection", ": the database"):
            i = msg.find(cut)
            if i > 0:
                msg = msg[:i]
        msg = re.sub(r"'[^']*'", "'K'", msg)   # key and keyspace names
        words = msg.split()
        return "reply: " + " ".join(words[:8])
    return type(e).__name__ + ": " + str(e)[:60]


class Stats:
    def __init__(self, t0: float):
        self.t0 = t0
        self.lock = threading.Lock()
        self.counts: dict = defaultdict(int)
        self.errors: dict = defaultdict(lambda: defaultdict(int))   # second -> class -> n
        self.stale: list = []        # read-your-writes violations (bounded)
        self.bad_reads: list = []    # wrong values of rows nobody writes (bounded)

    def inc(self, name: str, n: int = 1):
        with self.lock:
            self.counts[name] += n

    def error(self, e: BaseException | str, n: int = 1):
        cls = e if isinstance(e, str) else error_class(e)
        sec = int(time.monotonic() - self.t0)
        with self.lock:
            self.errors[sec][cls] += n
            self.counts["errors"] += n

    def note(self, what: str, item: dict):
        item["t"] = round(time.monotonic() - self.t0, 3)
        with self.lock:
            lst = self.stale if what == "stale" else self.bad_reads
            self.counts[what] += 1
            if len(lst) < 200:
                lst.append(item)

    def dump(self, path: str):
        with self.lock:
            data = {"counts": dict(self.counts),
                    "errors": {str(s): dict(c) for s, c in self.errors.items()},
                    "stale": list(self.stale), "bad_reads": list(self.bad_reads)}
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)


class Journal:
    def __init__(self, path: str):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, lines: list):
        if lines:
            os.write(self.fd, ("\n".join(lines) + "\n").encode())

    def close(self):
        os.close(self.fd)


class Env:
    """What every thread of this process shares."""

    def __init__(self, args):
        self.args = args
        self.stop = threading.Event()
        self.deadline = args.deadline
        self.stats = Stats(args.t0)
        self._port = None
        self._port_read = 0.0

    def port(self) -> int:
        now = time.monotonic()
        if self._port is None or now - self._port_read > 1.0:
            try:
                with open(os.path.join(self.args.work, "larder.port")) as f:
                    self._port = int(f.read().strip())
            except (OSError, ValueError):
                pass
            self._port_read = now
        return self._port

    def running(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.deadline

    def client(self, **kw) -> redis.Redis:
        kw.setdefault("socket_timeout", self.args.socket_timeout)
        kw.setdefault("socket_connect_timeout", 3)
        return redis.Redis(host=HOST, port=self.port(), **kw)


def close_client(c):
    try:
        c.close()
    except Exception:  # noqa: BLE001
        pass
    pool = getattr(c, "connection_pool", None)
    if pool is not None:
        try:
            pool.disconnect()
        except Exception:  # noqa: BLE001
            pass


def sleep_until(env: Env, t: float):
    while env.running():
        d = t - time.monotonic()
        if d <= 0:
            return
        env.stop.wait(min(d, 0.5))


class KeyState:
    __slots__ = ("ver", "acked", "acked_op", "unknown", "quarantine")

    def __init__(self):
        self.ver = 0            # highest version attempted
        self.acked = 0          # highest version acked (0: none)
        self.acked_op = None
        self.unknown = {}       # ver -> op, attempted after `acked` without an ack
        self.quarantine = 0.0   # monotonic time before which it is not written or checked


class Writer:
    def __init__(self, env: Env, index: int):
        self.env = env
        self.index = index
        a = env.args
        self.rng = random.Random(a.seed * 1000 + a.id * 50 + index + a.incarnation * 7)
        self.ids = own_ids(a.id, index, a.keys_per_thread)
        self.keys = [f"{STR_KS}:{i}" for i in self.ids] + [f"{HASH_KS}:{i}" for i in self.ids]
        path = os.path.join(a.work, f"journal-w{a.id}-t{index}.log")
        self.state = {k: KeyState() for k in self.keys}
        self._resume(path)
        self.journal = Journal(path)
        self.conn = None
        self.conn_port = None
        self.last_abort = 0.0

    def _resume(self, path: str):
        for key, rec in read_journal(path).items():
            st = self.state.get(key)
            if st is None:
                continue
            if rec["ops"]:
                st.ver = max(rec["ops"])
            if rec["acked"]:
                st.acked = max(rec["acked"])
                st.acked_op = rec["ops"].get(st.acked)
            st.unknown = {v: op for v, op in rec["ops"].items() if v > st.acked}
            # What the previous incarnation had in flight may still be applied:
            # leave these keys alone for a while (soak.py also waits before a restart).
            if st.unknown:
                st.quarantine = time.monotonic() + QUARANTINE_TIMEOUT

    # -- connections
    def client(self) -> redis.Redis:
        port = self.env.port()
        if self.conn is None or self.conn_port != port:
            if self.conn is not None:
                close_client(self.conn)
            self.conn = self.env.client()
            self.conn_port = port
        return self.conn

    # -- the mix
    def run(self):
        a = self.env.args
        interval = 1.0 / a.rate if a.rate > 0 else 0.0
        next_t = time.monotonic()
        n = 0
        while self.env.running() and n < a.max_iterations:
            n += 1
            if interval:
                next_t += interval
                now = time.monotonic()
                if next_t > now:
                    sleep_until(self.env, next_t)
                elif now - next_t > 1.0:
                    next_t = now
            try:
                self.step()
            except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
                self.env.stats.error(e)
                self.env.stats.inc("cmds")
                if self.conn is not None:
                    close_client(self.conn)
                    self.conn = None
                self.env.stop.wait(0.05)
            except redis.ResponseError as e:
                self.env.stats.error(e)
                self.env.stats.inc("cmds")
        if self.conn is not None:
            close_client(self.conn)
        self.journal.close()

    def step(self):
        r = self.rng.random()
        s = self.env.stats
        if r < 0.20:
            self.read_preloaded()
        elif r < 0.25:
            self.read_negative()
        elif r < 0.40:
            self.read_own()
        elif r < 0.70:
            self.write_one()
        elif r < 0.82:
            self.passthrough()
        elif r < 0.90:
            self.pipeline()
        elif r < 0.94:
            n = self.client().publish(f"soak:ch:{self.rng.randrange(self.env.args.workers)}",
                                      f"m{self.rng.random()}")
            s.inc("cmds")
            s.inc("publish")
            s.inc("publish_receivers", int(n))
        elif r < 0.985:
            self.short_lived_client()
        else:
            self.aborted_pipeline()

    # -- reads
    def read_preloaded(self):
        rid = self.rng.randint(1, PRELOAD_ROWS)
        c = self.client()
        if self.rng.random() < 0.5:
            got = c.get(f"{STR_KS}:{rid}")
            ok = got is not None and got.decode() == pre_str(rid)
        else:
            got = c.hgetall(f"{HASH_KS}:{rid}")
            ok = {k.decode(): v.decode() for k, v in got.items()} == pre_hash(rid)
        self.env.stats.inc("cmds")
        self.env.stats.inc("read_preloaded")
        if not ok:
            self.env.stats.note("bad_reads", {"key": f"{rid}", "got": repr(got)[:120]})

    def read_negative(self):
        rid = NEG_BASE + self.rng.randrange(NEG_RANGE)
        c = self.client()
        if self.rng.random() < 0.5:
            key = f"{STR_KS}:{rid}"
            got = c.get(key)
            ok = got is None
        else:
            key = f"{HASH_KS}:{rid}"
            got = c.hgetall(key)
            ok = not got
        self.env.stats.inc("cmds")
        self.env.stats.inc("read_negative")
        if not ok:
            self.env.stats.note("bad_reads", {"key": key, "got": repr(got)[:120]})

    def allowed_states(self, st: KeyState) -> set:
        allowed = set()
        if st.acked == 0:
            allowed.add(None)
        else:
            allowed.add(None if st.acked_op == "D" else st.acked)
        for v, op in st.unknown.items():
            allowed.add(None if op == "D" else v)
        return allowed

    def read_own(self):
        key = self.rng.choice(self.keys)
        kind, rid = parse_key(key)
        c = self.client()
        if kind == STR_KS:
            state = state_of_string(rid, c.get(key))
        else:
            state = state_of_hash(rid, c.hgetall(key))
        s = self.env.stats
        s.inc("cmds")
        s.inc("read_own")
        st = self.state[key]
        if time.monotonic() < st.quarantine:
            return
        allowed = self.allowed_states(st)
        if state not in allowed:
            s.note("stale", {"key": key, "got": state, "acked": st.acked, "acked_op": st.acked_op,
                             "unknown": sorted(st.unknown)[-5:]})

    # -- writes
    def pick_writable(self):
        now = time.monotonic()
        for _ in range(8):
            key = self.rng.choice(self.keys)
            if self.state[key].quarantine <= now:
                return key
        return None

    def plan_write(self, key: str):
        """(op, args) for the next version of key; journals the attempt."""
        kind, rid = parse_key(key)
        st = self.state[key]
        st.ver += 1
        ver = st.ver
        r = self.rng.random()
        if r < 0.07:
            op = "D"
            args = ("DEL",) if r < 0.05 else ("UNLINK",)
            args += (key,)
        elif kind == STR_KS:
            op = "S"
            val = str_value(rid, ver)
            if r < 0.80:
                args = ("SET", key, val)
            elif r < 0.90:
                args = ("SET", key, val, "EX", str(self.rng.randint(5, 60)))
            else:
                args = ("SETEX", key, str(self.rng.randint(5, 60)), val)
        else:
            op = "H"
            h = hash_value(rid, ver)
            cmd = "HSET" if r < 0.75 else "HMSET"
            args = (cmd, key, "ver", h["ver"], "a", h["a"], "b", h["b"])
        st.unknown[ver] = op
        return ver, op, args

    def on_ack(self, key: str, ver: int, op: str):
        st = self.state[key]
        if ver > st.acked:
            st.acked = ver
            st.acked_op = op
            st.unknown = {v: o for v, o in st.unknown.items() if v > ver}

    def write_one(self):
        key = self.pick_writable()
        if key is None:
            return
        ver, op, args = self.plan_write(key)
        self.journal.write([f"A {key} {ver} {op}"])
        s = self.env.stats
        s.inc("cmds")
        s.inc("writes_sent")
        try:
            reply = self.client().execute_command(*args)
        except redis.TimeoutError:
            self.state[key].quarantine = time.monotonic() + QUARANTINE_TIMEOUT
            raise
        except redis.ConnectionError:
            self.state[key].quarantine = time.monotonic() + QUARANTINE_CONN
            raise
        except redis.ResponseError as e:
            self.journal.write([f"E {key} {ver} {error_class(e).replace(' ', '_')}"])
            s.inc("writes_error_reply")
            s.error(e)
            return
        if reply is None and args[0] == "SET":   # NX/XX not used: SET always answers OK
            s.note("bad_reads", {"key": key, "got": "SET replied nil"})
            return
        self.journal.write([f"K {key} {ver}"])
        self.on_ack(key, ver, op)
        s.inc("writes_acked")

    def passthrough(self):
        c = self.client()
        n = self.rng.randrange(500)
        w = self.env.args.id
        r = self.rng.random()
        if r < 0.4:
            c.set(f"pt:{w}:{n}", "x" * self.rng.randint(1, 300), ex=60)
        elif r < 0.7:
            c.get(f"pt:{w}:{n}")
        elif r < 0.85:
            c.incr(f"ptc:{w}:{n % 50}")
            c.expire(f"ptc:{w}:{n % 50}", 120)
            self.env.stats.inc("cmds")
        else:
            p = c.pipeline(transaction=False)
            p.lpush(f"ptl:{w}:{n % 20}", "e" * self.rng.randint(1, 50))
            p.ltrim(f"ptl:{w}:{n % 20}", 0, 99)
            p.expire(f"ptl:{w}:{n % 20}", 120)
            p.execute()
            self.env.stats.inc("cmds", 2)
        self.env.stats.inc("cmds")
        self.env.stats.inc("passthrough")

    def pipeline(self):
        c = self.client()
        p = c.pipeline(transaction=False)
        entries = []      # (kind, key, ver, op) per command
        lines = []
        now = time.monotonic()
        for _ in range(self.rng.randint(5, 30)):
            r = self.rng.random()
            if r < 0.4:
                key = self.rng.choice(self.keys)
                if self.state[key].quarantine > now:
                    continue
                ver, op, args = self.plan_write(key)
                lines.append(f"A {key} {ver} {op}")
                p.execute_command(*args)
                entries.append(("w", key, ver, op))
            elif r < 0.7:
                rid = self.rng.randint(1, PRELOAD_ROWS)
                if r < 0.55:
                    p.get(f"{STR_KS}:{rid}")
                else:
                    p.hgetall(f"{HASH_KS}:{rid}")
                entries.append(("r", rid, 0, "S" if r < 0.55 else "H"))
            elif r < 0.8:
                rid = NEG_BASE + self.rng.randrange(NEG_RANGE)
                p.get(f"{STR_KS}:{rid}")
                entries.append(("n", rid, 0, ""))
            else:
                p.set(f"pt:{self.env.args.id}:{self.rng.randrange(500)}", "p", ex=60)
                entries.append(("p", None, 0, ""))
        if not entries:
            return
        self.journal.write(lines)
        s = self.env.stats
        s.inc("pipelines")
        s.inc("cmds", len(entries))
        s.inc("writes_sent", len(lines))
        try:
            results = p.execute(raise_on_error=False)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            q = QUARANTINE_TIMEOUT if isinstance(e, redis.TimeoutError) else QUARANTINE_CONN
            for kind, key, _, _ in entries:
                if kind == "w":
                    self.state[key].quarantine = time.monotonic() + q
            raise
        out = []
        for (kind, key, ver, op), res in zip(entries, results):
            if isinstance(res, Exception):
                s.error(res)
                if kind == "w":
                    out.append(f"E {key} {ver} {error_class(res).replace(' ', '_')}")
                    s.inc("writes_error_reply")
                continue
            if kind == "w":
                out.append(f"K {key} {ver}")
                self.on_ack(key, ver, op)
                s.inc("writes_acked")
            elif kind == "r":
                if op == "S":
                    ok = res is not None and res.decode() == pre_str(key)
                else:
                    ok = {k.decode(): v.decode() for k, v in res.items()} == pre_hash(key)
                if not ok:
                    s.note("bad_reads", {"key": f"pipeline {op} {key}", "got": repr(res)[:120]})
            elif kind == "n" and res is not None:
                s.note("bad_reads", {"key": f"pipeline neg {key}", "got": repr(res)[:120]})
        self.journal.write(out)

    def short_lived_client(self):
        c = self.env.client(single_connection_client=True)
        try:
            c.ping()
            rid = self.rng.randint(1, PRELOAD_ROWS)
            got = c.get(f"{STR_KS}:{rid}")
            if got is None or got.decode() != pre_str(rid):
                self.env.stats.note("bad_reads", {"key": f"churn {rid}", "got": repr(got)[:120]})
            self.env.stats.inc("cmds", 2)
            self.env.stats.inc("short_lived_clients")
        finally:
            close_client(c)

    def aborted_pipeline(self):
        """A client that dies mid-pipeline: sends commands (writes to its keys
        among them), maybe reads a little, and resets the connection, leaving
        the last command cut in the middle."""
        now = time.monotonic()
        if now - self.last_abort < 5.0:
            return
        self.last_abort = now
        parts = []
        lines = []
        for _ in range(self.rng.randint(10, 80)):
            r = self.rng.random()
            if r < 0.15:
                key = self.pick_writable()
                if key is None:
                    continue
                ver, op, args = self.plan_write(key)
                lines.append(f"A {key} {ver} {op}")
                # its outcome is unknown, and it may be applied late: leave it alone
                self.state[key].quarantine = time.monotonic() + QUARANTINE_TIMEOUT
                parts.append(encode(*args))
            elif r < 0.6:
                parts.append(encode("GET", f"{STR_KS}:{NEG_BASE + self.rng.randrange(NEG_RANGE)}"))
            elif r < 0.8:
                parts.append(encode("HGETALL", f"{HASH_KS}:{self.rng.randint(1, PRELOAD_ROWS)}"))
            else:
                parts.append(encode("SET", f"pt:{self.env.args.id}:{self.rng.randrange(500)}", "a"))
        data = b"".join(parts)
        cut = encode("SET", "pt:cut", "x" * 100)
        data += cut[: self.rng.randint(1, len(cut) - 1)]
        self.journal.write(lines)
        self.env.stats.inc("aborted_pipelines")
        self.env.stats.inc("cmds", len(parts))
        self.env.stats.inc("writes_sent", len(lines))
        sock = socket.create_connection((HOST, self.env.port()), timeout=3)
        try:
            sock.sendall(data)
            if self.rng.random() < 0.5:
                sock.settimeout(0.2)
                try:
                    sock.recv(self.rng.randint(1, 4096))
                except OSError:
                    pass
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            sock.close()


def encode(*args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def subscriber(env: Env):
    """Subscribes to this worker's channel and a broadcast one; resubscribes
    after any error (a pub/sub client is dropped when its backend connection is)."""
    s = env.stats
    w = env.args.id
    while env.running():
        c = None
        try:
            c = env.client(socket_timeout=5)
            p = c.pubsub(ignore_subscribe_messages=True)
            p.subscribe(f"soak:ch:{w}", "soak:bcast")
            s.inc("subscribes")
            while env.running():
                m = p.get_message(timeout=1.0)
                if m is not None:
                    s.inc("messages_received")
        except Exception as e:  # noqa: BLE001 - every failure means: resubscribe
            s.inc("subscriber_errors")
            s.error("subscriber: " + error_class(e))
            env.stop.wait(0.5)
        finally:
            if c is not None:
                close_client(c)


def churn(env: Env):
    """Connections opened and closed all the time: PING and close, or close
    (RST) without reading the reply."""
    rng = random.Random(env.args.seed * 31 + env.args.id)
    s = env.stats
    n = 0
    while env.running() and n < 10_000_000:
        n += 1
        env.stop.wait(rng.uniform(0.02, 0.15))
        try:
            sock = socket.create_connection((HOST, env.port()), timeout=3)
            try:
                sock.sendall(encode("PING") + (encode("GET", f"{STR_KS}:{rng.randint(1, PRELOAD_ROWS)}")
                                               if rng.random() < 0.3 else b""))
                if rng.random() < 0.7:
                    sock.settimeout(3)
                    data = sock.recv(64)
                    if not data.startswith(b"+PONG"):
                        s.error("churn: no PONG " + data[:30].decode("latin-1").strip())
                else:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            finally:
                sock.close()
            s.inc("churn_connections")
        except OSError as e:
            s.error("churn: " + type(e).__name__)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--id", type=int, required=True)
    ap.add_argument("--workers", type=int, required=True)
    ap.add_argument("--incarnation", type=int, default=0)
    ap.add_argument("--work", required=True)
    ap.add_argument("--t0", type=float, required=True, help="time.monotonic() of the soak start")
    ap.add_argument("--deadline", type=float, required=True, help="time.monotonic() to stop at")
    ap.add_argument("--threads", type=int, default=3)
    ap.add_argument("--keys-per-thread", type=int, default=40)
    ap.add_argument("--rate", type=float, default=100.0, help="iterations/s per writer thread (0: no limit)")
    ap.add_argument("--max-iterations", type=int, default=10_000_000)
    ap.add_argument("--socket-timeout", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    assert args.threads <= MAX_THREADS

    env = Env(args)
    signal.signal(signal.SIGTERM, lambda *_: env.stop.set())
    signal.signal(signal.SIGINT, lambda *_: env.stop.set())
    stats_path = os.path.join(args.work, f"stats-w{args.id}-i{args.incarnation}.json")
    threads = [threading.Thread(target=Writer(env, i).run, daemon=True, name=f"writer{i}")
               for i in range(args.threads)]
    threads.append(threading.Thread(target=subscriber, args=(env,), daemon=True, name="subscriber"))
    threads.append(threading.Thread(target=churn, args=(env,), daemon=True, name="churn"))
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        env.stop.wait(2.0)
        env.stats.dump(stats_path)
        if not env.running():
            end = time.monotonic() + args.socket_timeout + 5
            for t in threads:
                t.join(max(0.1, end - time.monotonic()))
            break
    alive = [t.name for t in threads if t.is_alive()]
    env.stats.counts["threads_stuck_at_exit"] = len(alive)
    env.stats.dump(stats_path)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
