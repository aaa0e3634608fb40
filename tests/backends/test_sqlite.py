"""SQLite-only behaviour: URL parsing, pragmas, schema versioning, several threads and processes
on one file, transactional enqueue through a caller's sqlite3 connection, query plans, rows
written by hand, lock contention, wait(), and a differential run against the memory backend.
The behaviour every backend shares is tested in tests/conformance."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from errands.backends import sqlite as sqlite_module
from errands.backends.base import Claim, JobQuery, NewJob, Outcome, SlotRequest
from errands.backends.memory import MemoryBackend
from errands.backends.sqlite import SqliteBackend, parse_url
from errands.config import Settings
from errands.errors import BackendUnavailable, ConfigurationError, SerializationError
from errands.jobs import JobState
from errands.serialization import decode_arguments


def job(job_id: str, **fields: Any) -> NewJob:
    values: dict[str, Any] = {"name": "noop", "queue": "default", "args": "[]", "kwargs": "{}", "max_attempts": 3}
    values.update(fields)
    return NewJob(id=job_id, **values)


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:06d}" for i in range(n)]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
def backend(db_path: Path) -> Iterator[SqliteBackend]:
    instance = SqliteBackend(f"sqlite:///{db_path}", Settings())
    instance.open()
    yield instance
    instance.close()


_raw_connections: list[sqlite3.Connection] = []


def raw(db_path: Path | str, **options: Any) -> sqlite3.Connection:
    """A plain sqlite3 connection beside the backend's own (autocommit unless told otherwise),
    closed after the test."""
    options = {"timeout": 10, "isolation_level": None, "check_same_thread": False, **options}
    conn = sqlite3.connect(db_path, **options)
    _raw_connections.append(conn)
    return conn


@pytest.fixture(autouse=True)
def _close_raw_connections() -> Iterator[None]:
    yield
    while _raw_connections:
        _raw_connections.pop().close()


# URL -----------------------------------------------------------------------------------------------
def test_relative_url_resolves_against_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    options = parse_url("sqlite:///jobs.db")
    assert options.path == str(tmp_path / "jobs.db")
    assert (options.synchronous, options.busy_timeout) == ("NORMAL", 5.0)


def test_absolute_url_and_parameters() -> None:
    options = parse_url("sqlite:////var/lib/my%20app/jobs.db?synchronous=FULL&busy_timeout=1500")
    assert options.path == "/var/lib/my app/jobs.db"
    assert (options.synchronous, options.busy_timeout) == ("FULL", 1.5)
    assert parse_url("sqlite:////x.db?synchronous=normal").synchronous == "NORMAL"


@pytest.mark.parametrize("url", [
    "sqlite://", "sqlite:///", "sqlite://host/jobs.db", "sqlite:///:memory:", "sqlite:///jobs.db?synchronous=off",
    "sqlite:///jobs.db?synchronous=", "sqlite:///jobs.db?busy_timeout=abc", "sqlite:///jobs.db?busy_timeout=-1",
    "sqlite:///jobs.db?busy_timeout=1.5", "sqlite:///jobs.db?timeout=5", "sqlite:///jobs.db?busy_timeout=1&busy_timeout=2",
    "sqlite:///jobs.db?journal_mode=delete", "sqlite:///jobs.db?synchronous",
])
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        SqliteBackend(url, Settings())


def test_missing_folder_is_a_configuration_error(tmp_path: Path) -> None:
    backend = SqliteBackend(f"sqlite:///{tmp_path}/nope/jobs.db", Settings())
    with pytest.raises(ConfigurationError, match="does not exist"):
        backend.open()


# pragmas and schema ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("param", "expected"), [("", 1), ("?synchronous=normal", 1), ("?synchronous=full", 2)])
def test_wal_and_synchronous_are_applied(db_path: Path, param: str, expected: int) -> None:
    backend = SqliteBackend(f"sqlite:///{db_path}{param}", Settings())
    backend.open()
    try:
        backend.enqueue([job("a")])
        seen: list[int] = []
        # every thread's connection gets the setting, not only the one that opened the file
        thread = threading.Thread(target=lambda: seen.append(backend._conn().execute("PRAGMA synchronous").fetchone()[0]))
        thread.start()
        thread.join()
        assert seen == [expected]
        assert backend._conn().execute("PRAGMA synchronous").fetchone()[0] == expected
        assert raw(db_path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        backend.close()


def test_schema_version_is_recorded_and_reopening_is_idempotent(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    first = SqliteBackend(url, Settings())
    first.open()
    first.enqueue([job("kept")])
    first.close()
    for _ in range(2):
        again = SqliteBackend(url, Settings())
        again.open()
        again.open()  # twice on one object is a no-op too
        assert again.get("kept") is not None
        again.close()
    conn = raw(db_path)
    latest = str(sqlite_module._MIGRATIONS[-1].version)
    assert conn.execute("SELECT value FROM errands_meta WHERE name = 'schema_version'").fetchall() == [(latest,)]
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"errands_jobs", "errands_meta", "errands_workers"} <= tables
    assert all(name.startswith(("errands_", "sqlite_")) for name in tables)


def test_a_new_file_gets_small_pages_and_an_existing_one_keeps_its_own(tmp_path: Path) -> None:
    fresh, existing = tmp_path / "fresh.db", tmp_path / "existing.db"
    raw(existing).execute("CREATE TABLE mine (x)")  # made elsewhere with SQLite's default pages
    for path in (fresh, existing):
        backend = SqliteBackend(f"sqlite:///{path}", Settings())
        backend.enqueue([job(f"in-{path.stem}")])
        backend.close()
    assert raw(fresh).execute("PRAGMA page_size").fetchone()[0] == 2048
    assert raw(existing).execute("PRAGMA page_size").fetchone()[0] == 4096
    assert raw(existing).execute("SELECT id FROM errands_jobs").fetchall() == [("in-existing",)]


def test_a_newer_schema_is_refused(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    SqliteBackend(url, Settings()).open()
    raw(db_path).execute("UPDATE errands_meta SET value = '99' WHERE name = 'schema_version'")
    with pytest.raises(ConfigurationError, match="upgrade errands"):
        SqliteBackend(url, Settings()).open()


def test_concurrent_first_opens_create_the_schema_once(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    errors: list[Exception] = []

    def open_one(index: int) -> None:
        try:
            backend = SqliteBackend(url, Settings())
            backend.open()
            backend.enqueue([job(f"from-{index}")])
            backend.close()
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert raw(db_path).execute("SELECT count(*) FROM errands_jobs").fetchone()[0] == 8


def test_use_before_open_opens_lazily(db_path: Path) -> None:
    backend = SqliteBackend(f"sqlite:///{db_path}", Settings())
    assert backend.enqueue([job("a")]) == [sqlite_module.Enqueued("a", True)]
    backend.close()


# query plans ---------------------------------------------------------------------------------------
def _plan(backend: SqliteBackend, sql: str, params: tuple[Any, ...]) -> str:
    return "\n".join(row[3] for row in backend._conn().execute("EXPLAIN QUERY PLAN " + sql, params))


def test_claim_and_upkeep_use_the_partial_indexes(backend: SqliteBackend) -> None:
    # Many finished rows and statistics gathered: the plans must not drift to a sort of the table.
    backend.enqueue([job(i, queue=f"q{int(i[1:]) % 3}") for i in ids("j", 3000)])
    claims = backend.claim(None, 2900, worker_id="w", lease=30)
    backend.settle([Outcome(c.id, c.token, JobState.SUCCEEDED) for c in claims])
    backend._conn().execute("ANALYZE")
    params = (1.0, 1.0, "w", 10, "q0", "q1", "q2")
    assert "USING INDEX errands_jobs_claim_any" in _plan(backend, sqlite_module._claim_sql(None), params[:4])
    single = _plan(backend, sqlite_module._claim_sql(1), params[:5])
    assert "USING INDEX errands_jobs_claim (queue=?)" in single and "TEMP B-TREE" not in single
    several = _plan(backend, sqlite_module._claim_sql(3), params)
    assert several.count("USING INDEX errands_jobs_claim (queue=?)") == 3
    assert "errands_jobs_due" in _plan(backend, sqlite_module._PROMOTE, (1.0, 10))
    assert "errands_jobs_lease" in _plan(backend, sqlite_module._REAP_REQUEUE, (1.0, 10))
    holder = "SELECT id FROM errands_jobs WHERE unique_key = ? AND state IN ('scheduled', 'available', 'running')"
    assert "errands_jobs_unique" in _plan(backend, holder, ("k",))
    probe = _plan(backend, sqlite_module._probe_sql(None), ())
    assert "errands_jobs_claim_any" in probe and "errands_jobs_due" in probe
    unpaused = _plan(backend, sqlite_module._claim_sql(None, none_paused=True), params[:4])
    assert "USING INDEX errands_jobs_claim_any" in unpaused and "TEMP B-TREE" not in unpaused
    settle = _plan(backend, sqlite_module.settle_many_sql(4), ("x",) * 32)
    assert "SCAN errands_jobs" not in settle and "SEARCH errands_jobs" in settle  # a probe per outcome


def test_settle_reports_fenced_outcomes_in_order_in_every_batch_shape(backend: SqliteBackend) -> None:
    for size in (1, 3, 300):  # one statement (padded to a power of two), and a transaction past 256
        backend.enqueue([job(i) for i in ids(f"s{size}-", size)])
        claims = backend.claim(None, size, worker_id="w", lease=30)
        stale = claims[::2]
        outcomes = [Outcome(c.id, "not-the-token" if c in stale else c.token, JobState.SUCCEEDED) for c in claims]
        assert backend.settle(outcomes) == [c.id for c in stale]
        assert backend.settle(outcomes) == [c.id for c in claims]  # a replay changes nothing
        states = {c.id: backend.get(c.id).state for c in claims}  # type: ignore[union-attr]
        assert states == {c.id: "running" if c in stale else "succeeded" for c in claims}
    backend.enqueue([job("twice")])
    claim = backend.claim(None, 1, worker_id="w", lease=30)[0]
    again = Outcome(claim.id, claim.token, JobState.SUCCEEDED)
    assert backend.settle([again, again]) == ["twice"]  # the second of a repeated id is fenced


def test_claim_order_across_several_queues(backend: SqliteBackend) -> None:
    now = backend.now()
    backend.enqueue([
        job("a-low", queue="a", priority=0, run_at=now - 5), job("b-high", queue="b", priority=5, run_at=now - 1),
        job("a-high-old", queue="a", priority=5, run_at=now - 9), job("c-top", queue="c", priority=9),
        job("b-low-old", queue="b", priority=0, run_at=now - 50),
    ])
    claims = backend.claim(["a", "b", "a"], 10, worker_id="w", lease=30)
    assert [c.id for c in claims] == ["a-high-old", "b-high", "b-low-old", "a-low"]


# concurrency ---------------------------------------------------------------------------------------
def test_threads_never_claim_a_job_twice(backend: SqliteBackend) -> None:
    total = 3000
    backend.enqueue([job(i) for i in ids("pre", total // 2)])
    claimed: list[str] = []
    lock = threading.Lock()
    producing = threading.Event()
    producing.set()

    def produce() -> None:
        batch = ids("live", total // 2)
        for start in range(0, len(batch), 25):
            backend.enqueue([job(i, queue="other") for i in batch[start:start + 25]])
        producing.clear()

    def consume() -> None:
        while True:
            claims = backend.claim(None, random.randint(1, 10), worker_id=threading.current_thread().name, lease=60)
            if claims:
                backend.settle([Outcome(c.id, c.token, JobState.SUCCEEDED) for c in claims])
                with lock:
                    claimed.extend(c.id for c in claims)
            elif not producing.is_set() and backend.counts()["available"] == 0:
                return

    threads = [threading.Thread(target=produce)] + [threading.Thread(target=consume, name=f"w{i}") for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert len(claimed) == total and len(set(claimed)) == total
    assert backend.counts()["succeeded"] == total


_CLAIMER = r"""
import json, sys, time
from errands.backends.base import Outcome
from errands.backends.sqlite import SqliteBackend
from errands.config import Settings
from errands.jobs import JobState
url, name, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
backend = SqliteBackend(url, Settings())
seen = []
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    claims = backend.claim(None, 7, worker_id=name, lease=60)
    if claims:
        seen += [c.id for c in claims]
        backend.settle([Outcome(c.id, c.token, JobState.SUCCEEDED) for c in claims])
    elif backend.counts()["succeeded"] >= total:
        break
    else:
        backend.wait(None, 0.05)
