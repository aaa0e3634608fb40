"""Hooks around enqueue and around each run of a handler: the one place tracing, logging
context or tenancy plug into errands without the core naming any of them (issue #8).

A middleware subclasses ``Middleware`` and overrides what it needs; both hooks are context
managers, so a hook sees the work start, its end, and the exception it ends with:

* ``around_enqueue(enqueue)`` wraps one enqueue call (one job, or a whole ``perform_many``
  batch): on entry it may add entries to ``enqueue.meta``, which every job of the call stores
  (``JobInfo.meta``); on a normal exit ``enqueue.ids`` holds the stored ids.
* ``around_run(job)`` wraps one attempt of a handler, on the thread (sync) or in the task
  (async) that runs it, so what the hook makes current (a span) is current for the handler's
  own code. ``job`` is what ``errands.current_job()`` returns, ``job.meta`` included. The
  handler's exception passes through the hook before errands decides retry or failure.

Middleware runs in registration order: the first registered is the outermost. A hook that
raises fails what it wraps (the enqueue, or that attempt), as the handler raising would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import JobContext

__all__ = ["Enqueue", "Middleware", "around_enqueue", "around_run"]


@dataclass
class Enqueue:
    """One enqueue call as middleware sees it: ``count`` jobs of ``name`` into ``queue``.
    ``meta`` starts as the job's ``with_options(meta=...)`` and is stored with every job of the
    call; ``ids`` is filled once the jobs are stored (an id may name an existing job that a
    unique key matched)."""

    name: str
    queue: str
    count: int
    meta: dict[str, Any] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)


class Middleware:
    """Base class of middleware: every hook does nothing until overridden.

    >>> class Timing(Middleware):
    ...     @contextmanager
    ...     def around_run(self, job: JobContext) -> Iterator[None]:
    ...         started = time.perf_counter()
    ...         try:
    ...             yield
    ...         finally:
    ...             log.info("%s took %.3fs", job.name, time.perf_counter() - started)
    >>> app = Errands(middleware=[Timing()])     # or app.add_middleware(Timing())
    """

    def around_enqueue(self, enqueue: Enqueue) -> AbstractContextManager[None]:
        """Wrap one enqueue call; add to ``enqueue.meta`` on entry to store entries with the jobs."""
        return nullcontext()

    def around_run(self, job: JobContext) -> AbstractContextManager[None]:
        """Wrap one attempt of a handler, where the handler runs."""
        return nullcontext()


def around_enqueue(middleware: Sequence[Middleware], enqueue: Enqueue) -> AbstractContextManager[None]:
    """Every middleware's ``around_enqueue``, first registered outermost. Each hook is entered
    in turn, so a later one sees the meta an earlier one added."""
    if not middleware:
        return nullcontext()
    return _lazy_chain(middleware, "enqueue", enqueue)


def around_run(middleware: Sequence[Middleware], job: JobContext) -> AbstractContextManager[None]:
    """Every middleware's ``around_run``, first registered outermost; nothing at all without any."""
    if not middleware:
        return nullcontext()
    return _lazy_chain(middleware, "run", job)


@contextmanager
def _lazy_chain(middleware: Sequence[Middleware], hook: str, subject: Any) -> Iterator[None]:
    # Each hook is made only once the one outside it has been entered (an ExitStack, in order):
    # an outer span must be current when an inner hook starts its own.
    with ExitStack() as stack:
        for item in middleware:
            make = item.around_enqueue if hook == "enqueue" else item.around_run
            stack.enter_context(make(subject))
        yield
