#!/usr/bin/python3
"""PostgreSQL's cost of moving one applied mark per Redis Cluster slot in the
write-behind apply transaction, against today's single mark.

On a Redis Cluster the write queue becomes one stream per slot, so a batch
touches K distinct slots (a batch of 1000 rows from uniformly spread keys
touches ~970 of the 16384 slots) and each needs its own mark row in
larder.flush_state. Three ways to move them, each followed by the batch
upsert, in the transaction Larder opens
(`BEGIN; SET LOCAL larder.origin = 'larder'` ... `COMMIT`):

  A  today: one guarded UPDATE of one mark row (FlushState::advance's SQL,
     src/cache/flush_state.cpp), then the upsert. The baseline.
  B  one guarded UPDATE per touched slot: K statements, K round trips (the
     same SQL as A, once per slot; Larder's pg::Connection does not pipeline).
  C  one statement moving all K marks:
       UPDATE larder.flush_state f SET ms = u.to_ms, seq = u.to_seq
         FROM unnest($queues::text[], $from_ms::bigint[], $from_seq::bigint[],
                     $to_ms::bigint[], $to_seq::bigint[]) AS u(...)
        WHERE f.queue = u.queue AND f.partitions = $p AND f.part = $q
          AND f.ms = u.from_ms AND f.seq = u.from_seq
     (affected rows must equal K).

The upsert is the one buildApply (src/cache/change.cpp) sends for a plain SET
of every column of items(id text primary key, name text, qty int):
  INSERT INTO "public"."items" ("id", "name", "qty") SELECT k1, v1, v2
    FROM unnest($1::text[], $2::text[], $3::integer[]) AS u(k1, v1, v2)
    ON CONFLICT ("id") DO UPDATE SET "name" = EXCLUDED."name", "qty" = EXCLUDED."qty"

Setup: a private PostgreSQL 15 (tests/integration/harness.py's PostgresServer:
127.0.0.1, a free port, a temp dir, fsync=off), ITEMS rows in items, 16384
slot mark rows (queue "<instance>:items#<slot>", partitions 1, part 0) plus
A's single mark row. Two batches of distinct existing ids (SIZES), drawn so
that their slot sets do not overlap; K is the number of distinct slots of the
batch's keys ("items:<id>", CRC16 as Redis Cluster).

Each run is one pgbench (-n -M prepared, 1 client, -t WARMUP+TXNS) on a
custom script. Every parameter is bound, as Larder binds it (pgbench -D
variables): the mark arrays, the mark scalars, the row arrays. Each
transaction really moves the marks: every slot alternates between two marks
X and Y, odd transactions X -> Y and even ones Y -> X (the row values
alternate too), so the guard of every UPDATE matches only if the previous
transaction moved that mark. After each run the script fails loudly unless
  - pgbench processed every transaction without error,
  - pg_stat_user_tables counts exactly (WARMUP+TXNS) x K mark updates
    (x 1 for A) and (WARMUP+TXNS) x rows upserted rows (a guard that missed
    once would leave the count short),
  - every mark holds the expected final value (count and sums per state),
  - the batch's rows hold the values of the last transaction.
Before each run: VACUUM ANALYZE of both tables and a CHECKPOINT (autovacuum
is off on them), outside the timing.

Timing: pgbench's per-transaction latency log; the first WARMUP transactions
(statement preparation, the custom-plan phase of each prepared statement) are
left out. ms/batch is the mean latency of the other TXNS, tps = 1000 / that
(1 client, nothing between transactions). Each option runs REPS times per
batch size, the order of options reversed every other round; the tables show
medians, the ratio of medians to A, and the extra cost per moved mark.

Caveat: fsync=off (the harness's setting), so COMMIT costs no WAL flush here;
with a real flush every option pays the same extra few ms, and the ratios
shrink.

  /usr/bin/python3 tests/bench/write_behind/slot_marks_cost.py
Environment: SIZES [1000,100]  TXNS_1000 [30]  TXNS_100 [150]  (TXNS_<size>
  for any other size [100])  WARMUP [12]  REPS [3]  ITEMS [100000]  SEED [14]
  OPTIONS [A,B,C]
"""
import glob
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.dont_write_bytecode = True
import harness  # noqa: E402

