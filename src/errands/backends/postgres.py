"""The PostgreSQL backend (``postgresql://``, ``postgres://``; extra ``errands[postgres]``).

    postgresql://user:password@host:5432/dbname?schema=errands&pool_max=10&pool_timeout=3

errands takes its own options out of the query string and hands the rest to libpq (``sslmode``,
``connect_timeout``, ``options``, ...): ``schema`` (default ``public``) holds the tables
``errands_jobs`` and ``errands_meta``, created on first use and migrated by version under an
advisory lock; ``pool_max`` (default 10) bounds the connection pool; ``pool_timeout`` (default 3)
is how many seconds a call waits for a connection before ``BackendUnavailable``.

* Durable when ``perform`` returns: the INSERT has committed (``open()`` warns when
  ``synchronous_commit`` is off, which makes the last commits losable in a server crash).
* Enqueue is one ``INSERT ... SELECT FROM unnest(...)`` per batch (one plain ``INSERT`` for a
  single job); it NOTIFYs the schema's channel with each queue that got runnable jobs, so idle
  workers wake at once. A batch without unique keys goes without ``ON CONFLICT`` first (its
  per-row speculative insertion costs ~15% of the server time) and again with it only if an id
  already exists. Batch arrays are sent as literals built here (``_postgres_arrays.py``).
* Claim is one ``UPDATE`` fed by ``SELECT ... FOR UPDATE SKIP LOCKED`` over a partial index: no
  double claim, no waiting on other claimers. It also says when the next scheduled job is due;
  once that time comes, the promotion of due jobs is pipelined in front of the claim (one round
  trip), and until then it costs nothing.
* Heartbeats, settles and releases are one statement per batch, fenced by ``(id, token)``.
* ``wait()`` is woken by LISTEN on a connection of its own (``_postgres_listen.py``), kept by
  a background thread that reconnects by itself.
* ``app.transaction(conn)`` writes through the caller's psycopg connection, so the job exists
  if and only if the caller commits (and the NOTIFY goes out with that commit).
* Times are float8 epoch seconds from the server's clock; args, kwargs and result are the
  codec's JSON as ``text`` (big integers exact; a row written by hand that isn't JSON still
  comes out, for the worker to fail that one job).
* Server errors (down, restarting, too many connections, disk full, read-only) are
  ``BackendUnavailable`` naming the cause; the pool reconnects when the server is back.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from ..errors import BackendUnavailable, ConfigurationError, ErrandsError, SerializationError
from ..jobs import JobState
from ._postgres_arrays import bool_array, float_array, int_array, text_array
from ._postgres_listen import Listener
from ._postgres_sql import CLAIM_UNION_MAX, Statements
from ._sql import (
    build_list_query,
    claims_from_rows,
    fold_counts,
    keyed_window,
    record_from_row,
    retry_while,
    run_migrations,
    settle_row,
    translate_errors,
)
from ._sql_registry import worker_from_row, worker_params
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
    grant_slots,
    throughput_buckets,
)

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["PostgresBackend", "PostgresOptions", "parse_url"]

log = logging.getLogger("errands.postgres")
_T = TypeVar("_T")
Connection = psycopg.Connection[Any]

OPTIONS = ("schema", "pool_max", "pool_timeout")
_SCHEMA_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
# libpq settings errands chooses unless the URL does: a dead server or a cut network is noticed
# in seconds (connect, unanswered writes, silent peers) instead of hanging a worker for minutes.
_LIBPQ_DEFAULTS = {"connect_timeout": "3", "application_name": "errands", "keepalives": "1",
                   "keepalives_idle": "10", "keepalives_interval": "3", "keepalives_count": "3",
                   "tcp_user_timeout": "15000"}
_PROMOTE_LIMIT = 10_000  # due scheduled jobs made available per claim, as memory.py
_PURGE_CHUNK = 5_000  # rows deleted per statement, so a big purge never holds many locks at once
_TRANSIENT_FOR = 5.0  # seconds deadlocks / serialization failures are retried before giving up
_WAITING = frozenset({JobState.SCHEDULED.value, JobState.AVAILABLE.value})
_PURGE_LIMITS_EVERY = 30.0  # seconds between one process's sweeps of lapsed slot and rate rows


# URL ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PostgresOptions:
    conninfo: str  # the URL without errands' options, for libpq
    schema: str = "public"
    pool_max: int = 10
    pool_timeout: float = 3.0
    where: str = ""  # host:port/db, for messages (no credentials)


def parse_url(url: str) -> PostgresOptions:
    """Split errands' options (``schema``, ``pool_max``, ``pool_timeout``) from the libpq URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise ConfigurationError(f"not a postgresql:// URL: {parts.scheme}://...")
    # libpq's parameters pass through as written (libpq decodes %XX but not "+"); ours are removed
    ours: dict[str, str] = {}
    rest: list[str] = []
    for item in filter(None, parts.query.split("&")):
        key = unquote(item.split("=", 1)[0])
        if key not in OPTIONS:
            rest.append(item)
        elif key in ours:
            raise ConfigurationError(f"PostgreSQL URL parameter {key!r} given twice")
        else:
            ours[key] = unquote(item.split("=", 1)[1] if "=" in item else "")
    given = {unquote(item.split("=", 1)[0]) for item in rest}
    rest += [f"{key}={value}" for key, value in _LIBPQ_DEFAULTS.items() if key not in given]
    conninfo = urlunsplit(parts._replace(scheme="postgresql", query="&".join(rest)))
    schema = ours.get("schema", "public")
    if not (0 < len(schema) <= 50 and set(schema) <= _SCHEMA_CHARS and not schema[0].isdigit()):
        raise ConfigurationError(f"PostgreSQL URL: schema must be 1-50 of A-Z a-z 0-9 _, not starting "
                                 f"with a digit; got {schema!r}")
    where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"
    return PostgresOptions(conninfo, schema, _number(ours, "pool_max", 10, int, 1, 1000),
                           _number(ours, "pool_timeout", 3.0, float, 0.1, 3600.0), where)


