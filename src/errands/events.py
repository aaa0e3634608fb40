"""A small in-process event bus: what happened to jobs in this process, for metrics and logs.

Each ``Errands`` owns one ``EventBus`` (``app.events``); the facade emits ``JobEnqueued``, the
worker ``JobStarted``, ``JobFinished`` and ``LeasesReclaimed``. Listeners are called
synchronously on the emitting thread (the worker's claim loop, executor threads, the event loop
of async handlers), so they must be quick and thread-safe; one that raises is logged and the
others still run. With nobody listening an emitter pays one attribute read: it checks
``bus.listening`` before building the event.

>>> app.events.subscribe(lambda event: print(event))
>>> if app.events.listening:
...     app.events.emit(JobStarted(job_id, name, queue, attempt=1))
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Event",
    "EventBus",
    "JobEnqueued",
    "JobFinished",
    "JobStarted",
    "LeasesReclaimed",
    "Listener",
    "OutcomeName",
]

logger = logging.getLogger("errands.events")

OutcomeName = Literal["succeeded", "failed", "retried", "cancelled"]


@dataclass(frozen=True, slots=True)
class JobEnqueued:
    """``created`` is False when the id or unique key already existed (nothing new was stored)."""

    job_id: str
    name: str
    queue: str
    created: bool = True


@dataclass(frozen=True, slots=True)
class JobStarted:
    job_id: str
    name: str
    queue: str
    attempt: int


@dataclass(frozen=True, slots=True)
class JobFinished:
    """One attempt's end as the worker decided it. ``retried``: it failed and runs again after
    ``retry_in`` seconds. ``duration``: seconds from hand-over to the executor to the decision.
    ``error``: the error text (first line is ``Type: message``), None on success."""

    job_id: str
    name: str
    queue: str
    attempt: int
    max_attempts: int
    outcome: OutcomeName
    duration: float
    error: str | None = None
    retry_in: float = 0.0


@dataclass(frozen=True, slots=True)
class LeasesReclaimed:
    """Expired leases this process's maintenance put back (``requeued``) or failed (attempts used up)."""

    requeued: int
    failed: int


Event = JobEnqueued | JobStarted | JobFinished | LeasesReclaimed
Listener = Callable[[Event], None]


class EventBus:
    """Listeners of one app's events. Subscribing and unsubscribing copy the listener tuple, so
    ``emit`` iterates without a lock."""

    def __init__(self) -> None:
        self._listeners: tuple[Listener, ...] = ()
        self._lock = threading.Lock()
        self.listening = False  # read by emitters on hot paths: build no event when False

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every event from now on; returns a function that unsubscribes."""
        with self._lock:
            self._listeners = (*self._listeners, listener)
            self.listening = True
        return lambda: self.unsubscribe(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            remaining = list(self._listeners)
            if listener in remaining:
                remaining.remove(listener)
            self._listeners = tuple(remaining)
            self.listening = bool(remaining)

    def emit(self, event: Event) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a broken listener must never fail a job or an enqueue
                logger.exception("errands event listener %r failed on %s", listener, type(event).__name__)
