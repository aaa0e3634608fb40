"""errands.middleware without any vendor: hooks run in registration order around enqueue and
around each attempt (sync and async, worker and inline), see what they should, may add meta,
and a hook that raises fails only what it wraps."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from errands import ConfigurationError, Errands, JobContext, JobState, SerializationError, current_job
from errands.middleware import Enqueue, Middleware
from errands.testing import drain


class Recorder(Middleware):
    def __init__(self, name: str, log: list[Any], add: dict[str, Any] | None = None) -> None:
        self.name, self.log, self.add = name, log, add or {}

    @contextmanager
    def around_enqueue(self, enqueue: Enqueue) -> Iterator[None]:
        self.log.append((self.name, "enqueue in", enqueue.name, enqueue.queue, enqueue.count, dict(enqueue.meta)))
        enqueue.meta.update(self.add)
        yield
        self.log.append((self.name, "enqueue out", list(enqueue.ids)))

    @contextmanager
    def around_run(self, job: JobContext) -> Iterator[None]:
        self.log.append((self.name, "run in", job.name, job.attempt, job.meta, threading.current_thread().name))
        try:
            yield
        except BaseException as exc:
            self.log.append((self.name, "run raised", type(exc).__name__))
            raise
        self.log.append((self.name, "run out"))


def test_hooks_nest_in_registration_order_and_add_meta(flavour: str) -> None:
    log: list[Any] = []
    app = Errands("memory://", middleware=[Recorder("outer", log, {"a": 1})])
    app.add_middleware(Recorder("inner", log, {"b": 2}))
    seen: list[Any] = []
    if flavour == "sync":
        @app.job(queue="q")
        def work() -> None:
            seen.append((current_job().meta, threading.current_thread().name))
    else:
        @app.job(queue="q")
        async def work() -> None:
            await asyncio.sleep(0)
            seen.append((current_job().meta, threading.current_thread().name))

    handle = work.with_options(meta={"given": True}).perform()
    assert [entry[:2] for entry in log] == [("outer", "enqueue in"), ("inner", "enqueue in"),
                                           ("inner", "enqueue out"), ("outer", "enqueue out")]
    assert log[0][2:] == ("work", "q", 1, {"given": True})
    assert log[1][5] == {"given": True, "a": 1}  # the inner hook sees what the outer one added
    assert log[2][2] == log[3][2] == [handle.id]
    log.clear()
    app.run_worker(concurrency=1, burst=True)
    meta = {"given": True, "a": 1, "b": 2}
    assert [entry[:2] for entry in log] == [("outer", "run in"), ("inner", "run in"), ("inner", "run out"),
                                           ("outer", "run out")]
    assert log[0][2:5] == ("work", 1, meta)
    assert seen == [(meta, log[0][5])]  # the hook ran on the thread that ran the handler
    assert app.get_job(handle.id).meta == meta  # type: ignore[union-attr]
    app.close()


def test_the_handlers_exception_passes_through_run_hooks(flavour: str) -> None:
    log: list[Any] = []
    app = Errands("memory://", middleware=[Recorder("m", log)])
    if flavour == "sync":
        @app.job(retries=0)
        def boom() -> None:
            raise KeyError("x")
    else:
        @app.job(retries=0)
        async def boom() -> None:
            raise KeyError("x")

    handle = boom.perform()
    drain(app, propagate=False)
    assert ("m", "run raised", "KeyError") in log
    info = app.get_job(handle.id)
    assert info is not None and info.state == JobState.FAILED and "KeyError" in (info.error or "")
    app.close()


def test_a_raising_enqueue_hook_stores_nothing_and_a_raising_run_hook_fails_the_attempt() -> None:
    class Refuse(Middleware):
        def __init__(self, where: str) -> None:
            self.where = where

        @contextmanager
        def around_enqueue(self, enqueue: Enqueue) -> Iterator[None]:
            if self.where == "enqueue":
                raise RuntimeError("no enqueue today")
            yield

        @contextmanager
        def around_run(self, job: JobContext) -> Iterator[None]:
            if self.where == "run":
                raise RuntimeError("no run today")
            yield

    app = Errands("memory://", middleware=[Refuse("enqueue")])

    @app.job(retries=0)
    def work() -> None: ...

    with pytest.raises(RuntimeError, match="no enqueue today"):
        work.perform()
    assert sum(app.stats().values()) == 0
    app.middleware = [Refuse("run")]
    handle = work.perform()
    app.run_worker(concurrency=1, burst=True)
    info = app.get_job(handle.id)
    assert info is not None and info.state == JobState.FAILED and "no run today" in (info.error or "")
    app.close()


def test_meta_a_hook_adds_is_checked_like_any_meta() -> None:
    app = Errands("memory://", middleware=[Recorder("m", [], {"when": object()})])

    @app.job()
    def work() -> None: ...

    with pytest.raises(SerializationError, match="meta"):
        work.perform()
    assert sum(app.stats().values()) == 0
    app.close()


def test_perform_many_is_one_enqueue_call() -> None:
    log: list[Any] = []
    app = Errands("memory://", middleware=[Recorder("m", log)])

    @app.job()
    def work(n: int) -> None: ...

    handles = work.perform_many([((n,), {}) for n in range(4)])
    assert [entry[1] for entry in log] == ["enqueue in", "enqueue out"]
    assert log[0][4] == 4 and log[1][2] == [h.id for h in handles]
    app.close()


def test_only_middleware_is_accepted() -> None:
    with pytest.raises(ConfigurationError, match="Middleware"):
        Errands("memory://", middleware=[object()])  # type: ignore[list-item]
