"""The MySQL/MariaDB dialect's SQL for ``backends/mysql.py``: the schema as migrations, the
statements of every hot path, the ``mysql://`` URL options, and the cursor-level steps built
from them (the table-renaming cursor, owned-row locking, row conversion).

Statements name the tables ``errands_jobs`` / ``errands_meta`` / ``errands_workers`` exactly as
the shared helpers do (``_sql.TABLE`` and friends); a ``table_prefix`` renames them in one
place, ``Cursor`` below, so every statement here is a constant. ``%s`` is PyMySQL's placeholder:
values are always bound, never formatted in, so a literal percent sign must not appear here.

Schema notes (MySQL has no partial indexes):

* Keys and names are ``VARBINARY``: compared byte for byte, so ``"k"`` and ``"k "`` are two
  unique keys and ``"ÄÖÜ"`` never equals ``"aou"`` (the ``*_ci`` and PAD SPACE collations,
  whose names differ between MySQL and MariaDB, would fold or pad them). ``state`` is ASCII
  text, so it reads back as ``str`` for the shared helpers that compare it.
* Every hot index leads with ``state``, so claiming reads only the ``available`` range however
  many finished rows the table keeps.
* ``neg_priority`` (a generated column) lets one ascending index serve ``priority DESC, run_at,
  id``: MariaDB before 10.8 ignores ``DESC`` in index definitions.
* ``deadline`` is ``lease_until`` while running and ``run_at`` otherwise: one ``(state,
  deadline)`` index finds both due scheduled jobs and expired leases.
* ``unique_active`` is the unique key while the job is unfinished and NULL after; NULLs never
  collide, so its UNIQUE index is the partial unique index other dialects write directly.
* ``finished (finished_at, state)`` counts throughput: unfinished rows sit together under NULL,
  and a finishing job's key (now) appends at the right edge, one cheap index insert.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import ConfigurationError
from ._sql import (
    ACTIVE_SQL,
    INSERT_COLUMNS,
    JOB_COLUMNS,
    META_TABLE,
    TABLE,
    Migration,
    insert_jobs,
    keyed_window,
    record_from_row,
)
from ._sql_registry import WORKER_COLUMNS, WORKER_TABLE
from .base import Claim, Enqueued, JobRecord, NewJob

__all__ = [
    "CLAIM_COLUMNS",
    "CLAIM_IDS",
    "COUNTS",
    "COUNTS_BY_QUEUE",
    "DEBOUNCE",
    "EXPIRED",
    "EXTEND",
    "GET",
    "GET_MANY",
    "INSERT",
    "KEY_HOLDER",
    "KNOWN",
    "LOCK_IDS",
    "META_DDL",
    "MIGRATIONS",
    "NOW",
    "PAUSE",
    "PAUSED",
    "PAUSED_TABLE",
    "PROMOTE",
    "PURGE",
    "PURGE_PICK",
    "PURGE_RATES",
    "PURGE_SLOTS",
    "PURGE_SLOT_KEYS",
    "RATES_TABLE",
    "RATE_READ",
    "RATE_TAKE",
    "REAP_CANCELLED",
    "REAP_FAILED",
    "REAP_REQUEUE",
    "RECENT_HOLDER",
    "RELEASE",
    "RESUME",
    "RETRY",
    "SERVER",
    "SETTLE",
    "SLOTS_TABLE",
    "SLOT_HOLD",
    "SLOT_KEYS_TABLE",
    "SLOT_LAPSED",
    "SLOT_LIVE",
    "SLOT_LOCK",
    "SLOT_UNHOLD",
    "SLOT_USAGE",
    "TABLES",
    "THROUGHPUT",
    "UNPAUSED",
    "WAKE",
    "WHERE",
    "WORKERS",
    "WORKER_DELETE",
    "WORKER_PRUNE",
    "WORKER_UPSERT",
    "Cursor",
    "MysqlOptions",
    "by_ids",
    "claim_row",
    "claim_sql",
    "in_list",
    "insert",
    "insert_each",
    "lock_owned",
    "owned_ids",
    "owned_sql",
    "parse_url",
    "pick_sql",
    "probe_sql",
    "record",
    "text",
    "values_rows",
]

# schema -------------------------------------------------------------------------------------------
PAUSED_TABLE = "errands_paused"
SLOTS_TABLE = "errands_slots"
SLOT_KEYS_TABLE = "errands_slot_keys"
RATES_TABLE = "errands_rates"
# every table, by its default name (a table_prefix renames them all in ``Cursor``)
TABLES = (TABLE, META_TABLE, WORKER_TABLE, PAUSED_TABLE, SLOTS_TABLE, SLOT_KEYS_TABLE, RATES_TABLE)
META_DDL = (f"CREATE TABLE IF NOT EXISTS {META_TABLE} (name VARCHAR(64) NOT NULL PRIMARY KEY, "
            "value VARCHAR(255) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, (
        # IF NOT EXISTS: MySQL commits each DDL statement on its own, so a crash before the
        # version is recorded must leave a state the next opener can redo.
        # Times are DOUBLE epoch seconds from the server's clock; JSON and error text LONGTEXT.
        f"""CREATE TABLE IF NOT EXISTS {TABLE} (
            id VARBINARY(64) NOT NULL, name VARBINARY(255) NOT NULL, queue VARBINARY(255) NOT NULL,
            args LONGTEXT NOT NULL, kwargs LONGTEXT NOT NULL,
            state VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
            attempts INT NOT NULL DEFAULT 0, max_attempts INT NOT NULL, priority INT NOT NULL DEFAULT 0,
            run_at DOUBLE NOT NULL, created_at DOUBLE NOT NULL, started_at DOUBLE NULL,
            finished_at DOUBLE NULL, result LONGTEXT NULL, error LONGTEXT NULL,
            unique_key VARBINARY(2048) NULL, timeout DOUBLE NULL, worker_id VARBINARY(255) NULL,
            cancel_requested TINYINT NOT NULL DEFAULT 0, token VARBINARY(128) NULL,
            lease_until DOUBLE NULL,
            neg_priority BIGINT AS (-priority) STORED,
            deadline DOUBLE AS (IF(state = 'running', lease_until, run_at)) STORED,
            unique_active VARBINARY(2048) AS (IF(state IN {ACTIVE_SQL}, unique_key, NULL)) STORED,
            PRIMARY KEY (id),
            KEY claim_queue (state, queue, neg_priority, run_at, id),
            KEY claim_any (state, neg_priority, run_at, id),
            KEY deadline (state, deadline),
            KEY state_id (state, id),
            KEY finished (finished_at, state),
            UNIQUE KEY unique_active (unique_active)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin ROW_FORMAT=DYNAMIC""",
        # One row per live worker process, upserted at each heartbeat; lists are JSON text.
        f"""CREATE TABLE IF NOT EXISTS {WORKER_TABLE} (
            id VARBINARY(255) NOT NULL PRIMARY KEY, host VARCHAR(255) NOT NULL, pid BIGINT NOT NULL,
            queues LONGTEXT NOT NULL, concurrency INT NOT NULL, started_at DOUBLE NOT NULL,
            last_seen DOUBLE NOT NULL, running LONGTEXT NOT NULL, processed BIGINT NOT NULL,
            expires_at DOUBLE NOT NULL, KEY expires_at (expires_at)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    ), "jobs and worker tables with their indexes"),
    Migration(2, (
        # JSON object text a producer attaches to a job (trace context, workflow links); NULL
        # means {}. MySQL commits DDL on its own, so a crash after the ALTER and before the
        # version is recorded must be redoable, and MySQL 8 has no ADD COLUMN IF NOT EXISTS
        # (MariaDB has): the ALTER runs only when information_schema lacks the column.
        (f"SET @errands_ddl = (SELECT IF(COUNT(*) = 0, 'ALTER TABLE {TABLE} ADD COLUMN meta LONGTEXT NULL', "
         f"'DO 0') FROM information_schema.columns WHERE table_schema = DATABASE() "
         f"AND table_name = '{TABLE}' AND column_name = 'meta')"),
        "PREPARE errands_ddl FROM @errands_ddl",
        "EXECUTE errands_ddl",
        "DEALLOCATE PREPARE errands_ddl",
    ), "job metadata"),
    Migration(3, (
        # Paused queues: every claim looks its candidates' queues up here (a row per paused
        # queue), so a pause is exact for every process at once.
        f"""CREATE TABLE IF NOT EXISTS {PAUSED_TABLE} (queue VARBINARY(255) NOT NULL PRIMARY KEY)
            ENGINE=InnoDB""",
        # Concurrency slots: a row per live hold; a row per key in SLOT_KEYS is the key's mutex
        # (acquire_slots locks it with an upsert, then counts the holds). Keys are the core's
        # "job:<name>:<partition>" (name up to 255 bytes, partition up to 200 characters).
        f"""CREATE TABLE IF NOT EXISTS {SLOTS_TABLE} (
            slot_key VARBINARY(1536) NOT NULL, holder VARBINARY(255) NOT NULL, expires_at DOUBLE NOT NULL,
            PRIMARY KEY (slot_key, holder), KEY expires_at (expires_at)) ENGINE=InnoDB""",
        f"CREATE TABLE IF NOT EXISTS {SLOT_KEYS_TABLE} (slot_key VARBINARY(1536) NOT NULL PRIMARY KEY) ENGINE=InnoDB",
        # Rate limits: one GCRA theoretical arrival time per key; a tat in the past means the
        # same as no row, so those are deleted now and then (by the tat index).
        f"""CREATE TABLE IF NOT EXISTS {RATES_TABLE} (rate_key VARBINARY(1536) NOT NULL PRIMARY KEY,
            tat DOUBLE NOT NULL, KEY tat (tat)) ENGINE=InnoDB""",
        # unique_for: the newest job of a key whatever its state (unique_active holds unfinished
        # ones only). Redoable like step 2: added only when information_schema lacks it.
        (f"SET @errands_ddl = (SELECT IF(COUNT(*) = 0, 'ALTER TABLE {TABLE} ADD KEY unique_any (unique_key, "
         f"created_at)', 'DO 0') FROM information_schema.statistics WHERE table_schema = DATABASE() "
         f"AND table_name = '{TABLE}' AND index_name = 'unique_any')"),
        "PREPARE errands_ddl FROM @errands_ddl",
        "EXECUTE errands_ddl",
        "DEALLOCATE PREPARE errands_ddl",
    ), "paused queues, concurrency slots, rate limits, unique_for lookups"),
)

