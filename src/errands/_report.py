"""What the command line and the dashboard both show about issue #9's features, shaped once:
paused queues, declared limits beside their live usage, a job's workflow links and progress,
and how a job ended. Plain data, every name still raw (each surface escapes it its own way).
A backend without a capability answers ``None`` here ("not supported"), never an error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._states import JobState
from .errors import NotSupported
from .workflows import Progress, links_of

if TYPE_CHECKING:
    from .app import Errands
    from .jobs import JobInfo
    from .limits import Limits, Rate

__all__ = ["CANCELLED_RUNNING", "LimitRow", "WorkflowView", "limit_rows", "outcome", "paused", "rate_text",
           "workflow"]

CANCELLED_RUNNING = "cancelled while running"  # the error the worker stores (worker/executor.py)
MAX_LINKED = 50  # jobs listed by id beside a workflow's counts (a group may hold 10,000)
_UNITS = ((86400.0, "d"), (3600.0, "h"), (60.0, "m"), (1.0, "s"))


def paused(app: Errands) -> frozenset[str] | None:
    """The paused queues, or None when the backend can't pause queues."""
    try:
        return app.paused_queues()
    except NotSupported:
        return None


def rate_text(rate: Rate | None) -> str | None:
    """``Rate(100, 60.0)`` -> ``"100/m"``, the way ``rate_limit=`` is written."""
    if rate is None:
        return None
    for size, unit in _UNITS:
        if rate.period == size:
            return f"{rate.limit}/{unit}"
        if rate.period > size and rate.period % size == 0:
            return f"{rate.limit}/{rate.period / size:g}{unit}"
    return f"{rate.limit}/{rate.period:g}s"


@dataclass(frozen=True)
class LimitRow:
    """One declared limit (or, ``declared=False``, usage of a key this app does not declare)."""

    scope: str  # "job" or "queue"
    target: str  # the job's name or the queue's
    key: str  # the usage key: job:<name>, queue:<name>
    concurrency: int | None = None
    rate: str | None = None
    partitioned: bool = False
    declared: bool = True
    running: int | None = None  # holders now (summed over partitions); None: usage unknown
    partitions: dict[str, int] = field(default_factory=dict)  # partition -> holders now

    def as_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "target": self.target, "key": self.key, "concurrency": self.concurrency,
                "rate_limit": self.rate, "partitioned": self.partitioned, "declared": self.declared,
                "running": self.running, "partitions": dict(self.partitions)}


def limit_rows(app: Errands) -> tuple[list[LimitRow], bool]:
    """Every limit ``app`` declares, with live holders from ``app.limit_usage()``, then keys in
    use that it does not declare (another app's, or all of them with ``--url``). The flag says
    whether the backend reports usage at all."""
    try:
        usage: dict[str, int] | None = app.limit_usage()
    except NotSupported:
        usage = None
    declared: list[tuple[str, str, Limits]] = [
        ("job", name, handler.options.limits) for name, handler in sorted(app.registry.items())
        if handler.options.limits is not None
    ]
    declared += [("queue", queue, limits) for queue, limits in sorted(app.queue_limits.items())]
    left = dict(usage or {})
    rows = []
    # the longest name first: job "a:b" owns key "job:a:b" before a partitioned job "a" may
    for scope, target, limits in sorted(declared, key=lambda item: -len(item[1])):
        key = f"{scope}:{target}"
        partitioned = limits.key is not None
        partitions: dict[str, int] = {}
        running = 0
        for used_key in list(left):
            if used_key == key and not partitioned:
                running += left.pop(used_key)
            elif partitioned and used_key.startswith(key + ":"):
                count = left.pop(used_key)
                partitions[used_key[len(key) + 1:]] = count
                running += count
        rows.append(LimitRow(scope, target, key, limits.concurrency, rate_text(limits.rate), partitioned,
                             running=None if usage is None else running, partitions=partitions))
    rows.sort(key=lambda row: (row.scope != "job", row.target))
    for used_key, count in sorted(left.items()):
        scope, _, target = used_key.partition(":")
        rows.append(LimitRow(scope or "?", target or used_key, used_key, declared=False, running=count))
    return rows, usage is not None


@dataclass(frozen=True)
class WorkflowView:
    """A job's place in a workflow: what it waits on (with their progress), what it wakes."""

    workflow_id: str | None
    after: list[str]
    then: list[str]
    on_failure: str | None
    feed: str | None
    progress: Progress | None  # of ``after``; None when it waits on nothing
    states: dict[str, str]  # job id -> state, for the first MAX_LINKED of after and then

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.workflow_id, "after": self.after, "then": self.then, "on_failure": self.on_failure,
                "feed": self.feed, "progress": None if self.progress is None else self.progress.as_dict()}


def workflow(app: Errands, info: JobInfo) -> WorkflowView | None:
    """The workflow links of ``info`` with the progress of what it waits on, or None for a job
    outside any workflow."""
    links = links_of(info.meta)
    if links is None:
        return None
    after = [str(i) for i in links.get("after") or [] if isinstance(i, (str, int))]
    then = [str(i) for i in links.get("then") or [] if isinstance(i, (str, int))]
    shown = list(dict.fromkeys(after[:MAX_LINKED] + then[:MAX_LINKED]))
    states: dict[str, str] = {}
    try:
        progress = app.progress(info.id) if after else None
        for record in app.backend.get_many(shown) if shown else ():
            states[record.id] = str(record.state)
    except NotSupported:  # a store that can't read jobs back: the links alone
        progress = None
    workflow_id = links.get("id")
    return WorkflowView(
        workflow_id=str(workflow_id) if workflow_id is not None else None, after=after, then=then,
        on_failure=str(links["on_failure"]) if after and links.get("on_failure") else None,
        feed=str(links["feed"]) if links.get("feed") else None, progress=progress, states=states,
    )


def outcome(info: JobInfo) -> str | None:
    """A sentence on how a finished job ended when its state alone does not say it, else None."""
    if info.state == JobState.CANCELLED:
        if (info.error or "").startswith(CANCELLED_RUNNING):
            return "cancelled while running: its handler was asked to stop"
        return "cancelled before it started"
    if info.state == JobState.RUNNING and info.cancel_requested:
        return "cancel requested: its worker is asking the handler to stop"
    return None
