"""Claim: order (priority, then run_at, then insertion), limit, queue filter, attempts counted
at claim, and no job claimed twice by concurrent claimers."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from errands import Errands, JobState
from errands.backends.base import Backend, Capability
from tests.conftest import wait_until

from .conftest import new_job


def _ids(claims) -> list[str]:  # type: ignore[no-untyped-def]
    return [c.id for c in claims]


@pytest.mark.requires(Capability.PRIORITIES)
def test_claim_order_priority_first(app: Errands, backend: Backend) -> None:
    @app.job()
    def work(n: int) -> None: ...

    low = work.with_options(priority=-5).perform(1)
    mid = work.perform(2)
    high = work.with_options(priority=50).perform(3)
    mid2 = work.perform(4)
    claims = backend.claim(None, 10, worker_id="w", lease=5)
    assert _ids(claims) == [high.id, mid.id, mid2.id, low.id]


@pytest.mark.requires(Capability.PRIORITIES)  # claim order by due time too: a FIFO broker keeps publish order
def test_claim_order_run_at_before_insertion(app: Errands, backend: Backend) -> None:
    @app.job()
    def work(n: int) -> None: ...

    now = datetime.now(timezone.utc)
    later = work.perform_at(now - timedelta(minutes=1), 1)  # inserted first, due later
    earlier = work.perform_at(now - timedelta(minutes=5), 2)
    claims = backend.claim(None, 10, worker_id="w", lease=5)
    assert _ids(claims) == [earlier.id, later.id]


def test_claim_order_insertion_when_priority_and_run_at_tie(app: Errands, backend: Backend) -> None:
    @app.job()
    def work(n: int) -> None: ...

    when = datetime.now(timezone.utc) - timedelta(minutes=1)
    handles = [work.perform_at(when, n) for n in range(12)]
    claimed = []
    while batch := backend.claim(None, 5, worker_id="w", lease=5):
        claimed += _ids(batch)
    assert claimed == [h.id for h in handles]


def test_claim_respects_limit(app: Errands, backend: Backend) -> None:
    @app.job()
    def work(n: int) -> None: ...

    work.perform_many([((n,), {}) for n in range(7)])
    assert len(backend.claim(None, 3, worker_id="w", lease=5)) == 3
    assert len(backend.claim(None, 3, worker_id="w", lease=5)) == 3
    assert len(backend.claim(None, 3, worker_id="w", lease=5)) == 1
    assert backend.claim(None, 3, worker_id="w", lease=5) == []


def test_claim_queue_filter_and_none_means_all(app: Errands, backend: Backend) -> None:
    @app.job()
    def work(n: int) -> None: ...

    a = work.with_options(queue="alpha").perform(1)
    b = work.with_options(queue="beta").perform(2)
    c = work.with_options(queue="gamma").perform(3)
    assert backend.claim(["nothing-here"], 10, worker_id="w", lease=5) == []
    assert _ids(backend.claim(["beta"], 10, worker_id="w", lease=5)) == [b.id]
    assert sorted(_ids(backend.claim(None, 10, worker_id="w", lease=5))) == sorted([a.id, c.id])


@pytest.mark.requires(Capability.PRIORITIES)
def test_claim_several_queues_keeps_global_order(app: Errands, backend: Backend) -> None:
    @app.job()
    def work(n: int) -> None: ...

    a = work.with_options(queue="alpha", priority=1).perform(1)
    b = work.with_options(queue="beta", priority=5).perform(2)
    work.with_options(queue="gamma", priority=9).perform(3)
    assert _ids(backend.claim(["alpha", "beta"], 10, worker_id="w", lease=5)) == [b.id, a.id]


@pytest.mark.requires(Capability.QUERIES)
def test_claim_counts_the_attempt_and_marks_running(app: Errands, backend: Backend) -> None:
    @app.job(retries=4)
    def work(n: int) -> None: ...

    handle = work.perform(1)
    before = backend.now()
    (claim,) = backend.claim(None, 1, worker_id="worker-7", lease=5)
    assert (claim.id, claim.name, claim.queue, claim.attempts, claim.max_attempts) == (
        handle.id, "work", "default", 1, 5)
    assert claim.args == "[1]" and claim.kwargs == "{}"
    assert claim.token
    info = app.get_job(handle.id)
    assert info is not None and info.state == JobState.RUNNING and info.attempts == 1
    assert info.worker_id == "worker-7"
    assert info.started_at is not None and info.started_at.timestamp() >= before - 1
    assert backend.claim(None, 1, worker_id="other", lease=5) == [], "a running job is not claimable"


def test_each_claim_gets_a_fresh_token(backend: Backend) -> None:
    backend.enqueue([new_job(), new_job()])
    claims = backend.claim(None, 2, worker_id="w", lease=5)
    assert len({c.token for c in claims}) == 2


@pytest.mark.requires(Capability.QUERIES)
def test_claim_promotes_due_scheduled_jobs(backend: Backend) -> None:
    job = new_job(run_at=backend.now() - 0.001)  # due already: available
    later = new_job(delay=0.2)
    backend.enqueue([job, later])
    assert backend.get(later.id).state == "scheduled"  # type: ignore[union-attr]
    ids: set[str] = set()

    def both_claimed() -> bool:
        ids.update(_ids(backend.claim(None, 5, worker_id="w", lease=5)))
        return ids >= {job.id, later.id}

    wait_until(both_claimed, timeout=5)
    assert ids == {job.id, later.id}


@pytest.mark.requires(Capability.QUERIES)
def test_no_double_claim_with_eight_threads(app: Errands, backend: Backend) -> None:
    @app.job()
    def work(n: int) -> None: ...

    total = 240
    handles = work.perform_many([((n,), {}) for n in range(total)])
    start = threading.Barrier(8)
    claimed: list[list[str]] = [[] for _ in range(8)]
    errors: list[Exception] = []

    def claimer(index: int) -> None:
        try:
            start.wait(10)
            while batch := backend.claim(None, 3, worker_id=f"w{index}", lease=30):
                claimed[index].extend(_ids(batch))
        except Exception as exc:  # noqa: BLE001 - reported below, not swallowed
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    every = [job_id for ids in claimed for job_id in ids]
    assert len(every) == len(set(every)), "a job was claimed twice"
    assert set(every) == {h.id for h in handles}
    assert backend.counts()["running"] == total
