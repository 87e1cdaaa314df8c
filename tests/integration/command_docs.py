"""Invocations of every Redis command, made from Redis' own description of it.

`COMMAND DOCS` gives each command's (and subcommand's) argument tree; from it
`invocations()` builds a few syntactically plausible requests per command (only
the required arguments; every optional one; every repeatable one twice), and
`COMMAND GETKEYSANDFLAGS` on a real redis-server says where their keys are.
The tests that attack Larder's guarantees put reserved and mapped keys in each
of those positions (test_guarantees.py, test_acl_differential.py).
"""

from __future__ import annotations

import dataclasses

from harness import RawClient, RespError

# Commands that cannot be exercised against a shared test server whatever
# their arguments (they stop it, or change it for every later test).
NEVER_RUN = {"shutdown", "debug", "monitor", "sync", "psync", "replconf", "replicaof",
             "slaveof", "failover", "cluster|failover", "client|pause", "client|kill",
             "flushall", "flushdb", "swapdb", "script|kill", "function|kill",
             "config|set", "acl|setuser", "acl|deluser", "acl|load"}


@dataclasses.dataclass
class Command:
    name: str            # lower case; "object|encoding" for a subcommand
    arguments: list      # COMMAND DOCS argument tree (list of dicts)
    flags: list[str]
    categories: list[str]

    @property
    def words(self) -> list[str]:
        """The command's own words: ["OBJECT", "ENCODING"]."""
        return [w.upper() for w in self.name.split("|")]


def _pairs(flat) -> dict:
    return dict(zip(flat[::2], flat[1::2])) if isinstance(flat, list) else {}


def _argument(raw) -> dict:
    a = _pairs(raw)
    a["arguments"] = [_argument(x) for x in a.get("arguments", []) or []]
    a["flags"] = a.get("flags", []) or []
    return a


def load_commands(client: RawClient) -> list[Command]:
    """Every command and subcommand the server knows, with its arguments."""
    info = {}

    def walk_info(rows):
        for row in rows:
            info[row[0].lower()] = row
            walk_info(row[9] or [])

    walk_info(_decode(client.call("COMMAND")))
    commands = []

    def walk_docs(docs):
        for name, doc in _pairs(docs).items():
            name = name.lower()
            d = _pairs(doc)
            if name in info:
                row = info[name]
                commands.append(Command(
                    name=name,
                    arguments=[_argument(a) for a in d.get("arguments", []) or []],
                    flags=list(row[2]),
                    categories=[c.lstrip("@") for c in row[6]]))
            if d.get("subcommands"):
                walk_docs(d["subcommands"])

    walk_docs(_decode(client.call("COMMAND", "DOCS")))
    return commands


def _decode(x):
    if isinstance(x, bytes):
        return x.decode()
    if isinstance(x, list):
        return [_decode(y) for y in x]
    return x


class _Builder:
    """Renders an argument tree into words. Keys become k1, k2, ... so that
    their positions can be told apart from other words."""

    def __init__(self, optionals: bool, repeat: int):
        self.optionals = optionals
        self.repeat = repeat
        self.keys = 0

    def value(self, arg: dict) -> list[str]:
        kind, name = arg.get("type"), arg.get("name", "")
        if kind == "key":
            self.keys += 1
            return [f"k{self.keys}"]
        if kind == "pure-token":
            return [arg["token"]]
        if kind == "integer":
            return ["1"]
        if kind == "double":
            return ["0.01" if "timeout" in name else "1.5"]
        if kind == "unix-time":
            return ["1"]
        if kind == "pattern":
            return ["p*"]
        if kind == "oneof":
            return self.arg(arg["arguments"][0])
        if kind == "block":
            return self.list(arg["arguments"])
        if name == "script":
            return ["return 1"]
        return ["v"]

    def arg(self, arg: dict) -> list[str]:
        flags = arg["flags"]
        times = self.repeat if "multiple" in flags else 1
        words = []
        for i in range(times):
            if arg.get("token") and arg.get("type") != "pure-token" and (
                    i == 0 or "multiple_token" in flags):
                words.append(arg["token"])
            words += self.value(arg)
        return words

    def list(self, args: list) -> list[str]:
        kept = [a for a in args if self.optionals or "optional" not in a["flags"]]
        words = [self.arg(a) for a in kept]
        # numkeys (and friends) count the repeatable argument after them.
        out = []
        for i, (a, w) in enumerate(zip(kept, words)):
            if a.get("name") in ("numkeys", "numfields") and a.get("type") == "integer":
                nxt = next((b for b in kept[i + 1:] if "multiple" in b["flags"]), None)
                w = [str(self.repeat if nxt is not None else 0)]
            out += w
        return out


def invocations(command: Command) -> list[list[str]]:
    """A few requests for `command`, without duplicates."""
    seen, out = set(), []
    for optionals, repeat in ((False, 1), (True, 1), (True, 2)):
        words = command.words + _Builder(optionals, repeat).list(command.arguments)
        key = tuple(words)
        if key not in seen:
            seen.add(key)
            out.append(words)
    return out


def key_positions(client: RawClient, words: list[str]) -> list[tuple[int, list[str]]] | None:
    """[(argument index, flags)] of the keys Redis finds in `words`, or None
    when Redis cannot tell (the request is invalid)."""
    try:
        reply = client.call("COMMAND", "GETKEYSANDFLAGS", *words)
    except RespError:
        return None
    if isinstance(reply, RespError) or not isinstance(reply, list):
        return None
    positions, used = [], set()
    for key, flags in _decode(reply):
        for i, w in enumerate(words):
            if w == key and i not in used and i > 0:
                used.add(i)
                positions.append((i, list(flags)))
                break
    return positions
