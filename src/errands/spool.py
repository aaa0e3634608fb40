"""A local spool for enqueues while a server backend is away (issue #9), opt-in with
``Errands(url, spool="path/to/spool.db")``.

When ``backend.enqueue`` raises ``BackendUnavailable``, the jobs are committed to a SQLite file
(WAL, ``synchronous=FULL``: one fsync per commit, so a spooled job survives a crash of the
producer and a power loss) and ``perform`` returns its handle at once. A deliverer thread
forwards the spooled jobs in spool order, in batches, once the server answers again. While the
spool holds anything, new enqueues join the end of it without trying the server, so the order of
enqueue is kept and ``perform`` stays fast during an outage. A producer that restarts finds the
spool and delivers it at its first use of the app.

Delivery is idempotent: job ids are made by the client, and enqueuing an id that already exists
creates nothing, so a job delivered just before a crash (and before it left the spool) is not
made twice.

Several producer processes on one machine may share one spool file: SQLite serialises their
writes, and a lease row lets one process at a time deliver, so the file is delivered in order.
The file must be on a local disk (SQLite's locking is unreliable on network filesystems).

Rules a user sees (the README repeats them):

* ``unique_key``: checked when the job is delivered, not when it is spooled. A spooled job whose
  key is held by an unfinished job at delivery is not created (logged); its handle then finds no job.
* ``perform_in``: the delay counts from ``perform`` (by this machine's clock), not from delivery.
  ``created_at`` is the time of delivery.
* ``app.transaction(conn)`` never spools: an error there propagates, as the caller's transaction
  decides whether the job exists.
* A job the backend refuses for good at delivery (not an outage: e.g. ``ConfigurationError``) is
  moved to the file's ``rejected`` table with the error and logged; it never blocks those behind it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .backends.base import Enqueued, NewJob
from .errors import BackendUnavailable, ErrandsError
from .worker._looper import Looper

if TYPE_CHECKING:
    from .backends.base import Backend

__all__ = ["Spool"]

logger = logging.getLogger("errands.spool")

BATCH = 500  # jobs per delivery round trip: what perform_many sends at once
INTERVAL = 1.0  # seconds between delivery attempts while the server is away, or the spool empty
LEASE = 15.0  # seconds a process keeps the right to deliver without renewing it (a step is at most a few)
REPORT_EVERY = 30.0  # seconds between "still waiting" log lines during an outage

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL,
       queue TEXT NOT NULL, job TEXT NOT NULL, spooled_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rejected (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, job TEXT NOT NULL,
       error TEXT NOT NULL, rejected_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS deliverer (one INTEGER PRIMARY KEY CHECK (one = 1), owner TEXT NOT NULL,
       lease_until REAL NOT NULL)""",
)
_TAKE_LEASE = (
    "INSERT INTO deliverer (one, owner, lease_until) VALUES (1, ?, ?) ON CONFLICT (one) DO UPDATE "
    "SET owner = excluded.owner, lease_until = excluded.lease_until "
    "WHERE deliverer.owner = excluded.owner OR deliverer.lease_until < ?"
)


