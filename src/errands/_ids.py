"""Client-made job ids: UUIDv7 text, sortable by creation time, so enqueue can be retried
after an ambiguous error without making a second job."""

from __future__ import annotations

import hashlib
import os
import threading
import time

__all__ = ["deterministic_id", "new_id"]

_lock = threading.Lock()
_last = [0, 0]  # last (ms, counter) issued by this process, to keep ids monotonic within a ms


def _format(value: int) -> str:
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _pack(ms: int, rand_a: int, rand_b: int) -> int:
    return (ms & 0xFFFFFFFFFFFF) << 80 | 0x7 << 76 | (rand_a & 0xFFF) << 64 | 0b10 << 62 | (rand_b & (2**62 - 1))


def new_id() -> str:
    """A new UUIDv7: 48 bits of milliseconds, a 12-bit counter for order within a ms, random bits."""
    ms = time.time_ns() // 1_000_000
    with _lock:
        if ms <= _last[0]:
            ms = _last[0]
            _last[1] += 1
            if _last[1] > 0xFFF:  # 4096 ids in one ms: borrow the next ms
                ms += 1
                _last[1] = 0
        else:
            _last[1] = 0
        _last[0] = ms
        counter = _last[1]
    return _format(_pack(ms, counter, int.from_bytes(os.urandom(8), "big")))


def deterministic_id(ms: int, key: str) -> str:
    """A UUIDv7-shaped id fixed by ``key`` and ``ms``: every scheduler firing the same tick makes
    the same id, so the store's idempotent enqueue keeps one job."""
    digest = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:10], "big")
    return _format(_pack(ms, digest >> 64, digest))
