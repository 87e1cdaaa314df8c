"""CLIENT REPLY, KILL, LIST, INFO, NO-EVICT and PAUSE for Larder's clients.

Redis' own clients are Larder's backend connections, so Larder answers these
for its clients across its worker threads (src/proxy/client_commands.cpp,
src/server/client_directory.cpp). Where Redis has an answer (reply bytes,
error texts, the fields of a CLIENT LIST line) the same request goes to a
redis-server directly and the bytes are compared.

Run: /usr/bin/python3 tests/integration/test_clients.py
"""

from __future__ import annotations

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import HOST, LarderTestCase, RawClient, RespError, encode_command  # noqa: E402


def fields(line: bytes) -> dict:
    return dict(f.split("=", 1) for f in line.decode().split())


class ClientsTest(LarderTestCase):

    @classmethod
    def setUpClass(cls):
        cls.start_shared_and_direct(larder_kwargs={"threads": 2})

    def conn(self, port: int | None = None) -> RawClient:
        c = RawClient(port or self.larder.port)
        self.addCleanup(c.close)
        return c

    def both(self):
        return self.conn(), self.conn(self.direct.port)

    def read_exact(self, conn: RawClient, n_bytes: int) -> bytes:
        return conn.read_raw(n_bytes)

    def test_reply_off_on_skip_under_pipelining(self):
        pipeline = [("SET", "r1", "a"), ("CLIENT", "REPLY", "OFF"), ("SET", "r2", "b"),
                    ("GET", "r1"), ("PING",), ("BLPOP", "no-such-list", "0.05"),
                    ("CLIENT", "REPLY", "ON"), ("GET", "r2"), ("CLIENT", "REPLY", "SKIP"),
                    ("GET", "r1"), ("INCR", "r1"), ("CLIENT", "REPLY", "SKIP"),
                    ("CLIENT", "REPLY", "ON"), ("MGET", "r1", "r2"), ("CLIENT", "REPLY", "BAD")]
        expected = (b"+OK\r\n+OK\r\n$1\r\nb\r\n-ERR value is not an integer or out of range\r\n"
                    b"+OK\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n-ERR syntax error\r\n")
        data = b"".join(encode_command(*args) for args in pipeline)
        for conn in self.both():
            conn.send(data)
            self.assertEqual(conn.read_raw(len(expected)), expected)
            self.assertEqual(conn.call("PING"), "PONG")  # nothing else was left behind

    def test_kill_errors_are_redis_words(self):
        larder, direct = self.both()
        for args in (("CLIENT", "KILL"), ("CLIENT", "KILL", "ID", "10", "wrong_arg"),
                     ("CLIENT", "KILL", "ID", "str"), ("CLIENT", "KILL", "ID", "-1"),
                     ("CLIENT", "KILL", "ID", "0"), ("CLIENT", "KILL", "TYPE", "wrong_type"),
                     ("CLIENT", "KILL", "USER", "wrong_user"),
                     ("CLIENT", "KILL", "SKIPME", "yes_or_no"), ("CLIENT", "KILL", "1.2.3.4:5"),
                     ("CLIENT", "KILL", "TYPE", "master"), ("CLIENT", "LIST", "TYPE", "x"),
                     ("CLIENT", "LIST", "ID", "x"), ("CLIENT", "PAUSE", "x"),
                     ("CLIENT", "PAUSE", "10", "SOME"), ("CLIENT", "NO-EVICT", "maybe")):
            self.assertEqual(larder.call(*args), direct.call(*args), args)

    def test_unblock_like_redis(self):
        # Redis' unit/type/list "client unblock tests": the blocked call runs
        # on the client's dedicated connection, which Larder finds by CLIENT ID.
        got = {}
        for name, (r, rd) in (("larder", (self.conn(), self.conn())),
                              ("redis", (self.conn(self.direct.port),
                                         self.conn(self.direct.port)))):
            seen = []
            rid = rd.call("CLIENT", "ID")
            r.call("DEL", "ul")
            for mode in ((), ("TIMEOUT",), ("ERROR",)):
                rd.send_command("BLPOP", "ul", "0")
                harness.wait_until(lambda: r.call("CLIENT", "UNBLOCK", str(rid), *mode) == 1, 5,
                                   "the client to be blocked")
                seen.append(rd.read_reply())
            seen.append(r.call("CLIENT", "UNBLOCK", "asd"))
            seen.append(r.call("CLIENT", "UNBLOCK", str(rid), "maybe"))
            seen.append(r.call("CLIENT", "UNBLOCK", str(r.call("CLIENT", "ID"))))
            seen.append(r.call("CLIENT", "UNBLOCK", str(rid)))  # not blocked now
            rd.send_command("BLPOP", "ul", "0")  # still usable
            r.call("LPUSH", "ul", "foo")
            seen.append(rd.read_reply())
            got[name] = seen
        self.assertEqual(got["larder"], got["redis"])
        self.assertEqual(got["larder"][2],
                         RespError("UNBLOCKED client unblocked via CLIENT UNBLOCK"))

    def victims(self, n: int) -> list[tuple[RawClient, int, str]]:
        out = []
        for _ in range(n):
            c = self.conn()
            cid = c.call("CLIENT", "ID")
            addr = fields(c.call("CLIENT", "INFO"))["addr"]
            out.append((c, cid, addr))
        return out

    def assertClosed(self, c: RawClient):
        c.expect_closed(5)

    def test_kill_by_id_and_addr_across_workers(self):
        me = self.conn()
        (a, a_id, _), (b, _, b_addr) = self.victims(2)  # one per worker thread
        self.assertEqual(me.call("CLIENT", "KILL", "ID", str(a_id)), 1)
        self.assertClosed(a)
        self.assertEqual(me.call("CLIENT", "KILL", "ADDR", b_addr), 1)
        self.assertClosed(b)
        (c, _, c_addr), = self.victims(1)
        self.assertEqual(me.call("CLIENT", "KILL", c_addr), "OK")  # the old form
        self.assertClosed(c)
        self.assertEqual(me.call("CLIENT", "KILL", c_addr), RespError("ERR No such client"))
        self.assertEqual(me.call("CLIENT", "KILL", "ID", str(a_id)), 0)
        self.assertEqual(me.call("PING"), "PONG")

    def test_kill_by_type(self):
        me = self.conn()
        sub = self.conn()
        sub.send_command("SUBSCRIBE", "kill-ch")
        sub.read_reply()
        (normal, _, _), = self.victims(1)
        self.assertEqual(me.call("CLIENT", "KILL", "TYPE", "pubsub"), 1)
        self.assertClosed(sub)
        self.assertTrue(normal.is_open())
        self.assertEqual(me.call("CLIENT", "KILL", "TYPE", "replica"), 0)
        self.assertEqual(me.call("CLIENT", "KILL", "TYPE", "normal", "ID",
                                 str(normal.call("CLIENT", "ID"))), 1)
        self.assertClosed(normal)

    def test_kill_by_laddr_user_and_skipme(self):
        # One Larder of its own: this kills every client it has.
        larder = self.start_larder(self.redis_server)
        me = RawClient(larder.port)
        self.addCleanup(me.close)
        others = [RawClient(larder.port) for _ in range(3)]
        for o in others:
            self.addCleanup(o.close)
            self.assertEqual(o.call("PING"), "PONG")
        laddr = fields(me.call("CLIENT", "INFO"))["laddr"]
        self.assertEqual(me.call("CLIENT", "KILL", "LADDR", laddr, "USER", "default"), 3)
        for o in others:
            self.assertClosed(o)
        self.assertEqual(me.call("CLIENT", "KILL", "LADDR", "127.0.0.1:1"), 0)
        self.assertEqual(me.call("CLIENT", "KILL", "USER", "default", "SKIPME", "no"), 1)
        self.assertEqual(me.expect_closed(5), b"")

    def test_list_fields_like_redis(self):
        me, direct = self.both()
        me.call("CLIENT", "SETNAME", "lister")
        direct.call("CLIENT", "SETNAME", "lister")
        mine = [fields(line) for line in me.call("CLIENT", "LIST").splitlines()]
        theirs = fields(direct.call("CLIENT", "LIST", "ID", str(direct.call("CLIENT", "ID"))))
        line = next(f for f in mine if f["name"] == "lister")
        # Redis 7.0's fields, in its order (Larder adds 7.2's lib-name, lib-ver).
        self.assertEqual(list(line)[:len(theirs)], list(theirs))
        for key in ("flags", "db", "sub", "psub", "ssub", "multi", "cmd", "user", "resp"):
            self.assertEqual(line[key], theirs[key], key)
        self.assertEqual(line["laddr"], f"{HOST}:{self.larder.port}")
        ids = [int(f["id"]) for f in mine]
        self.assertEqual(ids, sorted(ids))

    def test_list_shows_state_and_filters(self):
        me = self.conn()
        sub = self.conn()
        sub.send_command("PSUBSCRIBE", "p*")
        sub.read_reply()
        sub.send_command("SUBSCRIBE", "a", "b")
        sub.read_reply(), sub.read_reply()
        multi = self.conn()
        self.assertEqual(multi.call("MULTI"), "OK")
        self.assertEqual(multi.call("SET", "x", "1"), "QUEUED")
        mon = self.conn()
        self.assertEqual(mon.call("MONITOR"), "OK")
        sub_id = me.call("CLIENT", "ID") + 1  # ids are given in connection order
        by_id = {int(f["id"]): f for f in
                 (fields(line) for line in me.call("CLIENT", "LIST").splitlines())}
        sub_line = fields(me.call("CLIENT", "LIST", "TYPE", "pubsub").strip())
        self.assertEqual((sub_line["flags"], sub_line["sub"], sub_line["psub"]), ("P", "2", "1"))
        self.assertEqual(int(sub_line["id"]), sub_id)
        self.assertEqual(by_id[sub_id + 1]["flags"], "x")
        self.assertEqual(by_id[sub_id + 1]["multi"], "1")
        self.assertEqual(by_id[sub_id + 2]["flags"], "O")
        listed = me.call("CLIENT", "LIST", "ID", str(sub_id + 2), str(sub_id)).splitlines()
        self.assertEqual([int(fields(line)["id"]) for line in listed], [sub_id + 2, sub_id])
        self.assertEqual(multi.call("DISCARD"), "OK")

    def test_no_evict_flag(self):
        me = self.conn()
        self.assertEqual(me.call("CLIENT", "NO-EVICT", "on"), "OK")
        self.assertEqual(fields(me.call("CLIENT", "INFO"))["flags"], "e")
        self.assertEqual(me.call("CLIENT", "NO-EVICT", "off"), "OK")
        self.assertEqual(fields(me.call("CLIENT", "INFO"))["flags"], "N")

    def test_pause_write_holds_writes_of_every_worker(self):
        me = self.conn()
        others = [self.conn() for _ in range(2)]
        self.assertEqual(me.call("CLIENT", "PAUSE", str(int(harness.scaled(800))), "WRITE"), "OK")
        started = time.monotonic()
        for o in others:
            self.assertEqual(o.call("GET", "paused-key"), None)  # reads go on
        self.assertLess(time.monotonic() - started, harness.scaled(0.5))
        for o in others:
            o.send_command("SET", "paused-key", "v")
        for o in others:
            self.assertEqual(o.read_reply(), "OK")
        self.assertGreaterEqual(time.monotonic() - started, harness.scaled(0.7))
        # UNPAUSE (not a write: it is not held) ends it early.
        self.assertEqual(me.call("CLIENT", "PAUSE", "60000", "WRITE"), "OK")
        others[0].send_command("SET", "paused-key", "w")
        self.assertTrue(others[0].is_open(wait=0.2))  # no reply yet
        self.assertEqual(others[0].buf, b"")
        self.assertEqual(me.call("CLIENT", "UNPAUSE"), "OK")
        self.assertEqual(others[0].read_reply(), "OK")

    def test_pause_all_holds_every_command(self):
        me = self.conn()
        other = self.conn()
        self.assertEqual(me.call("CLIENT", "PAUSE", str(int(harness.scaled(500)))), "OK")
        started = time.monotonic()
        self.assertEqual(other.call("PING"), "PONG")
        self.assertGreaterEqual(time.monotonic() - started, harness.scaled(0.4))


if __name__ == "__main__":
    harness.main()
