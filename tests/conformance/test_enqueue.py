"""Enqueue: every public form stores a job a worker can run, enqueue by id is idempotent, and a
batch is all or nothing."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from errands import Errands, JobState, SerializationError, UnknownJob
from errands.backends.base import Backend, Capability, Outcome
from tests.conftest import wait_until

from ._stored import stored_jobs
from .conftest import claim_one, new_job


def _noop_app(app: Errands):  # type: ignore[no-untyped-def]
    @app.job(queue="default", retries=2, priority=0)
    def greet(name: str, punctuation: str = "!") -> str:
        return f"hello {name}{punctuation}"

    return greet


@pytest.mark.requires(Capability.QUERIES)
def test_perform_stores_an_available_job(app: Errands) -> None:
    greet = _noop_app(app)
    handle = greet.perform("ada", punctuation="?")
    assert isinstance(handle.id, str) and handle.created
    info = app.get_job(handle.id)
    assert info is not None
    assert (info.name, info.queue, info.args, info.kwargs) == ("greet", "default", ["ada"], {"punctuation": "?"})
    assert info.state == JobState.AVAILABLE
    assert (info.attempts, info.max_attempts, info.priority) == (0, 3, 0)


def test_plain_call_runs_inline_and_enqueues_nothing(app: Errands) -> None:
    greet = _noop_app(app)
    assert greet("bob") == "hello bob!"
    assert stored_jobs(app) == 0


@pytest.mark.requires(Capability.QUERIES)
def test_perform_in_schedules_then_becomes_claimable(app: Errands, backend: Backend) -> None:
    greet = _noop_app(app)
    before = backend.now()
    handle = greet.perform_in(0.5, "ada")
    info = app.get_job(handle.id)
    assert info is not None and info.state == JobState.SCHEDULED
    assert info.run_at is not None and before + 0.45 <= info.run_at.timestamp() <= backend.now() + 0.55
    asked_at = backend.now()
    early = backend.claim(None, 10, worker_id="w", lease=1.0)
    if asked_at < info.run_at.timestamp() - 0.05:  # (a stalled machine may already be past it)
        assert early == [], "claimed before its run_at"
    claims = wait_until(lambda: backend.claim(None, 10, worker_id="w", lease=1.0), timeout=5)
    assert [c.id for c in claims] == [handle.id]


@pytest.mark.requires(Capability.QUERIES)
def test_perform_in_accepts_a_timedelta(app: Errands, backend: Backend) -> None:
    greet = _noop_app(app)
    handle = greet.perform_in(timedelta(minutes=5), "ada")
    info = app.get_job(handle.id)
    assert info is not None and info.state == JobState.SCHEDULED and info.run_at is not None
    assert abs(info.run_at.timestamp() - (backend.now() + 300)) < 5


@pytest.mark.requires(Capability.QUERIES)
def test_perform_at_future_and_past(app: Errands, backend: Backend) -> None:
    greet = _noop_app(app)
    when = datetime(2030, 1, 1, tzinfo=timezone.utc)
    future = greet.perform_at(when, "ada")
    info = app.get_job(future.id)
    assert info is not None and info.state == JobState.SCHEDULED and info.run_at == when
    past = greet.perform_at(datetime.now(timezone.utc) - timedelta(hours=1), "bob")
    info = app.get_job(past.id)
    assert info is not None and info.state == JobState.AVAILABLE
    assert [c.id for c in backend.claim(None, 10, worker_id="w", lease=1.0)] == [past.id]


@pytest.mark.requires(Capability.QUERIES)
def test_perform_at_other_timezone_is_the_same_instant(app: Errands) -> None:
    greet = _noop_app(app)
    tokyo = timezone(timedelta(hours=9))
    handle = greet.perform_at(datetime(2030, 1, 1, 9, 0, tzinfo=tokyo), "ada")
    info = app.get_job(handle.id)
    assert info is not None and info.run_at == datetime(2030, 1, 1, 0, 0, tzinfo=timezone.utc)


@pytest.mark.requires(Capability.QUERIES)
def test_perform_many_stores_each_call(app: Errands) -> None:
    greet = _noop_app(app)
    handles = greet.perform_many([(("a",), {}), (("b",), {"punctuation": "."}), ([], {"name": "c"})])
    assert len(handles) == 3 and len({h.id for h in handles}) == 3 and all(h.created for h in handles)
    infos = [app.get_job(h.id) for h in handles]
    assert [(i.args, i.kwargs) for i in infos if i] == [
        (["a"], {}), (["b"], {"punctuation": "."}), ([], {"name": "c"}),
    ]
    assert greet.perform_many([]) == []


@pytest.mark.requires(Capability.QUERIES)
def test_perform_many_is_all_or_nothing_when_one_call_is_bad(app: Errands) -> None:
    greet = _noop_app(app)
    calls = [(("ok",), {}) for _ in range(5)] + [(("bad",), {"punctuation": {1, 2}})]
    with pytest.raises(SerializationError):
        greet.perform_many(calls)
    assert sum(app.stats().values()) == 0
    assert app.list_jobs() == []


def test_perform_many_is_all_or_nothing_when_one_call_is_too_big(app: Errands) -> None:
    greet = _noop_app(app)
    huge = "x" * (app.settings.max_payload_bytes + 1)
    with pytest.raises(SerializationError, match="max_payload_bytes"):
        greet.perform_many([(("ok",), {}), ((huge,), {})])
    assert stored_jobs(app) == 0


@pytest.mark.requires(Capability.QUERIES)
def test_with_options_overrides_queue_priority_retries(app: Errands) -> None:
    greet = _noop_app(app)
    handle = greet.with_options(queue="mail", priority=9, retries=0, timeout=timedelta(seconds=3)).perform("ada")
    info = app.get_job(handle.id)
    assert info is not None
    assert (info.queue, info.priority, info.max_attempts, info.timeout) == ("mail", 9, 1, 3.0)
    plain = app.get_job(greet.perform("bob").id)
    assert plain is not None and (plain.queue, plain.priority) == ("default", 0), "with_options must copy"


def test_with_options_rejects_unknown_option(app: Errands) -> None:
    from errands import ConfigurationError

    greet = _noop_app(app)
    with pytest.raises(ConfigurationError, match="colour"):
        greet.with_options(colour="red")


@pytest.mark.requires(Capability.QUERIES)
def test_aperform_enqueues_from_asyncio(app: Errands) -> None:
    greet = _noop_app(app)

    async def main() -> list[str]:
        handles = await asyncio.gather(*(greet.aperform(str(i)) for i in range(5)))
        return [h.id for h in handles]

    ids = asyncio.run(main())
    assert len(set(ids)) == 5
    assert sorted(app.get_job(i).args[0] for i in ids) == ["0", "1", "2", "3", "4"]  # type: ignore[union-attr]


@pytest.mark.requires(Capability.QUERIES)
def test_enqueue_by_name(app: Errands, backend: Backend) -> None:
    _noop_app(app)
    now = app.perform("greet", "ada", punctuation="?")
    later = app.perform_in(60, "greet", "bob")
    at = app.perform_at(datetime(2031, 6, 1, tzinfo=timezone.utc), "greet", "cy")
    infos = {h.id: app.get_job(h.id) for h in (now, later, at)}
    assert infos[now.id].state == JobState.AVAILABLE and infos[now.id].kwargs == {"punctuation": "?"}  # type: ignore[union-attr]
    assert infos[later.id].state == JobState.SCHEDULED  # type: ignore[union-attr]
    assert infos[at.id].run_at == datetime(2031, 6, 1, tzinfo=timezone.utc)  # type: ignore[union-attr]
    with pytest.raises(UnknownJob, match="nope"):
        app.perform("nope")
    assert len(app.list_jobs()) == 3


@pytest.mark.requires(Capability.UNIQUE)
def test_enqueue_of_an_existing_id_creates_nothing(backend: Backend) -> None:
    job = new_job(args='[1]')
    first = backend.enqueue([job])
    again = backend.enqueue([job])
    assert [(e.id, e.created) for e in first] == [(job.id, True)]
    assert [(e.id, e.created) for e in again] == [(job.id, False)]
    assert backend.counts()["available"] == 1
    # even once the first is finished, the same id never makes a second job
    claim = claim_one(backend)
    assert backend.settle([Outcome(claim.id, claim.token, JobState.SUCCEEDED, result="null")]) == []
    assert [e.created for e in backend.enqueue([job])] == [False]
    record = backend.get(job.id)
    assert record is not None and record.state == "succeeded"
    assert sum(backend.counts().values()) == 1


@pytest.mark.requires(Capability.UNIQUE)
def test_backend_batch_with_a_repeated_id_keeps_one(backend: Backend) -> None:
    job = new_job()
    results = backend.enqueue([job, job, new_job()])
    assert [r.created for r in results] == [True, False, True]
    assert backend.counts()["available"] == 2


@pytest.mark.requires(Capability.QUERIES)
def test_perform_after_close_reopens(app: Errands) -> None:
    greet = _noop_app(app)
    greet.perform("a")
    app.close()
    handle = greet.perform("b")  # the backend opens again on use
    assert app.get_job(handle.id) is not None
