"""Job states: kept apart so the backend interface and the facade can both import them."""

from __future__ import annotations

from enum import Enum

__all__ = ["ACTIVE_STATES", "TERMINAL_STATES", "JobState"]


class JobState(str, Enum):
    """Where a job is in its life. ``str`` so it compares equal to its name."""

    SCHEDULED = "scheduled"  # run_at in the future, including the wait between retries
    AVAILABLE = "available"  # due; any worker on its queue may claim it
    RUNNING = "running"  # claimed under a lease
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # retries exhausted or not retryable: the dead-letter set
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


ACTIVE_STATES = frozenset({JobState.SCHEDULED, JobState.AVAILABLE, JobState.RUNNING})
TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
