"""Retries through a real worker: backoff per job, Retry(in_=...), Fail(...), the error text
with its traceback, retries exhausted -> failed, and retry_job from failed/cancelled."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from errands import Errands, Fail, JobState, Retry
from errands.backends.base import Backend, Capability
from tests.conftest import wait_until


def _state(app: Errands, job_id: str, *states: JobState):  # type: ignore[no-untyped-def]
    def reached():  # type: ignore[no-untyped-def]
        info = app.get_job(job_id)
        return info if info is not None and info.state in states else None

    return wait_until(reached, timeout=10, message=f"job {job_id} to reach {states}")


@pytest.mark.requires(Capability.QUERIES)
def test_failing_job_retries_then_succeeds(app: Errands) -> None:
    calls: Counter[str] = Counter()

    @app.job(retries=3, backoff=0.05)
    def flaky(key: str) -> str:
        calls[key] += 1
        if calls[key] < 3:
            raise ValueError(f"boom {calls[key]}")
        return "done"

    with app.worker(concurrency=2):
        handle = flaky.perform("k")
        info = _state(app, handle.id, JobState.SUCCEEDED, JobState.FAILED)
    assert info.state == JobState.SUCCEEDED and info.result == "done"
    assert info.attempts == 3 and calls["k"] == 3


@pytest.mark.requires(Capability.QUERIES)
def test_retries_exhausted_fails_with_last_error_and_traceback(app: Errands) -> None:
    @app.job(retries=2, backoff=0)
    def always_breaks(n: int) -> None:
        raise ValueError(f"bad value {n}")

    with app.worker(concurrency=1):
        handle = always_breaks.perform(7)
        info = _state(app, handle.id, JobState.FAILED)
    assert info.attempts == 3 and info.max_attempts == 3
    assert info.error is not None
    assert "ValueError: bad value 7" in info.error
    assert "Traceback" in info.error and "always_breaks" in info.error
    assert "3/3" in info.error
    assert info.finished_at is not None


@pytest.mark.requires(Capability.QUERIES)
def test_backoff_policy_is_per_job(app: Errands, backend: Backend) -> None:
    @app.job(retries=3, backoff=lambda attempt: 3600.0 * attempt)
    def slow_retry() -> None:
        raise RuntimeError("later")

    @app.job(retries=3, backoff=0.01)
    def quick_retry() -> None:
        raise RuntimeError("soon")

    with app.worker(concurrency=2):
        slow = slow_retry.perform()
        quick = quick_retry.perform()
        slow_info = _state(app, slow.id, JobState.SCHEDULED)
        quick_info = _state(app, quick.id, JobState.FAILED)
    assert slow_info.attempts == 1 and slow_info.run_at is not None
    assert abs(slow_info.run_at.timestamp() - (backend.now() + 3600)) < 60
    assert "RuntimeError: later" in (slow_info.error or "")
    assert quick_info.attempts == 4


@pytest.mark.requires(Capability.QUERIES)
def test_retry_in_sets_the_delay(app: Errands, backend: Backend) -> None:
    @app.job(retries=5, backoff=0)
    def wants_an_hour() -> None:
        raise Retry(in_=3600)

    with app.worker(concurrency=1):
        handle = wants_an_hour.perform()
        info = _state(app, handle.id, JobState.SCHEDULED)
    assert info.attempts == 1 and info.run_at is not None
    assert abs(info.run_at.timestamp() - (backend.now() + 3600)) < 60


@pytest.mark.requires(Capability.QUERIES)
def test_retry_in_short_runs_again(app: Errands) -> None:
    seen: list[int] = []

    @app.job(retries=5, backoff=3600)
    def once_more() -> int:
        from errands import current_job

        seen.append(current_job().attempt)
        if len(seen) == 1:
            raise Retry(in_=0.05)  # beats the hour-long backoff
        return len(seen)

    with app.worker(concurrency=1):
        handle = once_more.perform()
        info = _state(app, handle.id, JobState.SUCCEEDED)
    assert seen == [1, 2] and info.result == 2


@pytest.mark.requires(Capability.QUERIES)
def test_fail_does_not_retry(app: Errands) -> None:
    runs = []

    @app.job(retries=5, backoff=0)
    def refuses() -> None:
        runs.append(1)
        raise Fail("customer account was deleted")

    with app.worker(concurrency=1):
        handle = refuses.perform()
        info = _state(app, handle.id, JobState.FAILED)
    assert len(runs) == 1 and info.attempts == 1
    assert "customer account was deleted" in (info.error or "")


@pytest.mark.requires(Capability.QUERIES)
def test_retry_job_from_failed_runs_again(app: Errands) -> None:
    allowed = threading.Event()

    @app.job(retries=0)
    def gated() -> str:
        if not allowed.is_set():
            raise RuntimeError("not yet")
        return "ok"

    with app.worker(concurrency=1):
        handle = gated.perform()
        failed = _state(app, handle.id, JobState.FAILED)
        assert failed.attempts == 1
        allowed.set()
        assert app.retry_job(handle.id) is True
        info = _state(app, handle.id, JobState.SUCCEEDED)
    assert info.result == "ok" and info.attempts == 2


@pytest.mark.requires(Capability.QUERIES)
def test_retry_job_from_cancelled_and_not_from_others(app: Errands, backend: Backend) -> None:
    @app.job()
    def later() -> None: ...

    scheduled = later.perform_in(3600)
    assert app.cancel_job(scheduled.id) == "cancelled"
    assert app.get_job(scheduled.id).state == JobState.CANCELLED  # type: ignore[union-attr]
    assert app.retry_job(scheduled.id) is True
    info = app.get_job(scheduled.id)
    assert info is not None and info.state == JobState.AVAILABLE and info.finished_at is None
    available = later.perform()
    assert app.retry_job(available.id) is False
    assert app.get_job(available.id).state == JobState.AVAILABLE  # type: ignore[union-attr]
    assert app.retry_job("0190c0de-0000-7000-8000-000000000000") is False


@pytest.mark.requires(Capability.QUERIES)
def test_retry_job_gives_an_exhausted_job_another_attempt(app: Errands, backend: Backend) -> None:
    @app.job(retries=0)
    def once() -> None:
        raise RuntimeError("no")

    with app.worker(concurrency=1):
        handle = once.perform()
        _state(app, handle.id, JobState.FAILED)
        assert app.retry_job(handle.id)

        def failed_again():  # type: ignore[no-untyped-def]
            info = app.get_job(handle.id)
            return info if info is not None and info.state == JobState.FAILED and info.attempts == 2 else None

        info = wait_until(failed_again, timeout=10)
    assert info.max_attempts >= 2 and "RuntimeError: no" in (info.error or "")
