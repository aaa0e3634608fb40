"""The worker registry (register / heartbeat / remove / expire) and throughput counts, on every
backend of the conformance suite, each isolated the way that suite isolates it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from errands import Errands
from errands._states import JobState
from errands.backends import backend_class
from errands.backends.base import Backend, Capability, NewJob, Outcome, WorkerInfo
from tests.conformance.conftest import BACKENDS
from tests.conftest import wait_until


@pytest.fixture(params=sorted(name for name, spec in BACKENDS.items() if spec.in_default_run))
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    spec = BACKENDS[request.param]  # every backend of the conformance suite, isolated the same way
    address = spec.url(tmp_path, f"t{uuid.uuid4().hex[:8]}")
    if Capability.QUERIES not in backend_class(address).capabilities_for(address):
        pytest.skip(f"{request.param} keeps no records, so no worker registry (RabbitMQ alone: pair it with a store)")
    yield address
    if spec.cleanup is not None:
        spec.cleanup(address)


@pytest.fixture
def app(url: str) -> Iterator[Errands]:
    instance = Errands(url, lease=0.6, poll_interval=0.05)

    @instance.job(retries=0)
    def work(seconds: float) -> str:
        time.sleep(seconds)
        return "done"

    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture
def backend(app: Errands) -> Backend:
    return app.backend


def info(worker_id: str, **changes: object) -> WorkerInfo:
    values: dict[str, object] = {"id": worker_id, "host": "h", "pid": 7, "queues": ("a", "b"), "concurrency": 4,
                                 "started_at": 1000.0, "running": ("j1",), "processed": 3}
    values.update(changes)
    return WorkerInfo(**values)  # type: ignore[arg-type]


def test_register_is_an_upsert_stamped_by_the_backend(backend: Backend) -> None:
    before = backend.now()
    backend.register_worker(info("w1"), ttl=30)
    backend.register_worker(info("w2", started_at=2000.0), ttl=30)
    backend.register_worker(info("w1", processed=9, running=()), ttl=30)  # a heartbeat
    workers = backend.workers()
    assert [w.id for w in workers] == ["w1", "w2"]  # oldest started_at first
    first = workers[0]
    assert (first.host, first.pid, first.queues, first.concurrency, first.processed, first.running) == (
        "h", 7, ("a", "b"), 4, 9, ())
    assert before - 1 <= first.last_seen <= backend.now() + 1


def test_a_dead_worker_disappears_after_its_ttl(backend: Backend) -> None:
    backend.register_worker(info("alive"), ttl=30)
    backend.register_worker(info("dying"), ttl=0.3)
    assert {w.id for w in backend.workers()} == {"alive", "dying"}
    wait_until(lambda: [w.id for w in backend.workers()] == ["alive"], timeout=5, message="the dead worker to go")


def test_remove_worker(backend: Backend) -> None:
    backend.register_worker(info("w:{1}\n"), ttl=30)  # ids are data, whatever they hold
    assert [w.id for w in backend.workers()] == ["w:{1}\n"]
    backend.remove_worker("w:{1}\n")
    backend.remove_worker("never-registered")
    assert backend.workers() == []


def test_a_running_worker_is_listed_with_its_jobs_and_leaves_when_stopped(app: Errands) -> None:
    handle = app.perform("work", 1.0)
    with app.worker(concurrency=3, queues=["default"]) as worker:
        alive = wait_until(lambda: [w for w in app.workers() if w.running], timeout=10, message="a busy worker")
        (listed,) = alive
        assert listed.id == worker.id and listed.concurrency == 3 and listed.queues == ("default",)
        assert listed.running == (handle.id,)
        handle.wait(timeout=10)
        wait_until(lambda: app.workers()[0].processed == 1, timeout=5, message="the heartbeat to report it")
    assert app.workers() == []  # removed on a graceful stop


def test_a_killed_worker_disappears_after_its_lease(app: Errands) -> None:
    worker = app.start(concurrency=1)
    wait_until(app.workers, timeout=5)
    worker.reporter.retire = lambda backend: None  # type: ignore[method-assign]  # dies without a word
    app.stop(timeout=5)
    assert [w.id for w in app.workers()] == [worker.id]
    wait_until(lambda: app.workers() == [], timeout=5, message="the registration to expire (lease 0.6 s)")


def test_throughput_counts_finished_jobs_by_finish_time(backend: Backend) -> None:
    now = backend.now()
    for job_id, state in (("t1", JobState.SUCCEEDED), ("t2", JobState.SUCCEEDED), ("t3", JobState.FAILED),
                          ("t4", JobState.CANCELLED)):
        backend.enqueue([NewJob(id=job_id, name="n", queue="q", args="[]", kwargs="{}", max_attempts=1)])
        claim = backend.claim(["q"], 1, worker_id="w", lease=30)[0]
        backend.settle([Outcome(claim.id, claim.token, state)])
    backend.enqueue([NewJob(id="t5", name="n", queue="q", args="[]", kwargs="{}", max_attempts=1)])
    since = now - 120
    buckets = backend.throughput(since, 60.0)
    assert [start for start, _, _ in buckets][:3] == [since, since + 60, since + 120]
    assert sum(ok for _, ok, _ in buckets) == 2 and sum(bad for _, _, bad in buckets) == 1
    assert buckets[-1][1:] == (2, 1) or buckets[-2][1:] == (2, 1)  # all in the latest minute or two
    assert sum(ok for _, ok, _ in backend.throughput(backend.now() + 1, 60.0)) == 0


def test_sqlite_migrates_a_version_1_database(tmp_path: Path) -> None:
    """A file made before the worker registry existed gets the table and index on open."""
    import sqlite3

    from errands.backends import _sqlite_sql
    from errands.backends._sql import run_migrations

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        run_migrations(conn.cursor(), _sqlite_sql.MIGRATIONS[:1], meta_ddl=_sqlite_sql.META_DDL)
        conn.execute("INSERT INTO errands_jobs (id, name, queue, args, kwargs, state, max_attempts, run_at, "
                     "created_at, finished_at) VALUES ('old', 'n', 'q', '[]', '{}', 'succeeded', 1, 0, 0, 1)")
    app = Errands(f"sqlite:///{path}")
    try:
        assert app.get_job("old") is not None and app.workers() == []
        assert sum(ok for _, ok, _ in app.backend.throughput(0.0, 1e9)) == 1  # found through the new index
    finally:
        app.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM errands_meta").fetchone() == (str(_sqlite_sql.MIGRATIONS[-1].version),)
