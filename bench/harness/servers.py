"""Throw-away Redis and PostgreSQL servers on free loopback ports, a dedicated MariaDB database
on the shared server, and a dedicated virtual host on the shared RabbitMQ. Nothing here touches
the shared Redis (6379) or PostgreSQL (5432): the bench starts its own and stops them at the end."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

PG_BIN = os.environ.get("BENCH_PG_BIN", "/usr/lib/postgresql/15/bin")
MYSQL_DATABASE = "errands_bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


@dataclass
class Redis:
    """``redis-server --save "" --appendonly no`` on a free port: no persistence at all."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, log_dir: str) -> None:
        with open(os.path.join(log_dir, "redis.log"), "ab") as log:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--maxmemory-policy", "noeviction", "--protected-mode", "yes"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_port(self.port, 15, "redis-server", self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None else []

    def version(self) -> str:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False).stdout
        return out.split("v=")[1].split()[0] if "v=" in out else out.strip()


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the ``postgres`` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@dataclass
class Postgres:
    """``initdb`` into a temporary folder and ``pg_ctl start`` on a free port, default durability
    (fsync on, synchronous_commit on, full_page_writes on); trust auth on 127.0.0.1 only."""

    port: int = field(default_factory=free_port)
    datadir: str = ""
    user: str = "postgres"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def start(self, log_dir: str) -> None:
        self.datadir = tempfile.mkdtemp(prefix="errands-bench-pg-")
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.datadir, pw.pw_uid, pw.pw_gid)
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name
        log = os.path.join(self.datadir, "server.log")
        subprocess.run(_as_postgres([f"{PG_BIN}/initdb", "-D", self.datadir, "-U", self.user, "--auth=trust",
                                     "--no-instructions", "-E", "UTF8", "--locale=C"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.datadir} "
                   "-c max_connections=200")
        subprocess.run(_as_postgres([f"{PG_BIN}/pg_ctl", "-D", self.datadir, "-l", log, "-o", options,
                                     "-w", "-t", "60", "start"]),
                       check=True, stdout=subprocess.DEVNULL)
        _wait_port(self.port, 30, "postgres")
        self._log_dir = log_dir

    def stop(self) -> None:
        if not self.datadir:
            return
        subprocess.run(_as_postgres([f"{PG_BIN}/pg_ctl", "-D", self.datadir, "-m", "fast", "-w", "stop"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        log = os.path.join(self.datadir, "server.log")
        if os.path.exists(log) and getattr(self, "_log_dir", None):
            shutil.copy(log, os.path.join(self._log_dir, "postgres.log"))
        shutil.rmtree(self.datadir, ignore_errors=True)
        self.datadir = ""

    def pids(self) -> list[int]:
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as f:
                return [int(f.readline())]
        except (OSError, ValueError):
            return []

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def settings(self) -> dict[str, str]:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            rows = conn.execute("SELECT name, setting FROM pg_settings WHERE name IN "
                                "('fsync', 'synchronous_commit', 'full_page_writes', 'wal_level', "
                                "'shared_buffers', 'server_version')").fetchall()
        return dict(rows)


@dataclass
class Mysql:
    """The shared MariaDB on 3306 (root, no password), in a database of the bench's own that is
    created before and dropped after the run."""

    host: str = "127.0.0.1"
    port: int = 3306
    available: bool = False
    error: str = ""

    @property
    def url(self) -> str:
        return f"mysql://root@{self.host}:{self.port}/{MYSQL_DATABASE}"

    def _connect(self, database: str | None = None):  # type: ignore[no-untyped-def]
        import pymysql

        return pymysql.connect(host=self.host, port=self.port, user="root", database=database,
                               autocommit=True, connect_timeout=3)

    def start(self, log_dir: str) -> None:
        try:
            with self._connect() as conn, conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {MYSQL_DATABASE}")
                cur.execute(f"CREATE DATABASE {MYSQL_DATABASE} CHARACTER SET utf8mb4")
            self.available = True
        except Exception as exc:  # noqa: BLE001 - no server: the MySQL rows are skipped, the rest still runs
            self.error = f"{type(exc).__name__}: {exc}"

    def reset(self) -> None:
        self.start("")

    def stop(self) -> None:
        if not self.available:
            return
        with contextlib.suppress(Exception), self._connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {MYSQL_DATABASE}")

    def settings(self) -> dict[str, str]:
        with self._connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT @@version, @@innodb_flush_log_at_trx_commit, @@sync_binlog, @@log_bin")
            version, flush, sync_binlog, log_bin = cur.fetchone()
        return {"version": str(version), "innodb_flush_log_at_trx_commit": str(flush),
                "sync_binlog": str(sync_binlog), "log_bin": str(log_bin)}


@dataclass
class Rabbitmq:
    """The shared RabbitMQ on 5672 (guest/guest), in a virtual host of the bench's own: created
    empty before each library runs and deleted at the end, which removes every queue, exchange
    and message any library declared in it (Celery's and Dramatiq's fixed queue names included).
    Virtual hosts are managed with ``rabbitmqctl``: AMQP 0-9-1 can't create one."""

    host: str = "127.0.0.1"
    port: int = 5672
    vhost: str = field(default_factory=lambda: f"errands-bench-{os.getpid()}")
    available: bool = False
    error: str = ""

    @property
    def url(self) -> str:
        """``amqp://guest:guest@127.0.0.1:5672/<vhost>``; errands, Celery (py-amqp) and pika all
        read the path as the virtual host."""
        import urllib.parse

        return f"amqp://guest:guest@{self.host}:{self.port}/{urllib.parse.quote(self.vhost, safe='')}"

    def _ctl(self, *args: str) -> str:
        done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60,
                              check=False)
        if done.returncode:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {(done.stderr or done.stdout).strip()[:200]}")
        return done.stdout

    def start(self, log_dir: str) -> None:
        try:
            with socket.create_connection((self.host, self.port), timeout=3):
                pass
            if shutil.which("rabbitmqctl") is None:
                raise RuntimeError("no rabbitmqctl to create a virtual host with")
            self.reset()
            self.available = True
        except Exception as exc:  # noqa: BLE001 - no broker: the RabbitMQ rows are skipped, the rest still runs
            self.error = f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                self._ctl("delete_vhost", self.vhost)

    def reset(self) -> None:
        """An empty virtual host: a library starts with nothing another one left."""
        with contextlib.suppress(RuntimeError):  # not there yet
            self._ctl("delete_vhost", self.vhost)
        self._ctl("add_vhost", self.vhost)
        self._ctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")

    def stop(self) -> None:
        if not self.available:
            return
        with contextlib.suppress(Exception):
            self._ctl("delete_vhost", self.vhost)

    def version(self) -> str:
        try:
            return self._ctl("version").strip()
        except (RuntimeError, OSError, subprocess.SubprocessError):
            return "?"
