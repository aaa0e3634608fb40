"""PostgreSQL's schema and statements (the dialect half of ``postgres.py``).

Everything lives in one schema chosen by the URL, so every statement names its table
schema-qualified: the text is then constant per schema (psycopg prepares a statement it has run
a few times, keyed by its text) and works on a caller's own connection whatever its
``search_path``. ``Statements(schema)`` builds them once per backend.

Times are float8 epoch seconds from the server's clock: ``statement_timestamp()``, the start of
the current statement (inside a caller's long transaction too, where ``now()`` would be the
transaction's start). Partial indexes hold only the rows each hot query reads, so claiming stays
an index probe with millions of finished rows; the queries repeat their predicates word for word.
"""

from __future__ import annotations

import hashlib
from functools import cached_property

from ._sql import (
    ACTIVE_SQL,
    JOB_COLUMNS,
    META_TABLE,
    SHOWN_STATE,
    TABLE,
    UNKNOWN_STATE_ERROR,
    UNKNOWN_STATE_SQL,
    Migration,
)
from ._sql_registry import WORKER_COLUMNS, WORKER_TABLE

__all__ = ["CLAIM_UNION_MAX", "Statements", "channel_name"]

NOW = "date_part('epoch', statement_timestamp())"
# Up to this many named queues a claim is a UNION of per-queue index scans (each already in claim
# order); beyond it, one scan of the every-queue index filtered by queue.
CLAIM_UNION_MAX = 8
CLAIM_KEY = "priority DESC, run_at, id"
ORDER = f"ORDER BY {CLAIM_KEY}"
LOCK = "LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
# The fence of extend/settle/release: the claim's token still on the row. The CHECK constraint
# below makes that imply state = 'running'; spelling the state out as well would let the planner
# scan every running row through the lease index (cheap-looking on stale statistics) instead of
# looking each id up by primary key.
FENCE = "j.id = c.id AND j.token = c.token"
CLAIMED = ("j.id, j.name, j.queue, j.args, j.kwargs, j.attempts, j.max_attempts, j.token, j.timeout, "
           "j.priority, j.run_at, j.meta")  # claims_from_rows() reads these, in this order
FINISHED = "state IN ('succeeded', 'failed')"
LOST = "'worker lost while running (attempt ' || j.attempts || '/' || j.max_attempts || ')'"


def channel_name(schema: str) -> str:
    """The LISTEN/NOTIFY channel of a schema: an identifier, so at most 63 bytes."""
    name = f"errands:{schema}"
    return name if len(name) <= 63 else "errands:" + hashlib.sha1(schema.encode()).hexdigest()


