#!/usr/bin/python3
"""ACL users (docs/security.md): AUTH and HELLO AUTH, command and key
permissions, category rules, env-ref passwords, disabled users, reload, and
the admin port's bearer token.

Where Redis answers, the answer is compared with a second redis-server 7.0
given the same users on its command line (`--user ...`): the same commands
go to Larder and to that reference, and the replies must be equal. (The
backend Redis Larder uses is a plain one; its default user runs everything.)

Run: LARDER_BINARY=build/larder /usr/bin/python3 tests/integration/test_acl.py
"""

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import redis  # noqa: E402
from harness import (LarderTestCase, PostgresServer, RawClient, RedisServer,  # noqa: E402
                     RespError, free_port)

DEFAULT_PASS = "default-Acl-Pw-1b2d"
ALICE_PASS = "alice-Acl-Pw-3c9e"
ALICE_PASS2 = "alice-Second-Pw-8d01"
BOB_PASS = "bob-Env-Pw-77a1"
CAROL_PASS = "carol-Off-Pw-4f10"
DAVE_PASS = "dave-Reload-Pw-6a2b"
ERIN_PASS = "erin-Added-Pw-0c3d"
WRONG_PASS = "wrong-Acl-Pw-55e1"
ADMIN_TOKEN = "admin-Token-9e8f7a"
BOB_ENV = "LARDER_TEST_BOB_PASSWORD"
SECRETS = (DEFAULT_PASS, ALICE_PASS, ALICE_PASS2, BOB_PASS, CAROL_PASS, DAVE_PASS, ERIN_PASS,
           WRONG_PASS, ADMIN_TOKEN)

WRONGPASS = RespError("WRONGPASS invalid username-password pair or user is disabled.")
KEY_DENIED = RespError(
    "NOPERM this user has no permissions to access one of the keys used as arguments")


