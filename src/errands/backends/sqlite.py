"""The embedded default: one SQLite file in WAL mode, shared by producers and worker processes
on one machine. Durability as DESIGN.md §2.1 states it: ``synchronous=NORMAL`` (every commit
survives a crash of any process) or ``?synchronous=full`` (survives power loss too).

* One connection per thread, all tracked so ``close()`` works from any thread.
* Writers ``BEGIN IMMEDIATE``, taking the write lock up front, so no two transactions deadlock
  upgrading a read lock. The threads of one process take turns (``_sqlite_turn``), handed over
  at once; the one whose turn it is polls SQLITE_BUSY from other processes every few tens of µs
  (SQLite's own busy handler sleeps 1, 2, 5 ms... while the lock sits free) until ``busy_timeout``.
* One plain job is enqueued by one INSERT in autocommit: atomic by itself, one commit.
* Partial indexes hold only the rows each hot query reads (available, due, leased): claiming
  stays an index probe however many finished rows the table keeps.
* Claim is one ``UPDATE ... RETURNING``, lease tokens made by SQLite per row. SQL text is
  constant per shape, so sqlite3's statement cache reuses it.
* No cross-process push exists, so ``wait`` polls ``PRAGMA data_version`` (it changes when
  another connection commits) every 2 ms and looks for due work only when it changed.
* Time is SQLite's clock, ``julianday('now')``: the machine's clock as SQLite's C library reads
  it, which every process sharing the file shares, even one whose Python-level clock is shifted
  (freezegun, time-machine, a test's patch of ``time.time``). Read every few seconds and carried
  forward by the monotonic clock, as mysql.py does with the server's, so ``now()`` stays cheap.
* Paused queues, slot holders and rate limits are small tables. A claim probes the paused one
  by primary key (exact, never cached); slots and rates are read and written under the write
  lock, so no two processes both take the last slot, and their expired rows go as calls pass.
"""

from __future__ import annotations

import builtins
import logging
import os
import secrets
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import BackendUnavailable, ConfigurationError, ErrandsError
from ..jobs import JobState
from ._sql import (
    INSERT_COLUMNS,
    META_TABLE,
    SCHEMA_KEY,
    TABLE,
    apply_fenced,
    build_list_query,
    cancel_jobs,
    claims_from_rows,
    extend_claims,
    fail_unknown_states,
    fold_counts,
    insert_jobs,
    insert_row,
    keyed_window,
    purge_chunk,
    record_from_row,
    run_migrations,
    settle_row,
    translate_errors,
)
from ._sql_registry import worker_from_row, worker_params
from ._sqlite_sql import (
    ANY_PAUSED,
    DEBOUNCE,
    ID_EXISTS,
    PAUSE,
    PAUSED,
    RATE_GET,
    RATE_PURGE,
    RATE_SET,
    RESUME,
    RUNNABLE_QUEUES,
    SLOT_PURGE,
    SLOT_RELEASE,
    SLOT_TAKE,
    SLOT_USAGE,
    THROUGHPUT,
    UNIQUE_HOLDER,
    UNIQUE_RECENT,
    WORKER_DELETE,
    WORKER_PRUNE,
    WORKER_UPSERT,
    WORKERS,
    get_many_sql,
    settle_many_sql,
    wake_sql,
)

# the schema and statements, under the names this module used before they moved out
from ._sqlite_sql import CLAIM_COLUMNS as _CLAIM_COLUMNS
from ._sqlite_sql import CLAIM_SET as _CLAIM_SET
from ._sqlite_sql import COUNTS as _COUNTS
from ._sqlite_sql import COUNTS_BY_QUEUE as _COUNTS_BY_QUEUE
from ._sqlite_sql import GET as _GET
from ._sqlite_sql import INSERT as _INSERT
from ._sqlite_sql import META_DDL as _META_DDL
from ._sqlite_sql import MIGRATIONS as _MIGRATIONS
from ._sqlite_sql import PROMOTE as _PROMOTE
from ._sqlite_sql import REAP_CANCELLED as _REAP_CANCELLED
from ._sqlite_sql import REAP_FAILED as _REAP_FAILED
from ._sqlite_sql import REAP_REQUEUE as _REAP_REQUEUE
from ._sqlite_sql import RELEASE as _RELEASE
from ._sqlite_sql import RETRY as _RETRY
from ._sqlite_sql import SETTLE as _SETTLE
from ._sqlite_sql import claim_ids_sql as _claim_ids_sql
from ._sqlite_sql import claim_sql as _claim_sql
from ._sqlite_sql import pick_ids_sql as _pick_ids_sql
from ._sqlite_sql import pick_sql as _pick_sql
from ._sqlite_sql import probe_sql as _probe_sql
from ._sqlite_turn import pause, turn_for
from .base import (
    Backend,
    CancelResult,
    Capability,
    Claim,
    Counts,
    Enqueued,
    Extended,
    JobQuery,
    JobRecord,
    Maintenance,
    NewJob,
    Outcome,
    SlotRequest,
    Throughput,
    WorkerInfo,
    check_buckets,
    gcra,
    throughput_buckets,
)

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["SqliteBackend", "SqliteOptions", "parse_url"]

