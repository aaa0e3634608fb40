"""A thread pool that grows on demand, so a sync job stuck past its timeout never holds the
slot a new job needs: the worker's concurrency is counted by the worker, not by threads."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

__all__ = ["ElasticPool"]

_Task = Callable[[], None]


class ElasticPool:
    def __init__(self, name: str = "errands-job", idle_timeout: float = 60.0) -> None:
        self.name = name
        self.idle_timeout = idle_timeout
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # one token per thread waiting for work
        self._count = 0
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, task: _Task) -> None:
        self._tasks.put(task)
        if not self._idle.acquire(blocking=False):
            with self._lock:
                self._count += 1
                number = self._count
            threading.Thread(target=self._run, name=f"{self.name}-{number}", daemon=True).start()

    def close(self) -> None:
        """Let idle threads exit; busy ones finish their task first (they are daemons)."""
        self._closed = True
        with self._lock:
            count = self._count
        for _ in range(count):
            self._tasks.put(None)

    def _run(self) -> None:
        while True:
            try:
                task = self._tasks.get(timeout=self.idle_timeout)
            except queue.Empty:
                if self._idle.acquire(blocking=False):  # nobody counted on this thread: retire it
                    break
                continue
            if task is None:
                break
            task()
            del task
            if self._closed:
                break
            self._idle.release()
        with self._lock:
            self._count -= 1
