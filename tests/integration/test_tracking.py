"""Client-side caching (CLIENT TRACKING) through Larder, compared with redis-server.

REDIRECT names a client by the id CLIENT ID gave it: through Larder that is a
Larder id, which Larder maps to the Redis id of the target's dedicated
connection (src/proxy/tracking.cpp), and back in CLIENT GETREDIR, CLIENT
TRACKINGINFO and tracking-redir-broken. RESP3 tracking pushes come on the
tracking client's own connection. Every scenario runs against Larder (two
workers: consecutive connections land on different ones, so the target and
the tracking client are on different threads) and against a redis-server
directly, and both must see the same thing, ids aside.

Run: /usr/bin/python3 tests/integration/test_tracking.py
"""

from __future__ import annotations

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import LarderTestCase, RawClient, RespError  # noqa: E402


class Push(list):
    """A RESP3 push frame ('>'), told apart from an array reply."""


class Client(RawClient):
    """A RawClient that also reads RESP3 (maps as lists of pairs, pushes as Push)."""

    def read_reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"_":
            return None
        if kind in (b"%", b"~", b">"):
            n = int(rest) * (2 if kind == b"%" else 1)
            items = [self.read_reply() for _ in range(n)]
            return Push(items) if kind == b">" else items
        self.buf = line + b"\r\n" + self.buf
        return super().read_reply()


def info(reply: list) -> dict:
    """CLIENT TRACKINGINFO as a dict, RESP2 or RESP3."""
    return {reply[i]: reply[i + 1] for i in range(0, len(reply), 2)}


