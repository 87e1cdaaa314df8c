#!/usr/bin/python3
"""What it costs Redis to find which of the 16384 per-slot write-behind queues
of a keyspace have entries, with one Lua "sweep" per contiguous slot range
(the queues are `__larder:q:{<tag>}:<keyspace>`, <tag> being
src/redis/slot.cpp's slot tag, one Redis stream per slot).

    /usr/bin/python3 tests/bench/cluster/queue_discovery_cost.py

Starts a private cluster of 3 primaries and no replicas on loopback
(tests/integration/harness.py's RedisCluster), computes the 16384 slot tags
as slot.cpp does (CRC16 XMODEM, hash-tag rules, odometer order over
[0-9a-z], lengths 1..4) and checks every slot has one and that Redis agrees
(CLUSTER KEYSLOT) on every queue name's slot. It reads the slot ranges of
each primary from CLUSTER SHARDS (CLUSTER SLOTS if that fails) and loads,
on every primary, the sweep script:

    #!lua flags=no-writes,allow-cross-slot-keys
    KEYS[1] = the queue of the range's first slot, ARGV = the queues of the
    others; XLEN of each with redis.pcall (a key of a slot the node does not
    own is skipped, not an error); returns the 1-based indexes of the queues
    whose XLEN > 0.

A sweep is one EVALSHA per range, sent to the range's owner, one range after
the other: commandstats usec is wall time inside the command, so three nodes
scripting at once on a 2-core machine would inflate it with their own
contention (a flusher could send them together; Redis's cost is the same).
Scenarios, each after FLUSHALL on every node:

  (a) every queue empty;
  (b) DIRTY_PCT % of the slots (drawn with SEED) with FEW entries (XADD);
  (c) every slot's queue with 1 entry.

For each: CONFIG RESETSTAT on every node, REPS sweeps, and every sweep's
answer checked against the slots filled (an assertion: a wrong answer voids
the measurement). Reported per sweep: Redis's own time from INFO
commandstats (usec of evalsha, summed over the nodes, divided by the sweeps;
also the median sweep, INFO being read after each) and per slot (/ 16384);
the XLEN calls inside the script (usec per call; already inside evalsha's
usec); the CPU of the owners' command threads while each EVALSHA ran (from
/proc/<pid>/schedstat, median sweep: includes reading and parsing the
request and writing the reply, which commandstats leaves out); the request
and reply bytes (RESP2, exact); and the client's wall time (median; noisy).
Then, for comparison, the alternative where the flusher already knows the
dirty slots: `XRANGE <queue> - + COUNT BATCH` of each 1-entry queue
(scenario c's), pipelined 1000 at a time to the owner: commandstats usec
and command-thread CPU per call. Derived: each node's average Redis CPU
share at one sweep per second and one per 50 ms, and how many dirty-slot
XRANGEs cost one sweep.
commandstats usec is wall time inside the command: on a loaded machine a
node descheduled mid-script inflates it; the command-thread CPU does not
count that, so when the two disagree much, the machine was busy.
Prints Markdown tables, and what a few probes of the script rules found
(allow-cross-slot-keys, a non-owned key under pcall, declared cross-slot
keys).

Environment (defaults in brackets): REPS [50] (sweeps per scenario),
DIRTY_PCT [1] (scenario b), FEW [3] (entries per dirty queue in b),
KEYSPACE [items], BATCH [100] (XRANGE COUNT), SEED [1].
Everything listens on 127.0.0.1; every process started here is stopped.
Takes well under 2 minutes.
"""

import itertools
import os
import random
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.dont_write_bytecode = True
import harness  # noqa: E402

REPS = int(os.environ.get("REPS", "50"))
DIRTY_PCT = float(os.environ.get("DIRTY_PCT", "1"))
FEW = int(os.environ.get("FEW", "3"))
KEYSPACE = os.environ.get("KEYSPACE", "items")
BATCH = int(os.environ.get("BATCH", "100"))
SEED = int(os.environ.get("SEED", "1"))

SLOTS = 16384
ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
SWEEP = """#!lua flags=no-writes,allow-cross-slot-keys
local found = {}
local n = redis.pcall('XLEN', KEYS[1])
if type(n) == 'number' and n > 0 then found[#found + 1] = 1 end
for i = 1, #ARGV do
  n = redis.pcall('XLEN', ARGV[i])
  if type(n) == 'number' and n > 0 then found[#found + 1] = i + 1 end
end
return found
"""
# Probes of the rules the sweep relies on; each returns what pcall gave.
PROBE = """#!lua flags=no-writes{flags}
local r = redis.pcall('XLEN', ARGV[1])
if type(r) == 'table' and r.err then return 'error: ' .. r.err end
return r
"""
PROBE_DECLARED = """#!lua flags=no-writes,allow-cross-slot-keys
return redis.pcall('XLEN', KEYS[2])
"""