# statements ---------------------------------------------------------------------------------------
SERVER = "SELECT VERSION(), @@innodb_flush_log_at_trx_commit, DATABASE(), @@hostname, @@port"
WHERE = "SELECT DATABASE(), @@hostname, @@port"  # which database a caller's connection writes to
# The session runs in UTC (init_command), so NOW(6) converts to epoch seconds without a DST hour.
NOW = "SELECT UNIX_TIMESTAMP(NOW(6))"

# ON DUPLICATE KEY UPDATE id = id, not INSERT IGNORE: IGNORE also turns "data too long" into a
# truncating warning. The no-op update reports 0 affected rows, so rowcount counts the inserts
# (our connections never set CLIENT_FOUND_ROWS, which would count it as 1).
INSERT = (f"INSERT INTO {TABLE} ({', '.join(INSERT_COLUMNS)}) VALUES ({', '.join(['%s'] * len(INSERT_COLUMNS))}) "
          "ON DUPLICATE KEY UPDATE id = id")

# What a claim reads of each job it locks (claims_from_rows' order, less the token).
CLAIM_COLUMNS = "id, name, queue, args, kwargs, attempts, max_attempts, timeout, priority, run_at, meta"
_ORDER = "ORDER BY neg_priority, run_at, id"
# FORCE INDEX pins each plan: a locking read that fell back to a filesort would lock every row it
# sorts, not the LIMIT it returns, and a statement fails loudly if its index goes missing.
# Expired leases (running) and due jobs (scheduled), oldest first within each state; SKIP LOCKED,
# so workers maintaining at once share the work instead of queueing on it.
EXPIRED = (f"SELECT id, state, attempts, max_attempts, cancel_requested FROM {TABLE} FORCE INDEX (deadline) "
           "WHERE state IN ('running', 'scheduled') AND deadline <= %s LIMIT %s FOR UPDATE SKIP LOCKED")
