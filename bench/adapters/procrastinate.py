"""procrastinate: ``defer_async`` / ``batch_defer_async``; two ``procrastinate worker
--concurrency 8`` processes (asyncio; LISTEN/NOTIFY on; finished jobs kept, its default)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import procrastinate
from harness.effect import record

from adapters.base import AsyncAdapter, venv_bin

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("BENCH_PG_DSN", "")))


@app.task(name="noop", queue="default")
async def noop(job: int) -> None:
    record(job)


class ProcrastinateAdapter(AsyncAdapter):
    name = "procrastinate"
    backend = "postgres"
    distribution = "procrastinate"
    durability = "COMMIT with synchronous_commit=on (PostgreSQL defaults)"
    worker = "2 × procrastinate worker --concurrency 8 (asyncio)"
    bulk_api = "Task.batch_defer_async"
    delivery = "at-least-once (status 'doing'; stalled jobs retried via the worker heartbeat)"
    sql = True

    async def asetup(self) -> None:
        await app.open_async()
        await app.schema_manager.apply_schema_async()

    async def aclose(self) -> None:
        await app.close_async()

    async def aenqueue_one(self, job: int) -> None:
        await noop.defer_async(job=job)

    async def aenqueue_bulk(self, jobs: Sequence[int]) -> None:
        await noop.batch_defer_async(*({"job": job} for job in jobs))

    def worker_commands(self) -> list[list[str]]:
        command = [venv_bin("procrastinate"), "--app=adapters.procrastinate.app", "worker", "--concurrency", "8"]
        return [command, command]

    def load_finished(self, rows: int) -> None:
        import psycopg

        with psycopg.connect(os.environ["BENCH_PG_DSN"], autocommit=True) as conn:
            conn.execute(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, attempts) "
                "SELECT 'default', 'noop', '{\"job\": 0}', 'succeeded', 1 FROM generate_series(1, %s)", (rows,))
            conn.execute("VACUUM ANALYZE procrastinate_jobs")
