"""TLS end to end (docs/tls.md): Larder -> PostgreSQL over TLS (libpq sslmode),
clients -> Larder on the TLS listener, Larder -> Redis over TLS.

Certificates are made at test time with the openssl CLI in a temp dir: a CA,
a server certificate for IP:127.0.0.1 and DNS:localhost, a client certificate,
a second ("wrong") CA and a server certificate for another name.

PostgreSQL runs with ssl=on and a hostssl-only pg_hba.conf, so a connection
without TLS is refused.

Run: /usr/bin/python3 tests/integration/test_tls.py
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (HOST, PG_BIN, LarderTestCase, PostgresServer, free_port,  # noqa: E402
                     make_tmpdir, remove_tmpdir, wait_until)

import redis  # noqa: E402

DB = "app"
SCHEMA = """
CREATE TABLE users (id bigint PRIMARY KEY, name text, email text);
INSERT INTO users VALUES (1, 'ann', 'ann@example.com'), (2, 'bob', 'bob@example.com'),
  (3, 'cid', 'cid@example.com'), (4, 'dee', 'dee@example.com');
"""
USERS = {"key": "user:{id}", "table": "public.users", "shape": "hash", "ttl": "1h",
         "write": "behind"}
WRITE_BEHIND = {"flush_interval": "20ms"}
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"

CERTS: "Certs | None" = None
PG: PostgresServer | None = None


class Certs:
    """A throwaway PKI in a temp dir, made with the openssl CLI."""

    def __init__(self):
        self.dir = make_tmpdir("tls-certs")
        os.chmod(self.dir, 0o755)  # PostgreSQL (another user) copies nothing from here
        self.ca, self.ca_key = self._ca("ca", "Larder Test CA")
        self.wrong_ca, self.wrong_ca_key = self._ca("wrong-ca", "Some Other CA")
        self.server, self.server_key = self._leaf(
            "server", "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            "extendedKeyUsage=serverAuth\n", self.ca, self.ca_key)
        self.other_name, self.other_name_key = self._leaf(
            "other-name", "elsewhere.example", "subjectAltName=DNS:elsewhere.example\n"
            "extendedKeyUsage=serverAuth\n", self.ca, self.ca_key)
        self.client, self.client_key = self._leaf(
            "client", "larder-client", "extendedKeyUsage=clientAuth\n", self.ca, self.ca_key)
        self.stranger, self.stranger_key = self._leaf(
            "stranger", "stranger", "extendedKeyUsage=clientAuth\n", self.wrong_ca,
            self.wrong_ca_key)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def _run(self, *args):
        res = subprocess.run([OPENSSL, *args], capture_output=True, timeout=60, cwd=self.dir)
        if res.returncode != 0:
            raise AssertionError(f"openssl {' '.join(args)} failed:\n"
                                 f"{res.stderr.decode(errors='replace')}")

    def _ca(self, name: str, cn: str):
        crt, key = self.path(f"{name}.crt"), self.path(f"{name}.key")
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                  "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", f"/CN={cn}")
        return crt, key

    def _leaf(self, name: str, cn: str, extensions: str, ca: str, ca_key: str):
        crt, key, csr = (self.path(f"{name}.crt"), self.path(f"{name}.key"),
                         self.path(f"{name}.csr"))
        ext = self.path(f"{name}.ext")
        with open(ext, "w") as f:
            f.write(extensions)
        self._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-keyout", key, "-out", csr, "-subj", f"/CN={cn}")
        self._run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                  "-out", crt, "-days", "2", "-extfile", ext)
        os.chmod(key, 0o644)  # test-only keys; redis-server and Larder read them
        return crt, key

    def cleanup(self):
        remove_tmpdir(self.dir)


def setUpModule():
    global CERTS, PG
    CERTS = Certs()
    unittest.addModuleCleanup(CERTS.cleanup)
    PG = PostgresServer(
        conf_lines=["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'",
                    "ssl_ca_file = 'ca.crt'"],
        hba_lines=["local all all trust", "hostssl all all 127.0.0.1/32 trust"],
        files={"server.crt": CERTS.server, "server.key": CERTS.server_key,
               "other-name.crt": CERTS.other_name, "other-name.key": CERTS.other_name_key,
               "ca.crt": CERTS.ca})
    unittest.addModuleCleanup(PG.cleanup)
    PG.start()
    PG.create_database(DB)
    PG.psql(SCHEMA, dbname=DB)


def admin_get(port: int, path: str):
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def start_fails(test: unittest.TestCase, config: dict) -> str:
    """Runs Larder with `config`, which must stop start-up; returns its output.
    (Not start_larder: the expected start-up failure is logged as critical.)"""
    larder = harness.Larder(None, config=config, wait_backend=False)
    test.addCleanup(larder.cleanup)
    res = subprocess.run([larder.binary, "--config", larder.config_path], capture_output=True,
                         timeout=harness.scaled(30), cwd=larder.dir)
    out = (res.stdout + res.stderr).decode(errors="replace")
    test.assertNotEqual(res.returncode, 0, out)
    return out


def larder_pg_ssl_sessions() -> int:
    """Larder's PostgreSQL sessions that use TLS (pg_stat_ssl)."""
    return int(PG.psql("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) "
                       "WHERE application_name = 'larder' AND ssl").strip())


