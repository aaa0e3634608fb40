"""Settle: outcomes apply only under the claim's token (fencing), a replay changes nothing,
a retry schedules the job, and a result is stored."""

from __future__ import annotations

import json

import pytest

from errands import Errands, JobState
from errands.backends.base import Backend, Capability, Claim, Outcome
from tests.conftest import wait_until

from .conftest import claim_all, claim_one, new_job


def _reclaimed(backend: Backend, lease: float = 0.2) -> tuple[Claim, Claim, str]:
    """A job claimed by w1 whose lease expired and that w2 now owns: (stale, fresh, id)."""
    job = new_job(max_attempts=5)
    backend.enqueue([job])
    stale = claim_one(backend, lease=lease, worker_id="w1")

    def requeued() -> bool:
        backend.maintain()
        return backend.get(job.id).state == "available"  # type: ignore[union-attr]

    wait_until(requeued, timeout=5)
    fresh = claim_one(backend, lease=30, worker_id="w2")
    assert fresh.id == stale.id and fresh.token != stale.token
    return stale, fresh, job.id


@pytest.mark.requires(Capability.QUERIES)
def test_settle_success_stores_result(app: Errands, backend: Backend) -> None:
    job = new_job()
    backend.enqueue([job])
    claim = claim_one(backend)
    result = json.dumps({"rows": [1, 2, 3], "big": 2**64 + 1})
    assert backend.settle([Outcome(claim.id, claim.token, JobState.SUCCEEDED, result=result)]) == []
    info = app.get_job(job.id)
    assert info is not None and info.state == JobState.SUCCEEDED
    assert info.result == {"rows": [1, 2, 3], "big": 2**64 + 1}
    assert info.finished_at is not None and info.started_at is not None
    assert info.finished_at >= info.started_at


@pytest.mark.requires(Capability.QUERIES)
def test_settle_failed_and_cancelled(app: Errands, backend: Backend) -> None:
    a, b = new_job(), new_job()
    backend.enqueue([a, b])
    ca, cb = backend.claim(None, 2, worker_id="w", lease=30)
    fenced = backend.settle([
        Outcome(ca.id, ca.token, JobState.FAILED, error="ValueError: boom"),
        Outcome(cb.id, cb.token, JobState.CANCELLED, error="cancelled"),
    ])
    assert fenced == []
    fa, fb = app.get_job(ca.id), app.get_job(cb.id)
    assert fa is not None and fa.state == JobState.FAILED and fa.error == "ValueError: boom"
    assert fb is not None and fb.state == JobState.CANCELLED
    assert fa.finished_at is not None and fb.finished_at is not None


@pytest.mark.requires(Capability.QUERIES)
def test_stale_settle_is_fenced(backend: Backend) -> None:
    stale, fresh, job_id = _reclaimed(backend)
    fenced = backend.settle([Outcome(stale.id, stale.token, JobState.SUCCEEDED, result='"late"')])
    assert fenced == [job_id]
    record = backend.get(job_id)
    assert record is not None and record.state == "running" and record.worker_id == "w2"
    assert record.result is None
    # the owner's answer still applies
    assert backend.settle([Outcome(fresh.id, fresh.token, JobState.SUCCEEDED, result='"mine"')]) == []
    record = backend.get(job_id)
    assert record is not None and record.state == "succeeded" and record.result == '"mine"'


@pytest.mark.requires(Capability.QUERIES)
def test_stale_failure_and_retry_are_fenced(backend: Backend) -> None:
    stale, _fresh, job_id = _reclaimed(backend)
    fenced = backend.settle([
        Outcome(stale.id, stale.token, JobState.FAILED, error="late failure"),
        Outcome(stale.id, stale.token, JobState.SCHEDULED, error="late retry", retry_in=5),
    ])
    assert fenced == [job_id, job_id]
    record = backend.get(job_id)
    assert record is not None and record.state == "running" and record.attempts == 2
    assert "late" not in (record.error or "")


@pytest.mark.requires(Capability.QUERIES)
def test_stale_extend_and_release_change_nothing(backend: Backend) -> None:
    stale, fresh, job_id = _reclaimed(backend)
    assert backend.extend([stale], 60).lost == frozenset({job_id})
    backend.release([stale])
    record = backend.get(job_id)
    assert record is not None and record.state == "running" and record.attempts == 2
    assert backend.claim(None, 5, worker_id="w3", lease=1) == [], "the stale release must not free the job"
    assert backend.settle([Outcome(fresh.id, fresh.token, JobState.SUCCEEDED)]) == []


