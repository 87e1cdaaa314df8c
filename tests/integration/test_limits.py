#!/usr/bin/python3
"""Limits and bad input (issue #7), each against a real Larder and the real
redis-server behind it: the reply docs/limits.md documents, no crash, and a
second client, connected all along, whose PING/SET/GET round trip keeps
working while the bad client is connected and after it is gone.

Where the same bytes get a different answer from Redis (Larder is stricter,
or Redis stalls), the test sends them to the redis-server too and checks
Redis' answer, so that the difference is known rather than assumed. Tests
that once were marked expectedFailure (Larder bugs) now pass.
"""

import contextlib
import resource
import selectors
import socket
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
import harness  # noqa: E402
from harness import LarderTestCase, encode_command, scaled  # noqa: E402


def proto_error(reason: str) -> bytes:
    return b"-ERR Protocol error: " + reason.encode() + b"\r\n"


def _collect(sock: socket.socket, wait: float, enough: bytes | None = None):
    """Reads until the peer closes or `wait` (scaled) seconds pass; once
    `enough` (a non-empty reply) has arrived, only 0.05 s more.
    Returns (bytes received, closed)."""
    deadline = time.monotonic() + scaled(wait)
    out = b""
    while True:
        if enough and len(out) >= len(enough):
            deadline = min(deadline, time.monotonic() + 0.05)
            enough = None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return out, False
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return out, False
        except ConnectionResetError:
            return out, True
        if not chunk:
            return out, True
        out += chunk


def exchange(port: int, payload: bytes, wait: float = 1.0, byte_by_byte: bool = False,
             during=None, enough: bytes | None = None):
    """Sends payload on a new connection (whole, or one byte per send), calls
    during() while that connection is still open, then collects the answer
    until the server closes or `wait` seconds pass (see _collect for
    `enough`). Returns (bytes, closed)."""
    sock = socket.create_connection((harness.HOST, port), timeout=scaled(5))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        try:
            if byte_by_byte:
                for i in range(len(payload)):
                    sock.sendall(payload[i:i + 1])
            else:
                sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed before the whole payload was sent: the answer tells why
        if during is not None:
            during()
        return _collect(sock, wait, enough)
    finally:
        sock.close()


class Witness:
    """A client connected for the whole test; check() is a PING/SET/GET round trip."""

    def __init__(self, test: LarderTestCase, larder: harness.Larder, password: str | None = None):
        self.raw = test.raw(larder, timeout=5)
        if password:
            test.assertEqual(self.raw.call("AUTH", password), "OK")
        self.key = f"witness:{test.id()}"
        self.rounds = 0

    def check(self):
        self.rounds += 1
        value = f"{self.rounds}:{time.monotonic()}".encode()
        self.raw.send(encode_command("PING") + encode_command("SET", self.key, value)
                      + encode_command("GET", self.key))
        got = [self.raw.read_reply() for _ in range(3)]
        if got != ["PONG", "OK", value]:
            raise AssertionError(f"the witness client's round trip {self.rounds} got {got!r}")