def larder_pg_plain_sessions() -> int:
    return int(PG.psql("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) "
                       "WHERE application_name = 'larder' AND NOT ssl").strip())


class PostgresTlsTest(LarderTestCase):
    """Larder -> PostgreSQL over TLS."""

    def pg_config(self, **tls) -> dict:
        pg = {"dsn": PG.dsn(DB), "pool_size": 2, "connect_timeout": "2s"}
        pg.update(tls)
        return {"postgres": pg, "keyspaces": {"users": USERS}, "write_behind": WRITE_BEHIND}

    def test_plaintext_is_refused_by_the_server(self):
        # The server side of the setup: without TLS, pg_hba.conf has no entry.
        res = subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-At", "-c", "SELECT 1",
                              f"host={HOST} port={PG.port} dbname={DB} user=postgres "
                              "sslmode=disable"], capture_output=True, timeout=30)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("no encryption", res.stderr.decode())
        # ... and Larder told to go without TLS does not start, saying why.
        self.assertIn("no encryption", start_fails(self, self.pg_config(sslmode="disable")))

    def test_verify_full_read_through_and_write_behind(self):
        r = self.start_redis()
        larder = self.start_larder(r, config=self.pg_config(sslmode="verify-full",
                                                            sslrootcert=CERTS.ca))
        c = self.client(larder)
        self.assertEqual(c.hget("user:1", "name"), b"ann")  # miss: loaded over TLS
        self.assertEqual(c.hget("user:1", "name"), b"ann")  # hit
        c.hset("user:2", "name", "bobby")
        wait_until(lambda: PG.psql("SELECT name FROM users WHERE id = 2", dbname=DB).strip()
                   == "bobby", 10, "the write to reach PostgreSQL")
        self.assertGreater(larder_pg_ssl_sessions(), 0)
        self.assertEqual(larder_pg_plain_sessions(), 0)

    def test_verify_full_checks_the_host_name(self):
        # Same CA, but the server presents a certificate for another name:
        # verify-ca accepts it, verify-full does not.
        PG.psql("ALTER SYSTEM SET ssl_cert_file = 'other-name.crt'")
        PG.psql("ALTER SYSTEM SET ssl_key_file = 'other-name.key'")
        PG.psql("SELECT pg_reload_conf()")
        try:
            time.sleep(0.3)
            r = self.start_redis()
            ok = self.start_larder(r, config=self.pg_config(sslmode="verify-ca",
                                                            sslrootcert=CERTS.ca))
            self.assertEqual(self.client(ok).hget("user:3", "name"), b"cid")
            out = start_fails(self, self.pg_config(sslmode="verify-full", sslrootcert=CERTS.ca))
            self.assertIn('server certificate for "elsewhere.example"', out)
            self.assertIn('does not match host name "127.0.0.1"', out)
        finally:
            PG.psql("ALTER SYSTEM RESET ssl_cert_file")
            PG.psql("ALTER SYSTEM RESET ssl_key_file")
            PG.psql("SELECT pg_reload_conf()")
            time.sleep(0.3)

    def test_wrong_ca_fails_clearly(self):
        # At start-up: Larder exits, naming the verification failure.
        out = start_fails(self, self.pg_config(sslmode="verify-full", sslrootcert=CERTS.wrong_ca))
        self.assertIn("cannot reach PostgreSQL to read table shapes", out)
        self.assertIn("certificate verify failed", out)

    def test_ca_swapped_while_running_makes_readyz_fail(self):
        # libpq reads sslrootcert on every new connection: once the file holds
        # another CA, reconnects fail, the log says why and /readyz says 503.
        ca_copy = os.path.join(self.tmp_dir(), "root.crt")
        shutil.copyfile(CERTS.ca, ca_copy)
        r = self.start_redis()
        admin = free_port()
        cfg = self.pg_config(sslmode="verify-full", sslrootcert=ca_copy)
        cfg["admin"] = f"{HOST}:{admin}"
        larder = self.start_larder(r, config=cfg)
        c = self.client(larder)
        self.assertEqual(c.hget("user:4", "name"), b"dee")
        self.assertEqual(admin_get(admin, "/readyz")[0], 200)
        self.assertIn("sslmode=verify-full", admin_get(admin, "/config")[1])
        shutil.copyfile(CERTS.wrong_ca, ca_copy)
        PG.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'larder'")

        def not_ready():
            with self.assertRaises(redis.ResponseError):
                c.hget("user:99", "name")  # a miss needs PostgreSQL
            return admin_get(admin, "/readyz")[0] == 503
        wait_until(not_ready, 15, "/readyz to report PostgreSQL unreachable")
        self.assertIn("postgres: cannot connect", admin_get(admin, "/readyz")[1])
        self.assertIn("certificate verify failed", larder.log())

    def tmp_dir(self) -> str:
        d = make_tmpdir("tls-test")
        self.addCleanup(remove_tmpdir, d)
        return d


