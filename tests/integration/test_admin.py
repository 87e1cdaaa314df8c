"""The admin HTTP port against real servers: /metrics moves with traffic,
/readyz follows Redis, /config hides secrets."""
import re
import time
import unittest
import urllib.error
import urllib.request

import harness
from harness import LarderTestCase, PostgresServer, free_port, module_postgres

DB = "app"
PG: PostgresServer | None = None


def setUpModule():
    global PG
    PG = module_postgres(DB, "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, "
                         "email text); INSERT INTO users VALUES (1, 'ann', 'ann@example.org');")


def get(port: int, path: str):
    """(status, body) of a GET on the admin port."""
    try:
        with urllib.request.urlopen(f"http://{harness.HOST}:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    m = re.search(r"^" + pattern + r"$", text, re.M)
    if m is None:
        raise AssertionError(f"{name}{{{labels}}} not in /metrics")
    return float(m.group(1))


class AdminTest(LarderTestCase):

    def start_stack(self):
        redis_server = self.start_redis()
        admin_port = free_port()
        larder = self.start_larder(redis_server, requirepass="client-secret-1", config={
            "admin": f"{harness.HOST}:{admin_port}",
            "postgres": {"dsn": PG.dsn(DB) + " password=pg-secret-2"},
            "keyspaces": {"users": {"key": "user:{id}", "table": "public.users"}}})
        return larder, redis_server, admin_port

    def test_metrics_move_with_traffic(self):
        larder, redis_server, port = self.start_stack()
        c = self.client(larder, password="client-secret-1")
        direct = redis_server.client()
        self.addCleanup(harness.close_client, direct)
        status, before = get(port, "/metrics")
        self.assertEqual(status, 200)
        ks = 'keyspace="users"'
        self.assertEqual(metric(before, "larder_keyspace_misses_total", ks), 0)
        self.assertEqual(c.hget("user:1", "name"), b"ann")   # a miss, loaded
        harness.wait_until(lambda: direct.exists("user:1"), 5, "the fill of user:1")
        self.assertEqual(c.hget("user:1", "name"), b"ann")   # a hit
        self.assertIsNone(c.hget("user:2", "name"))           # a miss, no row
        c.set("plain", "1")
        _, after = get(port, "/metrics")
        self.assertEqual(metric(after, "larder_keyspace_misses_total", ks), 2)
        self.assertEqual(metric(after, "larder_keyspace_hits_total", ks), 1)
        self.assertEqual(metric(after, "larder_load_rows_found_total", ks), 1)
        self.assertGreaterEqual(metric(after, "larder_load_queries_total", ks), 2)
        self.assertEqual(metric(after, "larder_load_duration_seconds_count", ks), 2)
        self.assertGreater(metric(after, "larder_commands_total"),
                           metric(before, "larder_commands_total"))
        self.assertGreaterEqual(metric(after, "larder_connections"), 1)
        self.assertEqual(metric(after, "larder_redis_up"), 1)

    def test_readyz_follows_redis(self):
        larder, redis_server, port = self.start_stack()
        self.assertEqual(get(port, "/healthz"), (200, "ok\n"))
        self.assertEqual(get(port, "/readyz")[0], 200)
        redis_server.stop()
        harness.wait_until(lambda: get(port, "/readyz")[0] == 503, 10, "/readyz to say 503")
        status, body = get(port, "/readyz")
        self.assertIn("redis", body)
        self.assertEqual(get(port, "/healthz")[0], 200)  # the process is still fine
        redis_server.start()
        harness.wait_until(lambda: get(port, "/readyz")[0] == 200, 10, "/readyz to recover")

    def test_config_and_logs_hide_secrets(self):
        larder, _, port = self.start_stack()
        status, body = get(port, "/config")
        self.assertEqual(status, 200)
        self.assertIn("users", body)
        c = self.client(larder, password="client-secret-1")
        c.hget("user:1", "name")
        for secret in ("client-secret-1", "pg-secret-2"):
            self.assertNotIn(secret, body)
            self.assertNotIn(secret, get(port, "/metrics")[1])
        larder.stop()
        for secret in ("client-secret-1", "pg-secret-2"):
            self.assertNotIn(secret, larder.log())


if __name__ == "__main__":
    unittest.main(verbosity=2)
