"""What every SQL backend shares and no dialect owns: the column lists, the rows enqueue and
settle bind, row -> JobRecord / Claim conversion, ``list()`` filters as bound parameters,
folding ``GROUP BY queue, state`` rows into counts, batch helpers written against a DB-API
cursor (insert with duplicate reporting, fenced updates, heartbeat, cancel, chunked purge), the
retry loop for transient lock errors, the schema-migration runner and the error-translation
pattern. Dialects (sqlite.py; later postgres.py, mysql.py) bring their SQL for the hot paths,
their locking and their driver's exceptions; the helpers take the dialect's ``placeholder``.

Nothing here formats a value into SQL: queue, job and key names are always parameters.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Protocol, TypeVar

from ..errors import BackendUnavailable, ConfigurationError, ErrandsError
from ..jobs import TERMINAL_STATES, JobState
from .base import (
    CancelResult,
    Claim,
    Counts,
    Enqueued,
    Extended,
    JobQuery,
    JobRecord,
    NewJob,
    Outcome,
    empty_counts,
)

__all__ = [
    "ACTIVE_SQL",
    "INSERT_COLUMNS",
    "JOB_COLUMNS",
    "META_TABLE",
    "SCHEMA_KEY",
    "TABLE",
    "UNKNOWN_STATE_ERROR",
    "UNKNOWN_STATE_SQL",
    "Cursor",
    "Migration",
    "apply_fenced",
    "build_list_query",
    "cancel_jobs",
    "claims_from_rows",
    "extend_claims",
    "fail_unknown_states",
    "fold_counts",
    "insert_jobs",
    "insert_row",
    "keyed_window",
    "purge_chunk",
    "record_from_row",
    "retry_while",
    "run_migrations",
    "settle_row",
    "translate_errors",
    "unknown_state_error",
]

_T = TypeVar("_T")

TABLE = "errands_jobs"
META_TABLE = "errands_meta"
SCHEMA_KEY = "schema_version"

# The unfinished states, as SQL text: partial unique indexes and the queries that must use
# them spell it identically, because planners match index predicates by their terms.
ACTIVE_SQL = "('scheduled', 'available', 'running')"

# JobRecord's fields in order, so a SELECT of these columns maps positionally onto it.
JOB_COLUMNS: tuple[str, ...] = (
    "id", "name", "queue", "args", "kwargs", "state", "attempts", "max_attempts", "priority",
    "run_at", "created_at", "started_at", "finished_at", "result", "error", "unique_key",
    "timeout", "worker_id", "cancel_requested", "meta",
)

# What enqueue writes, in the order ``insert_row`` produces.
INSERT_COLUMNS: tuple[str, ...] = (
    "id", "name", "queue", "args", "kwargs", "state", "max_attempts", "priority", "run_at",
    "created_at", "unique_key", "timeout", "meta",
)
_UNIQUE_KEY_AT = INSERT_COLUMNS.index("unique_key")

_TERMINAL = frozenset(s.value for s in TERMINAL_STATES)
_CANCELLABLE = (JobState.AVAILABLE.value, JobState.SCHEDULED.value)
_SCHEDULED, _AVAILABLE = JobState.SCHEDULED.value, JobState.AVAILABLE.value
_SUCCEEDED = JobState.SUCCEEDED.value


class Cursor(Protocol):
    """The slice of a DB-API cursor the shared helpers use."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...
    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...

    @property
    def rowcount(self) -> int: ...


# rows in -------------------------------------------------------------------------------------------
def keyed_window(new: NewJob) -> bool:
    """Whether a job's unique key comes with ``unique_for`` or ``debounce``: such a job is
    enqueued on its own (its key locked, its holder looked up whatever its state), not in the
    batch INSERT that plain jobs share."""
    return new.unique_key is not None and (new.unique_for is not None or new.debounce is not None)


