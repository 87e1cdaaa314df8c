"""A Node.js client library from npm (ioredis) through Larder, compared with
redis-server: pipelines, MULTI, scripting, MONITOR and pub/sub
(tests/integration/node/client_check.js prints what the library saw).

ioredis is installed once with npm into LARDER_NODE_CACHE (default
~/.cache/larder-node-client); without node, npm or a registry to install from
the test is skipped, saying why.

Run: /usr/bin/python3 tests/integration/test_node_client.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import LarderTestCase  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "node", "client_check.js")
IOREDIS = "ioredis@5.11.1"


def node_modules() -> str:
    """The node_modules directory holding ioredis; raises SkipTest when it cannot be had."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise unittest.SkipTest("node or npm is not installed")
    cache = os.environ.get("LARDER_NODE_CACHE",
                           os.path.expanduser("~/.cache/larder-node-client"))
    modules = os.path.join(cache, "node_modules")
    if not os.path.isdir(os.path.join(modules, "ioredis")):
        os.makedirs(cache, exist_ok=True)
        try:
            subprocess.run([npm, "install", "--prefix", cache, "--no-audit", "--no-fund",
                            "--loglevel=error", IOREDIS], check=True, capture_output=True,
                           timeout=120)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            out = getattr(e, "stderr", b"") or b""
            raise unittest.SkipTest(f"npm could not install {IOREDIS}: "
                                    f"{out.decode(errors='replace').strip()[-300:]}")
    return modules


class NodeClientTest(LarderTestCase):

    @classmethod
    def setUpClass(cls):
        cls.modules = node_modules()
        cls.start_shared_and_direct(larder_kwargs={"threads": 2})

    def run_check(self, port: int) -> dict:
        env = dict(os.environ, NODE_PATH=self.modules)
        done = subprocess.run(["node", SCRIPT, str(port)], env=env, capture_output=True,
                              timeout=harness.scaled(60))
        self.assertEqual(done.returncode, 0, done.stderr.decode(errors="replace"))
        return json.loads(done.stdout)

    def test_ioredis_sees_what_it_sees_against_redis(self):
        direct = self.run_check(self.direct.port)
        larder = self.run_check(self.larder.port)
        self.assertEqual(larder, direct)
        # Not vacuous: every part ran.
        self.assertEqual(larder["multi"], [[None, 2], [None, "2"], [None, "a"]])
        self.assertIn(["set", "n:m", "x y"], larder["monitor"])
        self.assertEqual(len(larder["messages"]), 2)


if __name__ == "__main__":
    harness.main()
