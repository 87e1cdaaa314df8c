#!/usr/bin/python3
"""Checks the harness itself: servers start, stop, restart and clean up, even
when a test fails. PostgreSQL is not used by Larder yet; this keeps its helper
working for the tests that will."""

import contextlib
import io
import os
import socket
import sys
import unittest

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
import harness  # noqa: E402
from harness import LarderTestCase


class HarnessSelfTest(LarderTestCase):
    def test_free_port_is_bindable(self):
        port = harness.free_port()
        with socket.socket() as s:
            s.bind((harness.HOST, port))

    def test_yaml_writer(self):
        text = harness.to_yaml({"listen": "127.0.0.1:1", "threads": 2,
                                "redis": {"password": "a b:#c", "db": 0},
                                "limits": {"client_output_limit": "4mb"}})
        self.assertEqual(text, 'listen: 127.0.0.1:1\nthreads: 2\nredis:\n'
                               '  password: "a b:#c"\n  db: 0\nlimits:\n'
                               '  client_output_limit: 4mb\n')

    def test_redis_server_lifecycle(self):
        server = self.start_redis(password="pw")
        c = server.client()
        c.set("k", "v")
        port = server.port
        server.kill()
        self.assertFalse(server.running())
        self.assertFalse(harness.port_accepts(port))
        server.restart()
        self.assertEqual(server.port, port)
        self.assertIsNone(server.client().get("k"))  # no persistence
        server.stop()
        self.assertFalse(server.running())
        server.restart()
        self.assertTrue(server.client().ping())
        d = server.dir
        server.cleanup()
        self.assertFalse(os.path.exists(d))

    def test_larder_lifecycle(self):
        server = self.start_redis()
        larder = self.start_larder(server)
        self.assertTrue(larder.client().ping())
        self.assertIn("listening on", larder.log())
        self.assertGreater(larder.rss_kb(), 0)
        self.assertEqual(larder.stop(), 0)
        self.assertFalse(larder.running())
        d = larder.dir
        larder.cleanup()
        self.assertFalse(os.path.exists(d))

    def test_postgres_lifecycle(self):
        pg = self.start_postgres()
        self.assertEqual(pg.psql("SELECT 1 + 1").strip(), "2")
        dsn = pg.create_database("larder_it")
        self.assertIn(f"port={pg.port}", dsn)
        self.assertIn("dbname=larder_it", dsn)
        pg.psql("CREATE TABLE users (id int PRIMARY KEY, name text);"
                "INSERT INTO users VALUES (1, 'ada'), (2, 'bob')", dbname="larder_it")
        self.assertEqual(pg.psql("SELECT name FROM users ORDER BY id", dbname="larder_it"),
                         "ada\nbob\n")
        # Listens on 127.0.0.1 only; its Unix socket is inside its temp dir.
        self.assertTrue(harness.port_accepts(pg.port))
        self.assertTrue(os.path.exists(os.path.join(pg.dir, f".s.PGSQL.{pg.port}")))
        self.assertEqual(pg.psql("SHOW listen_addresses").strip(), "127.0.0.1")
        # A crash keeps committed data; restart on the same port.
        pg.kill()
        self.assertFalse(pg.running())
        self.assertFalse(harness.port_accepts(pg.port))
        pg.restart()
        self.assertEqual(pg.psql("SELECT count(*) FROM users", dbname="larder_it").strip(), "2")
        pg.stop()
        self.assertFalse(pg.running())
        pg.start()
        self.assertEqual(pg.psql("SELECT count(*) FROM users", dbname="larder_it").strip(), "2")
        d = pg.dir
        pg.cleanup()
        self.assertFalse(os.path.exists(d))

    def test_cleanup_after_a_failing_test(self):
        started = {}

        class Inner(LarderTestCase):
            def test_fails(self):
                server = self.start_redis()
                larder = self.start_larder(server)
                started.update(redis=server, larder=larder)
                self.fail("deliberate failure")

        result = unittest.TestResult()
        stream = io.StringIO()
        with contextlib.redirect_stderr(stream):
            Inner("test_fails").run(result)
        self.assertEqual(len(result.failures), 1)
        self.assertFalse(started["redis"].running())
        self.assertFalse(started["larder"].running())
        self.assertFalse(os.path.exists(started["redis"].dir))
        self.assertFalse(os.path.exists(started["larder"].dir))
        self.assertIn("Larder log", stream.getvalue())  # the log is shown on failure

    def test_wait_until_reports_what_it_waited_for(self):
        with self.assertRaisesRegex(AssertionError, "waiting for the impossible"):
            harness.wait_until(lambda: False, 0.2, "the impossible")


if __name__ == "__main__":
    harness.main()