# --------------------------------------------------------------- slot tags


def _crc_table():
    table = []
    for byte in range(256):
        r = byte << 8
        for _ in range(8):
            r = ((r << 1) ^ 0x1021) if r & 0x8000 else (r << 1)
            r &= 0xFFFF
        table.append(r)
    return table


CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC16 XMODEM (polynomial 0x1021, initial value 0), as slot.cpp."""
    crc = 0
    for c in data:
        crc = ((crc << 8) & 0xFFFF) ^ CRC_TABLE[((crc >> 8) ^ c) & 0xFF]
    return crc


def hash_tag(key: bytes) -> bytes:
    """The hashed part of a key: the first non-empty {...}, else the key."""
    open_ = key.find(b"{")
    if open_ < 0:
        return key
    close = key.find(b"}", open_ + 1)
    if close < 0 or close == open_ + 1:
        return key
    return key[open_ + 1:close]


def key_slot(key) -> int:
    if isinstance(key, str):
        key = key.encode()
    return crc16(hash_tag(key)) & (SLOTS - 1)


def slot_tags() -> list:
    """slot.cpp's TagTable: for each slot the first string of [0-9a-z],
    lengths 1..4, odometer order within a length, whose slot it is.
    (itertools.product turns its last position fastest: odometer order.
    Stopping once every slot has a tag changes nothing: a slot keeps the
    first string found.)"""
    tags = [None] * SLOTS
    found = 0
    for length in range(1, 5):
        for chars in itertools.product(ALPHABET, repeat=length):
            s = "".join(chars)
            slot = key_slot(s)
            if tags[slot] is None:
                tags[slot] = s
                found += 1
                if found == SLOTS:
                    return tags
    return tags


def queue_name(tag: str) -> str:
    return f"__larder:q:{{{tag}}}:{KEYSPACE}"

# ----------------------------------------------------------------- helpers


def reply_size(reply) -> int:
    """Bytes of a RESP2 reply as RawClient parsed it (ints, bulks, arrays)."""
    if isinstance(reply, int):
        return len(b":%d\r\n" % reply)
    if isinstance(reply, bytes):
        return len(b"$%d\r\n" % len(reply)) + len(reply) + 2
    if isinstance(reply, str):
        return len(reply) + 3  # +<status>\r\n
    if reply is None:
        return 5  # $-1\r\n
    if isinstance(reply, list):
        return len(b"*%d\r\n" % len(reply)) + sum(reply_size(r) for r in reply)
    raise TypeError(f"unexpected reply {reply!r}")


def pipeline(client, commands, chunk=1000) -> list:
    """Sends encoded commands in chunks and reads every reply."""
    replies = []
    for i in range(0, len(commands), chunk):
        part = commands[i:i + chunk]
        client.send(b"".join(part))
        replies.extend(client.read_reply() for _ in part)
    return replies


def commandstats(client) -> dict:
    """INFO commandstats of a node: {command: {calls, usec, failed_calls, ...}}."""
    out = {}
    for line in client.call("INFO", "commandstats").decode().splitlines():
        if line.startswith("cmdstat_"):
            name, fields = line[len("cmdstat_"):].split(":", 1)
            out[name] = {k: float(v) for k, v in (f.split("=") for f in fields.split(","))}
    return out


def thread_cpu_usec(pid) -> float:
    """CPU time of a process's main thread (Redis's command thread) so far,
    from /proc/<pid>/schedstat (nanoseconds): read from outside, so reading
    it costs Redis nothing."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e3


