"""arq: ``ArqRedis.enqueue_job``; two ``arq`` worker processes (it runs one asyncio process per
command), each with its defaults (max_jobs=10, poll_delay=0.5 s). No bulk API."""

from __future__ import annotations

from typing import Any, ClassVar

from arq import create_pool
from arq.connections import RedisSettings
from harness.effect import record

from adapters import _redis
from adapters.base import AsyncAdapter, venv_bin


async def noop(ctx: dict[str, Any], job: int) -> None:
    record(job)


class WorkerSettings:
    functions: ClassVar[list[Any]] = [noop]
    redis_settings = RedisSettings.from_dsn(_redis.URL)


class ArqAdapter(AsyncAdapter):
    name = "arq"
    backend = "redis"
    distribution = "arq"
    durability = _redis.DURABILITY
    worker = "2 × arq WorkerSettings (asyncio, max_jobs=10, poll_delay=0.5 s: its defaults)"
    delivery = "at-least-once (in-progress key with a timeout; re-run after it expires)"

    async def asetup(self) -> None:
        _redis.flush()
        self.pool = await create_pool(WorkerSettings.redis_settings)

    async def aclose(self) -> None:
        await self.pool.aclose()

    async def aenqueue_one(self, job: int) -> None:
        await self.pool.enqueue_job("noop", job)

    def worker_commands(self) -> list[list[str]]:
        command = [venv_bin("arq"), "adapters.arq.WorkerSettings"]
        return [command, command]
