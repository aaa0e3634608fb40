"""What the ``Errands`` facade offers about stored jobs beside enqueueing them: queries and
admin (get, list, retry, cancel, purge, stats), queue control (pause/resume), limit usage, and
the workflow builders. Everything here goes through ``Backend``; nothing speaks SQL or Redis."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ._states import TERMINAL_STATES, JobState
from .backends.base import JobQuery
from .config import check_queue_name
from .errors import ConfigurationError
from .jobs import JobHandle, JobInfo
from .workflows import Chain, FailurePolicy, Group, Progress, Signature, linked_ids, links_of

if TYPE_CHECKING:
    from .app import Errands
    from .backends.base import Backend
    from .config import Settings

__all__ = ["Admin"]


class Admin:
    """Mixed into ``Errands``, which provides ``backend`` and ``settings``."""

    if TYPE_CHECKING:
        settings: Settings

        @property
        def backend(self) -> Backend: ...

    def _app(self) -> Errands:
        from .app import Errands

        assert isinstance(self, Errands)
        return self

    # queries ---------------------------------------------------------------------------------
    def get_job(self, job_id: str, *, decrypt: bool = False) -> JobInfo | None:
        """The job, or None. Encrypted arguments and result show as ``"<encrypted>"`` unless
        ``decrypt=True`` (which needs the keys, and raises when they don't open the job). A
        workflow step that waits on others carries their ``progress``."""
        record = self.backend.get(_job_id(job_id))
        if record is None:
            return None
        info = JobInfo.from_record(record, self.settings if decrypt else None)
        after = linked_ids(links_of(info.meta), "after")
        return replace(info, progress=self._workflow_progress(after)) if after else info

    def list_jobs(
        self, state: str | JobState | None = None, queue: str | None = None, name: str | None = None,
        limit: int = 100, before: str | None = None, *, decrypt: bool = False,
    ) -> list[JobInfo]:
        """Jobs newest first, filtered; ``before`` (a job id) pages to older ones."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ConfigurationError(f"limit must be an int from 1 to 10000, got {limit!r}")
        query = JobQuery(state=_state(state) if state is not None else None, queue=queue, name=name,
                         limit=limit, before_id=before)
        keys = self.settings if decrypt else None
        return [JobInfo.from_record(r, keys) for r in self.backend.list(query)]

    def retry_job(self, job_id: str) -> bool:
        """A failed or cancelled job back to available; False when it was in another state."""
        return self.retry_jobs([job_id]) == 1

    def retry_jobs(self, job_ids: Sequence[str]) -> int:
        """``retry_job`` for many ids in one call; returns how many moved."""
        return self.backend.retry([_job_id(i) for i in job_ids])

    def cancel_job(self, job_id: str) -> str:
        """Scheduled/available -> cancelled; running -> asked to stop at its next heartbeat.
        Returns ``"cancelled"``, ``"requested"``, ``"finished"`` or ``"not_found"``."""
        job_id = _job_id(job_id)
        return self.backend.cancel([job_id])[job_id].value

    def purge(self, state: str | JobState = "succeeded", older_than: float | timedelta = 0) -> int:
        """Delete finished jobs in ``state`` that finished more than ``older_than`` ago."""
        target = _state(state)
        if target not in TERMINAL_STATES:
            raise ConfigurationError(f"purge takes a finished state (succeeded, failed, cancelled), not {state!r}")
        age = older_than.total_seconds() if isinstance(older_than, timedelta) else float(older_than)
        if not (0 <= age < math.inf):
            raise ConfigurationError(f"older_than must be >= 0, got {older_than!r}")
        return self.backend.purge(target, self.backend.now() - age)

    def stats(self, by_queue: bool = False) -> dict[str, Any]:
        return dict(self.backend.counts(by_queue=by_queue))

    # queue control ---------------------------------------------------------------------------
    def pause_queue(self, *queues: str) -> None:
        """Stop every worker from starting jobs of these queues; running jobs finish, waiting ones
        stay available (``Capability.QUEUE_CONTROL``)."""
        self.backend.set_paused([check_queue_name(q) for q in queues], True)

    def resume_queue(self, *queues: str) -> None:
        self.backend.set_paused([check_queue_name(q) for q in queues], False)
        self.backend.notify()

    def paused_queues(self) -> frozenset[str]:
        return self.backend.paused_queues()

    def limit_usage(self) -> dict[str, int]:
        """Running jobs per concurrency limit now, by key (``job:<name>[:<partition>]``,
        ``queue:<name>``): what the dashboard shows beside the declared limits."""
        return self.backend.slot_usage()

    # workflows -------------------------------------------------------------------------------
    def chain(self, *steps: Signature, on_failure: FailurePolicy = "fail") -> Chain:
        """Steps that run one after the other, each handed the previous result:
        ``app.chain(fetch.s(url), parse.s(), store.s()).perform()`` (``errands.workflows``)."""
        return Chain(self._app(), steps, on_failure)

    def group(self, members: Iterable[Signature]) -> Group:
        """Steps that run in parallel; ``.then(callback.s())`` runs once after all of them:
        ``app.group([resize.s(i) for i in ids]).then(done.s()).perform()``."""
        return Group(self._app(), members)

    def progress(self, job_id: str) -> Progress | None:
        """Where the jobs ``job_id`` waits on stand (a chain step, a group's callback), or None
        for a job that waits on nothing (or does not exist)."""
        info = self.get_job(job_id)
        return info.progress if info is not None else None

    def _workflow_progress(self, job_ids: Sequence[str]) -> Progress:
        infos = [JobInfo.from_record(record) for record in self.backend.get_many(job_ids)]
        return Progress.of(job_ids, infos)


# helpers ---------------------------------------------------------------------------------------


def _job_id(value: object) -> str:
    if isinstance(value, JobHandle):
        return value.id
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise ConfigurationError(f"a job id is a str (JobHandle.id), got {value!r}")
    return value


def _state(value: str | JobState) -> JobState:
    try:
        return JobState(value)
    except ValueError:
        names = ", ".join(s.value for s in JobState)
        raise ConfigurationError(f"unknown job state {value!r}: expected one of {names}") from None