log = logging.getLogger("errands.sqlite")
_T = TypeVar("_T")

_POLL = 0.002  # how often an idle wait() looks at PRAGMA data_version
_PROMOTE_LIMIT = 10_000  # due scheduled jobs made available per claim, as memory.py
_PURGE_CHUNK = 2_000  # rows deleted per write transaction, so workers get the lock in between
_IDS_CHUNK = 512  # ids per claim_ids statement: under SQLite's old 999-variable limit
# Outcomes settled by one statement, 8 parameters each: well under the 32,766 variables of every
# SQLite with RETURNING. A larger batch (the settler sends up to 500) takes one transaction.
_SETTLE_ONE_STATEMENT = 256
_HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)
_CLOCK_SYNC = 5.0  # seconds between reads of SQLite's clock
_NEW_PAGE_SIZE = 2048  # bytes per page of a file this backend creates
_UNIX_EPOCH_JD = 2440587.5  # julianday('1970-01-01 00:00:00')
# While some queue is paused, claim(None) unions per-queue scans of the runnable queues up to
# this many; past it, one scan of every available job that skips paused rows one by one.
_UNION_QUEUES = 32
_STATE_AT = INSERT_COLUMNS.index("state")
_UNIQUE_AT = INSERT_COLUMNS.index("unique_key")


# clock --------------------------------------------------------------------------------------------
class _SqliteClock:
    """SQLite's clock for the whole process. One for every backend object, so a job settled
    through one object and claimed through another (two apps, a worker and a producer) keep
    their order: per-object offsets each carried their own sub-millisecond error."""

    def __init__(self) -> None:
        self.after_fork()
        self.offset, self.synced_at, self.last = 0.0, -1e18, 0.0

    def after_fork(self) -> None:
        self.lock = threading.Lock()  # another thread of the parent may have held it

    def now(self) -> float:
        if time.monotonic() - self.synced_at > _CLOCK_SYNC:
            self.sync()
        with self.lock:
            value = max(self.last, time.monotonic() + self.offset)
            self.last = value
        return value

    def sync(self) -> None:
        # A private in-memory connection: no file lock to wait for, no thread or fork to care about.
        conn = sqlite3.connect(":memory:")
        try:
            offset = _clock_offset(conn)
        finally:
            conn.close()
        with self.lock:
            self.offset, self.synced_at = offset, time.monotonic()


def _clock_offset(conn: sqlite3.Connection) -> float:
    """SQLite's epoch seconds minus the monotonic clock. SQLite reads the time in whole ms, so
    one reading is up to 1 ms off; instead read until the millisecond ticks over: that reading
    came right at the start of its millisecond, so the offset is good to a few microseconds.
    Gives up after a few ms (a busy machine) and takes the middle of one reading's millisecond."""

    def read() -> tuple[int, float]:
        before = time.monotonic()
        day = conn.execute("SELECT julianday('now')").fetchone()[0]
        after = time.monotonic()
        # julianday is a double of ~40 µs resolution around today: round back to its whole ms
        return round((float(day) - _UNIX_EPOCH_JD) * 86_400_000.0), (before + after) / 2

    first, previous = read()
    deadline = previous + 0.005
    while True:
        ms, at = read()
        if ms != first and at - previous < 0.0002:  # not a tick seen late (this thread paused)
            return ms / 1000.0 - (previous + at) / 2  # the tick fell between the two readings
        if at > deadline:
            return ms / 1000.0 + 0.0005 - at
        first, previous = ms, at


_CLOCK = _SqliteClock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_CLOCK.after_fork)


# URL ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SqliteOptions:
    path: str  # absolute, so a later chdir or a new thread opens the same file
    synchronous: str = "NORMAL"
    busy_timeout: float = 5.0  # seconds a write waits for the lock before BackendUnavailable


