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


if __name__ == "__main__":
    harness.main()
