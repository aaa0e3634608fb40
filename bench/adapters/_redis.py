"""Shared by the Redis adapters: the bench's own Redis, emptied before each library runs."""

from __future__ import annotations

import os

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0")  # always set by run.py


def flush() -> None:
    import redis

    client = redis.Redis.from_url(URL)
    client.flushall()
    client.close()


DURABILITY = "Redis reply; the bench's server has no persistence (--save '' --appendonly no)"
