"""SQLite's schema and statements, as named constants (the dialect half of ``sqlite.py``).

Partial indexes hold only the rows each hot query reads; every statement that must use one
repeats its predicate word for word and pins it with ``INDEXED BY`` (see ``PROMOTE``). Migrations
are append-only: a released step is never edited, a later one changes what it made.
"""

from __future__ import annotations

from functools import lru_cache

from ._sql import ACTIVE_SQL, INSERT_COLUMNS, JOB_COLUMNS, META_TABLE, TABLE, Migration
from ._sql_registry import WORKER_COLUMNS, WORKER_TABLE

__all__ = [
    "ANY_PAUSED", "CLAIM_COLUMNS", "CLAIM_SET", "COUNTS", "COUNTS_BY_QUEUE", "DEBOUNCE", "GET", "ID_EXISTS", "INSERT",
    "META_DDL", "MIGRATIONS", "PAUSE", "PAUSED", "PROMOTE", "RATE_GET", "RATE_PURGE", "RATE_SET", "REAP_CANCELLED",
    "REAP_FAILED", "REAP_REQUEUE", "RELEASE", "RESUME", "RETRY", "RUNNABLE_QUEUES", "SETTLE", "SLOT_PURGE",
    "SLOT_RELEASE", "SLOT_TAKE", "SLOT_USAGE", "THROUGHPUT", "UNIQUE_HOLDER", "UNIQUE_RECENT", "WORKERS",
    "WORKER_DELETE", "WORKER_PRUNE", "WORKER_UPSERT", "claim_ids_sql", "claim_sql", "get_many_sql", "pick_ids_sql",
    "pick_sql", "probe_sql", "settle_many_sql", "wake_sql",
]

PAUSED_TABLE, SLOTS_TABLE, RATES_TABLE = "errands_paused", "errands_slots", "errands_rates"

# schema -------------------------------------------------------------------------------------------
# Partial-index predicates, spelled once: SQLite uses a partial index only for a query that
# repeats its WHERE term.
AVAILABLE, SCHEDULED, RUNNING = "state = 'available'", "state = 'scheduled'", "state = 'running'"
FINISHED = "state IN ('succeeded', 'failed')"
META_DDL = f"CREATE TABLE IF NOT EXISTS {META_TABLE} (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)"
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, (
        # Times are REAL epoch seconds; args/kwargs/result/error are JSON or text. No CHECK on
        # state: a row written by hand with an odd state is never claimed; maintain() fails it.
        f"""CREATE TABLE {TABLE} (
            id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL, queue TEXT NOT NULL,
            args TEXT NOT NULL, kwargs TEXT NOT NULL, state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL,
            priority INTEGER NOT NULL DEFAULT 0, run_at REAL NOT NULL, created_at REAL NOT NULL,
            started_at REAL, finished_at REAL, result TEXT, error TEXT, unique_key TEXT,
            timeout REAL, worker_id TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0,
            token TEXT, lease_until REAL)""",
        # claim from named queues / from every queue, in claim order
        f"CREATE INDEX errands_jobs_claim ON {TABLE} (queue, priority DESC, run_at, id) WHERE {AVAILABLE}",
        f"CREATE INDEX errands_jobs_claim_any ON {TABLE} (priority DESC, run_at, id) WHERE {AVAILABLE}",
        f"CREATE INDEX errands_jobs_due ON {TABLE} (run_at) WHERE {SCHEDULED}",
        f"CREATE INDEX errands_jobs_lease ON {TABLE} (lease_until) WHERE {RUNNING}",
        (f"CREATE UNIQUE INDEX errands_jobs_unique ON {TABLE} (unique_key) "
         f"WHERE unique_key IS NOT NULL AND state IN {ACTIVE_SQL}"),
        # list_jobs by state, newest first, and counts() as a covering scan. Each state change
        # rewrites it; a (queue, state, id) one would add ~30% to the pages a job writes: not worth it.
        f"CREATE INDEX errands_jobs_state ON {TABLE} (state, id)",
    ), "jobs table and indexes"),
    Migration(2, (
        # one row per live worker process, upserted at each heartbeat; lists are JSON text
        f"""CREATE TABLE {WORKER_TABLE} (
            id TEXT PRIMARY KEY NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL, queues TEXT NOT NULL,
            concurrency INTEGER NOT NULL, started_at REAL NOT NULL, last_seen REAL NOT NULL,
            running TEXT NOT NULL, processed INTEGER NOT NULL, expires_at REAL NOT NULL)""",
        # throughput by finish time. Partial: a row enters it once, when it finishes, and the
        # key (now) appends at the right edge, so a settle pays one cheap index insert.
        f"CREATE INDEX errands_jobs_finished ON {TABLE} (finished_at) WHERE {FINISHED}",
    ), "worker registry; finished jobs by time"),
    Migration(3, (
        # JSON object text a producer attaches to a job (trace context, workflow links); NULL
        # means {}. Transactional with the version bump, so a crash midway leaves version 2.
        f"ALTER TABLE {TABLE} ADD COLUMN meta TEXT",
    ), "job metadata"),
    Migration(4, (
        # Paused queues: a handful of rows, probed by primary key in every claim (never cached,
        # so a pause is exact the moment it commits).
        f"CREATE TABLE {PAUSED_TABLE} (queue TEXT PRIMARY KEY NOT NULL, paused_at REAL NOT NULL) WITHOUT ROWID",
        # Concurrency slots: one row per live holder. Expired rows are deleted by the calls that
        # pass (by expires_at), so the table holds about the live holders and no more.
        f"""CREATE TABLE {SLOTS_TABLE} (key TEXT NOT NULL, holder TEXT NOT NULL, expires_at REAL NOT NULL,
            PRIMARY KEY (key, holder)) WITHOUT ROWID""",
        f"CREATE INDEX errands_slots_expiry ON {SLOTS_TABLE} (expires_at)",
        # Rate limits: each key's GCRA theoretical arrival time. A tat in the past means the same
        # as none, so such rows are deleted as calls pass.
        f"CREATE TABLE {RATES_TABLE} (key TEXT PRIMARY KEY NOT NULL, tat REAL NOT NULL) WITHOUT ROWID",
        f"CREATE INDEX errands_rates_tat ON {RATES_TABLE} (tat)",
        # unique_for: the newest job of a key whatever its state (errands_jobs_unique holds only
        # unfinished ones). Partial: jobs without a key, the common case, cost nothing.
        f"CREATE INDEX errands_jobs_unique_created ON {TABLE} (unique_key, created_at) WHERE unique_key IS NOT NULL",
    ), "paused queues, concurrency slots, rate limits; unique keys by creation time"),
)

