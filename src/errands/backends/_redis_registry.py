"""The Redis backend's worker registry and throughput counts (a mixin of ``RedisBackend``).

Keys, beside the job keys of ``redis.py``::

    <prefix>:workers              zset  worker id -> when its registration expires (server time)
    <prefix>:worker:<id>          hash  the WorkerInfo (lists as JSON); PEXPIREs with the entry

The zset decides who is alive, by the server's clock (``TIME``), and each read drops the
expired; the hash's own TTL frees a dead worker's record even if nobody reads again.
Throughput is ZCOUNTs over each queue's ``succeeded`` and ``failed`` sets, which are scored
by ``finished_at``: O(log n) per bucket, one round trip in all.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .._states import JobState
from ._redis_codec import escape_queue, integer, number, text
from .base import Throughput, WorkerInfo, check_buckets, throughput_buckets

__all__ = ["RedisRegistry"]

_FINISHED = (JobState.SUCCEEDED.value, JobState.FAILED.value)
_MARGIN_MS = 1000  # the hash outlives its zset entry a little, so a read never finds an id without it


def _strings(value: Any) -> tuple[str, ...]:
    try:
        items = json.loads(text(value))
    except ValueError:
        return ()
    return tuple(str(item) for item in items) if isinstance(items, list) else ()


def _worker(fields: dict[bytes, bytes], worker_id: str) -> WorkerInfo:
    g = fields.get
    return WorkerInfo(
        id=worker_id, host=text(g(b"host")), pid=integer(g(b"pid"), 0), queues=_strings(g(b"queues")),
        concurrency=integer(g(b"concurrency"), 0), started_at=number(g(b"started_at")) or 0.0,
        last_seen=number(g(b"last_seen")) or 0.0, running=_strings(g(b"running")),
        processed=integer(g(b"processed"), 0),
    )


class RedisRegistry:
    """``register_worker`` / ``remove_worker`` / ``workers`` / ``throughput`` for RedisBackend."""

    if TYPE_CHECKING:  # provided by RedisBackend
        prefix: str

        def now(self) -> float: ...
        def _pipeline(self, commands: Iterable[Sequence[Any]]) -> builtins.list[Any]: ...
        def _queues(self, max_age: float = ...) -> builtins.list[str]: ...
        def _base(self, queue: str) -> str: ...

    def _worker_key(self, worker_id: str) -> str:
        # the same escaping as queue names: ids are data, never a hash tag or separator
        return f"{self.prefix}:worker:{escape_queue(worker_id)}"

    def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        now = self.now()
        key, index = self._worker_key(info.id), f"{self.prefix}:workers"
        fields = {
            "host": info.host, "pid": int(info.pid), "queues": json.dumps(list(info.queues)),
            "concurrency": int(info.concurrency), "started_at": repr(float(info.started_at)),
            "last_seen": repr(now), "running": json.dumps(list(info.running)), "processed": int(info.processed),
        }
        flat = [item for pair in fields.items() for item in pair]
        self._pipeline([
            ("ZREMRANGEBYSCORE", index, "-inf", repr(now)),
            ("HSET", key, *flat),
            ("PEXPIRE", key, max(1, int(ttl * 1000)) + _MARGIN_MS),
            ("ZADD", index, repr(now + ttl), info.id),
        ])

    def remove_worker(self, worker_id: str) -> None:
        self._pipeline([("ZREM", f"{self.prefix}:workers", worker_id), ("DEL", self._worker_key(worker_id))])

    def workers(self) -> builtins.list[WorkerInfo]:
        now = self.now()
        ids = [text(i) for i in self._pipeline([("ZRANGEBYSCORE", f"{self.prefix}:workers", f"({now!r}", "+inf")])[0]]
        if not ids:
            return []
        replies = self._pipeline(("HGETALL", self._worker_key(worker_id)) for worker_id in ids)
        alive = [_worker(fields, worker_id) for worker_id, fields in zip(ids, replies)
                 if isinstance(fields, dict) and fields]
        return sorted(alive, key=lambda w: (w.started_at, w.id))

    def throughput(self, since: float, bucket: float) -> Throughput:
        now = self.now()
        check_buckets(since, bucket, now)
        size = max(1, int((now - since) // bucket) + 1)
        slots = [(queue, state, k) for queue in self._queues(0) for state in _FINISHED for k in range(size)]
        replies = self._pipeline(
            ("ZCOUNT", self._base(queue) + state, repr(since + k * bucket), f"({since + (k + 1) * bucket!r}")
            for queue, state, k in slots
        )
        rows = [(k, state, count) for (_, state, k), count in zip(slots, replies) if isinstance(count, int)]
        return throughput_buckets(since, bucket, now, rows)
