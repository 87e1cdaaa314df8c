#!/usr/bin/python3
"""The command line: --check-config, --version, and start-up with bad configs."""

import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
import harness  # noqa: E402
from harness import LarderTestCase


class ConfigTest(LarderTestCase):
    def setUp(self):
        self.dir = harness.make_tmpdir("config")
        self.addCleanup(harness.remove_tmpdir, self.dir)

    def write(self, text, name="larder.yaml"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def larder(self, *args, env=None, timeout=10):
        full_env = dict(os.environ)
        full_env.pop("LARDER_IT_UNSET_VAR", None)
        if env:
            full_env.update(env)
        return subprocess.run([harness.LARDER_BINARY] + list(args), capture_output=True,
                              timeout=timeout, env=full_env, stdin=subprocess.DEVNULL)

    def check(self, text, env=None):
        path = self.write(text)
        return path, self.larder("--config", path, "--check-config", env=env)

    def assertConfigError(self, text, key, reason_pattern, env=None):
        path, res = self.check(text, env=env)
        stderr = res.stderr.decode()
        self.assertEqual(res.returncode, 2, f"stdout={res.stdout!r} stderr={stderr!r}")
        prefix = f"larder: {path}: {key}: "
        self.assertTrue(stderr.startswith(prefix), f"expected {prefix!r}..., got {stderr!r}")
        self.assertRegex(stderr[len(prefix):], reason_pattern)
        self.assertEqual(len(stderr.strip().splitlines()), 1, "one message, one line")
        self.assertEqual(res.stdout, b"")
        return stderr

    # ---------------------------------------------------------------- good
    def test_good_config(self):
        path, res = self.check(
            "listen: 127.0.0.1:7000\n"
            "threads: 2\n"
            "idle_timeout: 2s\n"
            "requirepass: hunter2-secret\n"
            "redis:\n  address: 127.0.0.1:7001\n  password: backend-secret\n  db: 3\n"
            "limits:\n  max_inflight_per_client: 1024\n  client_output_limit: 64mb\n"
            "  maxclients: 10000\n  max_bulk_len: 512mb\n")
        self.assertEqual(res.returncode, 0, res.stderr)
        out = res.stdout.decode()
        self.assertTrue(out.startswith(f"{path}: ok\n"), out)
        self.assertIn("listen: 127.0.0.1:7000", out)
        self.assertIn("address=127.0.0.1:7001", out)
        self.assertIn("db=3", out)
        self.assertNotIn("hunter2-secret", out)
        self.assertNotIn("backend-secret", out)
        self.assertIn("*****", out)
        self.assertEqual(res.stderr, b"")

    def test_empty_config_is_all_defaults(self):
        path, res = self.check("")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn("listen: 127.0.0.1:6380", res.stdout.decode())

    def test_env_var_substitution(self):
        path, res = self.check("listen: 127.0.0.1:${LARDER_IT_PORT}\n",
                               env={"LARDER_IT_PORT": "7123"})
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn("listen: 127.0.0.1:7123", res.stdout.decode())

    def test_reference_configs_in_repo_are_valid(self):
        root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
        for name in ("larder.yaml", "demo.yaml"):
            path = os.path.join(root, "config", name)
            if not os.path.exists(path):
                continue
            res = self.larder("--config", path, "--check-config",
                              env={"LARDER_PASSWORD": "x", "REDIS_PASSWORD": "y",
                                   "PG_PASSWORD": "z"})
            self.assertEqual(res.returncode, 0, f"{name}: {res.stderr!r}")

    # ----------------------------------------------------------------- bad
    def test_unknown_top_level_key(self):
        self.assertConfigError("listn: 127.0.0.1:7000\n", "listn",
                               r"^unknown key \(did you mean 'listen'\?\)$")

    def test_unknown_nested_key(self):
        self.assertConfigError("redis:\n  adress: 127.0.0.1:7001\n", r"redis.adress",
                               r"^unknown key \(did you mean 'address'\?\)$")
        self.assertConfigError("limits:\n  no_such_limit: 5\n", "limits.no_such_limit",
                               r"^unknown key")

    def test_bad_port(self):
        self.assertConfigError("listen: 127.0.0.1:70000\n", "listen", r"port 70000")
        self.assertConfigError("listen: 127.0.0.1:0\n", "listen", r"port 0")
        self.assertConfigError("redis:\n  address: 127.0.0.1:99999\n", "redis.address",
                               r"port 99999")
        self.assertConfigError("listen: 127.0.0.1\n", "listen", r".")

    def test_missing_env_var(self):
        stderr = self.assertConfigError("requirepass: ${LARDER_IT_UNSET_VAR}\n", "requirepass",
                                        r"environment variable LARDER_IT_UNSET_VAR is not set")
        self.assertIn("LARDER_IT_UNSET_VAR", stderr)

    def test_bad_values(self):
        self.assertConfigError("idle_timeout: 1.5s\n", "idle_timeout", r"duration")
        self.assertConfigError("threads: 0\n", "threads", r".")
        self.assertConfigError("limits:\n  client_output_limit: 4MiB\n",
                               "limits.client_output_limit", r"size")
        self.assertConfigError("limits:\n  maxclients: -1\n", "limits.maxclients", r".")
        self.assertConfigError("redis:\n  db: lots\n", "redis.db", r".")

    def test_duplicate_key(self):
        self.assertConfigError("threads: 1\nthreads: 2\n", "threads", r".")

    def test_yaml_syntax_error(self):
        path, res = self.check("listen: [\n")
        self.assertEqual(res.returncode, 2)
        self.assertRegex(res.stderr.decode(), rf"^larder: {re.escape(path)}: line \d+ column \d+: ")

    def test_missing_file(self):
        path = os.path.join(self.dir, "does-not-exist.yaml")
        res = self.larder("--config", path, "--check-config")
        stderr = res.stderr.decode()
        self.assertEqual(res.returncode, 2)
        self.assertTrue(stderr.startswith(f"larder: {path}: "), stderr)
        self.assertIn("No such file", stderr)
        # Regression check: an early build printed an empty key,
        # "larder: FILE: : cannot read file: ...".
        self.assertNotIn(": : ", stderr)

    def test_bad_config_also_refused_without_check_flag(self):
        path = self.write("listn: 127.0.0.1:7000\n")
        res = self.larder("--config", path)
        self.assertEqual(res.returncode, 2)
        self.assertIn(f"larder: {path}: listn: unknown key", res.stderr.decode())

    # ----------------------------------------------------------- command line
    def test_version(self):
        res = self.larder("--version")
        self.assertEqual(res.returncode, 0)
        out = res.stdout.decode()
        self.assertRegex(out, r"^larder \d+\.\d+\.\d+\S*\n$")
        # The same version as the CMake project and INFO larder.
        root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
        with open(os.path.join(root, "CMakeLists.txt")) as f:
            m = re.search(r"project\(larder VERSION (\S+)", f.read())
        if m:
            self.assertEqual(out.split()[1], m.group(1))
        server = self.start_redis()
        larder = self.start_larder(server)
        self.assertEqual(str(larder.info_larder()["larder_version"]), out.split()[1])
        larder.stop()

    def test_usage_errors(self):
        res = self.larder()
        self.assertEqual(res.returncode, 2)
        self.assertIn("no configuration given", res.stderr.decode())
        self.assertIn("usage:", res.stderr.decode())
        res = self.larder("--bogus")
        self.assertEqual(res.returncode, 2)
        self.assertIn("unknown argument '--bogus'", res.stderr.decode())
        res = self.larder("--help")
        self.assertEqual(res.returncode, 0)
        self.assertIn("--check-config", res.stdout.decode())
        path = self.write("")
        res = self.larder("--config", path, "--log-level", "loud")
        self.assertEqual(res.returncode, 2)
        self.assertIn("--log-level", res.stderr.decode())

    def test_listen_port_in_use(self):
        server = self.start_redis()
        # Larder asked to listen on the Redis port: it must fail, not hang.
        larder = harness.Larder(server, config={"listen": f"{harness.HOST}:{server.port}"},
                                wait_backend=False)
        self.addCleanup(larder.cleanup)
        res = self.larder("--config", larder.config_path, timeout=15)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("in use", (res.stdout + res.stderr).decode())


if __name__ == "__main__":
    harness.main()