# statements ---------------------------------------------------------------------------------------
INSERT = (f"INSERT INTO {TABLE} ({', '.join(INSERT_COLUMNS)}) "
          f"VALUES ({', '.join('?' * len(INSERT_COLUMNS))}) ON CONFLICT DO NOTHING")
# INDEXED BY pins the partial indexes: without statistics SQLite's planner prefers the (state, id)
# index and sorts every row in the state, which is slow with a backlog; with it, a statement fails
# loudly rather than silently slowing down if an index goes missing.
PROMOTE = (f"UPDATE {TABLE} SET state = 'available' WHERE rowid IN (SELECT rowid FROM {TABLE} "
           f"INDEXED BY errands_jobs_due WHERE {SCHEDULED} AND run_at <= ? ORDER BY run_at LIMIT ?)")
# The row claims_from_rows() reads; CASTs keep junk written by hand from reaching the worker as
# the wrong type (the worker fails such a job; the claim must not fail).
CLAIM_COLUMNS = ("id, name, queue, args, kwargs, attempts, CAST(max_attempts AS INTEGER), token, "
                 "CASE WHEN typeof(timeout) IN ('integer', 'real') THEN timeout END, "
                 "CAST(priority AS INTEGER), IFNULL(CAST(run_at AS REAL), 0.0), meta")
CLAIM_SET = ("state = 'running', attempts = CAST(attempts AS INTEGER) + 1, lease_until = ?1, "
             "started_at = ?2, worker_id = ?3, cancel_requested = 0")
SETTLE = (f"UPDATE {TABLE} SET state = ?1, run_at = COALESCE(?2, run_at), "
          "result = CASE WHEN ?3 THEN ?4 ELSE result END, error = COALESCE(?5, error), "
          "finished_at = COALESCE(?6, finished_at), token = NULL, lease_until = NULL "
          "WHERE id = ?7 AND token = ?8 AND state = 'running'")