class BadInputTest(LarderTestCase):
    """One Larder with the harness' limits (max_bulk_len 512mb as Redis'
    proto-max-bulk-len, max_array_len 1048576, max_inline_len 64kb)."""

    @classmethod
    def setUpClass(cls):
        cls.start_shared()

    def setUp(self):
        self.witness = Witness(self, self.larder)
        self.witness.check()
        self.backend = self.redis_server.client()
        self.addCleanup(harness.close_client, self.backend)

    def tearDown(self):
        self.witness.check()
        self.assertTrue(self.larder.running(), "Larder is gone")

    @staticmethod
    def wait_for(reply: bytes, closed: bool) -> float:
        """How long to collect an answer: a close or a reply ends the wait
        early; only "no reply, still open" needs the whole (short) wait."""
        return 2.0 if closed or reply else 0.3

    def larder_answer(self, payload, reply: bytes, closed: bool, byte_by_byte=True):
        """Larder answers payload with exactly `reply`, then closes (closed) or
        keeps the connection (not closed); sent whole and one byte at a time.
        The witness makes a round trip while the bad connection is open."""
        wait = self.wait_for(reply, closed)
        for split in (False, True) if byte_by_byte else (False,):
            got = exchange(self.larder.port, payload, wait, split, during=self.witness.check,
                           enough=None if closed else reply)
            self.assertEqual(got, (reply, closed),
                             f"Larder, {payload[:80]!r} sent {'bytewise' if split else 'whole'}")

    def redis_answer(self, payload, reply: bytes = b"", closed: bool = False):
        """What redis-server itself answers, collected as for the expected
        (reply, closed): (bytes, closed)."""
        return exchange(self.redis_server.port, payload, self.wait_for(reply, closed),
                        enough=None if closed else reply)

    def like_redis(self, payload, reply: bytes, closed: bool, byte_by_byte=True):
        """Larder and redis-server both answer payload with `reply`."""
        self.larder_answer(payload, reply, closed, byte_by_byte)
        self.assertEqual(self.redis_answer(payload, reply, closed), (reply, closed),
                         f"redis-server, {payload[:80]!r}")

    # ------------------------------------------------------------ lengths
    def test_negative_lengths(self):
        for payload in (b"*1\r\n$-1\r\n", b"*1\r\n$-3\r\n", b"*1\r\n$-9223372036854775808\r\n"):
            self.like_redis(payload, proto_error("invalid bulk length"), True)
        # A negative count is an empty request: skipped without a reply.
        for count in (b"-1", b"-5", b"-9223372036854775808"):
            self.like_redis(b"*" + count + b"\r\nPING\r\n", b"+PONG\r\n", False)
        self.like_redis(b"*-9223372036854775809\r\n", proto_error("invalid multibulk length"), True)

    def test_huge_lengths(self):
        for count in (b"2147483648", b"9223372036854775807", b"9223372036854775808"):
            self.like_redis(b"*" + count + b"\r\n", proto_error("invalid multibulk length"), True)
        # 512 MiB + 1 and 1 GiB are over max_bulk_len, refused from the header:
        # nothing is allocated for them.
        for length in (b"536870913", b"1073741824", b"9223372036854775807",
                       b"9223372036854775808", b"99999999999999999999"):
            self.like_redis(b"*1\r\n$" + length + b"\r\n", proto_error("invalid bulk length"), True)
        # Header lines longer than 64 KiB.
        self.like_redis(b"*" + b"1" * 70000, proto_error("too big mbulk count string"), True,
                        byte_by_byte=False)
        self.like_redis(b"*1\r\n$" + b"9" * 70000, proto_error("too big bulk count string"), True,
                        byte_by_byte=False)

    def test_argument_count_over_max_array_len(self):
        # limits.max_array_len (1048576 by default) is Larder's own; Redis
        # accepts up to 2^31-1 and waits for the arguments.
        self.larder_answer(b"*1048577\r\n", proto_error("invalid multibulk length"), True)
        self.assertEqual(self.redis_answer(b"*1048577\r\n"), (b"", False))
        self.like_redis(b"*1048576\r\n", b"", False)  # at the limit: waits for the arguments

    def test_non_numeric_lengths(self):
        for count in (b"abc", b"", b"+1", b"01", b" 1", b"1 ", b"1.0", b"0x1", b"1e3", b"--1"):
            self.like_redis(b"*" + count + b"\r\n$4\r\nPING\r\n",
                            proto_error("invalid multibulk length"), True)
        for length in (b"abc", b"", b"+4", b"04", b" 4", b"4 ", b"4.0", b"1e3", b"0x4"):
            self.like_redis(b"*1\r\n$" + length + b"\r\nPING\r\n",
                            proto_error("invalid bulk length"), True)
        # An LF alone does not end a header line.
        self.like_redis(b"*1\n$4\r\nPING\r\n", proto_error("invalid multibulk length"), True)
        self.like_redis(b"*1\r\n$4\nPING\r\n", proto_error("invalid bulk length"), True)

    def test_lengths_that_lie(self):
        # More arguments declared than sent: the next request's '*' comes
        # where a '$' belongs.
        self.like_redis(b"*3\r\n$4\r\nECHO\r\n$1\r\na\r\n" + encode_command("PING"),
                        proto_error("expected '$', got '*'"), True)
        # Fewer declared than sent: the rest reads as inline commands, as in Redis.
        self.like_redis(b"*1\r\n$4\r\nECHO\r\n$1\r\na\r\n",
                        b"-ERR wrong number of arguments for 'echo' command\r\n"
                        b"-ERR unknown command '$1', with args beginning with: \r\n"
                        b"-ERR unknown command 'a', with args beginning with: \r\n", False)
        # A bulk shorter than its length: Larder waits for the rest (and the
        # witness is served meanwhile); bytes that then overrun it are refused.
        self.larder_answer(b"*2\r\n$4\r\nECHO\r\n$100\r\nabc\r\n", b"", False)
        self.larder_answer(b"*2\r\n$4\r\nECHO\r\n$10\r\nabc\r\n" + encode_command("PING"),
                           proto_error("expected CRLF after bulk data"), True)
        # A bulk longer than its length: see test_strict_where_redis_is_lenient.
        self.larder_answer(b"*2\r\n$4\r\nECHO\r\n$3\r\nab\r\n\r\n",
                           proto_error("expected CRLF after bulk data"), True)

    def test_nested_arrays(self):
        for payload in (b"*1\r\n*1\r\n$4\r\nPING\r\n",
                        b"*2\r\n$4\r\nECHO\r\n*1\r\n$1\r\na\r\n",
                        b"*2\r\n$4\r\nECHO\r\n*0\r\n"):
            self.like_redis(payload, proto_error("expected '$', got '*'"), True)
        for kind in (b":", b"+", b"-", b"_", b"%", b"~"):  # other RESP(3) types
            self.like_redis(b"*2\r\n$4\r\nECHO\r\n" + kind + b"1\r\n",
                            proto_error(f"expected '$', got '{kind.decode()}'"), True)

    # ------------------------------------------------------- strictness
    def test_strict_where_redis_is_lenient(self):
        """Redis skips the two bytes after a bulk and after a header's CR
        without looking at them, and runs an over-long inline line that
        arrived in one read; Larder refuses all of these (docs/limits.md)."""
        crlf, length = "expected CRLF after bulk data", "invalid multibulk length"
        cases = [  # (bytes, Larder's reason, what Redis answers)
            (b"*1\r\n$1\r\nab\r\n", crlf,
             b"-ERR unknown command 'a', with args beginning with: \r\n"),
            (b"*2\r\n$4\r\nECHO\r\n$1\r\nab\r\n", crlf, b"$1\r\na\r\n"),
            (b"*1\r\n$4\r\nPINGxx", crlf, b"+PONG\r\n"),
            (b"*1\r\n$4\r\nPING\n\n", crlf, b"+PONG\r\n"),
            (b"*1\rx$4\r\nPING\r\n", length, b"+PONG\r\n"),
            (b"*2\r\n$4\r\nECHO\r\n$1\rxa\r\n", "invalid bulk length", b"$1\r\na\r\n"),
            (b"ECHO " + b"y" * 70000 + b"\r\n", "too big inline request",
             b"$70000\r\n" + b"y" * 70000 + b"\r\n"),
        ]
        for payload, reason, redis_reply in cases:
            self.larder_answer(payload, proto_error(reason), True, byte_by_byte=len(payload) < 100)
            self.assertEqual(self.redis_answer(payload, redis_reply), (redis_reply, False),
                             f"redis-server, {payload[:40]!r}")

    def test_inline_line_over_the_limit(self):
        self.like_redis(b"GET " + b"x" * (70 * 1024), proto_error("too big inline request"), True,
                        byte_by_byte=False)
        # 64 KiB without a line end is still waited for.
        self.like_redis(b"GET " + b"x" * (64 * 1024 - 4), b"", False, byte_by_byte=False)

    # ----------------------------------------------------------- desync
    def test_desync_closes_promptly(self):
        """A stream that lost its framing (NUL and garbage where a header
        belongs) is refused as soon as the broken line ends; Redis stalls on
        these (it looks for the line end with strchr, which stops at the NUL)."""
        garbage = bytes(range(1, 256)) * 2  # has LF and CR, never CR LF
        cases = [
            (b"*\x00" + garbage, "invalid multibulk length"),
            (b"*1\r\n$\x00" + garbage, "invalid bulk length"),
            (b"*2\r\n$4\r\nECHO\r\n\x00" + garbage, "expected '$', got '\x00'"),
        ]
        for payload, reason in cases:
            self.larder_answer(payload, proto_error(reason), True)
            self.assertEqual(self.redis_answer(payload), (b"", False), payload[:20])
        # Garbage where a bulk's CRLF belongs (Redis skips those two bytes).
        self.larder_answer(b"*1\r\n$4\r\nPING\x00" + garbage,
                           proto_error("expected CRLF after bulk data"), True)

    def test_desync_without_line_end_closes_promptly(self):
        """`*` or `$` followed by bytes that cannot be a length, with no CR
        yet, is refused at the first byte that is not a digit (or a leading
        '-'); Redis waits for 64 KiB of it."""
        garbage = bytes(b for b in range(256) if b not in (10, 13)) * 2
        for payload in (b"*\x00" + garbage, b"*1\r\n$\x00" + garbage, b"*12x" + garbage):
            reply, closed = exchange(self.larder.port, payload, 1.0, during=self.witness.check)
            self.assertTrue(reply.startswith(b"-ERR Protocol error: ") and closed,
                            f"{payload[:6]!r} + garbage without CR: got {(reply, closed)!r}")

    def test_nul_in_an_inline_line_is_refused(self):
        """An inline line containing NUL is refused and the connection closed
        at once. Redis never runs such a line either: it looks for the LF
        with strchr, which stops at the NUL, so it waits until 64 KiB and
        then refuses the line."""
        garbage = bytes(range(1, 256)) * 2
        for payload in (b"SET desync v\x00\r\n", b"\x00" + garbage, b"$\x00" + garbage):
            reply, closed = exchange(self.larder.port, payload, 1.0, during=self.witness.check)
            self.assertTrue(reply.startswith(b"-ERR Protocol error: ") and closed,
                            f"{payload[:8]!r}...: got {(reply[:100], closed)!r}")
        self.assertIsNone(self.backend.get("desync"))

    # ----------------------------------------------- commands and framing
    def test_empty_commands(self):
        payload = b"\r\n\n   \r\n\t\r\n*0\r\n*-1\r\n" + encode_command("PING") + b"PING\r\n"
        self.like_redis(payload, b"+PONG\r\n+PONG\r\n", False)

    def test_unknown_command(self):
        payload = (b"NOSUCH a b\r\n" + encode_command("NOSUCH2", "x" * 200)
                   + encode_command("") + encode_command("PING"))
        self.like_redis(payload,
                        b"-ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' \r\n"
                        b"-ERR unknown command 'NOSUCH2', with args beginning with: '"
                        + b"x" * 128 + b"' \r\n"
                        b"-ERR unknown command '', with args beginning with: \r\n+PONG\r\n",
                        False)

    def test_wrong_arity(self):
        commands = [["GET"], ["GET", "a", "b"], ["SET", "k"], ["ECHO"], ["ECHO", "a", "b"],
                    ["SELECT"], ["SELECT", "1", "2"], ["AUTH"], ["PING", "a", "b"], ["CLIENT"],
                    ["CLIENT", "SETNAME"], ["CLIENT", "GETNAME", "x"], ["CLIENT", "ID", "x"],
                    ["MULTI", "x"], ["EXEC", "x"], ["DISCARD", "x"], ["WATCH"],
                    ["UNWATCH", "x"], ["SUBSCRIBE"], ["PSUBSCRIBE"], ["PUBLISH", "a"],
                    ["BLPOP", "k"], ["MSET", "a"], ["HELLO", "2", "x"], ["DBSIZE", "x"],
                    ["PING"]]
        payload = b"".join(encode_command(*c) for c in commands)
        reply, closed = exchange(self.redis_server.port, payload, 2.0,
                                 enough=b"\r\n" * len(commands))
        self.assertFalse(closed)
        self.assertEqual(reply.count(b"\r\n"), len(commands), reply)
        self.assertEqual(reply.count(b"-ERR wrong number of arguments"), len(commands) - 3, reply)
        self.larder_answer(payload, reply, False)

    def test_reset_with_arguments_is_an_arity_error(self):
        """`RESET x` is Redis' arity error; the connection is not reset."""
        payload = encode_command("RESET", "x")
        expected = b"-ERR wrong number of arguments for 'reset' command\r\n"
        self.assertEqual(self.redis_answer(payload, expected), (expected, False))
        self.larder_answer(payload, expected, False, byte_by_byte=False)

    def test_partial_frames_across_reads(self):
        payload = (encode_command("SET", "split:k", b"a\r\nb\x00") + b"GET split:k\r\n"
                   + b"\r\n*0\r\n" + b'ECHO "x\\ty"\r\nECHO \'z w\'\r\n'
                   + encode_command("GET", "split:k") + encode_command("DEL", "split:k"))
        reply = (b"+OK\r\n$5\r\na\r\nb\x00\r\n$3\r\nx\ty\r\n$3\r\nz w\r\n"
                 b"$5\r\na\r\nb\x00\r\n:1\r\n")
        self.like_redis(payload, reply, False)  # Larder whole and bytewise, Redis whole

    def test_binary_keys(self):
        keys = [bytes([b]) for b in range(256)] + [bytes(range(256)), bytes(range(255, -1, -1)),
                                                   b"\r\n", b"*1\r\n$4\r\nPING\r\n"]
        raw = self.raw(self.larder)
        raw.send(b"".join(encode_command("SET", k, b"v" + k) for k in keys))
        self.assertEqual([raw.read_reply() for _ in keys], ["OK"] * len(keys))
        self.witness.check()
        self.assertEqual(raw.call("MGET", *keys), [b"v" + k for k in keys])
        self.assertEqual(self.backend.mget(keys), [b"v" + k for k in keys])
        for k in (keys[0], keys[13], keys[255], keys[256]):
            self.assertEqual(raw.call("GET", k), b"v" + k)
            self.assertEqual(raw.call("EXISTS", k), 1)
        self.assertEqual(raw.call("DEL", *keys), len(keys))


