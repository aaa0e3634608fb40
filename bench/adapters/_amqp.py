"""Shared by the RabbitMQ adapters: the shared broker, in the bench's own virtual host (run.py
empties it before each library runs and deletes it at the end)."""

from __future__ import annotations

import os

URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/")  # always set by run.py
# set by the plan for a peer's RabbitMQ row: its module (imported by its own worker command too)
# builds the app on the broker instead of the bench's Redis
ON_RABBITMQ = os.environ.get("BENCH_BROKER") == "rabbitmq"


def pyamqp_url() -> str:
    """Celery's URL for its default AMQP transport (py-amqp)."""
    return "pyamqp" + URL[len("amqp"):]
