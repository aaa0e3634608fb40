"""Leases: an expired lease is reclaimed by maintain (the attempt stays counted), a job whose
attempts are used up fails with "worker lost", extend keeps a lease alive, and the heartbeat
reports lost leases and cancel requests."""

from __future__ import annotations

import time

import pytest

from errands import Errands, JobState
from errands.backends.base import Backend, Capability, Outcome
from tests.conftest import wait_until

from .conftest import claim_one, new_job

SHORT = 0.3


def _maintain_until(backend: Backend, job_id: str, state: str, timeout: float = 5.0) -> None:
    def reached() -> bool:
        backend.maintain()
        record = backend.get(job_id)
        return record is not None and record.state == state

    wait_until(reached, timeout=timeout, message=f"job {job_id} to become {state}")


@pytest.mark.requires(Capability.QUERIES)
def test_maintain_leaves_live_leases_alone(backend: Backend) -> None:
    job = new_job()
    backend.enqueue([job])
    claim_one(backend, lease=30)
    result = backend.maintain()
    assert (result.requeued, result.failed) == (0, 0)
    assert backend.get(job.id).state == "running"  # type: ignore[union-attr]


@pytest.mark.requires(Capability.QUERIES)
def test_expired_lease_is_requeued_by_maintain(app: Errands, backend: Backend) -> None:
    job = new_job(max_attempts=3)
    backend.enqueue([job])
    claim = claim_one(backend, lease=SHORT)
    started = time.monotonic()
    requeued = 0

    def reclaimed() -> bool:
        nonlocal requeued
        requeued += backend.maintain().requeued
        return backend.get(job.id).state == "available"  # type: ignore[union-attr]

    wait_until(reclaimed, timeout=5)
    assert time.monotonic() - started >= SHORT * 0.8, "reclaimed before its lease expired"
    assert requeued == 1
    info = app.get_job(job.id)
    assert info is not None and info.state == JobState.AVAILABLE
    assert info.attempts == 1, "the lost attempt stays counted"
    assert info.error is not None and "worker lost while running (attempt 1/3)" in info.error
    again = claim_one(backend, worker_id="w2")
    assert again.attempts == 2 and again.token != claim.token


@pytest.mark.requires(Capability.QUERIES)
def test_lease_lost_on_the_last_attempt_fails_the_job(app: Errands, backend: Backend) -> None:
    job = new_job(max_attempts=2)
    backend.enqueue([job])
    claim_one(backend, lease=SHORT)
    _maintain_until(backend, job.id, "available")
    claim_one(backend, lease=SHORT, worker_id="w2")
    failed = 0

    def gone() -> bool:
        nonlocal failed
        failed += backend.maintain().failed
        return backend.get(job.id).state == "failed"  # type: ignore[union-attr]

    wait_until(gone, timeout=5)
    assert failed == 1
    info = app.get_job(job.id)
    assert info is not None and info.attempts == 2 and info.finished_at is not None
    assert info.error is not None and "worker lost while running (attempt 2/2)" in info.error
    assert backend.claim(None, 5, worker_id="w3", lease=1) == [], "a failed job is never redelivered"


@pytest.mark.requires(Capability.QUERIES)
def test_extend_keeps_the_lease(backend: Backend) -> None:
    job = new_job()
    backend.enqueue([job])
    lease = 0.5
    claim = claim_one(backend, lease=lease)
    deadline = time.monotonic() + lease * 3
    while time.monotonic() < deadline:  # heartbeat for three lease lengths, maintaining meanwhile
        extended = backend.extend([claim], lease)
        assert extended.lost == frozenset() and extended.cancel_requested == frozenset()
        result = backend.maintain()
        assert result.requeued == 0 and result.failed == 0
        time.sleep(lease / 10)  # the heartbeat period, not a wait for luck
    assert backend.get(job.id).state == "running"  # type: ignore[union-attr]
    assert backend.settle([Outcome(claim.id, claim.token, JobState.SUCCEEDED, result="1")]) == []
    assert backend.get(job.id).state == "succeeded"  # type: ignore[union-attr]


@pytest.mark.requires(Capability.QUERIES)
def test_extend_reports_a_lost_lease(backend: Backend) -> None:
    job = new_job()
    backend.enqueue([job])
    stale = claim_one(backend, lease=SHORT)
    _maintain_until(backend, job.id, "available")
    fresh = claim_one(backend, worker_id="w2", lease=30)
    assert backend.extend([stale], 30).lost == frozenset({job.id})
    assert backend.extend([fresh], 30).lost == frozenset(), "the stale heartbeat must not hurt the new owner"
    record = backend.get(job.id)
    assert record is not None and record.state == "running" and record.worker_id == "w2"


@pytest.mark.requires(Capability.QUERIES)
def test_extend_reports_cancel_requested(app: Errands, backend: Backend) -> None:
    first, second = new_job(), new_job()
    backend.enqueue([first, second])
    claims = backend.claim(None, 2, worker_id="w", lease=30)
    assert backend.extend(claims, 30).cancel_requested == frozenset()
    assert app.cancel_job(first.id) == "requested"
    info = app.get_job(first.id)
    assert info is not None and info.state == JobState.RUNNING and info.cancel_requested
    extended = backend.extend(claims, 30)
    assert extended.cancel_requested == frozenset({first.id})
    assert extended.lost == frozenset()


@pytest.mark.requires(Capability.QUERIES)
def test_release_puts_back_without_counting_the_attempt(backend: Backend) -> None:
    job = new_job()
    backend.enqueue([job])
    claim = claim_one(backend, lease=30)
    backend.release([claim])
    record = backend.get(job.id)
    assert record is not None and record.state == "available" and record.attempts == 0
    again = claim_one(backend)
    assert again.attempts == 1


@pytest.mark.requires(Capability.QUERIES)
def test_cancel_requested_outlives_a_lost_worker(backend: Backend) -> None:
    """A running job asked to stop whose worker then dies ends cancelled; it is not run again."""
    job = new_job(max_attempts=5)
    backend.enqueue([job])
    claim_one(backend, lease=SHORT)
    assert backend.cancel([job.id])[job.id].value == "requested"
    _maintain_until(backend, job.id, "cancelled")
    assert backend.claim(None, 5, worker_id="w2", lease=1) == [], "a cancelled job is never redelivered"