class PreAuthLimitsTest(LarderTestCase):
    """requirepass set: before AUTH, Redis closes a client that sends a
    request with more than 10 arguments or a bulk over 16 KiB; Larder does
    the same. Compared with a redis-server that has requirepass itself."""

    PASSWORD = "limits-Pw-3e9d"

    @classmethod
    def setUpClass(cls):
        cls.start_shared(larder_kwargs={"requirepass": cls.PASSWORD})
        cls.redis_auth = harness.RedisServer(password=cls.PASSWORD)
        cls.addClassCleanup(cls.redis_auth.cleanup)
        cls.redis_auth.start()

    def setUp(self):
        self.witness = Witness(self, self.larder, password=self.PASSWORD)

    def both(self, payload, reply: bytes | None = None):
        """(Larder's, redis-server's) answer: until closed, or until `reply`
        (the answer expected when the connection stays) has arrived."""
        wait = 0.3 if reply == b"" else 2.0
        got = exchange(self.larder.port, payload, wait, during=self.witness.check, enough=reply)
        self.witness.check()
        return got, exchange(self.redis_auth.port, payload, wait, enough=reply)

    def assert_refused_like_redis(self, payload):
        larder, redis = self.both(payload)
        self.assertTrue(redis[1] and redis[0].startswith(b"-ERR Protocol error: "), redis)
        self.assertTrue(larder[1] and larder[0].startswith(b"-ERR Protocol error: "),
                        f"Larder answered {larder!r}, redis-server {redis!r}")

    def test_more_than_ten_arguments(self):
        self.assert_refused_like_redis(encode_command("DEL", *[f"k{i}" for i in range(10)]))
        self.assert_refused_like_redis(b"*11\r\n")  # the count alone is enough
        # Ten are fine: NOAUTH, and the connection stays.
        noauth = b"-NOAUTH Authentication required.\r\n"
        self.assertEqual(self.both(encode_command("DEL", *[f"k{i}" for i in range(9)]), noauth),
                         ((noauth, False),) * 2)
        # Inline commands have no such limit, in Redis either.
        self.assertEqual(self.both(b"DEL " + b" ".join(b"k%d" % i for i in range(20)) + b"\r\n",
                                   noauth),
                         ((noauth, False),) * 2)

    def test_bulk_over_16_kib(self):
        self.assert_refused_like_redis(encode_command("AUTH", "x" * 16385))
        self.assert_refused_like_redis(b"*2\r\n$4\r\nAUTH\r\n$16385\r\n")  # header alone
        self.assert_refused_like_redis(b"*2\r\n$4\r\nAUTH\r\n$1073741824\r\n")
        wrongpass = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        self.assertEqual(self.both(encode_command("AUTH", "x" * 16384), wrongpass),
                         ((wrongpass, False),) * 2)

    def test_error_text_like_redis(self):
        """Pre-AUTH limits are refused in Redis 7's words: "unauthenticated
        multibulk length" / "unauthenticated bulk length"."""
        for payload in (b"*11\r\n", b"*2\r\n$4\r\nAUTH\r\n$16385\r\n"):
            larder, redis = self.both(payload)
            self.assertEqual(larder, redis, payload)