def insert_row(new: NewJob, now: float) -> tuple[Any, ...]:
    """The INSERT parameters of one job (``INSERT_COLUMNS`` order): ``run_at`` defaults to
    now + delay (now + debounce with a debounce), and a job due by now is available at once."""
    run_at = now + new.debounce if new.debounce is not None else new.run_at if new.run_at is not None \
        else now + new.delay
    state = _SCHEDULED if run_at > now else _AVAILABLE
    return (new.id, new.name, new.queue, new.args, new.kwargs, state, new.max_attempts, new.priority,
            run_at, now, new.unique_key, new.timeout, new.meta)


def settle_row(outcome: Outcome, now: float) -> tuple[Any, ...]:
    """The fenced UPDATE parameters of one outcome, the memory backend's rules in one place:
    (state, run_at | None, is_success, result, error | None, finished_at | None, id, token).

    A retry with ``retry_in <= 0`` becomes available at once; ``None`` means "keep the column"
    (the SQL says ``COALESCE(?, column)``); the result is stored on success only; terminal
    states get ``finished_at``.
    """
    state = outcome.state.value
    run_at = None
    if state == _SCHEDULED:
        run_at = now + outcome.retry_in
        if outcome.retry_in <= 0:
            state = _AVAILABLE
    success = state == _SUCCEEDED
    finished_at = now if state in _TERMINAL else None
    return (state, run_at, success, outcome.result if success else None, outcome.error, finished_at,
            outcome.id, outcome.token)


# rows out ------------------------------------------------------------------------------------------
def _int(value: Any) -> int:
    # Rows written by hand may hold anything; a record must still come out (the facade shows it).
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


def _time(value: Any) -> float | None:
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return None  # NULL, or junk such as 'yesterday' written by hand


def claims_from_rows(rows: list[Any]) -> list[Claim]:
    """Claims from claim rows (Claim's fields up to ``priority`` in order, then ``run_at`` as a
    number, then ``meta``), best first: ``RETURNING`` gives rows in no particular order, and
    memory.py hands them out in claim order."""
    if len(rows) > 1:
        rows.sort(key=lambda r: (-r[9], r[10], str(r[0])))
    return [Claim(id=row[0], name=row[1], queue=row[2], args=row[3], kwargs=row[4], attempts=row[5],
                  max_attempts=row[6], token=row[7], timeout=row[8], priority=row[9], meta=row[11])
            for row in rows]


def record_from_row(row: Sequence[Any]) -> JobRecord:
    """A ``SELECT`` of ``JOB_COLUMNS`` as a JobRecord. Never raises on odd values: numbers that
    aren't become 0/None, and text that isn't UTF-8 stays bytes for the facade's decoder."""
    (id_, name, queue, args, kwargs, state, attempts, max_attempts, priority, run_at, created_at,
     started_at, finished_at, result, error, unique_key, timeout, worker_id, cancel, meta) = row
    return JobRecord(
        id_, name, queue, args, kwargs, state, _int(attempts), _int(max_attempts), _int(priority),
        _time(run_at), _time(created_at), _time(started_at), _time(finished_at), result, error,
        unique_key, _time(timeout), worker_id, bool(cancel) if isinstance(cancel, int) else False, meta,
    )


def build_list_query(query: JobQuery, *, placeholder: str = "?", table: str = TABLE) -> tuple[str, list[Any]]:
    """``SELECT`` for ``list()``: filters as bound parameters, newest first (ids sort by time).
    Only the presence of each filter changes the text, so at most 16 statements get cached.
    ``table`` may be schema-qualified (PostgreSQL keeps the jobs table in a configurable schema)."""
    terms: list[str] = []
    params: list[Any] = []
    for column, op, value in (
        ("state", "=", query.state.value if query.state is not None else None),
        ("queue", "=", query.queue),
        ("name", "=", query.name),
        ("id", "<", query.before_id),
    ):
        if value is not None:
            terms.append(f"{column} {op} {placeholder}")
            params.append(value)
    where = f" WHERE {' AND '.join(terms)}" if terms else ""
    params.append(max(query.limit, 0))
    sql = f"SELECT {', '.join(JOB_COLUMNS)} FROM {table}{where} ORDER BY id DESC LIMIT {placeholder}"
    return sql, params


