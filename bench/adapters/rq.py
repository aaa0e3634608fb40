"""RQ: ``Queue.enqueue`` / ``Queue.enqueue_many``; two ``rq worker`` processes (one per core),
each forking a work horse per job as RQ does by default."""

from __future__ import annotations

from collections.abc import Sequence

from harness.effect import record
from redis import Redis
from rq import Queue

from adapters import _redis
from adapters.base import Adapter, venv_bin

connection = Redis.from_url(_redis.URL)
queue = Queue("default", connection=connection)


def noop(job: int) -> None:
    record(job)


class RqAdapter(Adapter):
    name = "rq"
    backend = "redis"
    distribution = "rq"
    durability = _redis.DURABILITY
    worker = "2 × rq worker (default Worker: a forked work horse per job)"
    bulk_api = "Queue.enqueue_many (one pipeline)"
    delivery = "at-least-once (StartedJobRegistry; abandoned jobs are failed, not re-run)"

    def setup(self) -> None:
        _redis.flush()

    def enqueue_one(self, job: int) -> None:
        queue.enqueue(noop, job)

    def enqueue_bulk(self, jobs: Sequence[int]) -> None:
        queue.enqueue_many([Queue.prepare_data(noop, (job,)) for job in jobs])

    def worker_commands(self) -> list[list[str]]:
        command = [venv_bin("rq"), "worker", "--url", _redis.URL, "--logging_level", "WARNING", "default"]
        return [command, command]
