"""Test harness for Larder's integration and end-to-end tests.

Run the tests with Debian's interpreter, which has python3-redis:

    /usr/bin/python3 tests/integration/test_passthrough.py

Everything here binds 127.0.0.1 only, picks ports dynamically and keeps its
files in a fresh temporary directory, so several test files can run at once
(``ctest -j2``). Every wait is bounded and fails with a message saying what was
being waited for.

Main pieces:

* ``free_port()``                  a free TCP port on 127.0.0.1
* ``RedisServer``                  a private redis-server (start/stop/kill/restart)
* ``PostgresServer``               a private PostgreSQL 15 cluster (initdb + pg_ctl)
* ``Larder``                       the proxy under test, from $LARDER_BINARY
* ``RawClient``                    a plain socket speaking RESP, for byte-exact checks
* ``TcpRelay``                     a pausable TCP relay, for blackholed Redis/PostgreSQL
* ``LarderTestCase``               unittest base class whose helpers register
                                   cleanups, so processes and temp dirs go away
                                   even when a test fails

At the end of a test Larder gets SIGTERM and a grace period, not SIGKILL, so
that an AddressSanitizer build runs LeakSanitizer at exit; a sanitizer report in
its log, or exit status 86 (the sanitizer exitcode set by scripts/test.sh),
fails the test and shows the report. Tests that kill -9 Larder still can
(``Larder.kill()``).

LARDER_TEST_SLOW (a float, default 1; the sanitizer pass of scripts/test.sh
sets 3) multiplies every timeout and deadline the harness applies:
``wait_until``, socket timeouts, ``RawClient.expect_closed``, start and stop
waits, ``run_threads`` and ``LarderTestCase.assertFast``. Tests scale their own
fixed limits with ``scaled()``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

try:
    import redis  # Debian's python3-redis
except ImportError:  # pragma: no cover - explained to the person running the test
    sys.stderr.write(
        "harness: the 'redis' module is missing; run the tests with /usr/bin/python3 "
        "(Debian's python3-redis)\n")
    raise

HOST = "127.0.0.1"


def _slow_factor() -> float:
    text = os.environ.get("LARDER_TEST_SLOW", "").strip()
    try:
        factor = float(text) if text else 1.0
    except ValueError:
        factor = 0.0
    if not factor > 0:
        sys.stderr.write(f"harness: LARDER_TEST_SLOW={text!r} is not a positive number\n")
        sys.exit(2)
    return factor


# How much slower than usual the binary under test is (an -O0 ASan build on a
# busy machine: ~3). Every harness timeout is multiplied by it.
SLOW = _slow_factor()


def scaled(seconds: float) -> float:
    """A timeout, deadline or latency limit in seconds, scaled by LARDER_TEST_SLOW."""
    return seconds * SLOW


DEFAULT_TIMEOUT = 10.0  # seconds before scaling
# SIGTERM at the end of a test: Larder drains for at most 10 s (clients) + the
# write-behind drain_timeout (10 s) + 3 s (workers) before it exits by itself.
GRACEFUL_STOP_TIMEOUT = 30.0
# ASAN_OPTIONS / UBSAN_OPTIONS exitcode in scripts/test.sh; Larder never uses it.
SANITIZER_EXIT_CODE = 86
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")
LARDER_BINARY = os.environ.get("LARDER_BINARY", "/work/main/build/larder")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
PG_BIN = os.environ.get("LARDER_PG_BIN", "/usr/lib/postgresql/15/bin")
KEEP_TMP = os.environ.get("LARDER_TEST_KEEP_TMP") == "1"

# --------------------------------------------------------------------- basics


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = DEFAULT_TIMEOUT, what: str = "condition",
               interval: float = 0.02):
    """Polls predicate() until it returns a true value, which is returned.

    Exceptions from predicate count as "not yet". Raises AssertionError naming
    `what` (and the last exception) after `timeout` seconds (scaled by
    LARDER_TEST_SLOW).
    """
    timeout = scaled(timeout)
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last_error = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(interval)


def port_accepts(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


try:
    _LIBC = ctypes.CDLL("libc.so.6", use_errno=True)  # loaded here, not after fork()
except OSError:  # pragma: no cover
    _LIBC = None


def _set_pdeathsig():
    """In the child: die with SIGKILL if the test process dies (e.g. ctest timeout)."""
    if _LIBC is not None:
        PR_SET_PDEATHSIG = 1
        _LIBC.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))


# Every process the harness starts, so that an interpreter exit (even after an
# error outside unittest's cleanups) leaves nothing behind.
_live_processes: set = set()
_live_dirs: set = set()
_registry_lock = threading.Lock()


def _spawn(argv, log_path, env=None, cwd=None) -> subprocess.Popen:
    log = open(log_path, "ab")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=cwd, preexec_fn=_set_pdeathsig)
    finally:
        log.close()
    with _registry_lock:
        _live_processes.add(proc)
    return proc


def _reap(proc: subprocess.Popen, sig=signal.SIGKILL, timeout: float = DEFAULT_TIMEOUT):
    timeout = scaled(timeout)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    with _registry_lock:
        _live_processes.discard(proc)


def make_tmpdir(prefix: str) -> str:
    path = tempfile.mkdtemp(prefix=f"larder-it-{prefix}-")
    with _registry_lock:
        _live_dirs.add(path)
    return path


def remove_tmpdir(path: str):
    with _registry_lock:
        _live_dirs.discard(path)
    if not KEEP_TMP:
        shutil.rmtree(path, ignore_errors=True)


@atexit.register
def _cleanup_everything():
    for proc in list(_live_processes):
        with contextlib.suppress(Exception):
            _reap(proc, signal.SIGKILL, timeout=5)
    for path in list(_live_dirs):
        remove_tmpdir(path)


def read_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _scale_socket_timeouts(kwargs: dict):
    """redis.Redis keyword arguments: default and scale the socket timeouts."""
    for key in ("socket_timeout", "socket_connect_timeout"):
        value = kwargs.get(key, DEFAULT_TIMEOUT)
        kwargs[key] = scaled(value) if isinstance(value, (int, float)) else value


def rss_kb(pid: int) -> int:
    """VmRSS of a process in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


