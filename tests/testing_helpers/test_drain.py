"""drain(app): every runnable job runs here, in the test's thread, with the worker's rules."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from errands import Errands, Fail, JobState, Retry, current_job
from errands.events import Event, JobFinished, JobStarted
from errands.testing import drain


@pytest.fixture
def app() -> Errands:
    return Errands("memory://")


def test_it_runs_sync_and_async_handlers_in_this_thread(app: Errands, flavour: str) -> None:
    seen: dict[str, Any] = {}

    if flavour == "sync":
        @app.job()
        def resize(image_id: str, width: int = 256) -> dict[str, Any]:
            seen.update(thread=threading.get_ident(), job=current_job().id)
            return {"image": image_id, "width": width}
    else:
        @app.job()
        async def resize(image_id: str, width: int = 256) -> dict[str, Any]:
            await asyncio.sleep(0)
            seen.update(job=current_job().id)
            return {"image": image_id, "width": width}

    handle = resize.perform("img-1", width=64)
    result = drain(app)
    assert (result.succeeded, result.total, result.stopped) == (1, 1, "idle")
    assert result.counts == {"succeeded": 1, "failed": 0, "retried": 0, "cancelled": 0}
    info = handle.info()
    assert info is not None and info.state is JobState.SUCCEEDED
    assert info.result == {"image": "img-1", "width": 64}
    assert seen["job"] == handle.id
    if flavour == "sync":
        assert seen["thread"] == threading.get_ident()


def test_jobs_enqueued_by_jobs_run_in_the_same_drain(app: Errands) -> None:
    order: list[str] = []

    @app.job()
    def first() -> None:
        order.append("first")
        second.perform()

    @app.job()
    def second() -> None:
        order.append("second")

    first.perform()
    assert drain(app).succeeded == 2
    assert order == ["first", "second"]


def test_it_follows_priority_and_filters_queues(app: Errands) -> None:
    order: list[str] = []

    @app.job(queue="mail")
    def mail(tag: str) -> None:
        order.append(tag)

    @app.job(queue="images")
    def image() -> None:
        order.append("image")

    mail.perform("low")
    mail.with_options(priority=9).perform("high")
    image.perform()
    assert drain(app, ["mail"]).succeeded == 2
    assert order == ["high", "low"]
    assert [j.name for j in app.list_jobs(state="available")] == ["image"]


def test_failures_are_recorded_as_a_worker_records_them(app: Errands) -> None:
    @app.job(retries=0)
    def boom() -> None:
        raise ValueError("no such user")

    @app.job()
    def refuse() -> None:
        raise Fail("account deleted")

    @app.job()
    def not_json() -> object:
        return {1, 2}

    handles = [boom.perform(), refuse.perform(), not_json.perform()]
    result = drain(app)
    assert (result.failed, result.succeeded) == (3, 0)
    errors = [result.errors[h.id] for h in handles]
    assert errors[0].startswith("ValueError: no such user") and "Traceback" in errors[0]
    assert "retries exhausted" in errors[0]
    assert errors[1].startswith("Fail: account deleted")
    assert errors[2].startswith("SerializationError")
    assert all(h.info().state is JobState.FAILED for h in handles)  # type: ignore[union-attr]


def test_a_job_whose_handler_is_gone_fails_and_the_drain_goes_on(app: Errands) -> None:
    @app.job()
    def old() -> None: ...

    @app.job()
    def new() -> None: ...

    gone, kept = old.perform(), new.perform()
    del app.registry["old"]
    result = drain(app)
    assert (result.failed, result.succeeded) == (1, 1)
    assert result.errors[gone.id].startswith("UnknownJob")
    assert kept.info().state is JobState.SUCCEEDED  # type: ignore[union-attr]


def test_propagate_raises_the_handlers_exception_after_recording_it(app: Errands) -> None:
    @app.job(retries=3)
    def boom() -> None:
        raise ValueError("no such user")

    handle = boom.perform()
    with pytest.raises(ValueError, match="no such user"):
        drain(app, propagate=True)
    info = handle.info()
    assert info is not None and info.state is JobState.SCHEDULED and info.attempts == 1


def test_propagate_lets_a_retry_request_through(app: Errands) -> None:
    @app.job()
    def later() -> None:
        raise Retry(in_=60)

    handle = later.perform()
    assert drain(app, propagate=True).retried == 1
    assert handle.info().state is JobState.SCHEDULED  # type: ignore[union-attr]


def test_max_jobs_stops_a_job_that_enqueues_itself_forever(app: Errands) -> None:
    @app.job()
    def again() -> None:
        again.perform()

    again.perform()
    result = drain(app, max_jobs=5)
    assert (result.succeeded, result.stopped) == (5, "max_jobs")
    assert len(app.list_jobs(state="available")) == 1


def test_timeout_stops_claiming(app: Errands) -> None:
    @app.job()
    def work() -> None: ...

    work.perform()
    result = drain(app, timeout=0)
    assert (result.total, result.stopped) == (0, "timeout")
    with pytest.raises(Exception, match="max_jobs"):
        drain(app, max_jobs=-1)


def test_it_emits_the_workers_events(app: Errands) -> None:
    events: list[Event] = []
    app.events.subscribe(events.append)

    @app.job()
    def work() -> None: ...

    work.perform()
    drain(app)
    started = [e for e in events if isinstance(e, JobStarted)]
    finished = [e for e in events if isinstance(e, JobFinished)]
    assert len(started) == 1 and len(finished) == 1 and finished[0].outcome == "succeeded"


def test_ctrl_c_puts_the_job_back_uncounted(app: Errands) -> None:
    @app.job()
    def interrupted() -> None:
        raise KeyboardInterrupt

    handle = interrupted.perform()
    with pytest.raises(KeyboardInterrupt):
        drain(app)
    info = handle.info()
    assert info is not None and info.state is JobState.AVAILABLE and info.attempts == 0


def test_an_async_handler_runs_even_when_the_caller_is_inside_an_event_loop(app: Errands) -> None:
    @app.job()
    async def resize(width: int) -> int:
        await asyncio.sleep(0)
        return current_job().attempt * width

    handle = resize.perform(64)

    async def an_async_test() -> None:
        assert drain(app).succeeded == 1

    asyncio.run(an_async_test())
    assert handle.info().result == 64  # type: ignore[union-attr]


def test_it_drains_a_sqlite_store_too(tmp_path: Path) -> None:
    app = Errands(f"sqlite:///{tmp_path}/jobs.db")

    @app.job()
    def double(x: int) -> int:
        return 2 * x

    handles = double.perform_many([((i,), {}) for i in range(5)])
    try:
        assert drain(app).succeeded == 5
        assert [h.info().result for h in handles] == [0, 2, 4, 6, 8]  # type: ignore[union-attr]
    finally:
        app.close()
