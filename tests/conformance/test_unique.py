"""Unique jobs: a second enqueue with the same unique_key, while the first is unfinished,
returns the first; once it finishes a new job is created."""

from __future__ import annotations

import threading

import pytest

from errands import Errands, JobState
from errands.backends.base import Backend, Capability, Outcome

from .conftest import claim_one

pytestmark = pytest.mark.requires(Capability.UNIQUE)


@pytest.fixture
def report(app: Errands):  # type: ignore[no-untyped-def]
    @app.job()
    def build_report(day: str) -> None: ...

    return build_report


def test_same_key_returns_the_unfinished_job(app: Errands, report) -> None:  # type: ignore[no-untyped-def]
    first = report.with_options(unique_key="report-2030-01-01").perform("2030-01-01")
    second = report.with_options(unique_key="report-2030-01-01").perform("2030-01-01")
    assert first.created and not second.created
    assert second.id == first.id
    other = report.with_options(unique_key="report-2030-01-02").perform("2030-01-02")
    assert other.created and other.id != first.id
    assert app.stats()["available"] == 2


@pytest.mark.parametrize("how", ["scheduled", "running"])
def test_key_held_while_scheduled_or_running(app: Errands, backend: Backend, report, how: str) -> None:  # type: ignore[no-untyped-def]
    keyed = report.with_options(unique_key="k")
    first = keyed.perform_in(3600, "a") if how == "scheduled" else keyed.perform("a")
    if how == "running":
        claim_one(backend)
    again = keyed.perform("b")
    assert (again.id, again.created) == (first.id, False)
    assert app.get_job(first.id).args == ["a"]  # type: ignore[union-attr]


@pytest.mark.parametrize("end", [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED])
def test_after_it_finishes_a_new_job_is_created(app: Errands, backend: Backend, report, end: JobState) -> None:  # type: ignore[no-untyped-def]
    keyed = report.with_options(unique_key="nightly")
    first = keyed.perform("a")
    if end == JobState.CANCELLED:
        assert app.cancel_job(first.id) == "cancelled"
    else:
        claim = claim_one(backend)
        assert backend.settle([Outcome(claim.id, claim.token, end, result="null", error="x")]) == []
    second = keyed.perform("b")
    assert second.created and second.id != first.id
    third = keyed.perform("c")
    assert (third.id, third.created) == (second.id, False)
    assert app.get_job(first.id).state == end  # type: ignore[union-attr]


def test_perform_many_with_a_key_keeps_one(app: Errands, report) -> None:  # type: ignore[no-untyped-def]
    handles = report.with_options(unique_key="batch").perform_many([(("a",), {}), (("b",), {}), (("c",), {})])
    assert [h.created for h in handles] == [True, False, False]
    assert len({h.id for h in handles}) == 1
    assert sum(app.stats().values()) == 1


def test_concurrent_enqueues_with_one_key_make_one_job(app: Errands, report) -> None:  # type: ignore[no-untyped-def]
    keyed = report.with_options(unique_key="race")
    barrier = threading.Barrier(8)
    results: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def enqueue() -> None:
        barrier.wait(10)
        handle = keyed.perform("x")
        with lock:
            results.append((handle.id, handle.created))

    threads = [threading.Thread(target=enqueue) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 8
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert sum(app.stats().values()) == 1


def test_retry_of_a_finished_keyed_job_does_not_make_two(app: Errands, report) -> None:  # type: ignore[no-untyped-def]
    keyed = report.with_options(unique_key="once")
    first = keyed.perform("a")
    assert app.cancel_job(first.id) == "cancelled"
    second = keyed.perform("b")
    assert second.created
    # the key is held by the second job now: retrying the first would make two with one key
    assert app.retry_job(first.id) is False
    assert app.stats()["available"] == 1


@pytest.mark.parametrize("key", ["x'; DROP TABLE jobs;--", "*", "{tag}", "a:b", "q\nq", "%", "_", "k" * 512])
def test_unique_keys_are_data(app: Errands, report, key: str) -> None:  # type: ignore[no-untyped-def]
    first = report.with_options(unique_key=key).perform("a")
    plain = report.with_options(unique_key="plain").perform("p")
    again = report.with_options(unique_key=key).perform("b")
    assert (again.id, again.created) == (first.id, False)
    assert app.get_job(first.id).unique_key == key  # type: ignore[union-attr]
    assert plain.id != first.id and sum(app.stats().values()) == 2


# unique_for (a throttle) and debounce ------------------------------------------------------------


@pytest.mark.requires(Capability.QUERIES)
def test_unique_for_throttles_by_name_and_arguments(app: Errands) -> None:
    from datetime import timedelta

    runs: list[int] = []

    @app.job(name="digest", unique_for=timedelta(hours=1))
    def digest(user_id: int) -> None:
        runs.append(user_id)

    first = digest.perform(7)
    app.run_worker(concurrency=1, burst=True)
    again = digest.perform(7)
    other = digest.perform(8)
    app.run_worker(concurrency=1, burst=True)

    assert first.created and not again.created and again.id == first.id, "finished, but within the hour"
    assert other.created and other.id != first.id, "other arguments: another key"
    assert sorted(runs) == [7, 8]


@pytest.mark.requires(Capability.QUERIES)
def test_debounce_runs_once_with_the_last_arguments(app: Errands) -> None:
    runs: list[str] = []

    @app.job(name="reindex", debounce=0.4)
    def reindex(doc: str, version: int) -> None:
        runs.append(f"{doc}@{version}")

    handles = [reindex.with_options(unique_key="reindex:doc-1").perform("doc-1", v) for v in range(5)]

    assert handles[0].created and all(not h.created and h.id == handles[0].id for h in handles[1:])
    info = app.get_job(handles[0].id)
    assert info is not None and info.state == JobState.SCHEDULED and info.args == ["doc-1", 4]
    with app.worker(concurrency=2):
        assert handles[0].wait(10).state == JobState.SUCCEEDED
    assert runs == ["doc-1@4"]


def test_throttle_and_debounce_options_are_checked(app: Errands) -> None:
    from errands import ConfigurationError

    with pytest.raises(ConfigurationError, match="unique_for"):
        app.job(name="a", unique_for=-1)
    with pytest.raises(ConfigurationError, match="debounce"):
        app.job(name="b", debounce="soon")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="don't mix"):
        app.job(name="c", unique_for=5, debounce=5)
