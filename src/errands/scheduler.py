"""Periodic jobs: tick maths and the enqueue of each tick exactly once.

Every worker runs a scheduler. A tick's job gets an id fixed by the job name and the tick
time (and the unique key ``name@tick``), so when several schedulers fire the same tick the
store's idempotent enqueue keeps one job. Ticks are read off the backend's clock, so a
worker whose own clock is off neither fires early nor twice.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from cronsim import CronSim, CronSimError

from ._ids import deterministic_id
from .backends.base import Capability, NewJob
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .backends.base import Backend
    from .jobs import JobFunction

__all__ = ["PeriodicSpec", "Scheduler"]

logger = logging.getLogger("errands.scheduler")

MIN_EVERY = 1.0


@dataclass(frozen=True)
class PeriodicSpec:
    job: JobFunction[Any, Any]
    cron: str | None = None
    every: float | None = None

    @classmethod
    def create(cls, job: JobFunction[Any, Any], *, cron: str | None, every: float | timedelta | None) -> PeriodicSpec:
        cron, seconds = cls.check(cron=cron, every=every)
        return cls(job, cron=cron, every=seconds)

    @staticmethod
    def check(*, cron: str | None, every: float | timedelta | None) -> tuple[str | None, float | None]:
        """Validate a schedule (before any handler is registered): ``(cron, every seconds)``."""
        if (cron is None) == (every is None):
            raise ConfigurationError("periodic() takes exactly one of cron= or every=")
        if every is not None:
            seconds = every.total_seconds() if isinstance(every, timedelta) else every
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (
                MIN_EVERY <= seconds <= 366 * 86400
            ):
                raise ConfigurationError(f"every= must be from {MIN_EVERY:g}s to a year, got {every!r}")
            return None, float(seconds)
        if not isinstance(cron, str):
            raise ConfigurationError(f"cron= must be a string, got {cron!r}")
        try:
            CronSim(cron, datetime(2000, 1, 1, tzinfo=timezone.utc))
        except (CronSimError, ValueError, KeyError) as exc:
            raise ConfigurationError(f"invalid cron expression {cron!r}: {exc}") from None
        return cron, None

    def ticks(self, after: float, until: float) -> list[float]:
        """Tick times t with after < t <= until (epoch seconds), oldest first."""
        if self.every is not None:
            first = math.floor(after / self.every) * self.every + self.every
            count = int(max(0, math.floor((until - first) / self.every) + 1))
            return [first + i * self.every for i in range(min(count, 1000))]
        assert self.cron is not None
        found: list[float] = []
        start = datetime.fromtimestamp(math.floor(after), timezone.utc)
        for moment in CronSim(self.cron, start):
            stamp = moment.timestamp()
            if stamp > until or len(found) >= 1000:
                break
            if stamp > after:
                found.append(stamp)
        return found

    def next_tick(self, after: float) -> float:
        if self.every is not None:
            return math.floor(after / self.every) * self.every + self.every
        assert self.cron is not None
        start = datetime.fromtimestamp(math.floor(after), timezone.utc)
        return next(iter(CronSim(self.cron, start))).timestamp()

    def new_job(self, tick: float) -> NewJob:
        moment = datetime.fromtimestamp(tick, timezone.utc).isoformat()
        key = f"{self.job.name}@{moment}"
        options = self.job.options
        return NewJob(
            id=deterministic_id(int(tick * 1000), key), name=self.job.name, queue=options.queue, args="[]",
            kwargs="{}", max_attempts=options.max_attempts, priority=options.priority, run_at=tick,
            unique_key=key, timeout=options.timeout,
        )


class Scheduler:
    """Fires the periodic specs' ticks that fall after its start. Call ``tick()`` about once a
    second; it returns how many jobs it created (0 when another scheduler was first)."""

    def __init__(self, specs: list[PeriodicSpec], backend: Backend) -> None:
        self.specs = specs
        self.backend = backend
        self._last: float | None = None
        # a backend that can't deduplicate (amqp:// without a store) would refuse the tick's unique
        # key; it gets the job without one, and each worker running a scheduler fires each tick
        self._unique = Capability.UNIQUE in backend.capabilities
        if specs and not self._unique:
            logger.warning("periodic jobs: %s can't deduplicate ticks, so every worker process fires each "
                           "tick; run the periodic jobs on one worker, or give the backend a store",
                           type(backend).__name__)

    def tick(self) -> int:
        if not self.specs:
            return 0
        now = self.backend.now()
        last, self._last = self._last, now
        if last is None or now <= last:
            return 0
        # a scheduler that stalled fires only the latest missed tick of each job, not a burst
        due = [spec.new_job(ticks[-1]) for spec in self.specs if (ticks := spec.ticks(last, now))]
        if not self._unique:
            due = [dataclasses.replace(job, unique_key=None) for job in due]
        if not due:
            return 0
        created = sum(1 for result in self.backend.enqueue(due) if result.created)
        if created:
            logger.debug("periodic: enqueued %d tick(s)", created)
        return created

    def seconds_to_next(self) -> float:
        """How long until the next tick of any spec, by the backend's clock."""
        if not self.specs:
            return math.inf
        now = self.backend.now()
        return max(0.0, min(spec.next_tick(now) for spec in self.specs) - now)