SIZES = [int(s) for s in os.environ.get("SIZES", "1000,100").split(",") if s.strip()]
TXNS = {s: int(os.environ.get(f"TXNS_{s}", {1000: "30", 100: "150"}.get(s, "100"))) for s in SIZES}
WARMUP = int(os.environ.get("WARMUP", "12"))
REPS = int(os.environ.get("REPS", "3"))
ITEMS = int(os.environ.get("ITEMS", "100000"))
SEED = int(os.environ.get("SEED", "14"))
OPTIONS = [o.strip().upper() for o in os.environ.get("OPTIONS", "A,B,C").split(",") if o.strip()]
PGBENCH = os.path.join(harness.PG_BIN, "pgbench")

SLOTS = 16384
INSTANCE = "larder-bench-1"
STATE = '"larder"."flush_state"'
ITEMS_TABLE = '"public"."items"'
BASE_MS = 1718000000000
PARTS, PART = 1, 0  # partitions, part of every mark row

BEGIN = "BEGIN;\nSET LOCAL larder.origin = 'larder';\n"
# FlushState::advance's statement, verbatim but for the parameter names.
ADVANCE = ("UPDATE " + STATE + " SET ms = :{to}_ms::bigint, seq = :{to}_seq::bigint WHERE queue = "
           ":{q} AND partitions = :parts::int AND part = :part::int AND ms = :{fr}_ms::bigint AND "
           "seq = :{fr}_seq::bigint;\n")
MOVE_ALL = ("UPDATE " + STATE + " f SET ms = u.to_ms, seq = u.to_seq FROM unnest(:queues::text[], "
            ":{fr}_ms::bigint[], :{fr}_seq::bigint[], :{to}_ms::bigint[], :{to}_seq::bigint[]) "
            "AS u(queue, from_ms, from_seq, to_ms, to_seq) WHERE f.queue = u.queue AND "
            "f.partitions = :parts::int AND f.part = :part::int AND f.ms = u.from_ms AND "
            "f.seq = u.from_seq;\n")
UPSERT = ("INSERT INTO " + ITEMS_TABLE + ' ("id", "name", "qty") SELECT k1, v1, v2 FROM '
          "unnest(:ids::text[], :names_{v}::text[], :qtys_{v}::integer[]) AS u(k1, v1, v2) "
          'ON CONFLICT ("id") DO UPDATE SET "name" = EXCLUDED."name", "qty" = EXCLUDED."qty";\n')