def _number(options: Mapping[str, str], key: str, default: Any, kind: type, low: float, high: float) -> Any:
    if key not in options:
        return default
    try:
        value = kind(options[key])
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ConfigurationError(f"PostgreSQL URL: {key} must be a number from {low:g} to {high:g}, "
                                 f"got {options[key]!r}")
    return value


# errors -------------------------------------------------------------------------------------------
def _is_transient(exc: Exception) -> bool:
    # Deadlocks (40P01) and serialization failures (40001): the statement rolled back, run it again.
    return isinstance(exc, pg_errors.TransactionRollback)


def _is_nul(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.DataError) and "NUL" in str(exc)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    state = getattr(exc, "sqlstate", None)
    return f"{text} ({type(exc).__name__}, SQLSTATE {state})" if state else f"{text} ({type(exc).__name__})"


def _lost(conn: Connection | None) -> bool:
    return conn is not None and (conn.closed or conn.broken)


def _row(conn: Connection, statement: str, params: Any = None) -> tuple[Any, ...]:
    """The one row a statement always returns (an aggregate, a SELECT of expressions)."""
    row: tuple[Any, ...] | None = conn.execute(statement, params).fetchone()
    if row is None:
        raise psycopg.ProgrammingError(f"no row from {statement[:60]!r}")
    return row


