#!/usr/bin/python3
"""Commands that hold connection state: transactions, pub/sub, blocking calls.

Larder runs them on a backend connection pinned to the client; everyone else
keeps using the shared connections and must not be slowed down.
"""

import sys
import threading
import time

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
import harness  # noqa: E402
import redis
from harness import LarderTestCase, RespError


class StatefulTest(LarderTestCase):
    @classmethod
    def setUpClass(cls):
        cls.start_shared()

    def setUp(self):
        self.backend = self.redis_server.client()
        self.addCleanup(harness.close_client, self.backend)
        self.backend.flushall()
        self.r = self.client(self.larder)

    # ----------------------------------------------------------- transactions
    def test_multi_exec(self):
        p = self.r.pipeline(transaction=True)
        p.set("t:a", 1).incr("t:a").incrby("t:a", 10).get("t:a").lpush("t:l", "x", "y")
        self.assertEqual(p.execute(), [True, 2, 12, b"12", 2])
        self.assertEqual(self.backend.get("t:a"), b"12")
        # A failing command inside EXEC does not stop the others (Redis semantics).
        p = self.r.pipeline(transaction=True)
        p.set("t:s", "str").incr("t:s").set("t:after", "ok")
        out = p.execute(raise_on_error=False)
        self.assertIs(out[0], True)
        self.assertIsInstance(out[1], redis.ResponseError)
        self.assertIs(out[2], True)
        self.assertEqual(self.r.get("t:after"), b"ok")

    def test_multi_raw_queued_and_execabort(self):
        raw = self.raw(self.larder)
        self.assertEqual(raw.call("MULTI"), "OK")
        self.assertEqual(raw.call("SET", "q", "1"), "QUEUED")
        self.assertEqual(raw.call("INCR", "q"), "QUEUED")
        self.assertEqual(raw.call("PING"), "QUEUED")  # PING inside MULTI is queued by Redis
        self.assertEqual(raw.call("EXEC"), ["OK", 2, "PONG"])
        # A syntax error while queueing aborts EXEC.
        self.assertEqual(raw.call("MULTI"), "OK")
        self.assertEqual(raw.call("SET", "q2", "1"), "QUEUED")
        self.assertIsInstance(raw.call("SET", "q2"), RespError)
        reply = raw.call("EXEC")
        self.assertIsInstance(reply, RespError)
        self.assertTrue(str(reply).startswith("EXECABORT"), reply)
        self.assertEqual(self.backend.exists("q2"), 0)
        self.assertIsInstance(raw.call("EXEC"), RespError)  # EXEC without MULTI
        self.assertEqual(raw.call("GET", "q"), b"2")

    def test_discard(self):
        raw = self.raw(self.larder)
        self.assertEqual(raw.call("MULTI"), "OK")
        self.assertEqual(raw.call("SET", "d", "1"), "QUEUED")
        self.assertEqual(raw.call("DISCARD"), "OK")
        self.assertIsNone(raw.call("GET", "d"))
        self.assertEqual(self.backend.exists("d"), 0)
        self.assertIsInstance(raw.call("DISCARD"), RespError)  # DISCARD without MULTI
        self.assertEqual(raw.call("SET", "d", "2"), "OK")
        self.assertEqual(self.backend.get("d"), b"2")

    def test_watch_conflict(self):
        self.r.set("w", 1)
        other = self.client(self.larder)
        with self.r.pipeline() as tx:
            tx.watch("w")
            self.assertEqual(tx.get("w"), b"1")  # immediate mode after WATCH
            other.set("w", 2)  # a different client changes the watched key
            tx.multi()
            tx.set("w", 3)
            with self.assertRaises(redis.WatchError):
                tx.execute()
        self.assertEqual(self.r.get("w"), b"2")
        self.assertEqual(self.backend.get("w"), b"2")

    def test_watch_success(self):
        self.r.set("w2", 5)

        def double(pipe):
            value = int(pipe.get("w2"))
            pipe.multi()
            pipe.set("w2", value * 2)

        out = self.r.transaction(double, "w2")
        self.assertEqual(out, [True])
        self.assertEqual(self.r.get("w2"), b"10")
        # UNWATCH then EXEC-free use of the connection keeps working.
        raw = self.raw(self.larder)
        self.assertEqual(raw.call("WATCH", "w2"), "OK")
        self.assertEqual(raw.call("UNWATCH"), "OK")
        self.assertEqual(raw.call("GET", "w2"), b"10")

    def test_watch_conflict_from_the_same_proxy_connection_pool(self):
        # Many concurrent optimistic increments: every successful EXEC must
        # count exactly once.
        self.r.set("ctr", 0)
        per_thread, threads = 20, 8

        def worker(i):
            c = self.larder.client()
            try:
                done = 0
                while done < per_thread:
                    with c.pipeline() as tx:
                        try:
                            tx.watch("ctr")
                            v = int(tx.get("ctr"))
                            tx.multi()
                            tx.set("ctr", v + 1)
                            tx.execute()
                            done += 1
                        except redis.WatchError:
                            continue
                return done
            finally:
                harness.close_client(c)

        harness.run_threads(worker, threads, timeout=60)
        self.assertEqual(int(self.r.get("ctr")), per_thread * threads)

    # ---------------------------------------------------------------- pub/sub
    def _get_message(self, ps, timeout=5.0, ignore_subscribe=True):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = ps.get_message(ignore_subscribe_messages=ignore_subscribe, timeout=0.1)
            if msg is not None:
                return msg
        raise AssertionError("no pub/sub message within %.1fs" % timeout)

    def test_pubsub_channels_and_patterns(self):
        sub_client = self.client(self.larder)
        ps = sub_client.pubsub()
        self.addCleanup(ps.close)
        ps.subscribe("ch1", "ch2")
        confirms = [self._get_message(ps, ignore_subscribe=False) for _ in range(2)]
        self.assertEqual([(m["type"], m["channel"], m["data"]) for m in confirms],
                         [("subscribe", b"ch1", 1), ("subscribe", b"ch2", 2)])
        ps.psubscribe("news.*")
        m = self._get_message(ps, ignore_subscribe=False)
        self.assertEqual((m["type"], m["channel"], m["data"]), ("psubscribe", b"news.*", 3))

        pub = self.client(self.larder)
        self.assertEqual(pub.publish("ch1", "hello"), 1)
        self.assertEqual(pub.publish("ch2", b"bin\x00\r\n"), 1)
        self.assertEqual(pub.publish("news.sport", "goal"), 1)
        self.assertEqual(pub.publish("other", "nobody"), 0)
        got = [self._get_message(ps) for _ in range(3)]
        self.assertEqual(got[0]["type"], "message")
        self.assertEqual((got[0]["channel"], got[0]["data"]), (b"ch1", b"hello"))
        self.assertEqual((got[1]["channel"], got[1]["data"]), (b"ch2", b"bin\x00\r\n"))
        self.assertEqual(got[2]["type"], "pmessage")
        self.assertEqual((got[2]["pattern"], got[2]["channel"], got[2]["data"]),
                         (b"news.*", b"news.sport", b"goal"))

        ps.unsubscribe("ch1")
        m = self._get_message(ps, ignore_subscribe=False)
        self.assertEqual((m["type"], m["channel"], m["data"]), ("unsubscribe", b"ch1", 2))
        self.assertEqual(pub.publish("ch1", "gone"), 0)
        self.assertEqual(pub.publish("ch2", "still"), 1)
        m = self._get_message(ps)
        self.assertEqual((m["channel"], m["data"]), (b"ch2", b"still"))
        # Publishing straight to Redis reaches the proxy's subscriber too.
        self.assertEqual(self.backend.publish("news.x", "direct"), 1)
        m = self._get_message(ps)
        self.assertEqual((m["channel"], m["data"]), (b"news.x", b"direct"))

    def test_pubsub_raw_ping_and_reset_leaves_mode(self):
        raw = self.raw(self.larder)
        self.assertEqual(raw.call("SUBSCRIBE", "rch"), [b"subscribe", b"rch", 1])
        # In RESP2 pub/sub mode, Redis answers PING with a "pong" array.
        self.assertEqual(raw.call("PING"), [b"pong", b""])
        pub = self.client(self.larder)
        self.assertEqual(pub.publish("rch", "m1"), 1)
        self.assertEqual(raw.read_reply(), [b"message", b"rch", b"m1"])
        reply = raw.call("GET", "x")
        self.assertIsInstance(reply, RespError)  # not allowed in subscribed mode
        self.assertEqual(raw.call("RESET"), "RESET")
        self.assertEqual(raw.call("SET", "after-reset", "1"), "OK")  # normal mode again
        self.assertEqual(pub.publish("rch", "m2"), 0)
        self.assertEqual(self.backend.get("after-reset"), b"1")

    def test_pubsub_unsubscribe_all_then_normal_commands(self):
        raw = self.raw(self.larder)
        raw.send(harness.encode_command("SUBSCRIBE", "u1", "u2"))
        self.assertEqual(raw.read_reply(), [b"subscribe", b"u1", 1])
        self.assertEqual(raw.read_reply(), [b"subscribe", b"u2", 2])
        raw.send(harness.encode_command("UNSUBSCRIBE"))
        got = [raw.read_reply(), raw.read_reply()]  # channel order is Redis' own
        self.assertEqual([g[0] for g in got], [b"unsubscribe", b"unsubscribe"])
        self.assertEqual({g[1] for g in got}, {b"u1", b"u2"})
        self.assertEqual([g[2] for g in got], [1, 0])
        # With no subscriptions left Redis accepts normal commands again.
        self.assertEqual(raw.call("SET", "u", "1"), "OK")
        self.assertEqual(raw.call("GET", "u"), b"1")

    def test_local_commands_after_leaving_pubsub(self):
        # PROXY BUG (reported): after SUBSCRIBE then UNSUBSCRIBE of every
        # channel (no RESET), Larder stays in its pub/sub "stream" routing for
        # good: every command goes raw to the pinned Redis connection, so the
        # proxy-local ones stop being local. CLIENT ID returns the backend
        # connection's id, CLIENT GETNAME forgets the name, INFO larder is
        # empty, and HELLO 3 switches the backend connection to RESP3 (Larder
        # answers HELLO itself elsewhere).
        raw = self.raw(self.larder)
        my_id = raw.call("CLIENT", "ID")
        self.assertEqual(raw.call("CLIENT", "SETNAME", "subber"), "OK")
        self.assertEqual(raw.call("SUBSCRIBE", "lp"), [b"subscribe", b"lp", 1])
        self.assertEqual(raw.call("UNSUBSCRIBE", "lp"), [b"unsubscribe", b"lp", 0])
        self.assertEqual(raw.call("SET", "lp-key", "1"), "OK")  # normal mode again
        self.assertEqual(raw.call("CLIENT", "ID"), my_id)
        self.assertEqual(raw.call("CLIENT", "GETNAME"), b"subber")
        self.assertTrue(raw.call("INFO", "larder").startswith(b"# Larder\r\n"))
        raw.send_command("HELLO", "3")  # Larder's own HELLO: this client's id, in RESP3
        self.assertEqual(raw.read_line(), b"%7")
        fields = [raw.read_reply() for _ in range(14)]
        self.assertEqual(dict(zip(fields[0::2], fields[1::2]))[b"id"], my_id)

    def test_subscribe_after_pipelined_commands_keeps_order(self):
        raw = self.raw(self.larder)
        raw.send(b"SET sp 1\r\nINCR sp\r\nSUBSCRIBE spc\r\n")
        self.assertEqual(raw.read_reply(), "OK")
        self.assertEqual(raw.read_reply(), 2)
        self.assertEqual(raw.read_reply(), [b"subscribe", b"spc", 1])
        self.assertEqual(self.backend.publish("spc", "x"), 1)
        self.assertEqual(raw.read_reply(), [b"message", b"spc", b"x"])

    def test_quit_in_subscribed_mode(self):
        raw = self.raw(self.larder)
        self.assertEqual(raw.call("SUBSCRIBE", "qc"), [b"subscribe", b"qc", 1])
        # PROXY BUG (reported): Redis answers QUIT in subscribed mode with +OK
        # before closing; Larder forwards QUIT to the pinned connection but
        # closes the client at once (Flow::Stop without closeWhenFlushed), so
        # the +OK is lost and the client just sees EOF.
        self.assertEqual(raw.call("QUIT"), "OK")
        raw.expect_closed(timeout=5)
        harness.wait_until(lambda: self.backend.publish("qc", "x") == 0, 5,
                           "the subscription to go away")

    def test_subscriber_disconnect_drops_subscription(self):
        for _ in range(3):
            raw = self.larder.raw()
            self.assertEqual(raw.call("PSUBSCRIBE", "gone.*"), [b"psubscribe", b"gone.*", 1])
            self.assertEqual(self.backend.publish("gone.1", "x"), 1)
            self.assertEqual(raw.read_reply(), [b"pmessage", b"gone.*", b"gone.1", b"x"])
            raw.close()
            harness.wait_until(lambda: self.backend.publish("gone.1", "y") == 0, 5,
                               "Larder to drop the subscription of a client that left")

    # -------------------------------------------------------------- blocking
    def test_blpop_unblocked_by_push(self):
        blocker = self.client(self.larder)
        pusher = self.client(self.larder)

        def push():
            time.sleep(0.3)
            pusher.rpush("bq", "v1")

        t = threading.Thread(target=push)
        started = time.monotonic()
        t.start()
        got = blocker.blpop(["bq"], timeout=5)
        took = time.monotonic() - started
        t.join(5)
        self.assertEqual(got, (b"bq", b"v1"))
        self.assertGreaterEqual(took, 0.25)
        self.assertLess(took, 3.0)
        # The connection goes on to normal commands afterwards.
        self.assertTrue(blocker.set("after-blpop", "1"))
        self.assertEqual(blocker.get("after-blpop"), b"1")

    def test_blpop_timeout_returns_none(self):
        started = time.monotonic()
        self.assertIsNone(self.r.blpop(["never"], timeout=1))
        took = time.monotonic() - started
        self.assertGreaterEqual(took, 0.9)
        self.assertLess(took, 3.0)
        self.assertIsNone(self.r.brpop(["never"], timeout=1))
        self.assertTrue(self.r.ping())

    def test_other_blocking_commands(self):
        self.r.rpush("src", "a", "b")
        self.assertEqual(self.r.blmove("src", "dst", 1, "LEFT", "RIGHT"), b"a")
        self.assertEqual(self.r.brpoplpush("src", "dst", 1), b"b")
        self.assertEqual(self.r.lrange("dst", 0, -1), [b"b", b"a"])  # BRPOPLPUSH pushes left
        self.r.zadd("zz", {"m": 1})
        self.assertEqual(self.r.bzpopmin("zz", timeout=1), (b"zz", b"m", 1.0))
        self.assertEqual(self.r.execute_command("WAIT", 0, 100), 0)  # no replicas

    def test_xread_block_unblocked_by_xadd(self):
        reader = self.client(self.larder)
        writer = self.client(self.larder)
        writer.xadd("xs", {"f": "old"})

        def add():
            time.sleep(0.3)
            writer.xadd("xs", {"f": "new"})

        t = threading.Thread(target=add)
        started = time.monotonic()
        t.start()
        got = reader.xread({"xs": "$"}, block=5000)
        took = time.monotonic() - started
        t.join(5)
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0][0], b"xs")
        self.assertEqual([e[1] for e in got[0][1]], [{b"f": b"new"}])
        self.assertLess(took, 3.0)
        # XREAD BLOCK that times out gives nil.
        self.assertEqual(reader.xread({"xs": "$"}, block=200), [])

    def test_disconnect_while_blocked_does_not_steal_later_push(self):
        raw = self.larder.raw()
        raw.send_command("BLPOP", "steal-q", "0")
        harness.wait_until(lambda: self.backend.info("clients")["blocked_clients"] == 1, 5,
                           "the BLPOP to block in Redis")
        raw.close()  # the client gives up; its BLPOP must not stay in Redis
        harness.wait_until(lambda: self.backend.info("clients")["blocked_clients"] == 0, 5,
                           "Larder to drop the abandoned BLPOP")
        self.r.rpush("steal-q", "precious")
        self.assertEqual(self.r.lrange("steal-q", 0, -1), [b"precious"])

    def test_pinned_connections_released(self):
        for i in range(5):
            c = self.larder.client()
            self.assertIsNone(c.blpop([f"pin:{i}"], timeout=0.1))
            with c.pipeline() as p:
                p.set("pin", i).get("pin")
                self.assertEqual(p.execute(), [True, str(i).encode()])
            harness.close_client(c)
        harness.wait_until(
            lambda: self.larder.info_larder()["pinned_backend_connections"] == 0, 5,
            "pinned backend connections to be released after their clients left")

    def test_pooled_connection_is_reset_before_reuse(self):
        """A dedicated connection goes back to the pool known clean: RESET."""
        c = self.larder.client()
        c.execute_command("WATCH", "pool:w")
        with c.pipeline() as p:  # MULTI/EXEC on the dedicated connection
            p.set("pool:w", 1)
            self.assertEqual(p.execute(), [True])
        self.assertIsNone(c.blpop(["pool:l"], timeout=0.1))
        harness.close_client(c)
        harness.wait_until(
            lambda: self.larder.info_larder()["pinned_backend_connections"] == 0, 5,
            "the dedicated connection to go back to the pool")

        def idle_reset():
            clients = [line for line in self.backend.execute_command("CLIENT", "LIST")
                       .decode().splitlines() if "cmd=reset" in line]
            return clients
        harness.wait_until(lambda: idle_reset(), 5, "a pooled connection whose last command "
                           "was RESET (CLIENT LIST)")
        for line in idle_reset():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            self.assertEqual(fields["multi"], "-1", line)
            self.assertEqual(fields["db"], "0", line)
            self.assertEqual((fields["sub"], fields["psub"]), ("0", "0"), line)
            self.assertNotIn("x", fields["flags"], line)  # not in MULTI

    def test_blocked_clients_do_not_delay_others(self):
        n_blocked = 10
        results = {}

        def block(i):
            c = self.larder.client()
            try:
                results[i] = c.blpop([f"blk:{i}"], timeout=10)
            finally:
                harness.close_client(c)

        blockers = [threading.Thread(target=block, args=(i,), daemon=True)
                    for i in range(n_blocked)]
        for t in blockers:
            t.start()
        harness.wait_until(lambda: self.backend.info("clients")["blocked_clients"] >= n_blocked,
                           5, f"{n_blocked} clients blocked in Redis")

        latencies = []
        lock = threading.Lock()

        def busy(i):
            c = self.larder.client()
            try:
                for j in range(100):
                    t0 = time.monotonic()
                    c.set(f"busy:{i}", j)
                    assert c.get(f"busy:{i}") == str(j).encode()
                    with lock:
                        latencies.append(time.monotonic() - t0)
            finally:
                harness.close_client(c)

        started = time.monotonic()
        harness.run_threads(busy, 5, timeout=30)
        took = time.monotonic() - started
        self.assertLess(took, 5.0, "500 SET+GET pairs beside blocked clients were slow")
        self.assertLess(max(latencies), 1.0, f"slowest SET+GET took {max(latencies):.2f}s")
        # Still all blocked, then all released.
        self.assertEqual(results, {})
        for i in range(n_blocked):
            self.r.rpush(f"blk:{i}", f"v{i}")
        for t in blockers:
            t.join(5)
        self.assertEqual(results, {i: (f"blk:{i}".encode(), f"v{i}".encode())
                                   for i in range(n_blocked)})

    # ------------------------------------------------------------- ordering
    def test_pipeline_with_multi_keeps_order(self):
        raw = self.raw(self.larder)
        raw.send(b"SET a 1\r\nMULTI\r\nINCR a\r\nEXEC\r\nGET a\r\n")
        self.assertEqual(raw.read_reply(), "OK")
        self.assertEqual(raw.read_reply(), "OK")
        self.assertEqual(raw.read_reply(), "QUEUED")
        self.assertEqual(raw.read_reply(), [2])
        self.assertEqual(raw.read_reply(), b"2")
        # Longer mix of shared and pinned commands in one write.
        batch = b"".join([
            harness.encode_command("SET", "o", "0"),
            harness.encode_command("INCR", "o"),
            harness.encode_command("MULTI"),
            harness.encode_command("INCR", "o"),
            harness.encode_command("INCR", "o"),
            harness.encode_command("EXEC"),
            harness.encode_command("INCR", "o"),
            harness.encode_command("BLPOP", "nolist", "0.1"),
            harness.encode_command("INCR", "o"),
            harness.encode_command("PING"),
            harness.encode_command("GET", "o"),
        ])
        raw.send(batch)
        got = [raw.read_reply() for _ in range(11)]
        self.assertEqual(got, ["OK", 1, "OK", "QUEUED", "QUEUED", [2, 3], 4, None, 5, "PONG",
                               b"5"])


if __name__ == "__main__":
    harness.main()
