"""The worker, with sync and async handlers alike: burst, concurrency, timeouts, cancel,
current_job(), start/stop and graceful shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from errands import Errands, ErrandsError, JobState, JobTimeout, current_job
from errands.backends.base import Capability
from tests.conftest import wait_until


def _state(app: Errands, job_id: str, *states: str, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    def reached():  # type: ignore[no-untyped-def]
        info = app.get_job(job_id)
        return info if info is not None and info.state in states else None

    return wait_until(reached, timeout=timeout, message=f"job {job_id} to reach {states}")


@pytest.mark.requires(Capability.QUERIES)
def test_burst_runs_everything_then_returns(app: Errands, flavour: str) -> None:
    if flavour == "sync":
        @app.job(name="square")
        def square(n: int) -> int:
            return n * n
    else:
        @app.job(name="square")
        async def square(n: int) -> int:
            await asyncio.sleep(0.001)
            return n * n

    handles = square.perform_many([((n,), {}) for n in range(30)])
    later = square.perform_in(3600, 99)
    app.run_worker(concurrency=4, burst=True)
    for n, handle in enumerate(handles):
        info = app.get_job(handle.id)
        assert info is not None and info.state == JobState.SUCCEEDED and info.result == n * n
        assert info.attempts == 1
    assert app.get_job(later.id).state == JobState.SCHEDULED  # type: ignore[union-attr]
    assert app.stats()["succeeded"] == 30


@pytest.mark.requires(Capability.QUERIES)
def test_burst_honours_queues(app: Errands) -> None:
    @app.job()
    def work(n: int) -> int:
        return n

    mine = work.with_options(queue="mine").perform(1)
    theirs = work.with_options(queue="theirs").perform(2)
    app.run_worker(queues=["mine"], concurrency=2, burst=True)
    assert app.get_job(mine.id).state == JobState.SUCCEEDED  # type: ignore[union-attr]
    assert app.get_job(theirs.id).state == JobState.AVAILABLE  # type: ignore[union-attr]


@pytest.mark.requires(Capability.QUERIES)
def test_concurrency_is_respected(app: Errands, flavour: str) -> None:
    limit = 3
    lock = threading.Lock()
    current = 0
    peak = 0
    full = threading.Event()

    def enter() -> None:
        nonlocal current, peak
        with lock:
            current += 1
            peak = max(peak, current)
            if current >= limit:
                full.set()

    def leave() -> None:
        nonlocal current
        with lock:
            current -= 1

    if flavour == "sync":
        @app.job(name="busy")
        def busy(n: int) -> None:
            enter()
            try:
                full.wait(5)  # hold the slot until all slots were seen busy at once
                time.sleep(0.02)
            finally:
                leave()
    else:
        @app.job(name="busy")
        async def busy(n: int) -> None:
            enter()
            try:
                deadline = time.monotonic() + 5
                while not full.is_set() and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
                await asyncio.sleep(0.02)
            finally:
                leave()

    busy.perform_many([((n,), {}) for n in range(12)])
    app.run_worker(concurrency=limit, burst=True)
    assert app.stats()["succeeded"] == 12
    assert peak == limit, f"at most {limit} at once, and the worker should use all {limit} slots (peak {peak})"


@pytest.mark.requires(Capability.QUERIES)
def test_sync_timeout_frees_the_slot_and_stops_a_python_loop(app: Errands) -> None:
    interrupted = threading.Event()

    @app.job(retries=0, timeout=0.3)
    def spins() -> None:
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline:  # pure Python, never yields
                pass
        except JobTimeout:
            interrupted.set()
            raise

    @app.job()
    def quick() -> str:
        return "ran"

    with app.worker(concurrency=1):
        stuck = spins.perform()
        _state(app, stuck.id, "running")
        after = quick.perform()
        info = _state(app, stuck.id, "failed")
        done = _state(app, after.id, "succeeded", timeout=5)
    assert "JobTimeout" in (info.error or "") and "0.3" in (info.error or "")
    assert done.result == "ran"
    assert interrupted.wait(5), "the timed-out thread kept spinning"


@pytest.mark.requires(Capability.QUERIES)
def test_async_timeout_retries_then_fails(app: Errands) -> None:
    cancelled = []

    @app.job(retries=1, backoff=0, timeout=0.2)
    async def hangs() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(current_job().attempt)
            raise

    @app.job()
    async def quick() -> str:
        return "ran"

    with app.worker(concurrency=1):
        handle = hangs.perform()
        _state(app, handle.id, "running")
        waiting = quick.perform()  # the only slot is taken until the timeout frees it
        info = _state(app, handle.id, "failed")
        done = _state(app, waiting.id, "succeeded", timeout=5)
    assert info.attempts == 2 and "JobTimeout" in (info.error or "")
    wait_until(lambda: cancelled == [1, 2], timeout=5, message="both attempts' tasks to be cancelled")
    assert done.result == "ran"


@pytest.mark.requires(Capability.QUERIES)
def test_timeout_from_with_options(app: Errands, flavour: str) -> None:
    if flavour == "sync":
        @app.job(name="sleepy", retries=0)
        def sleepy() -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                time.sleep(0.01)
    else:
        @app.job(name="sleepy", retries=0)
        async def sleepy() -> None:
            await asyncio.sleep(10)

    with app.worker(concurrency=1):
        handle = sleepy.with_options(timeout=0.2).perform()
        info = _state(app, handle.id, "failed")
    assert "JobTimeout" in (info.error or "")


@pytest.mark.requires(Capability.QUERIES)
def test_cancel_a_running_async_job(app: Errands) -> None:
    started = threading.Event()

    @app.job(retries=3)
    async def long_task() -> None:
        started.set()
        await asyncio.sleep(30)

    with app.worker(concurrency=1):
        handle = long_task.perform()
        assert started.wait(5)
        assert app.cancel_job(handle.id) == "requested"
        info = _state(app, handle.id, "cancelled", timeout=5)
    assert info.attempts == 1 and info.finished_at is not None


@pytest.mark.parametrize("how", ["raises", "returns"])
@pytest.mark.requires(Capability.QUERIES)
def test_cancel_a_running_sync_job_that_checks(app: Errands, how: str) -> None:
    started = threading.Event()

    @app.job(retries=3)
    def long_task() -> None:
        started.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if current_job().cancelled:
                if how == "raises":
                    raise RuntimeError("stopping: cancelled")
                return  # returning early after a cancel ends the job cancelled, not succeeded
            time.sleep(0.01)

    with app.worker(concurrency=1):
        handle = long_task.perform()
        assert started.wait(5)
        assert app.cancel_job(handle.id) == "requested"
        info = _state(app, handle.id, "cancelled", timeout=5)
    assert info.attempts == 1


@pytest.mark.requires(Capability.QUERIES)
def test_current_job_inside_a_handler(app: Errands, flavour: str) -> None:
    def describe() -> dict[str, Any]:
        job = current_job()
        return {"id": job.id, "name": job.name, "queue": job.queue, "attempt": job.attempt,
                "max_attempts": job.max_attempts, "cancelled": job.cancelled}

    if flavour == "sync":
        @app.job(name="whoami", queue="ident", retries=2)
        def whoami() -> dict[str, Any]:
            return describe()
    else:
        @app.job(name="whoami", queue="ident", retries=2)
        async def whoami() -> dict[str, Any]:
            await asyncio.sleep(0)
            return describe()

    handle = whoami.perform()
    app.run_worker(concurrency=2, burst=True)
    info = app.get_job(handle.id)
    assert info is not None and info.result == {
        "id": handle.id, "name": "whoami", "queue": "ident", "attempt": 1, "max_attempts": 3, "cancelled": False,
    }
    with pytest.raises(ErrandsError):
        current_job()


@pytest.mark.requires(Capability.QUERIES)
def test_start_and_stop(app: Errands, flavour: str) -> None:
    if flavour == "sync":
        @app.job(name="double")
        def double(n: int) -> int:
            return 2 * n
    else:
        @app.job(name="double")
        async def double(n: int) -> int:
            return 2 * n

    worker = app.start(concurrency=2)
    try:
        with pytest.raises(ErrandsError):
            app.start()  # one background worker at a time
        info = double.perform(21).wait(timeout=10)
        assert info.state == JobState.SUCCEEDED and info.result == 42
    finally:
        app.stop(timeout=5)
    assert worker.processed >= 1
    idle = double.perform(1)
    assert app.get_job(idle.id).state == JobState.AVAILABLE, "nothing runs after stop()"  # type: ignore[union-attr]


@pytest.mark.requires(Capability.QUERIES)
def test_worker_context_manager(app: Errands, flavour: str) -> None:
    if flavour == "sync":
        @app.job(name="add")
        def add(a: int, b: int) -> int:
            return a + b
    else:
        @app.job(name="add")
        async def add(a: int, b: int) -> int:
            return a + b

    with app.worker(concurrency=2):
        handles = add.perform_many([((i, i), {}) for i in range(10)])
        infos = [h.wait(timeout=10) for h in handles]
    assert [i.result for i in infos] == [2 * i for i in range(10)]
    idle = add.perform(1, 1)
    assert app.get_job(idle.id).state == JobState.AVAILABLE  # type: ignore[union-attr]


@pytest.mark.requires(Capability.QUERIES)
def test_graceful_stop_lets_a_short_job_finish(app: Errands, flavour: str) -> None:
    started = threading.Event()
    if flavour == "sync":
        @app.job(name="short")
        def short() -> str:
            started.set()
            time.sleep(0.3)
            return "finished"
    else:
        @app.job(name="short")
        async def short() -> str:
            started.set()
            await asyncio.sleep(0.3)
            return "finished"

    app.start(concurrency=1)
    handle = short.perform()
    assert started.wait(5)
    app.stop(timeout=10)
    info = app.get_job(handle.id)
    assert info is not None and info.state == JobState.SUCCEEDED and info.result == "finished"


@pytest.mark.requires(Capability.QUERIES)
def test_graceful_stop_puts_unfinished_jobs_back(app: Errands, flavour: str) -> None:
    release = threading.Event()
    started = threading.Event()
    if flavour == "sync":
        @app.job(name="long")
        def long() -> None:
            started.set()
            release.wait(20)
    else:
        @app.job(name="long")
        async def long() -> None:
            started.set()
            while not release.is_set():
                await asyncio.sleep(0.01)

    @app.job()
    def queued() -> None: ...

    app.start(concurrency=1)
    try:
        handle = long.perform()
        assert started.wait(5)
        waiting = queued.perform()
        t0 = time.monotonic()
        app.stop(timeout=0.3)
        assert time.monotonic() - t0 < 5, "stop() must not wait past its grace"
        info = app.get_job(handle.id)
        assert info is not None and info.state == JobState.AVAILABLE
        assert info.attempts == 0, "an attempt cut short by shutdown is not counted"
        assert app.get_job(waiting.id).state == JobState.AVAILABLE  # type: ignore[union-attr]
    finally:
        release.set()
    # it runs again, in full, on the next worker
    app.run_worker(concurrency=1, burst=True)
    assert app.get_job(handle.id).state == JobState.SUCCEEDED  # type: ignore[union-attr]
    assert app.get_job(handle.id).attempts == 1  # type: ignore[union-attr]


@pytest.mark.requires(Capability.QUERIES)
def test_heartbeat_keeps_a_job_longer_than_its_lease(url: str, flavour: str) -> None:
    from .conftest import make_app

    app = make_app(url, lease=0.6)
    lease = app.settings.lease
    runs = []
    if flavour == "sync":
        @app.job(name="slow")
        def slow() -> None:
            runs.append(1)
            time.sleep(lease * 2)
    else:
        @app.job(name="slow")
        async def slow() -> None:
            runs.append(1)
            await asyncio.sleep(lease * 2)

    try:
        with app.worker(concurrency=2):
            handle = slow.perform()
            info = _state(app, handle.id, "succeeded", "failed", timeout=lease * 10)
    finally:
        app.close()
    assert info.state == JobState.SUCCEEDED and info.attempts == 1 and runs == [1]
