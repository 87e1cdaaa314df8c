#!/usr/bin/python3
"""Helpers for tests/bench/proxy_bench.sh (standard library only).

  idle PORT COUNT READY_FILE RELEASE_FILE MAX_HOLD_S
      Opens COUNT connections to 127.0.0.1:PORT, sends PING (RESP array) on each and reads
      +PONG, writes the number held open to READY_FILE, then keeps them open
      until RELEASE_FILE exists or MAX_HOLD_S seconds have passed. Exits 1 if
      a connection or a PING fails (READY_FILE then says "error ...").

  report RESULTS_TSV
      Reads lines "round target P metric value" (metric: GET, SET = requests/s;
      cpu_proxy, cpu_redis = CPU microseconds per request) and prints a
      Markdown table: medians per target and P, and the median over rounds
      of the per-round ratios against direct Redis and against twemproxy.
"""
import os
import socket
import statistics
import sys
import time


def idle(port, count, ready_file, release_file, max_hold):
    socks = []
    deadline = time.monotonic() + 120  # opening must not take longer than this
    try:
        for i in range(count):
            if time.monotonic() > deadline:
                raise RuntimeError(f"opening took over 120 s (at {i})")
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            got = b""
            while not got.endswith(b"\r\n"):
                chunk = s.recv(64)
                if not chunk:
                    raise RuntimeError(f"connection {i} closed before +PONG")
                got += chunk
            if got != b"+PONG\r\n":
                raise RuntimeError(f"connection {i}: unexpected reply {got!r}")
            socks.append(s)
    except Exception as e:  # report and fail; the caller cleans up
        with open(ready_file, "w") as f:
            f.write(f"error {len(socks)} {e}\n")
        print(f"idle opener: {e}", file=sys.stderr)
        return 1
    with open(ready_file + ".tmp", "w") as f:
        f.write(f"{len(socks)}\n")
    os.rename(ready_file + ".tmp", ready_file)
    end = time.monotonic() + max_hold
    while time.monotonic() < end and not os.path.exists(release_file):
        time.sleep(0.05)
    for s in socks:
        s.close()
    return 0


GOALS = {  # P -> (min ratio vs direct, min ratio vs twemproxy)
    1: (0.95, 1.0),
    16: (0.8, 1.3),
}


def report(path):
    data = {}  # (target, P, metric) -> {round: value}
    targets = []
    for line in open(path):
        parts = line.split()
        if len(parts) != 5:
            continue
        rnd, target, p, metric, value = parts
        data.setdefault((target, int(p), metric), {})[int(rnd)] = float(value)
        if target not in targets:
            targets.append(target)

    def med(target, p, metric):
        v = data.get((target, p, metric), {})
        return statistics.median(v.values()) if v else None

    def ratio(target, ref, p, metric):
        a = data.get((target, p, metric), {})
        b = data.get((ref, p, metric), {})
        rs = [a[r] / b[r] for r in a if r in b and b[r] > 0]
        return statistics.median(rs) if rs else None

    def f_ratio(x):
        return "  -  " if x is None else f"{x:5.2f}"

    def f_cpu(x):
        return "    -" if x is None else f"{x:5.2f}"

    pipelines = sorted({k[1] for k in data})
    hdr = (f"| {'target':<12} | {'P':>2} | {'GET rps':>9} | {'SET rps':>9} | "
           f"vs direct GET/SET | vs twemproxy GET/SET | proxy CPU us/req | redis CPU us/req | goal |")
    print(hdr)
    print("|" + "|".join("-" * (len(c)) for c in hdr.split("|")[1:-1]) + "|")
    for p in pipelines:
        for t in targets:
            g, s = med(t, p, "GET"), med(t, p, "SET")
            if g is None and s is None:
                continue
            dg, ds = ratio(t, "direct", p, "GET"), ratio(t, "direct", p, "SET")
            tg, ts = ratio(t, "twemproxy", p, "GET"), ratio(t, "twemproxy", p, "SET")
            goal = "-"
            if t.startswith("larder") and p in GOALS:
                gd, gt = GOALS[p]
                ok_d = all(x is not None and x >= gd for x in (dg, ds))
                ok_t = all(x is not None and x >= gt for x in (tg, ts))
                goal = (f"direct>={gd}: {'ok' if ok_d else 'MISS'}, "
                        f"twem>={gt}: {'ok' if ok_t else 'MISS'}")
            print(f"| {t:<12} | {p:>2} | {g or 0:>9.0f} | {s or 0:>9.0f} | "
                  f"{f_ratio(dg)} / {f_ratio(ds)}     | {f_ratio(tg)} / {f_ratio(ts)}        | "
                  f"{f_cpu(med(t, p, 'cpu_proxy')):>16} | {f_cpu(med(t, p, 'cpu_redis')):>16} | {goal} |")
    rounds = sorted({r for v in data.values() for r in v})
    print()
    print(f"rps and CPU: median over {len(rounds)} round(s). Ratios: median over rounds of the "
          f"per-round ratio (one round runs every contender back to back). CPU us/req: "
          f"user+system CPU of the proxy process (all threads) and of redis-server during "
          f"the run, per request (SET and GET together).")
    return 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "idle" and len(argv) == 7:
        return idle(int(argv[2]), int(argv[3]), argv[4], argv[5], float(argv[6]))
    if len(argv) == 3 and argv[1] == "report":
        return report(argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