def fold_counts(rows: Iterable[Sequence[Any]], *, by_queue: bool) -> Counts:
    """Fold ``SELECT queue, state, count(*) ... GROUP BY queue, state`` rows like the memory
    backend: every state present with 0, unknown states (written by hand) ignored."""
    if not by_queue:
        totals = empty_counts()
        for _queue, state, n in rows:
            if state in totals:
                totals[state] += n
        return totals
    nested: dict[Any, dict[str, int]] = {}
    for queue, state, n in rows:
        bucket = nested.setdefault(queue, empty_counts())
        if state in bucket:
            bucket[state] += n
    return nested


# batches ------------------------------------------------------------------------------------------
def insert_jobs(cursor: Cursor, rows: Sequence[tuple[Any, ...]], *, insert_sql: str,
                placeholder: str = "?") -> list[Enqueued]:
    """Insert ``insert_row`` rows with ``insert_sql`` (the dialect's insert that skips a row
    whose id or active unique key exists), all or none, inside the caller's transaction.

    The common case is one executemany. Only when some row was skipped is the batch redone row
    by row, to say which and why: an existing id answers itself, a held unique key its holder.
    """
    cursor.execute("SAVEPOINT errands_batch")
    try:
        cursor.executemany(insert_sql, rows)
        if cursor.rowcount == len(rows):
            result = [Enqueued(row[0], True) for row in rows]
        else:
            cursor.execute("ROLLBACK TO SAVEPOINT errands_batch")
            result = [_insert_one(cursor, row, insert_sql, placeholder) for row in rows]
        cursor.execute("RELEASE SAVEPOINT errands_batch")
    except BaseException:
        with suppress(Exception):  # leave the caller's transaction as before the batch
            cursor.execute("ROLLBACK TO SAVEPOINT errands_batch")
            cursor.execute("RELEASE SAVEPOINT errands_batch")
        raise
    return result


def _insert_one(cursor: Cursor, row: tuple[Any, ...], insert_sql: str, placeholder: str) -> Enqueued:
    cursor.execute(insert_sql, row)
    if cursor.rowcount == 1:
        return Enqueued(row[0], True)
    unique_key = row[_UNIQUE_KEY_AT]
    if unique_key is None:
        return Enqueued(row[0], False)
    cursor.execute(f"SELECT 1 FROM {TABLE} WHERE id = {placeholder}", (row[0],))
    if cursor.fetchone() is None:
        cursor.execute(f"SELECT id FROM {TABLE} WHERE unique_key = {placeholder} AND state IN {ACTIVE_SQL}",
                       (unique_key,))
        holder = cursor.fetchone()
        if holder is not None:  # the key, not the id, was taken: answer with its holder
            job_id = holder[0]
            return Enqueued(job_id.decode() if isinstance(job_id, bytes) else job_id, False)
    return Enqueued(row[0], False)


def apply_fenced(cursor: Cursor, sql: str, rows: Sequence[Sequence[Any]], *, id_index: int) -> list[str]:
    """Run a fenced UPDATE (one that matches only while the lease token owns the job) for every
    row and return the ids of rows that matched nothing. One executemany in the common case;
    row by row, in a savepoint, only when some row was fenced."""
    cursor.execute("SAVEPOINT errands_fenced")
    cursor.executemany(sql, rows)
    if cursor.rowcount != len(rows):
        cursor.execute("ROLLBACK TO SAVEPOINT errands_fenced")
        fenced = []
        for row in rows:
            cursor.execute(sql, row)
            if cursor.rowcount == 0:
                fenced.append(row[id_index])
    else:
        fenced = []
    cursor.execute("RELEASE SAVEPOINT errands_fenced")
    return fenced


def extend_claims(cursor: Cursor, claims: Sequence[Claim], lease_until: float,
                  placeholder: str = "?") -> Extended:
    """Heartbeat: push the lease of each claim its token still owns (a fenced UPDATE, atomic on
    its own in every dialect), then read whether a cancel was asked for."""
    p = placeholder
    lost: set[str] = set()
    cancel: set[str] = set()
    for claim in claims:
        cursor.execute(f"UPDATE {TABLE} SET lease_until = {p} WHERE id = {p} AND token = {p} "
                       "AND state = 'running'", (lease_until, claim.id, claim.token))
        if cursor.rowcount == 0:
            lost.add(claim.id)
            continue
        cursor.execute(f"SELECT cancel_requested FROM {TABLE} WHERE id = {p}", (claim.id,))
        row = cursor.fetchone()
        if row is not None and row[0]:
            cancel.add(claim.id)
    return Extended(frozenset(lost), frozenset(cancel))