class BigDeclaredBulkTest(LarderTestCase):
    def test_one_gib_bulk_sent_slowly(self):
        """A client declares a 1 GiB argument (max_bulk_len allows 2 GiB here)
        and sends it at 640 KiB/s: Larder's memory follows what arrived, not
        what was declared, and the witness is served throughout."""
        server = self.start_redis()
        larder = self.start_larder(server, config={"limits": {"max_bulk_len": "2gb"}})
        witness = Witness(self, larder)
        witness.check()
        rss_before = larder.rss_kb()
        slow = socket.create_connection((harness.HOST, larder.port), timeout=scaled(5))
        self.addCleanup(slow.close)
        slow.sendall(b"*3\r\n$3\r\nSET\r\n$8\r\nbig:slow\r\n$1073741824\r\n")
        chunk = b"z" * (64 * 1024)
        rss_peak = rss_before
        for i in range(30):  # 3 s, 1.9 MiB
            slow.sendall(chunk)
            time.sleep(0.1)
            rss_peak = max(rss_peak, larder.rss_kb())
            if i % 5 == 0:
                witness.check()
        # AddressSanitizer writes the shadow of the whole 2 GiB read buffer
        # (1/8 of it) when it is allocated; without it RSS grows by ~2 MiB.
        with open(f"/proc/{larder.pid}/maps") as f:
            allowed_mib = 64 + (2048 / 8 if "libasan" in f.read() else 0)
        growth_mib = (rss_peak - rss_before) / 1024
        self.assertLess(growth_mib, allowed_mib,
                        f"RSS grew by {growth_mib:.0f} MiB for 1.9 MiB sent")
        slow.close()
        witness.check()
        self.assertIsNone(server.client().get("big:slow"))
        harness.wait_until(lambda: larder.rss_kb() < rss_before + allowed_mib * 1024, 5,
                           "Larder's RSS to stay small after the client left")


