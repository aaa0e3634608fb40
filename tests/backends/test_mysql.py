"""MySQL/MariaDB-only behaviour, on the shared server (127.0.0.1:3306, database ``test``), each
test under its own ``table_prefix``: URL options, schema versioning, isolation between prefixes,
query plans, byte-exact keys, rows written by hand, threads and a second process claiming at
once, transactional enqueue through a caller's PyMySQL connection, wait(), the server clock and
the worker registry. The behaviour every backend shares is tested in tests/conformance; server
restarts and exhaustion in tests/faults/test_mysql_restart.py."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

pymysql = pytest.importorskip("pymysql")

from errands import Errands
from errands.backends import _mysql_sql as q
from errands.backends import backend_class
from errands.backends import mysql as mysql_module
from errands.backends.base import JobQuery, NewJob, Outcome, WorkerInfo
from errands.backends.mysql import MysqlBackend
from errands.config import Settings
from errands.errors import BackendUnavailable, ConfigurationError
from errands.jobs import JobState
from tests.conftest import wait_until

SERVER = "mysql://root@127.0.0.1:3306/test"


def job(job_id: str | None = None, **fields: Any) -> NewJob:
    values: dict[str, Any] = {"name": "noop", "queue": "default", "args": "[]", "kwargs": "{}", "max_attempts": 3}
    values.update(fields)
    return NewJob(id=job_id or uuid.uuid4().hex, **values)


def raw(**options: Any) -> Any:
    """A plain PyMySQL connection to the test database (autocommit unless told otherwise)."""
    options.setdefault("autocommit", True)
    return pymysql.connect(host="127.0.0.1", port=3306, user="root", database="test", **options)


def drop(prefix: str) -> None:
    conn = raw()
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION lock_wait_timeout = 10")
            cur.execute("DROP TABLE IF EXISTS " + ", ".join(f"`{prefix}{name.removeprefix('errands_')}`"
                                                            for name in q.TABLES))
    finally:
        conn.close()


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"m{uuid.uuid4().hex[:8]}_"
    yield name
    drop(name)


@pytest.fixture
def url(prefix: str) -> str:
    return f"{SERVER}?table_prefix={prefix}"


@pytest.fixture
def backend(url: str) -> Iterator[MysqlBackend]:
    instance = MysqlBackend(url, Settings())
    instance.open()
    yield instance
    instance.close()


def sql(prefix: str, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run one statement through a raw connection, with the prefix's table names."""
    conn = raw()
    try:
        cursor = q.Cursor(conn.cursor(), prefix)
        cursor.execute(statement, params)
        return cursor.fetchall()
    finally:
        conn.close()


# URL ------------------------------------------------------------------------------------------------


def test_url_defaults_and_options() -> None:
    plain = q.parse_url("mysql://root@127.0.0.1/test")
    assert (plain.host, plain.port, plain.user, plain.database, plain.table_prefix) == (
        "127.0.0.1", 3306, "root", "test", "errands_")
    full = q.parse_url("mariadb://app:p%40ss@db.local:3307/jobs?table_prefix=tenant_7_&connect_timeout=2"
                       "&read_timeout=60&lock_timeout=3&unix_socket=/run/mysqld/mysqld.sock")
    assert (full.user, full.password, full.host, full.port, full.database) == ("app", "p@ss", "db.local", 3307, "jobs")
    assert (full.table_prefix, full.connect_timeout, full.read_timeout, full.lock_timeout) == ("tenant_7_", 2, 60, 3)
    assert full.unix_socket == "/run/mysqld/mysqld.sock"
    assert backend_class("mariadb://root@127.0.0.1:3306/test") is MysqlBackend  # (builds nothing)


@pytest.mark.parametrize("bad", [
    "mysql://root@127.0.0.1:3306/", "mysql://root@127.0.0.1:3306/a/b", "mysql://root@127.0.0.1:99999/test",
    "mysql://root@h/test?table_prefix=", "mysql://root@h/test?table_prefix=x-y", "mysql://root@h/test?table_prefix=1x",
    "mysql://root@h/test?table_prefix=" + "x" * 41, "mysql://root@h/test?colour=red",
    "mysql://root@h/test?connect_timeout=0", "mysql://root@h/test?read_timeout=nan",
    "mysql://root@h/test?lock_timeout=abc", "mysql://root@h/test?table_prefix=a_&table_prefix=b_",
])
def test_bad_urls_are_configuration_errors(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        MysqlBackend(bad, Settings())


def test_unreachable_server_is_backend_unavailable_quickly() -> None:
    backend = MysqlBackend("mysql://root@127.0.0.1:1/test?connect_timeout=2", Settings())
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="cannot reach the server"):
        backend.enqueue([job()])
    assert time.monotonic() - started < 3