GET = f"SELECT {', '.join(JOB_COLUMNS)} FROM {TABLE} WHERE id = %s"
COUNTS = f"SELECT NULL, state, COUNT(*) FROM {TABLE} FORCE INDEX (state_id) GROUP BY state"
COUNTS_BY_QUEUE = f"SELECT queue, state, COUNT(*) FROM {TABLE} FORCE INDEX (claim_queue) GROUP BY state, queue"
# A job's queue is not paused (a primary-key lookup per row); a queue parameter is not paused
# (one probe, the same for every row).
UNPAUSED = f"queue NOT IN (SELECT queue FROM {PAUSED_TABLE})"
_NOT_PAUSED = f"NOT EXISTS (SELECT 1 FROM {PAUSED_TABLE} WHERE queue = %s)"
_LOST = "CONCAT('worker lost while running (attempt ', attempts, '/', max_attempts, ')')"


def in_list(count: int) -> str:
    return ", ".join(["%s"] * count)


@lru_cache(maxsize=64)
def pick_sql(queue_count: int | None) -> str:
    """Lock the best claimable jobs of the queues, up to a limit, skipping locked ones. Claimable:
    available, or scheduled and due (claimed directly: promoting first would cost a statement
    per claim; maintain() promotes the due jobs no claim took).

    Two steps in one statement. The candidates, best first, come from plain (non-locking) index
    reads of a window larger than the limit; then the rows are locked through the primary key
    only, in that order, until the limit. Locking through the claim indexes themselves would
    deadlock: a SKIP LOCKED scan keeps its lock on the index entry of a row it skipped, and a
    claimer of every queue (claim_any) and one of named queues (claim_queue) then each hold an
    entry of a row the other must update. STRAIGHT_JOIN keeps the window's order, so no sort
    runs over locked rows either.

    Parameters, for every queue: (window, now, window, window, now, limit); for named queues:
    (queue, queue, window) per queue, then (now, due_scan, *queues, window, now, limit). Per-queue
    index reads, not ``queue IN (...)``, which with this ORDER BY would sort every available job
    of those queues; due jobs of named queues come from the first ``due_scan`` due jobs.

    Paused queues are left out where the candidates are read (a filled window of paused jobs
    would starve the others): a named queue by one primary-key probe of the paused table made
    once per statement, every queue by a lookup per index entry read.
    """
    rank = "SELECT id, neg_priority, run_at FROM"
    if queue_count is None:
        due = (f"{rank} {TABLE} FORCE INDEX (deadline) WHERE state = 'scheduled' AND deadline <= %s "
               f"AND {UNPAUSED} ORDER BY deadline LIMIT %s")
        arms = [f"{rank} {TABLE} FORCE INDEX (claim_any) WHERE state = 'available' AND {UNPAUSED} {_ORDER} LIMIT %s",
                due]
    else:
        one = (f"{rank} {TABLE} FORCE INDEX (claim_queue) WHERE state = 'available' AND queue = %s "
               f"AND {_NOT_PAUSED} {_ORDER} LIMIT %s")
        due = (f"{rank} (SELECT id, queue, neg_priority, run_at FROM {TABLE} FORCE INDEX (deadline) "
               "WHERE state = 'scheduled' AND deadline <= %s ORDER BY deadline LIMIT %s) AS due "
               f"WHERE queue IN ({in_list(queue_count)}) AND {UNPAUSED}")
        arms = [one] * queue_count + [due]
    window = " UNION ALL ".join(f"({arm})" for arm in arms) + f" {_ORDER} LIMIT %s"
    columns = ", ".join(f"job.{c.strip()}" for c in CLAIM_COLUMNS.split(","))
    return (f"SELECT STRAIGHT_JOIN {columns} FROM ({window}) AS candidate JOIN {TABLE} AS job "
            "ON job.id = candidate.id WHERE (job.state = 'available' OR (job.state = 'scheduled' "
            "AND job.deadline <= %s)) LIMIT %s FOR UPDATE SKIP LOCKED")