class ConnectionFloodTest(LarderTestCase):
    MAXCLIENTS = 200
    FLOOD = 1500

    def flood_size(self) -> int:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = self.FLOOD + 200
        if soft < want and (hard == resource.RLIM_INFINITY or hard >= want):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        n = min(self.FLOOD, soft - 200, self.somaxconn())
        if n < 2 * self.MAXCLIENTS:
            self.skipTest(f"ulimit -n is {soft}: too few descriptors for the flood")
        return n

    @staticmethod
    def somaxconn() -> int:
        try:
            with open("/proc/sys/net/core/somaxconn") as f:
                return int(f.read())
        except (OSError, ValueError):
            return 4096

    def backlog(self, n: int) -> int:
        return max(511, min(n + 100, self.somaxconn(), 65535))

    def open_all(self, port: int, n: int):
        """n connections at once: non-blocking connects, then wait for all."""
        sel = selectors.DefaultSelector()
        socks = []
        try:
            for _ in range(n):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.connect_ex((harness.HOST, port))
                socks.append(s)
                sel.register(s, selectors.EVENT_WRITE)
            pending = len(socks)
            deadline = time.monotonic() + scaled(15)
            while pending and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=0.2):
                    sel.unregister(key.fileobj)
                    pending -= 1
            self.assertEqual(pending, 0, f"{pending} of {n} connects did not complete")
        finally:
            sel.close()
        return socks

    def wait_rejections(self, socks, at_least: int):
        """Reads every socket until at least `at_least` were closed by the
        server, and 0.3 s more. Returns (sockets still open,
        {bytes received before EOF: how many sockets got them})."""
        sel = selectors.DefaultSelector()
        got = {s: b"" for s in socks}
        closed = set()
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + scaled(20)
        try:
            while time.monotonic() < deadline:
                if len(closed) >= at_least:
                    deadline = min(deadline, time.monotonic() + scaled(0.3))
                for key, _ in sel.select(timeout=0.05):
                    s = key.fileobj
                    try:
                        data = s.recv(4096)
                    except (ConnectionResetError, BlockingIOError):
                        data = b""
                    if data:
                        got[s] += data
                    else:
                        sel.unregister(s)
                        closed.add(s)
        finally:
            sel.close()
        self.assertGreaterEqual(len(closed), at_least, "too few connections were refused")
        outcomes = {}
        for s in closed:
            outcomes[got[s]] = outcomes.get(got[s], 0) + 1
        still_open = [s for s in socks if s not in closed]
        for s in still_open:
            self.assertEqual(got[s], b"", "an admitted client got something unasked")
        return still_open, outcomes

    def flood(self, port: int, n: int, max_admitted: int, witness=None):
        """n connections at once; those left open must answer PING.
        Returns (how many were admitted, what the refused ones got: count)."""
        socks = self.open_all(port, n)
        try:
            admitted, outcomes = self.wait_rejections(socks, n - max_admitted)
            if witness is not None:
                witness.check()  # served with every slot taken
            for s in admitted:
                s.setblocking(True)
                s.settimeout(scaled(5))
                s.sendall(b"PING\r\n")
            for s in admitted:
                reply = b""
                while len(reply) < 7 and (chunk := s.recv(16)):
                    reply += chunk
                self.assertEqual(reply, b"+PONG\r\n")
            return len(admitted), outcomes
        finally:
            for s in socks:
                s.close()

    def test_connection_flood_beyond_maxclients(self):
        n = self.flood_size()
        rejected_line = b"-ERR max number of clients reached\r\n"
        server = self.start_redis()
        # The flood must fit the accept queue: past it, Linux drops the
        # handshake's last ACK, and a client whose SYN-ACK retransmits run out
        # holds a socket the server never saw, neither admitted nor refused.
        larder = self.start_larder(server, config={"limits": {"maxclients": self.MAXCLIENTS},
                                                   "backlog": self.backlog(n)})
        witness = Witness(self, larder)
        witness.check()
        # Probe connections of the start-up are gone once INFO sees only
        # itself and the witness.
        harness.wait_until(lambda: larder.info_larder()["connected_clients"] <= 2, 5,
                           "the start-up probes to be closed")
        rejected_before = larder.info_larder()["rejected_connections"]

        slots = self.MAXCLIENTS - 1  # the witness has one
        admitted, outcomes = self.flood(larder.port, n, slots, witness)
        self.assertEqual(outcomes, {rejected_line: n - admitted},
                         "every client beyond maxclients gets Redis' error, then EOF")
        self.assertGreaterEqual(admitted, slots - 10)
        witness.check()
        harness.wait_until(
            lambda: larder.info_larder()["rejected_connections"] - rejected_before >= n - admitted,
            5, "rejected_connections to count the flood")

        # Every slot comes back: a second flood is admitted as far as the first.
        harness.wait_until(lambda: larder.info_larder()["connected_clients"] <= 2, 10,
                           "the flood's connections to be released")
        again, outcomes = self.flood(larder.port, 2 * self.MAXCLIENTS, slots, witness)
        self.assertGreaterEqual(again, slots - 10)
        self.assertEqual(list(outcomes), [rejected_line])
        witness.check()

        # redis-server with the same maxclients answers with the same line.
        redis_cmp = self.start_redis(extra_args=["--maxclients", str(self.MAXCLIENTS)])
        _, redis_outcomes = self.flood(redis_cmp.port, 2 * self.MAXCLIENTS, self.MAXCLIENTS)
        self.assertEqual(list(redis_outcomes), [rejected_line])