def crc16(data: bytes) -> int:
    """CRC16 XMODEM (polynomial 0x1021, initial 0), Redis Cluster's key hash."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def key_slot(key: str) -> int:
    b = key.encode()
    start = b.find(b"{")
    if start >= 0:
        end = b.find(b"}", start + 1)
        if end > start + 1:
            b = b[start + 1:end]
    return crc16(b) % SLOTS


def slot_queue(slot: int) -> str:
    return f"{INSTANCE}:items#{slot}"


A_QUEUE = f"{INSTANCE}:items"


def mark(slot: int, state: str):
    """(ms, seq) of a slot's mark in state X or Y; slot -1 is A's single mark."""
    s = slot if slot >= 0 else SLOTS + 7
    if state == "X":
        return BASE_MS + s * 1000, s % 7
    return BASE_MS + s * 1000 + 500 + s % 13, (s * 3) % 11


def item_id(i: int) -> str:
    return f"sku-{i:07d}"


def item_values(i: int, version: int):
    """(name, qty) a batch writes into item i: version 1 (odd transactions) or 2."""
    return f"item {i} v{version}", (i % 1000) + 10 * version


def array(values) -> str:
    """A PostgreSQL array literal of plain values (no quoting needed for ours)."""
    out = []
    for v in values:
        v = str(v)
        out.append('"' + v + '"' if (" " in v or "," in v) else v)
    return "{" + ",".join(out) + "}"


class Batch:
    def __init__(self, size, members):
        self.size = size
        self.members = members  # item numbers
        self.slots = sorted({key_slot("items:" + item_id(i)) for i in members})
        self.k = len(self.slots)
        self.state = "X"  # where this batch's slot marks are (all alike)
        self.a_state = "X"  # A's single mark, when this batch's runs move it
        self.version = 0  # row values last written (0: the initial load)


def draw_batches(rng):
    batches, used_slots, used_ids = [], set(), set()
    for size in SIZES:
        members = []
        while len(members) < size:
            i = rng.randrange(ITEMS)
            s = key_slot("items:" + item_id(i))
            if i in used_ids or s in used_slots:  # another batch's slot: keep them apart
                continue
            members.append(i)
            used_ids.add(i)
        b = Batch(size, members)
        used_slots.update(b.slots)
        batches.append(b)
    return batches


def psql(pg, sql):
    return pg.psql(sql).strip()


def setup(pg):
    psql(pg, "CREATE SCHEMA larder; CREATE TABLE " + STATE +
         " (queue text NOT NULL, partitions int NOT NULL, part int NOT NULL, "
         "ms bigint NOT NULL DEFAULT 0, seq bigint NOT NULL DEFAULT 0, "
         "PRIMARY KEY (queue, partitions, part)) WITH (autovacuum_enabled = off)")
    psql(pg, "CREATE TABLE " + ITEMS_TABLE + " (id text PRIMARY KEY, name text, qty int) "
         "WITH (autovacuum_enabled = off)")
    psql(pg, f"INSERT INTO {ITEMS_TABLE} SELECT 'sku-' || lpad(i::text, 7, '0'), 'item ' || i, "
             f"i % 1000 FROM generate_series(0, {ITEMS - 1}) i")
    # Every slot's mark in state X (the same formulas as mark()).
    psql(pg, f"INSERT INTO {STATE} SELECT '{INSTANCE}:items#' || s, {PARTS}, {PART}, "
             f"{BASE_MS} + s * 1000, s % 7 FROM generate_series(0, {SLOTS - 1}) s")
    ams, aseq = mark(-1, "X")
    psql(pg, f"INSERT INTO {STATE} VALUES ('{A_QUEUE}', {PARTS}, {PART}, {ams}, {aseq})")
    got = psql(pg, f"SELECT count(*) FROM {STATE}")
    if got != str(SLOTS + 1):
        raise SystemExit(f"FAIL: {got} mark rows, expected {SLOTS + 1}")


def script_for(option, batch):
    """The pgbench script and its -D variables."""
    vars_ = {"parts": PARTS, "part": PART, "ids": array(item_id(i) for i in batch.members)}
    for v in (1, 2):
        vals = [item_values(i, v) for i in batch.members]
        vars_[f"names_{v}"] = array(n for n, _ in vals)
        vars_[f"qtys_{v}"] = array(q for _, q in vals)
    for st in ("X", "Y"):
        ms_seq = [mark(s, st) for s in batch.slots]
        if option == "C":
            vars_[f"{st}_ms"] = array(m for m, _ in ms_seq)
            vars_[f"{st}_seq"] = array(q for _, q in ms_seq)
        elif option == "B":
            for j, (m, q) in enumerate(ms_seq):
                vars_[f"{st}{j}_ms"] = m
                vars_[f"{st}{j}_seq"] = q
        else:
            vars_[f"{st}_ms"], vars_[f"{st}_seq"] = mark(-1, st)
    if option == "C":
        vars_["queues"] = array(slot_queue(s) for s in batch.slots)
    elif option == "B":
        for j, s in enumerate(batch.slots):
            vars_[f"q{j}"] = slot_queue(s)
    else:
        vars_["q"] = A_QUEUE

    def marks(fr, to):
        if option == "C":
            return MOVE_ALL.format(fr=fr, to=to)
        if option == "B":
            return "".join(ADVANCE.format(fr=f"{fr}{j}", to=f"{to}{j}", q=f"q{j}")
                           for j in range(batch.k))
        return ADVANCE.format(fr=fr, to=to, q="q")

    text = ("\\set n :n + 1\n" + BEGIN + "\\if :n % 2 = 1\n" + marks("X", "Y") +
            UPSERT.format(v=1) + "\\else\n" + marks("Y", "X") + UPSERT.format(v=2) +
            "\\endif\nCOMMIT;\n")
    return text, vars_


def stat(pg, table):
    row = psql(pg, "SELECT n_tup_ins, n_tup_upd FROM pg_stat_user_tables WHERE relid = "
                   f"'{table}'::regclass")
    ins, upd = row.split("|")
    return int(ins), int(upd)


def expected_marks(batches):
    """count, sum(ms), sum(seq) of all slot marks, and A's mark, as tracked."""
    state = {s: "X" for s in range(SLOTS)}
    for b in batches:
        for s in b.slots:
            state[s] = b.state
    total_ms = total_seq = 0
    for s, st in state.items():
        m, q = mark(s, st)
        total_ms += m
        total_seq += q
    return total_ms, total_seq