@lru_cache(maxsize=64)
def claim_sql(count: int) -> str:
    """Move locked claimable jobs to running. Parameters: lease_until, started_at, worker_id,
    the claim's token nonce, then the ids. Token = nonce + id: new for every claim (the nonce is
    random per call), different per row, made without a round trip to read it back."""
    return (f"UPDATE {TABLE} SET state = 'running', attempts = attempts + 1, lease_until = %s, started_at = %s, "
            f"worker_id = %s, cancel_requested = 0, token = CONCAT(%s, id) "
            f"WHERE id IN ({in_list(count)}) AND state IN ('available', 'scheduled')")


@lru_cache(maxsize=64)
def owned_sql(count: int) -> str:
    """Lock the running rows among ids (primary-key order, the same in every caller, so two
    transactions never lock in opposite orders) to compare their tokens."""
    return f"SELECT id, token, cancel_requested FROM {TABLE} WHERE id IN ({in_list(count)}) AND state = 'running' FOR UPDATE"


@lru_cache(maxsize=64)
def probe_sql(queue_count: int | None) -> str:
    """Is anything claimable now, and when is the next scheduled job due? Index probes, paused
    queues left out (so a worker whose only work is paused sleeps instead of polling at once).
    Parameters: for named queues, (queue, queue) per queue."""
    if queue_count is None:
        available = f"EXISTS (SELECT 1 FROM {TABLE} FORCE INDEX (claim_any) WHERE state = 'available' AND {UNPAUSED})"
    else:
        one = (f"EXISTS (SELECT 1 FROM {TABLE} FORCE INDEX (claim_queue) WHERE state = 'available' "
               f"AND queue = %s AND {_NOT_PAUSED})")
        available = "(" + " OR ".join([one] * queue_count) + ")"
    return (f"SELECT {available}, "
            # ORDER BY ... LIMIT 1, not MIN(): with the paused filter MIN() would read every
            # scheduled job; this stops at the first one of a queue not paused
            f"(SELECT deadline FROM {TABLE} FORCE INDEX (deadline) WHERE state = 'scheduled' AND {UNPAUSED} "
            "ORDER BY deadline LIMIT 1)")


def by_ids(template: str, count: int) -> str:
    """``template`` with ``{ids}`` filled by ``count`` placeholders."""
    return template.format(ids=in_list(count))


PROMOTE = f"UPDATE {TABLE} SET state = 'available' WHERE id IN ({{ids}}) AND state = 'scheduled'"
EXTEND = f"UPDATE {TABLE} SET lease_until = %s WHERE id IN ({{ids}})"
# settle_row's fields less (id, token), for rows already locked and proven owned.
SETTLE = (f"UPDATE {TABLE} SET state = %s, run_at = COALESCE(%s, run_at), result = IF(%s, %s, result), "
          "error = COALESCE(%s, error), finished_at = COALESCE(%s, finished_at), token = NULL, "
          "lease_until = NULL WHERE id IN ({ids})")
