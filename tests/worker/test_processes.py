"""Worker processes under SIGKILL and SIGTERM, on a SQLite file shared by several processes."""

from __future__ import annotations

import signal
import time

import pytest

from errands import Errands, JobState
from tests.conftest import wait_until

from .conftest import LEASE, WorkerHarness

pytestmark = pytest.mark.slow


def _info(app: Errands, job_id: str, *states: str, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    def reached():  # type: ignore[no-untyped-def]
        info = app.get_job(job_id)
        return info if info is not None and info.state in states else None

    return wait_until(reached, timeout=timeout, message=f"job {job_id} to reach {states}")


def _exit_code(process, timeout: float) -> int:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    wait_until(lambda: process.poll() is not None or time.monotonic() > deadline, timeout=timeout + 1,
               message="the worker process to exit")
    assert process.poll() is not None, "the worker did not exit"
    return int(process.returncode)


def test_sigkill_mid_job_is_reclaimed_after_the_lease(harness: WorkerHarness, client: Errands) -> None:
    first = harness.start_worker()
    handle = client.perform("hang_on_first_attempt", 60)
    wait_until(lambda: ("start", 1, first.pid) in harness.marks(handle.id), timeout=20,
               message="the first attempt to start")
    first.send_signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    killed_at = time.monotonic()
    running = client.get_job(handle.id)
    assert running is not None and running.state == JobState.RUNNING, "a killed worker's job stays in the store"

    second = harness.start_worker()
    info = _info(client, handle.id, "succeeded", "failed")
    assert info.state == JobState.SUCCEEDED and info.result == "done", harness.logs()
    assert info.attempts == 2
    assert time.monotonic() - killed_at >= LEASE * 0.5, "reclaimed before the lease could have expired"
    assert "worker lost" in (info.error or ""), "the lost attempt is recorded"
    marks = harness.marks(handle.id)
    assert [(e, a) for e, a, _ in marks] == [("start", 1), ("start", 2), ("end", 2)]
    assert marks[1][2] == second.pid
    second.send_signal(signal.SIGTERM)
    assert _exit_code(second, 15) == 0, harness.logs()


def test_sigterm_lets_a_job_shorter_than_the_grace_finish(harness: WorkerHarness, client: Errands) -> None:
    worker = harness.start_worker(grace=10)
    handle = client.perform("nap", 1.0)
    wait_until(lambda: harness.marks(handle.id), timeout=20, message="the job to start")
    worker.send_signal(signal.SIGTERM)
    assert _exit_code(worker, 15) == 0, harness.logs()
    info = client.get_job(handle.id)
    assert info is not None and info.state == JobState.SUCCEEDED and info.result == "rested", harness.logs()
    assert info.attempts == 1
    assert [e for e, _, _ in harness.marks(handle.id)] == ["start", "end"]


def test_sigterm_puts_back_a_job_longer_than_the_grace(harness: WorkerHarness, client: Errands) -> None:
    worker = harness.start_worker(concurrency=1, grace=0.5)
    handle = client.perform("nap", 60)
    wait_until(lambda: harness.marks(handle.id), timeout=20, message="the job to start")
    queued = client.perform("nap", 0)  # waits: the only slot is busy
    t0 = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert _exit_code(worker, 15) == 0, harness.logs()
    assert time.monotonic() - t0 < 10, "shutdown must not wait for the long job"
    info = client.get_job(handle.id)
    assert info is not None and info.state == JobState.AVAILABLE, harness.logs()
    assert info.attempts == 0, "an attempt cut short by shutdown is not counted"
    assert [e for e, _, _ in harness.marks(handle.id)] == ["start"]
    other = client.get_job(queued.id)
    assert other is not None and other.state == JobState.AVAILABLE and other.attempts == 0


@pytest.mark.parametrize("how", ["exit", "abort"])
def test_a_job_that_kills_its_worker_ends_failed(harness: WorkerHarness, client: Errands, how: str) -> None:
    handle = client.perform("kills_its_worker", how)
    deaths = 0
    worker = harness.start_worker()
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        info = client.get_job(handle.id)
        if info is not None and info.state == JobState.FAILED:
            break
        if worker.poll() is not None:
            deaths += 1
            worker = harness.start_worker()  # the supervisor's job: respawn
        time.sleep(0.05)
    info = client.get_job(handle.id)
    assert info is not None and info.state == JobState.FAILED, harness.logs()
    assert info.attempts == 2 and info.max_attempts == 2
    assert "worker lost while running (attempt 2/2)" in (info.error or "")
    assert [(e, a) for e, a, _ in harness.marks(handle.id)] == [("start", 1), ("start", 2)]
    assert deaths == 2
    assert worker.poll() is None, "the last worker stays up: the poison job is not redelivered"
    worker.send_signal(signal.SIGTERM)
    assert _exit_code(worker, 15) == 0, harness.logs()
