"""Pause and resume a queue (issue #9): no worker starts a job of a paused queue, which waits
available; running jobs finish; other queues go on; resume lets it run."""

from __future__ import annotations

import threading

import pytest

from errands import ConfigurationError, Errands, JobState
from errands.backends.base import Capability
from tests.conftest import wait_until

pytestmark = pytest.mark.requires(Capability.QUEUE_CONTROL, Capability.QUERIES)


def test_a_paused_queue_waits_while_others_run_then_resumes(app: Errands) -> None:
    @app.job(name="work")
    def work(n: int) -> int:
        return n

    app.pause_queue("mail")
    assert app.paused_queues() == frozenset({"mail"})
    held = work.with_options(queue="mail").perform(1)
    with app.worker(concurrency=2):
        other = work.with_options(queue="other").perform(2)
        assert other.wait(10).state == JobState.SUCCEEDED
        assert app.get_job(held.id).state == JobState.AVAILABLE  # type: ignore[union-attr]

        app.resume_queue("mail")

        assert held.wait(10).state == JobState.SUCCEEDED
    assert app.paused_queues() == frozenset()


def test_pausing_lets_running_jobs_finish(app: Errands) -> None:
    started, release = threading.Event(), threading.Event()

    @app.job(name="long")
    def long_job() -> str:
        started.set()
        release.wait(10)
        return "done"

    with app.worker(concurrency=2):
        running = long_job.perform()
        assert started.wait(10)
        app.pause_queue("default")
        waiting = long_job.perform()
        release.set()
        assert running.wait(10).state == JobState.SUCCEEDED
        assert app.get_job(waiting.id).state == JobState.AVAILABLE  # type: ignore[union-attr]
        app.resume_queue("default")
        assert waiting.wait(10).state == JobState.SUCCEEDED


def test_a_worker_of_only_paused_queues_stays_idle(app: Errands) -> None:
    @app.job(name="work", queue="mail")
    def work() -> None: ...

    app.pause_queue("mail")
    handle = work.perform()
    with app.worker(concurrency=1, queues=["mail"]) as worker:
        wait_until(lambda: worker.started_at is not None, message="the worker to start")
        assert app.get_job(handle.id).state == JobState.AVAILABLE  # type: ignore[union-attr]
        app.resume_queue("mail")
        assert handle.wait(10).state == JobState.SUCCEEDED


def test_queue_names_are_checked(app: Errands) -> None:
    with pytest.raises(ConfigurationError):
        app.pause_queue("")
