"""Larder's ACL verdicts against redis-server's, for every command with keys.

One Larder user and the same user on a reference redis-server 7.0
(`--user ...`): `+@all -@dangerous +sort +sort_ro`, keys `app:*`, channels
`news.*`. Every
command with key arguments, made from COMMAND DOCS (command_docs.py), goes to
both as that user, once with every key allowed and once per key position with
that key denied. Where Redis refuses with NOPERM, Larder must answer the same
words; where Redis lets it run, Larder must not refuse it for permissions.
Keys Redis only finds while running are compared too: SORT's BY and GET
patterns (Larder reaches Redis' verdict itself) and scripts touching keys they
do not declare (Larder refuses scripts to users with rules: docs/security.md).

Run: /usr/bin/python3 tests/integration/test_acl_differential.py [-v]
"""

from __future__ import annotations

import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import command_docs  # noqa: E402
import harness  # noqa: E402
from harness import LarderTestCase, RawClient, RedisServer, RespError  # noqa: E402

PASSWORD = "diff-Acl-Pw-5e7a"
USER = {"name": "alice", "password_sha256": hashlib.sha256(PASSWORD.encode()).hexdigest(),
        "commands": ["+@all", "-@dangerous", "+sort", "+sort_ro"], "keys": ["app:*"],
        "channels": ["news.*"]}
REFERENCE_USER = ["alice", "on", ">" + PASSWORD, "~app:*", "&news.*", "+@all", "-@dangerous",
                  "+sort", "+sort_ro"]
SCRIPTS_REFUSED = "NOPERM Larder: user 'alice' may not run scripts"


def is_noperm(reply) -> bool:
    return isinstance(reply, RespError) and str(reply).startswith("NOPERM")


class AclDifferentialTest(LarderTestCase):

    @classmethod
    def setUpClass(cls):
        cls.start_shared(larder_kwargs={"config": {"users": [USER]}})
        cls.reference = RedisServer(extra_args=["--user"] + REFERENCE_USER)
        cls.addClassCleanup(cls.reference.cleanup)
        cls.reference.start()

    def setUp(self):
        self.meta = RawClient(self.reference.port)  # the default user: COMMAND DOCS & co
        self.addCleanup(self.meta.close)
        self.ref = RawClient(self.reference.port)
        self.addCleanup(self.ref.close)
        self.lar = self.raw(self.larder)
        self.assertEqual(self.ref.call("AUTH", "alice", PASSWORD), "OK")
        self.assertEqual(self.lar.call("AUTH", "alice", PASSWORD), "OK")

    def verdicts(self, words):
        want, got = self.ref.call(*words), self.lar.call(*words)
        return want, got

    def check(self, words):
        want, got = self.verdicts(words)
        if is_noperm(want):
            self.assertEqual(got, want, f"{words}: Redis refused it")
        else:
            self.assertFalse(is_noperm(got), f"{words}: Larder refused ({got!r}), Redis ran it "
                                             f"({want!r})")
        return want, got

    def test_every_command_with_keys(self):
        compared = 0
        denied = 0
        for command in command_docs.load_commands(self.meta):
            if command.name in command_docs.NEVER_RUN or "scripting" in command.categories:
                continue
            for words in command_docs.invocations(command):
                positions = command_docs.key_positions(self.meta, words)
                if not positions:
                    continue
                allowed = list(words)
                for pos, _ in positions:
                    allowed[pos] = "app:" + words[pos]
                self.check(allowed)
                compared += 1
                for pos, _ in positions:
                    other = list(allowed)
                    other[pos] = "other:" + words[pos]
                    want, _ = self.check(other)
                    compared += 1
                    denied += is_noperm(want)
        self.assertGreater(compared, 500)
        self.assertGreater(denied, 250)  # the denials really were exercised

    def test_sort_patterns(self):
        self.meta.call("RPUSH", "app:list", "1", "2")
        self.lar.call("RPUSH", "app:list", "1", "2")
        for words in (["SORT", "app:list"], ["SORT", "app:list", "BY", "app:w_*"],
                      ["SORT", "app:list", "BY", "nosort"], ["SORT", "app:list", "GET", "#"],
                      ["SORT", "app:list", "GET", "app:*"], ["SORT_RO", "app:list", "BY", "w_*"],
                      ["SORT", "app:list", "LIMIT", "0", "x", "BY", "w_*"],
                      ["SORT", "app:list", "BY", "w_*", "LIMIT", "0", "x"],
                      ["SORT", "app:list", "FOO", "BY", "w_*"],
                      ["SORT", "app:list", "STORE", "app:dst", "GET", "#"],
                      ["SORT_RO", "app:list", "STORE", "app:dst"]):
            want, got = self.verdicts(words)
            self.assertEqual(got, want, words)

    def test_scripts_touching_undeclared_keys(self):
        for words in (["EVAL", "return redis.call('GET', 'other:1')", "0"],
                      ["EVAL", "return redis.call('GET', KEYS[1])", "1", "app:1"],
                      ["EVAL_RO", "return redis.call('GET', 'other:1')", "0"],
                      ["EVAL", "return redis.call('FLUSHALL')", "0"],
                      ["EVAL", "return 1", "1", "other:1"]):
            want, got = self.verdicts(words)
            # Redis' own verdict, or Larder's refusal: never a script that runs
            # where Redis would have stopped it.
            if got != want:
                self.assertTrue(str(got).startswith(SCRIPTS_REFUSED), f"{words}: {got!r}")


if __name__ == "__main__":
    harness.main()
