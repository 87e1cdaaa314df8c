"""RESP3 through Larder (HELLO 3), compared byte for byte with redis-server.

Larder's backend connections stay RESP2; it rewrites each reply into the RESP3
form Redis sends (src/resp/resp3.cpp, docs/resp3.md). Every test here sends the
same commands after HELLO 3 to Larder and, on a second raw connection, to the
redis-server behind it, and compares the raw reply bytes. Before each command
the data is rebuilt, so a command that changes it (ZINCRBY, SPOP, ...) sees
the same state on both sides.

Run: /usr/bin/python3 tests/integration/test_resp3.py

Debian's redis-py (4.3) has no RESP3 (protocol=3 came in redis-py 5), so the
client-library check skips itself there; the raw comparisons cover the bytes.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import LarderTestCase, PostgresServer, RawClient, close_client  # noqa: E402

import redis  # noqa: E402


class Resp3Client(RawClient):
    """A RawClient that returns whole RESP2 or RESP3 frames as raw bytes."""

    def _end(self, pos: int) -> int:
        while True:
            cr = self.buf.find(b"\r\n", pos)
            if cr >= 0:
                break
            self._fill()
        kind, body, nxt = self.buf[pos:pos + 1], self.buf[pos + 1:cr], cr + 2
        if kind in b"+-:_,#(":
            return nxt
        n = int(body)
        if kind in b"$=!":
            if n < 0:
                return nxt
            while len(self.buf) < nxt + n + 2:
                self._fill()
            return nxt + n + 2
        if kind in b"*~>%|":
            if n < 0:
                return nxt
            count = n * 2 if kind in b"%|" else n
            for _ in range(count):
                nxt = self._end(nxt)
            return self._end(nxt) if kind == b"|" else nxt  # an attribute precedes a reply
        raise AssertionError(f"unexpected frame {self.buf[pos:pos + 60]!r}")

    def frame(self) -> bytes:
        end = self._end(0)
        data, self.buf = self.buf[:end], self.buf[end:]
        return data

    def ask(self, *args) -> bytes:
        self.send_command(*args)
        return self.frame()


def hello_normalized(frame: bytes) -> bytes:
    """HELLO's reply without the fields that differ by design (id, version)."""
    frame = re.sub(rb"(\$7\r\nversion\r\n)\$\d+\r\n[^\r]*\r\n", rb"\1$1\r\nV\r\n", frame)
    return re.sub(rb"(\$2\r\nid\r\n):\d+\r\n", rb"\1:0\r\n", frame)


def numbers_normalized(frame: bytes) -> bytes:
    """Every integer and double replaced, their types kept (values that move)."""
    frame = re.sub(rb"(?m)^:-?\d+\r$", b":0\r", frame)
    return re.sub(rb"(?m)^,[^\r]*\r$", b",0\r", frame)


def histogram_normalized(frame: bytes) -> bytes:
    """LATENCY HISTOGRAM with its buckets (which move) dropped, their type kept."""
    frame = re.sub(rb"(\$14\r\nhistogram_usec\r\n[%*])\d+\r\n(?::\d+\r\n)*", rb"\1N\r\n", frame)
    return numbers_normalized(frame)


def client_info_normalized(frame: bytes) -> bytes:
    return re.sub(rb"\$\d+\r\nid=[^\r]*\r\n", b"$1\r\nC\r\n", frame)


