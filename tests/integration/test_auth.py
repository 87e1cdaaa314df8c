#!/usr/bin/python3
"""Authentication: Larder's own requirepass, and Larder's AUTH to its backend."""

import sys
import time

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
import harness  # noqa: E402
import redis
from harness import LarderTestCase, RespError

CLIENT_PASS = "larder-Client-Pw-7f3a"
BACKEND_PASS = "backend-Redis-Pw-91c2"
WRONG_PASS = "wrong-Attempt-Pw-55e1"

NOAUTH = RespError("NOAUTH Authentication required.")
WRONGPASS = RespError("WRONGPASS invalid username-password pair or user is disabled.")


class RequirepassTest(LarderTestCase):
    """Larder with requirepass, in front of a Redis with its own password."""

    @classmethod
    def setUpClass(cls):
        cls.start_shared(larder_kwargs={"requirepass": CLIENT_PASS},
                         redis_kwargs={"password": BACKEND_PASS})

    @classmethod
    def tearDownClass(cls):
        # Neither password may ever reach the log, whatever the tests did.
        log = cls.larder.log()
        for secret in (CLIENT_PASS, BACKEND_PASS, WRONG_PASS):
            if secret in log:
                raise AssertionError(f"Larder's log contains a password ({secret[:6]}...)")

    def setUp(self):
        self.backend = self.redis_server.client()
        self.addCleanup(harness.close_client, self.backend)
        self.backend.flushall()

    def test_noauth_before_auth(self):
        raw = self.raw(self.larder)
        self.assertEqual(raw.call("GET", "k"), NOAUTH)
        self.assertEqual(raw.call("SET", "k", "v"), NOAUTH)
        self.assertEqual(raw.call("SELECT", "1"), NOAUTH)
        self.assertEqual(raw.call("INFO"), NOAUTH)
        self.assertEqual(raw.call("MULTI"), NOAUTH)
        self.assertEqual(raw.call("SUBSCRIBE", "c"), NOAUTH)
        raw.send("PING\r\n")  # inline form is checked too
        self.assertEqual(raw.read_reply(), NOAUTH)
        self.assertTrue(raw.is_open())
        self.assertEqual(self.backend.exists("k"), 0)
        with self.assertRaises(redis.AuthenticationError):
            self.larder.client().get("k")

    def test_wrongpass(self):
        raw = self.raw(self.larder)
        self.assertEqual(raw.call("AUTH", WRONG_PASS), WRONGPASS)
        self.assertEqual(raw.call("AUTH", "default", WRONG_PASS), WRONGPASS)
        self.assertEqual(raw.call("AUTH", "someone", CLIENT_PASS), WRONGPASS)
        self.assertEqual(raw.call("GET", "k"), NOAUTH)  # still not authenticated
        with self.assertRaisesRegex((redis.ResponseError, redis.AuthenticationError), "WRONGPASS"):
            self.larder.client(password=WRONG_PASS).ping()

    def test_auth_ok_then_commands_work(self):
        raw = self.raw(self.larder)
        self.assertEqual(raw.call("AUTH", CLIENT_PASS), "OK")
        self.assertEqual(raw.call("SET", "k", "v"), "OK")
        self.assertEqual(raw.call("GET", "k"), b"v")
        self.assertEqual(self.backend.get("k"), b"v")
        c = self.client(self.larder, password=CLIENT_PASS)
        self.assertEqual(c.get("k"), b"v")
        p = c.pipeline(transaction=True)
        p.incr("n").incr("n")
        self.assertEqual(p.execute(), [1, 2])
        self.assertEqual(c.info("larder")["backend_redis_status"], "ok")

    def test_auth_default_user(self):
        raw = self.raw(self.larder)
        self.assertEqual(raw.call("AUTH", "default", CLIENT_PASS), "OK")
        self.assertEqual(raw.call("PING"), "PONG")
        c = self.client(self.larder, username="default", password=CLIENT_PASS)
        self.assertTrue(c.set("u", "1"))

    def test_hello_with_auth(self):
        raw = self.raw(self.larder)
        reply = raw.call("HELLO", "2")
        self.assertIsInstance(reply, RespError)
        self.assertTrue(str(reply).startswith("NOAUTH"), reply)
        self.assertEqual(raw.call("HELLO", "2", "AUTH", "default", WRONG_PASS), WRONGPASS)
        self.assertEqual(raw.call("GET", "k"), NOAUTH)
        reply = raw.call("HELLO", "2", "AUTH", "default", CLIENT_PASS, "SETNAME", "hello-client")
        self.assertIsInstance(reply, list)
        self.assertEqual(len(reply), 14)
        self.assertEqual(dict(zip(reply[0::2], reply[1::2]))[b"proto"], 2)
        self.assertEqual(raw.call("CLIENT", "GETNAME"), b"hello-client")
        self.assertEqual(raw.call("SET", "h", "1"), "OK")

    def test_auth_and_hello_refused_inside_multi(self):
        """Queued, AUTH or HELLO would run on the pooled dedicated backend
        connection and change its user or protocol for the next session that
        gets it. Larder refuses them inside MULTI, and EXEC aborts."""
        raw = self.raw(self.larder)
        self.assertEqual(raw.call("AUTH", CLIENT_PASS), "OK")
        for command in (("AUTH", "default", BACKEND_PASS), ("HELLO", "3")):
            self.assertEqual(raw.call("MULTI"), "OK")
            self.assertEqual(raw.call("SET", "m", "1"), "QUEUED")
            reply = raw.call(*command)
            self.assertIsInstance(reply, RespError)
            self.assertEqual(str(reply), f"ERR Larder: {command[0]} cannot run inside MULTI")
            reply = raw.call("EXEC")
            self.assertIsInstance(reply, RespError)
            self.assertTrue(str(reply).startswith("EXECABORT"), reply)
            self.assertEqual(self.backend.exists("m"), 0)
        # The connection goes back to the pool as it was: a new transaction
        # answers in RESP2 as the backend's own user.
        other = self.client(self.larder, password=CLIENT_PASS)
        p = other.pipeline(transaction=True)
        p.set("m", "2").get("m")
        self.assertEqual(p.execute(), [True, b"2"])

    def test_reset_deauthenticates(self):
        raw = self.raw(self.larder)
        self.assertEqual(raw.call("AUTH", CLIENT_PASS), "OK")
        self.assertEqual(raw.call("SET", "r", "1"), "OK")
        self.assertEqual(raw.call("RESET"), "RESET")
        self.assertEqual(raw.call("GET", "r"), NOAUTH)
        self.assertEqual(raw.call("AUTH", CLIENT_PASS), "OK")
        self.assertEqual(raw.call("GET", "r"), b"1")

    def test_reset_deauthenticates_pipelined_commands(self):
        raw = self.raw(self.larder)
        self.assertEqual(raw.call("AUTH", CLIENT_PASS), "OK")
        self.assertEqual(raw.call("SELECT", "1"), "OK")  # pinned, not pub/sub
        raw.send(b"RESET\r\nSET after-reset 1\r\n")
        self.assertEqual(raw.read_reply(), "RESET")
        self.assertEqual(raw.read_reply(), NOAUTH)
        self.assertIsNone(self.backend.get("after-reset"))

    def test_quit_allowed_before_auth(self):
        raw = self.raw(self.larder)
        self.assertEqual(raw.call("QUIT"), "OK")
        self.assertEqual(raw.expect_closed(), b"")

    def _expect_protocol_error_and_close(self, raw, payload):
        raw.send(payload)
        reply = raw.read_reply()
        self.assertIsInstance(reply, RespError)
        self.assertTrue(str(reply).startswith("ERR Protocol error"), reply)
        raw.expect_closed(timeout=5)

    def test_unauthenticated_too_many_args(self):
        raw = self.raw(self.larder)
        self._expect_protocol_error_and_close(
            raw, harness.encode_command("MSET", *[f"a{i}" for i in range(10)]))  # 11 args
        # Exactly 10 is still answered (with NOAUTH).
        raw2 = self.raw(self.larder)
        self.assertEqual(raw2.call("MSET", *[f"a{i}" for i in range(9)]), NOAUTH)

    def test_unauthenticated_big_bulk(self):
        raw = self.raw(self.larder)
        # Refused from the header alone: the 20 KiB body need not be sent.
        raw.send(b"*2\r\n$4\r\nAUTH\r\n$20480\r\n")
        reply = raw.read_reply()
        self.assertIsInstance(reply, RespError)
        self.assertTrue(str(reply).startswith("ERR Protocol error"), reply)
        raw.expect_closed(timeout=5)
        raw2 = self.raw(self.larder)
        self._expect_protocol_error_and_close(raw2, harness.encode_command("SET", "k", "x" * 20480))
        self.assertEqual(self.backend.exists("k"), 0)

    def test_limits_lifted_after_auth(self):
        raw = self.raw(self.larder)
        big = "y" * 20480
        # AUTH pipelined in the same write as requests that need the full limits.
        raw.send(harness.encode_command("AUTH", CLIENT_PASS)
                 + harness.encode_command("MSET", *[f"b{i}" for i in range(20)])
                 + harness.encode_command("SET", "big", big)
                 + harness.encode_command("STRLEN", "big"))
        self.assertEqual([raw.read_reply() for _ in range(4)], ["OK", "OK", "OK", 20480])
        self.assertEqual(self.backend.get("b0"), b"b1")

    def test_larder_without_requirepass_rejects_auth_like_redis(self):
        plain = self.start_larder(self.redis_server)
        raw = self.raw(plain)
        reply = raw.call("AUTH", "anything")
        self.assertIsInstance(reply, RespError)
        self.assertIn("without any password configured", str(reply))
        self.assertEqual(raw.call("SET", "np", "1"), "OK")  # backend AUTH still works
        self.assertEqual(self.backend.get("np"), b"1")
        self.assertNotIn(BACKEND_PASS, plain.log())


