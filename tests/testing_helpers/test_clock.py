"""FakeClock: time that moves only when a test says so, injected into the memory backend."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from errands import ConfigurationError, Errands, JobState
from errands.testing import FakeClock, drain

START = datetime(2030, 1, 1, tzinfo=timezone.utc)


def test_it_stands_still_and_moves_when_told() -> None:
    clock = FakeClock(START)
    assert clock.now() == START.timestamp() == clock.start
    assert clock.advance(90) == START.timestamp() + 90
    clock.advance(timedelta(minutes=1), seconds=30)
    clock.advance(days=1, hours=1)
    assert clock.now_datetime == START + timedelta(days=1, hours=1, minutes=3)
    clock.set(datetime(2030, 2, 1, tzinfo=timezone.utc))
    assert clock.now_datetime == datetime(2030, 2, 1, tzinfo=timezone.utc)
    assert "2030-02-01" in repr(clock)


def test_it_only_moves_forward_and_wants_aware_times() -> None:
    clock = FakeClock(START)
    with pytest.raises(ConfigurationError, match="forward"):
        clock.advance(-1)
    with pytest.raises(ConfigurationError, match="forward"):
        clock.set(START - timedelta(seconds=1))
    with pytest.raises(ConfigurationError, match="aware"):
        FakeClock(datetime(2030, 1, 1))
    with pytest.raises(ConfigurationError):
        clock.advance("5")  # type: ignore[arg-type]


def test_only_the_memory_backend_takes_a_clock(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="memory:// backend only"):
        Errands(f"sqlite:///{tmp_path}/jobs.db", clock=FakeClock())
    with pytest.raises(ConfigurationError, match="now"):
        Errands("memory://", clock=object())


def test_the_backend_reads_every_time_from_it() -> None:
    clock = FakeClock(START)
    app = Errands("memory://", clock=clock)

    @app.job()
    def remind(user_id: int) -> None: ...

    handle = remind.perform_in(timedelta(hours=1), 7)
    info = handle.info()
    assert info is not None and info.created_at == START and info.run_at == START + timedelta(hours=1)
    assert app.backend.now() == START.timestamp()


def test_a_delayed_job_runs_once_the_clock_passes_it() -> None:
    clock = FakeClock(START)
    app = Errands("memory://", clock=clock)
    ran: list[int] = []

    @app.job()
    def remind(user_id: int) -> None:
        ran.append(user_id)

    remind.perform_in(timedelta(days=1), 1)
    remind.perform_at(START + timedelta(days=2), 2)
    assert drain(app).total == 0
    clock.advance(days=1, seconds=-1)
    assert drain(app).total == 0
    clock.advance(seconds=1)
    assert drain(app).succeeded == 1 and ran == [1]
    clock.set(START + timedelta(days=2))
    assert drain(app).succeeded == 1 and ran == [1, 2]


def test_a_retry_waits_for_its_backoff_on_the_clock() -> None:
    clock = FakeClock(START)
    app = Errands("memory://", clock=clock)
    attempts: list[int] = []

    @app.job(retries=2, backoff=60)
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("smtp down")
        return "sent"

    handle = flaky.perform()
    first = drain(app)
    assert (first.retried, first.succeeded) == (1, 0)
    assert "ConnectionError: smtp down" in first.errors[handle.id]
    info = handle.info()
    assert info is not None and info.state is JobState.SCHEDULED
    assert info.run_at == START + timedelta(seconds=60)
    clock.advance(59)
    assert drain(app).total == 0
    clock.advance(1)
    assert drain(app).succeeded == 1
    info = handle.info()
    assert info is not None and info.result == "sent" and info.attempts == 2


def test_an_expired_lease_comes_back_when_the_clock_passes_it() -> None:
    """A worker that claimed a job and went silent: its lease ends by the fake clock."""
    clock = FakeClock(START)
    app = Errands("memory://", clock=clock, lease=30)

    @app.job()
    def work() -> None: ...

    handle = work.perform()
    [claim] = app.backend.claim(None, 1, worker_id="gone", lease=30)
    assert drain(app).total == 0  # it is running, on a worker that is not here
    clock.advance(31)
    assert drain(app).succeeded == 1
    info = handle.info()
    assert info is not None and info.attempts == 2 and claim.attempts == 1


def test_periodic_jobs_fire_their_latest_due_tick_per_drain() -> None:
    clock = FakeClock(START)
    app = Errands("memory://", clock=clock)
    fired: list[datetime] = []

    @app.periodic(every=timedelta(minutes=5))
    def sweep() -> None:
        fired.append(clock.now_datetime)

    @app.periodic(cron="0 * * * *")
    def hourly() -> None: ...

    assert drain(app).total == 0
    clock.advance(minutes=5)
    assert drain(app).succeeded == 1
    assert drain(app).total == 0  # the same tick is never enqueued twice
    clock.advance(minutes=12)  # ticks at :10 and :15 passed: as a scheduler that was not ticking, the latest
    assert drain(app).succeeded == 1
    ticks = sorted(j.run_at for j in app.list_jobs(name="sweep") if j.run_at is not None)
    assert ticks == [START + timedelta(minutes=5), START + timedelta(minutes=15)]
    clock.set(START + timedelta(hours=1))
    assert [j.name for j in app.list_jobs(state="available")] == []
    result = drain(app)
    assert result.succeeded == 2  # hourly at 01:00, and sweep's 01:00 tick
    assert len(app.list_jobs(name="hourly")) == 1