# ---------------------------------------------------------------- redis-server


class RedisServer:
    """A private redis-server on 127.0.0.1 with no persistence.

    The port stays the same across stop()/kill() and restart(), so a proxy
    pointed at it can reconnect.
    """

    def __init__(self, password: str | None = None, extra_args=(), port: int | None = None,
                 username: str | None = None, tls: dict | None = None):
        """password alone: --requirepass. With username, the ACL user must be
        created through extra_args (e.g. "--user", NAME, "on", ">PW", ...).
        tls ({"cert", "key", "ca"} paths, optional "auth_clients": "yes"/"no"/
        "optional"; default "no"): TLS only, the port is the TLS port."""
        self.password = password
        self.username = username
        self.tls = dict(tls) if tls else None
        self.extra_args = list(extra_args)
        self.port = port or free_port()
        self.dir = make_tmpdir("redis")
        self.log_path = os.path.join(self.dir, "redis.log")
        self.proc: subprocess.Popen | None = None
        self._fixed_port = port is not None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def _argv(self):
        ports = ["--port", str(self.port)]
        if self.tls:
            ports = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file",
                     self.tls["cert"], "--tls-key-file", self.tls["key"], "--tls-ca-cert-file",
                     self.tls["ca"], "--tls-auth-clients", self.tls.get("auth_clients", "no")]
        argv = [REDIS_SERVER] + ports + ["--bind", HOST, "--save", "", "--appendonly", "no",
                                         "--dir", self.dir, "--protected-mode", "no"]
        if self.password and not self.username:
            argv += ["--requirepass", self.password]
        return argv + self.extra_args

    def start(self, timeout: float = DEFAULT_TIMEOUT):
        assert self.proc is None or self.proc.poll() is not None, "redis-server already running"
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            self.proc = _spawn(self._argv(), self.log_path)
            try:
                self._wait_ready(timeout)
                return self
            except AssertionError:
                log = read_text(self.log_path)
                if (attempt + 1 < attempts and self.proc.poll() is not None
                        and "Address already in use" in log):
                    self.port = free_port()  # lost a race for the port; try another
                    continue
                raise
        return self

    def restart(self, timeout: float = DEFAULT_TIMEOUT):
        """Starts again on the same port (after stop() or kill())."""
        self._fixed_port = True
        deadline = time.monotonic() + scaled(timeout)
        while True:
            try:
                return self.start(timeout=max(1.0, (deadline - time.monotonic()) / SLOW))
            except AssertionError:
                # The port may still be held for a moment by the dead process.
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    def _wait_ready(self, timeout: float):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"redis-server exited with {self.proc.returncode}:\n"
                    f"{tail(read_text(self.log_path))}")
            return self.client(socket_timeout=1).ping()

        try:
            wait_until(ready, timeout, f"redis-server on port {self.port} to answer PING")
        except AssertionError as e:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"redis-server on port {self.port} exited with {self.proc.returncode}:\n"
                    f"{tail(read_text(self.log_path))}") from e
            raise

    def client(self, **kwargs) -> redis.Redis:
        _scale_socket_timeouts(kwargs)
        if self.tls:
            kwargs.setdefault("ssl", True)
            kwargs.setdefault("ssl_ca_certs", self.tls["ca"])
            if self.tls.get("client_cert"):
                kwargs.setdefault("ssl_certfile", self.tls["client_cert"])
                kwargs.setdefault("ssl_keyfile", self.tls["client_key"])
        return redis.Redis(host=HOST, port=self.port, username=self.username,
                           password=self.password, **kwargs)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM and wait (no persistence configured, so it is quick)."""
        if self.proc is not None:
            _reap(self.proc, signal.SIGTERM)

    def kill(self):
        """SIGKILL: the connections drop with no goodbye, as in a crash."""
        if self.proc is not None:
            _reap(self.proc, signal.SIGKILL)

    def log(self) -> str:
        return read_text(self.log_path)

    def cleanup(self):
        self.kill()
        remove_tmpdir(self.dir)

    def __enter__(self):
        return self.start() if not self.running() else self

    def __exit__(self, *exc):
        self.cleanup()


# ------------------------------------------------------------------ PostgreSQL


class PostgresServer:
    """A private PostgreSQL 15 cluster in a temporary directory.

    Listens on 127.0.0.1 only, on a free port; its Unix socket lives inside the
    temp dir. Authentication is `trust` for the superuser `postgres`.
    PostgreSQL refuses to run as root, so as root the server tools run as the
    `postgres` account through runuser, and the temp dir is chowned to it.
    """

    SUPERUSER = "postgres"

    def __init__(self, port: int | None = None, conf_lines=(), hba_lines=None, files=None):
        """conf_lines are appended to postgresql.conf; hba_lines, when given,
        replace pg_hba.conf; files ({name: source path}) are copied into the
        data directory, owned by the server and private (e.g. TLS keys)."""
        self.port = port or free_port()
        self._fixed_port = port is not None
        self.conf_lines = list(conf_lines)
        self.hba_lines = list(hba_lines) if hba_lines is not None else None
        self.files = dict(files or {})
        self.dir = make_tmpdir("pg")
        self.data_dir = os.path.join(self.dir, "data")
        self.socket_dir = self.dir
        self.log_path = os.path.join(self.dir, "postgres.log")
        self._as_root = os.geteuid() == 0
        if self._as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            os.chmod(self.dir, 0o700)
        self._initialized = False
        self.proc: subprocess.Popen | None = None

    # -- running the server tools
    def _tool(self, name: str):
        path = os.path.join(PG_BIN, name)
        if not os.path.exists(path):
            raise unittest.SkipTest(f"PostgreSQL tool {path} is not installed")
        return ([shutil.which("runuser") or "/usr/sbin/runuser", "-u", "postgres", "--", path]
                if self._as_root else [path])

    def _run_tool(self, name: str, *args, timeout: float = 60.0) -> str:
        argv = self._tool(name) + list(args)
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=timeout, cwd=self.dir,
                             env=self._env())
        out = res.stdout.decode(errors="replace")
        if res.returncode != 0:
            raise AssertionError(f"{name} {' '.join(args)} failed ({res.returncode}):\n{out}\n"
                                 f"server log:\n{tail(read_text(self.log_path))}")
        return out

    def _env(self):
        env = dict(os.environ)
        env.pop("PGDATA", None)
        env.update(LC_ALL="C", LANG="C", PGHOST=HOST, PGPORT=str(self.port))
        return env

    def initdb(self):
        self._run_tool("initdb", "-D", self.data_dir, "-U", self.SUPERUSER, "--auth=trust",
                       "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
        self._initialized = True
        owner = pwd.getpwnam("postgres") if self._as_root else None
        for name, source in self.files.items():
            target = os.path.join(self.data_dir, name)
            shutil.copyfile(source, target)
            os.chmod(target, 0o600)
            if owner is not None:
                os.chown(target, owner.pw_uid, owner.pw_gid)
        if self.conf_lines:
            with open(os.path.join(self.data_dir, "postgresql.conf"), "a") as f:
                f.write("\n".join(self.conf_lines) + "\n")
        if self.hba_lines is not None:
            with open(os.path.join(self.data_dir, "pg_hba.conf"), "w") as f:
                f.write("\n".join(self.hba_lines) + "\n")

    def start(self, timeout: float = 30.0):
        """Runs the postmaster as a child of this process (through runuser when
        root), so that kill() leaves no unreaped zombie holding the lock files."""
        assert not self.running(), "PostgreSQL already running"
        if not self._initialized:
            self.initdb()
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            argv = self._tool("postgres") + [
                "-D", self.data_dir, "-p", str(self.port), "-k", self.socket_dir,
                "-c", f"listen_addresses={HOST}", "-c", "fsync=off",
                "-c", "full_page_writes=off"]
            log_offset = len(read_text(self.log_path))
            self.proc = _spawn(argv, self.log_path, env=self._env(), cwd=self.dir)

            def ready():
                if self.proc.poll() is not None:
                    return "exited"
                return self.psql("SELECT 1", timeout=5).strip() == "1"

            state = wait_until(ready, timeout, f"PostgreSQL on port {self.port} to answer a query")
            if state == "exited":
                log = read_text(self.log_path)[log_offset:]
                _reap(self.proc)
                if attempt + 1 < attempts and "Address already in use" in log:
                    self.port = free_port()  # lost a race for the port; try another
                    continue
                raise AssertionError(f"PostgreSQL exited at start-up:\n{tail(log)}")
            return self
        return self

    def restart(self, timeout: float = 30.0):
        """Starts again on the same port and data dir (after stop() or kill())."""
        self._fixed_port = True
        return self.start(timeout)

    def postmaster_pid(self) -> int | None:
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as f:
                pid = int(f.readline().strip())
        except (FileNotFoundError, ValueError, PermissionError):
            return None
        return pid if _pid_alive(pid) else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0):
        """Fast shutdown (SIGINT to the postmaster), waiting for it to finish."""
        if not self.running():
            return
        pid = self.postmaster_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"PostgreSQL did not stop within {timeout}s:\n"
                                 f"{tail(self.log())}") from None
        _reap(self.proc)

    def kill(self, timeout: float = DEFAULT_TIMEOUT):
        """SIGKILL the postmaster and its children, as in a crash."""
        if self.proc is None:
            return
        pid = self.postmaster_pid()
        victims = ([pid] + _children_of(pid)) if pid is not None else []
        for p in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        wait_until(lambda: not any(_pid_alive(p) for p in victims), timeout,
                   "PostgreSQL processes to exit after SIGKILL")
        _reap(self.proc)

    # -- clients
    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        return f"host={HOST} port={self.port} dbname={dbname} user={user}"

    def psql(self, sql: str, dbname: str = "postgres", timeout: float = 30.0) -> str:
        """Runs SQL with psql -At (unaligned, tuples only); returns stdout."""
        psql = os.path.join(PG_BIN, "psql")
        if not os.path.exists(psql):
            psql = shutil.which("psql") or "psql"
        res = subprocess.run([psql, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-p",
                              str(self.port), "-U", self.SUPERUSER, "-d", dbname, "-c", sql],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=timeout, env=self._env())
        if res.returncode != 0:
            raise AssertionError(f"psql failed ({res.returncode}) for {sql!r}:\n"
                                 f"{res.stderr.decode(errors='replace')}")
        return res.stdout.decode()

    def create_database(self, name: str):
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name), f"bad database name {name!r}"
        self.psql(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def log(self) -> str:
        return read_text(self.log_path)

    def cleanup(self):
        with contextlib.suppress(Exception):
            self.stop(timeout=10)
        with contextlib.suppress(Exception):
            self.kill()
        remove_tmpdir(self.dir)

    def __enter__(self):
        return self.start() if not self.running() else self

    def __exit__(self, *exc):
        self.cleanup()


class HeldSession:
    """A psql session kept open on a pipe, holding table locks while a test
    acts: ACCESS EXCLUSIVE holds every reader and writer (a load, the
    flusher); EXCLUSIVE holds writers only (the flusher) and lets loads through."""

    def __init__(self, pg: PostgresServer, dbname: str, mode: str = "ACCESS EXCLUSIVE"):
        self.mode = mode
        psql = os.path.join(PG_BIN, "psql")
        if not os.path.exists(psql):
            psql = shutil.which("psql") or "psql"
        self.proc = subprocess.Popen(
            [psql, "-X", "-At", "-q", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-p", str(pg.port),
             "-U", pg.SUPERUSER, "-d", dbname],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=pg._env())

    def lock(self, tables: str, timeout: float = 10.0):
        self.proc.stdin.write(
            f"BEGIN; LOCK TABLE {tables} IN {self.mode} MODE; SELECT 'locked';\n".encode())
        self.proc.stdin.flush()
        result = {}
        reader = threading.Thread(
            target=lambda: result.setdefault("line", self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(scaled(timeout))
        if result.get("line", b"").strip() != b"locked":
            raise AssertionError(f"could not lock {tables}: {result!r}")
        return self

    def release(self, timeout: float = 10.0):
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(BrokenPipeError, OSError):
            self.proc.stdin.write(b"COMMIT;\n")
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(Exception):
                f.close()


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _children_of(pid: int) -> list:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(entry))
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return out


# ----------------------------------------------------------------------- YAML


_PLAIN = re.compile(r"[A-Za-z0-9_./:@%+-]+")


def _yaml_scalar(value) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "~"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and not text.startswith(("-", ":", "@", "%")):
        return text
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(mapping: dict, indent: int = 0) -> str:
    out = []
    pad = "  " * indent
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.append(f"{pad}{key}:")
            out.append(to_yaml(value, indent + 1).rstrip("\n"))
        elif isinstance(value, (list, tuple)) and any(isinstance(v, (dict, list)) for v in value):
            out.append(f"{pad}{key}: {json.dumps(value)}")  # JSON is YAML flow style
        elif isinstance(value, (list, tuple)):
            out.append(f"{pad}{key}: [{', '.join(_yaml_scalar(v) for v in value)}]")
        else:
            out.append(f"{pad}{key}: {_yaml_scalar(value)}")
    return "\n".join(line for line in out if line) + "\n"


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------- Larder


def module_postgres(dbname: str, schema: str, **kwargs) -> PostgresServer:
    """For setUpModule: a PostgreSQL (PostgresServer(**kwargs)) with database
    `dbname` holding `schema`, cleaned up when the module's tests are done."""
    pg = PostgresServer(**kwargs)
    unittest.addModuleCleanup(pg.cleanup)
    pg.start()
    pg.create_database(dbname)
    pg.psql(schema, dbname=dbname)
    return pg


