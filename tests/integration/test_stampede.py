"""Stampede control beyond single-flight (docs/stampede.md): the cross-instance
lease, XFetch early refresh and stale-while-revalidate.

Real redis-server and PostgreSQL 15 on loopback (harness.py), several Larder
processes on them. Queries are counted on PostgreSQL's side with
pg_stat_statements, not with Larder's own counters.

Run: /usr/bin/python3 tests/integration/test_stampede.py [-v]
"""

from __future__ import annotations

import os
import re
import selectors
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (HOST, PG_BIN, LarderTestCase, PostgresServer, close_client,  # noqa: E402
                     module_postgres,
                     free_port, scaled, wait_until)

DB = "app"
SCHEMA = r"""
CREATE EXTENSION pg_stat_statements;
CREATE TABLE items (id bigint PRIMARY KEY, body text NOT NULL);
INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g;
"""

PG: PostgresServer | None = None


def setUpModule():
    global PG
    PG = module_postgres(DB, SCHEMA,
                         conf_lines=["shared_preload_libraries = 'pg_stat_statements'"])


def load_queries() -> int:
    """Completed SELECTs of the items table by the Loader (its batched
    `... JOIN unnest($1...)` statement), from pg_stat_statements."""
    out = PG.psql("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
                  "WHERE query LIKE '%unnest%' AND query LIKE '%items%'", dbname=DB)
    return int(out.strip())


def reset_statements():
    PG.psql("SELECT pg_stat_statements_reset()", dbname=DB)


def metrics(admin_port: int) -> str:
    with urllib.request.urlopen(f"http://{HOST}:{admin_port}/metrics", timeout=5) as r:
        return r.read().decode()


def metric(text: str, name: str) -> float:
    total = 0.0
    for m in re.finditer(r"^" + re.escape(name) + r"(\{[^}]*\})?\s+(\S+)$", text, re.M):
        total += float(m.group(2))
    return total


class LockedTable:
    """Holds ACCESS EXCLUSIVE on the table for `seconds`: every SELECT of it
    waits, so concurrent misses really overlap whatever the machine's speed."""

    def __init__(self, seconds: float):
        psql = os.path.join(PG_BIN, "psql")
        sql = f"BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE; SELECT 'locked'; " \
              f"SELECT pg_sleep({seconds}); COMMIT;"
        self.proc = subprocess.Popen(
            [psql, "-X", "-At", "-h", HOST, "-p", str(PG.port), "-U", PG.SUPERUSER, "-d", DB,
             "-c", sql], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=PG._env())
        wait_until(lambda: PG.psql(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = 'items' AND l.mode = 'AccessExclusiveLock' AND l.granted",
            dbname=DB).strip() == "1", 10, "the table lock")

    def wait(self):
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err.decode(errors="replace")


def get_all_at_once(ports_clients: list, key: str, timeout: float) -> list:
    """Opens every connection first, then sends `GET key` on all of them
    together and reads every reply. Returns the replies (bytes)."""
    request = f"*2\r\n$3\r\nGET\r\n${len(key)}\r\n{key}\r\n".encode()
    socks = []
    for port, n in ports_clients:
        for _ in range(n):
            s = socket.create_connection((HOST, port), timeout=timeout)
            socks.append(s)
    try:
        for s in socks:
            s.sendall(request)
        sel = selectors.DefaultSelector()
        replies = {s: b"" for s in socks}
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        pending = len(socks)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for k, _ in sel.select(timeout=0.1):
                data = k.fileobj.recv(4096)
                replies[k.fileobj] += data
                done = replies[k.fileobj]
                if not data or (done.endswith(b"\r\n") and (done[:1] != b"$" or
                                                            done.count(b"\r\n") >= 2 or
                                                            done == b"$-1\r\n")):
                    sel.unregister(k.fileobj)
                    pending -= 1
        sel.close()
        return [replies[s] for s in socks]
    finally:
        for s in socks:
            s.close()


