"""errands on each of its backends: ``perform`` / ``perform_many``, and ``errands worker -p 2 -c 8``."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from harness.effect import record

from adapters.base import Adapter, venv_bin
from errands import Errands

# BENCH_ERRANDS_STORE: the store paired with amqp:// (None: the broker alone)
app = Errands(os.environ.get("BENCH_ERRANDS_URL", "memory://"),
              store=os.environ.get("BENCH_ERRANDS_STORE") or None)


@app.job(name="noop")
def noop(job: int) -> None:
    record(job)


# finished rows for the million-row test: ids that sort before every UUIDv7 the API makes
_FINISHED_COLUMNS = ("id, name, queue, args, kwargs, state, attempts, max_attempts, priority, run_at, "
                     "created_at, started_at, finished_at, result")


class ErrandsAdapter(Adapter):
    name = "errands"
    distribution = "errands"
    worker = "errands worker -p 2 -c 8 (2 processes x 8 threads)"
    bulk_api = "perform_many"
    delivery = "at-least-once (lease, settled after the handler)"

    def setup(self) -> None:
        _ = app.backend  # opens it: schema and migrations, outside any timing

    def close(self) -> None:
        app.close()

    def enqueue_one(self, job: int) -> None:
        noop.perform(job)

    def enqueue_bulk(self, jobs: Sequence[int]) -> None:
        noop.perform_many([((job,), {}) for job in jobs])

    def worker_commands(self) -> list[list[str]]:
        return [[venv_bin("errands"), "worker", "adapters.errands:app", "-p", "2", "-c", "8",
                 "--log-level", "warning"]]


class ErrandsSqlite(ErrandsAdapter):
    backend = "sqlite"
    durability = "SQLite WAL, synchronous=NORMAL (errands' default): survives a crash of any process"
    sql = True

    def _connect(self) -> Any:
        import sqlite3

        return sqlite3.connect(app.backend.options.path, isolation_level=None, timeout=30)

    def settings(self) -> dict[str, Any]:
        conn = self._connect()
        try:
            return {"journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
                    "synchronous (errands sets per connection)": app.backend.options.synchronous}
        finally:
            conn.close()

    def load_finished(self, rows: int) -> None:
        now = time.time() - 86400
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                f"WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < ?) "
                f"INSERT INTO errands_jobs ({_FINISHED_COLUMNS}) "
                f"SELECT printf('00000000-0000-7000-8000-%012d', x), 'noop', 'default', '[0]', '{{}}', "
                f"'succeeded', 1, 6, 0, ?2, ?2, ?2, ?2, 'null' FROM seq", (rows, now))
            conn.execute("COMMIT")
            conn.execute("ANALYZE")
        finally:
            conn.close()


class ErrandsSqliteFull(ErrandsSqlite):
    name = "errands (synchronous=full)"
    durability = "SQLite WAL, synchronous=FULL (?synchronous=full): survives power loss, one fsync per commit"


class ErrandsRedis(ErrandsAdapter):
    backend = "redis"
    durability = "Redis reply; the bench's server has no persistence (--save '' --appendonly no)"

    def setup(self) -> None:
        import redis

        redis.Redis.from_url(os.environ["BENCH_REDIS_URL"]).flushall()
        super().setup()


class ErrandsPostgres(ErrandsAdapter):
    backend = "postgres"
    durability = "COMMIT with synchronous_commit=on, fsync=on (PostgreSQL defaults)"
    sql = True

    def load_finished(self, rows: int) -> None:
        _load_finished_postgres(rows)


def _load_finished_postgres(rows: int) -> None:
    import psycopg

    with psycopg.connect(os.environ["BENCH_PG_DSN"], autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO errands_jobs ({_FINISHED_COLUMNS}) "
            "SELECT '00000000-0000-7000-8000-' || lpad(x::text, 12, '0'), 'noop', 'default', '[0]', '{}', "
            "'succeeded', 1, 6, 0, t, t, t, t, 'null' "
            "FROM generate_series(1, %s) AS x, (SELECT extract(epoch FROM now()) - 86400 AS t) AS n",
            (rows,))
        conn.execute("VACUUM ANALYZE errands_jobs")


class ErrandsMysql(ErrandsAdapter):
    backend = "mysql"
    durability = "COMMIT on the shared MariaDB (innodb_flush_log_at_trx_commit as reported)"
    sql = True

    def load_finished(self, rows: int) -> None:
        import pymysql
        from harness.servers import MYSQL_DATABASE

        conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", database=MYSQL_DATABASE, autocommit=True)
        now = time.time() - 86400
        try:
            with conn.cursor() as cur:
                step = 100_000
                for start in range(1, rows + 1, step):
                    stop = min(rows, start + step - 1)
                    cur.execute(
                        f"INSERT INTO errands_jobs ({_FINISHED_COLUMNS}) "
                        "SELECT CONCAT('00000000-0000-7000-8000-', LPAD(seq, 12, '0')), 'noop', 'default', "
                        "'[0]', '{}', 'succeeded', 1, 6, 0, %s, %s, %s, %s, 'null' "
                        f"FROM seq_{start}_to_{stop}", (now, now, now, now))
                cur.execute("ANALYZE TABLE errands_jobs")
                cur.fetchall()
        finally:
            conn.close()


class ErrandsRabbitmq(ErrandsAdapter):
    backend = "rabbitmq"
    durability = ("publisher confirm of a persistent message on a durable quorum queue (errands' default): "
                  "perform returns once the broker has it on disk")
    delivery = "at-least-once (manual ack after the handler; the unacked delivery is the lease)"


class ErrandsRabbitmqPostgres(ErrandsRabbitmq):
    name = "errands (+ PostgreSQL store)"
    durability = ("COMMIT to the bench's PostgreSQL (synchronous_commit=on), then a publisher-confirmed "
                  "wake-up on a durable quorum queue; maintenance re-publishes a stored job with no message")
    delivery = "at-least-once (claimed in the store by the delivered id, settled in the store, then acked)"
    sql = True
    probe = "postgres"  # WAL bytes per job in the store

    def load_finished(self, rows: int) -> None:
        _load_finished_postgres(rows)