def ranges_by_owner(cluster) -> list:
    """[(first slot, last slot, owner port)] from CLUSTER SHARDS (7.0+), or
    CLUSTER SLOTS; adjacent ranges of one owner merged."""
    node = cluster.nodes[0]
    ranges = []
    try:
        for shard in cluster.ask(node, "CLUSTER", "SHARDS"):
            fields = dict(zip(shard[::2], shard[1::2]))
            primary = None
            for n in fields[b"nodes"]:
                nf = dict(zip(n[::2], n[1::2]))
                if nf[b"role"] == b"master" and nf.get(b"health", b"online") == b"online":
                    primary = int(nf[b"port"])
            bounds = fields[b"slots"]
            for lo, hi in zip(bounds[::2], bounds[1::2]):
                ranges.append((int(lo), int(hi), primary))
        source = "CLUSTER SHARDS"
    except Exception:  # noqa: BLE001 - older servers: CLUSTER SLOTS
        ranges = cluster.slots(node)
        source = "CLUSTER SLOTS"
    ranges.sort()
    merged = []
    for lo, hi, port in ranges:
        if merged and merged[-1][2] == port and merged[-1][1] + 1 == lo:
            merged[-1] = (merged[-1][0], hi, port)
        else:
            merged.append((lo, hi, port))
    assert sum(hi - lo + 1 for lo, hi, _ in merged) == SLOTS, merged
    assert all(port is not None for _, _, port in merged), merged
    return merged, source

# -------------------------------------------------------------------- main