def cancel_jobs(cursor: Cursor, job_ids: Sequence[str], now: float,
                placeholder: str = "?") -> dict[str, CancelResult]:
    """Waiting jobs become cancelled; a running one is asked to stop (its worker learns at the
    next heartbeat); finished and unknown ones are reported as such. The caller holds a
    transaction in which the read state can't change (SQLite's write lock, or FOR UPDATE)."""
    p = placeholder
    results: dict[str, CancelResult] = {}
    for job_id in job_ids:
        cursor.execute(f"SELECT state FROM {TABLE} WHERE id = {p}", (job_id,))
        row = cursor.fetchone()
        if row is None:
            results[job_id] = CancelResult.NOT_FOUND
        elif row[0] in _CANCELLABLE:
            cursor.execute(f"UPDATE {TABLE} SET state = 'cancelled', finished_at = {p}, token = NULL, "
                           f"lease_until = NULL WHERE id = {p}", (now, job_id))
            results[job_id] = CancelResult.CANCELLED
        elif row[0] == JobState.RUNNING.value:
            cursor.execute(f"UPDATE {TABLE} SET cancel_requested = {p} WHERE id = {p}", (True, job_id))
            results[job_id] = CancelResult.REQUESTED
        else:
            results[job_id] = CancelResult.FINISHED
    return results


def _unknown_state_sql() -> str:
    known = sorted(state.value for state in JobState)  # ASCII: the order of every binary collation
    gaps = [f"state < '{known[0]}'", *(f"(state > '{a}' AND state < '{b}')" for a, b in pairwise(known)),
            f"state > '{known[-1]}'"]
    return f"({' OR '.join(gaps)})"


# A state none of JobState's (a hand edit, another program, a bad migration), spelled as the gaps
# between the known ones: a few empty ranges of the (state, id) index every SQL schema has, where
# NOT IN would read the whole index on every maintain(). Built from JobState, so a new state
# there is known here too.
UNKNOWN_STATE_SQL = _unknown_state_sql()
SHOWN_STATE = 200  # characters of a bad state quoted in the error
# the error around the quoted state: constant text without quotes, so a dialect may splice it
UNKNOWN_STATE_ERROR = ("corrupt job record: unknown state ",
                       f" (known: {', '.join(state.value for state in JobState)})")


def fail_unknown_states(cursor: Cursor, now: Callable[[], float], limit: int, *, placeholder: str = "?",
                        table: str = TABLE, lock: str = "") -> int:
    """Move up to ``limit`` rows whose state is unknown to ``failed`` with an error naming the
    state; return how many. Nothing else ever touches such a row (no claim, reap or purge reads
    it), so without this it would sit forever, neither done nor failed. The caller holds a write
    transaction; ``lock`` (``FOR UPDATE SKIP LOCKED``) keeps concurrent callers off one row;
    ``now`` is called only when there is something to fail."""
    p = placeholder
    cursor.execute(f"SELECT id, state FROM {table} WHERE {UNKNOWN_STATE_SQL} LIMIT {p}{lock}", (limit,))
    rows = cursor.fetchall()
    if rows:
        finished_at = now()
        cursor.executemany(f"UPDATE {table} SET state = 'failed', error = {p}, finished_at = {p}, token = NULL, "
                           f"lease_until = NULL WHERE id = {p}",
                           [(unknown_state_error(state), finished_at, job_id) for job_id, state in rows])
    return len(rows)


def unknown_state_error(state: object) -> str:
    shown = repr(state[:SHOWN_STATE] if isinstance(state, (str, bytes)) else state)
    return shown.join(UNKNOWN_STATE_ERROR)


