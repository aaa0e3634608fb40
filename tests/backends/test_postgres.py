"""PostgreSQL-only behaviour: URL options, the schema (created, versioned, re-opened, migrated
by concurrent openers), isolation between schemas, query plans on a big table, LISTEN/NOTIFY
wake-ups, claimers in several threads and a second process, enqueue inside the caller's psycopg
transaction, the synchronous_commit check, an unreachable server and one refusing connections,
rows written by hand, and NUL. Shared behaviour is tested in tests/conformance.

Each test works in its own schema on the shared server (127.0.0.1:5432, database ``test``) and
drops it afterwards."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg")
from errands import Errands
from errands._ids import new_id
from errands.backends import open_backend
from errands.backends._postgres_sql import Statements
from errands.backends.base import CancelResult, JobQuery, NewJob, Outcome, WorkerInfo
from errands.backends.postgres import PostgresBackend, parse_url
from errands.config import Settings
from errands.errors import BackendUnavailable, ConfigurationError, SerializationError
from errands.jobs import JobState
from tests.conftest import wait_until
from tests.faults._servers import free_port

SERVER = "postgresql://postgres@127.0.0.1:5432/test"
LATEST = Statements("public").migrations[-1].version


def job(queue: str = "default", **fields: Any) -> NewJob:
    values: dict[str, Any] = {"id": new_id(), "name": "noop", "queue": queue, "args": "[]", "kwargs": "{}",
                              "max_attempts": 3}
    values.update(fields)
    return NewJob(**values)


def raw(**options: Any) -> Any:
    return psycopg.connect(SERVER, autocommit=True, **options)


def make(url: str) -> PostgresBackend:
    backend = open_backend(url, Settings(url=url))
    assert isinstance(backend, PostgresBackend)
    backend.open()
    return backend


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"tpg{uuid.uuid4().hex[:10]}"
    yield name
    with raw() as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def url(schema: str) -> str:
    return f"{SERVER}?schema={schema}"


@pytest.fixture
def backend(url: str) -> Iterator[PostgresBackend]:
    instance = make(url)
    yield instance
    instance.close()


# URL ----------------------------------------------------------------------------------------------
def test_url_defaults() -> None:
    options = parse_url("postgresql://app:secret@db.example:6543/jobs")
    assert (options.schema, options.pool_max, options.pool_timeout) == ("public", 10, 3.0)
    assert options.where == "db.example:6543/jobs" and "secret" not in options.where
    params = psycopg.conninfo.conninfo_to_dict(options.conninfo)
    assert params["dbname"] == "jobs" and params["password"] == "secret"
    assert params["connect_timeout"] == "3" and params["application_name"] == "errands"


def test_url_options_are_taken_out_and_libpq_parameters_pass_verbatim() -> None:
    options = parse_url("postgres://app@db/jobs?sslmode=disable&schema=my_jobs&options=-c%20statement_timeout%3D5000"
                        "&connect_timeout=7&pool_max=3&pool_timeout=0.5")
    assert (options.schema, options.pool_max, options.pool_timeout) == ("my_jobs", 3, 0.5)
    assert options.conninfo.startswith("postgresql://")
    params = psycopg.conninfo.conninfo_to_dict(options.conninfo)
    assert params["options"] == "-c statement_timeout=5000"  # not "+" for a space, as urlencode would
    assert params["connect_timeout"] == "7" and params["sslmode"] == "disable"
    assert not {"schema", "pool_max", "pool_timeout"} & set(params)
    assert isinstance(open_backend("postgres://app@db/jobs", Settings()), PostgresBackend)


@pytest.mark.parametrize("query", [
    "schema=bad-name", "schema=1st", "schema=", f"schema={'s' * 51}", "schema=a%22b", "schema=a&schema=b",
    "pool_max=0", "pool_max=many", "pool_timeout=-1", "pool_timeout=nan",
])
def test_bad_url_options_are_refused(query: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_url(f"postgresql://app@db/jobs?{query}")


# schema -------------------------------------------------------------------------------------------
def test_schema_is_created_versioned_and_reopened(backend: PostgresBackend, url: str, schema: str) -> None:
    assert backend.schema_version == LATEST
    with raw() as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))}
        version = conn.execute(f'SELECT value FROM "{schema}".errands_meta WHERE name = %s',
                               ("schema_version",)).fetchone()
    assert tables == {"errands_jobs", "errands_meta", "errands_workers", "errands_paused", "errands_slots",
                      "errands_rates"} and version == (str(LATEST),)
    backend.enqueue([job()])
    backend.open()  # twice on one object: nothing happens
    again = make(url)  # a second opener finds the schema done and keeps the data
    try:
        assert again.schema_version == LATEST and again.counts()["available"] == 1
    finally:
        again.close()


def test_concurrent_openers_migrate_once(url: str) -> None:
    start, opened, errors = threading.Barrier(6), [], []

    def opener() -> None:
        try:
            start.wait(10)
            opened.append(make(url))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert not errors, errors
        assert [b.schema_version for b in opened] == [LATEST] * 6
    finally:
        for b in opened:
            b.close()


def test_a_newer_schema_is_refused(backend: PostgresBackend, url: str, schema: str) -> None:
    with raw() as conn:
        conn.execute(f"UPDATE \"{schema}\".errands_meta SET value = '99' WHERE name = 'schema_version'")
    with pytest.raises(ConfigurationError, match="newer"):
        make(url)


def test_two_schemas_are_isolated(backend: PostgresBackend, schema: str) -> None:
    other_schema = f"tpg{uuid.uuid4().hex[:10]}"
    other = make(f"{SERVER}?schema={other_schema}")
    try:
        mine = job(unique_key="same-key")
        assert backend.enqueue([mine])[0].created
        assert other.enqueue([job(unique_key="same-key")])[0].created  # keys are per schema
        assert other.get(mine.id) is None
        assert [c.id for c in backend.claim(None, 5, worker_id="w", lease=5)] == [mine.id]
        assert backend.claim(None, 5, worker_id="w", lease=5) == []
        assert other.counts() == {**other.counts(), "available": 1, "running": 0}
    finally:
        other.close()
        with raw() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{other_schema}" CASCADE')


# query plans --------------------------------------------------------------------------------------
def _generic_plan(conn: Any, statement: str, params: Any) -> str:
    """EXPLAIN the plan PostgreSQL keeps for a prepared statement (plan_cache_mode =
    force_generic_plan): the one a busy worker runs, planned without its parameter values."""
    order: list[Any] = []

    def number(match: re.Match[str]) -> str:
        key = match.group(1) if match.group(1) is not None else len(order)
        if key not in order:
            order.append(key)
        return f"${order.index(key) + 1}"

    text = re.sub(r"%(?:\((\w+)\))?s", number, statement)
    values = [params[key] for key in order] if isinstance(params, dict) else list(params)
    types = ", ".join(_pg_type(value) for value in values)
    conn.execute("SET plan_cache_mode = force_generic_plan")
    conn.execute(f"PREPARE errands_plan ({types}) AS {text}")
    try:
        arguments = psycopg.sql.SQL(", ").join(psycopg.sql.Literal(value) for value in values).as_string(conn)
        rows = conn.execute(f"EXPLAIN (COSTS OFF) EXECUTE errands_plan({arguments})")
        return "\n".join(r[0] for r in rows)
    finally:
        conn.execute("DEALLOCATE errands_plan")


def _pg_type(value: Any) -> str:
    if isinstance(value, list):
        return _pg_type(value[0]) + "[]"
    return {bool: "boolean", int: "bigint", float: "float8", str: "text"}[type(value)]


def test_hot_statements_use_their_indexes_with_many_finished_rows(backend: PostgresBackend, schema: str) -> None:
    backend.enqueue([job(queue=f"q{i % 3}") for i in range(300)])
    with raw() as conn:
        conn.execute(f"""INSERT INTO "{schema}".errands_jobs (id, name, queue, args, kwargs, state, max_attempts,
                         run_at, created_at, finished_at)
                         SELECT 'f' || lpad(g::text, 9, '0'), 'noop', 'q' || (g % 3), '[]', '{{}}', 'succeeded', 3,
                                1e9, 1e9, 1e9 FROM generate_series(1, 100000) AS g""")
        conn.execute(f'ANALYZE "{schema}".errands_jobs')
        sql, common = backend.sql, {"limit": 10, "lease": 30.0, "worker": "w"}
        by_index = {
            "errands_jobs_claim_any": _generic_plan(conn, sql.claim(None), common),
            "errands_jobs_claim": _generic_plan(conn, sql.claim(1), {**common, "q0": "q1"}),
            "errands_jobs_due": _generic_plan(conn, sql.promote, {"limit": 100}),
        }
        # reaping reads the running rows (few: they are bounded by the workers' concurrency) by
        # the lease index or the (state, id) one, whichever the statistics favour
        maintain = _generic_plan(conn, sql.maintain, {"limit": 100})
        by_key = [  # fenced updates look each claim up by primary key
            _generic_plan(conn, sql.extend, (30.0, ["a", "b"], ["t", "t"])),
            _generic_plan(conn, sql.settle, (["a"], ["t"], ["succeeded"], [1.0], [True], ["1"], ["e"], [True])),
        ]
    for index, plan in by_index.items():
        # the paused-queues table (a row per paused queue) may be read whole; the jobs never are
        assert f" {index} " in f"{plan} ".replace("\n", " ") and "Seq Scan on errands_jobs" not in plan, plan
    for plan in (by_index["errands_jobs_claim_any"], by_index["errands_jobs_claim"]):
        assert "Sort" not in plan, plan  # the index gives claim order; nothing reads the whole backlog
    assert "errands_jobs_due" in maintain and "Seq Scan" not in maintain, maintain
    for plan in by_key:
        assert "errands_jobs_pkey" in plan and "Seq Scan" not in plan and "errands_jobs_lease" not in plan, plan
    started = time.perf_counter()
    assert len(backend.claim(["q1"], 50, worker_id="w", lease=30)) == 50
    assert time.perf_counter() - started < 0.5


# LISTEN / NOTIFY ----------------------------------------------------------------------------------
def _listening(schema: str, minimum: int = 1) -> list[int]:
    with raw() as conn:
        pids = [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE query = %s AND datname = 'test'", (f'LISTEN "errands:{schema}"',))]
    return pids if len(pids) >= minimum else []


def _timed_wait(backend: PostgresBackend, queues: list[str] | None, timeout: float) -> tuple[threading.Thread, list[float]]:
    ended: list[float] = []

    def waiter() -> None:
        backend.wait(queues, timeout)
        ended.append(time.monotonic())

    thread = threading.Thread(target=waiter)
    thread.start()
    return thread, ended


def _idle_listener(backend: PostgresBackend, schema: str) -> None:
    """Start the listener and let it settle: it wakes every waiter once it has connected."""
    backend.wait(None, 0.01)  # starts the listener thread
    wait_until(lambda: _listening(schema), timeout=10, message="the LISTEN connection")

    def quiet() -> bool:
        started = time.monotonic()
        backend.wait(["no-such-queue"], 0.05)
        return time.monotonic() - started >= 0.045

    wait_until(quiet, timeout=10, interval=0, message="a wait no wake-up cuts short")


def test_notify_wakes_an_idle_waiter_in_another_process_within_milliseconds(backend: PostgresBackend,
                                                                            url: str, schema: str) -> None:
    producer = make(url)  # another backend object: no in-process notify() reaches the waiter
    try:
        _idle_listener(backend, schema)
        latencies = []
        for _ in range(5):
            thread, ended = _timed_wait(backend, None, 10)
            time.sleep(0.05)  # let it reach its wait: this measures a wake-up, not a probe
            enqueuing = time.monotonic()
            producer.enqueue([job()])  # the NOTIFY is sent at its commit
            thread.join(10)
            latencies.append(ended[0] - enqueuing)
            backend.claim(None, 10, worker_id="w", lease=5)
        print(f"\nfrom enqueue call to the waiter awake: {[f'{x * 1000:.1f}ms' for x in latencies]}")
        assert sorted(latencies)[2] < 0.05, latencies
    finally:
        producer.close()


def test_a_waiter_ignores_other_queues_and_wakes_for_due_jobs(backend: PostgresBackend, url: str,
                                                              schema: str) -> None:
    producer = make(url)
    try:
        _idle_listener(backend, schema)
        thread, ended = _timed_wait(backend, ["mine"], 0.6)
        started = time.monotonic()
        time.sleep(0.05)
        producer.enqueue([job(queue="theirs")])
        thread.join(5)
        assert ended[0] - started >= 0.55, "woken by a queue it doesn't serve"
        producer.enqueue([job(queue="mine", delay=0.3)])
        started = time.monotonic()
        backend.wait(["mine"], 5)
        assert 0.2 <= time.monotonic() - started < 2.0
    finally:
        producer.close()


def test_the_listener_reconnects_after_its_connection_is_killed(backend: PostgresBackend, url: str,
                                                                schema: str) -> None:
    producer = make(url)
    try:
        _idle_listener(backend, schema)
        (old,) = _listening(schema)
        with raw() as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (old,))
        wait_until(lambda: [p for p in _listening(schema) if p != old], timeout=10, message="a new LISTEN connection")
        thread, ended = _timed_wait(backend, None, 10)
        time.sleep(0.05)
        producer.enqueue([job()])
        enqueued = time.monotonic()
        thread.join(10)
        assert ended[0] - enqueued < 1.0
    finally:
        producer.close()


# concurrency --------------------------------------------------------------------------------------
CLAIMER = textwrap.dedent("""
    import json, sys
    from errands.backends import open_backend
    from errands.config import Settings
    backend = open_backend(sys.argv[1], Settings(url=sys.argv[1]))
    backend.open()
    print("ready", flush=True)
    sys.stdin.readline()
    claimed = []
    while batch := backend.claim(None, 5, worker_id="other-process", lease=60):
        claimed += [c.id for c in batch]
    print(json.dumps(claimed), flush=True)
    backend.close()
