"""The worker registry's rows, shared by the SQL dialects: what ``register_worker`` binds and how
a ``SELECT`` of ``WORKER_COLUMNS`` becomes a ``WorkerInfo``. Each dialect brings its own DDL,
upsert and throughput statement (``_sqlite_sql.py``); the list columns are JSON text, so every
dialect stores them the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .base import WorkerInfo

__all__ = ["WORKER_COLUMNS", "WORKER_TABLE", "worker_from_row", "worker_params"]

WORKER_TABLE = "errands_workers"

# WorkerInfo's fields in order (a SELECT of these maps positionally); upserts add expires_at last.
WORKER_COLUMNS: tuple[str, ...] = (
    "id", "host", "pid", "queues", "concurrency", "started_at", "last_seen", "running", "processed",
)


def worker_params(info: WorkerInfo, now: float, ttl: float) -> tuple[Any, ...]:
    """Parameters of the dialect's upsert: ``WORKER_COLUMNS`` then ``expires_at``; ``last_seen``
    is the backend's now, whatever ``info`` says."""
    return (info.id, info.host, int(info.pid), json.dumps(list(info.queues)), int(info.concurrency),
            float(info.started_at), now, json.dumps(list(info.running)), int(info.processed), now + ttl)


def _strings(text: Any) -> tuple[str, ...]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return ()
    return tuple(str(item) for item in value) if isinstance(value, list) else ()


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0


def worker_from_row(row: Sequence[Any]) -> WorkerInfo:
    """A row of ``WORKER_COLUMNS`` as a WorkerInfo; odd values (written by hand) become 0 or ()."""
    worker_id, host, pid, queues, concurrency, started_at, last_seen, running, processed = row
    return WorkerInfo(
        id=str(worker_id), host=str(host), pid=_int(pid), queues=_strings(queues), concurrency=_int(concurrency),
        started_at=_float(started_at), last_seen=_float(last_seen), running=_strings(running),
        processed=_int(processed),
    )