class StampedeCase(LarderTestCase):
    def start_instance(self, redis_server, stampede: dict, ttl: str = "1h", **config):
        admin_port = free_port()
        ks = {"key": "item:{id}", "table": "public.items", "shape": "string",
              "columns": ["body"], "ttl": ttl, "write": "behind", "stampede": stampede}
        # The table lock must not outlast statement_timeout (5s by default),
        # however slow the build (LARDER_TEST_SLOW scales the lock too).
        cfg = {"postgres": {"dsn": PG.dsn(DB), "pool_size": 2,
                            "statement_timeout": f"{int(scaled(20))}s"},
               "read_through": {"load_timeout": f"{int(scaled(8) * 1000)}ms"},
               "admin": f"{HOST}:{admin_port}", "keyspaces": {"items": ks}}
        cfg.update(config)
        larder = self.start_larder(redis_server, config=cfg, threads=2)
        larder.admin_port = admin_port
        return larder

    def direct(self, redis_server):
        c = redis_server.client()
        self.addCleanup(close_client, c)
        return c


class LeaseTest(StampedeCase):
    CLIENTS = 300

    def stampede(self, lease: str, key: str, expect_body: bytes | None) -> tuple[int, list]:
        """3 instances x 300 clients GET one cold key while the table is
        locked; returns (queries PostgreSQL completed, the instances).
        `lease`: "0s" (off) or "on"."""
        server = self.start_redis()
        if lease != "0s":
            # A load slower than the lease lets a second instance take over
            # (as designed): the lease outlasts the lock, however slow the build.
            lease = f"{int(scaled(5))}s"
        larders = [self.start_instance(server, {"lease": lease}) for _ in range(3)]
        reset_statements()
        lock = LockedTable(scaled(1.5))
        replies = get_all_at_once([(larder.port, self.CLIENTS) for larder in larders], key,
                                  timeout=scaled(30))
        lock.wait()
        want = (b"$%d\r\n%s\r\n" % (len(expect_body), expect_body) if expect_body is not None
                else b"$-1\r\n")
        wrong = [r for r in replies if r != want]
        self.assertEqual(len(replies), 3 * self.CLIENTS)
        self.assertEqual(wrong[:3], [], f"{len(wrong)} clients got something else")
        # The statement completes after the lock goes; give the stats a moment.
        time.sleep(0.2)
        return load_queries(), larders

    def test_three_instances_one_query_for_a_cold_key(self):
        queries, larders = self.stampede("on", "item:7", b"item 7")
        self.assertEqual(queries, 1, "one SELECT for 900 clients on 3 instances")
        won = sum(metric(metrics(l.admin_port), "larder_load_leases_won_total") for l in larders)
        waited = sum(metric(metrics(l.admin_port), "larder_load_leases_waited_total")
                     for l in larders)
        self.assertEqual((won, waited), (1, 2))

    def test_without_the_lease_each_instance_queries(self):
        """The control: single-flight alone is per process, so the same
        stampede with `lease: 0s` costs one query per instance."""
        queries, _ = self.stampede("0s", "item:8", b"item 8")
        self.assertEqual(queries, 3)

    def test_absent_row_one_query(self):
        """A row that does not exist: the holder leaves the lease saying
        "absent", and the others answer nil without their own query."""
        queries, _ = self.stampede("on", "item:5000", None)
        self.assertEqual(queries, 1)

    def test_holder_killed_another_takes_over(self):
        """The instance holding the lease dies mid-load: when the lease runs
        out, an instance waiting on it takes it and loads the row itself."""
        server = self.start_redis()
        a = self.start_instance(server, {"lease": "1s"})
        b = self.start_instance(server, {"lease": "1s"})
        direct = self.direct(server)
        lock = LockedTable(scaled(3))
        got_a = []
        t = threading.Thread(target=lambda: got_a.append(
            get_all_at_once([(a.port, 1)], "item:9", timeout=scaled(20))), daemon=True)
        t.start()
        wait_until(lambda: direct.exists("__larder:lease:item:9") == 1, 10, "A to take the lease")
        holder = direct.get("__larder:lease:item:9")
        a.kill()
        started = time.monotonic()
        replies = get_all_at_once([(b.port, 20)], "item:9", timeout=scaled(20))
        self.assertEqual(set(replies), {b"$6\r\nitem 9\r\n"})
        self.assertGreaterEqual(time.monotonic() - started, 0.5,
                                "B waited for A's lease to run out")
        lock.wait()
        self.assertNotEqual(direct.get("__larder:lease:item:9"), holder)
        self.assertEqual(metric(metrics(b.admin_port), "larder_load_leases_won_total"), 1)
        t.join(5)


