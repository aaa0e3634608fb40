"""What a worker tells the world: one structured log line per job outcome, events on the app's
bus (metrics listen there), and its entry in the backend's worker registry.

Log lines go to the ``errands.worker`` logger: succeeded at DEBUG (a busy worker would otherwise
write a line per job), retried at WARNING, failed at ERROR, cancelled at INFO. Each record carries
the fields as ``extra=`` attributes too (``job_id``, ``job_name``, ``queue``, ``attempt``,
``max_attempts``, ``duration``, ``outcome``, ``error``), for JSON formatters and log collectors.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._states import JobState
from ..backends.base import Claim, Maintenance, Outcome, WorkerInfo
from ..errors import NotSupported
from ..events import EventBus, JobFinished, JobStarted, LeasesReclaimed, OutcomeName

if TYPE_CHECKING:
    from ..backends.base import Backend

__all__ = ["Reporter", "log_outcome"]

logger = logging.getLogger("errands.worker")

_OUTCOMES: dict[JobState, OutcomeName] = {
    JobState.SUCCEEDED: "succeeded", JobState.FAILED: "failed", JobState.CANCELLED: "cancelled",
    JobState.SCHEDULED: "retried", JobState.AVAILABLE: "retried",
}
_LEVELS: dict[OutcomeName, int] = {
    "succeeded": logging.DEBUG, "cancelled": logging.INFO, "retried": logging.WARNING, "failed": logging.ERROR,
}


def first_line(text: str | None) -> str:
    return (text or "").split("\n", 1)[0]


def log_outcome(claim: Claim, outcome: Outcome, duration: float) -> None:
    """``job send_welcome 0190… failed in 0.512s (queue mail, attempt 6/6): ValueError: boom``"""
    name = _OUTCOMES.get(outcome.state, "failed")
    level = _LEVELS[name]
    if not logger.isEnabledFor(level):
        return
    error = first_line(outcome.error) if name != "succeeded" else ""
    verb = {"succeeded": "succeeded in", "cancelled": "cancelled after"}.get(name, "failed in")
    retry = f", retrying in {outcome.retry_in:.1f}s" if name == "retried" else ""
    logger.log(
        level, "job %s %s %s %.3fs (queue %s, attempt %d/%d)%s%s", claim.name, claim.id, verb, duration,
        claim.queue, claim.attempts, claim.max_attempts, retry, f": {error}" if error else "",
        extra={"job_id": claim.id, "job_name": claim.name, "queue": claim.queue, "attempt": claim.attempts,
               "max_attempts": claim.max_attempts, "duration": round(duration, 6), "outcome": name,
               "error": error or None},
    )


class Reporter:
    """Per worker: start times of running claims, outcome logs and events, registry entries."""

    def __init__(self, worker_id: str, events: EventBus) -> None:
        self.worker_id = worker_id
        self.events = events
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._since: dict[str, float] = {}  # claim id -> monotonic time it was handed over
        self._registry = True  # False once the backend said NotSupported

    def started(self, claims: Sequence[Claim]) -> None:
        now = time.monotonic()
        for claim in claims:
            self._since[claim.id] = now
        if self.events.listening:
            for claim in claims:
                self.events.emit(JobStarted(claim.id, claim.name, claim.queue, claim.attempts))

    def finished(self, claim: Claim, outcome: Outcome | None) -> None:
        """``outcome`` None: abandoned (lease lost, put back at shutdown): nothing to report."""
        since = self._since.pop(claim.id, None)
        if outcome is None:
            return
        duration = time.monotonic() - since if since is not None else 0.0
        log_outcome(claim, outcome, duration)
        if self.events.listening:
            self.events.emit(JobFinished(
                claim.id, claim.name, claim.queue, claim.attempts, claim.max_attempts,
                _OUTCOMES.get(outcome.state, "failed"), duration, outcome.error, outcome.retry_in,
            ))

    def reclaimed(self, result: Maintenance) -> None:
        if (result.requeued or result.failed) and self.events.listening:
            self.events.emit(LeasesReclaimed(result.requeued, result.failed))

    # registry ---------------------------------------------------------------------------------
    def announce(self, backend: Backend, *, queues: Sequence[str] | None, concurrency: int, started_at: float,
                 running: Sequence[str], processed: int, ttl: float) -> None:
        """Register (or heartbeat) this worker for ``ttl`` seconds. Best effort: a failure is
        logged and never disturbs the work."""
        if not self._registry:
            return
        info = WorkerInfo(id=self.worker_id, host=self.host, pid=self.pid, queues=tuple(queues or ()),
                          concurrency=concurrency, started_at=started_at, running=tuple(running),
                          processed=processed)
        try:
            backend.register_worker(info, ttl)
        except NotSupported:
            self._registry = False
            logger.info("%s keeps no worker registry: this worker won't be listed", type(backend).__name__)
        except Exception as exc:
            logger.warning("could not register worker %s: %s", self.worker_id, exc)

    def retire(self, backend: Backend) -> None:
        if not self._registry:
            return
        try:
            backend.remove_worker(self.worker_id)
        except Exception as exc:  # it disappears by itself once its entry expires
            logger.warning("could not unregister worker %s: %s", self.worker_id, exc)