def test_table_prefix_renames_every_table_in_statement_text_only() -> None:
    class Recorder:
        executed: ClassVar[list[tuple[str, Any]]] = []

        def execute(self, sql: str, params: Any) -> int:
            self.executed.append((sql, params))
            return 0

    statement = f"SELECT * FROM {q.TABLE} JOIN {q.META_TABLE} JOIN errands_workers WHERE name = %s"
    q.Cursor(Recorder(), "errands_").execute(statement, ("errands_jobs",))
    q.Cursor(Recorder(), "t1_").execute(statement, ("errands_jobs",))
    (default, renamed) = Recorder.executed
    assert default == (statement, ("errands_jobs",))
    assert renamed == ("SELECT * FROM t1_jobs JOIN t1_meta JOIN t1_workers WHERE name = %s", ("errands_jobs",))
    # every table, each renamed once: a prefix that spells another table's name is not renamed again
    everything = " ".join(q.TABLES)
    q.Cursor(Recorder(), "errands_meta_").execute(everything, ())
    assert Recorder.executed[-1][0] == ("errands_meta_jobs errands_meta_meta errands_meta_workers errands_meta_paused "
                                        "errands_meta_slots errands_meta_slot_keys errands_meta_rates")


# schema ---------------------------------------------------------------------------------------------


def test_schema_version_is_recorded_and_reopening_is_idempotent(backend: MysqlBackend, url: str, prefix: str) -> None:
    latest = q.MIGRATIONS[-1].version
    assert sql(prefix, f"SELECT value FROM {q.META_TABLE} WHERE name = 'schema_version'") == [(str(latest),)]
    backend.enqueue([job("kept")])
    again = MysqlBackend(url, Settings())
    again.open()
    again.open()  # twice on one object: nothing happens
    try:
        assert again.get("kept") is not None
    finally:
        again.close()
    tables = sql(prefix, "SELECT TABLE_NAME, ENGINE, TABLE_COLLATION FROM information_schema.TABLES "
                         "WHERE TABLE_SCHEMA = 'test' AND TABLE_NAME LIKE %s ORDER BY 1", (prefix + "%",))
    assert sorted((t, e) for t, e, _ in tables) == sorted((prefix + name.removeprefix("errands_"), "InnoDB")
                                                          for name in q.TABLES)
    assert all(collation.startswith("utf8mb4") for _, _, collation in tables)


def test_a_newer_schema_is_refused(backend: MysqlBackend, url: str, prefix: str) -> None:
    sql(prefix, f"UPDATE {q.META_TABLE} SET value = '999' WHERE name = 'schema_version'")
    newer = MysqlBackend(url, Settings())
    with pytest.raises(ConfigurationError, match="newer"):
        newer.open()
    newer.close()


def test_concurrent_first_opens_create_the_schema_once(url: str, prefix: str) -> None:
    backends = [MysqlBackend(url, Settings()) for _ in range(6)]
    start, errors = threading.Barrier(len(backends)), []

    def open_one(backend: MysqlBackend) -> None:
        try:
            start.wait(10)
            backend.open()
            backend.enqueue([job()])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(b,)) for b in backends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == []
        assert backends[0].counts()["available"] == len(backends)
    finally:
        for backend in backends:
            backend.close()


def test_prefixes_isolate_apps_on_one_database(backend: MysqlBackend, prefix: str) -> None:
    other_prefix = f"m{uuid.uuid4().hex[:8]}_"
    other = MysqlBackend(f"{SERVER}?table_prefix={other_prefix}", Settings())
    try:
        backend.enqueue([job("mine", unique_key="k")])
        assert [(e.id, e.created) for e in other.enqueue([job("theirs", unique_key="k")])] == [("theirs", True)]
        assert backend.get("theirs") is None and other.get("mine") is None
        assert [c.id for c in other.claim(None, 10, worker_id="w", lease=5)] == ["theirs"]
        assert backend.counts()["available"] == 1 and other.counts()["running"] == 1
    finally:
        other.close()
        drop(other_prefix)