def parse_url(url: str) -> SqliteOptions:
    """``sqlite:///relative.db`` or ``sqlite:////abs/path.db`` (SQLAlchemy's convention), with
    ``?synchronous=normal|full`` and ``?busy_timeout=<ms>``."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ConfigurationError(f"not a sqlite:// URL: {url!r}")
    if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
        raise ConfigurationError(f"bad SQLite URL {url!r}: use sqlite:///rel.db or sqlite:////abs/path.db")
    path = unquote(parts.path[1:])
    if path == ":memory:" or path.startswith("file:"):
        raise ConfigurationError(f"bad SQLite URL {url!r}: per-thread connections can't share :memory:; "
                                 "use memory://")
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ConfigurationError(f"bad query string in SQLite URL {url!r}") from None
    options: dict[str, Any] = {}
    for key, value in pairs:
        if key in options:
            raise ConfigurationError(f"SQLite URL parameter {key!r} given twice in {url!r}")
        options[key] = _option(key, value)
    return SqliteOptions(os.path.abspath(path), **options)


def _option(key: str, value: str) -> Any:
    if key == "synchronous":
        if value.lower() not in ("normal", "full"):
            raise ConfigurationError(f"SQLite URL: synchronous must be 'normal' or 'full', got {value!r}")
        return value.upper()
    if key == "busy_timeout":
        if not value.isdigit() or int(value) > 86_400_000:
            raise ConfigurationError(f"SQLite URL: busy_timeout must be 0 to 86400000 ms, got {value!r}")
        return int(value) / 1000
    raise ConfigurationError(f"unknown SQLite URL parameter {key!r}: known are synchronous, busy_timeout")


# errors -------------------------------------------------------------------------------------------
def _is_busy(exc: Exception) -> bool:
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+; the primary code is the low byte
    if isinstance(code, int):
        return code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED
    return "is locked" in str(exc)  # Python 3.10: "database is locked", "database table is locked"


def _is_decode_error(exc: sqlite3.Error) -> bool:
    return "Could not decode to UTF-8" in str(exc)


def _tolerant_text(raw: bytes) -> str | bytes:
    # Text that isn't UTF-8 (written by hand) comes back as bytes: the codec reports it and the
    # worker fails that one job, instead of the whole claim raising.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with suppress(sqlite3.Error):  # the error that brought us here is the one to report
            conn.execute("ROLLBACK")


def _join_caller_transaction(conn: sqlite3.Connection) -> None:
    """Open the caller's transaction the way sqlite3 itself would before a write, so the jobs
    commit or roll back with the caller's own changes. With autocommit and no open transaction
    there is nothing to join: the batch then commits on its own (still all or none)."""
    if conn.in_transaction:
        return
    autocommit = getattr(conn, "autocommit", None)  # Python 3.12+: True, False or legacy (-1)
    if autocommit is True or (autocommit not in (True, False) and conn.isolation_level is None):
        return
    conn.execute(f"BEGIN {conn.isolation_level or ''}")  # "", DEFERRED, IMMEDIATE or EXCLUSIVE


class SqliteBackend(Backend):
    """Jobs in one SQLite file (WAL). ``sqlite:///jobs.db``, ``sqlite:////var/lib/jobs.db``,
    ``?synchronous=full`` for power-loss durability, ``?busy_timeout=10000`` to wait longer for
    the write lock.

    >>> backend = SqliteBackend("sqlite:///jobs.db", Settings())
    >>> backend.open()
    """

    capabilities = frozenset({Capability.TRANSACTIONAL_ENQUEUE, Capability.MULTI_PROCESS,
                              Capability.PERSISTENT, Capability.QUERIES,
                              Capability.PRIORITIES, Capability.UNIQUE, Capability.QUEUE_CONTROL,
                              Capability.LIMITS, Capability.WORKFLOWS})

    def __init__(self, url: str, settings: Settings) -> None:
        super().__init__(url, settings)
        self.options = parse_url(url)
        self._open_lock = threading.Lock()
        self._opened = False
        self._reset_connections()
        if hasattr(os, "register_at_fork"):  # POSIX only; Windows has no fork
            os.register_at_fork(after_in_child=partial(_after_fork, weakref.ref(self)))

    def _reset_connections(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._conns: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._wakeup = threading.Condition()
        self._generation = 0
        self._turn = turn_for(self.options.path)  # after a fork: the child's own

    # connections --------------------------------------------------------------------------------
    def open(self) -> None:
        with self._open_lock:
            if self._opened:
                return
            folder = os.path.dirname(self.options.path)
            if not os.path.isdir(folder):
                raise ConfigurationError(f"SQLite database {self.options.path}: {folder} does not exist")
            with translate_errors(self._classify):
                conn = self._thread_connection()
                self._retrying(lambda: self._setup(conn))
            self._opened = True

    def _setup(self, conn: sqlite3.Connection) -> None:
        # A new file gets 2 KiB pages (an existing one keeps its own): a job touches one page of
        # the table and of each of four indexes at every step, and each commit writes those pages
        # whole to the WAL; rows are a few hundred bytes, so half-size pages mean half the bytes
        # written and checksummed per enqueue, claim and settle (~10% less CPU per job measured).
        conn.execute(f"PRAGMA page_size = {_NEW_PAGE_SIZE}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("SQLite %s stays in journal_mode=%s (WAL unsupported here?): "
                        "concurrent workers will wait on each other", self.options.path, mode)
        if self._schema_is_current(conn):
            return  # no write lock: opening must not wait on a caller's open write transaction
        conn.execute("BEGIN IMMEDIATE")  # one opener at a time creates or migrates the schema
        try:
            run_migrations(conn.cursor(), _MIGRATIONS, meta_ddl=_META_DDL)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    @staticmethod
    def _schema_is_current(conn: sqlite3.Connection) -> bool:
        try:
            row = conn.execute(f"SELECT value FROM {META_TABLE} WHERE name = ?", (SCHEMA_KEY,)).fetchone()
        except sqlite3.OperationalError:  # no meta table yet: a new file
            return False
        return row is not None and str(row[0]) == str(_MIGRATIONS[-1].version)

    def close(self) -> None:
        with self._open_lock, self._lock:
            conns, self._conns = self._conns, []
            self._local = threading.local()
            self._opened = False
        for _thread, conn in conns:
            _close(conn)

    def _conn(self) -> sqlite3.Connection:
        try:
            return self._local.conn  # type: ignore[no-any-return]
        except AttributeError:
            pass
        if not self._opened:
            self.open()
        return self._thread_connection()

    def _thread_connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        # timeout=0: no SQLite busy handler (it sleeps whole ms); _retrying() polls finer
        conn = sqlite3.connect(self.options.path, timeout=0,
                               isolation_level=None, check_same_thread=False, cached_statements=256)

        def configure() -> None:  # reads the schema: refused while another opener sets WAL up
            conn.execute(f"PRAGMA synchronous = {self.options.synchronous}")  # validated: NORMAL or FULL
            conn.execute("PRAGMA journal_size_limit = 67108864")  # shrink the WAL back after bursts

        try:
            self._retrying(configure)
        except BaseException:
            _close(conn)
            raise
        self._local.conn = conn
        with self._lock:
            # Threads come and go (thread pools, asyncio.to_thread): close what dead ones left.
            dead = [other for thread, other in self._conns if not thread.is_alive()]
            self._conns = [(t, c) for t, c in self._conns if t.is_alive()]
            self._conns.append((threading.current_thread(), conn))
        for other in dead:
            _close(other)
        return conn

    # clock --------------------------------------------------------------------------------------
    def now(self) -> float:
        """SQLite's clock in epoch seconds, never going backwards within this process."""
        return _CLOCK.now()

    # running statements -------------------------------------------------------------------------
    def _classify(self, exc: Exception) -> ErrandsError | None:
        if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)):
            return None  # a bug of ours, not the store's state: let it show as it is
        if isinstance(exc, sqlite3.DatabaseError):  # locked, disk full, I/O error, corrupt, read-only
            name = getattr(exc, "sqlite_errorname", None)
            cause = f"{exc} ({name})" if name else str(exc)
            return BackendUnavailable(f"SQLite database {self.options.path}: {cause}")
        return None

    def _retrying(self, step: Callable[[], _T], deadline: float | None = None) -> _T:
        """Run ``step`` until it is not refused for a lock, until ``deadline`` (monotonic; by
        default ``busy_timeout`` after the first refusal)."""
        attempt = 0
        while True:
            try:
                return step()
            except Exception as exc:
                if not _is_busy(exc):
                    raise
                now = time.monotonic()
                deadline = now + self.options.busy_timeout if deadline is None else deadline
                if now >= deadline:
                    raise BackendUnavailable(f"SQLite database {self.options.path} stayed locked by another "
                                             f"connection for {self.options.busy_timeout:g}s: {exc}") from exc
                pause(attempt)
                attempt += 1

    def _run(self, fn: Callable[[sqlite3.Cursor], _T], *, write: bool, begin: bool = True) -> _T:
        """``fn`` on this thread's connection: if ``write``, in this thread's turn and in a
        ``BEGIN IMMEDIATE`` transaction (unless not ``begin``: one statement in autocommit);
        retried on SQLITE_BUSY; retried once tolerating text that isn't UTF-8."""
        if write:
            started = time.monotonic()
            with self._turn(self.options.busy_timeout):
                return self._attempts(fn, write=begin, deadline=started + self.options.busy_timeout,
                                      redo=begin)
        return self._attempts(fn, write=False, deadline=None)

    def _attempts(self, fn: Callable[[sqlite3.Cursor], _T], *, write: bool, deadline: float | None,
                  redo: bool = True) -> _T:
        """``redo``: whether ``fn`` may run again after text that isn't UTF-8 failed it; not for
        one statement in autocommit, which had committed before its rows were read."""
        with translate_errors(self._classify):
            conn = self._conn()
            cur = conn.cursor()

            def attempt() -> _T:
                if not write:
                    return fn(cur)
                cur.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(cur)
                    cur.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
                return result

            try:
                return self._retrying(attempt, deadline)
            except sqlite3.OperationalError as exc:
                if not redo or not _is_decode_error(exc):
                    raise
            conn.text_factory = _tolerant_text  # rare: slow per-value decoding only for this call
            try:
                return self._retrying(attempt, deadline)
            finally:
                conn.text_factory = str

    def _write(self, fn: Callable[[sqlite3.Cursor], _T]) -> _T:
        return self._run(fn, write=True)

    def _read(self, fn: Callable[[sqlite3.Cursor], _T]) -> _T:
        return self._run(fn, write=False)

    # producer -----------------------------------------------------------------------------------
    def enqueue(self, jobs: Sequence[NewJob], *, connection: object | None = None) -> list[Enqueued]:
        if not jobs:
            return []
        now = self.now()
        rows = [insert_row(job, now) for job in jobs]
        if connection is None:
            result = self._insert_alone(rows[0]) if len(jobs) == 1 and not keyed_window(jobs[0]) else None
            if result is None:
                result = self._write(lambda cur: _insert(cur, jobs, rows, now))
        else:
            result = self._enqueue_through(connection, jobs, rows, now)
        if any(row[_STATE_AT] == "available" for row in rows):
            self.notify()
        return result

    def _insert_alone(self, row: tuple[Any, ...]) -> list[Enqueued] | None:
        """One plain job as one INSERT in autocommit: a single statement is a transaction of its
        own (all or none, durable at its commit as any other), so it needs no BEGIN, savepoint or
        COMMIT beside it; SQLite takes the write lock for it as BEGIN IMMEDIATE would. None when the
        row was skipped for its unique key: the batch path then finds the key's holder."""
        inserted = None
        conn = getattr(self._local, "conn", None)
        if conn is not None:  # one try without _run's wrapping, the commonest call of all
            self._turn.take(self.options.busy_timeout)
            try:
                inserted = conn.execute(_INSERT, row).rowcount
            except sqlite3.Error:
                pass  # a failed INSERT changed nothing: _run tries again, waits out a lock, names the cause
            finally:
                self._turn.give_back()
        if inserted is None:
            inserted = self._run(lambda cur: cur.execute(_INSERT, row).rowcount, write=True, begin=False)
        if inserted == 1:
            return [Enqueued(row[0], True)]
        return [Enqueued(row[0], False)] if row[_UNIQUE_AT] is None else None

    def _enqueue_through(self, connection: object, jobs: Sequence[NewJob], rows: list[tuple[Any, ...]],
                         now: float) -> list[Enqueued]:
        """Write with the caller's sqlite3 connection and leave its transaction open: the caller's
        commit or rollback decides. No busy retry here: the transaction is the caller's."""
        if not isinstance(connection, sqlite3.Connection):
            raise ConfigurationError("the sqlite backend enqueues in a transaction through a "
                                     f"sqlite3.Connection, not {type(connection).__name__}")
        with translate_errors(self._classify):
            if not self._opened:
                self.open()
            cursor = connection.cursor()
            cursor.row_factory = None  # the caller's row_factory may make dicts
            files = [row[2] for row in cursor.execute("PRAGMA database_list") if row[1] == "main"]
            if not files or not _same_file(files[0], self.options.path):
                raise ConfigurationError(f"the connection to enqueue through is not to {self.options.path}")
            _join_caller_transaction(connection)
            return _insert(cursor, jobs, rows, now)

    # worker -------------------------------------------------------------------------------------
    def claim(self, queues: Sequence[str] | None, limit: int, *, worker_id: str, lease: float) -> list[Claim]:
        names = None if queues is None else list(dict.fromkeys(queues))
        if limit <= 0 or names == []:
            return []
        now = self.now()

        def run(cur: sqlite3.Cursor) -> list[Any]:
            cur.execute(_PROMOTE, (now, _PROMOTE_LIMIT))
            picked, every_unpaused = names, False
            if names is None:
                if _HAS_RETURNING:
                    # the common case in one statement, which takes nothing while any queue is paused
                    rows = cur.execute(_claim_sql(None, none_paused=True),
                                       (now + lease, now, worker_id, limit)).fetchall()
                    if rows:
                        return rows
                if cur.execute(ANY_PAUSED).fetchone()[0]:
                    # the one-scan statement would walk a paused queue's backlog at every claim
                    picked = [row[0] for row in cur.execute(RUNNABLE_QUEUES)]
                    if not picked:
                        return []
                    if len(picked) > _UNION_QUEUES:
                        picked, every_unpaused = None, True
                elif _HAS_RETURNING:
                    return []  # nothing paused, and the claim above found nothing
            params = (now + lease, now, worker_id, limit, *(picked or ()))
            count = None if picked is None else len(picked)
            if _HAS_RETURNING:
                return cur.execute(_claim_sql(count, every_unpaused), params).fetchall()
            return _claim_without_returning(cur, _pick_sql(count, every_unpaused), params)

        return claims_from_rows(self._write(run))

    def claim_ids(self, job_ids: Sequence[str], *, worker_id: str, lease: float) -> list[Claim]:
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return []
        now = self.now()
        chunks = [_padded(ids[i:i + _IDS_CHUNK]) for i in range(0, len(ids), _IDS_CHUNK)]

        def run(cur: sqlite3.Cursor) -> list[Any]:
            # every chunk in one write transaction: the whole call is one atomic step
            rows: list[Any] = []
            for chunk in chunks:
                params = (now + lease, now, worker_id, *chunk)
                if _HAS_RETURNING:
                    rows += cur.execute(_claim_ids_sql(len(chunk)), params).fetchall()
                else:
                    rows += _claim_without_returning(cur, _pick_ids_sql(len(chunk)), params)
            return rows

        return claims_from_rows(self._write(run))

    def extend(self, claims: Sequence[Claim], lease: float) -> Extended:
        if not claims:
            return Extended()
        now = self.now()
        return self._write(lambda cur: extend_claims(cur, claims, now + lease))

    def settle(self, outcomes: Sequence[Outcome]) -> list[str]:
        if not outcomes:
            return []
        now = self.now()
        rows = [settle_row(outcome, now) for outcome in outcomes]
        if _HAS_RETURNING and len(rows) <= _SETTLE_ONE_STATEMENT and len({row[6] for row in rows}) == len(rows):
            # one statement, atomic by itself: the write lock is held for one step, not a dozen calls
            sql, params = settle_many_sql(_pow2(len(rows))), _padded_params(rows)
            applied = self._run(lambda cur: {row[0] for row in cur.execute(sql, params).fetchall()},
                                write=True, begin=False)
            fenced = [row[6] for row in rows if row[6] not in applied]
        else:  # a repeated id must be fenced the second time: one UPDATE each, in order
            fenced = self._write(lambda cur: apply_fenced(cur, _SETTLE, rows, id_index=6))
        if any(row[0] == "available" for row in rows):  # a retry due at once: wake local waiters
            self.notify()
        return fenced

    def release(self, claims: Sequence[Claim], delay: float = 0.0) -> None:
        if claims:
            now = self.now()
            state = "scheduled" if delay > 0 else "available"
            rows = [(state, now + max(delay, 0.0), claim.id, claim.token) for claim in claims]
            self._write(lambda cur: cur.executemany(_RELEASE, rows))
            if state == "available":
                self.notify()

    def maintain(self, limit: int = 1000) -> Maintenance:
        now = self.now()
        limit = max(limit, 0)  # SQLite reads a negative LIMIT as no limit

        def maintain(cur: sqlite3.Cursor) -> Maintenance:
            promoted = cur.execute(_PROMOTE, (now, limit)).rowcount
            cur.execute(_REAP_CANCELLED, (now, limit))
            failed = cur.execute(_REAP_FAILED, (now, limit)).rowcount
            requeued = cur.execute(_REAP_REQUEUE, (now, limit - failed)).rowcount if failed < limit else 0
            failed += fail_unknown_states(cur, lambda: now, limit)
            return Maintenance(promoted, requeued, failed)

        done = self._write(maintain)
        if done.promoted or done.requeued:
            self.notify()
        return done

    def wait(self, queues: Sequence[str] | None, timeout: float) -> None:
        """Return when a job may be claimable on ``queues``, ``notify()`` is called, or after
        ``timeout``. Another process's commit is seen within about ``_POLL`` seconds."""
        deadline, generation = time.monotonic() + timeout, self._generation  # an int read is atomic
        names = None if queues is None else list(dict.fromkeys(queues))
        probe = _probe_sql(None if names is None else len(names))

        def look(cur: sqlite3.Cursor) -> tuple[int, float | None]:
            version = cur.execute("PRAGMA data_version").fetchone()[0]
            ready, due = cur.execute(probe, names or ()).fetchone()  # paused queues count as empty
            return version, (self.now() if ready else due if isinstance(due, (int, float)) else None)

        version, due = self._read(look)
        while due is None or due > self.now():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            with self._wakeup:
                if self._generation == generation:
                    self._wakeup.wait(min(remaining, _POLL))
                if self._generation != generation:
                    return
            current = self._read(lambda cur: cur.execute("PRAGMA data_version").fetchone()[0])
            if current != version:
                version, due = self._read(look)

    def notify(self) -> None:
        with self._wakeup:
            self._generation += 1
            self._wakeup.notify_all()

    # queries and admin --------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        row = self._read(lambda cur: cur.execute(_GET, (job_id,)).fetchone())
        return record_from_row(row) if row is not None else None

    def counts(self, *, by_queue: bool = False) -> Counts:
        sql = _COUNTS_BY_QUEUE if by_queue else _COUNTS
        return fold_counts(self._read(lambda cur: cur.execute(sql).fetchall()), by_queue=by_queue)

    def retry(self, job_ids: Sequence[str]) -> int:
        if not job_ids:
            return 0
        now = self.now()
        rows = [(now, job_id) for job_id in job_ids]
        moved: int = self._write(lambda cur: cur.executemany(_RETRY, rows).rowcount)
        if moved:
            self.notify()
        return moved

    def cancel(self, job_ids: Sequence[str]) -> Mapping[str, CancelResult]:
        now = self.now()
        return self._write(lambda cur: cancel_jobs(cur, job_ids, now)) if job_ids else {}

    def purge(self, state: JobState, older_than: float) -> int:
        """In chunks, one write transaction each, so workers take the lock in between."""
        removed, after = 0, ""
        while True:
            doomed = self._write(partial(purge_chunk, state=state, older_than=older_than, after=after,
                                         limit=_PURGE_CHUNK))
            removed += len(doomed)
            if len(doomed) < _PURGE_CHUNK:
                return removed
            after = doomed[-1]

    def list(self, query: JobQuery) -> list[JobRecord]:
        sql, params = build_list_query(query)
        rows = self._read(lambda cur: cur.execute(sql, params).fetchall())
        return [record_from_row(row) for row in rows]

    # queue control, workflows, limits -------------------------------------------------------------
    def set_paused(self, queues: Sequence[str], paused: bool) -> None:
        names = list(dict.fromkeys(queues))
        if not names:
            return
        now = self.now()
        if paused:
            self._write(lambda cur: cur.executemany(PAUSE, [(name, now) for name in names]))
        else:
            self._write(lambda cur: cur.executemany(RESUME, [(name,) for name in names]))
            self.notify()  # other processes see the commit through PRAGMA data_version

    def paused_queues(self) -> frozenset[str]:
        return frozenset(row[0] for row in self._read(lambda cur: cur.execute(PAUSED).fetchall()))

    def wake(self, job_ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return 0
        now = self.now()
        chunks = [_padded(ids[i:i + _IDS_CHUNK]) for i in range(0, len(ids), _IDS_CHUNK)]

        def run(cur: sqlite3.Cursor) -> int:
            return sum(cur.execute(wake_sql(len(chunk)), (now, *chunk)).rowcount for chunk in chunks)

        moved = self._write(run)
        if moved:
            self.notify()
        return moved

    def get_many(self, job_ids: Sequence[str]) -> builtins.list[JobRecord]:
        ids = list(dict.fromkeys(job_ids))
        chunks = [_padded(ids[i:i + _IDS_CHUNK]) for i in range(0, len(ids), _IDS_CHUNK)]

        def run(cur: sqlite3.Cursor) -> builtins.list[Any]:
            return [row for chunk in chunks for row in cur.execute(get_many_sql(len(chunk)), chunk).fetchall()]

        return [record_from_row(row) for row in self._read(run)] if ids else []

    def acquire_slots(self, requests: Sequence[SlotRequest], ttl: float) -> builtins.list[bool]:
        if not requests:
            return []

        def run(cur: sqlite3.Cursor) -> builtins.list[bool]:
            # the write lock (BEGIN IMMEDIATE) makes count-then-insert atomic across processes
            now = self.now()
            cur.execute(SLOT_PURGE, (now,))
            return [cur.execute(SLOT_TAKE, (r.key, r.holder, now + ttl, r.limit)).rowcount == 1
                    for r in requests]

        return self._write(run)

    def release_slots(self, held: Sequence[tuple[str, str]]) -> None:
        if held:
            self._write(lambda cur: cur.executemany(SLOT_RELEASE, [(key, holder) for key, holder in held]))

    def slot_usage(self) -> dict[str, int]:
        now = self.now()
        return {key: count for key, count in self._read(lambda cur: cur.execute(SLOT_USAGE, (now,)).fetchall())}

    def take_rate(self, key: str, limit: int, period: float) -> float:
        def run(cur: sqlite3.Cursor) -> float:
            now = self.now()  # read under the write lock: no later grant was stored by an earlier clock
            cur.execute(RATE_PURGE, (now,))  # a tat already past means the same as none
            row = cur.execute(RATE_GET, (key,)).fetchone()
            wait, tat = gcra(None if row is None else float(row[0]), now, limit, period)
            if wait == 0.0:
                cur.execute(RATE_SET, (key, tat))
            return wait

        return self._write(run)


    # observability ------------------------------------------------------------------------------
    def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        now = self.now()
        params = worker_params(info, now, ttl)

        def upsert(cur: sqlite3.Cursor) -> None:
            cur.execute(WORKER_PRUNE, (now,))
            cur.execute(WORKER_UPSERT, params)

        self._write(upsert)

    def remove_worker(self, worker_id: str) -> None:
        self._write(lambda cur: cur.execute(WORKER_DELETE, (worker_id,)))

    def workers(self) -> builtins.list[WorkerInfo]:
        now = self.now()
        return [worker_from_row(row) for row in self._read(lambda cur: cur.execute(WORKERS, (now,)).fetchall())]

    def throughput(self, since: float, bucket: float) -> Throughput:
        now = self.now()
        check_buckets(since, bucket, now)
        rows = self._read(lambda cur: cur.execute(THROUGHPUT, (since, bucket)).fetchall())
        return throughput_buckets(since, bucket, now, rows)


def _insert(cur: sqlite3.Cursor, jobs: Sequence[NewJob], rows: list[tuple[Any, ...]], now: float) -> list[Enqueued]:
    """Store ``rows`` (made from ``jobs``) all or none, in order. Plain jobs go in batches (one
    executemany); a job with unique_for or debounce looks at its key's holder first, row by row."""
    if not any(map(keyed_window, jobs)):
        return insert_jobs(cur, rows, insert_sql=_INSERT)
    cur.execute("SAVEPOINT errands_enqueue")
    try:
        results: list[Enqueued] = []
        plain: list[tuple[Any, ...]] = []
        for job, row in zip(jobs, rows):
            if not keyed_window(job):
                plain.append(row)
                continue
            if plain:  # in order: a later job must see the keys of the ones before it
                results += insert_jobs(cur, plain, insert_sql=_INSERT)
                plain = []
            results.append(_insert_windowed(cur, job, row, now))
        if plain:
            results += insert_jobs(cur, plain, insert_sql=_INSERT)
        cur.execute("RELEASE SAVEPOINT errands_enqueue")
    except BaseException:
        with suppress(sqlite3.Error):  # leave a caller's transaction as before the batch
            cur.execute("ROLLBACK TO SAVEPOINT errands_enqueue")
            cur.execute("RELEASE SAVEPOINT errands_enqueue")
        raise
    return results


def _insert_windowed(cur: sqlite3.Cursor, job: NewJob, row: tuple[Any, ...], now: float) -> Enqueued:
    """One job with a unique key and unique_for or debounce, inside the write transaction: an
    unfinished holder answers (a debounce first hands it this job's arguments and window, while
    it has not started); else, with unique_for, a job of the key created within the window does."""
    if cur.execute(ID_EXISTS, (job.id,)).fetchone() is not None:
        return Enqueued(job.id, False)
    holder = cur.execute(UNIQUE_HOLDER, (job.unique_key,)).fetchone()
    if holder is not None:
        if job.debounce is not None and holder[1] in ("scheduled", "available"):
            cur.execute(DEBOUNCE, (job.args, job.kwargs, job.meta, now + job.debounce, holder[0]))
        return Enqueued(_text(holder[0]), False)
    if job.unique_for is not None:
        recent = cur.execute(UNIQUE_RECENT, (job.unique_key, now - job.unique_for)).fetchone()
        if recent is not None:
            return Enqueued(_text(recent[0]), False)
    cur.execute(_INSERT, row)
    return Enqueued(job.id, cur.rowcount == 1)


def _text(value: Any) -> str:
    # an id written by hand that isn't UTF-8 comes back as bytes under _tolerant_text
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _claim_without_returning(cur: sqlite3.Cursor, pick: str, params: tuple[Any, ...]) -> list[Any]:
    """Claim for SQLite before 3.35 (no RETURNING): pick, update and read back row by row, in the
    same write transaction, so the result is the same; it only takes a few more calls."""
    rowids = [row[0] for row in cur.execute(pick, params).fetchall()]
    for rowid in rowids:
        cur.execute(f"UPDATE {TABLE} SET {_CLAIM_SET}, token = ?4 WHERE rowid = ?5",
                    (*params[:3], secrets.token_hex(16), rowid))
    read = f"SELECT {_CLAIM_COLUMNS} FROM {TABLE} WHERE rowid = ?"
    return [cur.execute(read, (rowid,)).fetchone() for rowid in rowids]


def _pow2(count: int) -> int:
    return 1 << (count - 1).bit_length()


def _padded_params(rows: list[tuple[Any, ...]]) -> list[Any]:
    """``rows`` grown to a power of two by repeating the last, flattened into one parameter list."""
    return [value for row in rows + [rows[-1]] * (_pow2(len(rows)) - len(rows)) for value in row]


def _padded(ids: list[str]) -> list[str]:
    """``ids`` grown to a power of two by repeating the last (``IN`` ignores repeats), so
    claim_ids uses a handful of statement texts, each cached, whatever the batch size."""
    size = 1 << (len(ids) - 1).bit_length()
    return ids + [ids[-1]] * (size - len(ids))


def _close(conn: sqlite3.Connection) -> None:
    with suppress(sqlite3.Error):  # best effort: the OS releases the file either way
        conn.close()


def _same_file(a: str, b: str) -> bool:
    try:
        return bool(a) and os.path.samefile(a, b)
    except OSError:
        return False


def _after_fork(ref: weakref.ReferenceType[SqliteBackend]) -> None:
    # A connection must not cross fork(): the child opens its own and never closes the parent's
    # (closing would drop the parent's POSIX locks on the file).
    backend = ref()
    if backend is not None:
        backend._reset_connections()
