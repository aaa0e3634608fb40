"""Server-side cost per job, read from the bench's own servers (nothing else runs on them):
Redis: microseconds of command execution (INFO commandstats, Lua scripts included) and
commands; PostgreSQL: WAL bytes written (pg_current_wal_lsn). Both are immune to the noise of
a busy machine, unlike the rates."""

from __future__ import annotations

import os
from typing import Any


def snapshot(backend: str) -> dict[str, float] | None:
    try:
        if backend == "redis":
            import redis

            client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
            stats = client.info("commandstats")
            client.close()
            return {"usec": float(sum(v["usec"] for v in stats.values())),
                    "calls": float(sum(v["calls"] for v in stats.values()))}
        if backend == "postgres":
            import psycopg

            with psycopg.connect(os.environ["BENCH_PG_DSN"], autocommit=True) as conn:
                row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')").fetchone()
            return {"wal": float(row[0])} if row else None
    except Exception:  # noqa: BLE001 - a probe that fails leaves the column empty, never the run
        return None
    return None


def per_job(before: dict[str, float] | None, after: dict[str, float] | None, jobs: int) -> dict[str, Any]:
    if not before or not after or jobs <= 0:
        return {}
    out: dict[str, Any] = {}
    if "usec" in before:
        out["server_us_per_job"] = round((after["usec"] - before["usec"]) / jobs, 1)
        out["server_calls_per_job"] = round((after["calls"] - before["calls"]) / jobs, 2)
    if "wal" in before:
        out["wal_bytes_per_job"] = round((after["wal"] - before["wal"]) / jobs)
    return out
