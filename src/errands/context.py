"""``errands.current_job()``: what a running handler may know about its own job."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any

from .errors import ErrandsError

__all__ = ["JobContext", "current_job"]


@dataclass
class JobContext:
    """The running job as its handler sees it: ``current_job().id``, ``.attempt`` (1 on the first
    run), ``.meta`` (the metadata given at enqueue, ``{}`` for none), ``.cancelled``.

    >>> @app.job()
    ... def report(day: str) -> None:
    ...     tenant = errands.current_job().meta.get("tenant")
    """

    id: str
    name: str
    queue: str
    attempt: int
    max_attempts: int
    meta: dict[str, Any] = field(default_factory=dict)
    _cancelled: bool = field(default=False, repr=False)  # set once by the worker (an atomic store)

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled or its worker is shutting it down: a long sync handler
        should check this between steps and return. A cancelled job that returns ends
        ``cancelled``, not ``succeeded``."""
        return self._cancelled


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar("errands_current_job", default=None)


def current_job() -> JobContext:
    """The job this handler is running; raises ``ErrandsError`` outside a handler."""
    context = _current.get()
    if context is None:
        raise ErrandsError("current_job() is only available inside a running job handler")
    return context