def purge_chunk(cursor: Cursor, state: JobState, older_than: float, *, after: str, limit: int,
                placeholder: str = "?") -> list[str]:
    """Delete up to ``limit`` jobs in ``state`` that finished before ``older_than`` and whose id
    sorts after ``after``; return their ids in order. Callers loop, one transaction per chunk,
    passing the last id back, so no row is read twice and other writers get turns between."""
    p = placeholder
    cursor.execute(f"SELECT id FROM {TABLE} WHERE state = {p} AND id > {p} "
                   f"AND COALESCE(finished_at, 0) < {p} ORDER BY id LIMIT {p}",
                   (state.value, after, older_than, limit))
    doomed = [row[0] for row in cursor.fetchall()]
    if doomed:
        cursor.executemany(f"DELETE FROM {TABLE} WHERE id = {p}", [(job_id,) for job_id in doomed])
    return doomed


def retry_while(step: Callable[[], _T], *, transient: Callable[[Exception], bool], timeout: float,
                what: str) -> _T:
    """Call ``step`` until it does not raise a ``transient`` error (a lock, a deadlock) or
    ``timeout`` seconds have passed since the first one; then ``BackendUnavailable`` naming
    ``what`` and the last error. Short jittered pauses, so waiters don't retry in step."""
    deadline: float | None = None
    while True:
        try:
            return step()
        except Exception as exc:
            if not transient(exc):
                raise
            now = time.monotonic()
            deadline = deadline if deadline is not None else now + timeout
            if now >= deadline:
                raise BackendUnavailable(f"{what} for {timeout:g}s: {exc}") from exc
            time.sleep(random.uniform(0.0002, 0.002))


# schema migrations ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: ``statements`` run in order, then ``version`` is recorded. Steps are
    append-only: a released step is never edited, a later one changes what it made."""

    version: int
    statements: tuple[str, ...]
    description: str = ""


def run_migrations(cursor: Cursor, migrations: Sequence[Migration], *, meta_ddl: str,
                   placeholder: str = "?") -> int:
    """Bring the schema to the last of ``migrations`` and return its version.

    The caller holds the lock that serializes concurrent openers (SQLite: ``BEGIN IMMEDIATE``;
    PostgreSQL: an advisory lock) and commits. ``meta_ddl`` creates ``errands_meta(name, value)``
    if missing. A database newer than this code is refused rather than misread.
    """
    cursor.execute(meta_ddl)
    cursor.execute(f"SELECT value FROM {META_TABLE} WHERE name = {placeholder}", (SCHEMA_KEY,))
    row = cursor.fetchone()
    current = _int(row[0]) if row else 0
    latest = migrations[-1].version if migrations else 0
    if current > latest:
        raise ConfigurationError(
            f"the database's errands schema is version {current}, newer than this errands knows "
            f"({latest}): upgrade errands"
        )
    for step in migrations:
        if step.version <= current:
            continue
        for statement in step.statements:
            cursor.execute(statement)
        _record_version(cursor, step.version, placeholder, exists=current > 0)
        current = step.version
    return current


def _record_version(cursor: Cursor, version: int, placeholder: str, *, exists: bool) -> None:
    # UPDATE or INSERT rather than an upsert, whose syntax is what dialects disagree on.
    if exists:
        cursor.execute(f"UPDATE {META_TABLE} SET value = {placeholder} WHERE name = {placeholder}",
                       (str(version), SCHEMA_KEY))
        return
    cursor.execute(f"INSERT INTO {META_TABLE} (name, value) VALUES ({placeholder}, {placeholder})",
                   (SCHEMA_KEY, str(version)))


# errors --------------------------------------------------------------------------------------------
@contextmanager
def translate_errors(classify: Callable[[Exception], ErrandsError | None]) -> Iterator[None]:
    """Re-raise driver exceptions as errands exceptions at the backend's edge, so the core never
    names a driver. ``classify`` returns the errands exception for one it knows, else None
    (a bug of ours, such as a SQL syntax error, stays as it is).

    >>> with translate_errors(classify):
    ...     cursor.execute(...)
    """
    try:
        yield
    except ErrandsError:
        raise
    except Exception as exc:
        mapped = classify(exc)
        if mapped is None:
            raise
        raise mapped from exc
