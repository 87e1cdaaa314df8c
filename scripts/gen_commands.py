#!/usr/bin/python3
"""Regenerates src/commands/redis_commands.cpp: the facts of Larder's command
registry, read from Redis itself (`COMMAND` and `COMMAND DOCS`): every command
and subcommand with its arity, flags, ACL categories, group and key specs.

Larder's own handling of each command (route, mapped reads and writes, RESP3
shape...) is not generated: it is the registry's other column, written in
src/commands/handling.cpp and joined to these rows by name when the registry is
built (include/larder/commands/registry.hpp).

By default it starts `redis-server` (which must be 7.0.x, the version the table
describes) on a free loopback port and stops it again; `--port N` reads a
server already running instead.

    scripts/gen_commands.py            # rewrites src/commands/redis_commands.cpp
    scripts/gen_commands.py --check    # exits 1 when the file is out of date (a ctest)
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "src", "commands", "redis_commands.cpp")

# Redis 7.0's ACL categories, in the order of `ACL CAT` (bit i = category i);
# include/larder/commands/command.hpp lists the same names.
CATEGORIES = ["keyspace", "read", "write", "set", "sortedset", "list", "hash", "string",
              "bitmap", "hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow",
              "blocking", "dangerous", "connection", "transaction", "scripting"]

# Redis' command flags (COMMAND INFO), bit i = flag i; command.hpp names them.
FLAGS = ["write", "readonly", "denyoom", "admin", "pubsub", "noscript", "blocking", "loading",
         "stale", "skip_monitor", "skip_slowlog", "fast", "no_auth", "may_replicate",
         "no_mandatory_keys", "no_multi", "movablekeys", "allow_busy", "asking",
         "no_async_loading"]

# Key spec flags (COMMAND INFO key specs) and their C++ names in command.hpp.
KEY_FLAGS = {"RO": "kKeyRO", "RW": "kKeyRW", "OW": "kKeyOW", "RM": "kKeyRM",
             "access": "kKeyAccess", "update": "kKeyUpdate", "insert": "kKeyInsert",
             "delete": "kKeyDelete", "not_key": "kKeyNotKey", "incomplete": "kKeyIncomplete",
             "variable_flags": "kKeyVariableFlags"}

# COMMAND DOCS groups.
GROUPS = ["bitmap", "cluster", "connection", "generic", "geo", "hash", "hyperloglog", "list",
          "pubsub", "scripting", "sentinel", "server", "set", "sorted-set", "stream", "string",
          "transactions", "module"]

# Larder's own commands, as Redis would describe them: operator commands, so
# @admin @dangerous (as Redis files CONFIG, DEBUG and friends); no keys.
LARDER_COMMANDS = [{
    "name": "larder", "arity": -2, "flags": ["admin", "noscript"],
    "categories": ["admin", "slow", "dangerous"], "group": "server", "specs": [], "subs": [],
}]


class Resp:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-"):
            return rest.decode()
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError(f"unexpected reply {line!r}")

    def call(self, *args):
        out = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = a.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))
        return self.read()


def pairs(flat):
    return dict(zip(flat[::2], flat[1::2]))


def key_spec(raw, command):
    spec = pairs(raw)
    bs, fk = pairs(spec["begin_search"]), pairs(spec["find_keys"])
    bs_spec, fk_spec = pairs(bs["spec"]), pairs(fk["spec"])
    for f in spec["flags"]:
        if f not in KEY_FLAGS:
            raise SystemExit(f"{command}: unknown key spec flag {f}")
    out = {"flags": spec["flags"], "begin": bs["type"], "find": fk["type"],
           "pos": 0, "keyword": "", "a": 0, "b": 0, "c": 0}
    if bs["type"] == "index":
        out["pos"] = bs_spec["index"]
    elif bs["type"] == "keyword":
        out["keyword"], out["pos"] = bs_spec["keyword"], bs_spec["startfrom"]
    elif bs["type"] != "unknown":
        raise SystemExit(f"{command}: unknown begin_search type {bs['type']}")
    if fk["type"] == "range":
        out["a"], out["b"], out["c"] = fk_spec["lastkey"], fk_spec["keystep"], fk_spec["limit"]
    elif fk["type"] == "keynum":
        out["a"], out["b"], out["c"] = fk_spec["keynumidx"], fk_spec["firstkey"], fk_spec["keystep"]
    elif fk["type"] != "unknown":
        raise SystemExit(f"{command}: unknown find_keys type {fk['type']}")
    return out


def read_commands(port):
    conn = Resp(port)
    version = [line for line in conn.call("INFO", "server").split("\r\n")
               if line.startswith("redis_version:")][0].split(":")[1]
    docs = pairs(conn.call("COMMAND", "DOCS"))

    def group_of(name, parent_docs):
        doc = parent_docs.get(name)
        if doc is None:
            raise SystemExit(f"COMMAND DOCS has no entry for {name}")
        return pairs(doc)

    def row(info, doc, full_name):
        name, arity, flags, _first, _last, _step, categories, _tips, specs, subs = info[:10]
        for f in flags:
            if f not in FLAGS:
                raise SystemExit(f"{full_name}: unknown command flag {f}")
        cats = [c.lstrip("@") for c in categories]
        for c in cats:
            if c not in CATEGORIES:
                raise SystemExit(f"{full_name}: unknown ACL category {c}")
        group = doc.get("group", "")
        if group not in GROUPS:
            raise SystemExit(f"{full_name}: unknown group {group!r}")
        sub_docs = pairs(doc.get("subcommands", []))
        sub_rows = []
        for sub in sorted(subs or [], key=lambda s: s[0]):
            sub_rows.append(row(sub, group_of(sub[0], sub_docs), sub[0].lower()))
        return {"name": full_name, "arity": arity, "flags": flags, "categories": cats,
                "group": group, "specs": [key_spec(s, full_name) for s in specs],
                "subs": sub_rows}

    rows = []
    for info in conn.call("COMMAND"):
        name = info[0].lower()
        rows.append(row(info, group_of(name, docs), name))
    rows += LARDER_COMMANDS
    rows.sort(key=lambda r: r["name"])
    return version, rows


def flag_name(flag):  # "no_auth" -> kNoAuth, as command.hpp names it
    return "k" + "".join(p.capitalize() for p in flag.split("_"))


def cpp_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(version, rows):
    flat, specs = [], []

    def emit(r, parent_id):
        first_spec = len(specs)
        for s in r["specs"]:
            flags = " | ".join(KEY_FLAGS[f] for f in s["flags"]) or "0"
            begin = {"index": "Begin::Index", "keyword": "Begin::Keyword",
                     "unknown": "Begin::Unknown"}[s["begin"]]
            find = {"range": "Find::Range", "keynum": "Find::Keynum",
                    "unknown": "Find::Unknown"}[s["find"]]
            specs.append(f"      {{{begin}, {s['pos']}, {cpp_string(s['keyword'])}, {find}, "
                         f"{s['a']}, {s['b']}, {s['c']}, {flags}}},")
        my_id = len(flat)
        flat.append(None)
        for sub in r["subs"]:
            emit(sub, my_id)
        flags = " | ".join(flag_name(f) for f in r["flags"]) or "0"
        cats = " | ".join(f"C({c.capitalize()})" for c in r["categories"]) or "0"
        group = "Group::" + "".join(p.title() for p in r["group"].split("-"))
        flat[my_id] = (f"      {{{cpp_string(r['name'])}, {r['arity']}, {flags}, {cats}, {group}, "
                       f"{first_spec}, {len(r['specs'])}, {len(flat) - my_id - 1}, "
                       f"{parent_id if parent_id is not None else 'kNoParent'}}},")

    for r in rows:
        emit(r, None)
    lines = [
        "// Generated by scripts/gen_commands.py from COMMAND and COMMAND DOCS of Redis",
        f"// {version}, plus Larder's own commands. Do not edit by hand.",
        '#include "larder/commands/redis_commands.hpp"',
        "",
        "namespace larder::commands {",
        "",
        "namespace {",
        "",
        "constexpr std::uint32_t C(Category c) { return 1u << static_cast<int>(c); }",
        "",
        "}  // namespace",
        "",
        "// clang-format off",
        "using enum Category;",
        "using Begin = KeySpec::Begin;",
        "using Find = KeySpec::Find;",
        "",
        "const KeySpec kKeySpecs[] = {",
        *specs,
        "};",
        "",
        "// A container's subcommands follow it, sorted by name; top-level rows are sorted",
        "// by name too.",
        "const RedisCommand kRedisCommands[] = {",
        *flat,
        "};",
        "// clang-format on",
        "",
        "const std::span<const RedisCommand> kRedisCommandTable{kRedisCommands};",
        "const std::span<const KeySpec> kKeySpecTable{kKeySpecs};",
        f'const std::string_view kRedisVersion = "{version}";',
        "",
        "}  // namespace larder::commands",
        "",
    ]
    return "\n".join(lines)


def start_redis():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = tempfile.mkdtemp(prefix="larder-gen-")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", tmp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, help="read a running Redis instead of starting one")
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is stale")
    args = parser.parse_args()
    proc = None
    port = args.port
    if port is None:
        proc, port = start_redis()
    try:
        version, rows = read_commands(port)
    finally:
        if proc:
            proc.terminate()
            proc.wait()
    if not version.startswith("7.0."):
        print(f"warning: Redis {version}; the table is meant to describe 7.0", file=sys.stderr)
    text = render(version, rows)
    if args.check:
        with open(OUT) as f:
            if f.read() != text:
                print(f"{OUT} is out of date: run scripts/gen_commands.py", file=sys.stderr)
                sys.exit(1)
        print(f"{OUT} matches Redis {version}")
        return
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write(text)
    print(f"wrote {OUT} from Redis {version}")


if __name__ == "__main__":
    main()
