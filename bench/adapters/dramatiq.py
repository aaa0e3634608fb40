"""Dramatiq on Redis, and on RabbitMQ with its ``RabbitmqBroker`` (pika): ``actor.send``;
``dramatiq -p 2 -t 8`` (its defaults on 2 cores). No bulk API."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from harness.effect import record

from adapters import _amqp, _redis
from adapters.base import Adapter, venv_bin

if _amqp.ON_RABBITMQ:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker: dramatiq.Broker = RabbitmqBroker(url=_amqp.URL)  # its defaults: confirm_delivery=False
else:
    broker = RedisBroker(url=_redis.URL)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="default")
def noop(job: int) -> None:
    record(job)


class DramatiqAdapter(Adapter):
    name = "dramatiq"
    backend = "redis"
    distribution = "dramatiq"
    durability = _redis.DURABILITY
    worker = "dramatiq -p 2 -t 8 (its defaults: processes = cores, 8 threads)"
    delivery = "at-least-once (acked after the actor ran; unacked messages requeued by heartbeat)"

    def setup(self) -> None:
        _redis.flush()

    def enqueue_one(self, job: int) -> None:
        noop.send(job)

    def worker_commands(self) -> list[list[str]]:
        return [[venv_bin("dramatiq"), "adapters.dramatiq", "-p", "2", "-t", "8"]]


class DramatiqRabbitmq(DramatiqAdapter):
    backend = "rabbitmq"
    durability = ("persistent message on a durable classic queue, no publisher confirms "
                  "(confirm_delivery=False, its default): the publish returns before the broker has it")
    delivery = "at-least-once (manual ack after the actor ran; prefetch 2 × threads per process)"

    def setup(self) -> None:
        pass  # run.py hands every library an empty virtual host
