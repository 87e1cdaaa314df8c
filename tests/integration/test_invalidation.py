"""Invalidation against real servers: triggers installed with
`larder --install-triggers` make changes other programs write to PostgreSQL
visible through Larder within a bounded time; Larder's own flushes are not
announced; a lost LISTEN connection drops the keyspaces' cached keys rather
than trusting them; LARDER INVALIDATE by key, by pattern and for a whole
keyspace; every dropped key is published on the invalidation channel."""
import subprocess
import time
import unittest

import redis

import harness
from harness import LarderTestCase, PostgresServer, module_postgres

DB = "app"
CHANNEL = "larder_changes"
PUBLISH = "larder:invalidate"
PG: PostgresServer | None = None


def setUpModule():
    global PG
    PG = module_postgres(DB, "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, "
                         "email text);"
                         "CREATE TABLE orders (tenant text, id bigint, total int NOT NULL "
                         "DEFAULT 0, PRIMARY KEY (tenant, id));")


class InvalidationTest(LarderTestCase):

    def setUp(self):
        PG.psql("TRUNCATE users, orders;"
                "INSERT INTO users SELECT g, 'user' || g, NULL FROM generate_series(1, 50) g;"
                "INSERT INTO orders VALUES ('a:b', 1, 10), ('x', 2, 20);", dbname=DB)

    def start_stack(self, listen: bool = True):
        self.redis_server = self.start_redis()
        config = {
            "postgres": {"dsn": PG.dsn(DB)},
            "invalidation": {"publish": PUBLISH},
            "keyspaces": {
                "users": {"key": "user:{id}", "table": "public.users", "ttl": "1h"},
                "orders": {"key": "order:{tenant}/{id}", "table": "public.orders"},
            },
        }
        if listen:
            config["invalidation"]["listen"] = CHANNEL
        larder = self.start_larder(self.redis_server, config=config)
        self.direct = self.redis_server.client()
        self.addCleanup(harness.close_client, self.direct)
        return larder

    def install(self, larder):
        out = subprocess.run([larder.binary, "--config", larder.config_path, "--install-triggers"],
                             capture_output=True, text=True, timeout=harness.scaled(60))
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("trigger on public.users notifies channel larder_changes", out.stderr)

    def wait_listening(self, larder):
        harness.wait_until(lambda: "listening on PostgreSQL channel" in larder.log(), 10,
                           "Larder to LISTEN")

    def test_direct_update_is_visible_within_a_bounded_time(self):
        larder = self.start_stack()
        self.install(larder)
        self.wait_listening(larder)
        c = self.client(larder)
        self.assertEqual(c.hget("user:7", "name"), b"user7")
        self.assertEqual(c.hget("order:a:b/1", "total"), b"10")
        harness.wait_until(lambda: self.direct.exists("user:7", "order:a:b/1") == 2, 5, "fills")
        sub = self.direct.pubsub()
        self.addCleanup(sub.close)
        sub.subscribe(PUBLISH)
        sub.get_message(timeout=1)  # the subscribe confirmation

        started = time.monotonic()
        PG.psql("UPDATE users SET name = 'changed' WHERE id = 7;"
                "UPDATE orders SET total = 11 WHERE tenant = 'a:b' AND id = 1;", dbname=DB)
        harness.wait_until(lambda: c.hget("user:7", "name") == b"changed", 5,
                           "the UPDATE to show through Larder")
        delay = time.monotonic() - started
        self.assertEqual(c.hget("order:a:b/1", "total"), b"11")
        self.assertLess(delay, harness.scaled(2.0))
        published = set()
        deadline = time.monotonic() + harness.scaled(5)
        while time.monotonic() < deadline and len(published) < 2:
            m = sub.get_message(timeout=0.5)
            if m and m["type"] == "message":
                published.add(m["data"])
        self.assertEqual(published, {b"user:7", b"order:a:b/1"})

        # DELETE and INSERT too; a TRUNCATE drops the whole keyspace.
        PG.psql("DELETE FROM users WHERE id = 7", dbname=DB)
        harness.wait_until(lambda: c.hget("user:7", "name") is None, 5, "the DELETE to show")
        PG.psql("INSERT INTO users VALUES (77, 'new', NULL)", dbname=DB)
        self.assertEqual(c.hget("user:77", "name"), b"new")  # no stale negative entry either
        c.hget("user:8", "name")
        harness.wait_until(lambda: self.direct.exists("user:8"), 5, "the fill of user:8")
        PG.psql("TRUNCATE users", dbname=DB)
        harness.wait_until(lambda: not self.direct.exists("user:8"), 5, "TRUNCATE to drop user:8")
        self.assertIsNone(c.hget("user:8", "name"))

    def test_larders_own_writes_are_not_announced(self):
        larder = self.start_stack()
        self.install(larder)
        self.wait_listening(larder)
        c = self.client(larder)
        c.hset("user:3", "name", "mine")
        c.execute_command("LARDER", "FLUSH")
        self.assertEqual(PG.psql("SELECT name FROM users WHERE id = 3", dbname=DB).strip(), "mine")
        time.sleep(0.5)
        info = larder.info_larder()
        self.assertEqual(self.direct.hget("user:3", "name"), b"mine")  # still cached
        text = harness.read_text(larder.log_path)
        self.assertNotIn("ignoring a notification", text)
        self.assertEqual(info.get("invalidation_notifications", 0), 0)

    def test_lost_listen_connection_drops_cached_keys(self):
        larder = self.start_stack()
        self.install(larder)
        self.wait_listening(larder)
        c = self.client(larder)
        for i in range(1, 11):
            c.hget(f"user:{i}", "name")
        harness.wait_until(lambda: self.direct.exists(*[f"user:{i}" for i in range(1, 11)]) == 10,
                           5, "ten fills")
        self.direct.set("plain", "kept")
        # Kill Larder's LISTEN session; a change made meanwhile cannot be heard.
        PG.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN%'", dbname=DB)
        harness.wait_until(lambda: larder.log().count("listening on PostgreSQL channel") >= 2, 15,
                           "Larder to LISTEN again")
        harness.wait_until(lambda: self.direct.exists(*[f"user:{i}" for i in range(1, 11)]) == 0,
                           5, "the keyspace to be dropped")
        self.assertEqual(self.direct.get("plain"), b"kept")  # unmapped keys untouched
        self.assertEqual(c.hget("user:1", "name"), b"user1")

    def test_larder_invalidate(self):
        larder = self.start_stack(listen=False)
        c = self.client(larder)
        for i in range(1, 21):
            c.hget(f"user:{i}", "name")
        c.hget("order:x/2", "total")
        harness.wait_until(lambda: self.direct.exists(*[f"user:{i}" for i in range(1, 21)]) == 20,
                           5, "fills")
        self.direct.set("user-notes", "unmapped")
        self.assertEqual(c.execute_command("LARDER", "INVALIDATE", "users", "user:1", "user:2"), 2)
        self.assertEqual(self.direct.exists("user:1", "user:2", "user:3"), 1)
        self.assertEqual(c.execute_command("LARDER", "INVALIDATE", "users", "MATCH", "user:1*"),
                         10)  # user:10..user:19 (user:1 is gone already)
        self.assertEqual(self.direct.exists("user:15", "user:20"), 1)
        self.assertEqual(c.execute_command("LARDER", "INVALIDATE", "users"), 8)
        self.assertEqual(self.direct.exists(*[f"user:{i}" for i in range(1, 21)]), 0)
        self.assertEqual(self.direct.get("user-notes"), b"unmapped")
        self.assertTrue(self.direct.exists("order:x/2"))  # another keyspace
        with self.assertRaisesRegex(redis.ResponseError, "not in keyspace 'users'"):
            c.execute_command("LARDER", "INVALIDATE", "users", "order:x/2")
        with self.assertRaisesRegex(redis.ResponseError, "no keyspace named 'nope'"):
            c.execute_command("LARDER", "INVALIDATE", "nope")
        # A pending write survives invalidation: read-your-writes still holds.
        PG.psql("SELECT 1", dbname=DB)
        c.hset("user:5", "name", "pending")
        c.execute_command("LARDER", "INVALIDATE", "users", "user:5")
        self.assertEqual(c.hget("user:5", "name"), b"pending")

    def test_writes_through_larder_are_published(self):
        larder = self.start_stack(listen=False)
        c = self.client(larder)
        sub = self.direct.pubsub()
        self.addCleanup(sub.close)
        sub.subscribe(PUBLISH)
        sub.get_message(timeout=1)
        c.hset("user:4", "name", "w1")
        c.delete("user:5")
        c.hget("user:6", "name")  # a read publishes nothing
        c.set("plain", "x")       # nor does an unmapped key
        got = []
        deadline = time.monotonic() + harness.scaled(5)
        while time.monotonic() < deadline and len(got) < 2:
            m = sub.get_message(timeout=0.5)
            if m and m["type"] == "message":
                got.append(m["data"])
        self.assertEqual(got, [b"user:4", b"user:5"])
        time.sleep(0.3)
        self.assertIsNone(sub.get_message(timeout=0.2))


if __name__ == "__main__":
    unittest.main(verbosity=2)
