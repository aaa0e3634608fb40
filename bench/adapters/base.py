"""The interface every library adapter implements, so the harness runs the same workload on all.

An adapter module also holds the library's app/broker and the job, built at import time from
``BENCH_*`` environment variables: the library's own worker command imports the same module.
Every job does exactly ``harness.effect.record(job_number)`` and nothing else.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, ClassVar

from harness import effect
from harness.procs import WorkerGroup

BIN = os.path.dirname(sys.executable)  # the bench venv's bin/: every library's CLI is there


def venv_bin(name: str) -> str:
    return os.path.join(BIN, name)


class Adapter:
    """One library on one backend.

    enqueue_one(job)      enqueue one job through the library's normal single-job API
    enqueue_each(jobs)    the timed loop of single enqueues (async libraries await in one loop)
    enqueue_bulk(jobs)    the library's bulk API, one call per batch; None when it has none
    start_workers()       the library's standard worker, sized for 2 cores
    stop_workers()        SIGTERM (graceful), then SIGKILL what is left
    count_done()          jobs whose handler ran (size of the shared effect file)
    load_finished(rows)   SQL backends: bulk-load finished jobs with raw SQL (not the API)
    """

    name: ClassVar[str] = ""          # row label, e.g. "rq"
    backend: ClassVar[str] = ""       # sqlite | redis | postgres | mysql
    distribution: ClassVar[str] = ""  # PyPI name whose version is reported
    durability: ClassVar[str] = ""    # what an acknowledged enqueue survives, as configured here
    worker: ClassVar[str] = ""        # the worker command, in words
    bulk_api: ClassVar[str | None] = None
    delivery: ClassVar[str] = ""      # at-least-once (acked after run) or at-most-once (popped)
    raw: ClassVar[bool] = False       # a physical reference loop, no worker
    probe: ClassVar[str] = ""         # the server whose cost per job is read, when not the backend's

    def __init__(self, env: dict[str, str], workdir: str, log: str) -> None:
        self.env = env
        self.workdir = workdir
        self.log = log
        self.effect_path = env["BENCH_EFFECT"]
        self.group: WorkerGroup | None = None

    # lifecycle ---------------------------------------------------------------------------------
    def setup(self) -> None:
        """Create the schema / clean the store; runs before anything is timed."""

    def close(self) -> None:
        """Close the producer's connections."""

    def settings(self) -> dict[str, Any]:
        """Durability settings as the store reports them, for the results table."""
        return {}

    # producer ----------------------------------------------------------------------------------
    def enqueue_one(self, job: int) -> None:
        raise NotImplementedError

    def enqueue_each(self, jobs: Sequence[int]) -> None:
        for job in jobs:
            self.enqueue_one(job)

    def enqueue_bulk(self, jobs: Sequence[int]) -> None:
        raise NotImplementedError

    @property
    def has_bulk(self) -> bool:
        return self.bulk_api is not None

    # workers -----------------------------------------------------------------------------------
    def worker_commands(self) -> list[list[str]]:
        raise NotImplementedError

    def start_workers(self) -> WorkerGroup:
        bench = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(self.env)
        env["PYTHONPATH"] = bench
        env["PYTHONUNBUFFERED"] = "1"
        self.group = WorkerGroup(self.worker_commands(), cwd=bench, env=env, log=self.log)
        self.group.start()
        return self.group

    def stop_workers(self) -> None:
        if self.group is not None:
            self.group.stop()
            self.group = None

    def count_done(self) -> int:
        return effect.count(self.effect_path)

    # SQL backends --------------------------------------------------------------------------------
    sql: ClassVar[bool] = False

    def load_finished(self, rows: int) -> None:
        raise NotImplementedError


class AsyncAdapter(Adapter):
    """For libraries whose producer API is async: one event loop for the adapter's life, and the
    timed single-enqueue loop awaits each call inside that loop (no per-call loop overhead)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)

    async def aenqueue_one(self, job: int) -> None:
        raise NotImplementedError

    async def aenqueue_bulk(self, jobs: Sequence[int]) -> None:
        raise NotImplementedError

    async def asetup(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def setup(self) -> None:
        self.run(self.asetup())

    def close(self) -> None:
        try:
            self.run(self.aclose())
        finally:
            self.loop.close()

    def enqueue_one(self, job: int) -> None:
        self.run(self.aenqueue_one(job))

    def enqueue_each(self, jobs: Sequence[int]) -> None:
        async def each() -> None:
            for job in jobs:
                await self.aenqueue_one(job)

        self.run(each())

    def enqueue_bulk(self, jobs: Sequence[int]) -> None:
        self.run(self.aenqueue_bulk(jobs))
