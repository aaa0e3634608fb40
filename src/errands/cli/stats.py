"""``errands stats``: job counts by state and queue, once or refreshed live."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from .. import _report
from ..app import Errands
from ..errors import NotSupported
from . import _output, app_command

if TYPE_CHECKING:
    from ..backends.base import WorkerInfo

__all__ = ["stats"]


@app_command(handlers=False, name="stats")
@click.option("--watch", "-w", is_flag=True, help="Refresh until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(0.1, 3600), default=1.0, show_default=True,
              metavar="SECONDS", help="Seconds between refreshes with --watch.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: totals and per-queue counts.")
def stats(app: Errands, watch: bool, interval: float, as_json: bool) -> None:
    """Count jobs by state for every queue; paused queues and limits in use show too."""
    if watch and as_json:
        raise click.UsageError("--watch and --json don't mix; poll `errands stats --json` instead")
    if as_json:
        by_queue, alive, paused = _by_queue(app), _workers(app), _report.paused(app)
        rows, _ = _report.limit_rows(app)
        _output.json_out({"total": _totals(by_queue), "queues": by_queue,
                          "paused": None if paused is None else sorted(paused),
                          "limits": [row.as_dict() for row in rows],
                          "workers": None if alive is None else [asdict(w) for w in alive]})
    elif watch:
        _output.watch(_Watcher(app), interval)
    else:
        _output.show(_output.stats_table(_by_queue(app), paused=_report.paused(app)))
        rows, usage_known = _report.limit_rows(app)
        if rows:
            _output.limits_table(rows, usage_known)
        _output.workers_table(_workers(app))


def _by_queue(app: Errands) -> dict[str, dict[str, int]]:
    try:
        return app.stats(by_queue=True)
    except NotSupported:  # a backend that only counts totals shows them as one row
        return {"(all queues)": app.stats()}


def _workers(app: Errands) -> list[WorkerInfo] | None:
    """Live workers, or None when the backend keeps no registry."""
    try:
        return app.workers()
    except NotSupported:
        return None


def _totals(by_queue: dict[str, dict[str, int]]) -> dict[str, int]:
    totals = dict.fromkeys(_output.STATES, 0)
    for counts in by_queue.values():
        for state, count in counts.items():
            totals[state] = totals.get(state, 0) + count
    return totals


class _Watcher:
    """Renders the table with a caption of the finish rate since the previous refresh."""

    def __init__(self, app: Errands) -> None:
        self.app = app
        self.previous: tuple[float, int] | None = None

    def __call__(self) -> Any:
        by_queue = _by_queue(self.app)
        totals = _totals(by_queue)
        finished = sum(totals[s] for s in ("succeeded", "failed", "cancelled"))
        now = time.monotonic()
        rate = ""
        if self.previous is not None and now > self.previous[0]:
            # finished jobs per second; negative after a purge, so floor it at 0
            per_second = max(0.0, (finished - self.previous[1]) / (now - self.previous[0]))
            rate = f" · finishing {per_second:,.0f} jobs/s"
        self.previous = (now, finished)
        alive = _workers(self.app)
        workers = "" if alive is None else f" · {len(alive)} worker(s) alive"
        caption = f"{time.strftime('%H:%M:%S')}{rate}{workers} · Ctrl-C to stop"
        return _output.stats_table(by_queue, caption=caption, paused=_report.paused(self.app))