# Parameters: delay, run_at, ids: available now, or scheduled at run_at after a delay (a snooze).
RELEASE = (f"UPDATE {TABLE} SET state = IF(%s > 0, 'scheduled', 'available'), attempts = GREATEST(attempts - 1, 0), "
           "run_at = %s, token = NULL, lease_until = NULL WHERE id IN ({ids})")
REAP_FAILED = (f"UPDATE {TABLE} SET state = 'failed', error = {_LOST}, finished_at = %s, token = NULL, "
               "lease_until = NULL WHERE id IN ({ids})")
# A running job asked to stop whose worker was lost ends cancelled: the cancel outlives the worker.
REAP_CANCELLED = (f"UPDATE {TABLE} SET state = 'cancelled', error = {_LOST}, finished_at = %s, token = NULL, "
                  "lease_until = NULL WHERE id IN ({ids})")
REAP_REQUEUE = (f"UPDATE {TABLE} SET state = 'available', error = {_LOST}, run_at = %s, token = NULL, "
                "lease_until = NULL WHERE id IN ({ids})")
# IGNORE skips a row whose unique key another unfinished job holds now (retrying it would make
# two); nothing else in this statement can be truncated or coerced, so it hides nothing more.
RETRY = (f"UPDATE IGNORE {TABLE} SET state = 'available', run_at = %s, finished_at = NULL, cancel_requested = 0, "
         "max_attempts = GREATEST(max_attempts, attempts + 1) WHERE id IN ({ids}) AND state IN ('failed', 'cancelled')")
# Which of a batch's ids exist, and which of its keys unfinished jobs hold (two index lookups).
KNOWN = (f"SELECT id, unique_active FROM {TABLE} WHERE id IN ({{ids}}) UNION ALL "
         f"SELECT id, unique_active FROM {TABLE} WHERE unique_active IN ({{keys}})")
LOCK_IDS = f"SELECT id FROM {TABLE} WHERE id IN ({{ids}}) ORDER BY id FOR UPDATE"
# Lock the claimable ones of the ids (claim_ids; then claim_sql moves them): available, or scheduled
# and due by %s. A plain FOR UPDATE in primary-key order, not SKIP LOCKED: a row another transaction
# holds for a moment (a promotion, a cancel) is waited for and read again, so a claimable job the
# caller names is never passed over, and two claimers of one id take it once.
CLAIM_IDS = (f"SELECT {CLAIM_COLUMNS} FROM {TABLE} WHERE id IN ({{ids}}) AND (state = 'available' "
             f"OR (state = 'scheduled' AND run_at <= %s)) AND {UNPAUSED} ORDER BY id FOR UPDATE")
PURGE_PICK = (f"SELECT id FROM {TABLE} FORCE INDEX (state_id) WHERE state = %s AND id > %s "
              "AND COALESCE(finished_at, 0) < %s ORDER BY id LIMIT %s")
# The conditions again: a row retried between the pick and the delete is no longer purgeable.
PURGE = f"DELETE FROM {TABLE} WHERE id IN ({{ids}}) AND state = %s AND COALESCE(finished_at, 0) < %s"


# queue control and workflows -------------------------------------------------------------------------
PAUSE = f"INSERT INTO {PAUSED_TABLE} (queue) VALUES {{rows}} ON DUPLICATE KEY UPDATE queue = queue"
RESUME = f"DELETE FROM {PAUSED_TABLE} WHERE queue IN ({{ids}})"
PAUSED = f"SELECT queue FROM {PAUSED_TABLE}"
# Scheduled jobs of the ids available now (a dependency finished). Parameters: run_at, ids.
WAKE = f"UPDATE {TABLE} SET state = 'available', run_at = %s WHERE id IN ({{ids}}) AND state = 'scheduled'"
GET_MANY = f"SELECT {', '.join(JOB_COLUMNS)} FROM {TABLE} WHERE id IN ({{ids}})"

# unique_for and debounce: one job at a time. The unfinished holder of a key, locked (it is one row
# of a unique index, so concurrent enqueues of the key take turns on it).
KEY_HOLDER = f"SELECT id, state FROM {TABLE} WHERE unique_active = %s FOR UPDATE"
# An unstarted holder takes the last enqueue's arguments and runs debounce seconds from now.
DEBOUNCE = f"UPDATE {TABLE} SET args = %s, kwargs = %s, meta = %s, state = 'scheduled', run_at = %s WHERE id = %s"
# unique_for: the newest job of the key created after a time, whatever its state.
RECENT_HOLDER = (f"SELECT id FROM {TABLE} FORCE INDEX (unique_any) WHERE unique_key = %s AND created_at > %s "
                 "ORDER BY created_at DESC LIMIT 1")

