"""Global concurrency and rate limits, declared on a job or a queue and enforced by every worker
through the backend (``Backend.acquire_slots`` / ``take_rate``), so they hold across processes
and machines.

>>> @app.job(concurrency=5, rate_limit="100/m", limit_key=lambda user_id, **_: user_id)
... def sync_account(user_id: int) -> None: ...
>>> app.limit_queue("reports", concurrency=2)

A job over its limit waits: the worker gives it back, scheduled a moment later, without
counting an attempt; it never fails for it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .errors import ConfigurationError

__all__ = ["Limits", "Rate", "parse_rate"]

MAX_CONCURRENCY = 100_000
_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
          "h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*([a-z]+)\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` starts per ``period`` seconds (a burst of ``limit``, then one per period/limit)."""

    limit: int
    period: float

    def __str__(self) -> str:
        return f"{self.limit}/{self.period:g}s"


def parse_rate(value: str | Rate) -> Rate:
    """``"100/m"``, ``"10/s"``, ``"5/h"``, ``"1000/d"``, or with a count of units: ``"30/5m"``."""
    if isinstance(value, Rate):
        return value
    match = _RATE.match(value.lower()) if isinstance(value, str) else None
    if match is None or match.group(3) not in _UNITS:
        raise ConfigurationError(f"rate_limit must look like '100/m' (per s, m, h or d), got {value!r}")
    count, units, unit = int(match.group(1)), float(match.group(2) or 1), match.group(3)
    period = units * _UNITS[unit]
    if not 1 <= count <= 1_000_000_000 or not 0 < period <= 366 * 86400 or not math.isfinite(period):
        raise ConfigurationError(f"rate_limit {value!r} is out of range (1+ starts per up to a year)")
    return Rate(count, period)


@dataclass(frozen=True, slots=True)
class Limits:
    """What one job or queue may do at once (``concurrency`` running anywhere) and per time
    (``rate``). ``key``, when given, partitions both by the job's arguments."""

    concurrency: int | None = None
    rate: Rate | None = None
    key: Callable[..., Any] | None = None

    @classmethod
    def build(cls, concurrency: int | None = None, rate_limit: str | Rate | None = None,
              limit_key: Callable[..., Any] | None = None) -> Limits | None:
        if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int)
                                        or not 1 <= concurrency <= MAX_CONCURRENCY):
            raise ConfigurationError(f"concurrency must be an int from 1 to {MAX_CONCURRENCY}, got {concurrency!r}")
        if limit_key is not None and not callable(limit_key):
            raise ConfigurationError(f"limit_key must be a function of the job's arguments, got {limit_key!r}")
        if limit_key is not None and concurrency is None and rate_limit is None:
            raise ConfigurationError("limit_key partitions a limit: give concurrency= or rate_limit= with it")
        rate = parse_rate(rate_limit) if rate_limit is not None else None
        if concurrency is None and rate is None:
            return None
        return cls(concurrency, rate, limit_key)

    def partition(self, args: list[Any], kwargs: dict[str, Any]) -> str | None:
        """The partition these arguments fall in (None: one limit for all)."""
        if self.key is None:
            return None
        value = self.key(*args, **kwargs)
        return None if value is None else str(value)[:200]


def seconds(value: float | timedelta | None, name: str) -> float | None:
    """A window option (``unique_for``, ``debounce``) as seconds, checked."""
    if value is None:
        return None
    number = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not 0 < number <= 366 * 86400:
        raise ConfigurationError(f"{name} must be a timedelta or seconds > 0 (up to a year), got {value!r}")
    return float(number)
