"""The spool's own rules, on the memory backend standing in for a server (the outage tests with
real servers are tests/conformance/test_spool.py and tests/faults/test_spool_outage.py)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from errands import ConfigurationError, Errands
from errands.backends.base import Enqueued, JobQuery, NewJob
from errands.backends.memory import MemoryBackend
from errands.config import Settings
from errands.errors import BackendUnavailable, SerializationError
from errands.spool import Spool
from tests.conftest import wait_until


class Flaky(MemoryBackend):
    """A store that can be "away", and that refuses one poison job for good."""

    away = True

    def enqueue(self, jobs: Sequence[NewJob], *, connection: object | None = None) -> list[Enqueued]:
        if self.away:
            raise BackendUnavailable("away for the test")
        if any(job.name == "poison" for job in jobs):
            raise SerializationError("the store refuses this one")
        return super().enqueue(jobs, connection=connection)


def _job(n: int, name: str = "work", **fields: object) -> NewJob:
    from errands._ids import new_id

    return NewJob(id=new_id(), name=name, queue="q", args=f"[{n}]", kwargs="{}", max_attempts=1, **fields)  # type: ignore[arg-type]


@pytest.fixture
def store() -> Flaky:
    return Flaky("memory://", Settings(url="memory://"))


def test_a_poison_job_is_set_aside_and_the_rest_delivered_in_order(store: Flaky, tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "s.db"), lambda: store, interval=0.05)
    try:
        jobs = [_job(1), _job(2, "poison"), _job(3)]
        for job in jobs:
            assert spool.enqueue([job])[1] is True  # spooled
        store.away = False
        wait_until(lambda: spool.depth() == 0, message="delivery")
        assert [r.args for r in sorted(store.list(JobQuery(limit=100)), key=lambda r: r.id)] == ["[1]", "[3]"]
        assert [job_id for job_id, _ in spool.rejected_jobs()] == [jobs[1].id]
        assert spool.rejected == 1 and spool.delivered == 2
    finally:
        spool.close()


def test_one_process_at_a_time_delivers_a_shared_file(store: Flaky, tmp_path: Path) -> None:
    first = Spool(str(tmp_path / "s.db"), lambda: store)
    second = Spool(str(tmp_path / "s.db"), lambda: store)
    try:
        assert first._take_lease() and first._take_lease()  # renewable by its owner
        assert not second._take_lease()
        first.close()  # gives the lease up
        assert second._take_lease()
    finally:
        first.close()
        second.close()


def test_a_delay_becomes_an_absolute_time_and_unknown_fields_are_ignored(store: Flaky, tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = Spool(str(path), lambda: store, interval=0.05)
    try:
        spool.enqueue([_job(1, delay=600.0)])
        before = time.time()
        with sqlite3.connect(path) as conn:
            run_at, delay = conn.execute("SELECT json_extract(job, '$.run_at'), json_extract(job, '$.delay') "
                                         "FROM spool").fetchone()
        assert delay == 0 and before - 5 < run_at - 600 <= before  # from perform, not from delivery
        with sqlite3.connect(path) as conn:  # a row written by a newer errands, with a field unknown here
            conn.execute("UPDATE spool SET job = json_set(job, '$.from_the_future', 1)")
        store.away = False
        wait_until(lambda: spool.depth() == 0, message="delivery")
        (record,) = store.list(JobQuery(limit=100))
        assert record.state == "scheduled" and record.run_at is not None
    finally:
        spool.close()


def test_spool_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="server backends"):
        Errands("sqlite:///x.db", spool="spool.db")
    with pytest.raises(ConfigurationError, match="path of a SQLite file"):
        Errands("redis://127.0.0.1:6379/0", spool=":memory:")