class SlowClientTest(LarderTestCase):
    def test_slowloris_and_idle_timeout_like_redis(self):
        """idle_timeout 1s (Redis: timeout 1). A client that stops in the
        middle of a request is closed; one that trickles a byte every 0.25 s
        counts as active and stays, in Larder as in Redis; the witness, active
        too, is never closed."""
        server = self.start_redis()
        redis_cmp = self.start_redis(extra_args=["--timeout", "1"])
        larder = self.start_larder(server, config={"idle_timeout": "1s"})
        witness = Witness(self, larder)
        header = b"*3\r\n$3\r\nSET\r\n$4\r\nslow\r\n$100000\r\n"
        socks = {}
        for name, port in (("larder", larder.port), ("redis", redis_cmp.port)):
            for kind in ("stalled", "trickle"):
                s = socket.create_connection((harness.HOST, port), timeout=scaled(5))
                self.addCleanup(s.close)
                s.sendall(header + b"ab")
                socks[name, kind] = s
        stop = threading.Event()

        def trickle():  # a byte every 0.25 s, whatever the main loop is doing
            while not stop.wait(0.25):
                for name in ("larder", "redis"):
                    with contextlib.suppress(OSError):
                        socks[name, "trickle"].sendall(b"x")

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        self.addCleanup(trickler.join, 5)
        self.addCleanup(stop.set)
        started = time.monotonic()
        closed_at = {}
        while time.monotonic() - started < 3.5:  # Redis' and Larder's clocks: not scaled
            witness.check()
            for key, s in socks.items():
                if key in closed_at:
                    continue
                s.settimeout(0.01)
                try:
                    if s.recv(100) == b"":
                        closed_at[key] = time.monotonic() - started
                except socket.timeout:
                    pass
                except OSError:
                    closed_at[key] = time.monotonic() - started
            time.sleep(0.2)
        stop.set()
        for name in ("larder", "redis"):
            self.assertIn((name, "stalled"), closed_at, f"{name} kept the stalled client")
            self.assertGreater(closed_at[name, "stalled"], 0.9)
            self.assertNotIn((name, "trickle"), closed_at, f"{name} closed the trickling client")
        witness.check()
        self.assertGreaterEqual(larder.info_larder()["idle_disconnections"], 1)
        self.assertIsNone(server.client().get("slow"))


if __name__ == "__main__":
    harness.main()
