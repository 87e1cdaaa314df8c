#!/usr/bin/python3
"""Load generator and probes for tests/bench/write_behind/write_bench.sh.

Standard library only (a small RESP client of its own), so that nothing has to
be compiled and no CMake change is needed.

  steady --port P --rate R --duration S --prefix wl:r1- [--conns 8] [--tick-ms 2]
         [--keyspace wl] [--sample-ms 20] [--warmup S] --out FILE.json
      Open loop, rate-limited writer: every tick it sends the SETs that are due
      (rate x elapsed time, so a late tick catches up), spread round-robin over
      --conns pipelined connections. Key = PREFIX<seq> (each key written once),
      value = the wall clock in microseconds since the epoch when the SET is
      sent, so PostgreSQL can later compute commit time - write time. A second
      thread samples `LARDER PENDING` every --sample-ms on its own connection
      and records the keyspace's depth and oldest_age_ms. Writes the achieved
      rate, ack latency percentiles (send -> reply of the pipelined batch) and
      the PENDING samples (after --warmup seconds) to FILE.json.

  drain --port P --keyspace KS [--sample-ms 20] [--timeout S] --out FILE.json
      Polls `LARDER PENDING` until the keyspace's depth is 0 (or the timeout),
      recording (time, depth). Start it before the queue starts to move. The
      JSON has the start depth, the timeline, and the flush rates derived from
      it: "sustained" = entries per second between the 90 % and 10 % marks of
      the start depth, "overall" = start depth / (depth 0 - first decrease).

  pending --port P
      Prints `LARDER PENDING` as "keyspace depth oldest_age_ms dead_letters"
      lines.

  bulksql --table T --rows N --batch B --prefix p
      Prints the bulk-upsert contender's SQL: N rows on distinct keys
      PREFIX<i>, B per statement, each statement its own transaction:
      INSERT INTO T (id, v) SELECT * FROM unnest('{...}'::text[], '{...}'::text[])
        ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v
      (the fastest way one client can upsert these rows; psql -f runs it).

  report RESULTS.tsv
      Reads "round contender metric value" lines written by write_bench.sh and
      prints the throughput table (medians, per-round ratios vs direct Redis).
"""
import argparse
import json
import socket
import statistics
import sys
import threading
import time


# ---------------------------------------------------------------- RESP
class Resp:
    """A blocking RESP2 connection: enough for LARDER PENDING / FLUSH / SET."""

    def __init__(self, port, timeout=30.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n + 2:]
        return out

    def read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode()
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError(f"bad RESP line {line!r}")

    def call(self, *args):
        self.sock.sendall(encode(args))
        return self.read()


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def pending(conn):
    """{keyspace: (depth, oldest_age_ms, dead_letters)} from LARDER PENDING."""
    out = {}
    for item in conn.call("LARDER", "PENDING"):
        d = dict(zip(item[0::2], item[1::2]))
        out[d["keyspace"]] = (int(d["depth"]), int(d["oldest_age_ms"]), int(d["dead_letters"]))
    return out


def rnd(v, n=2):
    return None if v is None else round(v, n)


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


# ---------------------------------------------------------------- steady
class Sampler(threading.Thread):
    def __init__(self, port, keyspace, every_s, stop):
        super().__init__(daemon=True)
        self.port, self.keyspace, self.every, self.stop = port, keyspace, every_s, stop
        self.samples = []  # (t monotonic, depth, oldest_age_ms)
        self.error = None

    def run(self):
        try:
            conn = Resp(self.port)
            nxt = time.monotonic()
            while not self.stop.is_set():
                t = time.monotonic()
                depth, age, _ = pending(conn)[self.keyspace]
                self.samples.append((t, depth, age))
                nxt += self.every
                time.sleep(max(0.0, nxt - time.monotonic()))
            conn.close()
        except Exception as e:  # reported in the JSON
            self.error = str(e)