class RequirepassPlainBackendTest(LarderTestCase):
    """Larder with requirepass in front of a Redis without a password."""

    @classmethod
    def setUpClass(cls):
        cls.start_shared(larder_kwargs={"requirepass": CLIENT_PASS})

    def setUp(self):
        self.backend = self.redis_server.client()
        self.addCleanup(harness.close_client, self.backend)
        self.backend.flushall()

    def test_noauth_is_larders_own(self):
        raw = self.raw(self.larder)
        self.assertEqual(raw.call("SET", "k", "v"), NOAUTH)
        self.assertEqual(self.backend.exists("k"), 0)

    def test_reset_in_pubsub_mode_deauthenticates_pipelined_commands(self):
        # PROXY BUG (reported): in pub/sub mode RESET is forwarded and Larder
        # keeps stream routing until Redis' +RESET comes back, so commands
        # pipelined right after RESET skip Larder's NOAUTH check and run on
        # Redis although the client is no longer authenticated. (A backend
        # without its own password, so that Redis cannot mask it with NOAUTH.)
        raw = self.raw(self.larder)
        self.assertEqual(raw.call("AUTH", CLIENT_PASS), "OK")
        self.assertEqual(raw.call("SUBSCRIBE", "ch"), [b"subscribe", b"ch", 1])
        raw.send(b"RESET\r\nSET after-reset-ps 1\r\n")
        self.assertEqual(raw.read_reply(), "RESET")
        self.assertEqual(raw.read_reply(), NOAUTH)
        self.assertIsNone(self.backend.get("after-reset-ps"))