# query plans -------------------------------------------------------------------------------------------


def _explain(prefix: str, statement: str, params: tuple[Any, ...]) -> tuple[list[dict[str, Any]], int]:
    """The plan of ``statement`` and how many index entries running it actually read (the
    session's Handler_read_* counters before and after; planner row estimates are too rough)."""
    conn = raw(autocommit=False)
    try:
        cursor = conn.cursor(pymysql.cursors.DictCursor)
        text = q.Cursor(cursor, prefix)._sql(statement)
        cursor.execute("EXPLAIN " + text, params)
        # reads of the jobs table only: not a derived table or a UNION's merge (a few rows)
        plan = [row for row in cursor.fetchall() if row["table"] is not None and not row["table"].startswith("<")]

        def reads() -> int:
            cursor.execute("SHOW SESSION STATUS LIKE 'Handler_read%%'")
            return sum(int(row["Value"]) for row in cursor.fetchall())

        before = reads()
        cursor.execute(text, params)
        cursor.fetchall()
        read = reads() - before
        conn.rollback()
        return plan, read
    finally:
        conn.close()


def test_hot_paths_use_their_indexes_with_many_finished_rows(backend: MysqlBackend, prefix: str) -> None:
    finished = [job(f"done{i:06d}") for i in range(3000)]
    backend.enqueue(finished)
    claims = backend.claim(None, 3000, worker_id="w", lease=60)
    backend.settle([Outcome(c.id, c.token, JobState.SUCCEEDED) for c in claims])
    backend.enqueue([job(queue=q_) for q_ in ("a", "b", "a")] + [job(delay=3600 + i) for i in range(200)])
    now = backend.now()
    plans: dict[str, tuple[str, tuple[Any, ...], str | set[str]]] = {
        # claims read their window from a claim index and lock through the primary key
        # (and due scheduled jobs from the deadline index)
        "claim any": (q.pick_sql(None), (20, now, 20, 20, now, 5), {"claim_any", "deadline", "PRIMARY"}),
        "claim one": (q.pick_sql(1), ("a", "a", 20, now, 100, "a", 20, now, 5), {"claim_queue", "deadline", "PRIMARY"}),
        "claim two": (q.pick_sql(2), ("a", "a", 20, "b", "b", 20, now, 100, "a", "b", 20, now, 5),
                      {"claim_queue", "deadline", "PRIMARY"}),
        "expired": (q.EXPIRED, (now, 100), "deadline"),
        # (and the next due job, of a queue not paused, from the deadline index)
        "probe": (q.probe_sql(2), ("a", "a", "b", "b"), {"claim_queue", "deadline", "PRIMARY"}),
        "purge": (q.PURGE_PICK, ("succeeded", "", now, 100), "state_id"),
        "throughput": (q.THROUGHPUT, (now - 60, 60, now - 60), "finished"),
    }
    for what, (statement, params, index) in plans.items():
        plan, read = _explain(prefix, statement, params)
        indexes = index if isinstance(index, set) else {index}
        assert plan and {row["key"] for row in plan} == indexes, (what, plan)
        # A locking read that sorted would lock every row it sorts: claims and reaps never do.
        if what not in ("probe", "throughput"):
            assert not any("filesort" in (row["Extra"] or "") for row in plan), (what, plan)
        if what.startswith("claim"):
            # (the paused table is looked up by its primary key too, outside the locking read)
            locking = [row for row in plan if row["key"] == "PRIMARY" and row["table"] == "job"]
            assert [row["type"] for row in locking] == ["eq_ref"], (what, plan)
        if what not in ("purge", "throughput"):  # those read finished rows by design
            assert read < 50, (what, read)  # index probes, not a walk over the 3000 finished rows


# data --------------------------------------------------------------------------------------------------


def test_keys_and_names_compare_byte_for_byte(backend: MysqlBackend) -> None:
    # PAD SPACE or case-insensitive collations would make each pair one key; VARBINARY keeps two.
    pairs = [("k", "k "), ("Key", "key"), ("ÄÖÜ", "AOU"), ("a", "a\x00")]
    for left, right in pairs:
        first, second = job(unique_key=left, queue=left), job(unique_key=right, queue=right)
        assert [e.created for e in backend.enqueue([first, second])] == [True, True], (left, right)
        assert [c.id for c in backend.claim([right], 5, worker_id="w", lease=5)] == [second.id]
    record = backend.get(second.id)
    assert record is not None and record.queue == "a\x00" and record.unique_key == "a\x00"