def _migrations(t: str, w: str, paused: str, slots: str, rates: str) -> tuple[Migration, ...]:
    return (
        Migration(1, (
            # COLLATE "C" on the keys: byte order (ids sort as the memory backend sorts them) and
            # the cheapest comparisons. No CHECK on state: a row written by hand with an odd
            # state is never claimed; maintain() fails it. args/kwargs/result are the codec's JSON text.
            f"""CREATE TABLE {t} (
                id text COLLATE "C" PRIMARY KEY, name text COLLATE "C" NOT NULL,
                queue text COLLATE "C" NOT NULL, state text COLLATE "C" NOT NULL,
                args text NOT NULL, kwargs text NOT NULL,
                attempts integer NOT NULL DEFAULT 0, max_attempts integer NOT NULL,
                priority integer NOT NULL DEFAULT 0, run_at float8 NOT NULL, created_at float8 NOT NULL,
                started_at float8, finished_at float8, lease_until float8, timeout float8,
                cancel_requested boolean NOT NULL DEFAULT false, token text COLLATE "C",
                unique_key text COLLATE "C", worker_id text, result text, error text,
                -- a lease token exists only while the job runs: (id, token) alone fences (see FENCE)
                CONSTRAINT errands_jobs_token_running CHECK (token IS NULL OR state = 'running'))""",
            # claim from named queues / from every queue, in claim order
            f"CREATE INDEX errands_jobs_claim ON {t} (queue, {CLAIM_KEY}) WHERE state = 'available'",
            f"CREATE INDEX errands_jobs_claim_any ON {t} ({CLAIM_KEY}) WHERE state = 'available'",
            f"CREATE INDEX errands_jobs_due ON {t} (run_at) WHERE state = 'scheduled'",
            f"CREATE INDEX errands_jobs_lease ON {t} (lease_until) WHERE state = 'running'",
            (f"CREATE UNIQUE INDEX errands_jobs_unique ON {t} (unique_key) "
             f"WHERE unique_key IS NOT NULL AND state IN {ACTIVE_SQL}"),
            # list_jobs by state, newest first; purge by state in id order
            f"CREATE INDEX errands_jobs_state ON {t} (state, id)",
            # throughput by finish time: a row enters it once, when it finishes, at the right edge
            f"CREATE INDEX errands_jobs_finished ON {t} (finished_at) WHERE {FINISHED}",
            # one row per live worker process, upserted at each heartbeat; lists are JSON text
            f"""CREATE TABLE {w} (
                id text COLLATE "C" PRIMARY KEY, host text NOT NULL, pid bigint NOT NULL,
                queues text NOT NULL, concurrency integer NOT NULL, started_at float8 NOT NULL,
                last_seen float8 NOT NULL, running text NOT NULL, processed bigint NOT NULL,
                expires_at float8 NOT NULL)""",
        ), "jobs and worker tables with their indexes"),
        Migration(2, (
            # JSON object text a producer attaches to a job (trace context, workflow links); NULL
            # means {}. A nullable column without a default: a catalog change, no table rewrite.
            f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS meta text",
        ), "job metadata"),
        Migration(3, (
            # paused queues: a claim looks each candidate's queue up here (a tiny table, one row
            # per paused queue), so a pause is exact for every process at once
            f"CREATE TABLE IF NOT EXISTS {paused} (queue text COLLATE \"C\" PRIMARY KEY)",
            # concurrency slots: a row per live hold; acquire_slots serializes per key with an
            # advisory lock and drops lapsed holds of the keys it touches
            f"""CREATE TABLE IF NOT EXISTS {slots} (
                key text COLLATE "C" NOT NULL, holder text COLLATE "C" NOT NULL,
                expires_at float8 NOT NULL, PRIMARY KEY (key, holder))""",
            # rate limits: one GCRA theoretical arrival time per key; a row whose tat has passed
            # means the same as no row, so those are deleted now and then
            f"CREATE TABLE IF NOT EXISTS {rates} (key text COLLATE \"C\" PRIMARY KEY, tat float8 NOT NULL)",
            # unique_for: the newest job of a key whatever its state (the unique index above
            # holds unfinished ones only)
            (f"CREATE INDEX IF NOT EXISTS errands_jobs_unique_any ON {t} (unique_key, created_at) "
             "WHERE unique_key IS NOT NULL"),
        ), "paused queues, concurrency slots, rate limits, unique_for lookups"),
    )