# limits ------------------------------------------------------------------------------------------------
# The keys' mutex rows, upserted and so locked, in sorted order (the caller sorts: no two callers
# lock in opposite orders). Held to COMMIT; then the holds are read and written under them.
SLOT_LOCK = f"INSERT INTO {SLOT_KEYS_TABLE} (slot_key) VALUES {{rows}} ON DUPLICATE KEY UPDATE slot_key = slot_key"
SLOT_LAPSED = f"DELETE FROM {SLOTS_TABLE} WHERE slot_key IN ({{ids}}) AND expires_at <= %s"
SLOT_LIVE = f"SELECT slot_key, holder FROM {SLOTS_TABLE} WHERE slot_key IN ({{ids}})"
SLOT_HOLD = (f"INSERT INTO {SLOTS_TABLE} (slot_key, holder, expires_at) VALUES {{rows}} "
             "ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at)")
SLOT_UNHOLD = f"DELETE FROM {SLOTS_TABLE} WHERE (slot_key, holder) IN ({{ids}})"
SLOT_USAGE = f"SELECT slot_key, COUNT(*) FROM {SLOTS_TABLE} WHERE expires_at > %s GROUP BY slot_key"
# One GCRA step (base.gcra) as an upsert: a new key is granted (1 row affected); an existing one
# gets the new tat when granted (2) and keeps its tat when refused (0: nothing changed, nothing
# written). Parameters: key, now + interval, then (now, interval, now, period, now, interval).
RATE_TAKE = (f"INSERT INTO {RATES_TABLE} (rate_key, tat) VALUES (%s, %s) ON DUPLICATE KEY UPDATE "
             "tat = IF(GREATEST(tat, %s) + %s - %s <= %s + 1e-9, GREATEST(tat, %s) + %s, tat)")
RATE_READ = f"SELECT tat FROM {RATES_TABLE} WHERE rate_key = %s"
# Rows that mean nothing any more, a bounded batch at a time: lapsed holds, keys without holds,
# rate keys whose tat has passed (the same as no row).
PURGE_SLOTS = f"DELETE FROM {SLOTS_TABLE} WHERE expires_at <= %s LIMIT %s"
PURGE_SLOT_KEYS = (f"DELETE FROM {SLOT_KEYS_TABLE} WHERE NOT EXISTS (SELECT 1 FROM {SLOTS_TABLE} "
                   f"WHERE {SLOTS_TABLE}.slot_key = {SLOT_KEYS_TABLE}.slot_key) LIMIT %s")
PURGE_RATES = f"DELETE FROM {RATES_TABLE} WHERE tat < %s LIMIT %s"


def values_rows(count: int, width: int) -> str:
    """``(%s, ...), (%s, ...)``: ``count`` rows of ``width`` placeholders for a multi-row VALUES."""
    row = "(" + in_list(width) + ")"
    return ", ".join([row] * count)


# worker registry and throughput ---------------------------------------------------------------------
# VALUES(col), not MySQL 8.0.20's row alias, which MariaDB lacks (MySQL only warns about VALUES()).
WORKER_UPSERT = (f"INSERT INTO {WORKER_TABLE} ({', '.join(WORKER_COLUMNS)}, expires_at) "
                 f"VALUES ({in_list(len(WORKER_COLUMNS) + 1)}) ON DUPLICATE KEY UPDATE "
                 + ", ".join(f"{c} = VALUES({c})" for c in (*WORKER_COLUMNS[1:], "expires_at")))
WORKER_PRUNE = f"DELETE FROM {WORKER_TABLE} WHERE expires_at <= %s"
WORKER_DELETE = f"DELETE FROM {WORKER_TABLE} WHERE id = %s"
WORKERS = (f"SELECT {', '.join(WORKER_COLUMNS)} FROM {WORKER_TABLE} WHERE expires_at > %s "
           "ORDER BY started_at, id")
# (bucket index, state, count) rows for base.throughput_buckets
THROUGHPUT = (f"SELECT FLOOR((finished_at - %s) / %s), state, COUNT(*) FROM {TABLE} FORCE INDEX (finished) "
              "WHERE finished_at >= %s AND state IN ('succeeded', 'failed') GROUP BY 1, 2")


# URL ----------------------------------------------------------------------------------------------
_PREFIX_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
_SECONDS = {"connect_timeout": (0.1, 300.0), "read_timeout": (0.1, 86_400.0), "write_timeout": (0.1, 86_400.0),
            "lock_timeout": (0.1, 3_600.0)}


@dataclass(frozen=True, slots=True)
class MysqlOptions:
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""
    database: str = ""
    unix_socket: str | None = None
    table_prefix: str = "errands_"
    connect_timeout: float = 5.0  # a producer hears BackendUnavailable this fast when the server is gone
    read_timeout: float = 30.0  # longest statement we wait for (a purge chunk, a migration)
    write_timeout: float = 30.0
    lock_timeout: float = 10.0  # deadlocks and lock waits are retried this long, then BackendUnavailable

    @property
    def where(self) -> str:
        return self.unix_socket or f"{self.host}:{self.port}"


