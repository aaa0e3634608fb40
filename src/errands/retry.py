"""Backoff policies and the pure decision that turns a handler's end into an Outcome.

The core decides and the backend applies: backoff, jitter and attempt limits are
computed here once, never per backend.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, Union

from ._states import JobState
from .backends.base import Claim, Outcome
from .errors import ConfigurationError, Fail, Retry, SerializationError, UnknownJob

__all__ = ["Backoff", "BackoffLike", "Constant", "Exponential", "as_backoff", "decide", "will_retry"]


class Backoff(Protocol):
    def delay(self, attempt: int) -> float:
        """Seconds to wait before the attempt after ``attempt`` (1-based) failed."""


@dataclass(frozen=True, slots=True)
class Exponential:
    """``base * factor**(attempt-1)`` capped at ``max_delay``, spread by ±``jitter`` (a fraction),
    so a burst of failures does not retry in lockstep."""

    base: float = 2.0
    factor: float = 2.0
    max_delay: float = 3600.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if not (self.base >= 0 and self.factor >= 1 and self.max_delay >= 0 and 0 <= self.jitter <= 1):
            raise ConfigurationError(f"invalid backoff {self!r}")

    def delay(self, attempt: int) -> float:
        exponent = min(max(attempt - 1, 0), 64)
        raw = min(self.base * self.factor**exponent, self.max_delay)
        return max(0.0, raw * (1 + random.uniform(-self.jitter, self.jitter)))


@dataclass(frozen=True, slots=True)
class Constant:
    seconds: float

    def __post_init__(self) -> None:
        if not (0 <= self.seconds < float("inf")):
            raise ConfigurationError(f"backoff must be a finite number of seconds >= 0, got {self.seconds!r}")

    def delay(self, attempt: int) -> float:
        return self.seconds


@dataclass(frozen=True, slots=True)
class _Callable:
    function: Callable[[int], float]

    def delay(self, attempt: int) -> float:
        return float(self.function(attempt))


BackoffLike = Union[Backoff, Callable[[int], float], float, int, None]  # noqa: UP007 (a runtime alias on 3.10)


def as_backoff(value: BackoffLike) -> Backoff:
    """Accept a policy, a number of seconds, or ``f(attempt) -> seconds``."""
    if value is None:
        return Exponential()
    if isinstance(value, bool):
        raise ConfigurationError("backoff must be a policy, seconds or a callable, not a bool")
    if isinstance(value, (int, float)):
        return Constant(float(value))
    if hasattr(value, "delay"):
        return value
    if callable(value):
        return _Callable(value)
    raise ConfigurationError(f"backoff must be a policy, seconds or a callable, got {value!r}")


# errors that no retry can mend: the job fails at once
_PERMANENT: tuple[type[BaseException], ...] = (Fail, SerializationError, UnknownJob)


def will_retry(error: BaseException, attempt: int, max_attempts: int) -> bool:
    """Whether an attempt that raised ``error`` is retried (``decide``'s rule, for observers such
    as tracing middleware that see the exception before the outcome is settled)."""
    return not isinstance(error, _PERMANENT) and attempt < max_attempts


def decide(claim: Claim, error: BaseException, error_text: str, backoff: Backoff) -> Outcome:
    """Turn a failed attempt into an Outcome: retry after a backoff while attempts remain,
    otherwise fail (the dead-letter set)."""
    if isinstance(error, _PERMANENT):
        return Outcome(claim.id, claim.token, JobState.FAILED, error=error_text)
    if not will_retry(error, claim.attempts, claim.max_attempts):
        note = f"\n(attempt {claim.attempts}/{claim.max_attempts}: retries exhausted)"
        return Outcome(claim.id, claim.token, JobState.FAILED, error=error_text + note)
    delay = error.in_ if isinstance(error, Retry) and error.in_ is not None else backoff.delay(claim.attempts)
    return Outcome(claim.id, claim.token, JobState.SCHEDULED, error=error_text, retry_in=delay)
