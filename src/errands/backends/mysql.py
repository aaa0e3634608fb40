"""The MySQL / MariaDB backend (``mysql://``, ``mariadb://``; extra ``errands[mysql]``: PyMySQL).

    mysql://user:password@host:3306/database?table_prefix=errands_

Needs ``FOR UPDATE SKIP LOCKED``: MySQL 8.0.1+ or MariaDB 10.6+ (tested on MariaDB 10.11). A job
exists once its transaction committed, as durable as InnoDB makes a commit
(``innodb_flush_log_at_trx_commit=1``, the default; ``open()`` warns otherwise). Other URL
options: ``connect_timeout``, ``read_timeout``, ``write_timeout``, ``lock_timeout`` (seconds),
``unix_socket``.

* Connections (one per thread, READ COMMITTED, autocommit off, reconnects, error translation)
  are in ``_mysql_conn.py``; the SQL and the schema in ``_mysql_sql.py``.
* Claim reads a window of the best candidates from an index without locking, locks them
  through the primary key with ``SKIP LOCKED`` up to the limit (claimers never wait for each
  other; ``_mysql_sql.pick_sql`` says why not through the index) and moves them with one
  UPDATE: two statements and a COMMIT. Due scheduled jobs are claimed directly; ``maintain``
  promotes the rest and reclaims expired leases, also with ``SKIP LOCKED``.
* Extend, settle and release lock the rows they name in primary-key order (one order
  everywhere, so no two transactions lock in opposite orders), keep those the token still owns
  and change them with one UPDATE per distinct outcome: three round trips per batch, whatever
  its size. Deadlocks and lock waits retry the whole transaction, then BackendUnavailable.
* Time is the server's clock, ``UNIX_TIMESTAMP(NOW(6))`` in a UTC session, read every few seconds
  and carried forward by this host's monotonic clock: ``now()`` costs no round trip and a worker
  whose own clock is off still agrees with the others.
* MySQL has no push channel (no LISTEN/NOTIFY), so ``wait`` polls two index probes, 2 ms apart at
  first and backing off to 50 ms; ``notify()`` ends a wait in this process at once.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import os
import secrets
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from contextlib import suppress
from functools import partial
from typing import TYPE_CHECKING, Any

import pymysql  # type: ignore[import-untyped]

from ..errors import BackendUnavailable, ConfigurationError
from ..jobs import JobState
from . import _mysql_sql as q
from ._mysql_conn import Connection, Sessions, check_version, error_code, in_transaction
from ._sql import (
    META_TABLE,
    SCHEMA_KEY,
    build_list_query,
    cancel_jobs,
    claims_from_rows,
    fail_unknown_states,
    fold_counts,
    insert_jobs,
    insert_row,
    keyed_window,
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

__all__ = ["MysqlBackend"]

log = logging.getLogger("errands.mysql")

_CLOCK_SYNC = 5.0  # seconds between reads of the server's clock
_POLL_MIN, _POLL_MAX = 0.002, 0.05  # wait()'s polling: first pause, longest pause
_DUE_SCAN = 1000  # due scheduled jobs a claim of named queues looks through (maintain promotes all)
_PURGE_CHUNK = 2000  # rows deleted per transaction, so others get the rows' locks in between
_MIGRATION_WAIT = 20  # seconds to wait for another process migrating the schema
_PURGE_LIMITS_EVERY = 30.0  # seconds between one process's sweeps of lapsed slot and rate rows
_PURGE_LIMITS_CHUNK = 1000  # rows of each kind a sweep deletes


class MysqlBackend(Backend):
    """Jobs in one InnoDB table of a MySQL 8 / MariaDB 10.6+ database.

    >>> backend = MysqlBackend("mysql://root@127.0.0.1:3306/test", Settings())
    >>> backend.open()
    """

    capabilities = frozenset({Capability.TRANSACTIONAL_ENQUEUE, Capability.MULTI_PROCESS,
                              Capability.PERSISTENT, Capability.QUERIES,
                              Capability.PRIORITIES, Capability.UNIQUE, Capability.QUEUE_CONTROL,
                              Capability.LIMITS, Capability.WORKFLOWS})

    def __init__(self, url: str, settings: Settings) -> None:
        super().__init__(url, settings)
        self.options = q.parse_url(url)
        self._opened = False
        self._server: tuple[Any, ...] | None = None  # (database, hostname, port) of our connections
        self._offset, self._synced_at, self._last_now = 0.0, -1e18, 0.0
        self._limits_swept = -1e18  # monotonic time of this process's last sweep of limit rows
        self._reset_connections()
        if hasattr(os, "register_at_fork"):  # POSIX only; Windows has no fork
            os.register_at_fork(after_in_child=partial(_after_fork, weakref.ref(self)))

    def _reset_connections(self) -> None:
        # Locks too: after fork() a lock another thread held would stay held in the child forever.
        self._open_lock = threading.Lock()
        self._clock = threading.Lock()
        self._sessions = Sessions(self.options, self.open)
        self._wakeup = threading.Condition()
        self._generation = 0

    # connections --------------------------------------------------------------------------------
    def open(self) -> None:
        with self._open_lock:
            if self._opened:
                return
            with translate_errors(self._sessions.classify):
                conn = self._sessions.thread_connection()
                try:
                    self._check_server(conn)
                    self._migrate(conn)
                except BaseException as exc:
                    self._sessions.abandon(conn, exc)
                    raise
            self._opened = True

    def close(self) -> None:
        with self._open_lock:
            self._opened = False
            self._sessions.close()

    # setup --------------------------------------------------------------------------------------
    def _check_server(self, conn: Connection) -> None:
        cur = conn.cursor()
        cur.execute(q.SERVER)
        version, flush, database, host, port = cur.fetchone()
        conn.commit()
        check_version(str(version))
        self._server = (database, host, port)
        if str(flush) != "1":
            log.warning("%s has innodb_flush_log_at_trx_commit=%s: a server crash may lose jobs whose enqueue "
                        "already returned. Set it to 1 for the durability errands documents.",
                        self._sessions.where, flush)

    def _migrate(self, conn: Connection) -> None:
        """Create or upgrade the schema. A current schema costs one read; otherwise one process at
        a time migrates, under a named lock (MySQL commits each DDL statement on its own)."""
        cur = q.Cursor(conn.cursor(), self.options.table_prefix)
        latest = q.MIGRATIONS[-1].version
        try:
            cur.execute(f"SELECT value FROM {META_TABLE} WHERE name = %s", (SCHEMA_KEY,))
            row = cur.fetchone()
            conn.commit()
            if row is not None and row[0] == str(latest):
                return
        except pymysql.err.ProgrammingError as exc:
            if error_code(exc) != 1146:  # no meta table yet: a new database
                raise
            conn.rollback()
        digest = hashlib.sha1(f"{self.options.database}/{self.options.table_prefix}".encode()).hexdigest()
        name = f"errands_schema_{digest[:40]}"  # lock names are limited to 64 characters
        cur.execute("SELECT GET_LOCK(%s, %s)", (name, _MIGRATION_WAIT))
        if cur.fetchone()[0] != 1:
            raise BackendUnavailable(f"{self._sessions.where}: another process kept the errands schema lock for "
                                     f"{_MIGRATION_WAIT}s (migrating?)")
        try:
            run_migrations(cur, q.MIGRATIONS, meta_ddl=q.META_DDL, placeholder="%s")
            conn.commit()
        finally:
            with suppress(pymysql.Error):  # a lost session releases the lock by itself
                cur.execute("SELECT RELEASE_LOCK(%s)", (name,))
                cur.fetchall()
                conn.commit()

    # clock --------------------------------------------------------------------------------------
    def now(self) -> float:
        """The server's clock in epoch seconds, never going backwards within this process."""
        if time.monotonic() - self._synced_at > _CLOCK_SYNC:
            self._sync_clock()
        with self._clock:
            value = max(self._last_now, time.monotonic() + self._offset)
            self._last_now = value
        return value

    def _sync_clock(self) -> None:
        def read(cur: q.Cursor) -> float:
            before = time.monotonic()
            cur.execute(q.NOW)
            server = float(cur.fetchone()[0])
            return server - (before + time.monotonic()) / 2  # the reading is half a round trip old

        offset = self._sessions.run(read)
        with self._clock:
            self._offset, self._synced_at = offset, time.monotonic()

    # producer -----------------------------------------------------------------------------------
    def enqueue(self, jobs: Sequence[NewJob], *, connection: object | None = None) -> list[Enqueued]:
        if not jobs:
            return []
        now = self.now()
        rows = [insert_row(job, now) for job in jobs]
        keyed = any(keyed_window(job) for job in jobs)
        if connection is None:
            insert = partial(q.insert_each, jobs=jobs, rows=rows, now=now) if keyed else partial(q.insert, rows=rows)
            result = self._sessions.run(insert)
        else:
            result = self._enqueue_through(connection, rows, jobs if keyed else None, now)
        if any(row[5] == "available" for row in rows):
            self.notify()
        return result

    def _enqueue_through(self, connection: object, rows: list[tuple[Any, ...]], keyed: Sequence[NewJob] | None,
                         now: float) -> list[Enqueued]:
        """Write with the caller's PyMySQL connection inside its transaction and leave it open:
        the caller's commit or rollback decides. On an autocommit connection with no transaction
        open the batch commits on its own (still all or none)."""
        if not isinstance(connection, pymysql.connections.Connection):
            raise ConfigurationError("the mysql backend enqueues in a transaction through a PyMySQL connection, "
                                     f"not {type(connection).__name__}")
        with translate_errors(self._sessions.classify):
            if not self._opened:
                self.open()
            cursor = q.Cursor(connection.cursor(pymysql.cursors.Cursor), self.options.table_prefix)
            cursor.execute(q.WHERE)
            theirs = tuple(cursor.fetchone())
            if theirs != self._server:
                raise ConfigurationError(f"the connection to enqueue through is to {theirs}, not to this "
                                         f"backend's database {self._server} (database, host, port)")
            own = connection.get_autocommit() and not in_transaction(connection)
            if own:
                connection.begin()
            try:
                if keyed is not None:  # unique_for / debounce: row by row
                    result = q.insert_each(cursor, keyed, rows, now)
                else:
                    result = insert_jobs(cursor, rows, insert_sql=q.INSERT, placeholder="%s")
                if own:
                    connection.commit()
            except BaseException:
                if own:
                    with suppress(Exception):
                        connection.rollback()
                raise
            return result

    # worker -------------------------------------------------------------------------------------
    def claim(self, queues: Sequence[str] | None, limit: int, *, worker_id: str, lease: float) -> list[Claim]:
        names = None if queues is None else list(dict.fromkeys(queues))
        if limit <= 0 or names == []:
            return []
        now, nonce = self.now(), secrets.token_hex(16)
        pick = q.pick_sql(None if names is None else len(names))
        # Candidates beyond the limit let a claim step past rows other claimers have locked.
        window = min(limit * 4 + 16, limit + 1000)
        if names is None:
            params: tuple[Any, ...] = (window, now, window, window, now, limit)
        else:
            arms = tuple(value for name in names for value in (name, name, window))
            params = (*arms, now, _DUE_SCAN, *names, window, now, limit)

        def run(cur: q.Cursor) -> list[Any]:
            cur.execute(pick, params)
            rows = cur.fetchall()
            if rows:
                cur.execute(q.claim_sql(len(rows)), (now + lease, now, worker_id, nonce, *(r[0] for r in rows)))
            return rows

        return claims_from_rows([q.claim_row(row, nonce) for row in self._sessions.run(run)])

    def claim_ids(self, job_ids: Sequence[str], *, worker_id: str, lease: float) -> list[Claim]:
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return []
        now, nonce = self.now(), secrets.token_hex(16)

        def run(cur: q.Cursor) -> list[Any]:
            cur.execute(q.by_ids(q.CLAIM_IDS, len(ids)), (*ids, now))
            rows = cur.fetchall()
            if rows:
                cur.execute(q.claim_sql(len(rows)), (now + lease, now, worker_id, nonce, *(r[0] for r in rows)))
            return rows

        return claims_from_rows([q.claim_row(row, nonce) for row in self._sessions.run(run)])

    def extend(self, claims: Sequence[Claim], lease: float) -> Extended:
        if not claims:
            return Extended()
        until = self.now() + lease

        def run(cur: q.Cursor) -> Extended:
            kept, rows = q.owned_ids(cur, claims)
            if kept:
                cur.execute(q.by_ids(q.EXTEND, len(kept)), (until, *kept))
            lost = frozenset(c.id for c in claims) - set(kept)
            return Extended(lost, frozenset(i for i in kept if rows[i][1]))

        return self._sessions.run(run)

    def settle(self, outcomes: Sequence[Outcome]) -> list[str]:
        if not outcomes:
            return []
        now = self.now()
        rows = [settle_row(outcome, now) for outcome in outcomes]  # (6 values..., id, token)

        def run(cur: q.Cursor) -> list[str]:
            owned = q.lock_owned(cur, (row[6] for row in rows))
            groups: dict[tuple[Any, ...], list[str]] = {}
            fenced: list[str] = []
            for row in rows:
                if owned.get(row[6], ("",))[0] == row[7]:
                    del owned[row[6]]  # applied once: a replay later in the batch is fenced
                    groups.setdefault(row[:6], []).append(row[6])
                else:
                    fenced.append(row[6])
            for values, ids in groups.items():  # one UPDATE per distinct outcome, not per job
                cur.execute(q.by_ids(q.SETTLE, len(ids)), (*values, *ids))
            return fenced

        fenced = self._sessions.run(run)
        if any(row[0] == "available" for row in rows):  # a retry due at once: wake local waiters
            self.notify()
        return fenced

    def release(self, claims: Sequence[Claim], delay: float = 0.0) -> None:
        if not claims:
            return
        now, delay = self.now(), max(float(delay), 0.0)

        def run(cur: q.Cursor) -> None:
            kept, _ = q.owned_ids(cur, claims)
            if kept:
                cur.execute(q.by_ids(q.RELEASE, len(kept)), (delay, now + delay, *kept))

        self._sessions.run(run)
        if delay == 0:
            self.notify()

    def maintain(self, limit: int = 1000) -> Maintenance:
        if limit <= 0:
            return Maintenance()
        now = self.now()

        def run(cur: q.Cursor) -> Maintenance:
            cur.execute(q.EXPIRED, (now, limit))
            due: list[bytes] = []
            requeue: list[bytes] = []
            failed: list[bytes] = []
            cancelled: list[bytes] = []
            for job_id, state, attempts, max_attempts, cancel in cur.fetchall():
                if state == "scheduled":
                    due.append(job_id)
                elif cancel:  # asked to stop, then its worker was lost: the cancel outlives it
                    cancelled.append(job_id)
                else:
                    (failed if attempts >= max_attempts else requeue).append(job_id)
            _apply(cur, q.REAP_CANCELLED, cancelled, now)
            unknown = fail_unknown_states(cur, lambda: now, limit, placeholder="%s", lock=" FOR UPDATE SKIP LOCKED")
            return Maintenance(_apply(cur, q.PROMOTE, due), _apply(cur, q.REAP_REQUEUE, requeue, now),
                               _apply(cur, q.REAP_FAILED, failed, now) + unknown)

        done = self._sessions.run(run)
        if done.promoted or done.requeued:
            self.notify()
        return done

    def wait(self, queues: Sequence[str] | None, timeout: float) -> None:
        """Return when a job may be claimable on ``queues``, ``notify()`` is called, or after
        ``timeout``. Another process's enqueue is seen within ``_POLL_MAX`` seconds. Never
        raises: with the server down it waits out ``timeout`` (the next claim reports it)."""
        deadline, generation = time.monotonic() + timeout, self._generation  # an int read is atomic
        names = None if queues is None else list(dict.fromkeys(queues))
        probe, pause = q.probe_sql(None if names is None else len(names)), _POLL_MIN
        params = () if names is None else tuple(value for name in names for value in (name, name))
        while True:
            remaining = deadline - time.monotonic()
            try:
                if names != []:
                    ((ready, due),) = self._sessions.rows(probe, params)
                    now = self.now()
                    if ready or (due is not None and float(due) <= now):
                        return
                    if due is not None:  # wake for the next scheduled job even if nobody enqueues
                        remaining = min(remaining, float(due) - now + 0.001)
            except BackendUnavailable as exc:
                log.debug("wait could not look for work (%s); waiting instead", exc)
                pause = _POLL_MAX
            if remaining <= 0:
                return
            with self._wakeup:
                if self._generation == generation:
                    self._wakeup.wait(min(remaining, pause))
                if self._generation != generation:
                    return
            pause = min(pause * 2, _POLL_MAX)

    def notify(self) -> None:
        with self._wakeup:
            self._generation += 1
            self._wakeup.notify_all()

    # queries and admin --------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        rows = self._sessions.rows(q.GET, (job_id,))
        return q.record(rows[0]) if rows else None

    def list(self, query: JobQuery) -> list[JobRecord]:
        sql, params = build_list_query(query, placeholder="%s")
        return [q.record(row) for row in self._sessions.rows(sql, params)]

    def counts(self, *, by_queue: bool = False) -> Counts:
        rows = self._sessions.rows(q.COUNTS_BY_QUEUE if by_queue else q.COUNTS)
        return fold_counts(((q.text(queue), state, int(n)) for queue, state, n in rows), by_queue=by_queue)

    def retry(self, job_ids: Sequence[str]) -> int:
        if not job_ids:
            return 0
        now, ids = self.now(), sorted(set(job_ids))
        moved = self._sessions.run(lambda cur: cur.execute(q.by_ids(q.RETRY, len(ids)), (now, *ids)))
        if moved:
            self.notify()
        return moved

    def cancel(self, job_ids: Sequence[str]) -> Mapping[str, CancelResult]:
        if not job_ids:
            return {}
        now, ids = self.now(), sorted(set(job_ids))

        def run(cur: q.Cursor) -> dict[str, CancelResult]:
            cur.execute(q.by_ids(q.LOCK_IDS, len(ids)), ids)  # cancel_jobs reads, then writes: hold the rows
            return cancel_jobs(cur, job_ids, now, placeholder="%s")

        return self._sessions.run(run)

    def purge(self, state: JobState, older_than: float) -> int:
        """In chunks of ``_PURGE_CHUNK``, one transaction each."""
        removed, after = 0, b""

        def chunk(cur: q.Cursor, after: bytes) -> tuple[list[bytes], int]:
            cur.execute(q.PURGE_PICK, (state.value, after, older_than, _PURGE_CHUNK))
            ids = [row[0] for row in cur.fetchall()]
            deleted = cur.execute(q.by_ids(q.PURGE, len(ids)), (*ids, state.value, older_than)) if ids else 0
            return ids, deleted

        while True:
            ids, deleted = self._sessions.run(partial(chunk, after=after))
            removed += deleted
            if len(ids) < _PURGE_CHUNK:
                return removed
            after = ids[-1]

    # queue control and workflows ----------------------------------------------------------------
    def set_paused(self, queues: Sequence[str], paused: bool) -> None:
        names = sorted(set(queues))
        if not names:
            return
        if paused:
            self._sessions.run(lambda cur: cur.execute(q.PAUSE.format(rows=q.values_rows(len(names), 1)), names))
        else:
            self._sessions.run(lambda cur: cur.execute(q.by_ids(q.RESUME, len(names)), names))
            self.notify()  # other processes see it at their next poll (wait() polls every 50 ms)

    def paused_queues(self) -> frozenset[str]:
        return frozenset(q.text(row[0]) for row in self._sessions.rows(q.PAUSED))

    def wake(self, job_ids: Sequence[str]) -> int:
        ids = sorted(set(job_ids))
        if not ids:
            return 0
        now = self.now()
        moved: int = self._sessions.run(lambda cur: cur.execute(q.by_ids(q.WAKE, len(ids)), (now, *ids)))
        if moved:
            self.notify()
        return moved

    def get_many(self, job_ids: Sequence[str]) -> builtins.list[JobRecord]:
        ids = sorted(set(job_ids))
        if not ids:
            return []
        return [q.record(row) for row in self._sessions.rows(q.by_ids(q.GET_MANY, len(ids)), ids)]

    # limits -------------------------------------------------------------------------------------
    def acquire_slots(self, requests: Sequence[SlotRequest], ttl: float) -> builtins.list[bool]:
        """One transaction: lock the keys' mutex rows (sorted), drop their lapsed holds, read the
        live ones, decide in request order as memory.py does, store the grants."""
        if not requests:
            return []
        keys = sorted({r.key for r in requests})
        now = self.now()

        def run(cur: q.Cursor) -> builtins.list[bool]:
            cur.execute(q.SLOT_LOCK.format(rows=q.values_rows(len(keys), 1)), keys)
            cur.execute(q.by_ids(q.SLOT_LAPSED, len(keys)), (*keys, now))
            cur.execute(q.by_ids(q.SLOT_LIVE, len(keys)), keys)
            live: dict[str, set[str]] = {}
            for key, holder in cur.fetchall():
                live.setdefault(q.text(key), set()).add(q.text(holder))
            granted, held = grant_slots(requests, live)
            if held:
                values = [v for key, holder in held for v in (key, holder, now + ttl)]
                cur.execute(q.SLOT_HOLD.format(rows=q.values_rows(len(held), 3)), values)
            return granted

        granted = self._sessions.run(run)
        self._sweep_limits(now)
        return granted

    def release_slots(self, held: Sequence[tuple[str, str]]) -> None:
        pairs = sorted(set(held))
        if pairs:
            values = [v for pair in pairs for v in pair]
            self._sessions.run(lambda cur: cur.execute(q.SLOT_UNHOLD.format(ids=q.values_rows(len(pairs), 2)), values))

    def slot_usage(self) -> dict[str, int]:
        return {q.text(key): int(n) for key, n in self._sessions.rows(q.SLOT_USAGE, (self.now(),))}

    def take_rate(self, key: str, limit: int, period: float) -> float:
        """One upsert that grants (storing the new tat) or refuses (changing nothing); after a
        refusal, in the same transaction, the wait from the tat the upsert keeps locked."""
        if limit < 1 or not period > 0:
            raise ConfigurationError(f"a rate limit needs limit >= 1 and period > 0, got {limit}/{period}")
        interval, period, now = float(period) / limit, float(period), self.now()

        def run(cur: q.Cursor) -> float:
            changed = cur.execute(q.RATE_TAKE, (key, now + interval, now, interval, now, period, now, interval))
            if changed:
                return 0.0
            cur.execute(q.RATE_READ, (key,))
            row = cur.fetchone()
            wait = max(float(row[0]), now) + interval - period - now if row is not None else interval
            # a tat too far from now for interval to change it: the step granted without a write
            return 0.0 if wait <= 1e-9 else wait

        wait = self._sessions.run(run)
        self._sweep_limits(now)
        return wait

    def _sweep_limits(self, now: float) -> None:
        """Now and then delete lapsed holds, keys without holds and spent rate rows, a chunk of
        each, so the tables stay as small as the keys in use. A failure waits for the next sweep."""
        if time.monotonic() - self._limits_swept < _PURGE_LIMITS_EVERY:
            return
        self._limits_swept = time.monotonic()

        def sweep(cur: q.Cursor) -> None:
            cur.execute(q.PURGE_SLOTS, (now, _PURGE_LIMITS_CHUNK))
            cur.execute(q.PURGE_SLOT_KEYS, (_PURGE_LIMITS_CHUNK,))
            cur.execute(q.PURGE_RATES, (now, _PURGE_LIMITS_CHUNK))

        try:
            self._sessions.run(sweep)
        except BackendUnavailable as exc:
            log.debug("sweeping lapsed slots and rates failed: %s", exc)

    # observability ------------------------------------------------------------------------------
    def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        now = self.now()
        params = worker_params(info, now, ttl)

        def upsert(cur: q.Cursor) -> None:
            cur.execute(q.WORKER_PRUNE, (now,))
            cur.execute(q.WORKER_UPSERT, params)

        self._sessions.run(upsert)

    def remove_worker(self, worker_id: str) -> None:
        self._sessions.run(lambda cur: cur.execute(q.WORKER_DELETE, (worker_id,)))

    def workers(self) -> builtins.list[WorkerInfo]:
        rows = self._sessions.rows(q.WORKERS, (self.now(),))
        return [worker_from_row((q.text(row[0]), *row[1:])) for row in rows]

    def throughput(self, since: float, bucket: float) -> Throughput:
        now = self.now()
        check_buckets(since, bucket, now)
        rows = self._sessions.rows(q.THROUGHPUT, (since, bucket, since))
        return throughput_buckets(since, bucket, now, rows)


def _apply(cur: q.Cursor, template: str, ids: list[bytes], *params: Any) -> int:
    """``template`` (an UPDATE ... WHERE id IN ({ids})) for ``ids``, after ``params``; rows changed."""
    return cur.execute(q.by_ids(template, len(ids)), (*params, *ids)) if ids else 0


def _after_fork(ref: weakref.ReferenceType[MysqlBackend]) -> None:
    # A connection must not cross fork(): two processes would interleave on one session. The
    # child opens its own; the parent's sockets are dropped without QUIT, which would end them.
    backend = ref()
    if backend is not None:
        backend._reset_connections()