@lru_cache(maxsize=16)
def settle_many_sql(count: int) -> str:
    """``SETTLE`` for ``count`` outcomes (each ``settle_row``'s 8 values) in one statement, which
    returns the ids it applied: in autocommit it holds the write lock for one step, where a
    transaction of one UPDATE per outcome took it across a dozen calls. Callers pad the rows to a
    power of two by repeating the last (an UPDATE FROM uses one of identical matches), so few
    texts get cached. Rows are found by (state, id): an index probe each, whatever the table holds."""
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * count)
    return (f"WITH o(state, run_at, success, result, error, finished_at, id, token) AS (VALUES {values}) "
            f"UPDATE {TABLE} SET state = o.state, run_at = COALESCE(o.run_at, {TABLE}.run_at), "
            f"result = CASE WHEN o.success THEN o.result ELSE {TABLE}.result END, "
            f"error = COALESCE(o.error, {TABLE}.error), finished_at = COALESCE(o.finished_at, {TABLE}.finished_at), "
            f"token = NULL, lease_until = NULL FROM o "
            f"WHERE {TABLE}.id = o.id AND {TABLE}.token = o.token AND {TABLE}.state = 'running' RETURNING id")


# back to available, or scheduled for a snooze: (state, run_at, id, token)
RELEASE = (f"UPDATE {TABLE} SET state = ?, attempts = max(attempts - 1, 0), run_at = ?, "
           "token = NULL, lease_until = NULL WHERE id = ? AND token = ? AND state = 'running'")
LOST = "'worker lost while running (attempt ' || attempts || '/' || max_attempts || ')'"
EXPIRED = f"SELECT rowid FROM {TABLE} INDEXED BY errands_jobs_lease WHERE {RUNNING} AND lease_until <= ?1"
# a cancel request outlives the worker that was asked to stop: its job ends cancelled, not requeued
REAP_CANCELLED = (f"UPDATE {TABLE} SET state = 'cancelled', error = {LOST}, finished_at = ?1, token = NULL, "
                  f"lease_until = NULL WHERE rowid IN ({EXPIRED} AND cancel_requested = 1 "
                  "ORDER BY lease_until LIMIT ?2)")
REAP_FAILED = (f"UPDATE {TABLE} SET state = 'failed', error = {LOST}, finished_at = ?1, token = NULL, "
               f"lease_until = NULL WHERE rowid IN ({EXPIRED} AND attempts >= max_attempts "
               "ORDER BY lease_until LIMIT ?2)")
REAP_REQUEUE = (f"UPDATE {TABLE} SET state = 'available', error = {LOST}, run_at = ?1, token = NULL, "
                f"lease_until = NULL WHERE rowid IN ({EXPIRED} ORDER BY lease_until LIMIT ?2)")
GET = f"SELECT {', '.join(JOB_COLUMNS)} FROM {TABLE} WHERE id = ?"
# OR IGNORE: a retry that would take a unique key another unfinished job holds is skipped.
RETRY = (f"UPDATE OR IGNORE {TABLE} SET state = 'available', run_at = ?, finished_at = NULL, "
         "cancel_requested = 0, max_attempts = max(max_attempts, attempts + 1) "
         "WHERE id = ? AND state IN ('failed', 'cancelled')")
COUNTS = f"SELECT NULL, state, count(*) FROM {TABLE} GROUP BY state"
COUNTS_BY_QUEUE = f"SELECT queue, state, count(*) FROM {TABLE} GROUP BY queue, state"


def unpaused(param: str) -> str:
    """``param`` (a queue name), or NULL when that queue is paused: ``queue = unpaused(?5)`` is
    one index probe that finds nothing for a paused queue. A plain ``NOT EXISTS`` beside
    ``queue = ?5`` would be tested row by row, walking a paused queue's whole backlog."""
    return f"(SELECT {param} WHERE NOT EXISTS (SELECT 1 FROM {PAUSED_TABLE} WHERE queue = {param}))"


# not in a paused queue, for a statement whose rows may be of any queue
NOT_PAUSED = f"NOT EXISTS (SELECT 1 FROM {PAUSED_TABLE} WHERE {PAUSED_TABLE}.queue = {TABLE}.queue)"
ANY_PAUSED = f"SELECT EXISTS (SELECT 1 FROM {PAUSED_TABLE})"
# The queues that have available jobs and are not paused: a loose index scan, one probe per
# distinct queue, however long a paused queue's backlog is.
RUNNABLE_QUEUES = (
    f"WITH RECURSIVE q(name) AS (SELECT (SELECT queue FROM {TABLE} INDEXED BY errands_jobs_claim "
    f"WHERE {AVAILABLE} ORDER BY queue LIMIT 1) UNION ALL SELECT (SELECT queue FROM {TABLE} "
    f"INDEXED BY errands_jobs_claim WHERE {AVAILABLE} AND queue > q.name ORDER BY queue LIMIT 1) "
    f"FROM q WHERE q.name IS NOT NULL) SELECT name FROM q WHERE name IS NOT NULL AND NOT EXISTS "
    f"(SELECT 1 FROM {PAUSED_TABLE} WHERE {PAUSED_TABLE}.queue = q.name)"
)