def verify(pg, option, batch, batches, txns, before_marks, before_items, a_holder):
    after_marks = stat(pg, "larder.flush_state")
    after_items = stat(pg, "public.items")
    want_marks = txns * (batch.k if option in ("B", "C") else 1)
    want_rows = txns * batch.size
    moved = after_marks[1] - before_marks[1]
    written = (after_items[0] - before_items[0]) + (after_items[1] - before_items[1])
    if moved != want_marks or written != want_rows:
        return f"mark updates {moved} (want {want_marks}), rows upserted {written} (want {want_rows})"
    # Marks hold the tracked state: every slot mark, and A's.
    want_ms, want_seq = expected_marks(batches)
    got = psql(pg, f"SELECT count(*), sum(ms), sum(seq) FROM {STATE} WHERE queue <> '{A_QUEUE}'")
    if got != f"{SLOTS}|{want_ms}|{want_seq}":
        return f"slot marks are {got}, expected {SLOTS}|{want_ms}|{want_seq}"
    st_ms, st_seq = mark(-1, a_holder["state"])
    got = psql(pg, f"SELECT ms, seq FROM {STATE} WHERE queue = '{A_QUEUE}'")
    if got != f"{st_ms}|{st_seq}":
        return f"A's mark is {got}, expected {st_ms}|{st_seq}"
    # This batch's slot marks, all in the batch's state.
    m_sum = sum(mark(s, batch.state)[0] for s in batch.slots)
    ids = ",".join(f"'{slot_queue(s)}'" for s in batch.slots)
    got = psql(pg, f"SELECT count(*), sum(ms) FROM {STATE} WHERE queue IN ({ids})")
    if got != f"{batch.k}|{m_sum}":
        return f"the batch's slot marks are {got}, expected {batch.k}|{m_sum}"
    # The rows hold the last transaction's values.
    vals = [item_values(i, batch.version) for i in batch.members]
    want = f"{batch.size}|{sum(q for _, q in vals)}"
    keys = ",".join(f"'{item_id(i)}'" for i in batch.members)
    names = ",".join(f"'{n}'" for n, _ in vals)
    got = psql(pg, f"SELECT count(*), sum(qty) FROM {ITEMS_TABLE} WHERE id IN ({keys}) "
                   f"AND name IN ({names})")
    if got != want:
        return f"the batch's rows are {got} (count|sum qty), expected {want}"
    return None


def wait_stats(pg, before_marks, before_items, option, batch, txns):
    """pgbench's backend flushes its table counters as it exits, just after
    pgbench returns: wait (bounded) until they are in."""
    want_marks = txns * (batch.k if option in ("B", "C") else 1)
    want_rows = txns * batch.size
    deadline = time.monotonic() + 10
    while True:
        m, i = stat(pg, "larder.flush_state"), stat(pg, "public.items")
        if (m[1] - before_marks[1] >= want_marks and
                (i[0] - before_items[0]) + (i[1] - before_items[1]) >= want_rows):
            return
        if time.monotonic() > deadline:
            return  # verify() reports the shortfall
        time.sleep(0.1)


def run(pg, work, option, batch, batches, a_holder):
    txns = WARMUP + TXNS[batch.size]
    text, vars_ = script_for(option, batch)
    path = os.path.join(work, f"{option}_{batch.size}.sql")
    with open(path, "w") as f:
        f.write(text)
    psql(pg, f"VACUUM ANALYZE {STATE}")
    psql(pg, f"VACUUM ANALYZE {ITEMS_TABLE}")
    psql(pg, "CHECKPOINT")
    before_marks, before_items = stat(pg, "larder.flush_state"), stat(pg, "public.items")
    # n odd -> X to Y; start so that the first transaction leaves the current state.
    current = batch.state if option in ("B", "C") else a_holder["state"]
    start_n = 0 if current == "X" else 1
    prefix = os.path.join(work, f"log_{option}_{batch.size}_{time.monotonic_ns()}")
    argv = [PGBENCH, "-n", "-M", "prepared", "-c", "1", "-j", "1", "-t", str(txns),
            "-h", harness.HOST, "-p", str(pg.port), "-U", pg.SUPERUSER, "-d", "postgres", "-f", path,
            "-l", "--log-prefix", prefix, "-D", f"n={start_n}"]
    for k, v in vars_.items():
        argv += ["-D", f"{k}={v}"]
    t0 = time.monotonic()
    res = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=300, cwd=work, env=pg._env())
    wall = time.monotonic() - t0
    out = res.stdout.decode(errors="replace")
    if res.returncode != 0 or f"actually processed: {txns}/{txns}" not in out:
        raise SystemExit(f"FAIL: pgbench {option} size {batch.size} (exit {res.returncode}):\n"
                         f"{out[-3000:]}")
    # Track where this run left the marks and the rows.
    last_n = start_n + txns
    final = "Y" if last_n % 2 == 1 else "X"
    if option in ("B", "C"):
        batch.state = final
    else:
        a_holder["state"] = final
    batch.version = 1 if last_n % 2 == 1 else 2
    wait_stats(pg, before_marks, before_items, option, batch, txns)
    problem = verify(pg, option, batch, batches, txns, before_marks, before_items, a_holder)
    if problem:
        raise SystemExit(f"FAIL: option {option}, batch {batch.size}: {problem} -- "
                         "the measurement is void")
    logs = glob.glob(prefix + "*")
    if len(logs) != 1:
        raise SystemExit(f"FAIL: expected one pgbench log for {prefix}, found {logs}")
    lat = []
    with open(logs[0]) as f:
        for line in f:
            parts = line.split()
            lat.append(int(parts[2]) / 1000.0)  # microseconds -> ms
    os.unlink(logs[0])
    if len(lat) != txns:
        raise SystemExit(f"FAIL: {len(lat)} transactions in the log of {option}/{batch.size}, "
                         f"expected {txns}")
    steady = lat[WARMUP:]
    return statistics.mean(steady), wall