class RefreshTest(StampedeCase):
    def steady_reads(self, larder, key: str, seconds: float) -> int:
        """One client reading `key` back to back for `seconds`."""
        c = larder.client(socket_timeout=scaled(10))
        try:
            n = 0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                self.assertIsNotNone(c.get(key))
                n += 1
                time.sleep(0.002)
            return n
        finally:
            close_client(c)

    def misses(self, larder) -> float:
        return metric(metrics(larder.admin_port), "larder_keyspace_misses_total")

    def test_early_refresh_keeps_a_hot_key_from_missing(self):
        """ttl 1s and 4 s of steady reads: with XFetch the key is reloaded
        before it expires, so only the first read misses; without it, the key
        expires under the readers about once a second."""
        server = self.start_redis()
        xfetch = self.start_instance(server, {"lease": "3s", "early_refresh": 50}, ttl="1s")
        reads = self.steady_reads(xfetch, "item:21", 4)
        text = metrics(xfetch.admin_port)
        self.assertGreater(reads, 100)
        self.assertEqual(self.misses(xfetch), 1, "only the cold read missed")
        self.assertGreaterEqual(metric(text, "larder_refreshes_stored_total"), 2)
        self.assertGreaterEqual(metric(text, "larder_early_refresh_triggers_total"), 2)
        direct = self.direct(server)
        self.assertGreater(int(direct.get("__larder:delta:item:21")), 0,
                           "the load time is stored beside the value")

        plain = self.start_instance(self.start_redis(), {"lease": "3s"}, ttl="1s")
        self.steady_reads(plain, "item:21", 4)
        self.assertGreaterEqual(self.misses(plain), 3, "the control misses once per ttl")

    def test_stale_while_revalidate(self):
        """Past its ttl (soft) a value is served at once while one refresh
        runs; the refresh brings the new row. With PostgreSQL down the stale
        value keeps being served until the hard TTL (ttl + window)."""
        server = self.start_redis()
        larder = self.start_instance(server, {"lease": "3s", "stale_while_revalidate": "30s"},
                                     ttl="1s")
        c = self.client(larder)
        direct = self.direct(server)
        self.assertEqual(c.get("item:31"), b"item 31")
        pttl = direct.pttl("item:31")
        self.assertGreater(pttl, 1000, "the hard TTL holds ttl plus the stale window")
        self.assertLessEqual(pttl, 31000)
        PG.psql("UPDATE items SET body = 'item 31 v2' WHERE id = 31", dbname=DB)
        time.sleep(1.3)  # past the soft TTL
        self.assertEqual(c.get("item:31"), b"item 31", "the stale value is served")
        wait_until(lambda: c.get("item:31") == b"item 31 v2", scaled(5), "the refresh to land")
        text = metrics(larder.admin_port)
        self.assertGreaterEqual(metric(text, "larder_stale_hits_total"), 1)
        self.assertGreaterEqual(metric(text, "larder_refreshes_stored_total"), 1)
        self.assertEqual(self.misses(larder), 1)

        PG.stop()
        try:
            time.sleep(1.3)
            for _ in range(5):
                self.assertEqual(c.get("item:31"), b"item 31 v2", "stale but served")
                time.sleep(0.1)
        finally:
            PG.restart()
        self.assertEqual(self.misses(larder), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