# Rebuilt before every command, on both sides.
SETUP = [
    ("FLUSHALL",),
    ("SET", "s", "v"),
    ("SET", "num", "10"),
    ("HSET", "h", "f1", "v1", "f2", "v2", "n", "3"),
    ("HSET", "h1", "only", "one"),
    ("SADD", "st", "a", "b", "c"),
    ("SADD", "st2", "b", "c", "d"),
    ("SADD", "st1", "x"),
    ("ZADD", "z", "1", "a", "2.5", "b", "3", "c"),
    ("ZADD", "z2", "1", "b", "5", "d"),
    ("ZADD", "z1", "7", "solo"),
    ("ZADD", "zinf", "+inf", "up", "-inf", "down", "0.1", "tenth", "1e300", "huge"),
    ("RPUSH", "l", "a", "b", "c"),
    ("XADD", "x", "1-1", "f", "v"),
    ("XADD", "x", "2-1", "g", "w"),
    ("XGROUP", "CREATE", "x", "g", "0"),
    ("XGROUP", "CREATE", "x", "g2", "$"),
    ("GEOADD", "geo", "13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "Catania"),
    ("FUNCTION", "FLUSH"),
    ("FUNCTION", "LOAD",
     "#!lua name=mylib\n"
     "redis.register_function{function_name='f1', callback=function() return 1 end, "
     "flags={'no-writes'}, description='the first'}\n"
     "redis.register_function('f2', function() return 2 end)"),
    ("ACL", "SETUSER", "u1", "reset", "on", ">p", "~k*", "+get", "(~x* +set)"),
]

# (args, normalizer or None)
COMMANDS = [
    # strings and nulls
    (("GET", "s"), None),
    (("GET", "nokey"), None),
    (("MGET", "s", "nokey", "num"), None),
    (("SET", "s", "w", "GET"), None),
    (("GETDEL", "nokey"), None),
    (("GETEX", "nokey"), None),
    (("INCRBYFLOAT", "num", "1.5"), None),
    (("LCS", "s", "s", "IDX", "WITHMATCHLEN"), None),
    (("LCS", "s", "s"), None),
    (("STRLEN", "s"), None),
    (("TYPE", "h"), None),
    (("OBJECT", "ENCODING", "nokey"), None),
    (("PING",), None),
    (("PING", "hi"), None),
    (("ECHO", "hi"), None),
    (("EXISTS", "s", "nokey"), None),
    (("NOSUCHCOMMAND", "x"), None),
    (("GET",), None),
    # hashes
    (("HGETALL", "h"), None),
    (("HGETALL", "nokey"), None),
    (("HGET", "h", "nofield"), None),
    (("HMGET", "h", "f1", "nofield"), None),
    (("HRANDFIELD", "h", "3", "WITHVALUES"), None),
    (("HRANDFIELD", "h1", "-3", "WITHVALUES"), None),
    (("HRANDFIELD", "h", "3"), None),
    (("HRANDFIELD", "nokey"), None),
    (("HINCRBYFLOAT", "h", "n", "0.5"), None),
    (("HSCAN", "h", "0"), None),
    (("HGETALL", "s"), None),
    # sets
    (("SMEMBERS", "st"), None),
    (("SMEMBERS", "nokey"), None),
    (("SINTER", "st", "st2"), None),
    (("SUNION", "st", "st2"), None),
    (("SDIFF", "st", "st2"), None),
    (("SPOP", "st", "5"), None),
    (("SPOP", "st1"), None),
    (("SPOP", "nokey"), None),
    (("SPOP", "nokey", "2"), None),
    (("SRANDMEMBER", "st", "10"), None),
    (("SRANDMEMBER", "st1", "-2"), None),
    (("SMISMEMBER", "st", "a", "z"), None),
    (("SISMEMBER", "st", "a"), None),
    (("SINTERCARD", "2", "st", "st2"), None),
    # sorted sets
    (("ZSCORE", "z", "a"), None),
    (("ZSCORE", "z", "nope"), None),
    (("ZSCORE", "zinf", "up"), None),
    (("ZMSCORE", "z", "a", "nope", "b"), None),
    (("ZINCRBY", "z", "1.5", "a"), None),
    (("ZINCRBY", "zinf", "1", "down"), None),
    (("ZADD", "z", "INCR", "1", "a"), None),
    (("ZADD", "z", "XX", "CH", "INCR", "1", "nope"), None),
    (("ZADD", "z", "NX", "INCR", "1", "a"), None),
    (("ZADD", "z", "1", "incr"), None),
    (("ZRANGE", "z", "0", "-1"), None),
    (("ZRANGE", "z", "0", "-1", "WITHSCORES"), None),
    (("ZRANGE", "zinf", "0", "-1", "withscores"), None),
    (("ZRANGE", "z", "(1", "+inf", "BYSCORE", "REV", "WITHSCORES"), None),
    (("ZRANGE", "z", "+inf", "(1", "BYSCORE", "REV", "LIMIT", "0", "1", "WITHSCORES"), None),
    (("ZRANGE", "nokey", "0", "-1", "WITHSCORES"), None),
    (("ZRANGE", "z", "0", "-1", "WITHSCORES", "LIMIT", "0", "1"), None),
    (("ZREVRANGE", "z", "0", "-1", "WITHSCORES"), None),
    (("ZRANGEBYSCORE", "z", "-inf", "+inf", "WITHSCORES"), None),
    (("ZREVRANGEBYSCORE", "z", "+inf", "-inf", "WITHSCORES", "LIMIT", "0", "2"), None),
    (("ZRANGEBYLEX", "z", "-", "+"), None),
    (("ZUNION", "2", "z", "z2", "WITHSCORES"), None),
    (("ZUNION", "2", "z", "z2", "WEIGHTS", "1", "2", "AGGREGATE", "MAX", "WITHSCORES"), None),
    (("ZINTER", "2", "z", "z2", "WITHSCORES"), None),
    (("ZDIFF", "2", "z", "z2", "WITHSCORES"), None),
    (("ZDIFF", "2", "z", "z2"), None),
    (("ZRANDMEMBER", "z", "5", "WITHSCORES"), None),
    (("ZRANDMEMBER", "z1", "-2", "WITHSCORES"), None),
    (("ZRANDMEMBER", "nokey", "2", "WITHSCORES"), None),
    (("ZPOPMIN", "z"), None),
    (("ZPOPMAX", "z", "2"), None),
    (("ZPOPMIN", "nokey"), None),
    (("ZPOPMAX", "z", "1"), None),
    (("ZMPOP", "1", "z", "MIN", "COUNT", "2"), None),
    (("ZMPOP", "1", "nokey", "MIN"), None),
    (("BZPOPMIN", "z", "0"), None),
    (("BZPOPMAX", "nokey", "0.01"), None),
    (("BZMPOP", "0.01", "1", "z2", "MAX"), None),
    (("ZRANK", "z", "b"), None),
    (("ZRANK", "z", "nope"), None),
    (("ZSCAN", "z", "0"), None),
    (("ZRANGESTORE", "dst", "z", "0", "-1"), None),
    (("ZSCORE", "s", "a"), None),
    # lists
    (("LPOP", "nokey"), None),
    (("LPOP", "nokey", "2"), None),
    (("LPOS", "l", "z"), None),
    (("LMPOP", "1", "nokey", "LEFT"), None),
    (("BLPOP", "nokey", "0.01"), None),
    (("SORT", "l", "ALPHA"), None),
    # geo
    (("GEOPOS", "geo", "Palermo", "nope"), None),
    (("GEODIST", "geo", "Palermo", "Catania"), None),
    (("GEOHASH", "geo", "Palermo"), None),
    (("GEOSEARCH", "geo", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "WITHCOORD",
      "WITHDIST", "ASC"), None),
    (("GEOSEARCH", "geo", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "WITHCOORD",
      "WITHHASH", "WITHDIST", "ASC"), None),
    (("GEOSEARCH", "geo", "FROMMEMBER", "Palermo", "BYBOX", "400", "400", "km", "WITHHASH",
      "ASC"), None),
    (("GEOSEARCH", "geo", "FROMMEMBER", "Palermo", "BYRADIUS", "200", "km", "WITHCOORD",
      "COUNT", "1"), None),
    (("GEORADIUS", "geo", "15", "37", "200", "km", "WITHCOORD", "ASC"), None),
    (("GEORADIUS_RO", "geo", "15", "37", "200", "km", "WITHDIST", "WITHCOORD", "ASC"), None),
    (("GEORADIUSBYMEMBER", "geo", "Palermo", "200", "km", "WITHCOORD", "ASC"), None),
    (("GEORADIUSBYMEMBER_RO", "geo", "Palermo", "200", "km", "ASC"), None),
    # streams
    (("XRANGE", "x", "-", "+"), None),
    (("XREAD", "COUNT", "1", "STREAMS", "x", "0"), None),
    (("XREAD", "STREAMS", "x", "nokey", "0", "0"), None),
    (("XREAD", "STREAMS", "x", "$"), None),
    (("XREADGROUP", "GROUP", "g", "c1", "COUNT", "1", "STREAMS", "x", ">"), None),
    (("XINFO", "STREAM", "x"), None),
    (("XINFO", "STREAM", "x", "FULL"), None),
    (("XINFO", "GROUPS", "x"), None),
    (("XINFO", "CONSUMERS", "x", "g"), None),
    (("XINFO", "STREAM", "nokey"), None),
    (("XPENDING", "x", "g"), None),
    # server and connection
    (("CONFIG", "GET", "maxmemory*"), None),
    (("CONFIG", "GET", "nonexist"), None),
    (("CLIENT", "GETNAME"), None),
    (("CLIENT", "TRACKINGINFO"), None),
    (("COMMAND", "INFO", "get", "nosuch", "config", "xread"), None),
    (("COMMAND", "DOCS", "set", "config", "zadd"), None),
    (("COMMAND", "GETKEYSANDFLAGS", "lmove", "a", "b", "left", "right"), None),
    (("COMMAND", "COUNT"), None),
    (("FUNCTION", "LIST"), None),
    (("FUNCTION", "LIST", "WITHCODE"), None),
    (("FUNCTION", "STATS"), None),
    (("ACL", "GETUSER", "u1"), None),
    (("ACL", "GETUSER", "nouser"), None),
    (("ACL", "CAT"), None),
    (("MODULE", "LIST"), None),
    (("SCRIPT", "EXISTS", "abc"), None),
    (("EVAL", "return nil", "0"), None),
    (("EVAL", "return {1, 'a', false, true}", "0"), None),
    (("EVAL", "return redis.call('zscore', KEYS[1], 'a')", "1", "z"), None),
    (("EXPIRETIME", "s"), None),
    (("DBSIZE",), None),
    (("ROLE",), None),
    (("MEMORY", "STATS"), numbers_normalized),
    (("LATENCY", "HISTOGRAM", "set", "flushall"), histogram_normalized),
]


class Resp3Compare(LarderTestCase):
    """One redis-server and Larder; every command compared byte for byte."""

    @classmethod
    def setUpClass(cls):
        cls.start_shared()

    def setUp(self):
        self.direct = self.redis_server.client()
        self.addCleanup(close_client, self.direct)

    def pair(self, hello: bool = True):
        """(Larder connection, Redis connection), both after HELLO 3."""
        larder = Resp3Client(self.larder.port)
        direct = Resp3Client(self.redis_server.port)
        self.addCleanup(larder.close)
        self.addCleanup(direct.close)
        if hello:
            self.assertEqual(hello_normalized(larder.ask("HELLO", "3")),
                             hello_normalized(direct.ask("HELLO", "3")))
        return larder, direct

    def setup_data(self):
        for cmd in SETUP:
            self.direct.execute_command(*cmd)

    def test_hello_3_reply(self):
        larder, direct = self.pair(hello=False)
        mine, theirs = larder.ask("HELLO", "3"), direct.ask("HELLO", "3")
        self.assertTrue(mine.startswith(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"), mine)
        self.assertIn(b"$5\r\nproto\r\n:3\r\n", mine)
        self.assertEqual(hello_normalized(mine), hello_normalized(theirs))
        # HELLO alone keeps the protocol; HELLO 3 again is a map again.
        self.assertEqual(hello_normalized(larder.ask("HELLO")), hello_normalized(direct.ask("HELLO")))
        self.assertEqual(hello_normalized(larder.ask("HELLO", "3", "SETNAME", "me")),
                         hello_normalized(direct.ask("HELLO", "3", "SETNAME", "me")))
        for bad in (("HELLO", "4"), ("HELLO", "1"), ("HELLO", "x"), ("HELLO", "3", "BOGUS")):
            self.assertEqual(larder.ask(*bad), direct.ask(*bad), bad)

    def test_commands_compare_byte_for_byte(self):
        larder, direct = self.pair()
        mismatches = []
        for args, normalize in COMMANDS:
            self.setup_data()
            mine = larder.ask(*args)
            self.setup_data()
            theirs = direct.ask(*args)
            if normalize:
                mine, theirs = normalize(mine), normalize(theirs)
            if mine != theirs:
                mismatches.append(f"{' '.join(args)}:\n  larder {mine[:300]!r}\n  redis  {theirs[:300]!r}")
        self.assertEqual(mismatches, [], "\n".join(mismatches))

    def test_whole_command_table(self):
        # COMMAND and COMMAND DOCS without arguments: every command's nested sets and maps.
        larder, direct = self.pair()
        for args in (("COMMAND",), ("COMMAND", "DOCS")):
            mine, theirs = larder.ask(*args), direct.ask(*args)
            self.assertGreater(len(mine), 10000)
            self.assertEqual(mine, theirs, args)

    def test_xinfo_with_consumers(self):
        larder, direct = self.pair()
        stamps = rb"(\$(?:9\r\nseen-time|4\r\nidle)\r\n):\d+\r\n"
        for args in (("XINFO", "STREAM", "x", "FULL"), ("XINFO", "CONSUMERS", "x", "g")):
            replies = []
            for conn in (larder, direct):
                self.setup_data()
                self.direct.execute_command("XREADGROUP", "GROUP", "g", "c1", "COUNT", "1",
                                            "STREAMS", "x", ">")
                self.direct.execute_command("XGROUP", "CREATECONSUMER", "x", "g", "c2")
                replies.append(re.sub(stamps, rb"\1:0\r\n", conn.ask(*args)))
            # Delivery times of pending entries: any integer above 10^12 is a time.
            mine, theirs = (re.sub(rb":1\d{12}\r\n", b":T\r\n", r) for r in replies)
            self.assertEqual(mine, theirs, args)
            self.assertIn(b"%", mine)

    def test_acl_log(self):
        larder, direct = self.pair()
        self.setup_data()
        self.direct.execute_command("ACL", "LOG", "RESET")
        self.assertTrue(direct.ask("AUTH", "u1", "wrong").startswith(b"-WRONGPASS"))
        mine, theirs = larder.ask("ACL", "LOG"), direct.ask("ACL", "LOG")
        mine, theirs = (client_info_normalized(numbers_normalized(r)) for r in (mine, theirs))
        self.assertEqual(mine, theirs)
        self.assertIn(b"$11\r\nage-seconds\r\n,0\r\n", mine)

    def test_verbatim_strings(self):
        larder, direct = self.pair()
        for args in (("INFO", "server"), ("INFO",), ("CLIENT", "INFO"), ("CLIENT", "LIST"),
                     ("MEMORY", "MALLOC-STATS"), ("MEMORY", "DOCTOR"), ("LATENCY", "DOCTOR"),
                     ("LOLWUT", "VERSION", "5", "1", "1", "1")):
            mine, theirs = larder.ask(*args), direct.ask(*args)
            for reply in (mine, theirs):
                self.assertRegex(reply, rb"^=\d+\r\ntxt:", args)
                header, _, rest = reply.partition(b"\r\n")
                self.assertEqual(int(header[1:]), len(rest) - 2, args)
        self.assertIn(b" resp=3 ", larder.ask("CLIENT", "INFO"))

    def test_transaction(self):
        larder, direct = self.pair()
        script = [("MULTI",), ("GET", "nokey"), ("ZSCORE", "z", "a"), ("HGETALL", "h"),
                  ("SMEMBERS", "st1"), ("ZRANGE", "z", "0", "-1", "WITHSCORES"),
                  ("CONFIG", "GET", "maxmemory"), ("EXEC",),
                  ("MULTI",), ("ZSCORE", "z", "a"), ("DISCARD",),
                  ("MULTI",), ("HGETALL", "h"), ("EXEC",),
                  ("WATCH", "z"), ("MULTI",), ("ZSCORE", "z", "a"), ("EXEC",)]
        for conn in (larder, direct):
            self.setup_data()
            conn.replies = []
            for i, args in enumerate(script):
                if i == len(script) - 1:
                    self.direct.execute_command("ZADD", "z", "9", "a")  # the WATCH fails
                conn.replies.append(conn.ask(*args))
        self.assertEqual(larder.replies, direct.replies)
        self.assertIn(b"*6\r\n_\r\n,1\r\n%3\r\n", larder.replies[7])
        self.assertEqual(larder.replies[-1], b"_\r\n")

    def test_pipelined_protocol_switches(self):
        # Replies keep the protocol their command ran under, in one pipeline.
        larder, direct = self.pair(hello=False)
        self.setup_data()
        pipeline = [("HGETALL", "h"), ("HELLO", "3"), ("HGETALL", "h"), ("ZSCORE", "z", "a"),
                    ("HELLO", "2"), ("HGETALL", "h"), ("ZSCORE", "z", "a"), ("HELLO", "3"),
                    ("GET", "nokey"), ("RESET",), ("GET", "nokey"), ("HELLO",)]
        data = b"".join(harness.encode_command(*args) for args in pipeline)
        results = []
        for conn in (larder, direct):
            conn.send(data)
            results.append([hello_normalized(conn.frame()) for _ in pipeline])
        self.assertEqual(results[0], results[1])
        self.assertEqual(results[0][0][:1], b"*")
        self.assertEqual(results[0][2][:1], b"%")
        self.assertEqual(results[0][5][:1], b"*")
        self.assertEqual(results[0][8], b"_\r\n")
        self.assertEqual(results[0][10], b"$-1\r\n")
        self.assertIn(b":2\r\n", results[0][11])

    def test_hello_2_goes_back(self):
        larder, direct = self.pair()
        self.setup_data()
        for conn in (larder, direct):
            conn.replies = [hello_normalized(conn.ask("HELLO", "2"))]
            for args in (("HGETALL", "h"), ("GET", "nokey"), ("ZSCORE", "z", "a"), ("CLIENT", "INFO")):
                conn.replies.append(conn.ask(*args))
        self.assertEqual(larder.replies[:4], direct.replies[:4])
        self.assertEqual(larder.replies[2], b"$-1\r\n")
        self.assertRegex(larder.replies[4], rb"^\$\d+\r\nid=")
        self.assertIn(b" resp=2 ", larder.replies[4])

    def test_pubsub_push_messages(self):
        larder, direct = self.pair()
        publisher = self.redis_server.client()
        self.addCleanup(close_client, publisher)
        frames = {}
        for name, conn in (("larder", larder), ("redis", direct)):
            got = []
            conn.send_command("SUBSCRIBE", "ch1", "ch2")
            got += [conn.frame(), conn.frame()]
            got.append(conn.ask("PSUBSCRIBE", "p*"))
            harness.wait_until(lambda: publisher.execute_command("PUBSUB", "NUMPAT") >= 1,
                               what="the pattern subscription")
            publisher.publish("ch1", "hello")
            publisher.publish("px", "hi")
            got += [conn.frame(), conn.frame()]
            got.append(conn.ask("PING"))
            got.append(conn.ask("PING", "x"))
            conn.send_command("UNSUBSCRIBE")
            got += [conn.frame(), conn.frame()]
            got.append(conn.ask("PUNSUBSCRIBE"))
            got.append(conn.ask("UNSUBSCRIBE"))
            got.append(conn.ask("SSUBSCRIBE", "sch"))
            publisher.execute_command("SPUBLISH", "sch", "m")
            got.append(conn.frame())
            got.append(conn.ask("SUNSUBSCRIBE"))
            got.append(conn.ask("PING"))
            got.append(conn.ask("HGETALL", "nokey"))
            frames[name] = got
        self.assertEqual(frames["larder"], frames["redis"])
        self.assertEqual(frames["larder"][0], b">3\r\n$9\r\nsubscribe\r\n$3\r\nch1\r\n:1\r\n")
        self.assertEqual(frames["larder"][3], b">3\r\n$7\r\nmessage\r\n$3\r\nch1\r\n$5\r\nhello\r\n")
        self.assertEqual(frames["larder"][5], b"+PONG\r\n")

    def test_reset_while_subscribed_returns_to_resp2(self):
        larder, direct = self.pair()
        for conn in (larder, direct):
            conn.send_command("SUBSCRIBE", "ch1")
            self.assertEqual(conn.frame()[:1], b">")
            self.assertEqual(conn.ask("RESET"), b"+RESET\r\n")
            self.assertEqual(conn.ask("HGETALL", "nokey"), b"*0\r\n")

    def test_commands_while_subscribed(self):
        # Redis 7 runs any command for a subscribed RESP3 client, its pushes
        # and replies in the order it writes them; Larder runs them on a RESP3
        # connection of the client's own (src/proxy/pubsub_resp3.cpp).
        larder, direct = self.pair()
        publisher = self.redis_server.client()
        self.addCleanup(close_client, publisher)
        self.setup_data()
        pipeline = [("SET", "sub-k", "v"), ("GET", "sub-k"), ("PING",), ("PING", "x"),
                    ("HGETALL", "h"), ("ZSCORE", "z", "a"), ("PUBLISH", "rch", "self"),
                    ("SELECT", "2"), ("GET", "sub-k"), ("SELECT", "0"), ("PSUBSCRIBE", "r*"),
                    ("GET", "nokey")]
        frames = {}
        for name, conn in (("larder", larder), ("redis", direct)):
            got = []
            conn.send_command("SUBSCRIBE", "rch")
            got.append(conn.frame())
            conn.send(b"".join(harness.encode_command(*args) for args in pipeline))
            got += [conn.frame() for _ in range(len(pipeline) + 1)]  # PUBLISH: push + reply
            self.assertEqual(publisher.publish("rch", "m1"), 2)  # rch and r*
            got += [conn.frame(), conn.frame()]  # message and pmessage
            got.append(conn.ask("GET", "sub-k"))
            conn.send_command("UNSUBSCRIBE", "rch")
            got.append(conn.frame())
            got.append(conn.ask("PUNSUBSCRIBE"))
            got.append(conn.ask("GET", "sub-k"))
            got.append(conn.ask("HGETALL", "h"))
            frames[name] = got
        self.assertEqual(frames["larder"], frames["redis"])
        self.assertEqual(frames["larder"][2], b"$1\r\nv\r\n")
        self.assertEqual(frames["larder"][7], b">3\r\n$7\r\nmessage\r\n$3\r\nrch\r\n$4\r\nself\r\n")
        self.assertEqual(frames["larder"][8], b":1\r\n")

    def test_pipeline_of_many(self):
        # A long RESP3 pipeline: order and forms hold when replies arrive in bulk.
        larder, direct = self.pair()
        self.setup_data()
        cmds = [("ZSCORE", "z", "a"), ("HGETALL", "h"), ("GET", "nokey"), ("SMEMBERS", "st1"),
                ("PING",), ("ECHO", "e")] * 200
        data = b"".join(harness.encode_command(*args) for args in cmds)
        results = []
        for conn in (larder, direct):
            conn.send(data)
            results.append(b"".join(conn.frame() for _ in cmds))
        self.assertEqual(results[0], results[1])

    def test_redis_py_protocol_3(self):
        if "protocol" not in inspect.signature(redis.Redis.__init__).parameters:
            self.skipTest(f"redis-py {redis.__version__} has no RESP3 (protocol=3 needs 5.0)")
        client = redis.Redis(host=harness.HOST, port=self.larder.port, protocol=3)
        self.addCleanup(close_client, client)
        self.setup_data()
        self.assertEqual(client.hgetall("h"), {b"f1": b"v1", b"f2": b"v2", b"n": b"3"})
        self.assertEqual(client.zscore("z", "a"), 1.0)
        self.assertEqual(client.smembers("st1"), {b"x"})
        self.assertIsNone(client.get("nokey"))


class Resp3MappedKeys(LarderTestCase):
    """Replies Larder builds from PostgreSQL rows are RESP3 too."""

    DB = "app"

    @classmethod
    def setUpClass(cls):
        cls.pg = PostgresServer()
        cls.addClassCleanup(cls.pg.cleanup)
        cls.pg.start()
        cls.pg.create_database(cls.DB)
        cls.pg.psql("CREATE TABLE users (id bigint PRIMARY KEY, name text, email text);"
                    "INSERT INTO users VALUES (1, 'ann', 'ann@example.com'), (2, 'bob', NULL);",
                    dbname=cls.DB)

    def test_mapped_reads(self):
        redis_server = self.start_redis()
        larder = self.start_larder(redis_server, config={
            "postgres": {"dsn": self.pg.dsn(self.DB), "pool_size": 2},
            "keyspaces": {
                "users": {"key": "user:{id}", "table": "public.users", "shape": "hash"},
                "names": {"key": "name:{id}", "table": "public.users", "shape": "string",
                          "columns": ["name"]},
            }})
        conn = Resp3Client(larder.port)
        self.addCleanup(conn.close)
        direct = Resp3Client(redis_server.port)
        self.addCleanup(direct.close)
        conn.ask("HELLO", "3")
        direct.ask("HELLO", "3")
        # Misses: answered from the PostgreSQL row by Larder itself.
        miss = conn.ask("HGETALL", "user:1")
        self.assertEqual(miss, b"%2\r\n$4\r\nname\r\n$3\r\nann\r\n$5\r\nemail\r\n"
                               b"$15\r\nann@example.com\r\n")
        self.assertEqual(conn.ask("HGETALL", "user:404"), b"%0\r\n")
        self.assertEqual(conn.ask("HGET", "user:2", "email"), b"_\r\n")
        self.assertEqual(conn.ask("HMGET", "user:2", "name", "email"),
                         b"*2\r\n$3\r\nbob\r\n_\r\n")
        self.assertEqual(conn.ask("GET", "name:404"), b"_\r\n")
        self.assertEqual(conn.ask("GET", "name:1"), b"$3\r\nann\r\n")
        # Hits: Redis' reply, translated; the same bytes as Redis sends.
        harness.wait_until(lambda: direct.ask("EXISTS", "user:1") == b":1\r\n",
                           what="user:1 cached")
        self.assertEqual(conn.ask("HGETALL", "user:1"), direct.ask("HGETALL", "user:1"))
        self.assertEqual(conn.ask("HGETALL", "user:1"), miss)
        self.assertEqual(conn.ask("MGET", "name:1", "name:404", "other"),
                         b"*3\r\n$3\r\nann\r\n_\r\n_\r\n")


if __name__ == "__main__":
    harness.main()