""")


def test_threads_and_another_process_never_claim_one_job_twice(backend: PostgresBackend, url: str,
                                                               src_path: str) -> None:
    total = 1000
    jobs = [job(queue=f"q{i % 2}") for i in range(total)]
    for start in range(0, total, 250):
        backend.enqueue(jobs[start:start + 250])
    process = subprocess.Popen([sys.executable, "-c", CLAIMER, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, env={"PYTHONPATH": src_path})
    assert process.stdout is not None and process.stdin is not None
    assert process.stdout.readline().strip() == "ready"
    claimed: list[list[str]] = [[] for _ in range(4)]

    def claimer(index: int, queues: list[str] | None) -> None:
        while batch := backend.claim(queues, 3, worker_id=f"t{index}", lease=60):
            claimed[index] += [c.id for c in batch]

    threads = [threading.Thread(target=claimer, args=(i, [None, ["q0"], ["q1"], ["q0", "q1"]][i])) for i in range(4)]
    process.stdin.write("go\n")
    process.stdin.flush()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    out, _ = process.communicate(timeout=60)
    every = [job_id for ids in claimed for job_id in ids] + json.loads(out)
    assert len(every) == len(set(every)), "a job was claimed twice"
    assert set(every) == {j.id for j in jobs}
    assert backend.counts()["running"] == total


def test_a_job_scheduled_elsewhere_is_claimed_once_due(backend: PostgresBackend, url: str) -> None:
    """Claims promote only once the next scheduled job is due (they learn when from the server);
    one scheduled by another process is seen at the next claim, so it is not missed."""
    assert backend.claim(None, 5, worker_id="w", lease=5) == []  # learns: nothing scheduled
    producer = make(url)
    try:
        later = job(delay=0.3)
        producer.enqueue([later])
        started = time.monotonic()
        claimed = wait_until(lambda: backend.claim(None, 5, worker_id="w", lease=5), timeout=5, interval=0.01)
        assert [c.id for c in claimed] == [later.id]
        assert 0.25 <= time.monotonic() - started < 1.0
    finally:
        producer.close()


def test_six_maintainers_move_each_job_once(backend: PostgresBackend, url: str) -> None:
    """FAULTS S15: many workers promote and reap at once (SKIP LOCKED): each expired lease is
    requeued once and each due job promoted once."""
    backend.enqueue([job() for _ in range(300)])
    assert len(backend.claim(None, 300, worker_id="gone", lease=0.001)) == 300
    with raw() as conn:  # due scheduled jobs, as a clock moving past their run_at leaves them
        conn.execute(f"""INSERT INTO {backend.sql.jobs} (id, name, queue, args, kwargs, state, max_attempts, run_at,
                         created_at) SELECT 'due' || g, 'noop', 'default', '[]', '{{}}', 'scheduled', 3, 0, 0
                         FROM generate_series(1, 300) AS g""")
    maintainers = [make(url) for _ in range(6)]
    totals: list[tuple[int, int, int]] = []
    start = threading.Barrier(6)

    def maintain(one: PostgresBackend) -> None:
        start.wait(10)
        while True:
            done = one.maintain(limit=7)
            totals.append((done.promoted, done.requeued, done.failed))
            if done == type(done)():
                return

    threads = [threading.Thread(target=maintain, args=(m,)) for m in maintainers]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for m in maintainers:
            m.close()
    assert tuple(map(sum, zip(*totals))) == (300, 300, 0)
    assert backend.counts()["available"] == 600


# transactions -------------------------------------------------------------------------------------
@pytest.fixture
def app(url: str) -> Iterator[Errands]:
    instance = Errands(url)
    instance.job(name="send")(lambda n: None)
    yield instance
    instance.close()


def test_a_job_commits_and_rolls_back_with_the_callers_own_rows(app: Errands, schema: str) -> None:
    with raw() as setup:
        app.backend.counts()  # the schema exists
        setup.execute(f'CREATE TABLE "{schema}".orders (id int)')
    conn = psycopg.connect(SERVER)  # not autocommit: psycopg opens a transaction at the first statement
    try:
        conn.execute(f'INSERT INTO "{schema}".orders VALUES (1)')  # the caller's transaction is open
        with app.transaction(conn):
            kept = app.perform("send", 1)
        assert app.get_job(kept.id) is None, "the caller commits, not errands"
        conn.commit()
        assert app.get_job(kept.id) is not None
        conn.execute(f'INSERT INTO "{schema}".orders VALUES (2)')
        with app.transaction(conn):
            dropped = app.perform("send", 2)
        conn.rollback()
        assert app.get_job(dropped.id) is None
        with raw() as check:
            assert check.execute(f'SELECT array_agg(id) FROM "{schema}".orders').fetchone() == ([1],)
    finally:
        conn.close()


def test_a_callers_row_factory_does_not_matter(app: Errands) -> None:
    conn = psycopg.connect(SERVER, row_factory=psycopg.rows.dict_row)
    try:
        with app.transaction(conn):
            handles = app.handler("send").with_options(unique_key="k").perform_many([((1,), {}), ((2,), {})])
        assert [h.created for h in handles] == [True, False] and handles[0].id == handles[1].id
    finally:
        conn.close()


def test_notify_goes_out_with_the_callers_commit(app: Errands, url: str, schema: str) -> None:
    consumer = make(url)
    conn = psycopg.connect(SERVER)
    try:
        _idle_listener(consumer, schema)
        thread, ended = _timed_wait(consumer, None, 10)
        time.sleep(0.05)
        conn.execute("SELECT 1")
        app.backend.enqueue([job()], connection=conn)
        time.sleep(0.3)
        assert not ended, "woken before the caller committed"
        conn.commit()
        committed = time.monotonic()
        thread.join(10)
        assert ended and ended[0] - committed < 1.0
    finally:
        conn.close()
        consumer.close()


def test_transaction_through_a_foreign_connection_is_refused(app: Errands) -> None:
    with pytest.raises(ConfigurationError, match="psycopg.Connection"), app.transaction(sqlite3.connect(":memory:")):
        app.perform("send", 1)
    elsewhere = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres")  # another database
    try:
        with pytest.raises(ConfigurationError, match="database of the URL"), app.transaction(elsewhere):
            app.perform("send", 1)
    finally:
        elsewhere.close()


# server checks and outages ------------------------------------------------------------------------
def test_open_warns_when_synchronous_commit_is_off(url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="errands.postgres"):
        make(url).close()
        assert "synchronous_commit" not in caplog.text
        # off for this backend's own sessions only (a libpq option), never for the shared server
        make(url + "&options=-c%20synchronous_commit%3Doff").close()
    assert "synchronous_commit=off" in caplog.text


def test_an_unreachable_server_is_backend_unavailable_within_seconds(caplog: pytest.LogCaptureFixture) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test?schema=nowhere&pool_timeout=0.5"
    with caplog.at_level(logging.WARNING, logger="errands.postgres"):
        backend = make(url)  # a worker may start before its database: open() warns, doesn't raise
    try:
        assert "not reachable yet" in caplog.text
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1:\d+/test is unreachable.*refused"):
            backend.enqueue([job()])
        assert time.monotonic() - started < 4.0
        backend.wait(None, 0.2)  # never raises: the claim is what reports the outage
    finally:
        backend.close()


def test_a_server_refusing_connections_names_the_cause(schema: str) -> None:
    role = f"errands_limited_{uuid.uuid4().hex[:8]}"
    with raw() as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
    try:
        backend = make(f"postgresql://{role}@127.0.0.1:5432/test?schema={schema}&pool_timeout=0.5")
        try:
            with pytest.raises(BackendUnavailable, match="too many connections"):
                backend.counts()
        finally:
            backend.close()
    finally:
        with raw() as conn:
            conn.execute(f"DROP ROLE {role}")


def test_a_dropped_connection_is_replaced_without_an_error(backend: PostgresBackend) -> None:
    backend.enqueue([job()])
    with raw() as conn:  # kill the pool's idle connection(s), as a server-side timeout would
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'errands' "
                     "AND datname = 'test' AND query NOT LIKE 'LISTEN%%' AND pid <> pg_backend_pid()")
    assert backend.counts()["available"] == 1


# worker registry and throughput -----------------------------------------------------------------
def test_worker_registry_uses_the_servers_clock(backend: PostgresBackend) -> None:
    info = WorkerInfo(id="w1", host="h", pid=42, queues=("a", "b"), concurrency=8, started_at=1.0,
                      last_seen=12345.0, running=("j1",), processed=7)
    before = backend.now()
    backend.register_worker(info, ttl=0.3)
    backend.register_worker(replace(info, id="w2", started_at=2.0), ttl=30)
    (first, second) = backend.workers()
    assert (first.id, first.queues, first.running, first.processed) == ("w1", ("a", "b"), ("j1",), 7)
    assert before <= first.last_seen <= backend.now() and second.id == "w2"
    wait_until(lambda: [w.id for w in backend.workers()] == ["w2"], timeout=5, message="w1 to expire")
    backend.register_worker(replace(info, processed=8), ttl=30)  # upsert, and the expired row is pruned
    assert [(w.id, w.processed) for w in backend.workers()] == [("w1", 8), ("w2", 7)]  # by started_at
    backend.remove_worker("w1")
    backend.remove_worker("nobody")
    assert [w.id for w in backend.workers()] == ["w2"]


def test_throughput_counts_finished_jobs_by_the_servers_clock(backend: PostgresBackend) -> None:
    backend.enqueue([job() for _ in range(5)])
    claims = backend.claim(None, 5, worker_id="w", lease=30)
    states = [JobState.SUCCEEDED] * 3 + [JobState.FAILED, JobState.CANCELLED]
    backend.settle([Outcome(c.id, c.token, state, result="1") for c, state in zip(claims, states)])
    now = backend.now()
    buckets = backend.throughput(now - 90, 60)
    assert [(s, f) for _, s, f in buckets] == [(0, 0), (3, 1)]
    assert buckets[0][0] == now - 90


# rows written by hand, NUL ------------------------------------------------------------------------
def test_rows_written_by_hand_never_break_a_claim(backend: PostgresBackend, schema: str) -> None:
    good = job()
    backend.enqueue([good])
    with raw() as conn:
        insert = (f'INSERT INTO "{schema}".errands_jobs (id, name, queue, args, kwargs, state, attempts, max_attempts, '
                  "priority, run_at, created_at) VALUES (%s, %s, 'default', %s, %s, %s, %s, %s, 0, 0, 0)")
        conn.execute(insert, ("a-bad-json", "noop", "not json", "[1]", "available", -1, 0))
        conn.execute(insert, ("a-zombie", "noop", "[]", "{}", "zombie", 0, 3))
        conn.execute(insert, ("a-no-name", "", "{", "}", "available", 0, 1))
        with pytest.raises(psycopg.errors.CheckViolation):  # a token only while running
            conn.execute(f"UPDATE \"{schema}\".errands_jobs SET token = 'x' WHERE id = 'a-zombie'")
    claims = {c.id: c for c in backend.claim(None, 10, worker_id="w", lease=5)}
    assert set(claims) == {good.id, "a-bad-json", "a-no-name"}
    assert (claims["a-bad-json"].args, claims["a-bad-json"].attempts) == ("not json", 0)
    assert backend.get("a-zombie").state == "zombie"  # type: ignore[union-attr]
    assert len(backend.list(JobQuery(limit=10))) == 4


def test_nul_is_refused_in_keys_and_escaped_in_errors(backend: PostgresBackend) -> None:
    with pytest.raises(SerializationError, match="NUL"):
        backend.enqueue([job(unique_key="a\x00b")])
    backend.enqueue([job()])
    (claim,) = backend.claim(None, 1, worker_id="w", lease=5)
    assert backend.settle([Outcome(claim.id, claim.token, JobState.FAILED, error="boom\x00here")]) == []
    assert backend.get(claim.id).error == "boom\\x00here"  # type: ignore[union-attr]
    assert backend.get("a\x00") is None
    assert backend.cancel(["a\x00"]) == {"a\x00": CancelResult.NOT_FOUND}
    assert backend.list(JobQuery(name="x\x00")) == [] and backend.retry(["a\x00"]) == 0
    assert backend.claim(["q\x00"], 5, worker_id="w", lease=5) == []


AWKWARD = ['a"b', "back\\slash", "\\\"", "{x,y}", "NULL", "null", " padded ", "", "ünï ☃ 𝄞", "a'b", "tab\there",
           "line\nbreak"]


def test_batches_carry_awkward_text_and_numbers_exactly(backend: PostgresBackend) -> None:
    # batch statements take their arrays as literals errands builds (_postgres_arrays.py): every
    # character a literal treats specially must come back as it was sent
    jobs = [job(f"q{i}", id=f"id-{i}-{text}", name=text or "n", args=json.dumps([text]), kwargs=json.dumps({text: i}),
                meta=json.dumps({"m": text}), unique_key=text or None, priority=-i, timeout=[None, 2, 0.5][i % 3],
                run_at=[None, 1e12 + 0.25][i % 2])
            for i, text in enumerate(AWKWARD)]
    assert [e.created for e in backend.enqueue(jobs)] == [True] * len(jobs)
    stored = {r.id: r for r in backend.get_many([j.id for j in jobs])}
    for new in jobs:
        record = stored[new.id]
        assert (record.name, record.queue, record.args, record.kwargs, record.meta, record.unique_key, record.priority,
                record.timeout) == (new.name, new.queue, new.args, new.kwargs, new.meta, new.unique_key, new.priority,
                                    new.timeout)
        assert record.state == ("scheduled" if new.run_at else "available")
    claims = backend.claim(None, 100, worker_id="w", lease=30)
    assert len(claims) == len([j for j in jobs if not j.run_at])
    outcomes = [Outcome(c.id, c.token, JobState.SUCCEEDED, result=json.dumps(AWKWARD[k % len(AWKWARD)]))
                if k % 2 else Outcome(c.id, c.token, JobState.FAILED, error=AWKWARD[k % len(AWKWARD)])
                for k, c in enumerate(claims)]
    assert backend.settle(outcomes) == []
    for outcome in outcomes:
        record = backend.get(outcome.id)
        assert record is not None and (record.state, record.result, record.error) == (
            outcome.state.value, outcome.result, outcome.error)


def test_a_batch_meeting_an_existing_id_inserts_the_rest(backend: PostgresBackend) -> None:
    # a batch without unique keys goes first as a plain INSERT (enqueue_fresh), which an existing
    # id fails whole: it is sent again skipping that id, and nothing is inserted twice
    old = job(args="[1]")
    backend.enqueue([old])
    batch = [job(), replace(old, args="[2]"), job()]
    assert [(e.id, e.created) for e in backend.enqueue(batch)] == [(j.id, j is not batch[1]) for j in batch]
    assert backend.get(old.id).args == "[1]"  # type: ignore[union-attr]
    assert backend.counts()["available"] == 3
    assert [e.created for e in backend.enqueue(batch)] == [False, False, False]


def test_migrate_command_reports_the_schema_version(url: str, src_path: str) -> None:
    result = subprocess.run([sys.executable, "-m", "errands", "migrate", "--url", url], capture_output=True,
                            text=True, timeout=60, env={"PYTHONPATH": src_path, "COLUMNS": "200"}, check=False)
    assert result.returncode == 0, result.stderr
    assert f"version {LATEST}" in result.stdout


# paused queues and limits (#9) ------------------------------------------------------------------------
def test_an_idle_worker_sleeps_while_only_paused_work_exists_and_a_resume_elsewhere_wakes_it(
        backend: PostgresBackend, url: str) -> None:
    backend.enqueue([job("mail")])
    backend.set_paused(["mail"], True)
    backend.wait(None, 2.0)  # starts the LISTEN thread, whose (re)connect wakes every waiter once
    for queues in (None, ["mail"]):
        started = time.monotonic()
        backend.wait(queues, 0.4)
        assert time.monotonic() - started >= 0.35, f"wait({queues}) returned early: the paused job counted"
    other = make(url)  # another process's resume reaches this one by NOTIFY, not by polling
    woke: list[float] = []
    waiter = threading.Thread(target=lambda: (backend.wait(["mail"], 10), woke.append(time.monotonic())))
    try:
        waiter.start()
        time.sleep(0.3)  # let the waiter probe and block (it must not see the job yet)
        assert not woke
        resumed = time.monotonic()
        other.set_paused(["mail"], False)
        waiter.join(10)
        assert woke and woke[0] - resumed < 2.0
    finally:
        other.close()


def test_lapsed_slots_and_spent_rates_are_swept(backend: PostgresBackend, schema: str) -> None:
    from errands.backends.base import SlotRequest

    assert backend.acquire_slots([SlotRequest(f"k{i}", "h", 1) for i in range(5)], ttl=0.05) == [True] * 5
    taken_at = backend.now()
    assert backend.take_rate("r", 100, 0.1) == 0.0  # its tat: now + 1 ms
    wait_until(lambda: backend.slot_usage() == {} and backend.now() > taken_at + 0.01 or None, timeout=5,
               message="the holds to lapse and the rate's tat to pass")
    backend._limits_swept = -float("inf")  # the sweep is due (it runs every 30 s per process)
    assert backend.acquire_slots([SlotRequest("live", "h", 1)], ttl=30) == [True]
    with raw() as conn:
        slots = conn.execute(f'SELECT key FROM "{schema}".errands_slots').fetchall()
        rates = conn.execute(f'SELECT key FROM "{schema}".errands_rates').fetchall()
    assert slots == [("live",)] and rates == []


def test_debounce_and_unique_for_through_a_caller_connection_follow_its_transaction(backend: PostgresBackend) -> None:
    backend.enqueue([job(id="holder", unique_key="k", debounce=60.0, args="[1]")])
    before = backend.get("holder")
    batch = [job(id="plain"), job(id="pushed", unique_key="k", debounce=120.0, args="[2]"),
             job(id="thrown", unique_key="t", unique_for=60.0)]
    with raw() as conn:
        conn.autocommit = False
        assert [(e.id, e.created) for e in backend.enqueue(batch, connection=conn)] == [
            ("plain", True), ("holder", False), ("thrown", True)]
        conn.rollback()
        assert backend.get("holder") == before and backend.get("plain") is None and backend.get("thrown") is None
        backend.enqueue(batch, connection=conn)
        conn.commit()
    holder = backend.get("holder")
    assert holder is not None and holder.args == "[2]" and holder.run_at is not None
    assert before is not None and before.run_at is not None and holder.run_at > before.run_at + 50
    assert [(e.id, e.created) for e in backend.enqueue([job(id="again", unique_key="t", unique_for=60.0)])] == [
        ("thrown", False)]
