"""Busy scripts and blocked clients through Larder, compared with redis-server.

* SCRIPT KILL and FUNCTION KILL go out of band (src/server/script_watch.hpp):
  they reach Redis while a script runs, however the clients share Larder's
  backend connections; the script's client gets Redis' error, every other
  client Redis' -BUSY, as directly.
* Blocked clients are served in the order they blocked: dedicated
  connections wait ready in a pool, so no connect delay reorders them.

Run: /usr/bin/python3 tests/integration/test_busy_scripts.py
"""

from __future__ import annotations

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import LarderTestCase, RawClient, RespError  # noqa: E402

BUSY_EVAL = RespError("BUSY Redis is busy running a script. You can only call SCRIPT KILL or "
                      "SHUTDOWN NOSAVE.")
BUSY_FUNCTION = RespError("BUSY Redis is busy running a script. You can only call FUNCTION KILL "
                          "or SHUTDOWN NOSAVE.")
LOOP_LIB = "#!lua name=busylib\nredis.register_function('spin', function() while true do end end)"


class BusyScriptTest(LarderTestCase):

    def setUp(self):
        self.backend = self.start_redis()
        self.direct = self.start_redis()
        # One worker, one shared connection: every client shares the connection
        # the script runs on, the case where a kill could queue behind it.
        self.larder = self.start_larder(self.backend, threads=1,
                                        config={"redis": {"connections_per_worker": 1}})

    def conn(self, port: int) -> RawClient:
        c = RawClient(port, timeout=harness.scaled(10))
        self.addCleanup(c.close)
        return c

    def run_busy(self, port: int, start: tuple, kill: tuple, busy: RespError) -> dict:
        runner, other, killer = self.conn(port), self.conn(port), self.conn(port)
        self.assertEqual(killer.call("CONFIG", "SET", "busy-reply-threshold", "50"), "OK")
        runner.send_command(*start)
        harness.wait_until(lambda: other.call("PING") == busy, 10, "Redis to answer -BUSY")
        seen = {"ping": other.call("PING"), "get": other.call("GET", "k"),
                "wrong kill": killer.call("FUNCTION" if kill[0] == "SCRIPT" else "SCRIPT",
                                          "KILL")}
        started = time.monotonic()
        seen["kill"] = killer.call(*kill)
        self.assertFast(started, 2.0, f"{' '.join(kill)} during a busy script")
        seen["script"] = runner.read_reply()
        harness.wait_until(lambda: other.call("PING") == "PONG", 5, "Redis to be free again")
        seen["after"] = runner.call("PING")
        return seen

    def compare(self, start: tuple, kill: tuple, busy: RespError):
        got = {}
        for name, port in (("larder", self.larder.port), ("redis", self.direct.port)):
            got[name] = self.run_busy(port, start, kill, busy)
        self.assertEqual(got["larder"], got["redis"])
        self.assertEqual(got["larder"]["get"], busy)
        self.assertEqual(got["larder"]["kill"], "OK")
        self.assertIn("killed by user", str(got["larder"]["script"]))

    def test_script_kill_during_eval(self):
        self.compare(("EVAL", "while true do end", "0"), ("SCRIPT", "KILL"), BUSY_EVAL)

    def test_function_kill_during_fcall(self):
        for port in (self.larder.port, self.direct.port):
            self.assertEqual(self.conn(port).call("FUNCTION", "LOAD", "REPLACE", LOOP_LIB),
                             b"busylib")
        self.compare(("FCALL", "spin", "0"), ("FUNCTION", "KILL"), BUSY_FUNCTION)

    def test_pipelined_after_own_script_waits_for_it(self):
        # Redis reads the script's own connection only after the script:
        # a PING pipelined behind the EVAL is answered PONG after its error.
        for port in (self.larder.port, self.direct.port):
            runner, killer = self.conn(port), self.conn(port)
            self.assertEqual(killer.call("CONFIG", "SET", "busy-reply-threshold", "50"), "OK")
            runner.send(harness.encode_command("EVAL", "while true do end", "0") +
                        harness.encode_command("PING"))
            harness.wait_until(lambda: killer.call("PING") == BUSY_EVAL, 10, "-BUSY")
            self.assertEqual(killer.call("SCRIPT", "KILL"), "OK")
            self.assertIn("killed by user", str(runner.read_reply()))
            self.assertEqual(runner.read_reply(), "PONG")

    def test_script_kill_when_nothing_runs(self):
        larder, direct = self.conn(self.larder.port), self.conn(self.direct.port)
        for args in (("SCRIPT", "KILL"), ("FUNCTION", "KILL")):
            self.assertEqual(larder.call(*args), direct.call(*args))


class BlockedOrderTest(LarderTestCase):

    def setUp(self):
        self.backend = self.start_redis()
        self.direct = self.start_redis()
        self.larder = self.start_larder(self.backend, threads=2)

    def served(self, port: int, server: harness.RedisServer, n: int, gap: float) -> list:
        admin = server.client()
        self.addCleanup(harness.close_client, admin)
        clients = [RawClient(port) for _ in range(n)]
        for c in clients:
            self.addCleanup(c.close)
            self.assertEqual(c.call("PING"), "PONG")
        for c in clients:
            c.send_command("BLPOP", "order-q", "0")
            time.sleep(gap)
        harness.wait_until(lambda: admin.info("clients")["blocked_clients"] == n, 10,
                           f"{n} blocked clients in Redis")
        admin.rpush("order-q", *[f"v{i}" for i in range(n)])
        return [c.read_reply() for c in clients]

    def test_two_and_four_clients_served_in_send_order(self):
        for n in (2, 4):
            expected = [[b"order-q", f"v{i}".encode()] for i in range(n)]
            self.assertEqual(self.served(self.direct.port, self.direct, n, 0.02), expected)
            self.assertEqual(self.served(self.larder.port, self.backend, n, 0.02), expected)

    def test_brpoplpush_with_multiple_blocked_clients(self):
        # Redis' own unit/type/list test, which hung through Larder when the
        # first client's call reached Redis after the second one's. Its two
        # calls are sent microseconds apart: with one worker thread Larder
        # reads them in that order (with several, clients on different
        # threads are read as the threads run: docs/compatibility.md).
        larder = self.start_larder(self.backend, threads=1)
        for port in (self.direct.port, larder.port):
            r, rd1, rd2 = RawClient(port), RawClient(port), RawClient(port)
            for c in (r, rd1, rd2):
                self.addCleanup(c.close)
            self.assertEqual(r.call("DEL", "blist", "target1", "target2") >= 0, True)
            self.assertEqual(r.call("SET", "target1", "nolist"), "OK")
            rd1.send_command("BRPOPLPUSH", "blist", "target1", "0")
            rd2.send_command("BRPOPLPUSH", "blist", "target2", "0")
            time.sleep(0.05)
            self.assertEqual(r.call("LPUSH", "blist", "foo"), 1)
            self.assertIn("WRONGTYPE", str(rd1.read_reply()), f"port {port}")
            self.assertEqual(rd2.read_reply(), b"foo")
            self.assertEqual(r.call("LRANGE", "target2", "0", "-1"), [b"foo"])


if __name__ == "__main__":
    harness.main()