def tls_redis(certs: "Certs", auth_clients: str = "no") -> dict:
    """RedisServer(tls=...) arguments: TLS only, with the test CA."""
    tls = {"cert": certs.server, "key": certs.server_key, "ca": certs.ca,
           "auth_clients": auth_clients}
    if auth_clients != "no":
        tls.update(client_cert=certs.client, client_key=certs.client_key)
    return tls


def listener_config(port: int, **extra) -> dict:
    tls = {"listen": f"{HOST}:{port}", "cert_file": CERTS.server, "key_file": CERTS.server_key}
    tls.update(extra)
    return {"tls": tls}


def connect_tls(port: int, ca: str | None = None, cert=None, key=None,
                server_hostname: str | None = "localhost", timeout: float = 5.0):
    """A TLS socket to `port` (Python's ssl module), verifying the server."""
    ctx = ssl.create_default_context(cafile=ca or CERTS.ca)
    ctx.check_hostname = server_hostname is not None
    if cert:
        ctx.load_cert_chain(cert, key)
    raw = socket.create_connection((HOST, port), timeout=harness.scaled(timeout))
    try:
        return ctx.wrap_socket(raw, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise


def tls_command(sock, *args) -> bytes:
    sock.sendall(harness.encode_command(*args))
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def closed_within(sock, seconds: float) -> float | None:
    """Seconds until the peer closed `sock` (EOF or reset), None if it did not."""
    start = time.monotonic()
    sock.settimeout(harness.scaled(seconds))
    try:
        while True:
            if not sock.recv(4096):
                return time.monotonic() - start
    except (ConnectionResetError, ssl.SSLError, OSError) as e:
        if isinstance(e, socket.timeout):
            return None
        return time.monotonic() - start


class ClientTlsTest(LarderTestCase):
    """Clients -> Larder's TLS listener; with Redis and PostgreSQL over TLS too."""

    def tls_client(self, port: int, **kwargs) -> redis.Redis:
        kwargs.setdefault("ssl_ca_certs", CERTS.ca)
        c = redis.Redis(host=HOST, port=port, ssl=True, ssl_cert_reqs="required",
                        socket_timeout=harness.scaled(10), **kwargs)
        self.addCleanup(harness.close_client, c)
        return c

    def start_plain_stack(self, **tls):
        r = self.start_redis()
        port = free_port()
        larder = self.start_larder(r, config=listener_config(port, **tls))
        return larder, port

    def test_everything_over_tls(self):
        # Client -> Larder, Larder -> Redis (TLS only) and Larder -> PostgreSQL
        # (verify-full) all over TLS: a read-through miss, a hit, a write-behind.
        r = self.start_redis(tls=tls_redis(CERTS))
        port = free_port()
        cfg = listener_config(port)
        cfg["redis"] = {"tls": {"enabled": True, "ca_file": CERTS.ca}}
        admin = free_port()
        cfg.update({"postgres": {"dsn": PG.dsn(DB), "sslmode": "verify-full",
                                 "sslrootcert": CERTS.ca},
                    "keyspaces": {"users": dict(USERS, near_cache={"enabled": True})},
                    "write_behind": WRITE_BEHIND, "admin": f"{HOST}:{admin}"})
        larder = self.start_larder(r, config=cfg)
        # The near cache's tracking connections (one pair per worker) are TLS too.
        wait_until(lambda: re.search(r"^larder_near_cache_tracking_up 2$",
                                     admin_get(admin, "/metrics")[1], re.M), 10,
                   "both workers' near-cache tracking to be up over TLS")
        c = self.tls_client(port, ssl_check_hostname=True)
        self.assertEqual(c.hget("user:1", "email"), b"ann@example.com")  # miss
        self.assertEqual(r.client().hget("user:1", "email"), b"ann@example.com")  # cached
        self.assertEqual(c.hget("user:1", "email"), b"ann@example.com")  # hit
        c.hset("user:3", "email", "cid@tls.example")
        wait_until(lambda: PG.psql("SELECT email FROM users WHERE id = 3", dbname=DB).strip()
                   == "cid@tls.example", 10, "the write to reach PostgreSQL")
        self.assertEqual(c.hget("user:3", "email"), b"cid@tls.example")
        c.hset("user:3", "email", "cid@example.com")  # as it was, for other tests
        # redis-cli over TLS, verifying Larder's certificate against the CA.
        out = subprocess.run(["redis-cli", "--tls", "--cacert", CERTS.ca, "-h", HOST, "-p",
                              str(port), "HGET", "user:4", "name"], capture_output=True,
                             timeout=30)
        self.assertEqual(out.stdout.strip(), b"dee", out.stderr)
        self.assertGreater(larder_pg_ssl_sessions(), 0)
        # The plain listener still works beside the TLS one.
        self.assertEqual(self.client(larder).hget("user:1", "name"), b"ann")
        wait_until(lambda: PG.psql("SELECT email FROM users WHERE id = 3", dbname=DB).strip()
                   == "cid@example.com", 10, "the restore to reach PostgreSQL")

    def test_plaintext_client_on_tls_port_is_closed_promptly(self):
        larder, port = self.start_plain_stack(handshake_timeout="30s")
        good = self.tls_client(port)
        self.assertTrue(good.ping())
        plain = socket.create_connection((HOST, port), timeout=5)
        self.addCleanup(plain.close)
        plain.sendall(harness.encode_command("PING"))
        took = closed_within(plain, 5)
        self.assertIsNotNone(took, "a plaintext client on the TLS port was not closed")
        self.assertLess(took, harness.scaled(2))  # not the 30 s handshake timeout
        self.assertTrue(good.ping())  # others are unaffected
        self.assertTrue(self.tls_client(port).ping())
        self.assertIn("TLS handshake failed", larder.log())

    def test_silent_client_is_closed_by_the_handshake_timeout_and_counts(self):
        r = self.start_redis()
        port = free_port()
        # The silent clients hold their slots only this long: the check that a
        # fourth client is refused must fit in it, however slow the build.
        timeout_ms = int(harness.scaled(2) * 1000)
        cfg = listener_config(port, handshake_timeout=f"{timeout_ms}ms")
        cfg["limits"] = {"maxclients": 3}
        larder = self.start_larder(r, config=cfg)
        # A witness holds one slot and counts clients from inside, so the
        # count is never disturbed by a probe of its own.
        witness = self.client(larder)

        def clients():
            try:
                return int(witness.info("clients")["connected_clients"])
            except (redis.RedisError, OSError):
                return -1  # refused while a start-up probe still held a slot
        wait_until(lambda: clients() == 1, 10, "the start-up probes to be closed")
        silent = [socket.create_connection((HOST, port), timeout=5) for _ in range(2)]
        for s in silent:
            self.addCleanup(s.close)
        wait_until(lambda: clients() == 3, 2, "the silent TLS clients to count")
        # Two slots are held by clients that never handshake: a fourth client is refused.
        def refused():
            c = larder.raw()
            try:
                return "max number of clients" in str(c.call("PING"))
            except (ConnectionError, OSError):
                return True
            finally:
                c.close()
        wait_until(refused, 5, "maxclients to count the silent TLS clients")
        took = closed_within(silent[0], 10)
        self.assertIsNotNone(took, "the handshake timeout did not close a silent client")
        self.assertLess(took, harness.scaled(3))
        closed_within(silent[1], harness.scaled(5))
        wait_until(lambda: self.client(larder).ping(), 5, "the slots to be free again")
        self.assertIn(f"TLS handshake not done within {timeout_ms} ms", larder.log())

    def test_client_certificates_required(self):
        larder, port = self.start_plain_stack(ca_file=CERTS.ca, verify_clients="required")
        with connect_tls(port, cert=CERTS.client, key=CERTS.client_key) as s:
            self.assertEqual(tls_command(s, "PING"), b"+PONG\r\n")
        for cert, key in ((None, None), (CERTS.stranger, CERTS.stranger_key)):
            # TLS 1.3: the server's refusal arrives after the client's handshake ends.
            try:
                with connect_tls(port, cert=cert, key=key) as s:
                    reply = tls_command(s, "PING")
                self.assertEqual(reply, b"", f"client cert {cert} was accepted")
            except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
                pass
        self.assertIn("TLS handshake failed", larder.log())

    def test_client_certificates_optional(self):
        larder, port = self.start_plain_stack(ca_file=CERTS.ca, verify_clients="optional")
        with connect_tls(port) as s:  # no certificate: fine
            self.assertEqual(tls_command(s, "PING"), b"+PONG\r\n")
        with connect_tls(port, cert=CERTS.client, key=CERTS.client_key) as s:
            self.assertEqual(tls_command(s, "PING"), b"+PONG\r\n")
        try:  # a certificate from another CA: refused
            with connect_tls(port, cert=CERTS.stranger, key=CERTS.stranger_key) as s:
                self.assertEqual(tls_command(s, "PING"), b"")
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            pass

    def test_clients_verify_larder(self):
        larder, port = self.start_plain_stack()
        with connect_tls(port, server_hostname="localhost") as s:
            self.assertEqual(tls_command(s, "PING"), b"+PONG\r\n")
        with self.assertRaises(ssl.SSLCertVerificationError) as raised:
            connect_tls(port, server_hostname="elsewhere.example")
        self.assertIn("match", str(raised.exception))
        with self.assertRaises(ssl.SSLCertVerificationError):
            connect_tls(port, ca=CERTS.wrong_ca)
        out = subprocess.run(["redis-cli", "--tls", "--cacert", CERTS.wrong_ca, "-h", HOST,
                              "-p", str(port), "PING"], capture_output=True, timeout=30)
        self.assertNotIn(b"PONG", out.stdout)

    def test_min_version_tls13(self):
        larder, port = self.start_plain_stack(min_version="TLS1.3")
        ctx = ssl.create_default_context(cafile=CERTS.ca)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        raw = socket.create_connection((HOST, port), timeout=5)
        self.addCleanup(raw.close)
        with self.assertRaises(ssl.SSLError):
            ctx.wrap_socket(raw, server_hostname="localhost")
        with connect_tls(port) as s:
            self.assertEqual(s.version(), "TLSv1.3")

    def test_bad_certificate_files_stop_start_up(self):
        port = free_port()
        cases = [
            ({"cert_file": CERTS.path("server.ext")},
             f"tls.cert_file: cannot load '{CERTS.path('server.ext')}': "),
            ({"key_file": CERTS.client_key},
             f"tls.key_file: cannot load '{CERTS.client_key}': key values mismatch"),
            ({"cert_file": "/nonexistent.crt"}, "tls.cert_file: cannot read '/nonexistent.crt'"),
        ]
        for extra, expected in cases:
            self.assertIn(expected, start_fails(self, listener_config(port, **extra)))

    def test_reload_rereads_certificates(self):
        d = make_tmpdir("tls-rotate")
        self.addCleanup(remove_tmpdir, d)
        crt, key = os.path.join(d, "live.crt"), os.path.join(d, "live.key")
        shutil.copyfile(CERTS.server, crt)
        shutil.copyfile(CERTS.server_key, key)
        larder, port = self.start_plain_stack(cert_file=crt, key_file=key)
        with connect_tls(port) as s:
            old = s.getpeercert()
        shutil.copyfile(CERTS.other_name, crt)
        shutil.copyfile(CERTS.other_name_key, key)
        reply = self.client(larder).execute_command("LARDER", "RELOAD")
        self.assertIn(b"applied: tls: certificate files re-read", reply)
        with connect_tls(port, server_hostname="elsewhere.example") as s:
            new = s.getpeercert()
        self.assertNotEqual(old["subject"], new["subject"])
        # A broken file rejects the reload and keeps the running certificate.
        with open(key, "w") as f:
            f.write("not a key")
        with self.assertRaises(redis.ResponseError):
            self.client(larder).execute_command("LARDER", "RELOAD")
        with connect_tls(port, server_hostname="elsewhere.example") as s:
            self.assertEqual(tls_command(s, "PING"), b"+PONG\r\n")


class RedisTlsTest(LarderTestCase):
    """Larder -> Redis over TLS (redis-server --port 0 --tls-port N)."""

    def start_stack(self, redis_tls: dict, auth_clients: str = "no", wait: bool = True):
        r = self.start_redis(tls=tls_redis(CERTS, auth_clients))
        larder = self.start_larder(r, config={"redis": {"tls": redis_tls}}, wait_backend=wait)
        return larder, r

    def test_commands_pass_through_over_tls(self):
        larder, r = self.start_stack({"enabled": True, "ca_file": CERTS.ca})
        c = self.client(larder)
        c.set("k", "v")
        self.assertEqual(c.get("k"), b"v")
        self.assertEqual(r.client().get("k"), b"v")
        c.execute_command("MULTI")  # a pinned connection, made over TLS too
        c.execute_command("INCR", "n")
        self.assertEqual(c.execute_command("EXEC"), [1])

    def test_wrong_ca_is_refused(self):
        larder, _ = self.start_stack({"enabled": True, "ca_file": CERTS.wrong_ca}, wait=False)
        wait_until(lambda: "certificate verify failed" in larder.log(), 10,
                   "Larder to log the verification failure")
        self.assertNotEqual(larder.info_larder().get("backend_redis_status"), "ok")
        with self.assertRaises(redis.ResponseError) as raised:
            self.client(larder).get("k")
        self.assertIn("TLS handshake", str(raised.exception))

    def test_server_name_is_verified(self):
        larder, _ = self.start_stack({"enabled": True, "ca_file": CERTS.ca,
                                      "server_name": "elsewhere.example"}, wait=False)
        wait_until(lambda: "expected name elsewhere.example" in larder.log(), 10,
                   "Larder to log the name mismatch")
        self.assertNotEqual(larder.info_larder().get("backend_redis_status"), "ok")
        ok, _ = self.start_stack({"enabled": True, "ca_file": CERTS.ca,
                                  "server_name": "localhost"})
        self.assertTrue(self.client(ok).ping())

    def test_client_certificate_for_redis(self):
        # redis-server --tls-auth-clients yes: Larder needs its certificate.
        larder, _ = self.start_stack({"enabled": True, "ca_file": CERTS.ca}, auth_clients="yes",
                                     wait=False)
        wait_until(lambda: "TLS handshake with" in larder.log() or
                   "connection lost" in larder.log(), 10, "Larder to log the refusal")
        self.assertNotEqual(larder.info_larder().get("backend_redis_status"), "ok")
        ok, r = self.start_stack({"enabled": True, "ca_file": CERTS.ca,
                                  "cert_file": CERTS.client, "key_file": CERTS.client_key},
                                 auth_clients="yes")
        self.client(ok).set("a", "1")
        self.assertEqual(r.client().get("a"), b"1")


if __name__ == "__main__":
    harness.main()
