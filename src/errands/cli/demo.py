"""``errands demo``: enqueue a batch of realistic jobs on the embedded SQLite store and run them
with a worker in this process, with progress, then a summary. Needs nothing but errands."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from .._demo import Demo, create_demo
from ..app import Errands
from . import _output

__all__ = ["demo"]

DB_FILE = "errands-demo.db"
BATCH = 1000  # calls per perform_many: one transaction each
POLL = 0.1  # seconds between app.stats() polls that drive the progress bar
STALL = 60.0  # no job finishing for this long means something is wrong: stop and report
_FINISHED = ("succeeded", "failed", "cancelled")


@click.command(name="demo")
@click.option("-n", "--jobs", "count", type=click.IntRange(1, 1_000_000), default=10_000, show_default=True,
              metavar="N", help="How many jobs to enqueue and run.")
@click.option("-c", "--concurrency", type=click.IntRange(1, 1000), default=16, show_default=True,
              metavar="N", help="Jobs the worker runs at once.")
@click.option("--keep", is_flag=True, help=f"Keep {DB_FILE} afterwards (look inside with `errands jobs`).")
def demo(count: int, concurrency: int, keep: bool) -> None:
    """Run a demo batch of jobs, with progress.

    Realistic small jobs (welcome e-mails, thumbnails, report rows). Uses ./errands-demo.db, deleted first and (unless --keep) at the end. A few percent of the
    jobs fail on their first attempt and succeed on retry. Exits 0 when every job succeeded.
    """
    _output.setup_logging("error")  # retries are the point of the demo; a warning each is noise
    path = Path.cwd() / DB_FILE
    _remove(path)
    demo_app = create_demo(f"sqlite:///{DB_FILE}")
    app = demo_app.app
    try:
        with _output.demo_progress() as progress:
            enqueue_seconds = _enqueue(demo_app, count, progress)
            run_seconds, final = _run(app, demo_app, count, concurrency, progress)
    finally:
        app.close()
        if not keep:
            _remove(path)
    ok = final.get("succeeded", 0) == count
    _output.demo_summary(_summary_rows(count, concurrency, enqueue_seconds, run_seconds, demo_app, keep), final, ok)
    if keep:
        _output.note(f"kept {path}: try `errands jobs --url sqlite:///{DB_FILE}`")
    raise SystemExit(0 if ok else 1)


def _enqueue(demo_app: Demo, count: int, progress: Any) -> float:
    task = progress.add_task("enqueue", total=count, detail="")
    started = time.perf_counter()
    for job, calls in demo_app.batches(count, BATCH):
        job.perform_many(calls)
        progress.advance(task, len(calls))
    elapsed = time.perf_counter() - started
    progress.update(task, detail=f"{count / max(elapsed, 1e-9):,.0f} jobs/s")
    return elapsed


def _run(app: Errands, demo_app: Demo, count: int, concurrency: int, progress: Any) -> tuple[float, dict[str, int]]:
    task = progress.add_task("run", total=count, detail="")
    started = time.perf_counter()
    last_change, last_done = started, -1
    app.start(concurrency=concurrency)
    try:
        while True:
            counts = app.stats()
            done = sum(counts.get(state, 0) for state in _FINISHED)
            now = time.perf_counter()
            rate = done / max(now - started, 1e-9)
            progress.update(task, completed=done,
                            detail=f"{rate:,.0f} jobs/s · {demo_app.retried:,} retried")
            if done >= count:
                break
            if done != last_done:
                last_change, last_done = now, done
            elif now - last_change > STALL:
                _output.error(f"no job finished for {STALL:g}s; stopping the demo")
                break
            time.sleep(POLL)  # the foreground polls; the worker's own threads do the work
    finally:
        app.stop(timeout=10)
    return time.perf_counter() - started, app.stats()


def _summary_rows(count: int, concurrency: int, enqueue_seconds: float, run_seconds: float, demo_app: Demo,
                  keep: bool) -> list[tuple[str, str]]:
    return [
        ("jobs", f"{count:,}"),
        ("store", f"SQLite, ./{DB_FILE}" + ("" if keep else " (deleted)")),
        ("enqueued in", f"{enqueue_seconds:.2f}s ({count / max(enqueue_seconds, 1e-9):,.0f} jobs/s)"),
        ("ran in", f"{run_seconds:.2f}s with concurrency {concurrency}"),
        ("throughput", f"{count / max(run_seconds, 1e-9):,.0f} jobs/s"),
        ("failed once, retried", f"{demo_app.retried:,}"),
    ]


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