backend.close()
print(json.dumps(seen))
"""

_PRODUCER = r"""
import sys
from errands.backends.base import NewJob
from errands.backends.sqlite import SqliteBackend
from errands.config import Settings
url, count = sys.argv[1], int(sys.argv[2])
backend = SqliteBackend(url, Settings())
for start in range(0, count, 20):
    backend.enqueue([NewJob(id=f"proc{i:06d}", name="noop", queue="default", args="[]", kwargs="{}", max_attempts=3)
                     for i in range(start, min(start + 20, count))])
backend.close()
"""


def _python(src_path: str, script: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": src_path}
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env, stdout=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_processes_never_claim_a_job_twice(backend: SqliteBackend, db_path: Path, src_path: str) -> None:
    url, half = f"sqlite:///{db_path}", 1500
    backend.enqueue([job(i) for i in ids("main", half)])
    claimers = [_python(src_path, _CLAIMER, url, f"p{i}", str(2 * half)) for i in range(4)]
    producer = _python(src_path, _PRODUCER, url, str(half))
    producer.communicate(timeout=90)
    assert producer.returncode == 0
    seen: list[str] = []
    for process in claimers:
        out, _ = process.communicate(timeout=90)
        assert process.returncode == 0
        seen.extend(json.loads(out))
    duplicates = [i for i, n in Counter(seen).items() if n > 1]
    assert duplicates == [] and len(seen) == 2 * half
    assert backend.counts()["succeeded"] == 2 * half
    assert raw(db_path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


_LIMITER = r"""
import json, sys
from errands.backends.base import SlotRequest
from errands.backends.sqlite import SqliteBackend
from errands.config import Settings
backend = SqliteBackend(sys.argv[1], Settings())
name = sys.argv[2]
print("ready", flush=True)
sys.stdin.readline()  # every process starts at once
slots = [h for h in (f"{name}-{n}" for n in range(40)) if backend.acquire_slots([SlotRequest("hot", h, 3)], 60) == [True]]
rates = sum(backend.take_rate("shared", 5, 3600.0) == 0.0 for _ in range(40))
backend.close()
print(json.dumps([slots, rates]))
"""


@pytest.mark.slow
def test_processes_share_slot_and_rate_limits(backend: SqliteBackend, db_path: Path, src_path: str) -> None:
    env = {**os.environ, "PYTHONPATH": src_path}
    workers = [subprocess.Popen([sys.executable, "-c", _LIMITER, f"sqlite:///{db_path}", f"p{i}"], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for i in range(4)]
    for process in workers:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    for process in workers:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    results = [json.loads(process.communicate(timeout=90)[0]) for process in workers]
    assert all(process.returncode == 0 for process in workers)
    holders = [h for slots, _ in results for h in slots]
    assert len(holders) == 3 and backend.slot_usage() == {"hot": 3}
    assert sum(rates for _, rates in results) == 5


_CHURN = r"""
import sys, uuid
from errands.backends.base import NewJob, Outcome
from errands.backends.sqlite import SqliteBackend
from errands.config import Settings
from errands.jobs import JobState
backend = SqliteBackend(sys.argv[1], Settings())
print("ready", flush=True)
while True:
    backend.enqueue([NewJob(id=uuid.uuid4().hex, name="noop", queue="default", args="[]", kwargs="{}",
                            max_attempts=3) for _ in range(20)])
    claims = backend.claim(None, 15, worker_id="churn", lease=1)
    backend.settle([Outcome(c.id, c.token, JobState.SUCCEEDED) for c in claims[::2]])
