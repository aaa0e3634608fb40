"""The one side effect every job does, the same for every library: append a 16-byte record
(job number, handler start time) to a file with one ``write(2)`` on an ``O_APPEND`` descriptor.

Appends that small are atomic on a local file system, so every worker process and thread of
every library can share the file, and the bench counts finished jobs by its size alone
(``count``) before it prints any rate. ``read`` gives every record back, to check that each job
ran (and how often) and to compute drain rates and latencies from handler start times.
"""

from __future__ import annotations

import os
import struct
import time

__all__ = ["RECORD", "count", "read", "record"]

RECORD = struct.Struct("<qd")  # job number, time.time() when the handler started
_state: dict[str, int] = {}  # pid -> descriptor; reopened after fork (rq's work horse, prefork pools)


def _fd() -> int:
    key = str(os.getpid())
    fd = _state.get(key)
    if fd is None:
        path = os.environ["BENCH_EFFECT"]
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _state.clear()
        _state[key] = fd
    return fd


def record(job: int) -> None:
    """What every benchmarked job does: note its number and when it started."""
    os.write(_fd(), RECORD.pack(int(job), time.time()))


def count(path: str) -> int:
    try:
        return os.stat(path).st_size // RECORD.size
    except FileNotFoundError:
        return 0


def read(path: str) -> list[tuple[int, float]]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    usable = len(data) - len(data) % RECORD.size
    return list(RECORD.iter_unpack(data[:usable]))