def main():
    if not os.path.exists(PGBENCH):
        raise SystemExit(f"{PGBENCH} is missing")
    started = time.monotonic()
    rng = random.Random(SEED)
    batches = draw_batches(rng)
    by_size = {b.size: b for b in batches}
    a_holder = {"state": "X"}
    work = tempfile.mkdtemp(prefix="larder-slotmarks-")
    pg = harness.PostgresServer()
    results = {(o, s): [] for o in OPTIONS for s in SIZES}
    try:
        pg.start()
        setup(pg)
        print(f"PostgreSQL 15 on 127.0.0.1:{pg.port} (fsync=off); items: {ITEMS} rows; "
              f"mark rows: {SLOTS} slots + 1")
        for b in batches:
            print(f"batch {b.size} rows: K = {b.k} distinct slots; "
                  f"{WARMUP} warm-up + {TXNS[b.size]} timed transactions per run")
        print(f"{REPS} rounds, options {','.join(OPTIONS)}, order reversed every other round\n")
        for rep in range(REPS):
            order = OPTIONS if rep % 2 == 0 else list(reversed(OPTIONS))
            sizes = SIZES if rep % 2 == 0 else list(reversed(SIZES))
            for size in sizes:
                for option in order:
                    ms, wall = run(pg, work, option, by_size[size], batches, a_holder)
                    results[(option, size)].append(ms)
                    print(f"  round {rep + 1}  size {size:5d}  {option}  {ms:8.2f} ms/batch  "
                          f"(pgbench wall {wall:5.1f} s)", flush=True)
    finally:
        pg.cleanup()
        shutil.rmtree(work, ignore_errors=True)

    print()
    for size in SIZES:
        b = by_size[size]
        print(f"batch of {size} rows, K = {b.k} slot marks; {TXNS[size]} timed batches x "
              f"{REPS} runs; medians")
        print(f"  {'option':<34} {'tps':>8} {'ms/batch':>9} {'x A':>6} {'+ms vs A':>9} "
              f"{'us/mark':>8}   runs (ms/batch)")
        base = statistics.median(results[("A", size)]) if ("A", size) in results else None
        names = {"A": "A  1 mark UPDATE (today)", "B": f"B  {b.k} mark UPDATEs",
                 "C": f"C  1 UPDATE FROM unnest ({b.k})"}
        for option in OPTIONS:
            runs = results[(option, size)]
            med = statistics.median(runs)
            ratio = f"{med / base:6.2f}" if base else "     -"
            extra = f"{med - base:9.2f}" if base else "        -"
            per = (f"{(med - base) * 1000 / (b.k - 1):8.1f}" if base and option != "A"
                   and b.k > 1 else "       -")
            print(f"  {names[option]:<34} {1000 / med:8.1f} {med:9.2f} {ratio} {extra} {per}   "
                  + " ".join(f"{r:.2f}" for r in runs))
        print()
    print("us/mark: the extra time over A divided by the K-1 extra marks moved.")
    print(f"total time {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
