"""Names into Redis keys (``escape_queue``) and Redis replies back into errands' values (bytes,
maybe missing, maybe junk written by hand): the decoders return something usable and never
raise on odd input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from .base import JobRecord

__all__ = ["escape_queue", "head_score", "integer", "job_record", "json_text", "number", "optional_json",
           "optional_text", "text"]

_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_.-]+")


def _percent(match: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in match.group().encode("utf-8", "surrogateescape"))


def escape_queue(queue: str) -> str:
    """The queue name as it appears in keys: data, never a hash tag or separator of its own."""
    return _UNSAFE_RE.sub(_percent, queue) if queue else "%"


def text(value: Any) -> str:
    decoded = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return "" if decoded is None else str(decoded)


def optional_text(value: Any) -> str | None:
    return None if value in (None, b"") else text(value)


def json_text(value: Any) -> str:
    """JSON text; bytes that aren't UTF-8 stay bytes for the codec to refuse, never 'repaired'."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value  # type: ignore[return-value]
    return "" if value is None else str(value)


def optional_json(value: Any) -> str | None:
    """``json_text`` of a field that may be absent (a job's ``meta``): None when missing or empty."""
    return None if value in (None, b"", "") else json_text(value)


def number(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, b"") else None
    except (TypeError, ValueError):
        return None


def integer(value: Any, default: int) -> int:
    parsed = number(value)
    return int(parsed) if parsed is not None and math.isfinite(parsed) else default


def job_record(fields: Mapping[bytes, bytes], job_id: str, queue: str) -> JobRecord:
    """A job hash (HGETALL) as a JobRecord; the queue comes from the key it was read under."""
    g = fields.get
    return JobRecord(
        id=text(g(b"id")) or job_id, name=text(g(b"name")), queue=queue, args=json_text(g(b"args")),
        kwargs=json_text(g(b"kwargs")), state=text(g(b"state")), attempts=integer(g(b"attempts"), 0),
        max_attempts=integer(g(b"max_attempts"), 1), priority=integer(g(b"priority"), 0),
        run_at=number(g(b"run_at")), created_at=number(g(b"created_at")),
        started_at=number(g(b"started_at")), finished_at=number(g(b"finished_at")),
        result=optional_text(g(b"result")), error=optional_text(g(b"error")),
        unique_key=optional_text(g(b"unique_key")), timeout=number(g(b"timeout")),
        worker_id=optional_text(g(b"worker_id")), cancel_requested=g(b"cancel") == b"1",
        meta=optional_json(g(b"meta")),
    )


def head_score(head: Any) -> float | None:
    """The score of a ZRANGE 0 0 WITHSCORES reply, paired by redis-py ([[m, s]]) or not ([m, s])."""
    if not isinstance(head, list) or not head:
        return None
    return float(head[0][1] if isinstance(head[0], (list, tuple)) else head[1])
