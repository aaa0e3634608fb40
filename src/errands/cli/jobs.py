"""Reading and steering stored jobs: ``jobs``, ``show``, ``retry``, ``cancel``, ``purge``."""

from __future__ import annotations

import click

from .. import _report
from .._states import TERMINAL_STATES, JobState
from ..app import Errands
from . import CliError, Duration, _output, app_command

__all__ = ["cancel", "jobs", "purge", "retry", "show"]

_STATES = click.Choice([s.value for s in JobState], case_sensitive=False)
_FINISHED = click.Choice([s.value for s in JobState if s in TERMINAL_STATES], case_sensitive=False)
_PAGE = 1000  # --all-failed retries in batches of this many, one round trip each


@app_command(handlers=False, name="jobs")
@click.option("--state", "-s", type=_STATES, help="Only jobs in this state.")
@click.option("--queue", "-q", metavar="QUEUE", help="Only jobs of this queue.")
@click.option("--name", metavar="NAME", help="Only jobs of this job name.")
@click.option("--limit", "-n", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def jobs(app: Errands, state: str | None, queue: str | None, name: str | None, limit: int, as_json: bool) -> None:
    """List jobs, newest first."""
    found = app.list_jobs(state=state, queue=queue, name=name, limit=limit)
    if as_json:
        _output.json_out([_output.job_json(job) for job in found])
        return
    filters = ", ".join(f"{k}={v}" for k, v in (("state", state), ("queue", queue), ("name", name)) if v)
    _output.jobs_table(found, title=f"{len(found)} job(s), newest first" + (f" ({filters})" if filters else ""))


@app_command(handlers=False, name="show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def show(app: Errands, job_id: str, as_json: bool) -> None:
    """Show one job: every field and the last error's traceback; for a workflow step, what it
    waits on (with their progress) and what it wakes."""
    info = app.get_job(job_id)
    if info is None:
        raise CliError(f"no job with id {job_id!r}")
    flow = _report.workflow(app, info)
    if as_json:
        _output.json_out({**_output.job_json(info), "outcome": _report.outcome(info),
                          "workflow": None if flow is None else flow.as_dict()})
    else:
        _output.job_detail(info, outcome=_report.outcome(info), workflow=flow)


@app_command(handlers=False, name="retry")
@click.argument("job_id", required=False)
@click.option("--all-failed", is_flag=True, help="Retry every failed job.")
def retry(app: Errands, job_id: str | None, all_failed: bool) -> None:
    """Retry a failed or cancelled job, or every failed one.

    The job goes back to its queue as available, keeping its attempts (one more is allowed)."""
    if (job_id is None) == (not all_failed):
        raise click.UsageError("give a JOB_ID or --all-failed (not both)")
    if all_failed:
        _output.success(f"{_retry_all_failed(app):,} failed job(s) back in their queues")
        return
    assert job_id is not None
    if app.retry_job(job_id):
        _output.success(f"job {job_id} is available again")
        return
    info = app.get_job(job_id)
    if info is None:
        raise CliError(f"no job with id {job_id!r}")
    raise CliError(f"job {job_id} is {info.state}: only failed or cancelled jobs can be retried")


def _retry_all_failed(app: Errands) -> int:
    """Page by id (``before``), not by offset: retried jobs leave the failed set, and one that
    can't be retried (its unique key is taken again) must not be seen twice."""
    moved, before = 0, None
    while True:
        page = app.list_jobs(state=JobState.FAILED, limit=_PAGE, before=before)
        if not page:
            return moved
        moved += app.retry_jobs([job.id for job in page])  # one round trip per page
        if len(page) < _PAGE:
            return moved
        before = page[-1].id


@app_command(handlers=False, name="cancel")
@click.argument("job_id")
def cancel(app: Errands, job_id: str) -> None:
    """Cancel a job (a running one is asked to stop)."""
    result = app.cancel_job(job_id)
    if result == "cancelled":
        _output.success(f"job {job_id} cancelled")
    elif result == "requested":
        _output.success(f"job {job_id} is running: its handler is asked to stop (at its worker's next "
                        "heartbeat; `errands show` tells how it ended)")
    elif result == "not_found":
        raise CliError(f"no job with id {job_id!r}")
    else:
        info = app.get_job(job_id)
        state = info.state if info is not None else "finished"
        if info is not None and state == JobState.CANCELLED:
            how = " while running" if (info.error or "").startswith(_report.CANCELLED_RUNNING) else ""
            _output.note(f"job {job_id} was already cancelled{how}")  # cancelling twice is not an error
            return
        raise CliError(f"job {job_id} already {state}: nothing to cancel")


@app_command(handlers=False, name="purge")
@click.option("--state", "-s", type=_FINISHED, required=True, help="Which finished jobs to delete.")
@click.option("--older-than", type=Duration(), default="0", metavar="DURATION",
              help="Only jobs that finished longer ago than this: 30s, 15m, 12h, 7d.")
def purge(app: Errands, state: str, older_than: float) -> None:
    """Delete finished jobs (succeeded, failed or cancelled)."""
    removed = app.purge(state=state, older_than=older_than)
    age = f" that finished more than {_human(older_than)} ago" if older_than else ""
    _output.success(f"purged {removed:,} {state} job(s){age}")


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