@pytest.mark.requires(Capability.QUERIES)
def test_settle_after_a_lost_lease_with_nobody_else(backend: Backend) -> None:
    """The lease expired and was requeued but not yet reclaimed: the late answer is still fenced."""
    job = new_job()
    backend.enqueue([job])
    claim = claim_one(backend, lease=0.2)

    def requeued() -> bool:
        backend.maintain()
        return backend.get(job.id).state == "available"  # type: ignore[union-attr]

    wait_until(requeued, timeout=5)
    assert backend.settle([Outcome(claim.id, claim.token, JobState.SUCCEEDED)]) == [job.id]
    assert backend.get(job.id).state == "available"  # type: ignore[union-attr]


@pytest.mark.requires(Capability.QUERIES)
def test_settle_replay_is_idempotent(backend: Backend) -> None:
    job = new_job()
    backend.enqueue([job])
    claim = claim_one(backend)
    outcome = Outcome(claim.id, claim.token, JobState.SUCCEEDED, result="42")
    assert backend.settle([outcome]) == []
    first = backend.get(job.id)
    assert backend.settle([outcome]) == [job.id]
    assert backend.settle([Outcome(claim.id, claim.token, JobState.FAILED, error="late")]) == [job.id]
    assert backend.get(job.id) == first


@pytest.mark.requires(Capability.QUERIES)
def test_settle_retry_schedules_then_becomes_available(app: Errands, backend: Backend) -> None:
    job = new_job(max_attempts=3)
    backend.enqueue([job])
    claim = claim_one(backend)
    before = backend.now()
    fenced = backend.settle([Outcome(claim.id, claim.token, JobState.SCHEDULED, error="boom", retry_in=0.4)])
    assert fenced == []
    info = app.get_job(job.id)
    assert info is not None and info.state == JobState.SCHEDULED and info.error == "boom"
    assert info.run_at is not None and info.run_at.timestamp() >= before + 0.35
    assert info.finished_at is None
    asked_at = backend.now()
    early = backend.claim(None, 5, worker_id="w", lease=5)
    if asked_at < info.run_at.timestamp() - 0.05:
        assert early == [], "claimed before its retry time"

    def promoted() -> bool:
        backend.maintain()
        return backend.get(job.id).state == "available"  # type: ignore[union-attr]

    wait_until(promoted, timeout=5, message="maintain to promote the retry")
    again = backend.claim(None, 5, worker_id="w", lease=5)
    assert [c.id for c in again] == [job.id] and again[0].attempts == 2
    assert backend.now() >= before + 0.35


@pytest.mark.requires(Capability.QUERIES)
def test_settle_retry_now_is_available_at_once(backend: Backend) -> None:
    job = new_job(max_attempts=3)
    backend.enqueue([job])
    claim = claim_one(backend)
    assert backend.settle([Outcome(claim.id, claim.token, JobState.SCHEDULED, error="x", retry_in=0)]) == []
    assert backend.get(job.id).state == "available"  # type: ignore[union-attr]
    assert claim_one(backend).attempts == 2


@pytest.mark.requires(Capability.QUERIES)
def test_settle_a_batch_applies_each_outcome(backend: Backend) -> None:
    jobs = [new_job() for _ in range(20)]
    backend.enqueue(jobs)
    claims = claim_all(backend, 20)
    outcomes = [Outcome(c.id, c.token, JobState.SUCCEEDED, result=str(i)) for i, c in enumerate(claims)]
    outcomes.append(Outcome(claims[0].id, "not-a-token", JobState.FAILED, error="forged"))
    assert backend.settle(outcomes) == [claims[0].id]
    assert backend.counts()["succeeded"] == 20
    assert backend.get(claims[0].id).result == "0"  # type: ignore[union-attr]


def test_settle_unknown_id_is_fenced(backend: Backend) -> None:
    assert backend.settle([Outcome("0190c0de-0000-7000-8000-000000000000", "t", JobState.SUCCEEDED)]) == [
        "0190c0de-0000-7000-8000-000000000000"
    ]
