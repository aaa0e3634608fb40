"""Whose turn it is to write one SQLite file, among the threads of this process.

SQLite lets one connection write at a time and tells the others SQLITE_BUSY; a refused writer
can only sleep and try again, so the lock sits free while it sleeps. A worker has several
writers per process (the claim loop, the settler, heartbeats, producers), so most of that
waiting was between threads of one process: they now queue on a plain lock, handed over the
moment the holder is done, and only the thread at the head of the queue polls SQLite for the
other processes' turns. One turn per file per process, shared by every backend object on it.
"""

from __future__ import annotations

import os
import random
import threading
import time
from types import TracebackType

from ..errors import BackendUnavailable

__all__ = ["WriterTurn", "pause", "turn_for"]


class WriterTurn:
    """A lock that the thread holding it may take again (a write inside a write never waits on
    itself) and whose wait is bounded, so a stuck writer shows up as ``BackendUnavailable``
    after ``busy_timeout``, as a lock held in another process does."""

    __slots__ = ("_depth", "_lock", "_owner", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._depth = 0

    def take(self, timeout: float) -> None:
        me = threading.get_ident()
        if self._owner == me:
            self._depth += 1
            return
        if not self._lock.acquire(timeout=max(timeout, 0.0)):
            raise BackendUnavailable(f"SQLite database {self.path} stayed locked by another thread of this "
                                     f"process for {timeout:g}s")
        self._owner, self._depth = me, 1

    def give_back(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            self._lock.release()

    def __call__(self, timeout: float) -> _Held:
        return _Held(self, timeout)


class _Held:
    __slots__ = ("timeout", "turn")

    def __init__(self, turn: WriterTurn, timeout: float) -> None:
        self.turn, self.timeout = turn, timeout

    def __enter__(self) -> None:
        self.turn.take(self.timeout)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.turn.give_back()


_turns: dict[str, WriterTurn] = {}
_turns_lock = threading.Lock()


def turn_for(path: str) -> WriterTurn:
    """The turn of the file at ``path`` (absolute) in this process."""
    try:
        return _turns[path]
    except KeyError:
        pass
    with _turns_lock:
        return _turns.setdefault(path, WriterTurn(path))


def _after_fork() -> None:
    # A thread of the parent may have held a turn: the child starts with free ones.
    global _turns_lock
    _turns_lock = threading.Lock()
    _turns.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def pause(attempt: int) -> None:
    """Sleep before trying SQLite's lock again: a few tens of µs at first, since writers hold it
    for well under a millisecond, growing to ~2 ms so a long foreign transaction isn't polled hot;
    jittered, so the pollers of several processes don't try in step."""
    time.sleep(min(0.00005 * 1.5 ** attempt, 0.002) * random.uniform(0.5, 1.5))