class Spool:
    """The spool file of one app: ``enqueue`` hands jobs to the backend, or to the file while it
    is away; a deliverer thread forwards the file's jobs in order.

    >>> app = Errands("redis://cache:6379/0", spool="/var/lib/myapp/spool.db")
    >>> send_welcome.perform(42)        # returns at once, even with Redis down
    >>> app.spool_depth()               # jobs waiting in the file
    """

    def __init__(self, path: str, backend: Callable[[], Backend], *, batch: int = BATCH,
                 interval: float = INTERVAL) -> None:
        self.path = os.path.abspath(path)
        self._backend = backend
        self.batch = batch
        self._owner = f"{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._looper = Looper("spool", self._deliver_step, interval)
        self._delivering = False  # this process started its deliverer
        self._outage_logged = False
        self._reported_at = 0.0
        self.delivered = 0  # jobs this process delivered from the file
        self.rejected = 0  # jobs the backend refused for good at delivery

    # producer --------------------------------------------------------------------------------
    def enqueue(self, jobs: Sequence[NewJob]) -> tuple[list[Enqueued], bool]:
        """Enqueue through the backend, or append to the spool (then the second item is True):
        when the backend is unavailable, or while the spool already holds jobs (order)."""
        if self.depth() == 0:
            try:
                return self._backend().enqueue(jobs), False
            except BackendUnavailable as exc:
                if not self._outage_logged:
                    self._outage_logged = True
                    logger.warning("backend unavailable (%s): spooling jobs to %s until it answers", exc, self.path)
        self._append(jobs)
        self.resume()
        return [Enqueued(job.id, True) for job in jobs], True

    def depth(self) -> int:
        """Jobs waiting in the file (every process's)."""
        with self._lock:
            row = self._connection().execute("SELECT count(*) FROM spool").fetchone()
        count = int(row[0])
        if count and not self._delivering:
            self.resume()  # first use in this process: deliver what an earlier run left behind
        return count

    def rejected_jobs(self) -> list[tuple[str, str]]:
        """``(job id, error)`` of jobs the backend refused for good at delivery, oldest first."""
        with self._lock:
            rows = self._connection().execute("SELECT id, error FROM rejected ORDER BY seq").fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    def _append(self, jobs: Sequence[NewJob]) -> None:
        now = time.time()
        rows = [(job.id, job.queue, _encode(job, now), now) for job in jobs]
        with self._lock:
            conn = self._connection()
            with _transaction(conn):  # all or none, as Backend.enqueue: perform_many stays atomic
                conn.executemany("INSERT INTO spool (id, queue, job, spooled_at) VALUES (?, ?, ?, ?)", rows)

    # deliverer -------------------------------------------------------------------------------
    def resume(self) -> None:
        """Start this process's deliverer (once); it runs until ``close()``."""
        with self._lock:
            if self._delivering:
                return
            self._delivering = True
        self._looper.start()

    def close(self) -> None:
        """Stop delivering and give the lease up, so another process may deliver at once."""
        if self._delivering:
            self._looper.stop()
            self._delivering = False
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with _transaction(conn):
                conn.execute("DELETE FROM deliverer WHERE owner = ?", (self._owner,))
            conn.close()

    def _deliver_step(self) -> float | None:
        if not self._take_lease():
            return None  # another process delivers this file
        rows = self._head()
        if not rows:
            return None
        jobs = [_decode(text) for _, text in rows]
        try:
            results = self._backend().enqueue(jobs)
        except BackendUnavailable as exc:
            self._report_waiting(exc)
            return None
        except ErrandsError:  # refused for good by one of them: find it, keep the rest moving
            self._deliver_one_by_one(rows)
            return 0.0
        self._remove(rows[-1][0])
        self._delivered(jobs, results)
        return 0.0  # more may wait: go on at once

    def _deliver_one_by_one(self, rows: list[tuple[int, str]]) -> None:
        for seq, text in rows:
            job = _decode(text)
            try:
                results = self._backend().enqueue([job])
            except BackendUnavailable:
                return
            except ErrandsError as exc:
                self._reject(seq, job, exc)
                continue
            self._remove(seq)
            self._delivered([job], results)

    def _delivered(self, jobs: list[NewJob], results: list[Enqueued]) -> None:
        self.delivered += len(jobs)
        self._outage_logged = False
        for job, result in zip(jobs, results):
            if not result.created and result.id != job.id:
                logger.info("spooled job %s (%s) not created: its unique_key is held by job %s",
                            job.id, job.name, result.id)
        try:
            self._backend().notify()
        except ErrandsError:
            pass  # a wake-up is an optimisation; workers poll anyway
        left = self.depth()
        logger.info("spool %s: delivered %d job(s), %d waiting", self.path, len(jobs), left)

    def _reject(self, seq: int, job: NewJob, exc: ErrandsError) -> None:
        self.rejected += 1
        logger.error("spool %s: the backend refused job %s (%s) for good, moved to the rejected table: %s",
                     self.path, job.id, job.name, exc)
        with self._lock:
            conn = self._connection()
            with _transaction(conn):
                conn.execute("INSERT INTO rejected (seq, id, job, error, rejected_at) "
                             "SELECT seq, id, job, ?, ? FROM spool WHERE seq = ?", (str(exc), time.time(), seq))
                conn.execute("DELETE FROM spool WHERE seq = ?", (seq,))

    def _report_waiting(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._reported_at >= REPORT_EVERY:
            self._reported_at = now
            logger.warning("spool %s: %d job(s) waiting; backend still unavailable: %s",
                           self.path, self.depth(), exc)

    def _take_lease(self) -> bool:
        now = time.time()
        with self._lock:
            conn = self._connection()
            with _transaction(conn):
                conn.execute(_TAKE_LEASE, (self._owner, now + LEASE, now))
                changed = conn.execute("SELECT changes()").fetchone()[0]
        return bool(changed)

    def _head(self) -> list[tuple[int, str]]:
        with self._lock:
            rows = self._connection().execute("SELECT seq, job FROM spool ORDER BY seq LIMIT ?",
                                              (self.batch,)).fetchall()
        return [(int(seq), str(text)) for seq, text in rows]

    def _remove(self, last_seq: int) -> None:
        # every row up to last_seq was in the delivered head: writers are serialised and seq
        # only grows (AUTOINCREMENT), so none committed below it later
        with self._lock:
            conn = self._connection()
            with _transaction(conn):
                conn.execute("DELETE FROM spool WHERE seq <= ?", (last_seq,))

    # the file --------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        """The open connection (lock held), made on first use."""
        if self._conn is None:
            folder = os.path.dirname(self.path)
            if folder:
                os.makedirs(folder, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 30000")
            _use_wal(conn)
            conn.execute("PRAGMA synchronous = FULL")  # the job is on disk when perform returns
            for statement in _SCHEMA:
                conn.execute(statement)
            self._conn = conn
        return self._conn


def _use_wal(conn: sqlite3.Connection, patience: float = 30.0) -> None:
    """Switch a new file to WAL. Two producers opening one new spool at once race for the
    exclusive lock the switch takes, and SQLite answers "database is locked" at once instead of
    calling the busy handler: retry, within ``patience`` seconds, until one of them has switched it."""
    deadline = time.monotonic() + patience
    while True:
        try:
            if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rollback on error): the write lock is taken up front,
    so two processes never both read and then fail to upgrade."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def _encode(job: NewJob, now: float) -> str:
    fields = dataclasses.asdict(job)
    if job.run_at is None and job.delay > 0:
        # the delay counts from perform, not from delivery: an absolute time by this machine's clock
        fields["run_at"], fields["delay"] = now + job.delay, 0.0
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def _decode(text: str) -> NewJob:
    data: dict[str, Any] = json.loads(text)
    known = {f.name for f in dataclasses.fields(NewJob)}
    return NewJob(**{k: v for k, v in data.items() if k in known})
