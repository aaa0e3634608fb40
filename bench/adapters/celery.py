"""Celery on Redis, and on RabbitMQ with its default AMQP transport (py-amqp): ``task.delay``;
``celery worker`` with its defaults (prefork, concurrency = cores = 2, prefetch multiplier 4,
early ack). No result backend. No bulk API."""

from __future__ import annotations

from celery import Celery
from harness.effect import record

from adapters import _amqp, _redis
from adapters.base import Adapter, venv_bin

app = Celery("bench", broker=_amqp.pyamqp_url() if _amqp.ON_RABBITMQ else _redis.URL)


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


class CeleryRabbitmq(CeleryAdapter):
    backend = "rabbitmq"
    durability = ("persistent message on a durable classic queue ('celery'), no publisher confirms "
                  "(confirm_publish is off by default): the publish returns before the broker has it")
    delivery = "at-most-once by default (acks_late=False: acked when the worker receives it; prefetch 4 × 2)"

    def setup(self) -> None:
        pass  # run.py hands every library an empty virtual host