class Larder:
    """The proxy under test, configured through a YAML file in a temp dir.

    `redis` is a RedisServer (or an "host:port" string); `config` is merged
    over the defaults, e.g. {"limits": {"maxclients": 5}, "idle_timeout": "1s"}.
    """

    def __init__(self, redis_server=None, config: dict | None = None, requirepass: str | None = None,
                 threads: int = 2, binary: str | None = None, log_level: str = "debug",
                 env: dict | None = None, wait_backend: bool = True):
        self.binary = binary or LARDER_BINARY
        if not os.access(self.binary, os.X_OK):
            raise AssertionError(f"Larder binary {self.binary} not found; build it or set "
                                 "LARDER_BINARY")
        self.redis_server = redis_server
        self.requirepass = requirepass
        self.port = free_port()
        self.dir = make_tmpdir("larder")
        self.config_path = os.path.join(self.dir, "larder.yaml")
        self.log_path = os.path.join(self.dir, "larder.log")
        self.log_level = log_level
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.exit_code: int | None = None
        self._sanitizer_reported = False
        self.extra = dict(config or {})
        self.threads = threads
        # start() also waits until every shared backend connection is up
        # (INFO larder: backend_redis_status:ok); pass False when the backend
        # is meant to be unreachable.
        self.wait_backend = wait_backend
        self.write_config()

    @property
    def redis_address(self) -> str:
        if isinstance(self.redis_server, RedisServer):
            return self.redis_server.address
        return str(self.redis_server or f"{HOST}:6379")

    def config_dict(self) -> dict:
        cfg = {"listen": f"{HOST}:{self.port}", "threads": self.threads, "idle_timeout": 0}
        if self.requirepass:
            cfg["requirepass"] = self.requirepass
        redis_cfg = {"address": self.redis_address, "db": 0}
        if isinstance(self.redis_server, RedisServer) and self.redis_server.password:
            redis_cfg["password"] = self.redis_server.password
            if self.redis_server.username:
                redis_cfg["username"] = self.redis_server.username
        cfg["redis"] = redis_cfg
        cfg["limits"] = {"max_inflight_per_client": 1024, "client_output_limit": "64mb",
                         "maxclients": 10000, "max_bulk_len": "512mb"}
        return _merge(cfg, self.extra)

    def write_config(self):
        with open(self.config_path, "w") as f:
            f.write(to_yaml(self.config_dict()))

    def start(self, timeout: float = DEFAULT_TIMEOUT):
        assert self.proc is None or self.proc.poll() is not None, "Larder already running"
        for attempt in range(3):
            self.write_config()
            env = dict(os.environ)
            if self.env:
                env.update(self.env)
            self.exit_code = None
            self.proc = _spawn([self.binary, "--config", self.config_path, "--log-level",
                                self.log_level], self.log_path, env=env, cwd=self.dir)

            def ready():
                if self.proc.poll() is not None:
                    return "exited"
                return port_accepts(self.port)

            try:
                state = wait_until(ready, timeout, f"Larder to accept connections on {self.port}")
            except AssertionError as e:
                raise AssertionError(f"{e}\nLarder log:\n{tail(self.log())}") from None
            if state == "exited":
                log = self.log()
                if attempt < 2 and ("in use" in log or "Address already" in log):
                    self.port = free_port()  # lost a race for the port; try another
                    continue
                raise AssertionError(f"Larder exited with {self.proc.returncode} at start-up:\n"
                                     f"{tail(log)}")
            if self.wait_backend:
                self.wait_backend_status("ok", timeout)
            return self
        return self

    def wait_backend_status(self, status: str, timeout: float = DEFAULT_TIMEOUT):
        """Waits until INFO larder reports backend_redis_status:<status>."""
        def check():
            return self.info_larder().get("backend_redis_status") == status
        try:
            wait_until(check, timeout, f"Larder to report backend_redis_status:{status}")
        except AssertionError as e:
            raise AssertionError(f"{e}\nLarder log:\n{tail(self.log())}") from None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0, expect_code: int | None = 0) -> int:
        """SIGTERM, wait for exit, and (by default) assert exit code 0."""
        if self.proc is None:
            return 0
        timeout = scaled(timeout)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _reap(self.proc, signal.SIGKILL)
                raise AssertionError(f"Larder did not exit within {timeout:.0f}s of SIGTERM:\n"
                                     f"{tail(self.log())}") from None
        with _registry_lock:
            _live_processes.discard(self.proc)
        self.exit_code = self.proc.returncode
        if expect_code is not None and self.exit_code != expect_code:
            raise AssertionError(self.sanitizer_report() or
                                 f"Larder exited with {self.exit_code}, expected {expect_code}:\n"
                                 f"{tail(self.log())}")
        return self.exit_code

    def stop_gracefully(self, timeout: float = GRACEFUL_STOP_TIMEOUT):
        """The end of a test: SIGTERM and up to `timeout` (scaled) seconds to
        exit by itself, so that LeakSanitizer runs in an ASan build; SIGKILL
        after that, and an AssertionError saying so. A Larder that is already
        gone (stopped or killed by the test) is left as it is."""
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self.exit_code = self.proc.returncode
            return
        timeout = scaled(timeout)
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.exit_code = self.proc.returncode
            raise AssertionError(f"Larder did not exit within {timeout:.0f}s of SIGTERM at the "
                                 f"end of the test; killed:\n{tail(self.log())}") from None
        finally:
            with _registry_lock:
                _live_processes.discard(self.proc)

    def sanitizer_report(self) -> str | None:
        """The sanitizer report in Larder's log (its stderr), or a note on exit
        status 86; None when there is neither."""
        lines = self.log().splitlines()
        first = next((i for i, line in enumerate(lines)
                      if any(m in line for m in SANITIZER_MARKERS)), None)
        code = self.proc.returncode if self.proc is not None else None
        if first is None and code != SANITIZER_EXIT_CODE:
            return None
        head = (f"Larder exited with status {code} (the sanitizer exitcode)"
                if code == SANITIZER_EXIT_CODE else "Larder's log has a sanitizer report")
        if first is None:
            return f"{head}; log tail:\n{tail(chr(10).join(lines), 60)}"
        report = lines[max(0, first - 1):first + 80]
        summary = [line for line in lines[first + 80:] if line.startswith("SUMMARY:")]
        return f"{head}:\n" + "\n".join(report + summary)

    def wait_exit(self, timeout: float = 15.0) -> int:
        timeout = scaled(timeout)
        try:
            self.exit_code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"Larder still running after {timeout}s:\n"
                                 f"{tail(self.log())}") from None
        with _registry_lock:
            _live_processes.discard(self.proc)
        return self.exit_code

    def kill(self):
        if self.proc is not None:
            _reap(self.proc, signal.SIGKILL)

    def log(self) -> str:
        return read_text(self.log_path)

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    def client(self, password: str | None = None, **kwargs) -> redis.Redis:
        _scale_socket_timeouts(kwargs)
        return redis.Redis(host=HOST, port=self.port, password=password, **kwargs)

    def raw(self, timeout: float = DEFAULT_TIMEOUT) -> "RawClient":
        return RawClient(self.port, timeout=timeout)

    def info_larder(self, password: str | None = None) -> dict:
        c = self.client(password=password or self.requirepass, socket_timeout=5)
        try:
            return c.info("larder")
        finally:
            close_client(c)

    def cleanup(self):
        """Graceful stop (see stop_gracefully), then the temp dir goes. Raises
        on a sanitizer report that check_log_clean has not raised already."""
        try:
            self.stop_gracefully()
            report = None if self._sanitizer_reported else self.sanitizer_report()
            if report:
                self._sanitizer_reported = True
                raise AssertionError(report)
        finally:
            self.kill()
            remove_tmpdir(self.dir)

    def __enter__(self):
        return self.start() if not self.running() else self

    def __exit__(self, *exc):
        self.cleanup()