def parse_url(url: str) -> MysqlOptions:
    """``mysql://user:password@host:3306/database`` (or ``mariadb://``) with errands' options
    ``table_prefix`` (default ``errands_``), ``connect_timeout``, ``read_timeout``,
    ``write_timeout``, ``lock_timeout`` (seconds) and ``unix_socket``."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("mysql", "mariadb"):
        raise ConfigurationError(f"not a mysql:// or mariadb:// URL: {parts.scheme}://...")
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise ConfigurationError("a MySQL URL names one database: mysql://user@host:3306/database")
    try:
        port = parts.port or 3306
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise ConfigurationError(f"bad MySQL URL: {exc}") from None
    options: dict[str, Any] = {}
    for key, value in pairs:
        if key in options:
            raise ConfigurationError(f"MySQL URL parameter {key!r} given twice")
        options[key] = _option(key, value)
    return MysqlOptions(host=parts.hostname or "127.0.0.1", port=port, user=unquote(parts.username or "root"),
                        password=unquote(parts.password or ""), database=database, **options)


def _option(key: str, value: str) -> Any:
    if key == "table_prefix":
        if not _PREFIX_RE.fullmatch(value):
            raise ConfigurationError(f"MySQL URL: table_prefix must be 1-40 of A-Z a-z 0-9 _ starting with a "
                                     f"letter, got {value!r}")
        return value
    if key == "unix_socket":
        return value
    if key in _SECONDS:
        low, high = _SECONDS[key]
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if not low <= seconds <= high:  # also refuses nan
            raise ConfigurationError(f"MySQL URL: {key} must be {low:g} to {high:g} seconds, got {value!r}")
        return seconds
    known = ", ".join(["table_prefix", "unix_socket", *_SECONDS])
    raise ConfigurationError(f"unknown MySQL URL parameter {key!r}: known are {known}")


# cursor-level steps -------------------------------------------------------------------------------
_KEY_AT = INSERT_COLUMNS.index("unique_key")
_TEXT_AT = (0, 1, 2, 15, 17)  # JOB_COLUMNS that are VARBINARY (id, name, queue, unique_key, worker_id)


def text(value: Any) -> Any:
    """VARBINARY comes back as bytes: text for the record (bytes written by hand that aren't
    UTF-8 show with replacement characters rather than failing the read)."""
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else value


_TABLE_NAMES = re.compile("|".join(sorted(TABLES, key=len, reverse=True)))


class Cursor:
    """A PyMySQL cursor that speaks this backend's table names. ``_sql.py`` and this module name
    the tables ``errands_jobs`` / ``_meta`` / ``_workers``; a ``table_prefix`` renames them here,
    in the statement text only: values travel as bound parameters and are never rewritten.
    (The shared helpers take no table name, and one rename here beats a copy of each helper.)"""

    __slots__ = ("_cursor", "_names")

    def __init__(self, cursor: Any, prefix: str) -> None:
        self._cursor = cursor
        self._names = None if prefix == "errands_" else {
            name: prefix + name.removeprefix("errands_") for name in TABLES}

    def _sql(self, sql: str) -> str:
        if self._names is None:
            return sql
        # one pass, longest name first: a renamed table is never renamed again
        names = self._names
        return _TABLE_NAMES.sub(lambda m: names[m.group(0)], sql)

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> int:
        return int(self._cursor.execute(self._sql(sql), tuple(parameters) or None))

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any:
        # PyMySQL sends an INSERT ... VALUES batch as multi-row INSERTs: one round trip per ~1 MB.
        return self._cursor.executemany(self._sql(sql), list(parameters))

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)


def lock_owned(cur: Cursor, ids: Iterable[str]) -> dict[str, tuple[str, bool]]:
    """Lock the running rows among ``ids``: id -> (token, cancel_requested)."""
    wanted = sorted(set(ids))
    cur.execute(owned_sql(len(wanted)), wanted)
    return {text(r[0]): (text(r[1]), bool(r[2])) for r in cur.fetchall()}


def owned_ids(cur: Cursor, claims: Sequence[Claim]) -> tuple[list[str], dict[str, tuple[str, bool]]]:
    """The claims' ids whose token still owns the job (each once), with the locked rows."""
    rows = lock_owned(cur, (c.id for c in claims))
    kept = {c.id for c in claims if c.id in rows and rows[c.id][0] == c.token}
    return sorted(kept), rows


