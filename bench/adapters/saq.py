"""saq on Redis and on PostgreSQL: ``Queue.enqueue``; ``saq SETTINGS --workers 2`` with its
default concurrency (10 per process). No bulk API (``Queue.map`` waits for results)."""

from __future__ import annotations

import os
from typing import Any

from harness.effect import record
from saq import Queue

from adapters import _redis
from adapters.base import AsyncAdapter, venv_bin


async def noop(ctx: dict[str, Any], *, job: int) -> None:
    record(job)


def _queue(url: str) -> Queue:
    return Queue.from_url(url, name="default")


redis_queue = _queue(_redis.URL)
redis_settings = {"queue": redis_queue, "functions": [noop]}
_pg = os.environ.get("BENCH_PG_DSN")
pg_queue = _queue(_pg) if _pg else None
pg_settings = {"queue": pg_queue, "functions": [noop]}


class SaqRedis(AsyncAdapter):
    name = "saq"
    backend = "redis"
    distribution = "saq"
    durability = _redis.DURABILITY
    worker = "saq --workers 2 (asyncio, concurrency 10 per process: its default)"
    delivery = "at-least-once (active list; swept back after its timeout)"
    settings_name = "adapters.saq.redis_settings"

    @property
    def queue(self) -> Queue:
        return redis_queue

    async def asetup(self) -> None:
        _redis.flush()
        await self.queue.connect()

    async def aclose(self) -> None:
        await self.queue.disconnect()

    async def aenqueue_one(self, job: int) -> None:
        await self.queue.enqueue("noop", job=job)

    def worker_commands(self) -> list[list[str]]:
        return [[venv_bin("saq"), self.settings_name, "--workers", "2", "--quiet"]]


class SaqPostgres(SaqRedis):
    backend = "postgres"
    durability = "COMMIT with synchronous_commit=on (PostgreSQL defaults)"
    settings_name = "adapters.saq.pg_settings"

    @property
    def queue(self) -> Queue:
        assert pg_queue is not None
        return pg_queue

    async def asetup(self) -> None:
        await self.queue.connect()
