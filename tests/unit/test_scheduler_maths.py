"""Periodic tick maths (every / cron), deterministic tick ids and the scheduler's firing rule,
driven by an injected clock."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from errands import ConfigurationError, Errands
from errands.backends.base import JobQuery
from errands.backends.memory import MemoryBackend
from errands.config import Settings
from errands.scheduler import PeriodicSpec, Scheduler


def ts(*parts: int) -> float:
    return datetime(*parts, tzinfo=timezone.utc).timestamp()  # type: ignore[misc]


@pytest.fixture
def app() -> Errands:
    return Errands("memory://")


def spec(app: Errands, name: str = "tick", cron: str | None = None, every: float | None = None) -> PeriodicSpec:
    job = app.job(name=name)(lambda: None)
    return PeriodicSpec.create(job, cron=cron, every=every)


def test_every_ticks_are_aligned_and_half_open(app: Errands) -> None:
    s = spec(app, every=10)
    assert s.ticks(100, 130) == [110, 120, 130]  # after < t <= until
    assert s.ticks(101, 129.9) == [110, 120]
    assert s.ticks(100, 100) == [] and s.ticks(100, 109.99) == []
    assert s.ticks(130, 100) == []
    assert s.next_tick(100) == 110 and s.next_tick(105) == 110 and s.next_tick(109.999) == 110


def test_every_ticks_are_capped(app: Errands) -> None:
    assert len(spec(app, every=1).ticks(0, 10**7)) == 1000


def test_cron_ticks(app: Errands) -> None:
    s = spec(app, cron="*/15 * * * *")
    start = ts(2030, 1, 1, 12, 0)
    assert s.ticks(start, start + 3600) == [start + 900, start + 1800, start + 2700, start + 3600]
    assert s.ticks(start - 1, start) == [start]
    assert s.ticks(start, start + 899) == []
    assert s.next_tick(start) == start + 900
    assert s.next_tick(start + 0.5) == start + 900


def test_cron_ticks_daily(app: Errands) -> None:
    s = spec(app, cron="30 2 * * *")
    start = ts(2030, 3, 1)
    assert s.ticks(start, start + 3 * 86400) == [ts(2030, 3, 1, 2, 30), ts(2030, 3, 2, 2, 30), ts(2030, 3, 3, 2, 30)]


def test_new_job_is_deterministic_per_tick(app: Errands) -> None:
    s = spec(app, name="sweep", every=60)
    tick = ts(2030, 1, 1, 0, 1)
    a, b = s.new_job(tick), s.new_job(tick)
    assert a == b
    assert a.unique_key == "sweep@2030-01-01T00:01:00+00:00"
    assert a.run_at == tick and a.name == "sweep" and a.args == "[]" and a.kwargs == "{}"
    later = s.new_job(tick + 60)
    assert later.id != a.id and later.id > a.id, "tick ids sort by tick time"
    other = spec(app, name="other", every=60).new_job(tick)
    assert other.id != a.id


def test_create_validates(app: Errands) -> None:
    job = app.job(name="j")(lambda: None)
    for schedule in ({"cron": "*/0 * * * *"}, {"cron": "61 * * * *"}, {"every": 0.5}, {"every": 10**9},
                     {}, {"cron": "* * * * *", "every": 5}, {"every": True}):
        with pytest.raises(ConfigurationError):
            PeriodicSpec.create(job, cron=schedule.get("cron"), every=schedule.get("every"))  # type: ignore[arg-type]


class ClockedMemory(MemoryBackend):
    """The memory backend with its clock in the test's hands."""

    def __init__(self, start: float) -> None:
        super().__init__("memory://", Settings(url="memory://"))
        self.clock = start

    def now(self) -> float:
        return self.clock


def test_scheduler_fires_ticks_after_its_start_once(app: Errands) -> None:
    backend = ClockedMemory(ts(2030, 1, 1, 0, 0, 0) + 0.5)
    s = spec(app, name="beat", every=1)
    first, second = Scheduler([s], backend), Scheduler([s], backend)
    assert first.tick() == 0 and second.tick() == 0, "the first call only sets the starting point"
    backend.clock += 1.0
    assert first.tick() == 1
    assert second.tick() == 0, "the same tick from a second scheduler is the same job"
    assert first.tick() == 0, "no time passed: nothing new"
    records = backend.list(JobQuery())
    assert [r.run_at for r in records] == [ts(2030, 1, 1, 0, 0, 1)]


def test_scheduler_after_a_stall_fires_only_the_latest_tick(app: Errands) -> None:
    backend = ClockedMemory(ts(2030, 1, 1))
    scheduler = Scheduler([spec(app, name="beat", every=10)], backend)
    scheduler.tick()
    backend.clock += 95
    assert scheduler.tick() == 1
    (record,) = backend.list(JobQuery())
    assert record.run_at == ts(2030, 1, 1) + 90


def test_seconds_to_next(app: Errands) -> None:
    backend = ClockedMemory(ts(2030, 1, 1) + 3)
    scheduler = Scheduler([spec(app, name="a", every=10), spec(app, name="b", every=4)], backend)
    assert scheduler.seconds_to_next() == pytest.approx(1.0)
    assert Scheduler([], backend).seconds_to_next() == float("inf")