def insert(cur: Cursor, rows: list[tuple[Any, ...]]) -> list[Enqueued]:
    """One multi-row INSERT; only when a row was skipped (an existing id, a held unique key) the
    batch is undone and redone by ``insert_jobs``, row by row, to say which and why.

    A batch with unique keys first reads, without locking, which of its ids exist and which of
    its keys unfinished jobs hold, and answers those rows without writing. Enqueues that repeat
    a held key (every scheduler enqueues each periodic tick) then never lock the holder while
    its worker settles it: that pair of locks (key entry, row) is a deadlock waiting to happen.
    """
    answers: dict[int, Enqueued] = {}
    if any(row[_KEY_AT] is not None for row in rows):
        answers = _known(cur, rows)
    todo = [row for index, row in enumerate(rows) if index not in answers]
    if todo:
        cur.executemany(INSERT, todo)
        if cur.rowcount != len(todo):  # raced with another enqueue: redo exactly, row by row
            cur.execute("ROLLBACK")
            return insert_jobs(cur, rows, insert_sql=INSERT, placeholder="%s")
    return [answers.get(index) or Enqueued(row[0], True) for index, row in enumerate(rows)]


def insert_each(cur: Cursor, jobs: Sequence[NewJob], rows: list[tuple[Any, ...]], now: float) -> list[Enqueued]:
    """A batch with unique_for / debounce jobs: row by row in batch order (a later job sees an
    earlier one's key), all or none in a savepoint (inside a caller's transaction too)."""
    cur.execute("SAVEPOINT errands_keyed")
    try:
        result = [_insert_keyed(cur, job, row, now) if keyed_window(job)
                  else insert_jobs(cur, [row], insert_sql=INSERT, placeholder="%s")[0]
                  for job, row in zip(jobs, rows, strict=True)]
        cur.execute("RELEASE SAVEPOINT errands_keyed")
    except BaseException:
        with suppress(Exception):  # leave the transaction as before the batch
            cur.execute("ROLLBACK TO SAVEPOINT errands_keyed")
        raise
    return result


def _insert_keyed(cur: Cursor, job: NewJob, row: tuple[Any, ...], now: float) -> Enqueued:
    """One job whose key has a window (memory.py's order): an existing id answers itself; an
    unfinished holder (locked, so enqueues of the key take turns) is debounced if it has not
    started and answers; with unique_for the newest job created within the window answers;
    else the job is inserted. An insert that loses the key to a concurrent enqueue looks again."""
    cur.execute(f"SELECT 1 FROM {TABLE} WHERE id = %s", (job.id,))
    if cur.fetchone() is not None:
        return Enqueued(job.id, False)
    for _ in range(3):
        cur.execute(KEY_HOLDER, (job.unique_key,))
        holder = cur.fetchone()
        if holder is not None:
            holder_id = text(holder[0])
            if job.debounce is not None and holder[1] in ("scheduled", "available"):
                cur.execute(DEBOUNCE, (job.args, job.kwargs, job.meta, now + job.debounce, holder_id))
            return Enqueued(holder_id, False)
        if job.unique_for is not None:
            cur.execute(RECENT_HOLDER, (job.unique_key, now - job.unique_for))
            recent = cur.fetchone()
            if recent is not None:
                return Enqueued(text(recent[0]), False)
        cur.execute(INSERT, row)
        if cur.rowcount == 1:
            return Enqueued(job.id, True)
    return insert_jobs(cur, [row], insert_sql=INSERT, placeholder="%s")[0]


def _known(cur: Cursor, rows: list[tuple[Any, ...]]) -> dict[int, Enqueued]:
    """Rows of the batch that exist already by id, or whose key an unfinished job (in the table
    or earlier in the batch) holds, answered the way memory.py does: the id first, then the key."""
    ids = [row[0] for row in rows]
    keys = [row[_KEY_AT] for row in rows if row[_KEY_AT] is not None]
    cur.execute(KNOWN.format(ids=in_list(len(ids)), keys=in_list(len(keys))), (*ids, *keys))
    existing: set[str] = set()
    holders: dict[str, str] = {}
    for job_id, key in cur.fetchall():
        existing.add(text(job_id))
        if key is not None:
            holders[text(key)] = text(job_id)
    answers: dict[int, Enqueued] = {}
    for index, row in enumerate(rows):
        job_id, key = row[0], row[_KEY_AT]
        if job_id in existing:
            answers[index] = Enqueued(job_id, False)
        elif key is not None and key in holders:
            answers[index] = Enqueued(holders[key], False)
        else:  # inserted below: later rows of the batch see it
            existing.add(job_id)
            if key is not None:
                holders[key] = job_id
    return answers


def claim_row(row: Sequence[Any], nonce: str) -> tuple[Any, ...]:
    """A locked row as claims_from_rows() reads it: the attempt counted, the token as the UPDATE
    wrote it (nonce + id)."""
    job_id = text(row[0])
    return (job_id, text(row[1]), text(row[2]), row[3], row[4], int(row[5]) + 1, int(row[6]), nonce + job_id,
            row[7], int(row[8]), float(row[9]), row[10])


def record(row: Sequence[Any]) -> JobRecord:
    values = list(row)
    for index in _TEXT_AT:
        values[index] = text(values[index])
    return record_from_row(values)
