"""PgQueuer on asyncpg (its README's driver): ``Queries.enqueue`` with a scalar (one job) or
lists (a batch); two worker processes with ``pgq run``'s defaults (LISTEN/NOTIFY, batch size 10).

``pgq run`` itself dies at start with the typer release pip resolves today (its ``--log-level``
parser hands typer a str where an enum is expected), so each process calls ``pgqueuer.run()``,
the function ``pgq run`` calls, with the same defaults and loop (``python -m adapters.pgqueuer``)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import asyncpg
from harness.effect import record
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries

from adapters.base import AsyncAdapter

DSN = os.environ.get("BENCH_PG_DSN", "")


@asynccontextmanager
async def main() -> AsyncIterator[PgQueuer]:
    """The factory ``pgq run adapters.pgqueuer:main`` takes (this release wants an async context
    manager; its README still shows a coroutine)."""
    connection = await asyncpg.connect(DSN)
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        record(int(job.payload or b"0"))

    try:
        yield pgq
    finally:
        await connection.close()


class PgqueuerAdapter(AsyncAdapter):
    name = "pgqueuer"
    backend = "postgres"
    distribution = "pgqueuer"
    durability = "COMMIT with synchronous_commit=on (PostgreSQL defaults)"
    worker = "2 × pgqueuer.run(factory) (what pgq run calls; asyncio, uvloop, its defaults)"
    bulk_api = "Queries.enqueue with lists"
    delivery = "at-least-once (status 'picked' with heartbeat; finished jobs move to pgqueuer_log)"
    sql = True

    async def asetup(self) -> None:
        self.connection = await asyncpg.connect(DSN)
        self.queries = Queries(AsyncpgDriver(self.connection))
        await self.queries.install()

    async def aclose(self) -> None:
        await self.connection.close()

    async def aenqueue_one(self, job: int) -> None:
        await self.queries.enqueue("noop", str(job).encode())

    async def aenqueue_bulk(self, jobs: Sequence[int]) -> None:
        await self.queries.enqueue(["noop"] * len(jobs), [str(job).encode() for job in jobs], [0] * len(jobs))

    def worker_commands(self) -> list[list[str]]:
        command = [sys.executable, "-m", "adapters.pgqueuer"]
        return [command, command]

    def load_finished(self, rows: int) -> None:
        """PgQueuer deletes a finished job from its queue table and logs it in pgqueuer_log: so
        the million finished jobs are a million 'successful' (already aggregated) log rows."""
        import psycopg

        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO pgqueuer_log (created, job_id, status, priority, entrypoint, aggregated) "
                "SELECT now() - interval '1 day', x, 'successful', 0, 'noop', true "
                "FROM generate_series(1, %s) AS x", (rows,))
            conn.execute("VACUUM ANALYZE pgqueuer_log")


if __name__ == "__main__":
    import pgqueuer

    try:
        import uvloop  # what pgq run's asyncio_run picks on Linux

        uvloop.run(pgqueuer.run("adapters.pgqueuer:main"))
    except ImportError:
        asyncio.run(pgqueuer.run("adapters.pgqueuer:main"))
