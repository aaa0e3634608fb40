"""Everything the command line shows: the only CLI module that prints.

Data goes to stdout (tables, ``--json``, a job id), so it pipes cleanly; messages, logs and
progress go to stderr. Job fields are user data: they are rendered as ``Text``, never as
markup, so a ``[bold]`` in an argument is shown, not interpreted.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.logging import RichHandler
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .._states import JobState

if TYPE_CHECKING:
    from .._report import LimitRow, WorkflowView
    from ..backends.base import WorkerInfo
    from ..jobs import JobInfo

__all__ = [
    "STATES", "demo_progress", "demo_summary", "error", "job_detail", "job_id", "job_json", "jobs_table",
    "json_out", "limits_table", "note", "schema_state", "setup_logging", "show", "stats_table", "success", "watch",
    "worker_banner", "workers_table",
]

out = Console()
err = Console(stderr=True, soft_wrap=True)  # messages and log lines: never folded mid-line
if not out.is_terminal and "COLUMNS" not in os.environ:
    out.width = 200  # piped or captured: 80 columns would fold ids and names for nothing

STATES = [state.value for state in JobState]
STATE_STYLES = {
    "scheduled": "cyan", "available": "blue", "running": "yellow",
    "succeeded": "green", "failed": "bold red", "cancelled": "dim",
}


# messages ----------------------------------------------------------------------------------------
def error(message: str) -> None:
    err.print(Text.assemble(("error: ", "bold red"), message))


def note(message: str) -> None:
    err.print(Text(message))


def success(message: str) -> None:
    err.print(Text.assemble(("✓ ", "green"), message))


def job_id(value: str) -> None:
    # plain print: `JOB=$(errands enqueue ...)` must capture exactly the id
    sys.stdout.write(value + "\n")
    sys.stdout.flush()


def json_out(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_json_default, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def job_json(info: JobInfo) -> dict[str, Any]:
    return asdict(info)


def setup_logging(level: str) -> None:
    """Logs to stderr: rich for a person at a terminal; one plain line per record (with the pid,
    since supervised worker processes share the stream) for files and log collectors."""
    if err.is_terminal:
        handler: logging.Handler = RichHandler(console=err, show_path=False, rich_tracebacks=True)
        handler.setFormatter(logging.Formatter("[%(process)d] %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)-7s [%(process)d] %(name)s: %(message)s"))
    root = logging.getLogger("errands")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


# time --------------------------------------------------------------------------------------------
def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "-"
    seconds = (now - when).total_seconds()
    text = _span(abs(seconds))
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s" if seconds >= 1 else f"{seconds:.2f}s"


def _local(when: datetime | None) -> str:
    return when.astimezone().isoformat(sep=" ", timespec="milliseconds") if when else "-"


def _state(state: object) -> Text:
    return Text(str(state), style=STATE_STYLES.get(str(state), ""))


# jobs --------------------------------------------------------------------------------------------
def jobs_table(jobs: Sequence[JobInfo], *, title: str) -> None:
    if not jobs:
        note("no jobs match")
        return
    now = datetime.now(timezone.utc)
    # every column but NOTE keeps to one line: NOTE gives up its width first on a narrow terminal
    table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
                  collapse_padding=True, pad_edge=False)
    table.add_column("ID", no_wrap=True, min_width=36)
    for header in ("NAME", "QUEUE", "STATE"):
        table.add_column(header, no_wrap=True, overflow="ellipsis")
    table.add_column("TRIES", justify="right", no_wrap=True)
    table.add_column("CREATED", justify="right", no_wrap=True)
    wide = out.width >= 110  # below that the id and the state matter more than the note
    if wide:
        table.add_column("NOTE", overflow="ellipsis", max_width=80)
    for job in jobs:
        cells: list[RenderableType] = [
            Text(job.id), Text(job.name), Text(job.queue), _state(job.state),
            f"{job.attempts}/{job.max_attempts}", _ago(job.created_at, now),
        ]
        table.add_row(*cells, *([Text(_note(job, now))] if wide else []))
    out.print(table)


def _note(job: JobInfo, now: datetime) -> str:
    """One line on what matters for the state: when it runs, how long it took, why it failed."""
    state = str(job.state)
    if state == "scheduled":
        return f"runs {_ago(job.run_at, now)}"
    if state == "running":
        return f"started {_ago(job.started_at, now)}" + (", cancel requested" if job.cancel_requested else "")
    if state == "succeeded" and job.started_at and job.finished_at:
        return f"took {_span((job.finished_at - job.started_at).total_seconds())}"
    if job.error:
        return job.error.split("\n", 1)[0]
    return ""


def job_detail(job: JobInfo, *, outcome: str | None = None, workflow: WorkflowView | None = None) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in _detail_rows(job):
        grid.add_row(label, value)
    if outcome is not None:
        grid.add_row("outcome", Text(outcome, style="yellow"))
    if workflow is not None:
        for label, value in _workflow_rows(workflow):
            grid.add_row(label, value)
    parts: list[RenderableType] = [grid]
    if job.error:
        parts.append(Panel(Text(job.error), title="error (last attempt)", title_align="left", expand=False,
                           border_style="red"))
    out.print(Group(*parts))


def _detail_rows(job: JobInfo) -> Iterator[tuple[str, RenderableType]]:
    yield "id", Text(job.id)
    yield "name", Text(job.name)
    yield "queue", Text(job.queue)
    yield "state", _state(job.state)
    yield "attempts", f"{job.attempts} of {job.max_attempts}"
    yield "priority", str(job.priority)
    yield "args", Text(json.dumps(job.args, default=str, ensure_ascii=False))
    yield "kwargs", Text(json.dumps(job.kwargs, default=str, ensure_ascii=False))
    for label in ("created_at", "run_at", "started_at", "finished_at"):
        yield label.replace("_", " "), _local(getattr(job, label))
    yield "result", Text(json.dumps(job.result, default=str, ensure_ascii=False))
    yield "timeout", f"{job.timeout:g}s" if job.timeout is not None else "-"
    yield "unique key", Text(job.unique_key or "-")
    yield "worker", Text(job.worker_id or "-")
    if job.cancel_requested:
        yield "cancel", Text("requested", style="yellow")


def _workflow_rows(flow: WorkflowView) -> Iterator[tuple[str, RenderableType]]:
    yield "workflow", Text(flow.workflow_id or "-")
    if flow.progress is not None:
        p = flow.progress
        done = f"{p.finished} of {p.total} finished"
        detail = ", ".join(f"{n} {label}" for label, n in (
            ("succeeded", p.succeeded), ("failed", p.failed), ("cancelled", p.cancelled),
            ("running", p.running), ("waiting", p.waiting), ("missing", p.missing)) if n)
        policy = {"fail": "fails if one of them fails", "run": "runs whatever they end as"}.get(
            flow.on_failure or "", "")
        yield "progress", Text.assemble((_bar(p.finished, p.total), "green"), f" {done}",
                                        f" ({detail})" if detail else "", f"; {policy}" if policy else "")
    if flow.after:
        yield "waits on", _linked(flow.after, flow.states)
    if flow.then:
        yield "wakes", _linked(flow.then, flow.states)


def _bar(part: int, total: int, width: int = 20) -> str:
    filled = round(width * part / total) if total else width
    return "█" * filled + "░" * (width - filled)


def _linked(ids: Sequence[str], states: Mapping[str, str], shown: int = 10) -> Text:
    """Job ids with their states, a few per line; the rest counted."""
    text = Text()
    for index, job in enumerate(ids[:shown]):
        if index:
            text.append("\n")
        text.append(job)
        state = states.get(job)
        text.append(" ")
        text.append(state or "missing", style=STATE_STYLES.get(state or "", "dim"))
    if len(ids) > shown:
        text.append(f"\n… and {len(ids) - shown:,} more (errands show --json lists them)", style="dim")
    return text


# stats -------------------------------------------------------------------------------------------
def stats_table(by_queue: Mapping[str, Mapping[str, int]], *, caption: str | None = None,
                paused: frozenset[str] | None = None) -> Table:
    """States across, queues down, with a total row. A paused queue says so beside its name,
    and shows up even with no jobs."""
    paused = paused or frozenset()
    by_queue = {**{queue: {} for queue in paused}, **by_queue}
    # collapsed padding: nine columns fit an 80-column terminal without cutting a header
    table = Table(header_style="bold", caption=caption, caption_justify="left", box=box.SIMPLE_HEAD,
                  collapse_padding=True, pad_edge=False)
    table.add_column("QUEUE", no_wrap=True)
    for state in STATES:
        table.add_column(state.upper(), justify="right", style=STATE_STYLES[state] if state != "failed" else "red")
    table.add_column("TOTAL", justify="right", style="bold")
    totals = dict.fromkeys(STATES, 0)
    for queue in sorted(by_queue):
        counts = by_queue[queue]
        label = Text(queue)
        if queue in paused:
            label.append(" (paused)", style="bold yellow")
        table.add_row(label, *(f"{counts.get(s, 0):,}" for s in STATES), f"{sum(counts.values()):,}")
        for state in STATES:
            totals[state] += counts.get(state, 0)
    table.add_section()
    table.add_row(Text("all", style="bold"), *(f"{totals[s]:,}" for s in STATES), f"{sum(totals.values()):,}")
    return table


def workers_table(workers: Sequence[WorkerInfo] | None) -> None:
    """Live workers under the stats table: one line each, or why there are none."""
    if workers is None:
        note("workers: this backend keeps no worker registry")
        return
    if not workers:
        note("workers: none alive")
        return
    now = datetime.now(timezone.utc)
    table = Table(title=f"{len(workers)} worker(s) alive", title_justify="left", header_style="bold",
                  box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    for header in ("WORKER", "QUEUES", "CONCURRENCY", "RUNNING", "PROCESSED", "LAST SEEN"):
        table.add_column(header, no_wrap=True, justify="right" if header in ("CONCURRENCY", "RUNNING", "PROCESSED")
                         else "left")
    for w in workers:
        seen = datetime.fromtimestamp(w.last_seen, timezone.utc) if w.last_seen else None
        table.add_row(Text(w.id), Text(", ".join(w.queues) or "*"), str(w.concurrency), str(len(w.running)),
                      f"{w.processed:,}", _ago(seen, now))
    out.print(table)


def limits_table(rows: Sequence[LimitRow], usage_known: bool) -> None:
    """Declared limits and the jobs holding their slots now, or why there are none."""
    if not usage_known:
        note("limits: this backend does not support global limits (usage not supported)")
    if not rows:
        note("limits: none declared" + (" (with --url only limits in use show; give APP for the rest)"
                                         if usage_known else ""))
        return
    table = Table(title="limits", title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
                  collapse_padding=True, pad_edge=False)
    for header in ("LIMIT", "CONCURRENCY", "RATE", "RUNNING"):
        table.add_column(header, no_wrap=header != "LIMIT", justify="left" if header == "LIMIT" else "right")
    for row in rows:
        label = Text(row.key)
        if row.partitioned:
            label.append(" (per limit_key)", style="dim")
        if not row.declared:
            label.append(" (in use, not declared by this app)", style="dim")
        running = "-" if row.running is None else f"{row.running:,}"
        if row.partitions:
            busiest = sorted(row.partitions.items(), key=lambda item: -item[1])[:3]
            running += " (" + ", ".join(f"{k}: {n}" for k, n in busiest) + (", …" if len(row.partitions) > 3
                                                                             else "") + ")"
        each = " each" if row.partitioned else ""  # a partitioned limit holds per partition
        table.add_row(label, "-" if row.concurrency is None else f"{row.concurrency:,}{each}",
                      f"{row.rate}{each}" if row.rate else "-",
                      Text(running))
    out.print(table)


def show(renderable: RenderableType) -> None:
    out.print(renderable)


def watch(render: Callable[[], RenderableType], interval: float) -> None:
    """Redraw ``render()`` every ``interval`` seconds until Ctrl-C. Into a pipe or file, where
    a redraw can't erase, each refresh is appended instead (like ``vmstat 1``)."""
    stop = threading.Event()
    try:
        if not out.is_interactive:
            while True:
                out.print(render())
                sys.stdout.flush()
                stop.wait(interval)
        with Live(render(), console=out, auto_refresh=False) as live:
            while not stop.wait(interval):
                live.update(render(), refresh=True)
    except KeyboardInterrupt:
        pass