# ----------------------------------------------------------------- raw RESP


class RespError(Exception):
    """An error reply read by RawClient.read_reply()."""

    def __eq__(self, other):
        return isinstance(other, RespError) and self.args == other.args

    def __hash__(self):
        return hash(self.args)


class ConnectionClosed(Exception):
    pass


class TcpRelay:
    """A TCP relay on 127.0.0.1 to `target_port`, for blackhole tests.

    pause() stops forwarding in both directions and closes nothing: to both
    ends the other side simply goes silent (their data is still accepted by
    the relay's kernel, so TCP keepalives and TCP_USER_TIMEOUT see a live
    peer; only the application's own timeouts can notice). resume() forwards
    again, including whatever waited. close() drops every connection.
    Loopback only; every thread is a daemon and every wait is bounded.
    """

    def __init__(self, target_port: int, target_host: str = HOST):
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, 0))
        self._listener.listen(128)
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._paused = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets = []
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def pause(self):
        self._paused.set()

    def resume(self):
        self._paused.clear()

    def close(self):
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self):
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src, dst):
        import select
        try:
            while not self._closed.is_set():
                if self._paused.is_set():
                    time.sleep(0.02)  # leave the bytes unread: the peer hears nothing
                    continue
                ready, _, _ = select.select([src], [], [], 0.1)
                if not ready or self._paused.is_set():
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class RawClient:
    """A plain TCP client for byte-exact protocol tests."""

    def __init__(self, port: int, host: str = HOST, timeout: float = DEFAULT_TIMEOUT):
        timeout = scaled(timeout)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def command(self, *args) -> bytes:
        return encode_command(*args)

    def send_command(self, *args):
        self.send(encode_command(*args))

    def call(self, *args):
        self.send_command(*args)
        return self.read_reply()

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError(f"no data from the server within {self.timeout}s "
                                 f"(buffered: {self.buf[:200]!r})") from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise ConnectionClosed(f"connection closed (buffered: {self.buf[:200]!r})")
        self.buf += chunk

    def _line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            self._fill()

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_reply(self):
        """One reply, parsed: str for +, RespError for -, int, bytes/None, list."""
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._exact(n + 2)
            assert data[-2:] == b"\r\n", f"bad bulk terminator {data[-2:]!r}"
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self.read_reply() for _ in range(n)]
        raise AssertionError(f"unexpected reply line {line!r}")

    def read_raw(self, n: int) -> bytes:
        return self._exact(n)

    def read_line(self) -> bytes:
        return self._line()

    def expect_closed(self, timeout: float = 5.0) -> bytes:
        """Waits for EOF (or reset); returns any bytes that arrived before it."""
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        extra = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"connection still open after {timeout:.1f}s "
                                     f"(unread: {(self.buf + extra)[:200]!r})")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            finally:
                self.sock.settimeout(self.timeout)
            if not chunk:
                data, self.buf = self.buf + extra, b""
                return data
            extra += chunk

    def is_open(self, wait: float = 0.2) -> bool:
        """True if the peer has not closed the connection (data is left buffered)."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return True
        except (ConnectionResetError, BrokenPipeError):
            return False
        finally:
            self.sock.settimeout(self.timeout)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def encode_command(*args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


# ------------------------------------------------------------- test base class


class LarderTestCase(unittest.TestCase):
    """Base class: every helper registers its cleanup with addCleanup, so
    processes are killed and temp dirs removed even when the test fails.

    Subclasses that want one Redis + Larder for the whole class can call
    start_shared() from setUpClass; it uses addClassCleanup.
    """

    maxDiff = 4000

    # -- per-test resources
    def start_redis(self, **kwargs) -> RedisServer:
        server = RedisServer(**kwargs)
        self.addCleanup(server.cleanup)
        return server.start()

    def start_larder(self, redis_server=None, start: bool = True, **kwargs) -> Larder:
        larder = Larder(redis_server, **kwargs)
        # Cleanups run last-in first-out: SIGTERM first, so that the checks
        # see the whole log, LeakSanitizer's report at exit included.
        self.addCleanup(larder.cleanup)
        self.addCleanup(self._dump_log_on_failure, larder)
        self.addCleanup(check_log_clean, larder)
        self.addCleanup(larder.stop_gracefully)
        return larder.start() if start else larder

    def start_postgres(self, **kwargs) -> PostgresServer:
        server = PostgresServer(**kwargs)
        self.addCleanup(server.cleanup)
        return server.start()

    def client(self, larder: Larder, **kwargs) -> redis.Redis:
        c = larder.client(**kwargs)
        self.addCleanup(_close_quietly, c)
        return c

    def raw(self, larder: Larder, timeout: float = DEFAULT_TIMEOUT) -> RawClient:
        c = larder.raw(timeout=timeout)
        self.addCleanup(c.close)
        return c

    def run(self, result=None):
        """Also shows the class-wide Larder's log when a test using it fails."""
        if result is None:
            return super().run(result)
        bad_before = len(result.failures) + len(result.errors)
        out = super().run(result)
        shared = getattr(type(self), "larder", None)
        if isinstance(shared, Larder) and len(result.failures) + len(result.errors) > bad_before:
            sys.stderr.write(f"\n--- shared Larder log ({self.id()}) ---\n"
                             f"{tail(shared.log(), 60)}\n")
        return out

    def _dump_log_on_failure(self, larder: Larder):
        if os.environ.get("LARDER_TEST_VERBOSE") == "1" or self._failed():
            sys.stderr.write(f"\n--- Larder log ({self.id()}) ---\n{tail(larder.log(), 60)}\n")

    def _failed(self) -> bool:
        outcome = getattr(self, "_outcome", None)
        if outcome is None:
            return False
        result = getattr(outcome, "result", None)
        if result is None:
            return False
        for test, _ in list(result.errors) + list(result.failures):
            if test is self:
                return True
        return False

    # -- class-wide resources
    @classmethod
    def start_shared(cls, larder_kwargs=None, redis_kwargs=None):
        cls.redis_server = RedisServer(**(redis_kwargs or {}))
        cls.addClassCleanup(cls.redis_server.cleanup)
        cls.redis_server.start()
        cls.larder = Larder(cls.redis_server, **(larder_kwargs or {}))
        cls.addClassCleanup(cls.larder.cleanup)
        cls.addClassCleanup(check_log_clean, cls.larder)
        cls.addClassCleanup(cls.larder.stop_gracefully)
        cls.larder.start()

    @classmethod
    def start_shared_and_direct(cls, larder_kwargs=None):
        """start_shared, plus `cls.direct`: a redis-server of its own to compare
        Larder's answers with."""
        cls.start_shared(larder_kwargs=larder_kwargs)
        cls.direct = RedisServer()
        cls.addClassCleanup(cls.direct.cleanup)
        cls.direct.start()

    # -- assertions
    def assertFast(self, started: float, limit: float, what: str):
        """`limit` is scaled by LARDER_TEST_SLOW."""
        took = time.monotonic() - started
        limit = scaled(limit)
        self.assertLess(took, limit, f"{what} took {took:.2f}s (limit {limit:.1f}s)")
        return took


