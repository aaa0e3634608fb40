"""What the pages and the JSON API show, shaped once for both: plain dicts and lists, every job
field still raw (templates escape it, the API serialises it). Everything here is sync: the
handlers run it in a thread, since every backend call blocks."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .. import _report
from .._states import JobState
from ..config import check_queue_name
from ..errors import ConfigurationError, NotSupported

if TYPE_CHECKING:
    from ..app import Errands
    from ..backends.base import WorkerInfo
    from ..jobs import JobInfo

__all__ = [
    "CHART_MINUTES", "FINISHED", "STATES", "Filters", "chart", "job_detail", "job_json", "job_view", "limits",
    "overview", "periodics", "pretty", "queues", "retry_all_failed", "throughput", "valid_queue", "when",
    "worker_json", "workers",
]

STATES = tuple(state.value for state in JobState)
FINISHED = ("succeeded", "failed", "cancelled")
CHART_MINUTES = 60
MAX_FILTER = 200  # a queue or job name longer than any valid one is still only data, but bounded
PAGE = 50
_RETRY_PAGE = 1000


def when(moment: datetime | float | None) -> str | None:
    """ISO 8601 in UTC, to the second; None stays None."""
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        try:
            moment = datetime.fromtimestamp(float(moment), timezone.utc)
        except (ValueError, OverflowError, OSError):
            return None
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def pretty(value: Any) -> str:
    """JSON for people: indented, non-ASCII kept, integers of any size exact (as text)."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=repr)
    except (ValueError, RecursionError):
        return repr(value)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def job_json(info: JobInfo) -> dict[str, Any]:
    """A job for the API: the stored values, times as ISO 8601 UTC."""
    return {
        "id": info.id, "name": info.name, "queue": info.queue, "state": str(info.state),
        "args": info.args, "kwargs": info.kwargs, "result": info.result, "error": info.error,
        "attempts": info.attempts, "max_attempts": info.max_attempts, "priority": info.priority,
        "unique_key": info.unique_key, "timeout": info.timeout, "worker_id": info.worker_id,
        "cancel_requested": info.cancel_requested, "created_at": when(info.created_at),
        "run_at": when(info.run_at), "started_at": when(info.started_at), "finished_at": when(info.finished_at),
        "duration": _seconds(info.started_at, info.finished_at),
    }


def job_view(info: JobInfo) -> dict[str, Any]:
    """A job for the templates: the API's fields plus pretty JSON text and what may be done to it."""
    data = job_json(info)
    state = data["state"]
    data.update(
        args_text=pretty(info.args), kwargs_text=pretty(info.kwargs), result_text=pretty(info.result),
        error_line=(info.error or "").split("\n", 1)[0], can_retry=state in ("failed", "cancelled"),
        can_cancel=state in ("scheduled", "available", "running"),
        waited=_seconds(info.created_at, info.started_at),
    )
    return data


def job_detail(app: Errands, info: JobInfo) -> dict[str, Any]:
    """The job page: the job, how it ended when its state does not say, and its workflow."""
    data = job_view(info)
    flow = _report.workflow(app, info)
    data["outcome"] = _report.outcome(info)
    data["workflow"] = None if flow is None else {
        **flow.as_dict(), "states": flow.states, "shown": _report.MAX_LINKED,
        "policy": {"fail": "fails if one of them fails", "run": "runs whatever they end as"}.get(
            flow.on_failure or "", ""),
    }
    return data


def valid_queue(queue: object) -> bool:
    """Whether ``queue`` is a queue name one could pause (a record may hold any text)."""
    try:
        check_queue_name(queue)
    except ConfigurationError:
        return False
    return True


def queues(app: Errands) -> dict[str, Any]:
    """Every queue with jobs or paused: its counts, whether it is paused, its declared limits.
    ``paused`` is None when the backend can't pause queues."""
    by_queue = _by_queue(app)
    paused = _report.paused(app)
    names = sorted({*by_queue, *(paused or ())}, key=str)
    rows = []
    for queue in names:
        counts = {s: int(by_queue.get(queue, {}).get(s, 0)) for s in STATES}
        limits = app.queue_limits.get(queue)
        rows.append({
            "name": queue, "counts": counts, "total": sum(counts.values()),
            "paused": paused is not None and queue in paused, "controllable": valid_queue(queue),
            "concurrency": limits.concurrency if limits is not None else None,
            "rate_limit": _report.rate_text(limits.rate) if limits is not None else None,
        })
    return {"queues": rows, "paused": None if paused is None else sorted(paused)}


def limits(app: Errands) -> dict[str, Any]:
    """Declared limits with the jobs holding them now (``usage_supported`` False: the backend
    can't enforce global limits)."""
    rows, usage_known = _report.limit_rows(app)
    return {"limits": [row.as_dict() for row in rows], "usage_supported": usage_known}


def _by_queue(app: Errands) -> dict[str, Any]:
    try:
        return dict(app.stats(by_queue=True))
    except NotSupported:
        return {"(all queues)": app.stats()}