# worker, migrate ---------------------------------------------------------------------------------
def worker_banner(app: object, queues: Sequence[str], concurrency: int, processes: int, burst: bool) -> None:
    line = Text.assemble(
        ("errands worker ", "bold"), (repr(app), "cyan"),
        f"  queues: {', '.join(queues) if queues else '*'}  concurrency: {concurrency}",
        f"  processes: {processes}", "  (burst)" if burst else "",
    )
    err.print(line)


def schema_state(backend: str, url: str, version: int | None, counts: Mapping[str, int]) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("backend", Text(backend))
    grid.add_row("url", Text(url))
    grid.add_row("schema", Text(f"version {version}, up to date" if version is not None
                                else "ready (this backend reports no schema version)", style="green"))
    grid.add_row("jobs", ", ".join(f"{counts.get(s, 0):,} {s}" for s in STATES))
    out.print(grid)


# demo --------------------------------------------------------------------------------------------
@contextmanager
def demo_progress() -> Iterator[Progress]:
    progress = Progress(
        TextColumn("{task.description:<7}"), BarColumn(bar_width=20), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}", style="dim"),
        console=err,
    )
    with progress:
        yield progress


def demo_summary(rows: Sequence[tuple[str, str]], states: Mapping[str, int], ok: bool) -> None:
    table = Table(title="errands demo", title_justify="left", show_header=False, box=box.SIMPLE)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(justify="right")
    for label, value in rows:
        table.add_row(label, value)
    table.add_section()
    for state in STATES:
        if states.get(state):
            table.add_row(Text(state, style=STATE_STYLES[state]), f"{states[state]:,}")
    out.print(table)
    if ok:
        success("every job succeeded")
    else:
        error("not every job succeeded: see the table above")