def sha(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def denied(command: str) -> RespError:
    return RespError(f"NOPERM this user has no permissions to run the '{command}' command")


# The same users in Larder's config and on the reference Redis' command line.
USERS = [
    {"name": "alice", "password_sha256": [sha(ALICE_PASS), sha(ALICE_PASS2)],
     "commands": ["+@all", "-@dangerous"], "keys": ["app:*", "~shared:?"],
     "channels": ["news.*", "&alerts"]},
    {"name": "bob", "password_env": BOB_ENV,
     "commands": "-@all +@read +ping -hgetall +acl|whoami", "keys": ["*"]},
    {"name": "carol", "password_sha256": sha(CAROL_PASS), "enabled": False,
     "commands": ["+@all"], "keys": ["*"], "channels": "*"},
    {"name": "reader", "nopass": True, "commands": ["+get", "+config|get", "+multi", "+exec"],
     "keys": ["app:*"]},
]
REFERENCE_USERS = [
    ["alice", "on", ">" + ALICE_PASS, ">" + ALICE_PASS2, "~app:*", "~shared:?", "&news.*",
     "&alerts", "+@all", "-@dangerous"],
    ["bob", "on", ">" + BOB_PASS, "~*", "-@all", "+@read", "+ping", "-hgetall",
     "+acl|whoami"],
    ["carol", "off", ">" + CAROL_PASS, "~*", "&*", "+@all"],
    ["reader", "on", "nopass", "~app:*", "+get", "+config|get", "+multi", "+exec"],
]


def reference_args(users, requirepass=None):
    args = []
    for user in users:
        args += ["--user"] + user
    if requirepass:
        args += ["--requirepass", requirepass]
    return args


def http_get(port: int, path: str, token: str | None = None):
    req = urllib.request.Request(f"http://{harness.HOST}:{port}{path}")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class AclTest(LarderTestCase):
    """One Larder with users and requirepass; a reference Redis with the same ACL."""

    @classmethod
    def setUpClass(cls):
        os.environ[BOB_ENV] = BOB_PASS  # Larder inherits it: password_env
        cls.admin_port = free_port()
        cls.start_shared(larder_kwargs={
            "requirepass": DEFAULT_PASS,
            "config": {"users": USERS,
                       "admin": {"address": f"{harness.HOST}:{cls.admin_port}",
                                 "token": ADMIN_TOKEN}}})
        cls.reference = RedisServer(password=DEFAULT_PASS,
                                    extra_args=reference_args(REFERENCE_USERS))
        cls.addClassCleanup(cls.reference.cleanup)
        cls.reference.start()

    @classmethod
    def tearDownClass(cls):
        log = cls.larder.log()
        for secret in SECRETS + tuple(sha(s) for s in SECRETS):
            if secret in log:
                raise AssertionError(f"Larder's log contains a secret ({secret[:6]}...)")

    def setUp(self):
        self.backend = self.redis_server.client()
        self.addCleanup(harness.close_client, self.backend)
        self.backend.flushall()
        ref = RawClient(self.reference.port)
        self.addCleanup(ref.close)
        ref.call("AUTH", DEFAULT_PASS)
        ref.call("FLUSHALL")

    def pair(self, *auth):
        """Raw connections to Larder and to the reference, both after AUTH `auth`."""
        larder, ref = self.raw(self.larder), RawClient(self.reference.port)
        self.addCleanup(ref.close)
        if auth:
            self.assertEqual(larder.call("AUTH", *auth), "OK")
            self.assertEqual(ref.call("AUTH", *auth), "OK")
        return larder, ref

    def same(self, larder, ref, *command, expect=None):
        """Sends `command` to both; the replies must be equal (and `expect`)."""
        got, want = larder.call(*command), ref.call(*command)
        self.assertEqual(got, want, f"{command}: Larder {got!r}, Redis {want!r}")
        if expect is not None:
            self.assertEqual(got, expect, command)
        return got

    # ------------------------------------------------------------ AUTH

    def test_auth_variants_match_redis(self):
        larder, ref = self.pair()
        self.same(larder, ref, "GET", "app:1", expect=RespError("NOAUTH Authentication required."))
        for args in (("AUTH", WRONG_PASS), ("AUTH", "default", WRONG_PASS),
                     ("AUTH", "alice", WRONG_PASS), ("AUTH", "alice", DEFAULT_PASS),
                     ("AUTH", "nobody", ALICE_PASS), ("AUTH", "carol", CAROL_PASS),
                     ("AUTH", "Alice", ALICE_PASS)):
            self.same(larder, ref, *args, expect=WRONGPASS)
        self.same(larder, ref, "AUTH", "a", "b", "c", expect=RespError("ERR syntax error"))
        self.same(larder, ref, "AUTH")
        for user, password in (("alice", ALICE_PASS), ("alice", ALICE_PASS2), ("bob", BOB_PASS),
                               ("reader", "anything"), ("default", DEFAULT_PASS)):
            self.same(larder, ref, "AUTH", user, password, expect="OK")
            # reader may not run ACL WHOAMI: both refuse it alike
            self.same(larder, ref, "ACL", "WHOAMI",
                      expect=denied("acl|whoami") if user == "reader" else user.encode())
        self.same(larder, ref, "AUTH", DEFAULT_PASS, expect="OK")
        self.same(larder, ref, "ACL", "WHOAMI", expect=b"default")
        # A failed AUTH keeps the user the session had.
        self.same(larder, ref, "AUTH", "alice", WRONG_PASS, expect=WRONGPASS)
        self.same(larder, ref, "ACL", "WHOAMI", expect=b"default")

    def test_disabled_user_cannot_authenticate(self):
        larder, ref = self.pair()
        self.same(larder, ref, "AUTH", "carol", CAROL_PASS, expect=WRONGPASS)
        self.same(larder, ref, "HELLO", "2", "AUTH", "carol", CAROL_PASS, expect=WRONGPASS)
        with self.assertRaisesRegex((redis.ResponseError, redis.AuthenticationError), "WRONGPASS"):
            self.larder.client(username="carol", password=CAROL_PASS).ping()

    def test_hello_auth(self):
        larder, ref = self.pair()
        self.same(larder, ref, "HELLO", "3", "AUTH", "alice", WRONG_PASS, expect=WRONGPASS)
        self.same(larder, ref, "GET", "app:1", expect=RespError("NOAUTH Authentication required."))
        reply = larder.call("HELLO", "2", "AUTH", "alice", ALICE_PASS, "SETNAME", "app-1")
        self.assertEqual(reply[reply.index(b"proto") + 1], 2)
        self.assertEqual(ref.call("HELLO", "2", "AUTH", "alice", ALICE_PASS)[0], b"server")
        self.assertEqual(larder.call("ACL", "WHOAMI"), b"alice")
        self.assertEqual(larder.call("CLIENT", "GETNAME"), b"app-1")
        self.assertIn(" user=alice ", larder.call("CLIENT", "INFO").decode())
        self.same(larder, ref, "FLUSHALL", expect=denied("flushall"))
        c = self.client(self.larder, username="bob", password=BOB_PASS)  # redis-py: AUTH u p
        self.assertEqual(c.execute_command("ACL", "WHOAMI"), b"bob")

    def test_env_password(self):
        larder, ref = self.pair()
        self.same(larder, ref, "AUTH", "bob", BOB_PASS, expect="OK")
        self.same(larder, ref, "AUTH", "bob", BOB_ENV, expect=WRONGPASS)  # the name is no password

    # ------------------------------------------------------------ permissions

    def test_noperm_for_commands(self):
        larder, ref = self.pair("alice", ALICE_PASS)
        self.same(larder, ref, "SET", "app:1", "v", expect="OK")
        self.same(larder, ref, "GET", "app:1", expect=b"v")
        for command in (("FLUSHALL",), ("FLUSHDB",), ("KEYS", "app:*"), ("CONFIG", "GET", "x"),
                        ("CONFIG", "SET", "maxmemory", "1"), ("SORT", "app:l"),
                        ("LARDER", "STATS"), ("CLIENT", "KILL", "ID", "1")):
            got = larder.call(*command)
            self.assertIsInstance(got, RespError, command)
            self.assertTrue(str(got).startswith("NOPERM this user has no permissions to run"),
                            f"{command}: {got!r}")
            if command[0] != "LARDER":  # Redis has no LARDER
                self.assertEqual(got, ref.call(*command), command)
        self.assertEqual(self.backend.get("app:1"), b"v")  # FLUSHALL did not run

    def test_noperm_for_keys(self):
        larder, ref = self.pair("alice", ALICE_PASS)
        self.same(larder, ref, "SET", "app:1", "a", expect="OK")
        for command in (("GET", "other:1"), ("SET", "other:1", "x"),
                        ("MSET", "app:2", "b", "other:2", "c"), ("MGET", "app:1", "other:1"),
                        ("DEL", "app:1", "other:1"), ("EVAL", "return 1", "1", "other:1"),
                        ("ZUNIONSTORE", "app:z", "2", "app:a", "other:b"),
                        ("XREAD", "STREAMS", "app:s", "other:s", "0", "0"),
                        ("GEORADIUS", "app:g", "0", "0", "1", "km", "STORE", "other:dst"),
                        ("GET", "shared:10"),
                        ("RENAME", "app:1", "other:1"), ("OBJECT", "ENCODING", "other:1")):
            self.same(larder, ref, *command, expect=KEY_DENIED)
        self.same(larder, ref, "MSET", "app:2", "b", "shared:1", "c", expect="OK")
        self.same(larder, ref, "MGET", "app:1", "app:2", "shared:1", expect=[b"a", b"b", b"c"])
        # A script may touch keys it does not declare: Larder cannot check them,
        # so a user with key rules may not run scripts (docs/security.md).
        self.assertIn("may not run scripts", str(larder.call("EVAL", "return KEYS[1]", "1", "app:1")))
        self.same(larder, ref, "PING", expect="PONG")  # keyless: no key check
        self.assertEqual(self.backend.exists("other:1", "other:2", "other:dst"), 0)

    def test_category_rules_left_to_right(self):
        larder, ref = self.pair("bob", BOB_PASS)
        self.backend.hset("h", "f", "v")
        admin = RawClient(self.reference.port)
        self.addCleanup(admin.close)
        admin.call("AUTH", DEFAULT_PASS)
        admin.call("HSET", "h", "f", "v")
        self.same(larder, ref, "GET", "k", expect=None)
        self.same(larder, ref, "HGET", "h", "f")
        self.same(larder, ref, "EXISTS", "h")
        self.same(larder, ref, "PING", expect="PONG")
        self.same(larder, ref, "HGETALL", "h", expect=denied("hgetall"))  # -hgetall after +@read
        self.same(larder, ref, "SET", "k", "v", expect=denied("set"))
        self.same(larder, ref, "HSET", "h", "f", "w", expect=denied("hset"))
        self.same(larder, ref, "INFO", expect=denied("info"))
        self.same(larder, ref, "SELECT", "1", expect=denied("select"))
        self.same(larder, ref, "GET", expect=RespError(
            "ERR wrong number of arguments for 'get' command"))  # arity first, as in Redis
        self.same(larder, ref, "SET", expect=RespError(
            "ERR wrong number of arguments for 'set' command"))
        self.assertEqual(self.backend.hget("h", "f"), b"v")

    def test_subcommand_rules(self):
        larder, ref = self.pair("reader", "x")
        self.same(larder, ref, "CONFIG", "SET", "maxmemory", "0", expect=denied("config|set"))
        self.same(larder, ref, "CONFIG", "RESETSTAT", expect=denied("config|resetstat"))
        self.same(larder, ref, "SET", "app:1", "v", expect=denied("set"))
        got = larder.call("CONFIG", "GET", "maxmemory")
        self.assertEqual(got[0], b"maxmemory")  # allowed (Larder's backend answers)

    def test_multi_noperm_aborts_exec(self):
        larder, ref = self.pair("alice", ALICE_PASS)
        self.same(larder, ref, "MULTI", expect="OK")
        self.same(larder, ref, "SET", "app:1", "v", expect="QUEUED")
        self.same(larder, ref, "FLUSHALL", expect=denied("flushall"))
        self.same(larder, ref, "GET", "other:1", expect=KEY_DENIED)
        self.same(larder, ref, "EXEC",
                  expect=RespError("EXECABORT Transaction discarded because of previous errors."))
        self.assertIsNone(self.backend.get("app:1"))
        self.same(larder, ref, "MULTI", expect="OK")  # a clean transaction still works
        self.same(larder, ref, "SET", "app:1", "v", expect="QUEUED")
        self.same(larder, ref, "EXEC", expect=["OK"])
        larder2, ref2 = self.pair("reader", "x")
        self.same(larder2, ref2, "MULTI", expect="OK")
        self.same(larder2, ref2, "DEL", "app:1", expect=denied("del"))
        self.same(larder2, ref2, "EXEC",
                  expect=RespError("EXECABORT Transaction discarded because of previous errors."))
        self.assertEqual(self.backend.get("app:1"), b"v")

    def test_channels(self):
        larder, ref = self.pair("alice", ALICE_PASS)
        channel_denied = RespError(
            "NOPERM this user has no permissions to access one of the channels used as arguments")
        self.same(larder, ref, "PUBLISH", "news.eu", "hi", expect=0)
        self.same(larder, ref, "PUBLISH", "other", "hi", expect=channel_denied)
        self.same(larder, ref, "SUBSCRIBE", "news.eu", "other", expect=channel_denied)
        self.same(larder, ref, "PSUBSCRIBE", "news.e*", expect=channel_denied)  # literal match
        self.same(larder, ref, "SUBSCRIBE", "news.eu", expect=[b"subscribe", b"news.eu", 1])
        # While subscribed: commands and channels are still checked.
        self.same(larder, ref, "SUBSCRIBE", "alerts", expect=[b"subscribe", b"alerts", 2])
        self.same(larder, ref, "SUBSCRIBE", "other", expect=channel_denied)
        self.same(larder, ref, "PSUBSCRIBE", "news.*", expect=[b"psubscribe", b"news.*", 3])
        self.same(larder, ref, "PING", expect=[b"pong", b""])
        self.same(larder, ref, "FLUSHALL", expect=denied("flushall"))
        self.same(larder, ref, "UNSUBSCRIBE", "news.eu", expect=[b"unsubscribe", b"news.eu", 2])
        self.same(larder, ref, "UNSUBSCRIBE", "alerts", expect=[b"unsubscribe", b"alerts", 1])
        self.same(larder, ref, "PUNSUBSCRIBE", "news.*",
                  expect=[b"punsubscribe", b"news.*", 0])
        self.same(larder, ref, "GET", "other:1", expect=KEY_DENIED)
        bob, bob_ref = self.pair("bob", BOB_PASS)
        self.same(bob, bob_ref, "SUBSCRIBE", "news.eu", expect=denied("subscribe"))

    def test_acl_subcommands_refused(self):
        larder = self.raw(self.larder)
        self.assertEqual(larder.call("AUTH", DEFAULT_PASS), "OK")
        for sub in ("LIST", "SETUSER", "USERS", "GETUSER", "LOG", "DELUSER", "SAVE", "LOAD"):
            got = larder.call("ACL", sub, "x") if sub in ("SETUSER", "GETUSER", "DELUSER") \
                else larder.call("ACL", sub)
            self.assertEqual(got, RespError(
                f"ERR Larder: ACL {sub} is not supported through the proxy when users are "
                "configured; Larder's users live in its config file (users:)"))
        self.assertIn(b"dangerous", larder.call("ACL", "CAT"))
        self.assertEqual(larder.call("ACL", "WHOAMI"), b"default")

    # ------------------------------------------------------------ admin token

    def test_admin_token(self):
        port = self.admin_port
        for path in ("/metrics", "/config", "/nope"):
            self.assertEqual(http_get(port, path)[0], 401, path)
            self.assertEqual(http_get(port, path, "wrong")[0], 401, path)
            self.assertEqual(http_get(port, path, ADMIN_TOKEN[:-1])[0], 401, path)
        self.assertEqual(http_get(port, "/metrics", ADMIN_TOKEN)[0], 200)
        self.assertEqual(http_get(port, "/healthz"), (200, "ok\n"))  # probes stay open
        self.assertEqual(http_get(port, "/readyz")[0], 200)
        status, body = http_get(port, "/config", ADMIN_TOKEN)
        self.assertEqual(status, 200)
        self.assertIn("alice: enabled=true", body)
        self.assertIn("carol: enabled=false", body)
        for secret in SECRETS + tuple(sha(s) for s in SECRETS):
            self.assertNotIn(secret, body)


class NoPasswordTest(LarderTestCase):
    """Users, but a default user without a password (no requirepass)."""

    def test_auth_without_default_password_matches_redis(self):
        redis_server = self.start_redis()
        larder = self.start_larder(redis_server, config={"users": USERS[:1]},
                                   env={BOB_ENV: BOB_PASS})
        reference = self.start_redis(extra_args=reference_args(REFERENCE_USERS[:1]))
        l, r = self.raw(larder), RawClient(reference.port)
        self.addCleanup(r.close)
        for command in (("ACL", "WHOAMI"), ("AUTH", "x"), ("AUTH", "default", "x"),
                        ("AUTH", "alice", WRONG_PASS), ("AUTH", "alice", ALICE_PASS),
                        ("ACL", "WHOAMI"), ("GET", "other:1"), ("RESET",), ("ACL", "WHOAMI"),
                        ("FLUSHALL",)):
            got, want = l.call(*command), r.call(*command)
            self.assertEqual(got, want, command)
        self.assertEqual(l.call("AUTH", "x"), RespError(
            "ERR AUTH <password> called without any password configured for the default user. "
            "Are you sure your configuration is correct?"))

    def test_default_user_from_users_overrides_requirepass(self):
        redis_server = self.start_redis()
        # The harness logs in with DEFAULT_PASS; the file's requirepass is WRONG_PASS.
        larder = self.start_larder(redis_server, requirepass=DEFAULT_PASS, config={
            "requirepass": WRONG_PASS,
            "users": [{"name": "default", "password_sha256": sha(DEFAULT_PASS),
                       "commands": "+@all -set", "keys": "*"}]})
        raw = self.raw(larder)
        self.assertEqual(raw.call("AUTH", WRONG_PASS), WRONGPASS)
        self.assertEqual(raw.call("AUTH", DEFAULT_PASS), "OK")
        self.assertEqual(raw.call("SET", "k", "v"), denied("set"))
        self.assertEqual(raw.call("GET", "k"), None)


class ReloadTest(LarderTestCase):
    """Users apply on reload: added users can log in, removed or disabled
    users' sessions are closed, others keep their user and its new rules."""

    def test_reload_adds_removes_and_disables_users(self):
        redis_server = self.start_redis()
        users = [{"name": "dave", "password_sha256": sha(DAVE_PASS), "commands": "+@all",
                  "keys": "*"},
                 {"name": "frank", "nopass": True, "commands": "+@all", "keys": "*"},
                 {"name": "gina", "nopass": True, "commands": "+@all", "keys": "*"}]
        larder = self.start_larder(redis_server, requirepass=DEFAULT_PASS,
                                   config={"users": users})
        dave, frank, gina = self.raw(larder), self.raw(larder), self.raw(larder)
        self.assertEqual(dave.call("AUTH", "dave", DAVE_PASS), "OK")
        self.assertEqual(frank.call("AUTH", "frank", "x"), "OK")
        self.assertEqual(gina.call("AUTH", "gina", "x"), "OK")
        self.assertEqual(gina.call("SET", "k", "v"), "OK")
        erin = self.raw(larder)
        self.assertEqual(erin.call("AUTH", "erin", ERIN_PASS), WRONGPASS)

        larder.extra["users"] = [
            {"name": "erin", "password_sha256": sha(ERIN_PASS), "commands": "+@all",
             "keys": "*"},
            {"name": "frank", "nopass": True, "enabled": False, "commands": "+@all",
             "keys": "*"},
            {"name": "gina", "nopass": True, "commands": "+@all -set", "keys": "*"}]
        larder.write_config()
        admin = self.client(larder, password=DEFAULT_PASS)
        report = [line.decode() for line in admin.execute_command("LARDER", "RELOAD")]
        text = "\n".join(report)
        self.assertIn("users.dave: removed", text)
        self.assertIn("users.erin: added", text)
        self.assertIn("users.frank: changed (disabled", text)
        self.assertIn("users.gina: changed", text)
        for secret in (DAVE_PASS, ERIN_PASS, sha(DAVE_PASS), sha(ERIN_PASS)):
            self.assertNotIn(secret, text)

        dave.expect_closed()  # removed: closed, as Redis' ACL DELUSER does
        frank.expect_closed()  # disabled: closed too (docs/security.md)
        self.assertEqual(gina.call("SET", "k", "w"), denied("set"))  # new rules, same session
        self.assertEqual(gina.call("GET", "k"), b"v")
        self.assertEqual(erin.call("AUTH", "erin", ERIN_PASS), "OK")
        self.assertEqual(erin.call("ACL", "WHOAMI"), b"erin")
        self.assertEqual(self.raw(larder).call("AUTH", "dave", DAVE_PASS), WRONGPASS)
        self.assertEqual(self.raw(larder).call("AUTH", "frank", "x"), WRONGPASS)


class MappedKeyspaceTest(LarderTestCase):
    """The checks come before a mapped key is routed: a refused read loads
    nothing from PostgreSQL, a refused write queues nothing."""

    def test_noperm_before_mapped_routing(self):
        pg = PostgresServer()
        self.addCleanup(pg.cleanup)
        pg.start()
        pg.create_database("app")
        pg.psql("CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);"
                "INSERT INTO users VALUES (1, 'ann'), (2, 'bob');", dbname="app")
        redis_server = self.start_redis()
        larder = self.start_larder(redis_server, requirepass=DEFAULT_PASS, config={
            "postgres": {"dsn": pg.dsn("app")},
            "keyspaces": {"users": {"key": "user:{id}", "table": "public.users"}},
            "users": [{"name": "app", "password_sha256": sha(ALICE_PASS),
                       "commands": "+@all -@dangerous", "keys": "user:1"},
                      {"name": "ro", "nopass": True, "commands": "-@all +@read",
                       "keys": "*"}]})
        direct = redis_server.client()
        self.addCleanup(harness.close_client, direct)
        app = self.raw(larder)
        self.assertEqual(app.call("AUTH", "app", ALICE_PASS), "OK")
        self.assertEqual(app.call("HGET", "user:1", "name"), b"ann")  # read through
        self.assertEqual(app.call("HGETALL", "user:2"), KEY_DENIED)
        self.assertEqual(app.call("HSET", "user:2", "name", "x"), KEY_DENIED)
        self.assertEqual(app.call("LARDER", "PENDING"), denied("larder"))
        self.assertEqual(direct.exists("user:2"), 0)  # the refused read loaded nothing
        ro = self.raw(larder)
        self.assertEqual(ro.call("AUTH", "ro", "x"), "OK")
        self.assertEqual(ro.call("HGET", "user:2", "name"), b"bob")
        self.assertEqual(ro.call("HSET", "user:2", "name", "y"), denied("hset"))
        self.assertEqual(ro.call("DEL", "user:1"), denied("del"))
        self.assertEqual(direct.hget("user:2", "name"), b"bob")  # filled by ro's read
        time.sleep(0.3)  # a queued write would reach PostgreSQL within ~50 ms
        self.assertEqual(pg.psql("SELECT name FROM users ORDER BY id", dbname="app").split(),
                         ["ann", "bob"])
        self.assertEqual(direct.exists("user:1"), 1)


class ConfigErrorTest(LarderTestCase):
    """Bad users are refused at load, naming file, key and reason."""

    def check(self, users, env=None, admin=None):
        config = {"listen": f"{harness.HOST}:{free_port()}", "users": users}
        if admin:
            config["admin"] = admin
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(harness.to_yaml(config))
        self.addCleanup(os.unlink, f.name)
        full_env = dict(os.environ)
        full_env.pop("LARDER_TEST_UNSET", None)
        full_env.update(env or {})
        res = subprocess.run([harness.LARDER_BINARY, "--config", f.name, "--check-config"],
                             capture_output=True, env=full_env, timeout=20,
                             stdin=subprocess.DEVNULL)
        return f.name, res.returncode, res.stderr.decode()

    def assertRefused(self, users, key, reason, **kwargs):
        path, code, err = self.check(users, **kwargs)
        self.assertEqual(code, 2, err)
        self.assertIn(f"{path}: {key}: {reason}", err)

    def test_errors(self):
        ok = {"name": "u", "nopass": True}
        self.assertRefused([dict(ok, password_env="LARDER_TEST_UNSET", nopass=False)],
                           "users[0].password_env",
                           "environment variable LARDER_TEST_UNSET is not set")
        self.assertRefused([dict(ok, commands="+@nosuch")], "users[0].commands",
                           "'+@nosuch': unknown category 'nosuch'")
        self.assertRefused([dict(ok, commands=["+@all", "-nosuchcmd"])], "users[0].commands",
                           "'-nosuchcmd': unknown command 'nosuchcmd'")
        self.assertRefused([dict(ok, commands="+config|nosuch")], "users[0].commands",
                           "'+config|nosuch': unknown subcommand 'config|nosuch'")
        self.assertRefused([{"name": "u", "password_sha256": "abc123"}],
                           "users[0].password_sha256",
                           "expected 64 hex digits (a SHA-256 digest), got 6 characters")
        self.assertRefused([{"name": "u"}], "users[0]", "user 'u' needs password_sha256")
        self.assertRefused([ok, ok], "users[1].name", "user 'u' repeated")
        self.assertRefused([dict(ok, keys="%R~x")], "users[0].keys", "'%R~x': %R~ and %W~")
        self.assertRefused([dict(ok, colour="red")], "users[0].colour", "unknown key")
        self.assertRefused([], "admin.token_env", "environment variable LARDER_TEST_UNSET is not",
                           admin={"address": f"{harness.HOST}:{free_port()}",
                                  "token_env": "LARDER_TEST_UNSET"})
        # A valid config passes, the env-ref password read from the environment.
        _, code, err = self.check([dict(ok, commands="+@all -@dangerous", keys=["a:*"]),
                                   {"name": "v", "password_env": "LARDER_TEST_SET"}],
                                  env={"LARDER_TEST_SET": "pw"})
        self.assertEqual(code, 0, err)


if __name__ == "__main__":
    harness.main()