# Lines that must never appear in Larder's log, whatever a test did to it.
LOG_RED_FLAGS = ("critical", "ended by an exception", "task failed", "AddressSanitizer",
                 "runtime error:", "LeakSanitizer", "stopped by an exception")


def check_log_clean(larder: "Larder"):
    """Fails if Larder logged a crash-like message or a sanitizer report,
    exited with the sanitizer exitcode or died of a signal (but SIGKILL)."""
    if not larder._sanitizer_reported:
        report = larder.sanitizer_report()
        if report:
            larder._sanitizer_reported = True
            raise AssertionError(report)
    log = larder.log()
    bad = [line for line in log.splitlines() if any(flag in line for flag in LOG_RED_FLAGS)]
    if bad:
        raise AssertionError("Larder's log has red flags:\n" + "\n".join(bad[:20]))
    if larder.proc is not None and larder.proc.poll() is not None and larder.proc.returncode < 0 \
            and larder.proc.returncode != -signal.SIGKILL:
        raise AssertionError(f"Larder died of signal {-larder.proc.returncode}:\n{tail(log)}")


def close_client(c):
    """Really closes a client. redis-py 4.3's Redis.close() only returns the
    connection to its pool, leaving the socket (and Larder's session) open."""
    with contextlib.suppress(Exception):
        c.close()
    pool = getattr(c, "connection_pool", None)
    if pool is not None:
        with contextlib.suppress(Exception):
            pool.disconnect()


