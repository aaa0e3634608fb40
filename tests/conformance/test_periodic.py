"""Periodic jobs fire once per tick however many workers (each with its scheduler) run."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest

from errands import Errands, JobState, current_job
from errands.backends.base import Capability
from errands.worker import Worker
from tests.conftest import wait_until


@pytest.mark.requires(Capability.UNIQUE)
def test_every_fires_once_per_tick_with_three_workers(app: Errands) -> None:
    runs: Counter[str] = Counter()
    lock = threading.Lock()

    @app.periodic(every=timedelta(seconds=1))
    def sweep() -> None:
        with lock:
            runs[current_job().id] += 1

    workers = [Worker(app, concurrency=2, grace=2) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        def three_ticks_done() -> bool:
            done = app.list_jobs(state="succeeded", name="sweep")
            return len(done) >= 3

        wait_until(three_ticks_done, timeout=10, message="three ticks of sweep to succeed")
    finally:
        for worker in workers:
            worker.stop(2)
    jobs = app.list_jobs(name="sweep", limit=1000)
    ticks = Counter(j.run_at for j in jobs)
    assert all(count == 1 for count in ticks.values()), f"a tick was enqueued twice: {ticks}"
    assert len(jobs) >= 3
    assert all(j.run_at is not None and j.run_at.timestamp() % 1 == 0 for j in jobs), "ticks align to the second"
    stamps = sorted(int(j.run_at.timestamp()) for j in jobs)  # type: ignore[union-attr]
    assert stamps == list(range(stamps[0], stamps[0] + len(stamps))), f"ticks skipped or repeated: {stamps}"
    assert len({j.unique_key for j in jobs}) == len(jobs)
    succeeded = [j for j in jobs if j.state == JobState.SUCCEEDED]
    assert all(runs[j.id] == 1 for j in succeeded), f"a tick ran twice: {runs}"
    assert sum(runs.values()) == len([j for j in jobs if j.id in runs])


@pytest.mark.requires(Capability.QUERIES)
def test_periodic_job_is_a_job_too(app: Errands) -> None:
    @app.periodic(cron="*/5 * * * *", queue="cron", retries=1)
    def report() -> str:
        return "ok"

    assert report() == "ok"
    handle = report.perform()
    info = app.get_job(handle.id)
    assert info is not None and info.queue == "cron" and info.max_attempts == 2
