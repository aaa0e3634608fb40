"""Workflows (issue #9): chains hand each result to the next step; groups run members in
parallel and a callback once, when all finished, with the counts; a failure policy per step;
progress visible; the whole workflow stored in one atomic enqueue; a lost wake-up delays a
workflow but never stalls it."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from errands import Errands, JobState, SerializationError
from errands.backends.base import Capability
from errands.worker import Worker

from .conftest import make_app

pytestmark = pytest.mark.requires(Capability.WORKFLOWS, Capability.QUERIES)


def test_a_chain_hands_each_result_to_the_next_step(app: Errands) -> None:
    @app.job(name="add")
    def add(x: int, y: int = 1) -> int:
        return x + y

    with app.worker(concurrency=4):
        handle = app.chain(add.s(1), add.s(y=10), add.s()).perform()
        final = handle.wait(20)

    assert final.state == JobState.SUCCEEDED and final.result == 13
    assert final.id == handle.ids[-1] and len(handle.ids) == 3
    assert handle.progress().as_dict()["succeeded"] == 3
    progress = app.progress(handle.ids[1])
    assert progress is not None and progress.done and progress.total == 1


def test_a_failed_step_fails_the_rest_unless_told_to_run(app: Errands) -> None:
    @app.job(name="boom", retries=0)
    def boom(*args: Any) -> None:
        raise RuntimeError("boom")

    @app.job(name="echo")
    def echo(value: Any, tag: str) -> list[Any]:
        return [value, tag]

    with app.worker(concurrency=4):
        failing = app.chain(boom.s(), echo.s("never"), echo.s("nor this")).perform()
        tolerant = app.chain(boom.s(), echo.s("anyway").on_failure("run")).perform()
        last = failing.wait(20)
        ran = tolerant.wait(20)

    assert last.state == JobState.FAILED and "DependencyFailed" in (last.error or "")
    middle = app.get_job(failing.ids[1])
    assert middle is not None and middle.state == JobState.FAILED and failing.ids[0] in (middle.error or "")
    assert middle.attempts == 1, "a failed dependency is not retried"
    assert ran.state == JobState.SUCCEEDED and ran.result == [None, "anyway"]


def test_a_group_callback_runs_once_with_the_counts(app: Errands, url: str) -> None:
    calls: list[dict[str, Any]] = []
    lock = threading.Lock()

    def define(target: Errands) -> tuple[Any, Any, Any]:
        @target.job(name="square")
        def square(n: int) -> int:
            return n * n

        @target.job(name="broken", retries=0)
        def broken() -> None:
            raise ValueError("bad member")

        @target.job(name="collect")
        def collect(summary: dict[str, Any], label: str) -> int:
            with lock:
                calls.append({**summary, "label": label})
            return int(summary["succeeded"])

        return square, broken, collect

    square, broken, collect = define(app)
    other = make_app(url) if Capability.MULTI_PROCESS in app.backend.capabilities else app
    if other is not app:
        define(other)
    members = [square.s(n) for n in range(12)] + [broken.s()]
    second = Worker(other, concurrency=4, install_signals=False)
    try:
        with app.worker(concurrency=4):
            second.start()
            handle = app.group(members).then(collect.s("album")).perform()
            done = handle.wait(30)
            for member in handle.ids[:-1]:  # every member finished before the callback did
                info = app.get_job(member)
                assert info is not None and info.finished_at is not None and done.finished_at is not None
                assert info.finished_at <= done.finished_at
    finally:
        second.stop(5)
        if other is not app:
            other.close()

    assert done.state == JobState.SUCCEEDED and done.result == 12
    assert len(calls) == 1, "the callback fires exactly once"
    summary = calls[0]
    assert (summary["total"], summary["succeeded"], summary["failed"], summary["cancelled"]) == (13, 12, 1, 0)
    assert summary["results"] == [n * n for n in range(12)] + [None]
    assert summary["label"] == "album"
    progress = app.progress(handle.id)  # type: ignore[arg-type]
    assert progress is not None and (progress.total, progress.succeeded, progress.failed) == (13, 12, 1)


def test_a_callback_told_to_fail_fails_with_its_group(app: Errands) -> None:
    @app.job(name="ok")
    def ok() -> None: ...

    @app.job(name="broken", retries=0)
    def broken() -> None:
        raise ValueError("bad member")

    @app.job(name="collect")
    def collect(summary: dict[str, Any]) -> None: ...

    with app.worker(concurrency=4):
        handle = app.group([ok.s(), broken.s()]).then(collect.s().on_failure("fail")).perform()
        final = handle.wait(20)
    assert final.state == JobState.FAILED and "DependencyFailed" in (final.error or "")


def test_waiting_steps_show_their_progress(app: Errands) -> None:
    @app.job(name="step")
    def step(*args: Any) -> None: ...

    handle = app.group([step.s(1), step.s(2)]).then(step.s()).perform()

    callback = app.get_job(handle.id)  # type: ignore[arg-type]
    assert callback is not None and callback.state == JobState.SCHEDULED
    assert callback.meta["workflow"]["after"] == list(handle.ids[:2])
    progress = app.progress(handle.id)  # type: ignore[arg-type]
    assert progress is not None and (progress.total, progress.waiting, progress.done) == (2, 2, False)
    assert callback.progress == progress, "get_job carries a waiting step's progress"
    assert app.progress(handle.ids[0]) is None, "a member waits on nothing"


def test_a_workflow_is_stored_all_or_nothing(app: Errands) -> None:
    @app.job(name="step")
    def step(*args: Any) -> None: ...

    with pytest.raises(SerializationError):
        app.chain(step.s(1), step.s(object())).perform()
    with pytest.raises(SerializationError):
        app.group([step.s(1), step.s({1, 2})]).then(step.s()).perform()
    assert sum(app.stats().values()) == 0


def test_a_lost_wake_up_delays_but_never_stalls(app: Errands, monkeypatch: pytest.MonkeyPatch) -> None:
    import errands.worker.gate
    import errands.workflows

    monkeypatch.setattr(errands.workflows, "WAIT_POLL", 0.5)
    monkeypatch.setattr(errands.worker.gate, "WAIT_POLL", 0.5)

    @app.job(name="step")
    def step(*args: Any) -> str:
        return "ran"

    handle = app.chain(step.s(1), step.s()).perform()
    assert app.cancel_job(handle.ids[0]) == "cancelled"  # nobody wakes the next step: it wakes by itself
    with app.worker(concurrency=2):
        final = handle.wait(20)
    assert final.state == JobState.FAILED and "cancelled" in (final.error or "")
