"""Queries: get_job's fields, list_jobs filters/order/paging, stats, purge."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from errands import ConfigurationError, Errands, JobState
from errands.backends.base import Backend, Capability, Outcome
from tests.conftest import wait_until

from .conftest import claim_one

STATES = {"scheduled", "available", "running", "succeeded", "failed", "cancelled"}


@pytest.fixture
def jobs(app: Errands):  # type: ignore[no-untyped-def]
    @app.job(queue="mail", retries=2, priority=3)
    def send(to: str, subject: str = "") -> dict:
        return {"sent": to}

    @app.job(queue="media")
    def resize(image: str) -> None: ...

    return send, resize


@pytest.mark.requires(Capability.QUERIES)
def test_get_job_fields_through_a_life(app: Errands, backend: Backend, jobs) -> None:  # type: ignore[no-untyped-def]
    send, _ = jobs
    before = datetime.now(timezone.utc) - timedelta(seconds=2)
    handle = send.perform("ada@example.com", subject="hi")
    info = app.get_job(handle.id)
    assert info is not None
    assert info.id == handle.id and handle.info() == info
    assert (info.name, info.queue, info.args, info.kwargs) == ("send", "mail", ["ada@example.com"], {"subject": "hi"})
    assert (info.state, info.attempts, info.max_attempts, info.priority) == (JobState.AVAILABLE, 0, 3, 3)
    assert info.created_at is not None and info.created_at.tzinfo is not None
    assert before <= info.created_at <= datetime.now(timezone.utc) + timedelta(seconds=2)
    assert info.run_at is not None and abs((info.run_at - info.created_at).total_seconds()) < 1
    assert (info.started_at, info.finished_at, info.result, info.error) == (None, None, None, None)

    claim = claim_one(backend)
    running = app.get_job(handle.id)
    assert running is not None and running.state == JobState.RUNNING and running.started_at is not None
    assert running.started_at >= info.created_at - timedelta(seconds=1)
    backend.settle([Outcome(claim.id, claim.token, JobState.SUCCEEDED, result='{"sent":"ada@example.com"}')])
    done = app.get_job(handle.id)
    assert done is not None and done.state == JobState.SUCCEEDED and done.attempts == 1
    assert done.result == {"sent": "ada@example.com"}
    assert done.finished_at is not None and done.finished_at >= done.started_at  # type: ignore[operator]
    assert done.state == "succeeded", "JobState compares equal to its name"


@pytest.mark.requires(Capability.QUERIES)
def test_get_job_unknown_is_none(app: Errands) -> None:
    assert app.get_job("0190c0de-0000-7000-8000-000000000000") is None
    assert app.get_job("not even an id") is None


@pytest.mark.requires(Capability.QUERIES)
def test_list_jobs_filters_and_newest_first(app: Errands, backend: Backend, jobs) -> None:  # type: ignore[no-untyped-def]
    send, resize = jobs
    s1 = send.perform("a")
    r1 = resize.perform("x.png")
    s2 = send.perform("b")
    r2 = resize.perform_in(3600, "y.png")
    assert [j.id for j in app.list_jobs()] == [r2.id, s2.id, r1.id, s1.id]
    assert [j.id for j in app.list_jobs(queue="mail")] == [s2.id, s1.id]
    assert [j.id for j in app.list_jobs(name="resize")] == [r2.id, r1.id]
    assert [j.id for j in app.list_jobs(state="scheduled")] == [r2.id]
    assert [j.id for j in app.list_jobs(state=JobState.AVAILABLE, queue="media")] == [r1.id]
    assert app.list_jobs(queue="mail", name="resize") == []
    assert app.list_jobs(state="failed") == []
    assert [j.id for j in app.list_jobs(limit=2)] == [r2.id, s2.id]


@pytest.mark.requires(Capability.QUERIES)
def test_list_jobs_pages_with_before(app: Errands, jobs) -> None:  # type: ignore[no-untyped-def]
    send, _ = jobs
    ids = [h.id for h in send.perform_many([((str(i),), {}) for i in range(25)])]
    newest_first = list(reversed(ids))
    seen: list[str] = []
    before = None
    while page := app.list_jobs(limit=10, before=before):
        assert len(page) <= 10
        seen += [j.id for j in page]
        before = page[-1].id
    assert seen == newest_first
    assert [j.id for j in app.list_jobs(before=ids[3], limit=100)] == [ids[2], ids[1], ids[0]]


def test_list_jobs_rejects_bad_arguments(app: Errands) -> None:
    with pytest.raises(ConfigurationError):
        app.list_jobs(state="zombie")
    for limit in (0, -1, 10**9, True, 1.5):
        with pytest.raises(ConfigurationError):
            app.list_jobs(limit=limit)  # type: ignore[arg-type]


@pytest.mark.requires(Capability.QUERIES)
def test_stats_totals_and_by_queue(app: Errands, backend: Backend, jobs) -> None:  # type: ignore[no-untyped-def]
    send, resize = jobs
    empty = app.stats()
    assert empty == {state: 0 for state in STATES}
    send.perform_many([(("a",), {}), (("b",), {}), (("c",), {})])
    resize.perform_in(3600, "later.png")
    resize.perform("now.png")
    (claim,) = backend.claim(["media"], 1, worker_id="w", lease=30)
    failing = backend.claim(["mail"], 1, worker_id="w", lease=30)[0]
    backend.settle([Outcome(failing.id, failing.token, JobState.FAILED, error="x")])
    stats = app.stats()
    assert stats == {"scheduled": 1, "available": 2, "running": 1, "succeeded": 0, "failed": 1, "cancelled": 0}
    nested = app.stats(by_queue=True)
    assert nested["mail"] == {"scheduled": 0, "available": 2, "running": 0, "succeeded": 0, "failed": 1,
                              "cancelled": 0}
    assert nested["media"] == {"scheduled": 1, "available": 0, "running": 1, "succeeded": 0, "failed": 0,
                               "cancelled": 0}
    assert set(nested) == {"mail", "media"}
    assert claim.queue == "media"


@pytest.mark.requires(Capability.QUERIES)
def test_cancel_job_answers(app: Errands, backend: Backend, jobs) -> None:  # type: ignore[no-untyped-def]
    send, _ = jobs
    available, scheduled, running = send.perform("a"), send.perform_in(3600, "b"), send.perform("c")
    claim = backend.claim(None, 3, worker_id="w", lease=30)
    assert [c.id for c in claim] == [available.id, running.id]
    backend.settle([Outcome(available.id, claim[0].token, JobState.SUCCEEDED)])
    queued = send.perform("d")
    assert app.cancel_job(queued.id) == "cancelled"
    assert app.cancel_job(scheduled.id) == "cancelled"
    assert app.cancel_job(running.id) == "requested"
    assert app.cancel_job(available.id) == "finished"
    assert app.cancel_job(queued.id) == "finished"
    assert app.cancel_job("0190c0de-0000-7000-8000-000000000000") == "not_found"
    assert app.get_job(queued.id).state == JobState.CANCELLED  # type: ignore[union-attr]
    assert app.get_job(queued.id).finished_at is not None  # type: ignore[union-attr]
    assert app.get_job(running.id).state == JobState.RUNNING  # type: ignore[union-attr]
    assert backend.claim(None, 5, worker_id="w", lease=30) == [], "cancelled jobs are never claimed"


def _finish(backend: Backend, state: JobState, count: int) -> list[str]:
    claims = backend.claim(None, count, worker_id="w", lease=30)
    assert len(claims) == count
    assert backend.settle([Outcome(c.id, c.token, state, error="e") for c in claims]) == []
    return [c.id for c in claims]


@pytest.mark.requires(Capability.QUERIES)
def test_purge_returns_count_and_respects_state(app: Errands, backend: Backend, jobs) -> None:  # type: ignore[no-untyped-def]
    send, _ = jobs
    send.perform_many([((str(i),), {}) for i in range(5)])
    succeeded = _finish(backend, JobState.SUCCEEDED, 3)
    failed = _finish(backend, JobState.FAILED, 1)
    left = send.perform("still waiting")
    assert app.purge("succeeded", older_than=timedelta(hours=1)) == 0
    assert app.purge("succeeded") == 3
    assert all(app.get_job(i) is None for i in succeeded)
    assert app.get_job(failed[0]) is not None and app.get_job(left.id) is not None
    assert app.purge("succeeded") == 0
    assert app.purge(JobState.FAILED) == 1
    assert app.stats()["available"] == 2


@pytest.mark.requires(Capability.QUERIES)
def test_purge_older_than(app: Errands, backend: Backend, jobs) -> None:  # type: ignore[no-untyped-def]
    send, _ = jobs
    send.perform_many([(("old",), {}), (("new",), {})])
    (old,) = _finish(backend, JobState.SUCCEEDED, 1)
    finished = app.get_job(old).finished_at  # type: ignore[union-attr]
    assert finished is not None
    wait_until(lambda: backend.now() - finished.timestamp() > 0.6, timeout=5, message="the old job to age")
    (new,) = _finish(backend, JobState.SUCCEEDED, 1)
    assert app.purge("succeeded", older_than=0.5) == 1
    assert app.get_job(old) is None and app.get_job(new) is not None


def test_purge_refuses_unfinished_states(app: Errands) -> None:
    for state in ("available", "running", "scheduled", "zombie"):
        with pytest.raises(ConfigurationError):
            app.purge(state)
    for older in (-1, float("nan"), float("inf")):
        with pytest.raises(ConfigurationError):
            app.purge("succeeded", older_than=older)