def main():
    t0 = time.monotonic()
    tags = slot_tags()
    missing = [s for s, t in enumerate(tags) if t is None]
    assert not missing, f"{len(missing)} slots have no tag, e.g. {missing[:5]}"
    queues = [queue_name(t) for t in tags]
    assert all(key_slot(q) == s for s, q in enumerate(queues))
    print(f"slot tags: {SLOTS} slots covered, longest tag {max(map(len, tags))} chars, "
          f"{time.monotonic() - t0:.1f} s", file=sys.stderr)

    cluster = harness.RedisCluster(primaries=3, replicas=0)
    clients = {}
    try:
        cluster.start()
        ranges, source = ranges_by_owner(cluster)
        ports = sorted({port for _, _, port in ranges})
        nodes = {p: cluster.by_port(p) for p in ports}
        clients = {p: harness.RawClient(p, timeout=60) for p in ports}
        owner = {}
        for lo, hi, port in ranges:
            for s in range(lo, hi + 1):
                owner[s] = port

        # Redis agrees with the Python slots of every queue name.
        c = clients[ports[0]]
        got = pipeline(c, [harness.encode_command("CLUSTER", "KEYSLOT", q) for q in queues])
        assert got == list(range(SLOTS)), "CLUSTER KEYSLOT disagrees with the computed slots"

        sha = None
        for p in ports:
            s = clients[p].call("SCRIPT", "LOAD", SWEEP)
            assert isinstance(s, bytes), s
            sha = s.decode() if sha is None else sha
            assert s.decode() == sha
        # One request per range, encoded once: (port, first slot, bytes).
        requests = []
        for lo, hi, port in ranges:
            requests.append((port, lo, harness.encode_command(
                "EVALSHA", sha, 1, queues[lo], *queues[lo + 1:hi + 1])))
        request_bytes = sum(len(r) for _, _, r in requests)

        pids = {}
        for p in ports:
            pid = int(cluster.info(nodes[p], "server")["process_id"])
            assert pid == nodes[p].proc.pid, (pid, nodes[p].proc.pid)
            pids[p] = pid

        def sweep():
            """One sweep: each range's EVALSHA in turn (sent, reply read: one
            node busy at a time, see the docstring). Returns the set of slots
            found, the reply bytes and the CPU the owners' command threads
            used meanwhile (usec)."""
            found, size, cpu = set(), 0, 0.0
            for port, lo, req in requests:
                before = thread_cpu_usec(pids[port])
                clients[port].send(req)
                reply = clients[port].read_reply()
                cpu += thread_cpu_usec(pids[port]) - before
                assert isinstance(reply, list), f"sweep on {port} failed: {reply!r}"
                size += reply_size(reply)
                found.update(lo + i - 1 for i in reply)
            return found, size, cpu

        def flush_all():
            for p in ports:
                assert clients[p].call("FLUSHALL") == "OK"

        def fill(slots, entries):
            by_node = {}
            for s in sorted(slots):
                for e in range(entries):
                    by_node.setdefault(owner[s], []).append(harness.encode_command(
                        "XADD", queues[s], "*", "k", f"{KEYSPACE}:{s}:{e}", "v", "x" * 16))
            for p, cmds in by_node.items():
                for r in pipeline(clients[p], cmds):
                    assert isinstance(r, bytes), r

        def reset_stats():
            for p in ports:
                assert clients[p].call("CONFIG", "RESETSTAT") == "OK"

        def usec_so_far(command):
            """commandstats usec of `command` summed over the nodes (INFO is
            not inside any command measured, so reading it changes nothing)."""
            return sum(commandstats(clients[p]).get(command, {}).get("usec", 0) for p in ports)

        rng = random.Random(SEED)
        n_dirty = max(1, round(SLOTS * DIRTY_PCT / 100))
        scenarios = [
            ("(a) all empty", set(), 0),
            (f"(b) {DIRTY_PCT:g}% dirty, {FEW} entries each", set(rng.sample(range(SLOTS), n_dirty)),
             FEW),
            ("(c) all 1 entry", set(range(SLOTS)), 1),
        ]
        rows = []
        for name, dirty, entries in scenarios:
            flush_all()
            fill(dirty, entries)
            reset_stats()
            walls, reply_bytes, cpus, usecs = [], [], [], []
            last = 0.0
            for _ in range(REPS):
                start = time.perf_counter()
                found, size, cpu = sweep()
                walls.append(time.perf_counter() - start)
                assert found == dirty, (f"{name}: the sweep found {len(found)} slots, "
                                        f"{len(found - dirty)} wrong, {len(dirty - found)} missed")
                reply_bytes.append(size)
                cpus.append(cpu)
                now = usec_so_far("evalsha")
                usecs.append(now - last)
                last = now
            stats = {p: commandstats(clients[p]) for p in ports}
            ev_calls = sum(stats[p]["evalsha"]["calls"] for p in ports)
            ev_usec = sum(stats[p]["evalsha"]["usec"] for p in ports)
            ev_failed = sum(stats[p]["evalsha"].get("failed_calls", 0) +
                            stats[p]["evalsha"].get("rejected_calls", 0) for p in ports)
            assert ev_calls == REPS * len(requests), (ev_calls, REPS, len(requests))
            assert ev_failed == 0, f"{ev_failed} evalsha calls failed or were rejected"
            xl_calls = sum(stats[p].get("xlen", {}).get("calls", 0) for p in ports)
            xl_usec = sum(stats[p].get("xlen", {}).get("usec", 0) for p in ports)
            assert xl_calls == REPS * SLOTS, (xl_calls, REPS * SLOTS)
            rows.append({
                "name": name, "dirty": len(dirty), "usec": ev_usec / REPS,
                "usec_median": statistics.median(usecs),
                "per_node": {p: stats[p]["evalsha"]["usec"] / REPS for p in ports},
                "xlen": xl_usec / xl_calls, "cpu": statistics.median(cpus),
                "req": request_bytes, "reply": statistics.mean(reply_bytes),
                "wall": statistics.median(walls) * 1e3,
            })
            print(f"{name}: done", file=sys.stderr)

        # The alternative: the dirty slots are known; one XRANGE per slot
        # (scenario c's queues, 1 entry each), pipelined in chunks of 1000
        # to the owner; per chunk, commandstats usec and command-thread CPU.
        reset_stats()
        by_node = {}
        for s in range(SLOTS):
            by_node.setdefault(owner[s], []).append(
                harness.encode_command("XRANGE", queues[s], "-", "+", "COUNT", BATCH))
        xr_req = sum(len(c) for cmds in by_node.values() for c in cmds) / SLOTS
        xr_reply, xr_usec_chunks, xr_cpu_chunks, xr_cpu = 0, [], [], 0.0
        last = 0.0
        for p, cmds in by_node.items():
            for i in range(0, len(cmds), 1000):
                part = cmds[i:i + 1000]
                before = thread_cpu_usec(pids[p])
                replies = pipeline(clients[p], part, chunk=len(part))
                cpu = thread_cpu_usec(pids[p]) - before
                for r in replies:
                    assert isinstance(r, list) and len(r) == 1, r
                    xr_reply += reply_size(r)
                now = usec_so_far("xrange")
                xr_usec_chunks.append((now - last) / len(part))
                xr_cpu_chunks.append(cpu / len(part))
                xr_cpu += cpu
                last = now
        xr_calls = sum(commandstats(clients[p])["xrange"]["calls"] for p in ports)
        assert xr_calls == SLOTS, xr_calls
        xr_per_call = last / xr_calls
        xr_median = statistics.median(xr_usec_chunks)
        xr_cpu_median = statistics.median(xr_cpu_chunks)

        probes = run_probes(cluster, clients, ranges, queues, owner, ports)
    finally:
        for c in clients.values():
            c.close()
        cluster.cleanup()

    # ------------------------------------------------------------- report
    n_nodes = len(ports)
    print(f"\nCluster of {n_nodes} primaries x 0 replicas (redis-server on 127.0.0.1); "
          f"{len(ranges)} slot ranges from {source}: "
          + ", ".join(f"{lo}-{hi}" for lo, hi, _ in ranges)
          + f"; {REPS} sweeps per scenario; keyspace `{KEYSPACE}`; every sweep's answer "
          "checked.\n")
    print("| scenario | non-empty queues | Redis usec per sweep (evalsha commandstats, sum of "
          "nodes: total / sweeps) | median sweep | per node (total / sweeps) | usec per slot "
          "| XLEN inside (usec/call) | command-thread CPU per sweep (usec, median) "
          "| request bytes per sweep | reply bytes per sweep | client wall ms per sweep (median) |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        per_node = " / ".join(f"{r['per_node'][p]:,.0f}" for p in ports)
        print(f"| {r['name']} | {r['dirty']:,} | {r['usec']:,.0f} | {r['usec_median']:,.0f} | "
              f"{per_node} | {r['usec'] / SLOTS:.3f} | {r['xlen']:.3f} | {r['cpu']:,.0f} | "
              f"{r['req']:,} | {r['reply']:,.0f} | {r['wall']:.1f} |")
    print("\nThe alternative, dirty slots known: one `XRANGE <queue> - + COUNT "
          f"{BATCH}` per dirty slot, each queue holding 1 entry ({SLOTS:,} reads, pipelined "
          "1000 at a time):\n")
    print("| read | Redis usec per call (commandstats total / calls) | median of 1000-call chunks "
          "| command-thread CPU per call (total; median of chunks) | request bytes "
          "| reply bytes |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| XRANGE of a 1-entry queue | {xr_per_call:.3f} | {xr_median:.3f} | "
          f"{xr_cpu / SLOTS:.3f}; {xr_cpu_median:.3f} | {xr_req:.0f} | {xr_reply / SLOTS:.0f} |")
    print("\nDerived: Redis CPU share of the sweep per node on average (usec per sweep / "
          f"{n_nodes} nodes / interval), from commandstats (total / sweeps) and, in brackets, "
          "from the command thread's CPU (median sweep); and how many dirty-slot XRANGEs cost "
          "one sweep (commandstats; in brackets command-thread CPU):\n")
    print("| scenario | 1 sweep per second | 1 sweep per 50 ms | sweep = N XRANGEs |")
    print("|---|---:|---:|---:|")
    for r in rows:
        node_usec, node_cpu = r["usec"] / n_nodes, r["cpu"] / n_nodes
        print(f"| {r['name']} | {node_usec / 1e4:.2f}% ({node_cpu / 1e4:.2f}%) | "
              f"{node_usec / 5e2:.1f}% ({node_cpu / 5e2:.1f}%) | {r['usec'] / xr_per_call:,.0f} "
              f"({r['cpu'] / (xr_cpu / SLOTS):,.0f}) |")
    print("\nProbes (what Redis " + probes.pop("version") + " answered):\n")
    for k, v in probes.items():
        print(f"* {k}: {v}")


def run_probes(cluster, clients, ranges, queues, owner, ports) -> dict:
    """What the script rules the sweep relies on do on this server."""
    out = {"version": cluster.info(cluster.nodes[0], "server")["redis_version"]}
    a = ports[0]
    mine = [s for s in range(SLOTS) if owner[s] == a]
    other = next(s for s in range(SLOTS) if owner[s] != a)  # filled: scenario (c)
    c = clients[a]

    def show(reply):
        if isinstance(reply, harness.RespError) or isinstance(reply, Exception):
            return f"error `{reply}`"
        if isinstance(reply, bytes):
            return f"`{reply.decode()}`"
        return f"`{reply!r}`"

    with_flag = PROBE.format(flags=",allow-cross-slot-keys")
    without = PROBE.format(flags="")
    out["allow-cross-slot-keys, undeclared key of another slot on the same node (XLEN)"] = show(
        c.call("EVAL", with_flag, 1, queues[mine[0]], queues[mine[1]]))
    out["no allow-cross-slot-keys, the same"] = show(
        c.call("EVAL", without, 1, queues[mine[0]], queues[mine[1]]))
    out["allow-cross-slot-keys, pcall XLEN of a key of a slot another node owns"] = show(
        c.call("EVAL", with_flag, 1, queues[mine[0]], queues[other]))
    out["allow-cross-slot-keys, 2 declared KEYS of 2 slots of the same node"] = show(
        c.call("EVAL", PROBE_DECLARED, 2, queues[mine[0]], queues[mine[1]]))
    out["EVAL whose KEYS[1] is in a slot another node owns"] = show(
        c.call("EVAL", PROBE_DECLARED, 2, queues[other], queues[other]))
    return out


if __name__ == "__main__":
    main()
