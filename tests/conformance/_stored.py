"""How many jobs a backend holds, for tests that check a refused enqueue stored nothing."""

from __future__ import annotations

from errands import Errands
from errands.backends.base import Capability


def stored_jobs(app: Errands) -> int:
    """The total of ``app.stats()``. A backend with ``Capability.QUERIES`` counts every state (a
    ``None`` among them fails the sum, as it should); one without (RabbitMQ alone) answers only
    what its broker sees (ready messages, the dead-letter queue) and ``None`` for the rest, so
    those known counts are what can show that nothing was stored."""
    counts = app.stats()
    if Capability.QUERIES in app.backend.capabilities:
        return sum(counts.values())
    return sum(value for value in counts.values() if value is not None)
