"""Buffers outcomes and settles them in batches: while one settle call is on the wire the next
batch gathers, so a busy worker makes one round trip for many jobs and an idle one adds no delay.
A failed flush keeps its outcomes and tries again; nothing decided is dropped."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from ..backends.base import Backend, Outcome

__all__ = ["Settler"]

logger = logging.getLogger("errands.worker")

MAX_BATCH = 500


class Settler:
    def __init__(self, backend: Backend, on_settled: Callable[[Sequence[Outcome], list[str]], None]) -> None:
        self.backend = backend
        self.on_settled = on_settled
        self._pending: list[Outcome] = []
        self._in_flight = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="errands-settler", daemon=True)
        self._thread.start()

    def add(self, outcome: Outcome) -> None:
        with self._cond:
            self._pending.append(outcome)
            self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until every outcome added so far is settled; False if ``timeout`` ran out first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def stop(self, timeout: float) -> bool:
        flushed = self.flush(timeout)
        if not flushed:
            logger.error("shutting down with %d outcome(s) not settled: their jobs will run again "
                         "when their leases expire", len(self._pending))
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(5)
        return flushed

    def _loop(self) -> None:
        failures = 0
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                self._in_flight = len(batch)
            try:
                fenced = self.backend.settle(batch)
            except Exception as exc:
                failures += 1
                logger.warning("settling %d outcome(s) failed (%s); retrying", len(batch), exc)
                with self._cond:
                    self._pending[:0] = batch
                    self._in_flight = 0
                    self._cond.wait(min(0.05 * 2**failures, 5.0))
                continue
            failures = 0
            if fenced:
                logger.warning("%d late answer(s) fenced: another worker owns those jobs now", len(fenced))
            try:
                self.on_settled(batch, fenced)
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()