"""


@pytest.mark.slow
def test_sigkill_mid_write_leaves_a_sound_file(backend: SqliteBackend, db_path: Path, src_path: str) -> None:
    url = f"sqlite:///{db_path}"
    for _ in range(6):
        victims = [_python(src_path, _CHURN, url) for _ in range(2)]
        for victim in victims:
            assert victim.stdout is not None and victim.stdout.readline().strip() == "ready"
        time.sleep(random.uniform(0.05, 0.3))  # let them get mid-transaction: the fault being tested
        for victim in victims:
            victim.kill()
            victim.communicate()
        # the lock died with its holders: the next write goes through at once
        assert backend.enqueue([job(f"after-{victims[0].pid}")])[0].created
    assert raw(db_path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    backend.now = lambda: time.time() + 5  # type: ignore[method-assign]
    backend.maintain(limit=100_000)  # every lease the killed churners held expires and is put back
    assert backend.counts()["running"] == 0


def test_close_from_another_thread_closes_every_connection(backend: SqliteBackend) -> None:
    backend.enqueue([job("a")])
    connections: list[sqlite3.Connection] = []

    def use() -> None:
        backend.get("a")
        connections.append(backend._conn())

    threads = [threading.Thread(target=use) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    connections.append(backend._conn())
    closer = threading.Thread(target=backend.close)
    closer.start()
    closer.join()
    for conn in connections:
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    assert backend.get("a") is not None  # the object may be opened again


# transactional enqueue ------------------------------------------------------------------------------
@pytest.mark.parametrize("isolation_level", ["", "DEFERRED", "IMMEDIATE", None])
def test_enqueue_through_a_caller_connection_follows_its_transaction(
    backend: SqliteBackend, db_path: Path, isolation_level: str | None
) -> None:
    conn = raw(db_path, isolation_level=isolation_level)
    conn.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY)")
    if isolation_level is None:
        conn.execute("BEGIN")  # autocommit mode: the caller opens the transaction
    conn.execute("INSERT INTO orders VALUES (1)")
    assert backend.enqueue([job("rolled-back")], connection=conn) == [sqlite_module.Enqueued("rolled-back", True)]
    assert conn.in_transaction and backend.get("rolled-back") is None  # not committed: invisible elsewhere
    conn.rollback()
    assert backend.get("rolled-back") is None
    assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0

    if isolation_level is None:
        conn.execute("BEGIN")
    conn.execute("INSERT INTO orders VALUES (2)")
    backend.enqueue([job("committed"), job("committed")], connection=conn)
    conn.commit()
    assert backend.get("committed") is not None
    assert backend.claim(None, 5, worker_id="w", lease=30)[0].id == "committed"


def test_enqueue_through_an_autocommit_connection_without_transaction_commits(backend: SqliteBackend, db_path: Path) -> None:
    conn = raw(db_path)
    backend.enqueue([job("a"), job("b", unique_key="k"), job("c", unique_key="k")], connection=conn)
    assert not conn.in_transaction
    assert [backend.get(i) is not None for i in "abc"] == [True, True, False]


def test_enqueue_through_a_caller_connection_reports_duplicates(backend: SqliteBackend, db_path: Path) -> None:
    backend.enqueue([job("old"), job("holder", unique_key="k")])
    conn = raw(db_path, isolation_level="")
    conn.row_factory = lambda cursor, row: dict(zip([c[0] for c in cursor.description], row))
    result = backend.enqueue([job("old"), job("new"), job("other", unique_key="k")], connection=conn)
    assert [(r.id, r.created) for r in result] == [("old", False), ("new", True), ("holder", False)]
    conn.rollback()
    assert backend.get("new") is None


def test_debounce_and_unique_for_through_a_caller_connection_follow_its_transaction(
        backend: SqliteBackend, db_path: Path) -> None:
    backend.enqueue([job("holder", unique_key="k", debounce=60, args="[1]")])
    before = backend.get("holder")
    conn = raw(db_path, isolation_level="DEFERRED")
    batch = [job("plain"), job("pushed", unique_key="k", debounce=120, args="[2]"), job("thrown", unique_key="t",
                                                                                        unique_for=60)]
    assert [(e.id, e.created) for e in backend.enqueue(batch, connection=conn)] == [
        ("plain", True), ("holder", False), ("thrown", True)]
    conn.rollback()
    assert backend.get("holder") == before and backend.get("plain") is None and backend.get("thrown") is None
    backend.enqueue(batch, connection=conn)
    conn.commit()
    holder = backend.get("holder")
    assert holder is not None and holder.args == "[2]" and holder.run_at is not None
    assert before is not None and before.run_at is not None and holder.run_at > before.run_at + 50
    assert backend.enqueue([job("again", unique_key="t", unique_for=60)]) == [sqlite_module.Enqueued("thrown", False)]


def test_enqueue_through_a_wrong_connection_is_refused(backend: SqliteBackend, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        backend.enqueue([job("a")], connection=object())
    with pytest.raises(ConfigurationError, match="is not to"):
        backend.enqueue([job("a")], connection=raw(tmp_path / "other.db"))
    with pytest.raises(ConfigurationError):
        backend.enqueue([job("a")], connection=raw(":memory:"))


# rows written by hand -------------------------------------------------------------------------------
def test_corrupt_rows_do_not_break_claiming(backend: SqliteBackend, db_path: Path) -> None:
    backend.enqueue([job("good-1"), job("template"), job("good-2")])
    conn = raw(db_path)
    columns = "id, name, queue, args, kwargs, state, attempts, max_attempts, priority, run_at, created_at, timeout"

    def copy(new_id: str, **sql: str) -> None:
        exprs = [sql.get(c, c) for c in columns.split(", ")]
        exprs[0] = f"'{new_id}'"
        conn.execute(f"INSERT INTO errands_jobs ({columns}) SELECT {', '.join(exprs)} FROM errands_jobs WHERE id = 'template'")

    copy("blob-args", args="x'ff00fe'")
    copy("bad-utf8-args", args="CAST(x'5bff5d' AS TEXT)")
    copy("bad-utf8-name", name="CAST(x'6eff' AS TEXT)")
    copy("zombie", state="'zombie'")
    copy("negative-attempts", attempts="-1")
    copy("junk-numbers", priority="'high'", max_attempts="'x'", run_at="'yesterday'", timeout="'soon'")
    copy("empty-name", name="''")
    with pytest.raises(sqlite3.IntegrityError):  # the schema refuses a job without a name
        copy("null-name", name="NULL")

    claims = {c.id: c for c in backend.claim(None, 100, worker_id="w", lease=30)}
    assert set(claims) == {"good-1", "template", "good-2", "blob-args", "bad-utf8-args", "bad-utf8-name",
                           "negative-attempts", "junk-numbers", "empty-name"}
    assert claims["blob-args"].args == b"\xff\x00\xfe" and claims["bad-utf8-args"].args == b"[\xff]"
    for bad in ("blob-args", "bad-utf8-args"):  # the worker's decoder fails that one job clearly
        with pytest.raises(SerializationError, match="UTF-8"):
            decode_arguments(claims[bad].args, claims[bad].kwargs)
    assert claims["negative-attempts"].attempts == 0
    junk = claims["junk-numbers"]
    assert (junk.max_attempts, junk.priority, junk.timeout) == (0, 0, None)
    assert backend.settle([Outcome(c.id, c.token, JobState.FAILED, error="bad record") for c in claims.values()]) == []
    # every query still answers; the zombie is never claimed, and maintain() fails it (#7)
    assert backend.counts()["failed"] == len(claims)
    assert backend.get("zombie").state == "zombie"  # type: ignore[union-attr]
    assert backend.get("junk-numbers").run_at is None  # type: ignore[union-attr]
    assert len(backend.list(JobQuery(limit=100))) == 10
    assert backend.maintain() == sqlite_module.Maintenance(failed=1)
    zombie = backend.get("zombie")
    assert zombie is not None and zombie.state == "failed" and "unknown state 'zombie'" in (zombie.error or "")
    assert backend.maintain() == sqlite_module.Maintenance()
    assert backend.claim(None, 100, worker_id="w", lease=30) == []


# locks, disk full ----------------------------------------------------------------------------------
def _hold_write_lock(db_path: Path, seconds: float) -> tuple[threading.Thread, threading.Event]:
    holding = threading.Event()

    def hold() -> None:
        conn = raw(db_path)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO errands_meta VALUES ('lock-holder', 'x')")
        holding.set()
        time.sleep(seconds)  # the scenario itself: a long writer elsewhere
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(10)
    return thread, holding


def test_a_writer_holding_the_lock_for_a_second_is_waited_for(backend: SqliteBackend, db_path: Path) -> None:
    thread, _ = _hold_write_lock(db_path, 1.0)
    started = time.monotonic()
    assert backend.enqueue([job("patient")])[0].created
    assert time.monotonic() - started >= 0.5  # it did wait for the other writer
    claims = backend.claim(None, 1, worker_id="w", lease=30)
    assert [c.id for c in claims] == ["patient"]
    thread.join()


def test_writers_of_one_process_take_turns_and_a_turn_held_too_long_is_backend_unavailable(db_path: Path) -> None:
    from errands.backends._sqlite_turn import turn_for

    backend = SqliteBackend(f"sqlite:///{db_path}?busy_timeout=200", Settings())
    other = SqliteBackend(f"sqlite:///{db_path}", Settings())
    assert backend._turn is other._turn is turn_for(str(db_path))  # one per file per process
    with backend._turn(1.0), backend._turn(1.0):  # the holder may take it again: a write inside a write
        assert backend._conn().execute("SELECT 1").fetchone() == (1,)
        started = time.monotonic()
        failed: list[Exception] = []
        thread = threading.Thread(target=lambda: _capture(failed, lambda: backend.enqueue([job("waits")])))
        thread.start()
        thread.join(10)
        assert isinstance(failed[0], BackendUnavailable) and "another thread" in str(failed[0])
        assert 0.2 <= time.monotonic() - started < 5
    assert backend.enqueue([job("after")])[0].created  # handed back whole after the nested take
    backend.close()
    other.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_child_forked_while_the_parent_holds_the_turn_gets_a_free_one(backend: SqliteBackend) -> None:
    held, done = threading.Event(), threading.Event()

    def hold() -> None:  # another thread than the forking one: the child has no such thread
        with backend._turn(1.0):
            held.set()
            done.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: its own turn, or it would wait for a thread it doesn't have, and fail
        code = 1
        try:
            code = 0 if backend.enqueue([job("from-child")])[0].created else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    done.set()
    holder.join()
    assert os.waitstatus_to_exitcode(status) == 0
    assert backend.get("from-child") is not None


def _capture(into: list[Exception], call: Any) -> None:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test asserts on it
        into.append(exc)


def test_a_lock_held_past_busy_timeout_is_backend_unavailable(db_path: Path) -> None:
    backend = SqliteBackend(f"sqlite:///{db_path}?busy_timeout=200", Settings())
    backend.open()
    thread, _ = _hold_write_lock(db_path, 1.5)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="locked"):
        backend.enqueue([job("impatient")])
    assert 0.2 <= time.monotonic() - started < 1.4
    thread.join()
    assert backend.enqueue([job("impatient")])[0].created  # and it recovers once the lock is free
    backend.close()


def test_disk_full_is_backend_unavailable_and_recovers(backend: SqliteBackend) -> None:
    conn = backend._conn()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 2}")
    big = json.dumps(["x" * 200_000])
    with pytest.raises(BackendUnavailable, match="full"):
        backend.enqueue([job("big", args=big)])
    assert backend.get("big") is None
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert backend.enqueue([job("big", args=big)])[0].created


# wait ----------------------------------------------------------------------------------------------
def test_wait_sees_another_connections_enqueue_within_milliseconds(backend: SqliteBackend, db_path: Path) -> None:
    other = SqliteBackend(f"sqlite:///{db_path}", Settings())  # its own connections, like another process
    other.open()
    enqueued: list[float] = []

    def produce() -> None:
        time.sleep(0.2)  # let wait() start polling; if it hasn't, wait() returns at once anyway
        other.enqueue([job("x")])
        enqueued.append(time.monotonic())

    thread = threading.Thread(target=produce)
    thread.start()
    backend.wait(None, 10)
    woke = time.monotonic()
    thread.join()
    assert woke - enqueued[0] < 0.25, f"noticed after {woke - enqueued[0]:.4f}s"
    other.close()


def test_wait_returns_on_notify(backend: SqliteBackend) -> None:
    timer = threading.Timer(0.1, backend.notify)
    started = time.monotonic()
    timer.start()
    backend.wait(None, 10)
    assert time.monotonic() - started < 5
    timer.join()


def test_wait_ignores_commits_that_make_nothing_claimable(backend: SqliteBackend) -> None:
    backend.enqueue([job("later", delay=3600), job("elsewhere", queue="other")])
    started = time.monotonic()
    backend.wait(["default"], 0.3)
    assert 0.3 <= time.monotonic() - started < 2


def test_wait_returns_when_a_scheduled_job_comes_due(backend: SqliteBackend) -> None:
    backend.enqueue([job("soon", delay=0.3)])
    started = time.monotonic()
    backend.wait(None, 10)
    assert 0.25 <= time.monotonic() - started < 5
    assert [c.id for c in backend.claim(None, 1, worker_id="w", lease=30)] == ["soon"]


def test_wait_returns_at_once_when_work_is_there(backend: SqliteBackend) -> None:
    backend.enqueue([job("ready")])
    started = time.monotonic()
    backend.wait(["default"], 10)
    assert time.monotonic() - started < 1


def test_maintain_limits_each_kind_of_work_per_call(backend: SqliteBackend) -> None:
    clock = _Clock()
    backend.now = lambda: clock.now  # type: ignore[method-assign]
    backend.enqueue([job(i, max_attempts=1 if i.endswith("0") else 3) for i in ids("m", 3)])
    backend.claim(None, 3, worker_id="w", lease=5)
    backend.enqueue([job(i, delay=1) for i in ids("s", 3)])
    clock.now += 10
    first = backend.maintain(limit=2)
    assert first.promoted == 2 and first.failed + first.requeued == 2
    second = backend.maintain(limit=2)
    assert (second.promoted, second.failed + second.requeued) == (1, 1)
    assert (first.failed + second.failed, first.requeued + second.requeued) == (1, 2)
    lost = backend.get("m000000")
    assert lost is not None and lost.state == "failed" and lost.error == "worker lost while running (attempt 1/1)"
    assert backend.maintain(limit=2) == sqlite_module.Maintenance()


def test_purge_walks_in_chunks(backend: SqliteBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_module, "_PURGE_CHUNK", 3)
    clock = _Clock()
    backend.now = lambda: clock.now  # type: ignore[method-assign]
    backend.enqueue([job(i) for i in ids("p", 12)])
    claims = backend.claim(None, 12, worker_id="w", lease=30)
    old, new = claims[::2], claims[1::2]  # interleaved, so chunks skip rows that stay
    backend.settle([Outcome(c.id, c.token, JobState.SUCCEEDED) for c in old])
    clock.now += 100
    backend.settle([Outcome(c.id, c.token, JobState.SUCCEEDED) for c in new])
    assert backend.purge(JobState.FAILED, clock.now + 1) == 0
    assert backend.purge(JobState.SUCCEEDED, clock.now - 50) == 6
    assert sorted(r.id for r in backend.list(JobQuery(limit=100))) == sorted(c.id for c in new)
    assert backend.purge(JobState.SUCCEEDED, clock.now + 1) == 6


# SQLite without RETURNING ---------------------------------------------------------------------------
def test_claim_without_returning_behaves_the_same(backend: SqliteBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_module, "_HAS_RETURNING", False)
    backend.enqueue([job("low", priority=0), job("high", priority=3), job("mid", priority=1)])
    claims = backend.claim(None, 2, worker_id="w", lease=30)
    assert [(c.id, c.attempts) for c in claims] == [("high", 1), ("mid", 1)]
    assert len({c.token for c in claims}) == 2
    assert backend.settle([Outcome(c.id, c.token, JobState.SUCCEEDED) for c in claims]) == []
    record = backend.get("high")
    assert record is not None and record.state == "succeeded" and record.worker_id == "w"


# differential run against the reference implementation ---------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0


def _random_step(rng: random.Random, clock: _Clock, backends: list[Any], held: list[dict[str, Claim]],
                 stale: list[list[Claim]], known: list[str]) -> list[Any]:
    """One random operation applied to every backend; returns each backend's comparable answer."""
    op = rng.choice(["enqueue", "enqueue", "claim", "claim", "extend", "settle", "settle", "release",
                     "maintain", "tick", "cancel", "retry", "purge", "pause", "wake", "limits"])
    if op == "enqueue":
        batch = []
        # Ids are reused only while their job exists: memory.py promotes a purged-then-re-enqueued
        # id early (its stale heap entry matches the new job's version).
        existing = [i for i in known if backends[0].get(i) is not None]
        for _ in range(rng.randint(1, 4)):
            job_id = rng.choice(existing) if existing and rng.random() < 0.15 else f"j{len(known):04d}-{len(batch)}"
            when = rng.choice([None, None, clock.now - 3, clock.now + rng.choice([1, 5, 20])])
            batch.append(job(job_id, queue=rng.choice(["a", "b"]), priority=rng.randint(-1, 2),
                             max_attempts=rng.randint(1, 3), run_at=when, delay=rng.choice([0, 0, 4]),
                             unique_key=rng.choice([None, None, "k1", "k2"]), unique_for=rng.choice([None, None, 8]),
                             debounce=rng.choice([None, None, None, 0, 3])))
        known.extend(dict.fromkeys(j.id for j in batch if j.id not in known))
        return [b.enqueue(batch) for b in backends]
    if op == "claim":
        queues, limit = rng.choice([None, ["a"], ["b", "a"]]), rng.randint(1, 4)
        answers = []
        for b, mine in zip(backends, held):
            claims = b.claim(queues, limit, worker_id="w", lease=10)
            mine.update((c.id, c) for c in claims)
            answers.append([(c.id, c.attempts, c.max_attempts, c.priority, c.queue) for c in claims])
        return answers
    if op == "tick":
        clock.now += rng.choice([0.5, 3, 11])
        return []
    picked = rng.sample(sorted(held[0]), min(len(held[0]), rng.randint(0, 3)))
    if op == "extend":
        return [b.extend([mine[i] for i in picked if i in mine], 10) for b, mine in zip(backends, held)]
    if op == "settle":
        state = rng.choice([JobState.SUCCEEDED, JobState.FAILED, JobState.SCHEDULED, JobState.CANCELLED])
        retry_in, error = rng.choice([0, 2, -1]), rng.choice([None, "boom"])
        answers = []
        for b, mine, old in zip(backends, held, stale):
            outcomes = [Outcome(mine[i].id, mine[i].token, state, result='"r"', error=error, retry_in=retry_in)
                        for i in picked if i in mine]
            outcomes += [Outcome(c.id, c.token, state) for c in old[-1:]]  # a late, fenced answer
            old.extend(mine.pop(i) for i in picked if i in mine)
            answers.append(b.settle(outcomes))
        return answers
    if op == "release":
        delay = rng.choice([0, 0, 2])
        for b, mine in zip(backends, held):
            b.release([mine.pop(i) for i in picked if i in mine], delay=delay)
        return []
    if op == "pause":
        queues, paused = rng.sample(["a", "b"], rng.randint(1, 2)), rng.random() < 0.6
        for b in backends:
            b.set_paused(queues, paused)
        return [sorted(b.paused_queues()) for b in backends]
    if op == "limits":
        key = rng.choice(["x", "y"])
        if rng.random() < 0.3:
            return [b.take_rate(key, 2, 4.0) for b in backends]
        holders = [f"h{rng.randint(0, 3)}" for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.3:
            for b in backends:
                b.release_slots([(key, h) for h in holders])
            return [sorted(b.slot_usage().items()) for b in backends]
        ttl = rng.choice([1, 5])
        return [(b.acquire_slots([SlotRequest(key, h, 2) for h in holders], ttl), sorted(b.slot_usage().items()))
                for b in backends]
    if op == "maintain":
        return [b.maintain(1000) for b in backends]  # memory reaps in set order: a lower limit differs
    targets = rng.sample(known, min(len(known), 3)) + ["missing"]
    if op == "wake":
        return [b.wake(targets) for b in backends]
    if op == "cancel":
        return [dict(b.cancel(targets)) for b in backends]
    if op == "retry":
        return [b.retry(targets) for b in backends]
    state, older_than = rng.choice([JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED]), clock.now - rng.choice([0, 5])
    return [b.purge(state, older_than) for b in backends]


@pytest.mark.parametrize("seed", range(8))
def test_behaves_like_the_memory_backend(tmp_path: Path, seed: int) -> None:
    clock = _Clock()
    sqlite = SqliteBackend(f"sqlite:///{tmp_path / 'diff.db'}", Settings())
    memory = MemoryBackend("memory://", Settings())
    backends: list[Any] = [memory, sqlite]
    for b in backends:
        b.now = lambda: clock.now
    sqlite.open()
    rng = random.Random(seed)
    held: list[dict[str, Claim]] = [{}, {}]
    stale: list[list[Claim]] = [[], []]
    known: list[str] = []
    try:
        for step in range(300):
            answers = _random_step(rng, clock, backends, held, stale, known)
            assert len(set(map(repr, answers))) <= 1, f"step {step}: {answers}"
            assert [memory.get(i) for i in known] == [sqlite.get(i) for i in known], f"step {step}"
            for by_queue in (False, True):
                assert memory.counts(by_queue=by_queue) == sqlite.counts(by_queue=by_queue)
            for query in (JobQuery(limit=7), JobQuery(state=JobState.AVAILABLE, queue="a"), JobQuery(queue="b")):
                assert memory.list(query) == sqlite.list(query)
    finally:
        sqlite.close()


def test_now_is_sqlites_clock_whatever_this_process_thinks(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Processes on one file share one machine, so SQLite's reading of it is the shared clock;
    # a Python-level shift (freezegun, a patched time.time) in one of them must not move leases.
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)
    backend = SqliteBackend(f"sqlite:///{db_path}", Settings())
    with sqlite3.connect(":memory:") as conn:
        sqlite_clock = (conn.execute("SELECT julianday('now')").fetchone()[0] - 2440587.5) * 86400
    assert abs(backend.now() - sqlite_clock) < 1.0
    readings = [backend.now() for _ in range(1000)]
    assert readings == sorted(readings)


def test_every_backend_object_in_a_process_reads_one_clock(tmp_path: Path) -> None:
    # A job settled through one object and claimed through another must keep its order: objects
    # each with their own reading of SQLite's millisecond clock disagreed by up to a millisecond.
    first = SqliteBackend(f"sqlite:///{tmp_path / 'a.db'}", Settings())
    second = SqliteBackend(f"sqlite:///{tmp_path / 'b.db'}", Settings())
    readings = [backend.now() for _ in range(500) for backend in (first, second)]
    assert readings == sorted(readings)
    assert abs(sqlite_module._clock_offset(sqlite3.connect(":memory:")) + time.monotonic() - time.time()) < 0.01


# paused queues ---------------------------------------------------------------------------------------
def _vm_steps(backend: SqliteBackend, call: Any) -> int:
    """SQLite VM instructions (in hundreds) that ``call`` runs on this thread's connection."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    conn = backend._conn()
    conn.set_progress_handler(count, 100)
    try:
        call()
    finally:
        conn.set_progress_handler(None, 100)
    return steps[0]


def test_a_paused_backlog_is_not_walked_by_claims_or_waits(backend: SqliteBackend) -> None:
    backend.enqueue([job(i, queue="big", priority=5) for i in ids("b", 5000)])
    backend.enqueue([job("small-1", queue="small"), job("small-2", queue="other")])
    backend.set_paused(["big"], True)
    walk = _vm_steps(backend, lambda: backend._conn().execute(
        "SELECT count(*) FROM errands_jobs WHERE queue = 'big' AND state = 'available'").fetchone())
    claimed: list[str] = []
    costs = {
        "claim every queue": _vm_steps(backend, lambda: claimed.extend(
            c.id for c in backend.claim(None, 1, worker_id="w", lease=30))),
        "claim named queues": _vm_steps(backend, lambda: claimed.extend(
            c.id for c in backend.claim(["big", "other"], 1, worker_id="w", lease=30))),
        "wait on every queue": _vm_steps(backend, lambda: backend.wait(None, 0)),
        "wait on the paused queue": _vm_steps(backend, lambda: backend.wait(["big"], 0)),
    }
    assert claimed == ["small-1", "small-2"]
    assert all(cost * 20 < walk for cost in costs.values()), (walk, costs)


def test_claim_every_queue_past_the_union_limit_still_skips_paused_ones(
        backend: SqliteBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_module, "_UNION_QUEUES", 1)
    backend.enqueue([job("a", queue="qa", priority=1), job("p", queue="qp", priority=9), job("b", queue="qb")])
    backend.set_paused(["qp"], True)
    assert [c.id for c in backend.claim(None, 5, worker_id="w", lease=30)] == ["a", "b"]
    monkeypatch.setattr(sqlite_module, "_HAS_RETURNING", False)
    backend.enqueue([job("c", queue="qc")])
    assert [c.id for c in backend.claim(None, 5, worker_id="w", lease=30)] == ["c"]
    assert [c.id for c in backend.claim(["qp", "qc"], 5, worker_id="w", lease=30)] == []


def test_wait_sleeps_while_only_paused_queues_have_work_and_wakes_on_resume(
        backend: SqliteBackend, db_path: Path) -> None:
    backend.enqueue([job("held", queue="mail")])
    backend.set_paused(["mail"], True)
    for queues in (None, ["mail"]):
        started = time.monotonic()
        backend.wait(queues, 0.3)
        assert time.monotonic() - started >= 0.3, "paused work is no work: wait must not return early"
    other = SqliteBackend(f"sqlite:///{db_path}", Settings())  # its own connections, like another process
    timer = threading.Timer(0.2, lambda: other.set_paused(["mail"], False))
    started = time.monotonic()
    timer.start()
    try:
        backend.wait(["mail"], 10)
    finally:
        timer.join()
        other.close()
    assert time.monotonic() - started < 5
    assert [c.id for c in backend.claim(["mail"], 1, worker_id="w", lease=30)] == ["held"]
