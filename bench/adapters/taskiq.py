"""taskiq with taskiq-redis's ``RedisStreamBroker`` (the one its README recommends: it acks):
``task.kiq``; ``taskiq worker --workers 2`` (its default). No result backend. No bulk API."""

from __future__ import annotations

from harness.effect import record
from taskiq_redis import RedisStreamBroker

from adapters import _redis
from adapters.base import AsyncAdapter, venv_bin

broker = RedisStreamBroker(url=_redis.URL)


@broker.task(task_name="noop")
async def noop(job: int) -> None:
    record(job)


class TaskiqAdapter(AsyncAdapter):
    name = "taskiq"
    backend = "redis"
    distribution = "taskiq"
    durability = _redis.DURABILITY
    worker = "taskiq worker --workers 2 (asyncio; its defaults)"
    delivery = "at-least-once (Redis stream consumer group, acked after the task)"

    async def asetup(self) -> None:
        _redis.flush()
        await broker.startup()

    async def aclose(self) -> None:
        await broker.shutdown()

    async def aenqueue_one(self, job: int) -> None:
        await noop.kiq(job)

    def worker_commands(self) -> list[list[str]]:
        return [[venv_bin("taskiq"), "worker", "adapters.taskiq:broker", "--workers", "2"]]
