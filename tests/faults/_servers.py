"""Private server instances for tests that must stop, kill or reconfigure a server: each on a
free loopback port with its data under the test's ``tmp_path``. The shared servers on the
default ports are never touched."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["MariaDBServer", "PostgresServer", "RabbitMQServer", "RedisServer", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``redis-server --port P --appendonly yes --dir <tmp>``; ``kill()`` and ``start()`` again
    restart it on the same port and data, as a crash and a restart would."""

    def __init__(self, directory: Path, *extra: str, port: int | None = None) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed")
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, prefix: str = "errands", **options: str) -> str:
        query = "&".join([f"prefix={prefix}", *(f"{k}={v}" for k, v in options.items())])
        return f"redis://127.0.0.1:{self.port}/0?{query}"

    def start(self, timeout: float = 15.0) -> RedisServer:
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--appendonly", "yes",
            "--dir", str(self.directory), "--save", "", "--protected-mode", "no", *self.extra,
        ]
        with open(self.directory / "redis.log", "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}; see {self.directory}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} not ready after {timeout}s")
            time.sleep(0.02)
        return self

    def ready(self) -> bool:
        """True once the server answers PING (not -LOADING) on its port."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self, signum: int = signal.SIGKILL, timeout: float = 15.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signum)
        self.process.wait(timeout)
        self.process = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def __enter__(self) -> RedisServer:  # noqa: PYI034 (Self needs Python 3.11)
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


def _postgres_bin() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if not versions:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    return Path(versions[-1]).parent


class PostgresServer:
    """``initdb`` + ``pg_ctl`` on a free loopback port, trust auth, user ``postgres``, database
    ``postgres``; ``stop("fast" | "immediate")`` and ``start()`` again restart it on the same
    data, as a shutdown or a crash and a restart would.

    PostgreSQL refuses to run as root: then the binaries run as the ``postgres`` user (through
    ``runuser``) on a data folder of its own under the system temp dir, since pytest's
    ``tmp_path`` (under a 0700 folder of root's) is out of its reach. ``cleanup()`` removes it.
    """

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.bin = _postgres_bin()
        self.port = port or free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            self.directory = Path(tempfile.mkdtemp(prefix="errands-pg-"))
            shutil.chown(self.directory, "postgres", "postgres")
        else:
            self.directory = directory
            self.directory.mkdir(parents=True, exist_ok=True)
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync", timeout=120)

    def _run(self, program: str, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / program), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{program} {' '.join(args)} failed ({result.returncode}): "
                               f"{result.stdout}{result.stderr}\n{log}")
        return result

    def url(self, schema: str = "errands", **options: str) -> str:
        query = "&".join([f"schema={schema}", *(f"{k}={v}" for k, v in options.items())])
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres?{query}"

    def start(self, timeout: float = 60.0) -> PostgresServer:
        server_options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._run("pg_ctl", "-D", str(self.data), "-o", server_options, "-l", str(self.log), "-w",
                  "-t", str(int(timeout)), "start", timeout=timeout + 10)
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL on port {self.port} not accepting connections after {timeout}s")
            time.sleep(0.02)
        return self

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self, mode: str = "fast", timeout: float = 60.0) -> None:
        """``fast``: a clean shutdown that ends every session (SIGINT); ``immediate``: every
        process quits at once without a checkpoint (SIGQUIT), recovered from WAL at the next
        start: a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(int(timeout)), "stop",
                  timeout=timeout + 10, check=False)

    def cleanup(self) -> None:
        self.stop("immediate")
        if self.as_root:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PostgresServer:  # noqa: PYI034 (Self needs Python 3.11)
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _mariadb_program(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
        if found:
            return found
    raise RuntimeError(f"MariaDB is not installed (none of {', '.join(names)} found)")


class MariaDBServer:
    """``mariadb-install-db`` + ``mariadbd --datadir --port --socket`` on a free loopback port,
    root without a password, database ``test``; ``kill(SIGKILL | SIGTERM)`` and ``start()`` again
    restart it on the same data, as a crash or a clean shutdown and a restart would.

    The unix socket lives in a short folder of the system temp dir: socket paths are limited to
    ~107 bytes and pytest's ``tmp_path`` can be longer. ``cleanup()`` kills it and removes that.
    """

    def __init__(self, directory: Path, *extra: str, port: int | None = None) -> None:
        self.server = _mariadb_program("mariadbd", "mysqld")
        self.client = _mariadb_program("mariadb", "mysql")
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self.socket_dir = Path(tempfile.mkdtemp(prefix="errands-mdb-"))
        self.socket = self.socket_dir / "mysqld.sock"
        self.port = port or free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        # mariadbd refuses to run as root unless told to; as anyone else --user is not needed
        self.user = ["--user=root"] if os.geteuid() == 0 else []
        install = [_mariadb_program("mariadb-install-db", "mysql_install_db"), "--no-defaults",
                   f"--datadir={self.data}", "--auth-root-authentication-method=normal", "--skip-test-db",
                   *self.user]
        result = subprocess.run(install, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed ({result.returncode}): {result.stdout}{result.stderr}")
        self._created = False

    def url(self, database: str = "test", **options: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"mysql://root@127.0.0.1:{self.port}/{database}" + (f"?{query}" if query else "")

    def start(self, timeout: float = 60.0) -> MariaDBServer:
        command = [
            self.server, "--no-defaults", f"--datadir={self.data}", f"--port={self.port}",
            "--bind-address=127.0.0.1", f"--socket={self.socket}", f"--pid-file={self.directory / 'mysqld.pid'}",
            f"--log-error={self.log}", "--skip-name-resolve", "--innodb-buffer-pool-size=64M",
            "--innodb-flush-log-at-trx-commit=1", *self.user, *self.extra,
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                raise RuntimeError(f"mariadbd exited with {self.process.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mariadbd on port {self.port} not ready after {timeout}s")
            time.sleep(0.02)
        if not self._created:
            self.sql("CREATE DATABASE IF NOT EXISTS test")
            self._created = True
        return self

    def ready(self) -> bool:
        """True once the server greets on its port (protocol 10), not an error packet."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                greeting = sock.recv(64)
                return len(greeting) > 4 and greeting[4] == 10
        except OSError:
            return False

    def sql(self, statement: str) -> str:
        """Run SQL as root through the socket with the command-line client; returns its output."""
        result = subprocess.run([self.client, "--no-defaults", "-uroot", f"--socket={self.socket}", "-N", "-B",
                                 "-e", statement], capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{statement!r} failed: {result.stderr}")
        return result.stdout

    def kill(self, signum: int = signal.SIGKILL, timeout: float = 60.0) -> None:
        """SIGKILL: a crash (InnoDB recovers from its redo log at the next start); SIGTERM: a
        clean shutdown that ends every session."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signum)
        self.process.wait(timeout)
        self.process = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def cleanup(self) -> None:
        self.kill(signal.SIGKILL)
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def __enter__(self) -> MariaDBServer:  # noqa: PYI034 (Self needs Python 3.11)
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _rabbitmq_server() -> str:
    # the package's own script: /usr/sbin/rabbitmq-server would switch to the rabbitmq user
    for candidate in ("/usr/lib/rabbitmq/bin/rabbitmq-server", shutil.which("rabbitmq-server")):
        if candidate and os.path.exists(candidate):
            return candidate
    raise RuntimeError("rabbitmq-server is not installed")


class RabbitMQServer:
    """``rabbitmq-server`` as a node of its own (unique name, free AMQP and distribution ports,
    data and logs under ``directory``, no plugins), user guest/guest; ``kill(SIGKILL | SIGTERM)``
    and ``start()`` again restart it on the same data, as a crash or a clean shutdown and a
    restart would. Boots in ~4-6 s on a 2-core machine. The shared broker's distribution port
    (5672 + 20000) is never chosen: both ports are free ones the OS hands out."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.program = _rabbitmq_server()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        plugins = self.directory / "enabled_plugins"
        plugins.write_text("[].\n")  # no management or prometheus listeners on shared ports
        self.env = {
            **os.environ,
            "RABBITMQ_NODENAME": f"errands-test-{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_CONFIG_FILE": str(self.directory / "rabbitmq"),  # none: the defaults
            "RABBITMQ_PID_FILE": str(self.directory / "rabbitmq.pid"),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, prefix: str = "errands", **options: str) -> str:
        query = "&".join([f"prefix={prefix}", *(f"{k}={v}" for k, v in options.items())])
        return f"amqp://guest:guest@127.0.0.1:{self.port}/?{query}"

    def start(self, timeout: float = 90.0) -> RabbitMQServer:
        with open(self.directory / "server.log", "ab") as log:
            # a session of its own: kill() reaches the Erlang VM and its helpers, not only the script
            self.process = subprocess.Popen([self.program], env=self.env, cwd=self.directory, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                tail = (self.directory / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"rabbitmq-server exited with {self.process.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"rabbitmq-server on port {self.port} not ready after {timeout}s")
            time.sleep(0.1)
        return self

    def ready(self) -> bool:
        """True once the broker answers an AMQP handshake with Connection.Start (the port opens
        before the broker has booted its queues)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(b"AMQP\x00\x00\x09\x01")
                sock.settimeout(2.0)
                frame = sock.recv(64)
                # method frame (type 1) of class 10 (connection), method 10 (start)
                return len(frame) >= 11 and frame[0] == 1 and frame[7:11] == b"\x00\x0a\x00\x0a"
        except OSError:
            return False

    def kill(self, signum: int = signal.SIGKILL, timeout: float = 60.0) -> None:
        """SIGKILL: a crash (quorum queues recover from their Raft log at the next start);
        SIGTERM: a clean shutdown that closes every connection."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)
        self.process.wait(timeout)
        # the script may exit before the Erlang VM has finished shutting down; a node started
        # again under the same name while the old one lingers finds its name taken and exits
        deadline = time.monotonic() + timeout
        while _group_alive(self.process.pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"rabbitmq node on port {self.port} still running {timeout}s after {signum!r}")
            time.sleep(0.05)
        self.process = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def cleanup(self) -> None:
        self.kill(signal.SIGKILL)

    def __enter__(self) -> RabbitMQServer:  # noqa: PYI034 (Self needs Python 3.11)
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