class PostgresBackend(Backend):
    """Jobs in PostgreSQL: see the module docstring.

    >>> backend = PostgresBackend("postgresql://app@db/app?schema=jobs", Settings())
    >>> backend.open()
    """

    capabilities = frozenset({Capability.TRANSACTIONAL_ENQUEUE, Capability.MULTI_PROCESS,
                              Capability.PERSISTENT, Capability.QUERIES, Capability.PUSH_WAKEUP,
                              Capability.PRIORITIES, Capability.UNIQUE, Capability.QUEUE_CONTROL,
                              Capability.LIMITS, Capability.WORKFLOWS})

    def __init__(self, url: str, settings: Settings) -> None:
        super().__init__(url, settings)
        self.options = parse_url(url)
        self.sql = Statements(self.options.schema)
        self.schema_version: int | None = None
        self._open_lock = threading.Lock()
        self._due_at = -math.inf  # monotonic time the next scheduled job is due; unknown: promote
        self._limits_swept = -math.inf  # monotonic time of this process's last purge_limits
        self._reset()
        if hasattr(os, "register_at_fork"):  # a pool's sockets and threads must not cross fork()
            os.register_at_fork(after_in_child=_after_fork(weakref.ref(self)))

    def _reset(self) -> None:
        self._pool: ConnectionPool[Connection] | None = None
        self._listener = Listener(self.options.conninfo, self.sql.channel, self.options.where)

    # lifecycle -----------------------------------------------------------------------------------
    def open(self) -> None:
        """Start the pool and create or migrate the schema. With the server down the pool keeps
        trying and the schema is set up at the first call that reaches it (a worker started
        before its database waits for it); ``errands migrate`` then fails on its next query."""
        with self._open_lock:
            if self._pool is not None:
                return
            pool: ConnectionPool[Connection] = ConnectionPool(
                self.options.conninfo, min_size=1, max_size=self.options.pool_max, open=False,
                timeout=self.options.pool_timeout, name=f"errands:{self.options.schema}",
                # A replacement connection is retried with doubling pauses; giving up after 30 s
                # lets the next request start afresh, so recovery after a long outage stays quick.
                kwargs={"autocommit": True}, reconnect_timeout=30.0,
            )
            pool.open(wait=False)
            self._pool = pool
        try:
            self._ensure_schema()
        except BackendUnavailable as exc:
            log.warning("PostgreSQL is not reachable yet (%s); will keep trying", exc)
        except BaseException:  # a schema newer than this code, no privilege...: don't leak the pool
            self.close()
            raise

    def close(self) -> None:
        with self._open_lock:
            pool, listener = self._pool, self._listener
            self._reset()
        listener.stop()
        if pool is not None:
            pool.close()

    def _ensure_schema(self) -> None:
        if self.schema_version is None:
            self.schema_version = self._run(self._migrate, ready=False)

    def _migrate(self, conn: Connection) -> int:
        """One opener at a time (a transaction-scoped advisory lock keyed by the schema) creates
        the schema and brings it to the latest version; the others then find it done."""
        digest = hashlib.blake2b(f"errands:{self.options.schema}".encode(), digest_size=8).digest()
        key = int.from_bytes(digest, "big", signed=True)
        with conn.transaction():
            cur = conn.cursor()
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
            schema = sql.Identifier(self.options.schema)
            exists = cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.options.schema,))
            if exists.fetchone() is None:  # CREATE SCHEMA IF NOT EXISTS needs CREATE even when it exists
                cur.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
            cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(schema))
            version = run_migrations(cur, self.sql.migrations, meta_ddl=self.sql.meta_ddl, placeholder="%s")
            setting = cur.execute("SHOW synchronous_commit").fetchone()
        if setting is not None and setting[0] == "off":
            log.warning("PostgreSQL at %s has synchronous_commit=off: a job perform() acknowledged can be "
                        "lost if the server crashes before it flushes its WAL. Set synchronous_commit=on "
                        "for the errands role or database.", self.options.where)
        return version

    def now(self) -> float:
        return float(self._run(lambda conn: _row(conn, "SELECT date_part('epoch', clock_timestamp())"))[0])

    # running statements --------------------------------------------------------------------------
    def _classify(self, exc: Exception) -> ErrandsError | None:
        where = f"PostgreSQL at {self.options.where}"
        if isinstance(exc, PoolClosed):
            return BackendUnavailable(f"{where}: the backend was closed")
        if isinstance(exc, psycopg.OperationalError):
            # connection lost, admin shutdown, too many connections, disk full, out of memory, ...
            return BackendUnavailable(f"{where}: {_describe(exc)}")
        if isinstance(exc, (pg_errors.ReadOnlySqlTransaction, pg_errors.InsufficientPrivilege,
                            pg_errors.TransactionRollback)):
            return BackendUnavailable(f"{where} refused the statement: {_describe(exc)}")
        if _is_nul(exc):
            return SerializationError("PostgreSQL text can't hold NUL (\\x00) characters")
        if isinstance(exc, UnicodeEncodeError):
            return SerializationError(f"text that UTF-8 can't carry (a lone surrogate?): {exc}")
        return None  # a bug of ours (syntax, types): let it show as it is

    def _run(self, fn: Callable[[Connection], _T], *, ready: bool = True) -> _T:
        """``fn`` on a pooled connection (autocommit), errors translated. A connection the server
        dropped (a restart) is replaced and ``fn`` tried again on a fresh one; deadlocks and
        serialization failures are retried for a few seconds."""
        if self._pool is None:
            self.open()
        if ready and self.schema_version is None:
            self._ensure_schema()
        with translate_errors(self._classify):
            return retry_while(lambda: self._attempt(fn), transient=_is_transient, timeout=_TRANSIENT_FOR,
                               what=f"PostgreSQL at {self.options.where} kept aborting the statement")

    def _attempt(self, fn: Callable[[Connection], _T]) -> _T:
        pool = self._pool
        if pool is None:
            raise PoolClosed("the backend was closed")
        # Every idle connection may have died with the server: try each, then a fresh one.
        for _ in range(self.options.pool_max + 1):
            conn: Connection | None = None
            try:
                with pool.connection() as conn:
                    return fn(conn)
            except PoolTimeout as exc:
                raise self._unreachable(exc) from exc
            except psycopg.OperationalError:
                if not _lost(conn):
                    raise
                log.debug("a pooled connection to %s was lost; trying another", self.options.where)
        raise BackendUnavailable(f"PostgreSQL at {self.options.where}: every connection was lost")

    def _unreachable(self, exc: PoolTimeout) -> BackendUnavailable:
        """Why no connection came within ``pool_timeout``: a direct attempt names the cause
        (refused, too many clients, bad password...), or the pool is just busy."""
        where = f"PostgreSQL at {self.options.where}"
        try:
            psycopg.connect(self.options.conninfo, connect_timeout=2).close()
        except psycopg.Error as cause:
            return BackendUnavailable(f"{where} is unreachable: {_describe(cause)}")
        return BackendUnavailable(f"{where}: no connection free within {self.options.pool_timeout:g}s "
                                  f"(pool_max={self.options.pool_max}): {exc}")

    # producer ------------------------------------------------------------------------------------
    def enqueue(self, jobs: Sequence[NewJob], *, connection: object | None = None) -> list[Enqueued]:
        if not jobs:
            return []
        insert: Callable[[Connection], list[Enqueued]]
        if any(keyed_window(j) for j in jobs):
            insert = partial(self._enqueue_each, jobs)
        else:
            insert = partial(self._insert, jobs, fresh=connection is None)
        if any(j.run_at is not None or j.delay > 0 or j.debounce is not None for j in jobs):
            self._due_at = -math.inf  # a new scheduled job: the next claim looks again
        if connection is None:
            return self._run(insert)
        return self._enqueue_through(connection, insert)

    def _insert(self, jobs: Sequence[NewJob], conn: Connection, *, fresh: bool = False) -> list[Enqueued]:
        """The batch INSERT of plain jobs (one statement), then who holds what it skipped.

        ``fresh`` (our own autocommit connection, where a failed statement leaves nothing
        behind): a batch of several jobs without unique keys first goes as a plain INSERT,
        which only an existing id (a retried enqueue, an id the caller chose) can fail."""
        sql_text, params = self._enqueue_statement(jobs)
        # tuple rows even on a caller's connection whose row_factory makes dicts
        cursor = conn.cursor(row_factory=tuple_row)
        if fresh and len(jobs) > 1 and conn.autocommit and all(job.unique_key is None for job in jobs):
            try:
                cursor.execute(self.sql.enqueue_fresh, params)
                return [Enqueued(job.id, True) for job in jobs]
            except pg_errors.UniqueViolation:
                pass  # rolled back whole: the statement below skips the ids that exist
        created = {row[0] for row in cursor.execute(sql_text, params)}
        if len(created) == len(jobs):
            return [Enqueued(job.id, True) for job in jobs]
        return self._answer_skipped(conn, jobs, created)

    def _enqueue_each(self, jobs: Sequence[NewJob], conn: Connection) -> list[Enqueued]:
        """A batch with unique_for / debounce jobs: row by row in batch order (a later job sees
        an earlier one's key), in one transaction (a savepoint inside a caller's), so still all
        or none."""
        def each() -> list[Enqueued]:
            return [self._enqueue_keyed(job, conn) if keyed_window(job) else self._insert([job], conn)[0]
                    for job in jobs]

        if conn.autocommit:  # ours, or a caller's in autocommit: a transaction (a savepoint if one is open)
            with conn.transaction():
                return each()
        # A caller's connection outside autocommit: psycopg's transaction() would COMMIT a
        # transaction it opened itself, so a plain savepoint (whose statement opens the caller's
        # transaction if none is) keeps the batch all or none and the commit the caller's.
        cursor = conn.cursor()
        cursor.execute("SAVEPOINT errands_keyed")
        try:
            result = each()
        except BaseException:
            with suppress(Exception):
                cursor.execute("ROLLBACK TO SAVEPOINT errands_keyed")
            raise
        cursor.execute("RELEASE SAVEPOINT errands_keyed")
        return result

    def _enqueue_keyed(self, job: NewJob, conn: Connection) -> Enqueued:
        """One job whose key has a window, under a transaction-scoped advisory lock on the key (so
        two such enqueues of one key take turns; each statement then sees the other's commit): an
        existing id answers itself; an unstarted holder is debounced; an unfinished holder, or
        with unique_for the newest job created within the window, holds the key; else insert."""
        cursor = conn.cursor(row_factory=tuple_row)
        cursor.execute(self.sql.lock_keys, ([self._lock_key("unique", job.unique_key or "")],))
        if cursor.execute(self.sql.job_exists, (job.id,)).fetchone() is not None:
            return Enqueued(job.id, False)
        if job.debounce is not None:
            moved = cursor.execute(self.sql.debounce, {
                "args": job.args, "kwargs": job.kwargs, "meta": job.meta, "delay": float(job.debounce),
                "key": job.unique_key}).fetchone()
            if moved is not None:
                return Enqueued(moved[0], False)
        window = None if job.unique_for is None else float(job.unique_for)
        holder = cursor.execute(self.sql.key_holder, {"key": job.unique_key, "window": window}).fetchone()
        if holder is not None:
            return Enqueued(holder[0], False)
        return self._insert([job], conn)[0]

    def _lock_key(self, kind: str, name: str) -> int:
        """A 64-bit advisory lock id for ``name`` of ``kind`` in this schema."""
        digest = hashlib.blake2b(f"errands:{self.options.schema}:{kind}:{name}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

    def _enqueue_statement(self, jobs: Sequence[NewJob]) -> tuple[str, tuple[Any, ...]]:
        # a debounce without a unique key only delays the job: run_at NULL, delay = debounce
        timing = [(None, float(j.debounce)) if j.debounce is not None else (j.run_at, float(j.delay))
                  for j in jobs]
        if len(jobs) == 1:
            j, (run_at, delay) = jobs[0], timing[0]
            return self.sql.enqueue_one, (j.id, j.name, j.queue, j.args, j.kwargs, j.max_attempts, j.priority,
                                          run_at, delay, j.unique_key, j.timeout, j.meta)
        return self.sql.enqueue, (
            text_array(j.id for j in jobs), text_array(j.name for j in jobs), text_array(j.queue for j in jobs),
            text_array(j.args for j in jobs), text_array(j.kwargs for j in jobs),
            int_array(j.max_attempts for j in jobs), int_array(j.priority for j in jobs),
            float_array(t[0] for t in timing), float_array(t[1] for t in timing),
            text_array(j.unique_key for j in jobs), float_array(j.timeout for j in jobs), text_array(j.meta for j in jobs),
        )

    def _answer_skipped(self, conn: Connection, jobs: Sequence[NewJob], created: set[str]) -> list[Enqueued]:
        """Rows the INSERT skipped: an id that exists answers itself; a unique key an unfinished
        job holds answers with that job's id (as memory.py does)."""
        skipped = [job for job in jobs if job.id not in created]
        keys = [job.unique_key for job in skipped if job.unique_key is not None]
        cursor = conn.cursor(row_factory=tuple_row)
        rows = cursor.execute(self.sql.holders, ([job.id for job in skipped], keys)).fetchall()
        existing = {row[0] for row in rows}
        holders = {row[1]: row[0] for row in rows if row[1] is not None and row[2]}
        answers, seen = [], set()
        for job in jobs:
            if job.id in created and job.id not in seen:
                answers.append(Enqueued(job.id, True))
            elif job.id not in existing and job.unique_key in holders:
                answers.append(Enqueued(holders[job.unique_key], False))
            else:
                answers.append(Enqueued(job.id, False))
            seen.add(job.id)
        return answers

    def _enqueue_through(self, connection: object, insert: Callable[[Connection], _T]) -> _T:
        """Write with the caller's psycopg connection, inside its transaction (psycopg opens one
        if it isn't in autocommit mode): the caller's commit or rollback decides, and the NOTIFY
        goes out with the commit. No retries here: the transaction is the caller's."""
        if not isinstance(connection, psycopg.Connection):
            raise ConfigurationError("the postgres backend enqueues in a transaction through a "
                                     f"psycopg.Connection, not {type(connection).__name__}")
        if self._pool is None or self.schema_version is None:
            self._run(lambda conn: None)  # the schema must exist before the caller's INSERT
        try:
            with translate_errors(self._classify):
                return insert(connection)
        except pg_errors.UndefinedTable as exc:
            raise ConfigurationError(f"the connection to enqueue through has no {self.sql.jobs}: is it to "
                                     f"the database of the URL ({self.options.where})?") from exc

    # worker --------------------------------------------------------------------------------------
    def claim(self, queues: Sequence[str] | None, limit: int, *, worker_id: str, lease: float) -> list[Claim]:
        # a name with NUL can't be stored, so no job is in such a queue
        names = None if queues is None else list(dict.fromkeys(q for q in queues if "\x00" not in q))
        if limit <= 0 or names == []:
            return []
        count = None if names is None else len(names)
        params: dict[str, Any] = {"limit": limit, "lease": float(lease), "worker": worker_id}
        if names is not None and len(names) > CLAIM_UNION_MAX:
            params["queues"] = names
        elif names is not None:
            params.update((f"q{i}", name) for i, name in enumerate(names))
        promote, claim = time.monotonic() >= self._due_at, self.sql.claim(count)

        def run(conn: Connection) -> list[Any]:
            if not promote:
                return conn.execute(claim, params).fetchall()
            # One round trip: the promotion and the claim are pipelined (and share the implicit
            # transaction libpq gives a pipeline); the claim's own snapshot sees what was promoted.
            with conn.pipeline():
                conn.execute(self.sql.promote, {"limit": _PROMOTE_LIMIT})
                cursor = conn.execute(claim, params)
            return cursor.fetchall()

        rows = self._run(run)
        self._learn_due(rows[0][-1])
        return claims_from_rows([row for row in rows if row[0] is not None])

    def claim_ids(self, job_ids: Sequence[str], *, worker_id: str, lease: float) -> list[Claim]:
        # an id with NUL can't be stored, so no such job exists
        ids = list(dict.fromkeys(job_id for job_id in job_ids if "\x00" not in job_id))
        if not ids:
            return []
        params = {"ids": ids, "lease": float(lease), "worker": worker_id}
        return claims_from_rows(self._run(lambda conn: conn.execute(self.sql.claim_ids, params).fetchall()))

    def _learn_due(self, seconds: float | None) -> None:
        """Remember when the next scheduled job is due (as the server saw it), so claims promote
        only from then on: the promotion is most of an idle claim's cost. A scheduled job enqueued
        by another process shows up at the next claim or wait() probe, and every worker's
        maintain() promotes too, so none waits longer than about a second."""
        self._due_at = math.inf if seconds is None else time.monotonic() + float(seconds)

    def extend(self, claims: Sequence[Claim], lease: float) -> Extended:
        if not claims:
            return Extended()
        params = (float(lease), text_array(c.id for c in claims), text_array(c.token for c in claims))
        rows = self._run(lambda conn: conn.execute(self.sql.extend, params).fetchall())
        owned = {row[0] for row in rows}
        return Extended(frozenset(c.id for c in claims if c.id not in owned),
                        frozenset(row[0] for row in rows if row[1]))

    def settle(self, outcomes: Sequence[Outcome]) -> list[str]:
        if not outcomes:
            return []
        if len({o.id for o in outcomes}) < len(outcomes):
            # the same job twice in one batch: apply in order, so the first owner wins (memory.py)
            return [job_id for outcome in outcomes for job_id in self.settle([outcome])]
        # settle_row() at now=0 gives run_at and finished_at as offsets the SQL adds to its clock
        rows = [settle_row(outcome, 0.0) for outcome in outcomes]
        params = (text_array(r[6] for r in rows), text_array(r[7] for r in rows), text_array(r[0] for r in rows),
                  float_array(r[1] for r in rows), bool_array(r[2] for r in rows), text_array(r[3] for r in rows),
                  text_array(_storable(r[4]) for r in rows), bool_array(r[5] is not None for r in rows))
        applied = {row[0] for row in self._run(lambda conn: conn.execute(self.sql.settle, params).fetchall())}
        if any(r[0] == JobState.AVAILABLE.value for r in rows):
            self.notify()  # a retry due at once: this process's idle claimer takes it
        if any(r[0] == JobState.SCHEDULED.value for r in rows):
            self._due_at = -math.inf  # a retry later: the next claim learns when
        return [o.id for o in outcomes if o.id not in applied]

    def release(self, claims: Sequence[Claim], delay: float = 0.0) -> None:
        if claims:
            params = (text_array(c.id for c in claims), text_array(c.token for c in claims), float(delay))
            self._run(lambda conn: conn.execute(self.sql.release, params))
            if delay > 0:
                self._due_at = -math.inf  # snoozed: the next claim learns when they are due
            else:
                self.notify()

    def maintain(self, limit: int = 1000) -> Maintenance:
        limit = max(limit, 0)

        def run(conn: Connection) -> tuple[tuple[Any, ...], int]:
            return (_row(conn, self.sql.maintain, {"limit": limit}),
                    conn.execute(self.sql.fail_unknown, {"limit": limit}).rowcount)

        row, unknown = self._run(run)
        done = Maintenance(int(row[0]), int(row[1]), int(row[2]) + unknown)
        if done.promoted or done.requeued:
            self.notify()
        return done

    # waiting -------------------------------------------------------------------------------------
    def wait(self, queues: Sequence[str] | None, timeout: float) -> None:
        """Return when a job may be claimable on ``queues`` (a NOTIFY for one of them, or a
        scheduled job falling due), ``notify()`` is called, or after ``timeout``. Never raises:
        with the server down it waits for the listener to reconnect (the next claim reports)."""
        deadline = time.monotonic() + timeout
        listener = self._listener
        if self._pool is not None:
            listener.start()
        names = None if queues is None else [q for q in queues if "\x00" not in q]
        statement, params = self.sql.probe(names is not None), [] if names is None else [names]
        with listener.waiting(queues) as woken:
            try:
                ready, due_in = self._run(lambda conn: _row(conn, statement, params))
            except BackendUnavailable as exc:
                log.debug("waiting without a probe: %s", exc)
                ready, due_in = False, None
            if ready:
                return
            self._learn_due(due_in)
            if due_in is not None:
                deadline = min(deadline, time.monotonic() + max(float(due_in), 0.0) + 0.001)
            woken.wait(max(0.0, deadline - time.monotonic()))

    def notify(self) -> None:
        self._listener.wake(None)

    # queries and admin ---------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        if "\x00" in job_id:
            return None  # no stored id holds NUL
        row = self._run(lambda conn: conn.execute(self.sql.get, (job_id,)).fetchone())
        return record_from_row(row) if row is not None else None

    def list(self, query: JobQuery) -> list[JobRecord]:
        if any("\x00" in v for v in (query.queue, query.name, query.before_id) if v is not None):
            return []
        sql_text, params = build_list_query(query, placeholder="%s", table=self.sql.jobs)
        rows = self._run(lambda conn: conn.execute(sql_text, params).fetchall())
        return [record_from_row(row) for row in rows]

    def counts(self, *, by_queue: bool = False) -> Counts:
        sql_text = self.sql.counts(by_queue)
        return fold_counts(self._run(lambda conn: conn.execute(sql_text).fetchall()), by_queue=by_queue)

    def retry(self, job_ids: Sequence[str]) -> int:
        ids = [job_id for job_id in job_ids if "\x00" not in job_id]
        if not ids:
            return 0

        def run(conn: Connection) -> int:
            try:
                return conn.execute(self.sql.retry, {"ids": ids}).rowcount
            except pg_errors.UniqueViolation:  # an enqueue took a key in between: look again
                return conn.execute(self.sql.retry, {"ids": ids}).rowcount

        moved: int = self._run(run)
        if moved:
            self.notify()
        return moved

    def cancel(self, job_ids: Sequence[str]) -> Mapping[str, CancelResult]:
        ids = list(dict.fromkeys(job_id for job_id in job_ids if "\x00" not in job_id))
        rows = self._run(lambda conn: conn.execute(self.sql.cancel, (ids,)).fetchall()) if ids else []
        before = dict(rows)
        results: dict[str, CancelResult] = {}
        for job_id in job_ids:
            state = before.get(job_id)
            results[job_id] = (CancelResult.NOT_FOUND if state is None else CancelResult.CANCELLED
                               if state in _WAITING else CancelResult.REQUESTED
                               if state == JobState.RUNNING.value else CancelResult.FINISHED)
        return results

    def purge(self, state: JobState, older_than: float) -> int:
        """In chunks, one statement each, so no purge holds many row locks for long."""
        removed, after = 0, ""
        while True:
            params = (JobState(state).value, after, float(older_than), _PURGE_CHUNK)
            count, last = self._run(partial(_row, statement=self.sql.purge, params=params))
            removed += int(count)
            if count < _PURGE_CHUNK or last is None:
                return removed
            after = last

    # queue control and workflows -----------------------------------------------------------------
    def set_paused(self, queues: Sequence[str], paused: bool) -> None:
        names = list(dict.fromkeys(q for q in queues if "\x00" not in q))  # no job is in a NUL queue
        if not names:
            return
        self._run(lambda conn: conn.execute(self.sql.pause if paused else self.sql.resume, (names,)))
        if not paused:
            self.notify()  # the NOTIFY wakes other processes; this one's waiters look at once

    def paused_queues(self) -> frozenset[str]:
        return frozenset(row[0] for row in self._run(lambda conn: conn.execute(self.sql.paused_queues).fetchall()))

    def wake(self, job_ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(job_id for job_id in job_ids if "\x00" not in job_id))
        if not ids:
            return 0
        moved = int(self._run(lambda conn: _row(conn, self.sql.wake, (ids,)))[0])
        if moved:
            self.notify()
        return moved

    def get_many(self, job_ids: Sequence[str]) -> builtins.list[JobRecord]:
        ids = list(dict.fromkeys(job_id for job_id in job_ids if "\x00" not in job_id))
        if not ids:
            return []
        return [record_from_row(row) for row in self._run(lambda conn: conn.execute(self.sql.get_many,
                                                                                     (ids,)).fetchall())]

    # limits --------------------------------------------------------------------------------------
    def acquire_slots(self, requests: Sequence[SlotRequest], ttl: float) -> builtins.list[bool]:
        """One transaction: lock the keys (advisory locks, sorted), read their live holders,
        decide in request order as memory.py does, store the grants. Two round trips."""
        if not requests:
            return []
        keys = sorted({r.key for r in requests})
        locks = sorted({self._lock_key("slot", key) for key in keys})

        def run(conn: Connection) -> builtins.list[bool]:
            with conn.pipeline(), conn.transaction():
                conn.execute(self.sql.lock_keys, (locks,))
                rows = conn.execute(self.sql.live_holders, {"keys": keys}).fetchall()
                live: dict[str, set[str]] = {}
                for key, holder in rows:
                    live.setdefault(key, set()).add(holder)
                granted, held = grant_slots(requests, live)
                if held:
                    conn.execute(self.sql.hold, (float(ttl), [k for k, _ in held], [h for _, h in held]))
                return granted

        granted = self._run(run)
        self._sweep_limits()
        return granted

    def release_slots(self, held: Sequence[tuple[str, str]]) -> None:
        pairs = [(key, holder) for key, holder in held if "\x00" not in key + holder]
        if pairs:
            params = ([k for k, _ in pairs], [h for _, h in pairs])
            self._run(lambda conn: conn.execute(self.sql.unhold, params))

    def slot_usage(self) -> dict[str, int]:
        return {key: int(n) for key, n in self._run(lambda conn: conn.execute(self.sql.slot_usage).fetchall())}

    def take_rate(self, key: str, limit: int, period: float) -> float:
        """One upsert that grants (and stores the new tat) or refuses (storing nothing); after a
        refusal, in the same round trip, the wait read from the tat the upsert kept locked."""
        if limit < 1 or not period > 0:
            raise ConfigurationError(f"a rate limit needs limit >= 1 and period > 0, got {limit}/{period}")
        interval, period = float(period) / limit, float(period)

        def run(conn: Connection) -> float:
            with conn.pipeline(), conn.transaction():
                taken = conn.execute(self.sql.take_rate, (key, interval, interval, interval, period))
                waiting = conn.execute(self.sql.rate_wait, (interval, period, key))
            if taken.fetchone() is not None:
                return 0.0
            row = waiting.fetchone()
            # never 0.0 on a refusal, which the caller would read as a grant
            return max(float(row[0]), 1e-6) if row is not None and row[0] is not None else interval

        wait = self._run(run)
        self._sweep_limits()
        return wait

    def _sweep_limits(self) -> None:
        """Now and then delete lapsed holds and spent rate rows, so both tables stay as small as
        the keys in use. A failure here is left for the next sweep: the caller got its answer."""
        if time.monotonic() - self._limits_swept < _PURGE_LIMITS_EVERY:
            return
        self._limits_swept = time.monotonic()
        try:
            self._run(lambda conn: conn.execute(self.sql.purge_limits))
        except BackendUnavailable as exc:
            log.debug("sweeping lapsed slots and rates failed: %s", exc)

    # worker registry and throughput (the dashboard, errands stats) -------------------------------
    def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        params = worker_params(info, 0.0, float(ttl))  # times as offsets from the server's clock
        self._run(lambda conn: conn.execute(self.sql.register_worker, params))

    def remove_worker(self, worker_id: str) -> None:
        self._run(lambda conn: conn.execute(self.sql.remove_worker, (worker_id,)))

    def workers(self) -> builtins.list[WorkerInfo]:
        rows = self._run(lambda conn: conn.execute(self.sql.live_workers).fetchall())
        return [worker_from_row(row) for row in rows]

    def throughput(self, since: float, bucket: float) -> Throughput:
        now = self.now()
        check_buckets(since, bucket, now)
        params = {"since": float(since), "bucket": float(bucket)}
        rows = self._run(lambda conn: conn.execute(self.sql.throughput, params).fetchall())
        return throughput_buckets(since, bucket, now, rows)


def _storable(text: str | None) -> str | None:
    # An error message may hold NUL, which PostgreSQL text can't: show it escaped, never fail the settle.
    return text.replace("\x00", "\\x00") if text is not None and "\x00" in text else text


def _after_fork(ref: weakref.ReferenceType[PostgresBackend]) -> Callable[[], None]:
    def reset() -> None:
        # The child opens its own pool on first use and never touches the parent's sockets.
        backend = ref()
        if backend is not None:
            backend._open_lock = threading.Lock()
            backend.schema_version = None
            backend._reset()
    return reset
