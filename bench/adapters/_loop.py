"""The worker loop for the embedded queues that ship none (litequeue, persist-queue): what a
user writes from their README: take one, run it, mark it done; sleep ``IDLE`` when empty."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

IDLE = 0.005  # seconds a loop sleeps when the queue is empty (neither library can block across processes)


def run(take: Callable[[], Any], handle: Callable[[Any], None], threads: int = 1) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def loop() -> None:
        while not stop.is_set():
            item = take()
            if item is None:
                time.sleep(IDLE)
                continue
            handle(item)

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    while any(w.is_alive() for w in workers) and not stop.is_set():
        stop.wait(0.5)
