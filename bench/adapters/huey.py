"""Huey on Redis (``RedisHuey``, blocking BRPOP reads: its default) and on SQLite (``SqliteHuey``,
WAL, SQLite's default synchronous=FULL). Calling the task enqueues it; ``huey_consumer -w 2 -k
process`` (a worker process per core). No bulk API."""

from __future__ import annotations

import os

from harness.effect import record
from huey import RedisHuey, SqliteHuey

from adapters import _redis
from adapters.base import Adapter, venv_bin

redis_huey = RedisHuey("bench", url=_redis.URL)
sqlite_huey = SqliteHuey("bench", filename=os.path.join(os.environ.get("BENCH_DIR", "."), "huey.db"))


@redis_huey.task(name="noop")
def noop_redis(job: int) -> None:
    record(job)


@sqlite_huey.task(name="noop")
def noop_sqlite(job: int) -> None:
    record(job)


class HueyRedis(Adapter):
    name = "huey"
    backend = "redis"
    distribution = "huey"
    durability = _redis.DURABILITY
    worker = "huey_consumer -w 2 -k process"
    delivery = "at-most-once (a dequeued task lives only in the consumer's memory)"
    instance = "adapters.huey.redis_huey"

    def setup(self) -> None:
        _redis.flush()

    def enqueue_one(self, job: int) -> None:
        noop_redis(job)

    def worker_commands(self) -> list[list[str]]:
        return [[venv_bin("huey_consumer"), self.instance, "-w", "2", "-k", "process", "-q"]]


class HueySqlite(HueyRedis):
    name = "huey (SqliteHuey)"
    backend = "sqlite"
    durability = "SQLite WAL, synchronous=FULL (SqliteHuey leaves SQLite's default)"
    instance = "adapters.huey.sqlite_huey"

    def setup(self) -> None:
        _ = sqlite_huey.storage.conn  # creates the tables

    def settings(self) -> dict[str, object]:
        conn = sqlite_huey.storage.conn
        return {"journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
                "synchronous": conn.execute("PRAGMA synchronous").fetchone()[0]}

    def enqueue_one(self, job: int) -> None:
        noop_sqlite(job)
