"""The physical reference: the plain client writing one small job-like row (a uuid id and a JSON
payload) per enqueue, with no queue library around it.

enqueue one: one statement and one commit (one LPUSH) per job, in a loop
bulk:        one transaction (one pipeline) per batch of jobs
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Sequence
from typing import Any

from adapters.base import Adapter


def payload(job: int) -> str:
    return json.dumps({"name": "noop", "args": [job], "kwargs": {}})


class Raw(Adapter):
    raw = True
    worker = ""
    delivery = ""


class RawSqlite(Raw):
    name = "raw sqlite3"
    backend = "sqlite"
    distribution = "raw"
    synchronous = "NORMAL"
    durability = "WAL, synchronous=NORMAL; autocommit: one commit per INSERT"
    bulk_api = "executemany, one transaction per batch"
    sql = True

    def setup(self) -> None:
        path = os.path.join(self.workdir, "raw.db")
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        self.conn.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, payload TEXT NOT NULL)")

    def settings(self) -> dict[str, Any]:
        return {"sqlite": sqlite3.sqlite_version,
                "journal_mode": self.conn.execute("PRAGMA journal_mode").fetchone()[0],
                "synchronous": self.conn.execute("PRAGMA synchronous").fetchone()[0]}

    def enqueue_one(self, job: int) -> None:
        self.conn.execute("INSERT INTO jobs (id, payload) VALUES (?, ?)", (str(uuid.uuid4()), payload(job)))

    def enqueue_bulk(self, jobs: Sequence[int]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany("INSERT INTO jobs (id, payload) VALUES (?, ?)",
                              [(str(uuid.uuid4()), payload(job)) for job in jobs])
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class RawSqliteFull(RawSqlite):
    name = "raw sqlite3 (synchronous=full)"
    synchronous = "FULL"
    durability = "WAL, synchronous=FULL; autocommit: one commit (one fsync) per INSERT"


class RawRedis(Raw):
    name = "raw redis-py"
    backend = "redis"
    distribution = "redis"
    durability = "the reply; the bench's Redis has no persistence"
    bulk_api = "LPUSH pipeline (no MULTI), one per batch"

    def setup(self) -> None:
        import redis

        self.client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
        self.client.flushall()

    def enqueue_one(self, job: int) -> None:
        self.client.lpush("jobs", payload(job))

    def enqueue_bulk(self, jobs: Sequence[int]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for job in jobs:
            pipe.lpush("jobs", payload(job))
        pipe.execute()

    def close(self) -> None:
        self.client.close()


class RawPostgres(Raw):
    name = "raw psycopg"
    backend = "postgres"
    distribution = "psycopg"
    durability = "COMMIT per INSERT (synchronous_commit=on)"
    bulk_api = "executemany, one transaction per batch"
    sql = True

    def setup(self) -> None:
        import psycopg

        self.conn = psycopg.connect(os.environ["BENCH_PG_DSN"], autocommit=True)
        self.conn.execute("CREATE TABLE jobs (id uuid PRIMARY KEY, payload text NOT NULL)")

    def enqueue_one(self, job: int) -> None:
        self.conn.execute("INSERT INTO jobs (id, payload) VALUES (%s, %s)", (uuid.uuid4(), payload(job)))

    def enqueue_bulk(self, jobs: Sequence[int]) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany("INSERT INTO jobs (id, payload) VALUES (%s, %s)",
                            [(uuid.uuid4(), payload(job)) for job in jobs])

    def close(self) -> None:
        self.conn.close()


class RawMysql(Raw):
    name = "raw PyMySQL"
    backend = "mysql"
    distribution = "PyMySQL"
    durability = "COMMIT per INSERT (InnoDB)"
    bulk_api = "executemany (one multi-row INSERT), one transaction per batch"
    sql = True

    def setup(self) -> None:
        import pymysql
        from harness.servers import MYSQL_DATABASE

        self.conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", database=MYSQL_DATABASE,
                                    autocommit=True)
        with self.conn.cursor() as cur:
            cur.execute("CREATE TABLE jobs (id CHAR(36) PRIMARY KEY, payload TEXT NOT NULL) ENGINE=InnoDB")

    def enqueue_one(self, job: int) -> None:
        with self.conn.cursor() as cur:
            cur.execute("INSERT INTO jobs (id, payload) VALUES (%s, %s)", (str(uuid.uuid4()), payload(job)))

    def enqueue_bulk(self, jobs: Sequence[int]) -> None:
        self.conn.begin()
        with self.conn.cursor() as cur:
            cur.executemany("INSERT INTO jobs (id, payload) VALUES (%s, %s)",
                            [(str(uuid.uuid4()), payload(job)) for job in jobs])
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()