def steady(a):
    conns = []
    for _ in range(a.conns):
        s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        conns.append(s)
    import selectors
    sel = selectors.DefaultSelector()
    state = []
    for i, s in enumerate(conns):
        st = {"sock": s, "out": bytearray(), "tail": b"", "batches": [], "i": i}
        state.append(st)
        sel.register(s, selectors.EVENT_READ, st)

    stop = threading.Event()
    sampler = Sampler(a.port, a.keyspace, a.sample_ms / 1000.0, stop)
    sampler.start()

    prefix = a.prefix.encode()
    tick = a.tick_ms / 1000.0
    sent = acked = errors = 0
    first_error = None
    ack_lat = []  # (t_send, latency s) per batch
    start = time.monotonic()
    end = start + a.duration
    rr = 0
    next_tick = start
    max_outstanding = max(1000, int(a.rate * 2))  # stop sending if 2 s behind on replies

    def on_read(st):
        nonlocal acked, errors, first_error
        try:
            data = st["sock"].recv(1 << 20)
        except BlockingIOError:
            return
        if not data:
            raise ConnectionError("server closed a connection")
        data = st["tail"] + data
        lines = data.split(b"\r\n")
        st["tail"] = lines.pop()
        now = time.monotonic()
        for ln in lines:
            if ln[:1] == b"-":
                errors += 1
                if first_error is None:
                    first_error = ln.decode(errors="replace")
            acked += 1
            b = st["batches"][0]
            b[1] -= 1
            if b[1] == 0:
                st["batches"].pop(0)
                ack_lat.append((b[0], now - b[0]))

    def flush_out(st):
        if st["out"]:
            try:
                n = st["sock"].send(st["out"])
                del st["out"][:n]
            except BlockingIOError:
                pass

    while True:
        now = time.monotonic()
        if now >= end:
            break
        if now >= next_tick:
            due = int(a.rate * (now - start)) - sent
            if due > 0 and sent - acked < max_outstanding:
                # Spread over the connections; each gets one pipelined batch.
                per = [due // a.conns] * a.conns
                for k in range(due % a.conns):
                    per[(rr + k) % a.conns] += 1
                rr = (rr + due) % a.conns
                ts = b"%d" % (time.time_ns() // 1000)
                vl = b"$%d\r\n%s\r\n" % (len(ts), ts)
                tsend = time.monotonic()
                for st, n in zip(state, per):
                    if n == 0:
                        continue
                    parts = []
                    for _ in range(n):
                        key = prefix + b"%d" % sent
                        sent += 1
                        parts.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n" % (len(key), key))
                        parts.append(vl)
                    st["out"] += b"".join(parts)
                    st["batches"].append([tsend, n])
                    flush_out(st)
            next_tick += tick
            if next_tick < now - 1.0:  # hopelessly late: do not try to catch up forever
                next_tick = now
        timeout = max(0.0, min(next_tick, end) - time.monotonic())
        for key, _ in sel.select(timeout):
            on_read(key.data)
        for st in state:
            flush_out(st)
    send_end = time.monotonic()
    # Collect the outstanding replies (10 s at most).
    deadline = time.monotonic() + 10
    while acked < sent and time.monotonic() < deadline:
        for st in state:
            flush_out(st)
        for key, _ in sel.select(0.05):
            on_read(key.data)
    stop.set()
    sampler.join(5)
    for s in conns:
        s.close()
    warm = start + a.warmup
    lat = [x[1] * 1000 for x in ack_lat if x[0] >= warm]
    samples = [s for s in sampler.samples if s[0] >= warm]
    ages = [s[2] for s in samples]
    depths = [s[1] for s in samples]
    res = {
        "rate_target": a.rate,
        "sent": sent,
        "acked": acked,
        "errors": errors,
        "first_error": first_error,
        "duration_s": round(send_end - start, 3),
        "rate_achieved": round(sent / (send_end - start), 1),
        "ack_ms_p50": rnd(pct(lat, 50)),
        "ack_ms_p99": rnd(pct(lat, 99)),
        "ack_ms_max": rnd(max(lat) if lat else None),
        "pending_samples": len(samples),
        "pending_interval_ms_p50": (
            round(statistics.median([b[0] - a_[0] for a_, b in zip(samples, samples[1:])]) * 1000, 1)
            if len(samples) > 2 else None),
        "oldest_age_ms_p50": pct(ages, 50),
        "oldest_age_ms_p99": pct(ages, 99),
        "oldest_age_ms_max": max(ages) if ages else None,
        "depth_p50": pct(depths, 50),
        "depth_max": max(depths) if depths else None,
        # The deepest queue in each quarter of the measured time: a queue that
        # keeps up has a flat profile, one that falls behind grows quarter by quarter.
        "depth_quarters": quarters(samples, warm, send_end),
        "sampler_error": sampler.error,
    }
    with open(a.out, "w") as f:
        json.dump(res, f)
    print(json.dumps(res))
    return 0 if acked == sent and errors == 0 else 1


def quarters(samples, t0, t1):
    out = [0, 0, 0, 0]
    span = max(1e-9, t1 - t0)
    for t, depth, _ in samples:
        q = min(3, max(0, int((t - t0) * 4 / span)))
        out[q] = max(out[q], depth)
    return out


# ---------------------------------------------------------------- bulksql
def bulksql(a):
    out = sys.stdout
    out.write("\\set ON_ERROR_STOP on\n")
    for start in range(0, a.rows, a.batch):
        n = min(a.batch, a.rows - start)
        ids = ",".join(f'"{a.prefix}{start + i}"' for i in range(n))
        vals = ",".join('"v123456789abcdef"' for _ in range(n))
        out.write(f"INSERT INTO {a.table} (id, v) SELECT * FROM unnest('{{{ids}}}'::text[], "
                  f"'{{{vals}}}'::text[]) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v;\n")
    return 0


# ---------------------------------------------------------------- drain
def drain(a):
    conn = Resp(a.port)
    t0 = time.monotonic()
    timeline = []
    nxt = t0
    deadline = t0 + a.timeout
    while True:
        t = time.monotonic()
        depth = pending(conn)[a.keyspace][0]
        timeline.append((round(t - t0, 4), depth))
        if a.ready and len(timeline) == 1:
            open(a.ready, "w").close()
        if depth == 0 or t > deadline:
            break
        nxt += a.sample_ms / 1000.0
        time.sleep(max(0.0, nxt - time.monotonic()))
    conn.close()
    start_depth = max(d for _, d in timeline)
    peak_i = max(range(len(timeline)), key=lambda i: timeline[i][1])

    def first_at_or_below(level):
        for t, d in timeline[peak_i:]:
            if d <= level:
                return t
        return None

    t_move = None
    for t, d in timeline[peak_i:]:
        if d < start_depth:
            t_move = t
            break
    t_zero = timeline[-1][0] if timeline[-1][1] == 0 else None
    t90, t10 = first_at_or_below(0.9 * start_depth), first_at_or_below(0.1 * start_depth)
    sustained = (0.8 * start_depth / (t10 - t90)) if (t90 is not None and t10 is not None and t10 > t90) else None
    overall = (start_depth / (t_zero - t_move + a.sample_ms / 1000.0)) if (t_zero is not None and t_move is not None) else None
    res = {
        "start_depth": start_depth,
        "t_first_decrease_s": t_move,
        "t_zero_s": t_zero,
        "t90_s": t90,
        "t10_s": t10,
        "sustained_per_s": round(sustained) if sustained else None,
        "overall_per_s": round(overall) if overall else None,
        "drained": t_zero is not None,
        "timeline": timeline,
    }
    with open(a.out, "w") as f:
        json.dump(res, f)
    res.pop("timeline")
    print(json.dumps(res))
    return 0 if t_zero is not None else 1


def pending_cmd(a):
    conn = Resp(a.port)
    for ks, (depth, age, dead) in pending(conn).items():
        print(ks, depth, age, dead)
    conn.close()
    return 0


# ---------------------------------------------------------------- report
def report(path):
    data = {}  # (contender, metric) -> {round: value}
    contenders = []
    for line in open(path):
        parts = line.split()
        if len(parts) != 4:
            continue
        rnd, c, metric, value = parts
        try:
            data.setdefault((c, metric), {})[int(rnd)] = float(value)
        except ValueError:
            continue
        if c not in contenders:
            contenders.append(c)

    def med(c, m):
        v = data.get((c, m), {})
        return statistics.median(v.values()) if v else None

    def ratio(c, ref="direct", m="wps"):
        a, b = data.get((c, m), {}), data.get((ref, m), {})
        rs = [a[r] / b[r] for r in a if r in b and b[r] > 0]
        return (statistics.median(rs), min(rs), max(rs)) if rs else None

    def f(v, fmt="{:.0f}"):
        return "-" if v is None else fmt.format(v)

    print("| contender | acked writes/s (median) | vs direct Redis SET (hot: vs direct-hot): "
          "median (min-max over rounds) | "
          "CPU us/write: larder / redis / postgres | Redis usec per command (SET or write script) | "
          "drain after the run, s | goal |")
    print("|---|---:|---:|---|---:|---:|---|")
    for c in contenders:
        ref = "direct-hot" if c.endswith("-hot") else "direct"
        r = ratio(c, ref)
        rs = "-" if r is None else f"{r[0]:.2f} ({r[1]:.2f}-{r[2]:.2f})"
        cpu = " / ".join(f(med(c, m), "{:.1f}") for m in ("cpu_larder", "cpu_redis", "cpu_pg"))
        goal = "-"
        if c in ("larder-behind", "larder-behind-hot") and r is not None:
            goal = f">=0.7x {ref}: {'met' if r[0] >= 0.7 else 'MISSED'}"
        if c == "larder-through":
            t = ratio(c, "pg-sync")
            if t is not None:
                goal = (f"{t[0]:.2f}x pg-sync ({t[1]:.2f}-{t[2]:.2f}): "
                        f">=1x {'met' if t[0] >= 1 else 'MISSED'}")
        print(f"| {c} | {f(med(c, 'wps'))} | {rs} | {cpu} | {f(med(c, 'redis_cmd_us'), '{:.2f}')} | "
              f"{f(med(c, 'drain_s'), '{:.2f}')} | {goal} |")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("steady")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--rate", type=float, required=True)
    s.add_argument("--duration", type=float, required=True)
    s.add_argument("--prefix", required=True)
    s.add_argument("--keyspace", default="wl")
    s.add_argument("--conns", type=int, default=8)
    s.add_argument("--tick-ms", type=float, default=2.0)
    s.add_argument("--sample-ms", type=float, default=20.0)
    s.add_argument("--warmup", type=float, default=2.0)
    s.add_argument("--out", required=True)
    d = sub.add_parser("drain")
    d.add_argument("--port", type=int, required=True)
    d.add_argument("--keyspace", required=True)
    d.add_argument("--sample-ms", type=float, default=20.0)
    d.add_argument("--timeout", type=float, default=120.0)
    d.add_argument("--ready", default="")
    d.add_argument("--out", required=True)
    q = sub.add_parser("pending")
    q.add_argument("--port", type=int, required=True)
    b = sub.add_parser("bulksql")
    b.add_argument("--table", required=True)
    b.add_argument("--rows", type=int, required=True)
    b.add_argument("--batch", type=int, default=1000)
    b.add_argument("--prefix", required=True)
    r = sub.add_parser("report")
    r.add_argument("results")
    a = p.parse_args()
    if a.cmd == "steady":
        return steady(a)
    if a.cmd == "drain":
        return drain(a)
    if a.cmd == "pending":
        return pending_cmd(a)
    if a.cmd == "bulksql":
        return bulksql(a)
    return report(a.results)


if __name__ == "__main__":
    sys.exit(main())