@lru_cache(maxsize=64)
def pick_sql(queue_count: int | None, every_unpaused: bool = False) -> str:
    """The rowids to claim, best first, for ``?4`` jobs of queues ``?5..``, paused ones skipped.
    Several queues are a UNION of per-queue index scans, because ``queue IN (...)`` plus ORDER
    BY would sort every available row of those queues. ``None``: every queue, for when nothing
    is paused; with ``every_unpaused`` a scan that tests each row (for many runnable queues
    while some are paused)."""
    order = "ORDER BY priority DESC, run_at, id LIMIT ?4"
    if queue_count is None:
        skip = f" AND {NOT_PAUSED}" if every_unpaused else ""
        return f"SELECT rowid FROM {TABLE} INDEXED BY errands_jobs_claim_any WHERE {AVAILABLE}{skip} {order}"
    by_queue = f"FROM {TABLE} INDEXED BY errands_jobs_claim WHERE {AVAILABLE} AND queue ="
    if queue_count == 1:
        return f"SELECT rowid {by_queue} {unpaused('?5')} {order}"
    arms = " UNION ALL ".join(
        f"SELECT * FROM (SELECT rowid AS rid, priority, run_at, id {by_queue} {unpaused(f'?{5 + i}')} {order})"
        for i in range(queue_count)
    )
    return f"SELECT rid FROM ({arms}) {order}"


@lru_cache(maxsize=64)
def claim_sql(queue_count: int | None, every_unpaused: bool = False, none_paused: bool = False) -> str:
    """The claim of ``pick_sql``'s rows. With ``none_paused`` it claims nothing while any queue is
    paused: the caller needs no statement of its own to look in the common case, and looks only
    when nothing came back. The test is on the picked rows (at most ``?4``), not in the pick,
    where SQLite would test it on every row of the scan, walking a paused backlog."""
    guard = f" AND NOT EXISTS (SELECT 1 FROM {PAUSED_TABLE})" if none_paused else ""
    return (f"UPDATE {TABLE} SET {CLAIM_SET}, token = lower(hex(randomblob(16))) "
            f"WHERE rowid IN ({pick_sql(queue_count, every_unpaused)}){guard} RETURNING {CLAIM_COLUMNS}")


# Claimable by id: what claim() would take, a due scheduled job included (claim promotes it first).
_CLAIMABLE_BY_ID = f"({AVAILABLE} OR ({SCHEDULED} AND run_at <= ?2)) AND {NOT_PAUSED}"


@lru_cache(maxsize=16)
def pick_ids_sql(count: int) -> str:
    """The rowids of the jobs ``?4..?{3 + count}`` that are claimable now (``?2``): primary-key
    lookups, one per id. Callers pad the id list to a power of two, so few texts get cached."""
    ids = ", ".join(f"?{4 + i}" for i in range(count))
    return f"SELECT rowid FROM {TABLE} WHERE id IN ({ids}) AND {_CLAIMABLE_BY_ID}"


@lru_cache(maxsize=16)
def claim_ids_sql(count: int) -> str:
    """``claim_sql`` for exactly the jobs ``pick_ids_sql`` names (same parameters)."""
    return (f"UPDATE {TABLE} SET {CLAIM_SET}, token = lower(hex(randomblob(16))) "
            f"WHERE rowid IN ({pick_ids_sql(count)}) RETURNING {CLAIM_COLUMNS}")


@lru_cache(maxsize=64)
def probe_sql(queue_count: int | None) -> str:
    """Is anything claimable now (in a queue not paused), and when is the next scheduled job due?
    Read-only index probes; the queues are ``?1..``."""
    if queue_count is None:
        ready = (f"CASE WHEN EXISTS (SELECT 1 FROM {PAUSED_TABLE}) THEN EXISTS ({RUNNABLE_QUEUES}) "
                 f"ELSE EXISTS (SELECT 1 FROM {TABLE} INDEXED BY errands_jobs_claim_any WHERE {AVAILABLE}) END")
    else:
        ready = " OR ".join(f"EXISTS (SELECT 1 FROM {TABLE} INDEXED BY errands_jobs_claim WHERE {AVAILABLE} "
                            f"AND queue = {unpaused(f'?{i + 1}')})" for i in range(queue_count))
    return (f"SELECT {ready}, "
            f"(SELECT min(run_at) FROM {TABLE} INDEXED BY errands_jobs_due WHERE {SCHEDULED})")


