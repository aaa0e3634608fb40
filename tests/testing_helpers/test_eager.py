"""eager(app): perform* runs the job before it returns, still through the store and the codec."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from errands import Errands, JobState, Retry, SerializationError
from errands.testing import drain, eager


@pytest.fixture
def app() -> Errands:
    return Errands("memory://")


def test_every_perform_form_runs_at_once(app: Errands, flavour: str) -> None:
    ran: list[Any] = []

    if flavour == "sync":
        @app.job()
        def greet(name: str, punctuation: str = "!") -> str:
            ran.append(name)
            return f"hello {name}{punctuation}"
    else:
        @app.job()
        async def greet(name: str, punctuation: str = "!") -> str:
            ran.append(name)
            return f"hello {name}{punctuation}"

    with eager(app):
        handle = greet.perform("ada")
        greet.perform_in(timedelta(hours=1), "bob")
        greet.perform_at(datetime(2100, 1, 1, tzinfo=timezone.utc), "cy")
        greet.perform_many([(("dee",), {}), (("eve",), {"punctuation": "?"})])
        app.perform("greet", "fay")
        greet.with_options(queue="other").perform("gus")
        asyncio.run(greet.aperform("hal"))
    assert ran == ["ada", "bob", "cy", "dee", "eve", "fay", "gus", "hal"]
    info = handle.info()
    assert info is not None and info.state is JobState.SUCCEEDED and info.result == "hello ada!"
    assert app.stats()["succeeded"] == 8


def test_arguments_still_go_through_json(app: Errands) -> None:
    @app.job()
    def remind(when: object) -> None:
        raise AssertionError("must not run")

    with eager(app), pytest.raises(SerializationError, match="args\\[0\\]"):
        remind.perform(datetime.now(timezone.utc))
    assert app.list_jobs() == []


def test_the_handler_sees_arguments_as_json_gives_them_back(app: Errands) -> None:
    seen: list[Any] = []

    @app.job()
    def store(payload: dict[str, Any]) -> None:
        seen.append(payload)

    original = {"ids": [1, 2], "nested": {"ok": True}}
    with eager(app):
        store.perform(original)
    assert seen == [original] and seen[0] is not original


def test_an_error_reaches_the_caller_after_being_recorded(app: Errands) -> None:
    @app.job(retries=2)
    def boom() -> None:
        raise ValueError("no such user")

    with eager(app), pytest.raises(ValueError, match="no such user"):
        boom.perform()
    [job] = app.list_jobs(name="boom")
    assert job.state is JobState.SCHEDULED and job.attempts == 1 and "no such user" in (job.error or "")


def test_propagate_false_leaves_the_outcome_on_the_job(app: Errands) -> None:
    @app.job(retries=0)
    def boom() -> None:
        raise ValueError("no such user")

    @app.job()
    def later() -> None:
        raise Retry(in_=60)

    with eager(app, propagate=False):
        failed = boom.perform()
        scheduled = later.perform()
    assert failed.info().state is JobState.FAILED  # type: ignore[union-attr]
    assert scheduled.info().state is JobState.SCHEDULED  # type: ignore[union-attr]


def test_jobs_performed_by_jobs_run_inline_too(app: Errands) -> None:
    order: list[str] = []

    @app.job()
    def signup(user_id: int) -> None:
        order.append("signup")
        send_welcome.perform(user_id)
        order.append("signup done")

    @app.job(queue="mail")
    def send_welcome(user_id: int) -> None:
        order.append(f"welcome {user_id}")

    with eager(app):
        signup.perform(42)
    assert order == ["signup", "welcome 42", "signup done"]


def test_outside_the_block_perform_only_enqueues_again(app: Errands) -> None:
    ran: list[int] = []

    @app.job()
    def work(n: int) -> None:
        ran.append(n)

    with eager(app):
        with eager(app, propagate=False):
            work.perform(1)
        work.perform(2)  # the outer block still holds
    work.perform(3)
    assert ran == [1, 2]
    assert "_enqueue" not in vars(app)
    assert drain(app).succeeded == 1 and ran == [1, 2, 3]


def test_the_switch_is_undone_when_the_block_raises(app: Errands) -> None:
    with pytest.raises(RuntimeError), eager(app):
        raise RuntimeError
    assert "_enqueue" not in vars(app)
