"""The event bus (what metrics listen to) and the structured log line of every job outcome."""

from __future__ import annotations

import logging

import pytest

from errands import Errands, Retry
from errands.events import Event, EventBus, JobEnqueued, JobFinished, JobStarted


@pytest.fixture
def app() -> Errands:
    app = Errands("memory://", poll_interval=0.05)

    @app.job(retries=0)
    def fine(x: int) -> int:
        return x

    @app.job(retries=0)
    def broken() -> None:
        raise ValueError("first line\nsecond line")

    @app.job(retries=1, backoff=0.01)
    def again() -> None:
        raise Retry(in_=0.01)

    return app


def test_bus_subscribe_emit_unsubscribe() -> None:
    bus = EventBus()
    assert not bus.listening
    seen: list[Event] = []
    unsubscribe = bus.subscribe(seen.append)
    bus.subscribe(lambda event: 1 / 0)  # a broken listener is logged; the others still hear
    assert bus.listening
    bus.emit(JobStarted("id", "n", "q", 1))
    unsubscribe()
    bus.emit(JobStarted("id2", "n", "q", 1))
    assert seen == [JobStarted("id", "n", "q", 1)]


def test_app_and_worker_emit_enqueued_started_finished(app: Errands) -> None:
    seen: list[Event] = []
    app.events.subscribe(seen.append)
    first = app.perform("fine", 1)
    app.perform("broken")
    app.run_worker(burst=True, install_signals=False)
    enqueued = [e for e in seen if isinstance(e, JobEnqueued)]
    assert [(e.name, e.created) for e in enqueued] == [("fine", True), ("broken", True)]
    started = [e for e in seen if isinstance(e, JobStarted)]
    finished = {e.name: e for e in seen if isinstance(e, JobFinished)}
    assert {e.job_id for e in started} == {e.job_id for e in enqueued}
    assert finished["fine"].outcome == "succeeded" and finished["fine"].job_id == first.id
    assert finished["broken"].outcome == "failed" and finished["broken"].error.startswith("ValueError: first line")
    assert all(e.duration >= 0 for e in finished.values())


def test_every_outcome_is_logged_with_structured_fields(app: Errands, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="errands.worker"):
        ok, bad, retried = app.perform("fine", 1), app.perform("broken"), app.perform("again")
        app.run_worker(burst=True, install_signals=False)
    records = {(r.job_id, r.outcome): r for r in caplog.records if hasattr(r, "outcome")}  # type: ignore[attr-defined]
    success = records[(ok.id, "succeeded")]
    assert success.levelno == logging.DEBUG and success.job_name == "fine" and success.queue == "default"  # type: ignore[attr-defined]
    assert success.attempt == 1 and success.max_attempts == 1 and success.duration >= 0  # type: ignore[attr-defined]
    assert f"job fine {ok.id} succeeded in" in success.getMessage()
    failure = records[(bad.id, "failed")]
    assert failure.levelno == logging.ERROR and failure.error == "ValueError: first line"  # type: ignore[attr-defined]
    assert failure.getMessage().endswith("(queue default, attempt 1/1): ValueError: first line")
    retry = records[(retried.id, "retried")]
    assert retry.levelno == logging.WARNING and "retrying in" in retry.getMessage()
