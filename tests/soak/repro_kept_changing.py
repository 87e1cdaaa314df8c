"""Reproducer for a spurious write error after a Redis restart (found by the soak).

Symptom: right after redis-server restarts, HSET (and any write whose reply
depends on the row: DEL, SET NX/XX/GET, ...) on a mapped key that is not in
the cache but whose row exists fails with

    -ERR Larder: the row of 'rk:123' kept changing while writing; try again

although nobody else writes that row and Redis and PostgreSQL are both up.

Why (src/server/mapped_write.cpp, src/cache/loader.cpp at 1066a47): the write
script answers "miss", MappedWrite::load() asks the Loader for the row; the
Loader fills through its own Redis connection on the PostgreSQL thread (the
"filler"), which reconnects after a restart on its own backoff (up to
redis.reconnect_max). While the filler is not ready, Loader::settle() answers
from PostgreSQL alone and stores nothing; the write script is sent again,
misses again, and after kMaxLoads (3) loads the client gets "kept changing".
Nothing is written (no data loss), but the write fails for no reason the
client can act on, and the message is wrong.

What this does: PostgreSQL with 100000 rows, redis-server, Larder; then
--rounds times: SIGTERM + restart redis-server, and for --seconds after it
answers PING, HSET on keys never touched before (cold, row exists) from 4
threads. Prints each reply class with the time since Redis was back, and
exits 1 when a "kept changing" error was seen (the bug reproduced), 0 if not.

    /usr/bin/python3 tests/soak/repro_kept_changing.py --larder /tmp/soak-build/larder
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "integration"))

from harness import Larder, PostgresServer, RedisServer, close_client  # noqa: E402
import redis  # noqa: E402

ROWS = 100000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--larder", default=os.environ.get("LARDER_BINARY", "/work/main/build/larder"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4.0)
    a = ap.parse_args()

    pg = PostgresServer()
    rs = RedisServer()
    larder = None
    try:
        pg.start()
        pg.create_database("repro")
        pg.psql("CREATE TABLE rk (id bigint PRIMARY KEY, a text, b text); "
                f"INSERT INTO rk SELECT g, 'a', 'b' FROM generate_series(1, {ROWS}) g", dbname="repro")
        rs.start()
        larder = Larder(rs, binary=a.larder, log_level="debug", config={
            "postgres": {"dsn": pg.dsn("repro")},
            "keyspaces": {"rk": {"key": "rk:{id}", "table": "public.rk", "shape": "hash",
                                 "columns": ["a", "b"], "write": "behind"}}})
        larder.start()
        next_id = [1]
        lock = threading.Lock()
        seen = defaultdict(list)      # class -> [seconds after Redis was back]
        examples = {}

        def hammer(until: float, back: float):
            c = larder.client(socket_timeout=10)
            try:
                while time.monotonic() < until:
                    with lock:
                        rid = next_id[0]
                        next_id[0] += 1
                    if rid > ROWS:
                        return
                    t = time.monotonic() - back
                    try:
                        c.hset(f"rk:{rid}", "a", f"x{rid}")
                        cls = "ok"
                    except redis.ResponseError as e:
                        msg = str(e)
                        cls = ("kept changing" if "kept changing" in msg
                               else msg.split(":")[0] + ": " + msg.split(":")[1][:40] if ":" in msg else msg)
                        examples.setdefault(cls, msg)
                    except redis.RedisError as e:
                        cls = type(e).__name__
                        examples.setdefault(cls, str(e))
                    with lock:
                        seen[cls].append(round(t, 3))
            finally:
                close_client(c)

        for rnd in range(a.rounds):
            before = {k: len(v) for k, v in seen.items()}
            rs.stop()
            rs.restart()
            back = time.monotonic()
            ths = [threading.Thread(target=hammer, args=(back + a.seconds, back)) for _ in range(4)]
            for th in ths:
                th.start()
            for th in ths:
                th.join(a.seconds + 30)
            time.sleep(1.0)
            print(f"round {rnd}: " + ", ".join(f"{k} x{len(v) - before.get(k, 0)}"
                                               for k, v in sorted(seen.items())), flush=True)
        print()
        for cls, times in sorted(seen.items()):
            print(f"{cls}: {len(times)} replies, seconds after Redis answered PING: "
                  f"min {min(times):.3f} max {max(times):.3f}")
            if cls in examples:
                print(f"    e.g. {examples[cls]}")
        kept = seen.get("kept changing", [])
        log = larder.log()
        fills = [line for line in log.splitlines() if "fill of" in line]
        print(f"\nLarder log: {len(fills)} 'fill of ... failed' lines (debug), the last 10:")
        print("\n".join(fills[-10:]))
        if kept:
            print(f"\nREPRODUCED: {len(kept)} HSETs on cold keys failed with 'kept changing' after a Redis restart")
            return 1
        print("\nnot reproduced in this run")
        return 0
    finally:
        if larder is not None:
            larder.cleanup()
        rs.cleanup()
        pg.cleanup()


if __name__ == "__main__":
    sys.exit(main())