_close_quietly = close_client


def run_threads(target, count: int, timeout: float = 60.0, args_for=None):
    """Runs target(i) in `count` threads; re-raises the first failure."""
    errors = []
    results = [None] * count

    def wrap(i):
        try:
            results[i] = target(*(args_for(i) if args_for else (i,)))
        except BaseException as e:  # noqa: BLE001 - reported to the caller
            errors.append((i, e))

    timeout = scaled(timeout)
    threads = [threading.Thread(target=wrap, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = sum(t.is_alive() for t in threads)
    if alive:
        raise AssertionError(f"{alive} of {count} threads still running after {timeout:.0f}s")
    if errors:
        i, e = errors[0]
        raise AssertionError(f"{len(errors)} of {count} threads failed; thread {i}: {e!r}") from e
    return results


def main():
    """unittest.main with verbose output; used by every test file."""
    unittest.main(verbosity=2)


# --------------------------------------------------------------- Redis Cluster


class RedisCluster:
    """A private Redis Cluster on 127.0.0.1: `primaries` primaries with
    `replicas` replicas each, each a RedisServer with cluster mode on, joined
    with `redis-cli --cluster create ... --cluster-yes`. cluster-node-timeout
    is 5 s by default, so that a node starved of CPU on a loaded machine is
    not failed over by its peers; tests that kill a node pass a short one
    (1 s) to keep the failover quick.

    Every node's client port and bus port (port + 10000) are free when picked.
    """

    def __init__(self, primaries: int = 3, replicas: int = 1, node_timeout_ms: int = 5000,
                 extra_args=()):
        self.primaries_count = primaries
        self.replicas_count = replicas
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[RedisServer] = []
        taken: set = set()  # every port is picked before any node binds it
        for _ in range(primaries * (1 + replicas)):
            port = self._free_cluster_port(taken)
            taken.update((port, port + 10000))
            self.nodes.append(RedisServer(port=port, extra_args=[
                "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", str(node_timeout_ms), "--appendonly", "no",
                *extra_args]))

    @staticmethod
    def _free_cluster_port(taken: set) -> int:
        for _ in range(200):
            port = free_port()
            if port + 10000 > 65535 or port in taken or port + 10000 in taken:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((HOST, port + 10000))
                except OSError:
                    continue
            return port
        raise AssertionError("no free port pair (port, port + 10000) for a cluster node")

    @property
    def seeds(self) -> list:
        return [n.address for n in self.nodes]

    def start(self, timeout: float = 60.0):
        for n in self.nodes:
            n.start()
        argv = [REDIS_CLI, "--cluster", "create", *self.seeds, "--cluster-replicas",
                str(self.replicas_count), "--cluster-yes"]
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=scaled(timeout))
        out = res.stdout.decode(errors="replace")
        if res.returncode != 0 or "[OK] All 16384 slots covered" not in out:
            raise AssertionError(f"redis-cli --cluster create failed ({res.returncode}):\n"
                                 f"{tail(out)}")
        self.wait_healthy(timeout)
        return self

    def node_client(self, node: RedisServer, **kwargs) -> redis.Redis:
        kwargs.setdefault("socket_timeout", 5)
        return node.client(**kwargs)

    @staticmethod
    def ask(node: RedisServer, *args, timeout: float = 2.0):
        """One command to one node, the reply as RawClient parses it
        (bytes, int, list, RespError), untouched by redis-py's parsers."""
        with RawClient(node.port, timeout=timeout) as c:
            return c.call(*args)

    def info(self, node: RedisServer, section: str) -> dict:
        text = self.ask(node, "INFO", section)
        out = {}
        for line in text.decode().splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                out[k] = v
        return out

    def cluster_nodes(self, node: RedisServer) -> list:
        """CLUSTER NODES of `node` as dicts: id, port, flags (set), master, slots (list)."""
        rows = []
        for line in self.ask(node, "CLUSTER", "NODES").decode().strip().splitlines():
            f = line.split()
            rows.append({"id": f[0], "port": int(f[1].split("@")[0].rsplit(":", 1)[1]),
                         "flags": set(f[2].split(",")), "master": f[3], "slots": f[8:]})
        return rows

    def slots(self, node: RedisServer) -> list:
        """CLUSTER SLOTS of `node` as (first, last, primary port) tuples, sorted."""
        return sorted((lo, hi, int(p[1])) for lo, hi, p, *_ in self.ask(node, "CLUSTER", "SLOTS"))

    def running_nodes(self) -> list:
        return [n for n in self.nodes if n.running()]

    def primaries(self) -> list:
        """The running nodes that are primaries owning slots, by their view."""
        out = []
        for n in self.running_nodes():
            rows = self.cluster_nodes(n)
            me = next(r for r in rows if "myself" in r["flags"])
            if "master" in me["flags"] and me["slots"]:
                out.append(n)
        return out

    def node_id(self, node: RedisServer) -> str:
        return self.ask(node, "CLUSTER", "MYID").decode()

    def by_port(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def owner_of(self, key) -> RedisServer:
        """The primary serving `key`'s slot (asked of a running node)."""
        n = self.running_nodes()[0]
        slot = self.ask(n, "CLUSTER", "KEYSLOT", key)
        for lo, hi, port in self.slots(n):
            if lo <= slot <= hi:
                return self.by_port(port)
        raise AssertionError(f"no owner for {key!r}")

    def wait_healthy(self, timeout: float = 60.0):
        """Every running node says cluster_state:ok, all agree on who owns
        the slots, and every replica's link to its primary is up."""
        def healthy():
            views = set()
            for n in self.running_nodes():
                if b"cluster_state:ok" not in self.ask(n, "CLUSTER", "INFO"):
                    return False
                views.add(tuple(self.slots(n)))
                rep = self.info(n, "replication")
                if rep.get("role") == "slave" and rep.get("master_link_status") != "up":
                    return False
            if len(views) != 1:
                return False
            return sum(hi - lo + 1 for lo, hi, _ in next(iter(views))) == 16384
        wait_until(healthy, timeout, "the Redis Cluster to be healthy and agree on its slots",
                   interval=0.1)

    def kill(self, node: RedisServer):
        node.kill()

    def replicas_of(self, primary: RedisServer) -> list:
        """The running nodes that replicate `primary` (by its view)."""
        pid = self.node_id(primary)
        return [self.by_port(r["port"]) for r in self.cluster_nodes(primary)
                if r["master"] == pid and self.by_port(r["port"]).running()]

    def wait_promoted(self, candidates: list, timeout: float = 30.0) -> RedisServer:
        """After a primary died: waits until one of `candidates` (its replicas)
        is a primary and the cluster is healthy again; returns it."""
        def promoted():
            for n in candidates:
                if n.running() and self.info(n, "replication").get("role") == "master":
                    return n
            return None
        new = wait_until(promoted, timeout, "a replica to be promoted", interval=0.05)
        self.wait_healthy(timeout)
        return new

    def streams(self, pattern: str) -> dict:
        """Every key matching `pattern` on every primary, read straight from
        the nodes with SCAN: {name: (primary, XLEN)}."""
        found = {}
        for node in self.primaries():
            cursor = b"0"
            while True:
                cursor, keys = self.ask(node, "SCAN", cursor, "MATCH", pattern, "COUNT", "1000")
                for k in keys:
                    found[k.decode()] = (node, self.ask(node, "XLEN", k))
                if cursor == b"0":
                    break
        return found

    def spread_ids(self, prefix: str, per_primary: int, start: int = 1) -> list:
        """Ids i whose keys f"{prefix}:{i}" are on every primary,
        `per_primary` each, each in a slot of its own."""
        by_owner, slots = {}, set()
        i = start
        while any(len(by_owner.get(p.port, [])) < per_primary for p in self.primaries()):
            key = f"{prefix}:{i}"
            slot = self.ask(self.running_nodes()[0], "CLUSTER", "KEYSLOT", key)
            owner = self.owner_of(key).port
            if slot not in slots and len(by_owner.setdefault(owner, [])) < per_primary:
                by_owner[owner].append(i)
                slots.add(slot)
            i += 1
        return sorted(i for ids in by_owner.values() for i in ids)

    def move_slots(self, slots, source: RedisServer, target: RedisServer):
        """Moves the given slots (and their keys) from source to target as
        redis-cli --cluster does it (IMPORTING/MIGRATING, MIGRATE, SETSLOT
        NODE on every primary), one slot at a time, without touching any
        other slot: a client's map goes stale only for these."""
        source_id, target_id = self.node_id(source), self.node_id(target)
        for slot in slots:
            self.ask(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            self.ask(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            while True:
                keys = self.ask(source, "CLUSTER", "GETKEYSINSLOT", slot, 100)
                if not keys:
                    break
                self.ask(source, "MIGRATE", HOST, target.port, "", 0, 5000, "KEYS", *keys)
            for n in [target, source] + [p for p in self.primaries()
                                         if p.port not in (source.port, target.port)]:
                self.ask(n, "CLUSTER", "SETSLOT", slot, "NODE", target_id)

    def reshard(self, source: RedisServer, target: RedisServer, slots: int,
                timeout: float = 120.0, pipeline: int = 10) -> str:
        """Moves `slots` slots from source to target with redis-cli --cluster
        reshard (keys migrate with MIGRATE, ASK/MOVED happen meanwhile)."""
        argv = [REDIS_CLI, "--cluster", "reshard", source.address,
                "--cluster-from", self.node_id(source), "--cluster-to", self.node_id(target),
                "--cluster-slots", str(slots), "--cluster-yes", "--cluster-pipeline",
                str(pipeline)]
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=scaled(timeout))
        out = res.stdout.decode(errors="replace")
        if res.returncode != 0:
            raise AssertionError(f"redis-cli --cluster reshard failed ({res.returncode}):\n"
                                 f"{tail(out)}")
        return out

    def cluster_client(self, **kwargs):
        """redis-py's RedisCluster straight to the cluster (for comparisons)."""
        from redis.cluster import RedisCluster as PyRedisCluster
        _scale_socket_timeouts(kwargs)
        return PyRedisCluster(host=HOST, port=self.nodes[0].port, **kwargs)

    def cleanup(self):
        for n in self.nodes:
            with contextlib.suppress(Exception):
                n.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


class ClusterLarder(Larder):
    """Larder in front of a RedisCluster: redis.cluster.seeds instead of
    redis.address (pass the cluster as `redis_server`)."""

    def config_dict(self) -> dict:
        cfg = super().config_dict()
        cluster = self.redis_server
        redis_cfg = {k: v for k, v in cfg["redis"].items() if k not in ("address", "db")}
        seeds = cluster.seeds if isinstance(cluster, RedisCluster) else list(cluster)
        extra = self.extra.get("redis", {}).get("cluster", {})
        redis_cfg["cluster"] = _merge({"seeds": seeds}, extra)
        cfg["redis"] = redis_cfg
        return cfg


def start_cluster_larder(test: "LarderTestCase", cluster, **kwargs) -> ClusterLarder:
    """LarderTestCase.start_larder for a cluster: a started ClusterLarder
    whose stop, log checks and cleanup run when `test` ends."""
    larder = ClusterLarder(cluster, **kwargs)
    test.addCleanup(larder.cleanup)
    test.addCleanup(test._dump_log_on_failure, larder)
    test.addCleanup(check_log_clean, larder)
    test.addCleanup(larder.stop_gracefully)
    return larder.start()