@lru_cache(maxsize=16)
def wake_sql(count: int) -> str:
    """Scheduled jobs ``?2..`` made available now (``?1``); others untouched. Padded like claim_ids."""
    ids = ", ".join(f"?{2 + i}" for i in range(count))
    return f"UPDATE {TABLE} SET state = 'available', run_at = ?1 WHERE id IN ({ids}) AND {SCHEDULED}"


@lru_cache(maxsize=16)
def get_many_sql(count: int) -> str:
    return f"SELECT {', '.join(JOB_COLUMNS)} FROM {TABLE} WHERE id IN ({', '.join('?' * count)})"


# paused queues, slots, rates ------------------------------------------------------------------------
PAUSE = f"INSERT INTO {PAUSED_TABLE} (queue, paused_at) VALUES (?, ?) ON CONFLICT (queue) DO NOTHING"
RESUME = f"DELETE FROM {PAUSED_TABLE} WHERE queue = ?"
PAUSED = f"SELECT queue FROM {PAUSED_TABLE}"
SLOT_PURGE = f"DELETE FROM {SLOTS_TABLE} WHERE expires_at <= ?"
# (key, holder, expires_at, limit), after SLOT_PURGE in the same write transaction: a holder
# keeps (and renews) its slot, a new one takes a free slot, else no row is written
SLOT_TAKE = (f"INSERT INTO {SLOTS_TABLE} (key, holder, expires_at) SELECT ?1, ?2, ?3 "
             f"WHERE EXISTS (SELECT 1 FROM {SLOTS_TABLE} WHERE key = ?1 AND holder = ?2) "
             f"OR (SELECT count(*) FROM {SLOTS_TABLE} WHERE key = ?1) < ?4 "
             "ON CONFLICT (key, holder) DO UPDATE SET expires_at = excluded.expires_at")
SLOT_RELEASE = f"DELETE FROM {SLOTS_TABLE} WHERE key = ? AND holder = ?"
SLOT_USAGE = f"SELECT key, count(*) FROM {SLOTS_TABLE} WHERE expires_at > ? GROUP BY key"
RATE_PURGE = f"DELETE FROM {RATES_TABLE} WHERE tat <= ?"
RATE_GET = f"SELECT tat FROM {RATES_TABLE} WHERE key = ?"
RATE_SET = f"INSERT INTO {RATES_TABLE} (key, tat) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET tat = excluded.tat"

# unique_for and debounce ----------------------------------------------------------------------------
ID_EXISTS = f"SELECT 1 FROM {TABLE} WHERE id = ?"
UNIQUE_HOLDER = (f"SELECT id, state FROM {TABLE} INDEXED BY errands_jobs_unique "
                 f"WHERE unique_key = ? AND unique_key IS NOT NULL AND state IN {ACTIVE_SQL}")
UNIQUE_RECENT = (f"SELECT id FROM {TABLE} INDEXED BY errands_jobs_unique_created "
                 "WHERE unique_key = ?1 AND created_at > ?2 ORDER BY created_at DESC LIMIT 1")
# the holder takes the last enqueue's arguments and waits the new window: (args, kwargs, meta, run_at, id)
DEBOUNCE = (f"UPDATE {TABLE} SET args = ?, kwargs = ?, meta = ?, run_at = ?, state = 'scheduled' "
            "WHERE id = ? AND state IN ('scheduled', 'available')")

# worker registry and throughput ---------------------------------------------------------------------
WORKER_UPSERT = (f"INSERT INTO {WORKER_TABLE} ({', '.join(WORKER_COLUMNS)}, expires_at) "
                 f"VALUES ({', '.join('?' * (len(WORKER_COLUMNS) + 1))}) ON CONFLICT (id) DO UPDATE SET "
                 + ", ".join(f"{c} = excluded.{c}" for c in (*WORKER_COLUMNS[1:], "expires_at")))
WORKER_PRUNE = f"DELETE FROM {WORKER_TABLE} WHERE expires_at <= ?"
WORKER_DELETE = f"DELETE FROM {WORKER_TABLE} WHERE id = ?"
WORKERS = (f"SELECT {', '.join(WORKER_COLUMNS)} FROM {WORKER_TABLE} WHERE expires_at > ? "
           "ORDER BY started_at, id")
# (bucket index, state, count) rows for base.throughput_buckets
THROUGHPUT = (f"SELECT CAST((finished_at - ?1) / ?2 AS INTEGER), state, count(*) FROM {TABLE} "
              f"INDEXED BY errands_jobs_finished WHERE {FINISHED} AND finished_at >= ?1 GROUP BY 1, 2")
