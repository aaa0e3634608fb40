"""Celery on Redis: ``task.delay``; ``celery worker`` with its defaults (prefork, concurrency =
cores = 2, prefetch multiplier 4, early ack). No result backend. No bulk API."""

from __future__ import annotations

from celery import Celery
from harness.effect import record

from adapters import _redis
from adapters.base import Adapter, venv_bin

app = Celery("bench", broker=_redis.URL)


@app.task(name="noop")
def noop(job: int) -> None:
    record(job)


class CeleryAdapter(Adapter):
    name = "celery"
    backend = "redis"
    distribution = "celery"
    durability = _redis.DURABILITY
    worker = "celery worker -c 2 (prefork; its defaults on 2 cores)"
    delivery = "at-most-once by default (acks_late=False: acked when received)"

    def setup(self) -> None:
        _redis.flush()

    def enqueue_one(self, job: int) -> None:
        noop.delay(job)

    def worker_commands(self) -> list[list[str]]:
        return [[venv_bin("celery"), "-A", "adapters.celery", "worker", "-c", "2", "--loglevel", "WARNING"]]