class TrackingTest(LarderTestCase):

    @classmethod
    def setUpClass(cls):
        cls.start_shared_and_direct(larder_kwargs={"threads": 2})

    def conn(self, port: int) -> Client:
        c = Client(port)
        self.addCleanup(c.close)
        return c

    def sides(self):
        return [("larder", self.larder.port), ("direct", self.direct.port)]

    def subscribed_target(self, port: int):
        target = self.conn(port)
        target_id = target.call("CLIENT", "ID")
        self.assertEqual(target.call("SUBSCRIBE", "__redis__:invalidate"),
                         [b"subscribe", b"__redis__:invalidate", 1])
        return target, target_id

    def test_redirect_to_a_subscribed_resp2_client(self):
        for side, port in self.sides():
            with self.subTest(side=side):
                target, target_id = self.subscribed_target(port)
                tracker, writer = self.conn(port), self.conn(port)
                self.assertEqual(tracker.call("CLIENT", "TRACKING", "on", "REDIRECT", target_id),
                                 "OK")
                writer.call("SET", f"{side}:a", "1")
                writer.call("SET", f"{side}:b", "1")
                tracker.call("GET", f"{side}:a")
                writer.call("INCR", f"{side}:b")  # not read: no invalidation
                writer.call("INCR", f"{side}:a")
                self.assertEqual(target.read_reply(),
                                 [b"message", b"__redis__:invalidate", [f"{side}:a".encode()]])
                # The id the client named, not the Redis id of a backend connection.
                self.assertEqual(tracker.call("CLIENT", "GETREDIR"), target_id)
                self.assertEqual(info(tracker.call("CLIENT", "TRACKINGINFO")),
                                 {b"flags": [b"on"], b"redirect": target_id, b"prefixes": []})
                # NOLOOP: the tracking client's own write is not announced.
                self.assertEqual(tracker.call("CLIENT", "TRACKING", "off"), "OK")
                self.assertEqual(tracker.call("CLIENT", "TRACKING", "on", "BCAST", "NOLOOP",
                                              "REDIRECT", target_id, "PREFIX", f"{side}:p"), "OK")
                tracker.call("SET", f"{side}:p1", "x")
                writer.call("SET", f"{side}:p2", "x")
                self.assertEqual(target.read_reply(),
                                 [b"message", b"__redis__:invalidate", [f"{side}:p2".encode()]])
                self.assertEqual(tracker.call("CLIENT", "TRACKING", "off"), "OK")
                self.assertEqual(tracker.call("CLIENT", "GETREDIR"), -1)
                self.assertEqual(tracker.call("CLIENT", "TRACKING", "on"), "OK")
                self.assertEqual(tracker.call("CLIENT", "GETREDIR"), 0)

    def test_redirect_to_no_such_client(self):
        errors = {}
        for side, port in self.sides():
            with self.subTest(side=side):
                tracker = self.conn(port)
                errors[side] = [
                    tracker.call("CLIENT", "TRACKING", "on", "REDIRECT", "987654"),
                    tracker.call("CLIENT", "TRACKING", "on", "REDIRECT", "0"),
                    tracker.call("CLIENT", "TRACKING", "on", "REDIRECT", "x"),
                    tracker.call("CLIENT", "TRACKING", "on", "REDIRECT", "1", "REDIRECT", "2"),
                ]
                self.assertEqual(tracker.call("CLIENT", "GETREDIR"), -1)
        self.assertIsInstance(errors["larder"][0], RespError)
        self.assertEqual(str(errors["larder"][0]),
                         "ERR The client ID you want redirect to does not exist")
        self.assertEqual([str(e) for e in errors["larder"]], [str(e) for e in errors["direct"]])

    def test_target_quit_breaks_the_redirection(self):
        for side, port in self.sides():
            with self.subTest(side=side):
                target, target_id = self.subscribed_target(port)
                tracker, writer = self.conn(port), self.conn(port)
                self.assertEqual(tracker.call("HELLO", "3")[4:6], [b"proto", 3])
                self.assertEqual(tracker.call("CLIENT", "TRACKING", "on", "REDIRECT", target_id),
                                 "OK")
                writer.call("SET", f"{side}:k", "1")
                tracker.call("GET", f"{side}:k")
                self.assertEqual(target.call("QUIT"), "OK")
                writer.call("SET", f"{side}:k", "2")
                self.assertEqual(tracker.call("PING"),
                                 Push([b"tracking-redir-broken", target_id]))
                self.assertEqual(tracker.read_reply(), "PONG")
                tracking = info(tracker.call("CLIENT", "TRACKINGINFO"))
                self.assertEqual(tracking[b"flags"], [b"on", b"broken_redirect"])
                self.assertEqual(tracking[b"redirect"], target_id)

    def test_target_closing_its_socket_breaks_the_redirection(self):
        for side, port in self.sides():
            with self.subTest(side=side):
                target, target_id = self.subscribed_target(port)
                tracker, writer = self.conn(port), self.conn(port)
                tracker.call("HELLO", "3")
                tracker.call("CLIENT", "TRACKING", "on", "REDIRECT", target_id)
                tracker.call("GET", f"{side}:c")
                target.close()
                # Redis notices the closed connection on its own time, directly
                # as through Larder: track, write, look, until it has.
                pushes = []
                for _ in range(100):
                    writer.call("SET", f"{side}:c", "1")
                    pushes += self.until_reply(tracker, "GET", f"{side}:c")[0]
                    writer.call("SET", f"{side}:c", "2")
                    pushes += self.until_reply(tracker, "PING")[0]
                    if Push([b"tracking-redir-broken", target_id]) in pushes:
                        break
                    time.sleep(0.02)
                self.assertIn(Push([b"tracking-redir-broken", target_id]), pushes)

    def until_reply(self, client: Client, *command):
        """(pushes before the reply, the reply) of one command."""
        client.send_command(*command)
        pushes = []
        while isinstance(reply := client.read_reply(), Push):
            pushes.append(reply)
        return pushes, reply

    def test_resp3_tracking_without_redirect(self):
        for side, port in self.sides():
            with self.subTest(side=side):
                tracker, writer = self.conn(port), self.conn(port)
                tracker.call("HELLO", "3")
                self.assertEqual(tracker.call("CLIENT", "TRACKING", "on"), "OK")
                writer.call("SET", f"{side}:r", "1")
                self.assertEqual(tracker.call("GET", f"{side}:r"), b"1")
                writer.call("SET", f"{side}:r", "2")
                self.assertEqual(tracker.call("PING"),
                                 Push([b"invalidate", [f"{side}:r".encode()]]))
                self.assertEqual(tracker.read_reply(), "PONG")
                # Its own write: the reply first, then the push.
                tracker.call("GET", f"{side}:r")
                self.assertEqual(tracker.call("DEL", f"{side}:r"), 1)
                self.assertEqual(tracker.read_reply(),
                                 Push([b"invalidate", [f"{side}:r".encode()]]))
                # HELLO 2 and back: the tracking connection follows.
                self.assertEqual(tracker.call("HELLO", "2")[4:6], [b"proto", 2])
                self.assertEqual(tracker.call("GET", f"{side}:r"), None)
                self.assertEqual(tracker.call("HELLO", "3")[4:6], [b"proto", 3])
                writer.call("SET", f"{side}:r", "3")
                self.assertEqual(tracker.call("PING"),
                                 Push([b"invalidate", [f"{side}:r".encode()]]))
                self.assertEqual(tracker.read_reply(), "PONG")

    def test_redirect_to_an_unsubscribed_resp3_client(self):
        for side, port in self.sides():
            with self.subTest(side=side):
                target = self.conn(port)
                target.call("HELLO", "3")
                target_id = target.call("CLIENT", "ID")
                tracker, writer = self.conn(port), self.conn(port)
                self.assertEqual(tracker.call("CLIENT", "TRACKING", "on", "REDIRECT", target_id),
                                 "OK")
                writer.call("SET", f"{side}:u", "1")
                tracker.call("GET", f"{side}:u")
                target.send_command("CLIENT", "REPLY", "OFF")
                writer.call("SET", f"{side}:u", "2")
                self.assertEqual(target.read_reply(),
                                 Push([b"invalidate", [f"{side}:u".encode()]]))
                self.assertEqual(target.call("CLIENT", "REPLY", "ON"), "OK")
                self.assertEqual(target.call("PING"), "PONG")


if __name__ == "__main__":
    unittest.main()
