"""claim_ids: claim exactly the named jobs, as claim would (attempts counted, a new token, a
lease that maintain reclaims), each only if it is available or scheduled and due. Everything
else (not due, running, finished, cancelled, unknown) is left as it was and not returned; a
repeated id claims once; two concurrent callers never both get one job. A store paired with a
broker (AMQP) claims what the broker delivered through it."""

from __future__ import annotations

import json
import random
import threading

import pytest

from errands import JobState
from errands._ids import new_id
from errands.backends.base import Backend, Capability, Claim, Outcome
from tests.conftest import wait_until

from .conftest import claim_one, new_job

pytestmark = pytest.mark.requires(Capability.QUERIES)

SHORT = 0.3


def _succeed(backend: Backend, claim: Claim) -> list[str]:
    return backend.settle([Outcome(claim.id, claim.token, JobState.SUCCEEDED, result="null")])


def test_claims_available_and_due_scheduled_jobs(backend: Backend) -> None:
    available = new_job(meta='{"trace": "abc"}', priority=3)
    due_at = backend.now() + SHORT
    scheduled = new_job(run_at=due_at)
    backend.enqueue([available, scheduled])
    assert backend.get(scheduled.id).state == "scheduled"  # type: ignore[union-attr]
    wait_until(lambda: backend.now() > due_at + 0.05, message="the scheduled job to be due")
    # no claim or maintain ran since: the due job is still in the scheduled state
    assert backend.get(scheduled.id).state == "scheduled"  # type: ignore[union-attr]

    claims = {c.id: c for c in backend.claim_ids([scheduled.id, available.id], worker_id="w1", lease=30)}

    assert set(claims) == {available.id, scheduled.id}
    first = claims[available.id]
    assert (first.name, first.queue, first.args, first.kwargs) == ("noop", "default", "[]", "{}")
    assert (first.attempts, first.max_attempts, first.priority) == (1, 3, 3)
    assert json.loads(first.meta) == {"trace": "abc"}  # type: ignore[arg-type]
    assert claims[scheduled.id].attempts == 1 and claims[scheduled.id].meta is None
    assert first.token != claims[scheduled.id].token
    for claim in claims.values():
        record = backend.get(claim.id)
        assert record is not None and record.state == "running" and record.attempts == 1
        assert record.worker_id == "w1" and record.started_at is not None
    assert backend.claim(None, 10, worker_id="w2", lease=30) == [], "claimed jobs are not claimable again"
    assert backend.extend(list(claims.values()), 30).lost == frozenset()
    for claim in claims.values():
        assert _succeed(backend, claim) == [], "the claim's token owns the job"
        assert backend.get(claim.id).state == "succeeded"  # type: ignore[union-attr]


def test_leaves_every_other_job_alone(backend: Backend) -> None:
    running, succeeded, failed = new_job(), new_job(), new_job()
    claims = {}
    for job in (running, succeeded, failed):  # one at a time, so each claim takes that job
        backend.enqueue([job])
        claims[job.id] = claim_one(backend, lease=30)
    assert _succeed(backend, claims[succeeded.id]) == []
    assert backend.settle([Outcome(failed.id, claims[failed.id].token, JobState.FAILED, error="boom")]) == []
    cancelled, not_due = new_job(), new_job(delay=3600)
    backend.enqueue([cancelled, not_due])
    backend.cancel([cancelled.id])
    ids = [running.id, succeeded.id, failed.id, cancelled.id, not_due.id]
    before = {job_id: backend.get(job_id) for job_id in ids}
    assert [before[i].state for i in ids] == [  # type: ignore[union-attr]
        "running", "succeeded", "failed", "cancelled", "scheduled"]

    assert backend.claim_ids([*ids, new_id()], worker_id="w2", lease=30) == []

    assert {job_id: backend.get(job_id) for job_id in ids} == before
    assert _succeed(backend, claims[running.id]) == [], "the running job's own claim still owns it"


def test_a_repeated_id_claims_once(backend: Backend) -> None:
    job = new_job()
    backend.enqueue([job])
    claims = backend.claim_ids([job.id, job.id, job.id], worker_id="w1", lease=30)
    assert [c.id for c in claims] == [job.id] and claims[0].attempts == 1
    assert backend.get(job.id).attempts == 1  # type: ignore[union-attr]
    assert backend.claim_ids([job.id], worker_id="w2", lease=30) == [], "running: not claimable"
    assert backend.claim_ids([], worker_id="w2", lease=30) == []


def test_concurrent_callers_never_claim_one_job_twice(backend: Backend) -> None:
    jobs = [new_job() for _ in range(30)]
    backend.enqueue(jobs)
    ids = [job.id for job in jobs]
    orders = [ids, list(reversed(ids)), random.Random(7).sample(ids, len(ids))]
    start = threading.Barrier(len(orders))
    results: list[list[Claim]] = [[] for _ in orders]
    errors: list[BaseException] = []

    def claimer(n: int) -> None:
        try:
            start.wait(timeout=10)
            results[n] = backend.claim_ids(orders[n], worker_id=f"w{n}", lease=30)
        except BaseException as exc:  # noqa: BLE001 (reported below, in the test's thread)
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(len(orders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    claimed = [c.id for result in results for c in result]
    assert sorted(claimed) == sorted(ids), "every job claimed exactly once"
    assert all(c.attempts == 1 for result in results for c in result)
    assert all(backend.get(i).attempts == 1 for i in ids)  # type: ignore[union-attr]


def test_an_expired_lease_is_reclaimed_like_any_claim(backend: Backend) -> None:
    job = new_job(max_attempts=3)
    backend.enqueue([job])
    [first] = backend.claim_ids([job.id], worker_id="w1", lease=SHORT)
    requeued = 0

    def reclaimed() -> bool:
        nonlocal requeued
        requeued += backend.maintain().requeued
        return backend.get(job.id).state == "available"  # type: ignore[union-attr]

    wait_until(reclaimed, timeout=5, message="maintain to requeue the expired lease")
    assert requeued == 1
    record = backend.get(job.id)
    assert record is not None and record.attempts == 1, "the lost attempt stays counted"
    assert record.error is not None and "worker lost while running (attempt 1/3)" in record.error
    [second] = backend.claim_ids([job.id], worker_id="w2", lease=30)
    assert second.attempts == 2 and second.token != first.token
    assert _succeed(backend, first) == [job.id], "the reclaimed claim's token is fenced"
    assert _succeed(backend, second) == []
