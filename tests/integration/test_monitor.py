"""MONITOR through Larder, compared byte for byte with redis-server's own.

Larder feeds MONITOR itself (src/proxy/monitor_line.cpp): every command its
clients send, in redis-server's line format, AUTH and HELLO AUTH redacted,
admin commands not shown. Its own backend traffic is not shown (docs/
compatibility.md). Each test runs the same commands against Larder, watched
by a Larder monitor, and against a second redis-server directly, watched by
that server's MONITOR, and compares the lines with the timestamps masked and
each client address checked against the client's own socket, then masked.

Run: /usr/bin/python3 tests/integration/test_monitor.py
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import HOST, LarderTestCase, RawClient, close_client  # noqa: E402

import redis  # noqa: E402

LINE = re.compile(rb"^\+?\d+\.\d{6} \[(\d+) ([^\]]+)\] (.*)$")
MARKER = "monitor-test-end"


def monitor_lines(raw: RawClient, until: bytes, limit: int = 200) -> list[bytes]:
    """Lines a raw MONITOR connection gets, up to the one containing `until`."""
    lines = []
    while len(lines) < limit:
        line = raw.read_line()
        lines.append(line)
        if until in line:
            return lines
    raise AssertionError(f"no line with {until!r} in {lines[-5:]!r}")


def masked(lines: list[bytes], addresses: set[str] | None) -> list[bytes]:
    """Timestamps out; each [db address] checked to be a known client (unless
    `addresses` is None), masked."""
    out = []
    for line in lines:
        m = LINE.match(line)
        assert m, f"not a MONITOR line: {line!r}"
        addr = m.group(2).decode()
        assert addresses is None or addr in addresses, f"{line!r}: {addr} is none of the clients {addresses}"
        out.append(b"[" + m.group(1) + b" client] " + m.group(3))
    return out


def sockname(client: redis.Redis) -> str:
    host, port = client.connection._sock.getsockname()[:2]
    return f"{host}:{port}"


class MonitorTest(LarderTestCase):

    def setUp(self):
        self.backend = self.start_redis()
        self.direct = self.start_redis()
        self.larder = self.start_larder(self.backend)

    def sides(self):
        return (("larder", self.larder.port), ("redis", self.direct.port))

    def watch(self, port: int) -> RawClient:
        raw = RawClient(port)
        self.addCleanup(raw.close)
        self.assertEqual(raw.call("MONITOR"), "OK")
        return raw

    def single(self, port: int) -> redis.Redis:
        c = redis.Redis(host=HOST, port=port, single_connection_client=True,
                        socket_timeout=harness.scaled(10))
        self.addCleanup(close_client, c)
        c.ping()
        return c

    def sequence(self, c: redis.Redis):
        c.set("k", "v")
        c.get("k")
        c.set(b"bin\x00\n\"\\ \t", b"\xe9\x01 x\r")
        c.incr("n")
        c.incr("n")
        c.delete("k", "nokey")
        c.execute_command("SELECT", "1")
        c.set("in-db1", "x")
        c.execute_command("SELECT", "0")
        with self.assertRaises(redis.ResponseError):
            c.execute_command("AUTH", "not-a-password")
        with self.assertRaises(redis.ResponseError):
            c.execute_command("AUTH", "someone", "not-a-password")
        with self.assertRaises(redis.ResponseError):
            c.execute_command("HELLO", "2", "AUTH", "someone", "not-a-password")
        p = c.pipeline(transaction=True)
        p.set("a", "1").incr("a")
        self.assertEqual(p.execute(), [True, 2])
        with self.assertRaises(redis.ResponseError):
            c.execute_command("NOSUCHCOMMAND", "x")  # refused before it runs: not shown
        c.execute_command("CONFIG", "GET", "maxmemory")  # admin: not shown
        self.assertEqual(c.eval("return redis.call('get', KEYS[1])", 1, "a"), b"2")
        c.client_setname("watched")
        c.echo("e")
        c.execute_command("PING")
        c.echo(MARKER)

    def test_lines_match_redis_byte_for_byte(self):
        got = {}
        for name, port in self.sides():
            c = self.single(port)
            mon = self.watch(port)
            self.sequence(c)
            # redis-py runs the MULTI pipeline on a connection of its own.
            lines = monitor_lines(mon, MARKER.encode())
            # Redis also shows what its scripts run ("[0 lua]"); Larder cannot
            # see inside a script (docs/compatibility.md): those are left out.
            got[name] = masked([line for line in lines if b" lua] " not in line], None)
        self.assertEqual(got["larder"], got["redis"])
        self.assertIn(b'[0 client] "AUTH" "(redacted)" "(redacted)"', got["larder"])
        self.assertIn(b'[1 client] "SELECT" "1"', got["larder"])
        self.assertIn(b'[0 client] "SET" "bin\\x00\\n\\"\\\\ \\t" "\\xe9\\x01 x\\r"', got["larder"])

    def test_every_client_and_worker_is_shown(self):
        # Larder runs two worker threads: clients on both appear, in the
        # order each one sent its commands.
        clients = [self.single(self.larder.port) for _ in range(4)]
        mon = self.watch(self.larder.port)
        for round_ in range(3):
            for i, c in enumerate(clients):
                c.set(f"c{i}", round_)
        clients[0].echo(MARKER)
        lines = masked(monitor_lines(mon, MARKER.encode()), {sockname(c) for c in clients})
        self.assertEqual(len(lines), 13)
        self.assertEqual(lines[:4], [f'[0 client] "SET" "c{i}" "0"'.encode() for i in range(4)])

    def test_redis_cli_monitor(self):
        outputs = {}
        for name, port in self.sides():
            cli = subprocess.Popen([harness.REDIS_CLI, "-p", str(port), "monitor"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            self.addCleanup(cli.kill)
            self.assertEqual(cli.stdout.readline(), b"OK\n")
            for args in (["SET", "cli-key", "a b"], ["LPUSH", "cli-list", "x", "y"],
                         ["AUTH", "secret"], ["ECHO", MARKER]):
                subprocess.run([harness.REDIS_CLI, "-p", str(port)] + args, check=True,
                               stdout=subprocess.DEVNULL, timeout=harness.scaled(10))
            lines = []
            while not lines or MARKER.encode() not in lines[-1]:
                lines.append(cli.stdout.readline().rstrip(b"\n"))
            cli.kill()
            cli.wait()
            # redis-cli connects anew for each command: the addresses differ.
            outputs[name] = [re.sub(rb"^\d+\.\d{6} \[0 [^\]]+\] ", b"", line) for line in lines]
        self.assertEqual(outputs["larder"], outputs["redis"])
        self.assertIn(b'"AUTH" "(redacted)"', outputs["larder"])

    def test_a_monitor_that_does_not_read_is_dropped(self):
        larder = self.start_larder(self.backend, config={"limits": {"client_output_limit": "256kb"}})
        stalled = socket.create_connection((HOST, larder.port))
        self.addCleanup(stalled.close)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(b"MONITOR\r\n")
        harness.wait_until(lambda: b"flags=O" in self.client(larder).execute_command("CLIENT", "LIST"),
                           what="the monitor to be registered")
        writer = self.client(larder)
        value = "x" * 1000
        for _ in range(200):  # at most 200 x 50 x ~1 KiB lines: far past 256 KiB
            pipe = writer.pipeline(transaction=False)
            for i in range(50):
                pipe.set(f"k{i}", value)
            pipe.execute()
            if larder.info_larder().get("output_limit_disconnections", 0) >= 1:
                break
        harness.wait_until(lambda: b"flags=O" not in writer.execute_command("CLIENT", "LIST"),
                           what="the stalled monitor to be closed")
        self.assertTrue(writer.ping())  # the others are served as before
        self.assertEqual(writer.get("k0"), value.encode())

    def test_reset_ends_monitoring(self):
        c = self.single(self.larder.port)
        mon = self.watch(self.larder.port)
        c.set("seen", 1)
        self.assertIn(b'"SET" "seen" "1"', mon.read_line())
        self.assertEqual(mon.call("RESET"), "RESET")
        c.set("unseen", 1)
        self.assertEqual(mon.call("PING"), "PONG")  # no MONITOR line before it


if __name__ == "__main__":
    harness.main()
