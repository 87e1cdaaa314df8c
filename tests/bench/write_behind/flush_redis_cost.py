#!/usr/bin/env python3
"""Redis' own cost of the flusher's read and ack, per queued row (commandstats).

docs/benchmarks.md, "Write path (issue #14)". Starts its own redis-server (no
persistence) on a free 127.0.0.1 port, queues N entries shaped like a plain
SET's (k, d, f:v) with their pending markers, then runs each variant REPS
times on BATCH entries and prints Redis' usec per call and per row
(commandstats: wall time inside the commands the client sent) and the
redis-server process's CPU time per row (INFO cpu: user + sys):

  read, before   the single Lua read script of e4de8b9 (XRANGE inside Lua,
                 every entry turned into Lua tables and back)
  read, now      native XRANGE + the read script of src/cache/flush_scripts.cpp
                 (queue state only), as Flusher::read sends them
  ack, now       the ack script (per row HGET + PEXPIRE of the marker), no trim

Neither counts the client's time, so the ratios hold on a busy machine far
better than throughput; on an overloaded one a long command is preempted, and
commandstats then exceeds process CPU.

  /usr/bin/python3 tests/bench/write_behind/flush_redis_cost.py
Environment: N [100000]  BATCH [1000]  REPS [50]
"""
import os
import re
import socket
import subprocess
import tempfile
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
N = int(os.environ.get("N", "100000"))
BATCH = int(os.environ.get("BATCH", "1000"))
REPS = int(os.environ.get("REPS", "50"))

OLD_READ = r"""
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
local depth, generated, newest, oldest = 0, '', '', ''
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    local f, v = info[i], info[i + 1]
    if f == 'length' then depth = v
    elseif f == 'last-generated-id' then generated = v
    elseif f == 'first-entry' and v then oldest = v[1]
    elseif f == 'last-entry' and v then newest = v[1] end
  end
end
local t = redis.call('TIME')
return {redis.call('GET', KEYS[2]) or '', entries, newest, depth,
        t[1] * 1000 + math.floor(t[2] / 1000), generated, oldest}
"""


def lua(name):
    src = open(os.path.join(ROOT, "src/cache/flush_scripts.cpp")).read()
    return re.search(r'constexpr const char\* ' + name + r' = R"lua\((.*?)\)lua";', src, re.S).group(1)


def cpu(r):
    info = r.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    work = tempfile.mkdtemp(prefix="larder-flushcost.")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", work, "--loglevel", "warning"])
    try:
        r = redis.Redis(port=port)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        q, idkey = "__larder:q:wf", "__larder:id"
        r.set(idkey, "abcd")
        p = r.pipeline(transaction=False)
        for i in range(N):
            p.xadd(q, {"k": "wf:%012d" % i, "d": "1", "f:v": "v123456789abcdef"})
            if i % 1000 == 999:
                p.execute()
        p.execute()
        ids = [e[0].decode() for e in r.xrange(q, "-", "+", count=N)]
        for i in range(N):
            p.hset("__larder:pending:wf:%012d" % i, mapping={"_id": ids[i], "d": "1", "f:v": "v123456789abcdef"})
            if i % 1000 == 999:
                p.execute()
        p.execute()
        old_read = r.register_script(OLD_READ)
        meta = r.register_script(lua("kReadLua"))
        ack = r.register_script(lua("kAckBody"))
        ack_args = ["7000", "0-1", "", str(BATCH)]
        for i in range(BATCH):
            ack_args += ["wf:%012d" % i, "__larder:pending:wf:%012d" % i, ids[i]]
        ack_args.append("0")

        def new_read():
            r.execute_command("XRANGE", q, "-", "+", "COUNT", BATCH)
            meta(keys=[q, idkey])

        # Commands a script calls are counted under their own names as well:
        # only the commands sent by the client are summed.
        variants = [
            ("read, before (one Lua script)", lambda: old_read(keys=[q, idkey], args=["-", BATCH]),
             ["evalsha"]),
            ("read, now (XRANGE + state script)", new_read, ["evalsha", "xrange"]),
            ("ack, now (HGET + PEXPIRE per row)", lambda: ack(keys=[q], args=ack_args), ["evalsha"]),
        ]
        print(f"redis usec per call of {BATCH} entries ({REPS} calls each, queue of {N}):")
        for name, f, top in variants:
            f()  # load the script
            r.config_resetstat()
            cpu0 = cpu(r)
            for _ in range(REPS):
                f()
            cpu1 = cpu(r)
            stats = r.info("commandstats")
            usec = sum(stats.get("cmdstat_" + c, {}).get("usec", 0) for c in top)
            cpu_us = (cpu1 - cpu0) * 1e6
            print(f"  {name:38s} {usec / REPS:9.0f} us/call {usec / REPS / BATCH:6.2f} us/row;"
                  f" process CPU {cpu_us / REPS / BATCH:6.2f} us/row")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