def test_rows_written_by_hand_never_break_reads_or_claims(backend: MysqlBackend, prefix: str) -> None:
    columns = "id, name, queue, args, kwargs, state, attempts, max_attempts, priority, run_at, created_at"
    statement = f"INSERT INTO {q.TABLE} ({columns}) VALUES (%s, %s, 'default', '[]', '{{}}', %s, %s, 3, 0, 1, 1)"
    sql(prefix, statement, (b"bad-name", b"\xff\xfe", "available", 0))
    sql(prefix, statement, (b"zombie", b"noop", "zombie", -1))
    good = job()
    backend.enqueue([good])
    assert backend.get("zombie").state == "zombie"  # type: ignore[union-attr]
    assert backend.get("bad-name").name == "\ufffd\ufffd"  # type: ignore[union-attr]
    assert {r.id for r in backend.list(JobQuery(limit=10))} == {"bad-name", "zombie", good.id}
    assert sorted(c.id for c in backend.claim(None, 10, worker_id="w", lease=5)) == sorted(["bad-name", good.id])
    assert backend.counts()["available"] == 0, "an unknown state is counted nowhere and never claimed"


def test_purge_walks_in_chunks(backend: MysqlBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mysql_module, "_PURGE_CHUNK", 7)
    backend.enqueue([job() for _ in range(30)])
    claims = backend.claim(None, 30, worker_id="w", lease=60)
    backend.settle([Outcome(c.id, c.token, JobState.SUCCEEDED if i % 3 else JobState.FAILED, error="e")
                    for i, c in enumerate(claims)])
    assert backend.purge(JobState.SUCCEEDED, backend.now() + 1) == 20
    assert backend.counts()["failed"] == 10 and backend.counts()["succeeded"] == 0


def test_settle_batches_distinct_outcomes_and_fences_replays(backend: MysqlBackend) -> None:
    backend.enqueue([job() for _ in range(50)])
    claims = backend.claim(None, 50, worker_id="w", lease=60)
    outcomes = [Outcome(c.id, c.token, JobState.SUCCEEDED, result="null") for c in claims[:40]]
    outcomes += [Outcome(c.id, c.token, JobState.SCHEDULED, error=f"boom {i}", retry_in=60)
                 for i, c in enumerate(claims[40:])]
    outcomes.append(outcomes[0])  # a replay inside the batch is applied once
    assert backend.settle(outcomes) == [claims[0].id]
    counts = backend.counts()
    assert (counts["succeeded"], counts["scheduled"]) == (40, 10)
    assert backend.get(claims[45].id).error == "boom 5"  # type: ignore[union-attr]


# concurrency -------------------------------------------------------------------------------------------

_CLAIMER = r"""
import json, sys, time
from errands.backends.base import NewJob, Outcome
from errands.backends.mysql import MysqlBackend
from errands.config import Settings
from errands.jobs import JobState
url, name, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
backend = MysqlBackend(url, Settings())
seen, deadline = [], time.monotonic() + 90
for start in range(0, 300, 20):  # this process produces too
    backend.enqueue([NewJob(id=f"{name}-{i:05d}", name="noop", queue="other", args="[]", kwargs="{}",
                            max_attempts=3) for i in range(start, start + 20)])
while time.monotonic() < deadline:
    claims = backend.claim(["default", "other"], 7, worker_id=name, lease=60)
    if claims:
        seen += [c.id for c in claims]
        backend.extend(claims, 60)
        backend.settle([Outcome(c.id, c.token, JobState.SUCCEEDED) for c in claims])
    elif backend.counts()["succeeded"] >= total:
        break
    else:
        backend.wait(["default", "other"], 0.05)
backend.close()
print(json.dumps(seen))
"""