@dataclass(frozen=True)
class Filters:
    """Job-list filters from a query string, checked: a bad state is a 400, names are data."""

    state: str | None = None
    queue: str | None = None
    name: str | None = None
    before: str | None = None
    limit: int = PAGE

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> Filters:
        state = params.get("state") or None
        if state is not None and state not in STATES:
            raise ConfigurationError(f"unknown state {state!r}: expected one of {', '.join(STATES)}")
        values = {key: params.get(key) or None for key in ("queue", "name", "before")}
        for key, value in values.items():
            if value is not None and len(value) > MAX_FILTER:
                raise ConfigurationError(f"{key} is longer than {MAX_FILTER} characters")
        raw_limit = params.get("limit") or str(PAGE)
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 500:
            raise ConfigurationError("limit must be a number from 1 to 500")
        return cls(state=state, limit=int(raw_limit), **values)

    def query(self, **changes: Any) -> dict[str, str]:
        """These filters (with ``changes``) as query parameters, empty ones left out."""
        values = {"state": self.state, "queue": self.queue, "name": self.name, "before": self.before}
        values.update(changes)
        return {key: str(value) for key, value in values.items() if value}

    def jobs(self, app: Errands) -> tuple[list[JobInfo], str | None]:
        """One page, newest first, and the ``before`` of the next (older) page, if any."""
        jobs = app.list_jobs(state=self.state, queue=self.queue, name=self.name, limit=self.limit + 1,
                             before=self.before)
        more = len(jobs) > self.limit
        jobs = jobs[: self.limit]
        return jobs, (jobs[-1].id if more and jobs else None)


def throughput(app: Errands, minutes: int = CHART_MINUTES) -> list[dict[str, Any]] | None:
    """Jobs finished per minute over the last ``minutes``, aligned on whole minutes; None when
    the backend can't count by finish time."""
    backend = app.backend
    since = (math.floor(backend.now() / 60) - minutes + 1) * 60
    try:
        buckets = backend.throughput(since, 60.0)
    except NotSupported:
        return None
    return [{"start": when(start), "succeeded": ok, "failed": bad} for start, ok, bad in buckets[-minutes:]]


def chart(series: list[dict[str, Any]] | None, width: int = 720, height: int = 160) -> dict[str, Any] | None:
    """Bars for the throughput SVG, drawn by the template: succeeded below, failed stacked on top."""
    if not series:
        return None
    left, bottom, top = 44, 22, 8
    plot_w, plot_h = width - left - 4, height - bottom - top
    peak = max(max(b["succeeded"] + b["failed"] for b in series), 1)
    step = plot_w / len(series)
    bars = []
    for i, bucket in enumerate(series):
        ok_h = plot_h * bucket["succeeded"] / peak
        bad_h = plot_h * bucket["failed"] / peak
        base = top + plot_h
        bars.append({
            "x": round(left + i * step + 0.5, 1), "w": round(max(step - 1, 1), 1),
            "ok_y": round(base - ok_h, 1), "ok_h": round(ok_h, 1),
            "bad_y": round(base - ok_h - bad_h, 1), "bad_h": round(bad_h, 1),
            "title": f"{bucket['start']}: {bucket['succeeded']} succeeded, {bucket['failed']} failed",
        })
    total_ok = sum(b["succeeded"] for b in series)
    total_bad = sum(b["failed"] for b in series)
    return {"width": width, "height": height, "left": left, "top": top, "base": top + plot_h, "peak": peak,
            "bars": bars, "succeeded": total_ok, "failed": total_bad, "minutes": len(series)}


def workers(app: Errands) -> list[WorkerInfo] | None:
    try:
        return app.workers()
    except NotSupported:
        return None


def worker_json(info: WorkerInfo) -> dict[str, Any]:
    return {
        "id": info.id, "host": info.host, "pid": info.pid, "queues": list(info.queues),
        "concurrency": info.concurrency, "started_at": when(info.started_at), "last_seen": when(info.last_seen),
        "running": list(info.running), "processed": info.processed,
    }


def periodics(app: Errands) -> list[dict[str, Any]]:
    now = app.backend.now() if app.periodics else 0.0
    return [{
        "name": spec.job.name, "queue": spec.job.options.queue,
        "schedule": spec.cron if spec.cron is not None else f"every {spec.every:g}s",
        "next_run": when(spec.next_tick(now)),
    } for spec in app.periodics]


def overview(app: Errands) -> dict[str, Any]:
    by_queue = _by_queue(app)
    totals = dict.fromkeys(STATES, 0)
    for counts in by_queue.values():
        for state in STATES:
            totals[state] += int(counts.get(state, 0))
    alive = workers(app)
    return {
        "queues": {queue: {s: int(by_queue[queue].get(s, 0)) for s in STATES} for queue in sorted(by_queue, key=str)},
        "totals": totals, "workers": None if alive is None else len(alive), "throughput": throughput(app),
        "paused": sorted(_report.paused(app) or ()),
    }


def retry_all_failed(app: Errands, queue: str | None = None) -> int:
    """Every failed job (of ``queue``) back to available, a page per call. Pages by id, not by
    offset: retried jobs leave the failed set, and one that can't move must not be seen twice."""
    moved, before = 0, None
    while True:
        page = app.list_jobs(state="failed", queue=queue, limit=_RETRY_PAGE, before=before)
        if not page:
            return moved
        moved += app.retry_jobs([job.id for job in page])
        if len(page) < _RETRY_PAGE:
            return moved
        before = page[-1].id