class Statements:
    """Every statement of one schema. Parameters are ``%s`` (psycopg), never spliced values."""

    def __init__(self, schema: str) -> None:
        # the schema name is checked by parse_url (letters, digits, _), so quoting it is enough
        self.schema = schema
        self.jobs = f'"{schema}".{TABLE}'
        self.channel = channel_name(schema)
        self.workers = f'"{schema}".{WORKER_TABLE}'
        self.paused = f'"{schema}".errands_paused'
        self.slots = f'"{schema}".errands_slots'
        self.rates = f'"{schema}".errands_rates'
        self.migrations = _migrations(self.jobs, self.workers, self.paused, self.slots, self.rates)
        # unqualified: run_migrations() reads errands_meta by this name, under SET LOCAL search_path
        self.meta_ddl = (f"CREATE TABLE IF NOT EXISTS {META_TABLE} "
                         "(name text PRIMARY KEY, value text NOT NULL)")
        self._claims: dict[int | None, str] = {}

    def _notify(self, rows: str) -> str:
        """A scalar that NOTIFYs once per distinct queue in ``rows`` (a CTE with a ``queue``
        column). Delivered at commit, so a listener never wakes before the rows are visible."""
        return (f"(SELECT count(pg_notify('{self.channel}', q)) "
                f"FROM (SELECT DISTINCT queue FROM {rows}) AS w(q))")

    # producer ----------------------------------------------------------------------------------
    @cached_property
    def enqueue(self) -> str:
        """One INSERT for a whole batch (one array per column). ON CONFLICT DO NOTHING skips an
        id that exists and a unique key an unfinished job holds; the ids returned were created."""
        due = "COALESCE(at, now + delay)"
        return (
            f"WITH new AS (SELECT u.*, {NOW} AS now FROM unnest(%s::text[], %s::text[], %s::text[], "
            "%s::text[], %s::text[], %s::int[], %s::int[], %s::float8[], %s::float8[], %s::text[], "
            "%s::float8[], %s::text[]) AS u(id, name, queue, args, kwargs, max_attempts, priority, at, "
            "delay, unique_key, timeout, meta)), "
            f"ins AS (INSERT INTO {self.jobs} (id, name, queue, args, kwargs, state, max_attempts, "
            "priority, run_at, created_at, unique_key, timeout, meta) "
            f"SELECT id, name, queue, args, kwargs, CASE WHEN {due} > now THEN 'scheduled' ELSE "
            f"'available' END, max_attempts, priority, {due}, now, unique_key, timeout, meta FROM new "
            "ON CONFLICT DO NOTHING RETURNING id, queue, state), "
            "ready AS (SELECT queue FROM ins WHERE state = 'available') "
            f"SELECT id, {self._notify('ready')} FROM ins"
        )

    @cached_property
    def enqueue_fresh(self) -> str:
        """``enqueue`` without ON CONFLICT, for a batch without unique keys on a connection of our
        own: the speculative insertion that ON CONFLICT makes of every row (an arbiter probe of
        each unique index, a confirm record) is ~15% of the batch's server time. A batch holding
        an existing id fails whole (nothing inserted) and is sent again as ``enqueue``. Every
        row was created if it succeeds, so it answers with one row (the NOTIFY count), not an id
        per job."""
        tail = f"SELECT id, {self._notify('ready')} FROM ins"
        fresh = self.enqueue.replace(" ON CONFLICT DO NOTHING", "").replace(tail, f"SELECT {self._notify('ready')}")
        assert fresh.count("ON CONFLICT") == 0 and fresh.endswith("AS w(q))")
        return fresh

    @cached_property
    def enqueue_one(self) -> str:
        """``enqueue`` for a single job: scalar parameters (adapting twelve one-element arrays
        cost more client time than the statement) and a plain INSERT ... RETURNING, without the
        CTEs a batch needs to NOTIFY once per queue (~15% less server time). Parameters as
        ``enqueue``'s, one value each."""
        due = "COALESCE(v.at, v.now + v.delay)"
        return (
            f"INSERT INTO {self.jobs} AS j (id, name, queue, args, kwargs, state, max_attempts, priority, "
            "run_at, created_at, unique_key, timeout, meta) "
            f"SELECT v.id, v.name, v.queue, v.args, v.kwargs, CASE WHEN {due} > v.now THEN 'scheduled' "
            f"ELSE 'available' END, v.max_attempts, v.priority, {due}, v.now, v.unique_key, v.timeout, v.meta "
            "FROM (VALUES (%s::text, %s::text, %s::text, %s::text, %s::text, %s::int, %s::int, %s::float8, "
            f"%s::float8, %s::text, %s::float8, %s::text, {NOW})) AS v(id, name, queue, args, kwargs, "
            "max_attempts, priority, at, delay, unique_key, timeout, meta, now) "
            f"ON CONFLICT DO NOTHING RETURNING j.id, CASE WHEN j.state = 'available' "
            f"THEN pg_notify('{self.channel}', j.queue) END"
        )

    @cached_property
    def holders(self) -> str:
        """After a batch skipped rows: which ids exist, and who holds the unique keys."""
        return (f"SELECT id, unique_key, state IN {ACTIVE_SQL} FROM {self.jobs} WHERE id = ANY(%s) "
                f"OR (unique_key = ANY(%s) AND unique_key IS NOT NULL AND state IN {ACTIVE_SQL})")

    # worker ------------------------------------------------------------------------------------
    def _promote(self, returning: str) -> str:
        # The rows to move are MATERIALIZED CTEs here and below: the planner then joins them to
        # the table by primary key, whatever its (possibly stale) statistics say.
        return (f"WITH due AS MATERIALIZED (SELECT id FROM {self.jobs} WHERE state = 'scheduled' "
                f"AND run_at <= {NOW} ORDER BY run_at {LOCK}) "
                f"UPDATE {self.jobs} AS j SET state = 'available' FROM due WHERE j.id = due.id {returning}")

    @cached_property
    def promote(self) -> str:
        return self._promote("")

    def claim(self, queue_count: int | None) -> str:
        """Pick up to ``%(limit)s`` available jobs in claim order, skipping rows other claimers
        hold, and move them to running in the same statement. ``FOR UPDATE SKIP LOCKED`` sits in
        the scan that applies the LIMIT, so concurrent claimers take different rows."""
        if queue_count not in self._claims:
            self._claims[queue_count] = self._claim(queue_count)
        return self._claims[queue_count]

    def _claim(self, queue_count: int | None) -> str:
        available = f"FROM {self.jobs} WHERE state = 'available'"
        if queue_count is None:
            pick = f"SELECT id {available} AND {self._running_queue} {ORDER} {LOCK}"
        elif queue_count == 1:
            pick = f"SELECT id {available} AND queue = %(q0)s AND {self._unpaused('%(q0)s')} {ORDER} {LOCK}"
        elif queue_count <= CLAIM_UNION_MAX:
            # each arm a subquery in FROM: a locking clause isn't allowed on a UNION's own arms
            arms = " UNION ALL ".join(
                f"SELECT * FROM (SELECT id, priority, run_at {available} AND queue = %(q{i})s "
                f"AND {self._unpaused(f'%(q{i})s')} {ORDER} {LOCK}) AS a{i}" for i in range(queue_count))
            pick = f"SELECT id FROM ({arms}) AS c {ORDER} LIMIT %(limit)s"
        else:
            pick = f"SELECT id {available} AND queue = ANY(%(queues)s) AND {self._running_queue} {ORDER} {LOCK}"
        # The claimed rows, plus (in every row, and in a row of NULLs when nothing was claimed) the
        # seconds until the next scheduled job is due: the claimer then knows when to promote.
        return (f"WITH picked AS MATERIALIZED ({pick}), claimed AS ({self._take}) "
                f"SELECT claimed.*, due.seconds FROM ({self._next_due}) AS due LEFT JOIN claimed ON true")

    def _unpaused(self, queue: str) -> str:
        """The queue ``queue`` (a parameter) is not paused: a one-time check of one primary key,
        made before the scan, so a paused queue's claim reads no job at all."""
        return f"NOT EXISTS (SELECT 1 FROM {self.paused} WHERE queue = {queue})"

    @cached_property
    def _running_queue(self) -> str:
        """The row's queue is not paused, exact at the statement's snapshot (no process claims
        from a queue paused before its statement began). Written as ``<> ALL``, not NOT EXISTS:
        the paused set is then read once into a hashed filter on the claim index's scan, while an
        anti-join, costed on the tiny table's guessed statistics, can turn the LIMITed index scan
        into a full scan and sort."""
        return f"queue <> ALL (SELECT queue FROM {self.paused})"

    @cached_property
    def _take(self) -> str:
        """Move the rows of the CTE ``picked`` to running (claim and claim_ids)."""
        return (f"UPDATE {self.jobs} AS j SET "
                "state = 'running', attempts = j.attempts + 1, token = gen_random_uuid()::text, "
                f"lease_until = {NOW} + %(lease)s, started_at = {NOW}, worker_id = %(worker)s, "
                f"cancel_requested = false FROM picked WHERE j.id = picked.id RETURNING {CLAIMED}")

    @cached_property
    def claim_ids(self) -> str:
        """Claim exactly the jobs ``%(ids)s`` that are claimable: available, or scheduled and due.
        A plain ``FOR UPDATE`` (not SKIP LOCKED): a row another transaction holds for a moment (a
        promotion, a cancel) is waited for and its new version rechecked, so a claimable job is
        never passed over; two claimers of one id then take it once. Locking in id order keeps
        two batches naming the same ids from deadlocking each other."""
        pick = (f"SELECT id FROM {self.jobs} WHERE id = ANY(%(ids)s::text[]) AND (state = 'available' "
                f"OR (state = 'scheduled' AND run_at <= {NOW})) AND {self._running_queue} "
                f"ORDER BY id FOR UPDATE OF {TABLE}")
        return f"WITH picked AS MATERIALIZED ({pick}) {self._take}"

    @cached_property
    def _next_due(self) -> str:
        return f"SELECT min(run_at) - {NOW} AS seconds FROM {self.jobs} WHERE state = 'scheduled'"

    @cached_property
    def extend(self) -> str:
        return (f"UPDATE {self.jobs} AS j SET lease_until = {NOW} + %s "
                f"FROM unnest(%s::text[], %s::text[]) AS c(id, token) "
                f"WHERE {FENCE} RETURNING j.id, j.cancel_requested")

    @cached_property
    def settle(self) -> str:
        """Outcomes as arrays, ``settle_row()``'s rules with times as offsets from the server's
        now: ``run_in`` (NULL: keep run_at), ``finished`` (stamp finished_at)."""
        return (f"UPDATE {self.jobs} AS j SET state = c.state, "
                f"run_at = COALESCE({NOW} + c.run_in, j.run_at), "
                "result = CASE WHEN c.success THEN c.result ELSE j.result END, "
                "error = COALESCE(c.error, j.error), "
                f"finished_at = CASE WHEN c.finished THEN {NOW} ELSE j.finished_at END, token = NULL, "
                "lease_until = NULL FROM unnest(%s::text[], %s::text[], %s::text[], %s::float8[], "
                "%s::bool[], %s::text[], %s::text[], %s::bool[]) "
                "AS c(id, token, state, run_in, success, result, error, finished) "
                f"WHERE {FENCE} RETURNING j.id")

    @cached_property
    def release(self) -> str:
        """Owned claims back, the attempt not counted: available now, or with a delay of
        ``%s`` seconds > 0 scheduled then (a snooze)."""
        return (f"WITH back AS (UPDATE {self.jobs} AS j SET "
                "state = CASE WHEN d.delay > 0 THEN 'scheduled' ELSE 'available' END, "
                f"attempts = GREATEST(j.attempts - 1, 0), run_at = {NOW} + GREATEST(d.delay, 0), token = NULL, "
                "lease_until = NULL FROM unnest(%s::text[], %s::text[]) AS c(id, token) "
                f"CROSS JOIN (SELECT %s::float8) AS d(delay) WHERE {FENCE} RETURNING j.queue, j.state), "
                f"ready AS (SELECT queue FROM back WHERE state = 'available') SELECT {self._notify('ready')}")

    # queue control and workflows ----------------------------------------------------------------
    @cached_property
    def pause(self) -> str:
        return f"INSERT INTO {self.paused} (queue) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING"

    @cached_property
    def resume(self) -> str:
        """Resumed queues are NOTIFYed: their available jobs are claimable again everywhere."""
        return (f"WITH gone AS (DELETE FROM {self.paused} WHERE queue = ANY(%s::text[]) RETURNING queue) "
                f"SELECT {self._notify('gone')}")

    @cached_property
    def paused_queues(self) -> str:
        return f"SELECT queue FROM {self.paused}"

    @cached_property
    def wake(self) -> str:
        """Scheduled jobs of the ids available now (a dependency finished), NOTIFYed like an
        enqueue; the count of those moved. The WHERE is rechecked on a row another transaction
        changed meanwhile, so a job claimed or cancelled in between is left alone."""
        return (f"WITH woken AS (UPDATE {self.jobs} SET state = 'available', run_at = {NOW} "
                "WHERE id = ANY(%s::text[]) AND state = 'scheduled' RETURNING queue) "
                f"SELECT (SELECT count(*) FROM woken), {self._notify('woken')}")

    @cached_property
    def get_many(self) -> str:
        return f"SELECT {', '.join(JOB_COLUMNS)} FROM {self.jobs} WHERE id = ANY(%s::text[])"

    # unique_for and debounce (one job at a time, under the key's advisory lock) ----------------
    @cached_property
    def job_exists(self) -> str:
        return f"SELECT 1 FROM {self.jobs} WHERE id = %s"

    @cached_property
    def debounce(self) -> str:
        """The key's holder, if it has not started, takes the new arguments and runs
        ``%(delay)s`` seconds from now; a running one is left alone (not returned here)."""
        return (f"UPDATE {self.jobs} SET args = %(args)s, kwargs = %(kwargs)s, meta = %(meta)s, "
                f"state = 'scheduled', run_at = {NOW} + %(delay)s "
                "WHERE unique_key = %(key)s AND state IN ('scheduled', 'available') RETURNING id")

    @cached_property
    def key_holder(self) -> str:
        """Who holds a key: an unfinished job, else (with ``%(window)s`` seconds, or NULL) the
        newest job created within the window, whatever its state."""
        # two arms, each one index probe (the partial unique index; the newest entry of the key in
        # (unique_key, created_at)), however many finished jobs the key has had
        return (f"SELECT id FROM ((SELECT id, 0 AS rank FROM {self.jobs} WHERE unique_key = %(key)s "
                f"AND state IN {ACTIVE_SQL}) UNION ALL (SELECT id, 1 FROM {self.jobs} WHERE unique_key = %(key)s "
                f"AND created_at > {NOW} - %(window)s::float8 ORDER BY created_at DESC LIMIT 1)) AS h "
                "ORDER BY rank LIMIT 1")

    # limits -----------------------------------------------------------------------------------
    @cached_property
    def lock_keys(self) -> str:
        """Transaction-scoped advisory locks on 64-bit key hashes, taken in the order given (the
        caller sorts them, so two callers never wait on each other in a cycle). A collision only
        serializes two keys; it never lets one key's holders exceed its limit."""
        return "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::int8[]) AS u(k)"

    @cached_property
    def live_holders(self) -> str:
        """Drop the lapsed holds of these keys and read the live ones (the DELETE and the SELECT
        share a snapshot: the SELECT filters what the DELETE removes)."""
        return (f"WITH lapsed AS (DELETE FROM {self.slots} WHERE key = ANY(%(keys)s::text[]) "
                f"AND expires_at <= {NOW}) SELECT key, holder FROM {self.slots} "
                f"WHERE key = ANY(%(keys)s::text[]) AND expires_at > {NOW}")

    @cached_property
    def hold(self) -> str:
        return (f"INSERT INTO {self.slots} (key, holder, expires_at) SELECT k, h, {NOW} + %s "
                "FROM unnest(%s::text[], %s::text[]) AS u(k, h) "
                "ON CONFLICT (key, holder) DO UPDATE SET expires_at = excluded.expires_at")

    @cached_property
    def unhold(self) -> str:
        return (f"DELETE FROM {self.slots} AS s USING unnest(%s::text[], %s::text[]) AS u(k, h) "
                "WHERE s.key = u.k AND s.holder = u.h")

    @cached_property
    def slot_usage(self) -> str:
        return f"SELECT key, count(*) FROM {self.slots} WHERE expires_at > {NOW} GROUP BY key"

    @cached_property
    def take_rate(self) -> str:
        """One GCRA step (``base.gcra``) as an atomic upsert: the row is locked and its newest
        version read, so concurrent takers each see the tat the previous one stored. A grant
        stores the new tat and returns it; a refusal changes nothing (the WHERE) and returns no
        row. Parameters: key, interval, interval, interval, period."""
        start = f"GREATEST(r.tat, {NOW})"
        return (f"INSERT INTO {self.rates} AS r (key, tat) VALUES (%s, {NOW} + %s) "
                f"ON CONFLICT (key) DO UPDATE SET tat = {start} + %s "
                f"WHERE {start} + %s - {NOW} <= %s + 1e-9 RETURNING tat")

    @cached_property
    def rate_wait(self) -> str:
        """After a refusal: seconds until the key's next start (interval, period)."""
        return (f"SELECT GREATEST(tat, {NOW}) + %s - %s - {NOW} FROM {self.rates} WHERE key = %s")

    @cached_property
    def purge_limits(self) -> str:
        """Rows that mean nothing any more: lapsed holds, and rate keys whose tat has passed (the
        same as no row). Rechecked per row under its lock, so a hold renewed or a rate taken in
        between stays."""
        return (f"WITH lapsed AS (DELETE FROM {self.slots} WHERE expires_at <= {NOW}) "
                f"DELETE FROM {self.rates} WHERE tat < {NOW}")

    @cached_property
    def maintain(self) -> str:
        """Promote due jobs and reap expired leases, SKIP LOCKED, so any number of workers can
        run it at once and each row moves once. A reaped job is requeued, or failed once its
        attempts are used up, or cancelled if a cancel was asked for (memory.py's rules; the
        cancelled are counted in neither ``requeued`` nor ``failed``)."""
        final = "j.cancel_requested OR j.attempts >= j.max_attempts"
        return (
            f"WITH promoted AS ({self._promote('RETURNING j.queue')}), "
            f"expired AS MATERIALIZED (SELECT id FROM {self.jobs} WHERE state = 'running' "
            f"AND lease_until <= {NOW} ORDER BY lease_until {LOCK}), "
            f"reaped AS (UPDATE {self.jobs} AS j SET state = CASE WHEN j.cancel_requested THEN 'cancelled' "
            "WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE 'available' END, "
            f"error = {LOST}, run_at = CASE WHEN {final} THEN j.run_at ELSE {NOW} END, "
            f"finished_at = CASE WHEN {final} THEN {NOW} ELSE j.finished_at END, token = NULL, "
            # no "AND j.state = 'running'": the lock taken in ``expired`` (whose scan rechecks the
            # row's latest version) keeps it so, and the term would steer the planner onto
            # scanning every running row instead of joining by primary key
            "lease_until = NULL FROM expired WHERE j.id = expired.id RETURNING j.queue, j.state), "
            "ready AS (SELECT queue FROM promoted UNION ALL "
            "SELECT queue FROM reaped WHERE state = 'available') "
            "SELECT (SELECT count(*) FROM promoted), "
            "(SELECT count(*) FROM reaped WHERE state = 'available'), "
            f"(SELECT count(*) FROM reaped WHERE state = 'failed'), {self._notify('ready')}"
        )

    @cached_property
    def fail_unknown(self) -> str:
        """Rows whose state is none of JobState's end ``failed`` with an error naming it
        (``_sql.fail_unknown_states``, in one statement), SKIP LOCKED like ``maintain``."""
        before, after = UNKNOWN_STATE_ERROR
        return (f"WITH odd AS MATERIALIZED (SELECT id FROM {self.jobs} WHERE {UNKNOWN_STATE_SQL} {LOCK}) "
                f"UPDATE {self.jobs} AS j SET state = 'failed', "
                f"error = '{before}' || quote_literal(left(j.state, {SHOWN_STATE})) || '{after}', "
                f"finished_at = {NOW}, token = NULL, lease_until = NULL FROM odd WHERE j.id = odd.id")

    def probe(self, by_queue: bool) -> str:
        """For wait(): is anything claimable now, and in how many seconds is the next job due?"""
        return self._probe_by_queue if by_queue else self._probe_any

    def _probe(self, available: str) -> str:
        # jobs of paused queues don't count: a worker with nothing else to do sleeps until a
        # NOTIFY (an enqueue, a resume) or a scheduled job's time
        return (f"SELECT EXISTS ({available}), "
                f"(SELECT min(run_at) FROM {self.jobs} WHERE state = 'scheduled') "
                "- date_part('epoch', clock_timestamp())")

    @cached_property
    def _probe_any(self) -> str:
        return self._probe(f"SELECT 1 FROM {self.jobs} WHERE state = 'available' AND {self._running_queue}")

    @cached_property
    def _probe_by_queue(self) -> str:
        # one index probe per queue that isn't paused (LATERAL ... LIMIT 1 keeps it a probe), so a
        # paused queue's backlog is never walked
        return self._probe(f"SELECT 1 FROM unnest(%s::text[]) AS n(q) CROSS JOIN LATERAL (SELECT 1 FROM "
                           f"{self.jobs} WHERE state = 'available' AND queue = n.q LIMIT 1) AS j "
                           f"WHERE n.q <> ALL (SELECT queue FROM {self.paused})")

    # queries and admin ---------------------------------------------------------------------------
    @cached_property
    def get(self) -> str:
        return f"SELECT {', '.join(JOB_COLUMNS)} FROM {self.jobs} WHERE id = %s"

    def counts(self, by_queue: bool) -> str:
        if by_queue:
            return f"SELECT queue, state, count(*) FROM {self.jobs} GROUP BY queue, state"
        return f"SELECT NULL, state, count(*) FROM {self.jobs} GROUP BY state"

    @cached_property
    def retry(self) -> str:
        """Failed/cancelled jobs (locked, so their state holds) back to available. Of several asking
        for one unique key, the first listed takes it, and none does while an unfinished job holds
        it (memory.py's rule)."""
        key = "unique_key IS NULL, COALESCE(unique_key, id)"
        return (
            "WITH req AS MATERIALIZED (SELECT id, unique_key, array_position(%(ids)s::text[], id) AS n "
            f"FROM {self.jobs} WHERE id = ANY(%(ids)s::text[]) AND state IN ('failed', 'cancelled') "
            f"FOR UPDATE), pick AS MATERIALIZED (SELECT DISTINCT ON ({key}) id, unique_key FROM req "
            f"ORDER BY {key}, n) "
            f"UPDATE {self.jobs} AS j SET state = 'available', run_at = {NOW}, finished_at = NULL, "
            "cancel_requested = false, max_attempts = GREATEST(j.max_attempts, j.attempts + 1) FROM pick "
            "WHERE j.id = pick.id AND (pick.unique_key IS NULL OR NOT EXISTS (SELECT 1 FROM "
            f"{self.jobs} AS h WHERE h.unique_key = pick.unique_key AND h.state IN {ACTIVE_SQL}))"
        )

    @cached_property
    def cancel(self) -> str:
        """Lock the rows, then cancel the waiting ones and flag the running ones; the states read
        under the lock tell the caller what happened to each."""
        waiting = "cur.state IN ('available', 'scheduled')"
        return (
            f"WITH cur AS MATERIALIZED (SELECT id, state FROM {self.jobs} WHERE id = ANY(%s) FOR UPDATE), "
            f"upd AS (UPDATE {self.jobs} AS j SET "
            f"state = CASE WHEN {waiting} THEN 'cancelled' ELSE j.state END, "
            f"finished_at = CASE WHEN {waiting} THEN {NOW} ELSE j.finished_at END, "
            f"token = CASE WHEN {waiting} THEN NULL ELSE j.token END, "
            f"lease_until = CASE WHEN {waiting} THEN NULL ELSE j.lease_until END, "
            "cancel_requested = j.cancel_requested OR cur.state = 'running' "
            f"FROM cur WHERE j.id = cur.id AND cur.state IN {ACTIVE_SQL}) "
            "SELECT id, state FROM cur"
        )

    @cached_property
    def purge(self) -> str:
        """One chunk: ids after ``%s`` in ``state``, finished before the cutoff."""
        return (f"WITH doomed AS (SELECT id FROM {self.jobs} WHERE state = %s AND id > %s "
                "AND COALESCE(finished_at, 0) < %s ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED), "
                f"gone AS (DELETE FROM {self.jobs} AS j USING doomed WHERE j.id = doomed.id RETURNING j.id) "
                "SELECT count(*), max(id) FROM gone")

    # worker registry and throughput ------------------------------------------------------------------
    @cached_property
    def register_worker(self) -> str:
        """Upsert from ``worker_params(info, now=0.0, ttl)``: last_seen and expires_at arrive as
        offsets the server adds to its clock. Expired rows are deleted on the way."""
        values = ", ".join(f"{NOW} + %s" if c == "last_seen" else "%s" for c in WORKER_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in (*WORKER_COLUMNS[1:], "expires_at"))
        return (f"WITH pruned AS (DELETE FROM {self.workers} WHERE expires_at <= {NOW}) "
                f"INSERT INTO {self.workers} ({', '.join(WORKER_COLUMNS)}, expires_at) "
                f"VALUES ({values}, {NOW} + %s) ON CONFLICT (id) DO UPDATE SET {updates}")

    @cached_property
    def remove_worker(self) -> str:
        return f"DELETE FROM {self.workers} WHERE id = %s"

    @cached_property
    def live_workers(self) -> str:
        return (f"SELECT {', '.join(WORKER_COLUMNS)} FROM {self.workers} WHERE expires_at > {NOW} "
                "ORDER BY started_at, id")

    @cached_property
    def throughput(self) -> str:
        """(bucket index, state, count) rows for base.throughput_buckets."""
        return (f"SELECT floor((finished_at - %(since)s) / %(bucket)s), state, count(*) FROM {self.jobs} "
                f"WHERE {FINISHED} AND finished_at >= %(since)s GROUP BY 1, 2")