@pytest.mark.slow
def test_threads_and_another_process_never_claim_twice_or_see_deadlocks(
    backend: MysqlBackend, url: str, src_path: str,
) -> None:
    """Eight threads here and a second process (claiming, heartbeating, settling, enqueuing,
    maintaining) at once: every job claimed exactly once, no error (a deadlock or lock wait is
    retried inside the backend, never raised to the caller)."""
    mine, theirs = 1500, 300
    total = mine + theirs
    process = subprocess.Popen([sys.executable, "-c", _CLAIMER, url, "proc", str(total)],
                               env={**os.environ, "PYTHONPATH": src_path}, stdout=subprocess.PIPE, text=True)
    claimed: list[str] = []
    errors: list[Exception] = []
    lock = threading.Lock()

    def produce() -> None:
        for start in range(0, mine, 25):  # every fifth job keyed: the unique index is written too
            backend.enqueue([job(f"main-{i:05d}", unique_key=f"u{i}" if i % 5 == 0 else None)
                             for i in range(start, start + 25)])

    def consume(name: str) -> None:
        while backend.counts()["succeeded"] < total:
            claims = backend.claim(None, random.randint(1, 10), worker_id=name, lease=60)
            if claims:
                backend.extend(claims, 60)
                backend.maintain()
                backend.settle([Outcome(c.id, c.token, JobState.SUCCEEDED) for c in claims])
                with lock:
                    claimed.extend(c.id for c in claims)
            else:
                backend.wait(None, 0.05)

    def guarded(target: Any, *args: Any) -> None:
        try:
            target(*args)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(produce,))] + [threading.Thread(target=guarded, args=(consume, f"w{i}")) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0
    assert errors == [], errors
    seen = claimed + json.loads(out)
    duplicates = [i for i, n in Counter(seen).items() if n > 1]
    assert duplicates == [] and len(seen) == total
    assert backend.counts()["succeeded"] == total


def test_a_deadlock_is_retried_whole_and_never_reaches_the_caller(backend: MysqlBackend,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    backend.enqueue([job("only")])
    real, failures = q.Cursor.execute, []

    def deadlock_once(self: q.Cursor, sql: str, parameters: Any = ()) -> int:
        if sql.startswith(f"UPDATE {q.TABLE} SET state = 'running'") and not failures:
            failures.append(sql)
            raise pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock")
        return real(self, sql, parameters)

    monkeypatch.setattr(q.Cursor, "execute", deadlock_once)
    (claim,) = backend.claim(None, 5, worker_id="w", lease=30)
    assert failures and claim.id == "only" and claim.attempts == 1  # the first try was rolled back


def test_a_lock_held_past_lock_timeout_is_backend_unavailable(url: str) -> None:
    backend = MysqlBackend(url + "&lock_timeout=0.5", Settings())
    try:
        backend.enqueue([job("held")])
        (claim,) = backend.claim(None, 1, worker_id="w", lease=30)
        other = raw(autocommit=False)
        try:
            with other.cursor() as cur:  # another session keeps the row locked
                cur.execute(q.Cursor(cur, url.split("=")[-1])._sql(f"SELECT id FROM {q.TABLE} WHERE id = 'held' FOR UPDATE"))
            started = time.monotonic()
            with pytest.raises(BackendUnavailable, match="(?i)lock waits went on.*lock wait timeout"):
                backend.extend([claim], 30)
            assert time.monotonic() - started < 10
        finally:
            other.rollback()
            other.close()
        assert backend.extend([claim], 30).lost == frozenset()  # and it works once the lock is gone
    finally:
        backend.close()


# transactional enqueue --------------------------------------------------------------------------------


@pytest.fixture
def app(url: str) -> Iterator[Errands]:
    instance = Errands(url)

    @instance.job()
    def send(n: int) -> None: ...

    yield instance
    instance.close()


def test_transaction_commit_and_rollback_with_a_pymysql_connection(app: Errands) -> None:
    conn = raw(autocommit=False)
    try:
        with app.transaction(conn):
            kept = app.perform("send", 1)
            assert app.get_job(kept.id) is None, "invisible until the caller commits"
        assert app.get_job(kept.id) is not None
        with pytest.raises(RuntimeError), app.transaction(conn):
            dropped = app.perform("send", 2)
            raise RuntimeError("roll back")
        assert app.get_job(dropped.id) is None
    finally:
        conn.close()


def test_enqueue_through_a_caller_connection_joins_and_leaves_its_transaction(backend: MysqlBackend,
                                                                              prefix: str) -> None:
    conn = raw(autocommit=False, cursorclass=pymysql.cursors.DictCursor)  # the caller's cursor class is theirs
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        first = job()
        assert [e.created for e in backend.enqueue([first, first], connection=conn)] == [True, False]
        keyed = backend.enqueue([job(unique_key="held"), job(unique_key="held")], connection=conn)
        assert [e.created for e in keyed] == [True, False] and keyed[1].id == keyed[0].id
        assert backend.get(first.id) is None
        conn.rollback()
        assert backend.get(first.id) is None and sum(backend.counts().values()) == 0
    finally:
        conn.close()


def test_enqueue_through_an_autocommit_connection(backend: MysqlBackend) -> None:
    conn = raw(autocommit=True)
    try:
        alone = job()
        backend.enqueue([alone], connection=conn)  # no transaction open: the batch commits by itself
        assert backend.get(alone.id) is not None
        conn.begin()  # an explicit transaction on an autocommit connection is joined
        joined = job()
        backend.enqueue([joined], connection=conn)
        assert backend.get(joined.id) is None
        conn.commit()
        assert backend.get(joined.id) is not None
    finally:
        conn.close()


def test_enqueue_through_a_wrong_connection_is_refused(backend: MysqlBackend) -> None:
    with pytest.raises(ConfigurationError, match="PyMySQL"):
        backend.enqueue([job()], connection=object())
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", database="mysql")
    try:
        with pytest.raises(ConfigurationError, match="not to this backend's database"):
            backend.enqueue([job()], connection=conn)
    finally:
        conn.close()


# wait, clock, registry ----------------------------------------------------------------------------------


def test_wait_sees_another_connections_enqueue_quickly(backend: MysqlBackend, url: str) -> None:
    other = MysqlBackend(url, Settings())
    try:
        timer = threading.Timer(0.3, lambda: other.enqueue([job()]))
        timer.start()
        started = time.monotonic()
        backend.wait(None, 5)
        elapsed = time.monotonic() - started
        timer.join()
        # polled at most _POLL_MAX (50 ms) apart; the slack is for a loaded machine, the point is
        # that the wait ended long before its 5 s timeout
        assert 0.25 < elapsed < 1.0, elapsed
    finally:
        other.close()


def test_wait_returns_on_notify_and_when_a_scheduled_job_comes_due(backend: MysqlBackend) -> None:
    threading.Timer(0.1, backend.notify).start()
    started = time.monotonic()
    backend.wait(["default"], 5)
    assert time.monotonic() - started < 1
    backend.enqueue([job(delay=0.3)])
    started = time.monotonic()
    backend.wait(["default"], 5)
    assert 0.2 < time.monotonic() - started < 1.5
    assert len(backend.claim(["default"], 5, worker_id="w", lease=5)) == 1


def test_now_is_the_servers_clock_and_never_goes_back(backend: MysqlBackend, prefix: str) -> None:
    conn = raw()
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.execute("SELECT UNIX_TIMESTAMP(NOW(6))")
            server = float(cur.fetchone()[0])
    finally:
        conn.close()
    assert abs(backend.now() - server) < 0.5
    readings = [backend.now() for _ in range(1000)]
    assert readings == sorted(readings)


def test_worker_registry_and_throughput(backend: MysqlBackend) -> None:
    info = WorkerInfo(id="host:1:abc", host="host", pid=1, queues=("a", "b"), concurrency=4,
                      started_at=backend.now(), running=("j1",), processed=3)
    backend.register_worker(info, ttl=30)
    backend.register_worker(WorkerInfo(id="gone", host="h", pid=2, queues=(), concurrency=1,
                                       started_at=backend.now()), ttl=0.01)
    (listed,) = wait_until(lambda: backend.workers() if len(backend.workers()) == 1 else None, timeout=5)
    assert (listed.id, listed.queues, listed.running, listed.processed) == ("host:1:abc", ("a", "b"), ("j1",), 3)
    assert listed.last_seen >= info.started_at
    backend.remove_worker("host:1:abc")
    assert backend.workers() == []
    since = backend.now() - 1
    backend.enqueue([job() for _ in range(3)])
    claims = backend.claim(None, 3, worker_id="w", lease=60)
    backend.settle([Outcome(c.id, c.token, JobState.SUCCEEDED if i else JobState.FAILED, error="e")
                    for i, c in enumerate(claims)])
    buckets = backend.throughput(since, 60)
    assert sum(s for _, s, _ in buckets) == 2 and sum(f for _, _, f in buckets) == 1


# paused queues and limits (#9) ------------------------------------------------------------------------
def test_an_idle_worker_sleeps_while_only_paused_work_exists_and_sees_a_resume_elsewhere(
        backend: MysqlBackend, url: str) -> None:
    backend.set_paused(["mail"], True)
    due = job(queue="mail", delay=0.05)
    backend.enqueue([job(queue="mail"), due])
    wait_until(lambda: backend.now() > (backend.get(due.id).run_at or 0) + 0.05 or None, timeout=5,  # type: ignore[union-attr]
               message="the scheduled job of the paused queue to come due")
    for queues in (None, ["mail"]):
        started = time.monotonic()
        backend.wait(queues, 0.4)
        assert time.monotonic() - started >= 0.35, f"wait({queues}) returned early: paused work counted"
    other = MysqlBackend(url, Settings())  # another process: seen at this one's next poll
    woke: list[float] = []
    waiter = threading.Thread(target=lambda: (backend.wait(["mail"], 10), woke.append(time.monotonic())))
    try:
        waiter.start()
        time.sleep(0.3)
        assert not woke
        resumed = time.monotonic()
        other.set_paused(["mail"], False)
        waiter.join(10)
        assert woke and woke[0] - resumed < 1.0
    finally:
        other.close()


def test_lapsed_slots_empty_keys_and_spent_rates_are_swept(backend: MysqlBackend, prefix: str) -> None:
    from errands.backends.base import SlotRequest

    assert backend.acquire_slots([SlotRequest(f"k{i}", "h", 1) for i in range(5)], ttl=0.05) == [True] * 5
    taken_at = backend.now()
    assert backend.take_rate("r", 100, 0.1) == 0.0  # its tat: now + 1 ms
    wait_until(lambda: backend.slot_usage() == {} and backend.now() > taken_at + 0.01 or None, timeout=5,
               message="the holds to lapse and the rate's tat to pass")
    backend._limits_swept = -1e18  # the sweep is due (it runs every 30 s per process)
    assert backend.acquire_slots([SlotRequest("live", "h", 1)], ttl=30) == [True]
    assert sql(prefix, f"SELECT slot_key, holder FROM {q.SLOTS_TABLE}") == [(b"live", b"h")]
    assert sql(prefix, f"SELECT slot_key FROM {q.SLOT_KEYS_TABLE}") == [(b"live",)]
    assert sql(prefix, f"SELECT rate_key FROM {q.RATES_TABLE}") == []


def test_limit_keys_as_long_as_the_core_makes_them_fit(backend: MysqlBackend) -> None:
    from errands.backends.base import SlotRequest

    # "job:<name of 255 bytes>:<partition of 200 four-byte characters>", the longest the worker's gate builds
    key = "job:" + "n" * 255 + ":" + "\U0001f600" * 200
    assert backend.acquire_slots([SlotRequest(key, "x" * 64 + ":" + "t" * 160, 1)], ttl=30) == [True]
    assert backend.slot_usage() == {key: 1}
    assert backend.take_rate(key, 1, 60.0) == 0.0


def test_debounce_and_unique_for_through_a_caller_connection_follow_its_transaction(backend: MysqlBackend) -> None:
    backend.enqueue([job("holder", unique_key="k", debounce=60.0, args="[1]")])
    before = backend.get("holder")
    batch = [job("plain"), job("pushed", unique_key="k", debounce=120.0, args="[2]"),
             job("thrown", unique_key="t", unique_for=60.0)]
    conn = raw(autocommit=False)
    try:
        assert [(e.id, e.created) for e in backend.enqueue(batch, connection=conn)] == [
            ("plain", True), ("holder", False), ("thrown", True)]
        conn.rollback()
        assert backend.get("holder") == before and backend.get("plain") is None and backend.get("thrown") is None
        backend.enqueue(batch, connection=conn)
        conn.commit()
    finally:
        conn.close()
    holder = backend.get("holder")
    assert holder is not None and holder.args == "[2]" and holder.run_at is not None
    assert before is not None and before.run_at is not None and holder.run_at > before.run_at + 50
    assert [(e.id, e.created) for e in backend.enqueue([job("again", unique_key="t", unique_for=60.0)])] == [
        ("thrown", False)]
