"""Workflows: jobs that wait on others.

>>> app.chain(fetch.s(url), parse.s(), store.s()).perform()      # each gets the previous result first
>>> app.group([resize.s(i) for i in ids]).then(notify.s(album)).perform()   # a batch and its callback

Every job of a workflow is stored up front, in one atomic enqueue, so the whole workflow is
visible at once (``app.progress``). A job that waits is ``scheduled``; its ``meta["workflow"]``
names what it waits on (``after``), what happens when one of those fails (``on_failure``:
``"fail"`` fails it too, ``"run"`` runs it anyway) and what it is handed (``feed``: the previous
result for a chain, a summary of the batch for a group's callback). A job others wait on names
them in ``then``: when it finishes for good, its worker wakes them (``Backend.wake``). A woken
job re-checks its dependencies when claimed and snoozes if they are not all finished, and a
waiting job also wakes by itself every ``WAIT_POLL`` seconds, so a lost wake-up (a worker killed
between finishing a job and waking its dependents, a job cancelled from the dashboard) delays a
workflow but never stalls it. A callback is one job, so it fires once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from ._ids import new_id
from ._states import TERMINAL_STATES, JobState
from .backends.base import Capability, NewJob
from .errors import ConfigurationError, NotSupported
from .jobs import JobHandle, JobInfo

if TYPE_CHECKING:
    from .app import Errands
    from .jobs import JobFunction

__all__ = ["Chain", "Group", "Progress", "Signature", "WorkflowHandle"]

WAIT_POLL = 30.0  # seconds: how often a waiting job re-checks by itself (the safety net)
MAX_MEMBERS = 10_000
FailurePolicy = Literal["fail", "run"]
_POLICIES = ("fail", "run")


@dataclass(frozen=True)
class Signature:
    """A job and its arguments, not yet enqueued (``job.s(*args, **kwargs)``). ``on_failure``
    says what this step does when a job it waits on fails: ``"fail"`` or ``"run"``."""

    job: JobFunction[Any, Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    policy: FailurePolicy | None = None

    def on_failure(self, policy: FailurePolicy) -> Signature:
        """``"fail"``: fail this step when a dependency failed; ``"run"``: run it anyway."""
        if policy not in _POLICIES:
            raise ConfigurationError(f"on_failure must be 'fail' or 'run', got {policy!r}")
        return replace(self, policy=policy)


@dataclass(frozen=True)
class Progress:
    """Where the jobs a workflow step waits on (or a whole workflow) stand."""

    total: int
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    running: int = 0
    waiting: int = 0  # scheduled or available
    missing: int = 0  # purged or never stored

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.cancelled + self.missing

    @property
    def done(self) -> bool:
        return self.finished == self.total

    def as_dict(self) -> dict[str, int | bool]:
        return {"total": self.total, "succeeded": self.succeeded, "failed": self.failed,
                "cancelled": self.cancelled, "running": self.running, "waiting": self.waiting,
                "missing": self.missing, "finished": self.finished, "done": self.done}

    @classmethod
    def of(cls, job_ids: Sequence[str], infos: Iterable[JobInfo]) -> Progress:
        states = {info.id: info.state for info in infos}
        counts = {"succeeded": 0, "failed": 0, "cancelled": 0, "running": 0, "waiting": 0, "missing": 0}
        for job_id in job_ids:
            state = states.get(job_id)
            if state is None:
                counts["missing"] += 1
            elif state in (JobState.SCHEDULED, JobState.AVAILABLE):
                counts["waiting"] += 1
            elif state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.RUNNING):
                counts[str(state.value)] += 1
            else:  # a corrupt state: finished as far as waiting goes, and not a success
                counts["failed"] += 1
        return cls(total=len(job_ids), **counts)


@dataclass(frozen=True)
class WorkflowHandle:
    """What ``perform`` of a chain or a group returns: ``id`` is the job that finishes the
    workflow (a chain's last step, a group's callback; a group without one has none),
    ``ids`` every job of it in order."""

    id: str | None
    ids: tuple[str, ...]
    app: Errands = field(repr=False, compare=False)

    def progress(self) -> Progress:
        return self.app._workflow_progress(self.ids)

    def wait(self, timeout: float = 30.0) -> JobInfo | Progress:
        """Block until the final job finished and return it (a group without a callback: until
        every member finished, returning the progress). ``TimeoutError`` after ``timeout`` s."""
        if self.id is not None:
            return JobHandle(self.id, True, self.app).wait(timeout)
        deadline = time.monotonic() + timeout
        while not (progress := self.progress()).done:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"group not finished after {timeout}s: {progress.as_dict()}")
            time.sleep(0.05)
        return progress


class Chain:
    """Steps run one after the other; each gets the previous step's result as its first
    argument. By default a failed step fails the rest (``on_failure="fail"``); a step made with
    ``.on_failure("run")`` runs anyway, handed ``None``."""

    def __init__(self, app: Errands, steps: Sequence[Signature], on_failure: FailurePolicy = "fail") -> None:
        if len(steps) < 1 or not all(isinstance(step, Signature) for step in steps):
            raise ConfigurationError("a chain takes one or more steps made with job.s(...)")
        if on_failure not in _POLICIES:
            raise ConfigurationError(f"on_failure must be 'fail' or 'run', got {on_failure!r}")
        self.app, self.steps, self.on_failure = app, list(steps), on_failure

    def perform(self) -> WorkflowHandle:
        ids = [new_id() for _ in self.steps]
        jobs = []
        for index, step in enumerate(self.steps):
            links: dict[str, Any] = {"id": ids[0]}
            if index > 0:
                links.update(after=[ids[index - 1]], on_failure=step.policy or self.on_failure, feed="result")
            if index + 1 < len(self.steps):
                links["then"] = [ids[index + 1]]
            jobs.append(_step(self.app, step, ids[index], links, waits=index > 0))
        results = _store_all(self.app, jobs)
        return WorkflowHandle(results[-1], tuple(results), self.app)


class Group:
    """Members run in parallel; ``then(callback)`` adds a job that runs once, when every member
    finished, handed a summary: ``{"total", "succeeded", "failed", "cancelled", "results"}``
    (``results`` in member order, ``None`` for a member that did not succeed). The callback runs
    whatever failed unless it was made with ``.on_failure("fail")``."""

    def __init__(self, app: Errands, members: Iterable[Signature], callback: Signature | None = None) -> None:
        self.app, self.members, self.callback = app, list(members), callback
        if not self.members or not all(isinstance(m, Signature) for m in self.members):
            raise ConfigurationError("a group takes one or more members made with job.s(...)")
        if len(self.members) > MAX_MEMBERS:
            raise ConfigurationError(f"a group holds at most {MAX_MEMBERS} members, got {len(self.members)}")

    def then(self, callback: Signature) -> Group:
        if not isinstance(callback, Signature):
            raise ConfigurationError("then() takes a callback made with job.s(...)")
        return Group(self.app, self.members, callback)

    def perform(self) -> WorkflowHandle:
        member_ids = [new_id() for _ in self.members]
        callback_id = new_id() if self.callback is not None else None
        group_id = callback_id or member_ids[0]
        jobs = []
        for member_id, member in zip(member_ids, self.members):
            links: dict[str, Any] = {"id": group_id}
            if callback_id is not None:
                links["then"] = [callback_id]
            jobs.append(_step(self.app, member, member_id, links, waits=False))
        if self.callback is not None and callback_id is not None:
            links = {"id": group_id, "after": member_ids, "on_failure": self.callback.policy or "run",
                     "feed": "summary"}
            jobs.append(_step(self.app, self.callback, callback_id, links, waits=True))
        results = _store_all(self.app, jobs)
        return WorkflowHandle(results[-1] if callback_id is not None else None, tuple(results), self.app)


def _step(app: Errands, step: Signature, job_id: str, links: dict[str, Any], *, waits: bool) -> NewJob:
    meta = {**(step.job.options.meta or {}), "workflow": links}
    delay = WAIT_POLL if waits else 0.0
    (new_job,) = app._new_jobs(step.job, [(step.args, dict(step.kwargs))], meta, None, delay, job_id)
    if new_job.unique_key is not None or new_job.debounce is not None:
        # a step that could be merged into another job would leave its workflow waiting forever
        new_job = replace(new_job, unique_key=None, unique_for=None, debounce=None)
    return new_job


def _store_all(app: Errands, jobs: list[NewJob]) -> list[str]:
    if Capability.WORKFLOWS not in app.backend.capabilities:
        raise NotSupported(f"{type(app.backend).__name__} can't run workflows (Capability.WORKFLOWS)")
    return [result.id for result in app._submit(jobs)]


def links_of(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The workflow links in a job's decoded meta, or None for a job outside any workflow."""
    links = meta.get("workflow")
    return links if isinstance(links, dict) else None


def linked_ids(links: dict[str, Any] | None, name: str) -> list[str]:
    """The job ids one link names: ``"after"`` (what a step waits on) or ``"then"`` (what it
    wakes when it ends); empty when there is none."""
    ids = links.get(name) if links is not None else None
    return [str(i) for i in ids] if isinstance(ids, list) else []


def summary(member_ids: Sequence[str], infos: dict[str, JobInfo]) -> dict[str, Any]:
    """What a group's callback is handed."""
    progress = Progress.of(member_ids, infos.values())
    results = [infos[i].result if i in infos and infos[i].state == JobState.SUCCEEDED else None
               for i in member_ids]
    return {"total": progress.total, "succeeded": progress.succeeded,
            "failed": progress.failed + progress.missing, "cancelled": progress.cancelled, "results": results}


def is_finished(info: JobInfo | None) -> bool:
    return info is None or info.state in TERMINAL_STATES or not isinstance(info.state, JobState)
