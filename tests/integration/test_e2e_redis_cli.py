#!/usr/bin/python3
"""End to end with the real redis-cli, as a person would use Larder."""

import os
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
import harness  # noqa: E402
from harness import LarderTestCase

CLI_TIMEOUT = 30


class RedisCliTest(LarderTestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(harness.REDIS_CLI, os.X_OK):
            raise unittest.SkipTest("redis-cli is not installed")
        cls.start_shared()

    def setUp(self):
        self.backend = self.redis_server.client()
        self.addCleanup(harness.close_client, self.backend)
        self.backend.flushall()

    def cli(self, *args, input=None, port=None, check=True):
        argv = [harness.REDIS_CLI, "-h", harness.HOST, "-p", str(port or self.larder.port)]
        res = subprocess.run(argv + list(args), input=input, capture_output=True,
                             timeout=CLI_TIMEOUT)
        if check:
            self.assertEqual(res.returncode, 0, f"redis-cli {args} failed: {res.stderr!r}")
        return res.stdout.decode(errors="replace")

    def test_ping(self):
        self.assertEqual(self.cli("PING"), "PONG\n")
        self.assertEqual(self.cli("PING", "hello"), "hello\n")

    def test_set_get(self):
        self.assertEqual(self.cli("SET", "greeting", "hello world"), "OK\n")
        self.assertEqual(self.cli("GET", "greeting"), "hello world\n")
        self.assertEqual(self.backend.get("greeting"), b"hello world")
        self.assertEqual(self.cli("--no-raw", "GET", "greeting"), '"hello world"\n')
        self.assertEqual(self.cli("--no-raw", "GET", "nothing"), "(nil)\n")
        self.assertEqual(self.cli("-r", "3", "INCR", "c"), "1\n2\n3\n")

    def test_no_raw_hash(self):
        self.assertEqual(self.cli("HSET", "h", "name", "Ada", "lang", "en"), "2\n")
        out = self.cli("--no-raw", "HGETALL", "h")
        self.assertEqual(out, '1) "name"\n2) "Ada"\n3) "lang"\n4) "en"\n')
        self.assertEqual(self.cli("--no-raw", "HLEN", "h"), "(integer) 2\n")

    def test_stdin_session(self):
        # No command on the command line and stdin not a tty: redis-cli reads
        # commands from stdin, after its start-up handshake (COMMAND DOCS for
        # its hints on Redis 7).
        self.backend.config_resetstat()
        out = self.cli(input=b"SET a 1\nGET a\nINCR a\nHSET h f v\nHGETALL h\nPING\n")
        self.assertEqual(out, "OK\n1\n2\n1\nf\nv\nPONG\n")
        self.assertEqual(self.backend.get("a"), b"2")
        stats = self.backend.info("commandstats")
        self.assertIn("cmdstat_command|docs", stats,
                      "redis-cli's COMMAND DOCS handshake did not reach Redis")

    def test_errors_keep_session(self):
        out = self.cli(input=b"NOSUCHCOMMAND x\nSET k v\nGET k\n")
        lines = out.splitlines()
        self.assertIn("unknown command", lines[0])
        self.assertEqual(lines[-2:], ["OK", "v"])

    def test_pipe_mass_insertion(self):
        data = b"".join(harness.encode_command("SET", f"mass:{i}", f"value-{i}")
                        for i in range(10000))
        out = self.cli("--pipe", input=data)
        self.assertIn("errors: 0, replies: 10000", out)
        self.assertEqual(self.backend.dbsize(), 10000)
        self.assertEqual(self.backend.get("mass:9999"), b"value-9999")

    def test_info(self):
        out = self.cli("INFO")
        self.assertIn("# Larder", out)
        self.assertIn("larder_version:", out)
        self.assertIn("redis_version:", out)
        out = self.cli("INFO", "larder")
        self.assertIn("# Larder", out)
        self.assertIn("backend_redis_status:ok", out)
        self.assertNotIn("redis_version:", out)

    def test_select_with_n(self):
        self.assertEqual(self.cli("-n", "2", "SET", "in2", "x"), "OK\n")
        self.assertEqual(self.cli("-n", "2", "GET", "in2"), "x\n")
        self.assertEqual(self.cli("GET", "in2"), "\n")
        self.assertEqual(self.redis_server.client(db=2).get("in2"), b"x")

    def test_scan_and_stdin_value(self):
        for i in range(30):
            self.backend.set(f"scan:{i}", i)
        self.backend.set("other", 1)
        out = self.cli("--scan", "--pattern", "scan:*")
        self.assertEqual(sorted(out.split()), sorted(f"scan:{i}" for i in range(30)))
        blob = bytes(range(256)) * 4
        self.assertEqual(self.cli("-x", "SET", "blob", input=blob), "OK\n")
        self.assertEqual(self.backend.get("blob"), blob)

    def test_subscribe(self):
        proc = subprocess.Popen([harness.REDIS_CLI, "-h", harness.HOST, "-p",
                                 str(self.larder.port), "SUBSCRIBE", "cli-ch"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: (proc.poll() is None and proc.kill(), proc.wait(5),
                                 proc.stdout.close()))
        harness.wait_until(lambda: self.backend.pubsub_numsub("cli-ch")[0][1] == 1, 10,
                           "redis-cli to subscribe through Larder")
        self.assertEqual(self.backend.publish("cli-ch", "hi from redis"), 1)
        lines = []
        deadline = time.monotonic() + 10
        while "hi from redis" not in lines and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.decode().strip())
        self.assertIn("hi from redis", lines)
        self.assertEqual(lines[:3], ["subscribe", "cli-ch", "1"])


class RedisCliAuthTest(LarderTestCase):
    def test_requirepass(self):
        if not os.access(harness.REDIS_CLI, os.X_OK):
            self.skipTest("redis-cli is not installed")
        server = self.start_redis()
        larder = self.start_larder(server, requirepass="secret")
        base = [harness.REDIS_CLI, "-h", harness.HOST, "-p", str(larder.port)]

        def run(*args, input=None):
            return subprocess.run(base + list(args), input=input, capture_output=True,
                                  timeout=CLI_TIMEOUT)

        res = run("-a", "secret", "--no-auth-warning", "PING")
        self.assertEqual(res.stdout, b"PONG\n")
        res = run("-a", "secret", "--no-auth-warning", "SET", "k", "v")
        self.assertEqual(res.stdout, b"OK\n")
        self.assertEqual(server.client().get("k"), b"v")
        res = run("GET", "k")
        self.assertIn(b"NOAUTH", res.stdout + res.stderr)
        res = run("-a", "wrong", "--no-auth-warning", "GET", "k")
        self.assertIn(b"WRONGPASS", res.stdout + res.stderr)
        res = run("-a", "secret", "--no-auth-warning", input=b"GET k\nINFO larder\n")
        self.assertTrue(res.stdout.startswith(b"v\n"), res.stdout)
        self.assertIn(b"# Larder", res.stdout)
        res = run("--user", "default", "--pass", "secret", "--no-auth-warning", "GET", "k")
        self.assertEqual(res.stdout, b"v\n")
        larder.stop()
        self.assertNotIn("secret", larder.log())


if __name__ == "__main__":
    harness.main()
