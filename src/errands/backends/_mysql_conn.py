"""Connections of the MySQL backend: one PyMySQL connection per thread (PyMySQL connections are
not thread-safe), the one way a transaction runs on them, and PyMySQL's errors translated at
this edge (the core never names the driver).

* Sessions are READ COMMITTED (no gap locks on the ranges claimers scan), strict, in UTC, with
  autocommit off: every call is one transaction ended by COMMIT, reads too, so no connection
  idles inside a transaction holding metadata locks (which would block DDL such as a migration).
* A broken connection is thrown away and the next call opens a new one (PyMySQL deprecates
  ``ping(reconnect=True)``); a connection idle for a second is pinged before use, so after a
  server restart an idle caller's next call works instead of failing once.
* Deadlocks (1213) and lock-wait timeouts (1205) retry the whole transaction for
  ``lock_timeout`` seconds; every other server or network error is BackendUnavailable naming
  the cause, raised within ``connect_timeout`` / ``read_timeout`` when the server is gone.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from functools import partial
from typing import Any, TypeVar

import pymysql  # type: ignore[import-untyped]
from pymysql.constants import SERVER_STATUS  # type: ignore[import-untyped]

from ..errors import BackendUnavailable, ConfigurationError, ErrandsError
from ._mysql_sql import Cursor, MysqlOptions
from ._sql import retry_while, translate_errors

__all__ = ["Connection", "Sessions", "check_version", "error_code", "in_transaction"]

_T = TypeVar("_T")
Connection = Any  # pymysql.connections.Connection (PyMySQL ships no type hints)

# Strict mode: a value that doesn't fit is an error, never silently cut. UTC: NOW(6) maps to
# epoch seconds without a daylight-saving hour. Short InnoDB lock waits (retried, see above), so
# a stuck lock surfaces in seconds; metadata-lock waits (DDL) bounded instead of a day.
_SESSION = ("SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,ERROR_FOR_DIVISION_BY_ZERO', "
            "SESSION time_zone = '+00:00', SESSION innodb_lock_wait_timeout = 2, SESSION lock_wait_timeout = 30")
_IDLE_PING = 1.0  # seconds a connection may idle before it is pinged ahead of use
_TRANSIENT = {1213: "deadlock", 1205: "lock wait timeout"}
# Errors after which the connection is gone (or its protocol state unknown): thrown away.
_GONE = {2002, 2003, 2006, 2013, 2014, 2026, 2055, 1053, 1927, 4031}
_CAUSES = {
    2002: "cannot reach the server", 2003: "cannot reach the server", 2006: "lost the connection",
    2013: "lost the connection", 2055: "lost the connection", 1053: "the server is shutting down",
    1927: "the connection was killed", 4031: "the server closed an idle connection",
    1040: "too many connections (max_connections reached)", 1203: "too many connections for this user",
    1021: "the server's disk is full", 1114: "the table is full (disk full?)",
    1045: "access denied", 1044: "access denied to the database", 1049: "the database does not exist",
    1290: "the server is read-only", 1836: "the server is read-only", 1146: "the errands table is missing",
    1153: "a statement exceeded max_allowed_packet", **_TRANSIENT,
}


def error_code(exc: BaseException) -> int:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else 0


def _is_transient(exc: Exception) -> bool:
    return isinstance(exc, pymysql.err.OperationalError) and error_code(exc) in _TRANSIENT


def _is_broken(exc: BaseException) -> bool:
    """False only for an error the server answered about one statement: the session is intact."""
    statement_errors = (pymysql.err.ProgrammingError, pymysql.err.IntegrityError, pymysql.err.DataError,
                        pymysql.err.NotSupportedError, pymysql.err.OperationalError)
    return not isinstance(exc, statement_errors) or error_code(exc) in _GONE


def in_transaction(conn: Connection) -> bool:
    return bool((conn.server_status or 0) & SERVER_STATUS.SERVER_STATUS_IN_TRANS)


def check_version(version: str) -> None:
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    numbers = tuple(int(n) for n in match.groups()) if match else (0, 0, 0)
    mariadb = "mariadb" in version.lower()
    if numbers < ((10, 6, 0) if mariadb else (8, 0, 1)):
        raise ConfigurationError(f"errands needs MySQL 8.0.1+ or MariaDB 10.6+ (FOR UPDATE SKIP LOCKED); "
                                 f"the server is {version}")


class Sessions:
    """This process's connections to one database, one per thread, all tracked so ``close()``
    works from any thread. ``ensure_open`` runs before a thread's first connection is used."""

    def __init__(self, options: MysqlOptions, ensure_open: Callable[[], None]) -> None:
        self.options = options
        self.where = f"MySQL at {options.where}"
        self._ensure_open = ensure_open
        self.reset()

    def reset(self) -> None:
        """Forget every connection without closing it (after fork: the parent's are not ours)."""
        self._lock = threading.Lock()
        self._local = threading.local()
        self._conns: list[tuple[threading.Thread, Connection]] = []

    def close(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
            self._local = threading.local()
        for _thread, conn in conns:
            with suppress(Exception):  # best effort: the server drops the session either way
                conn.close()

    def _connect(self) -> Connection:
        o = self.options
        conn = pymysql.connect(
            host=o.host, port=o.port, user=o.user, password=o.password, database=o.database,
            unix_socket=o.unix_socket, charset="utf8mb4", autocommit=False, connect_timeout=o.connect_timeout,
            read_timeout=o.read_timeout, write_timeout=o.write_timeout, init_command=_SESSION, local_infile=False,
        )
        try:  # a statement of its own: SET SESSION can't hold it, and its variable's name varies by server
            conn.cursor().execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        except BaseException:
            conn.close()
            raise
        return conn

    def thread_connection(self) -> Connection:
        """This thread's connection, made if it has none (without ``ensure_open``)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        conn = self._connect()
        self._local.conn, self._local.used = conn, time.monotonic()
        with self._lock:
            # Threads come and go (thread pools, asyncio.to_thread): close what dead ones left.
            dead = [other for thread, other in self._conns if not thread.is_alive()]
            self._conns = [(t, c) for t, c in self._conns if t.is_alive()]
            self._conns.append((threading.current_thread(), conn))
        for other in dead:
            with suppress(Exception):
                other.close()
        return conn

    def _connection(self) -> Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self._ensure_open()
            return self.thread_connection()
        if time.monotonic() - self._local.used > _IDLE_PING:
            try:
                conn.ping(False)
            except pymysql.Error:  # e.g. the server restarted meanwhile: start afresh
                self._discard(conn)
                return self.thread_connection()
        return conn

    def _discard(self, conn: Connection) -> None:
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._lock:
            self._conns = [(t, c) for t, c in self._conns if c is not conn]
        with suppress(Exception):
            conn._force_close()  # no QUIT: the socket may be dead or mid-reply

    def abandon(self, conn: Connection, exc: BaseException) -> None:
        """After a failed transaction: roll back on a healthy session, else throw it away."""
        if not _is_broken(exc):
            with suppress(Exception):  # a rollback that fails means the session is gone too
                conn.rollback()
                return
        self._discard(conn)

    def classify(self, exc: Exception) -> ErrandsError | None:
        """PyMySQL's errors as errands errors; None for a bug of ours (syntax, bad data)."""
        if isinstance(exc, pymysql.err.ProgrammingError) and error_code(exc) != 1146:
            return None
        if isinstance(exc, (pymysql.err.IntegrityError, pymysql.err.DataError)):
            return None
        if isinstance(exc, (pymysql.err.Error, OSError)):
            code = error_code(exc)
            cause = _CAUSES.get(code, "the server refused the statement" if code else "lost the connection")
            return BackendUnavailable(f"{self.where}: {cause}: {exc}")
        return None

    def _attempt(self, fn: Callable[[Cursor], _T]) -> _T:
        conn = self._connection()
        try:
            result = fn(Cursor(conn.cursor(), self.options.table_prefix))
            conn.commit()
        except BaseException as exc:
            self.abandon(conn, exc)
            raise
        self._local.used = time.monotonic()
        return result

    def run(self, fn: Callable[[Cursor], _T]) -> _T:
        """``fn`` in one transaction on this thread's connection, then COMMIT; the whole
        transaction is retried after a deadlock or lock-wait timeout, for ``lock_timeout`` s."""
        with translate_errors(self.classify):
            return retry_while(partial(self._attempt, fn), transient=_is_transient,
                               timeout=self.options.lock_timeout, what=f"{self.where}: deadlocks or lock waits went on")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        def read(cur: Cursor) -> list[Any]:
            cur.execute(sql, params)
            return cur.fetchall()

        return self.run(read)