class BackendPasswordTest(LarderTestCase):
    def test_wrong_backend_password_gives_error_not_hang(self):
        server = self.start_redis(password=BACKEND_PASS)
        larder = self.start_larder(server, config={"redis": {"password": WRONG_PASS}},
                                   wait_backend=False)
        c = self.client(larder, socket_timeout=5)
        for _ in range(3):
            started = time.monotonic()
            with self.assertRaises(redis.ResponseError) as cm:
                c.set("k", "v")
            self.assertFast(started, 3.0, "an error reply with a refused backend AUTH")
            msg = str(cm.exception)
            self.assertIn("backend", msg.lower())
            self.assertNotIn(WRONG_PASS, msg)
        raw = self.raw(larder)
        reply = raw.call("GET", "k")
        self.assertIsInstance(reply, RespError)
        self.assertIn("Redis backend", str(reply))
        self.assertEqual(raw.call("PING"), "PONG")  # local commands still answer
        info = larder.info_larder()
        self.assertEqual(info["backend_redis_status"], "down")
        self.assertEqual(server.client().exists("k"), 0)
        larder.stop()
        log = larder.log()
        self.assertNotIn(WRONG_PASS, log)
        self.assertNotIn(BACKEND_PASS, log)

    def test_backend_acl_user(self):
        server = self.start_redis(username="larder", password=BACKEND_PASS, extra_args=[
            "--user", "default", "off",
            "--user", "larder", "on", f">{BACKEND_PASS}", "~*", "&*", "+@all"])
        larder = self.start_larder(server)  # redis.username/password from the server
        self.assertIn("username: larder", open(larder.config_path).read())
        raw = self.raw(larder)
        self.assertEqual(raw.call("SET", "acl", "1"), "OK")
        self.assertEqual(raw.call("ACL", "WHOAMI"), b"larder")
        self.assertEqual(server.client().get("acl"), b"1")
        larder.stop()
        self.assertNotIn(BACKEND_PASS, larder.log())

    def test_backend_password_missing_in_config(self):
        server = self.start_redis(password=BACKEND_PASS)
        larder = self.start_larder(server, config={"redis": {"password": ""}})
        raw = self.raw(larder)
        started = time.monotonic()
        reply = raw.call("SET", "k", "v")
        self.assertFast(started, 3.0, "reply with an unauthenticated backend")
        self.assertIsInstance(reply, RespError)
        self.assertIn("NOAUTH", str(reply))  # Redis' own answer, passed through
        self.assertEqual(server.client().exists("k"), 0)

    def test_check_config_redacts_passwords(self):
        server = self.start_redis(password=BACKEND_PASS)
        larder = self.start_larder(server, requirepass=CLIENT_PASS, start=False)
        import subprocess
        res = subprocess.run([larder.binary, "--config", larder.config_path, "--check-config"],
                             capture_output=True, timeout=10)
        self.assertEqual(res.returncode, 0, res.stderr)
        out = res.stdout.decode() + res.stderr.decode()
        self.assertNotIn(CLIENT_PASS, out)
        self.assertNotIn(BACKEND_PASS, out)
        self.assertIn("*****", out)


if __name__ == "__main__":
    harness.main()
