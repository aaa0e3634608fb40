"""One shape for every background loop: start/stop around an Event; a failing step is logged
and the loop goes on; no bare sleep, so stop is prompt."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..errors import BackendUnavailable

__all__ = ["Looper"]

logger = logging.getLogger("errands.worker")


class Looper:
    """Calls ``step()`` every ``interval`` seconds (or what ``step`` returns, if a number) on a
    daemon thread until ``stop()``."""

    def __init__(self, name: str, step: Callable[[], float | None], interval: float) -> None:
        self.name = name
        self.step = step
        self.interval = interval
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopped.clear()
        self._thread = threading.Thread(target=self._loop, name=f"errands-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _loop(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            wait = self.interval
            try:
                requested = self.step()
                failures = 0
                if requested is not None:
                    wait = max(0.0, min(requested, self.interval))
            except BackendUnavailable as exc:  # expected while a server restarts: one line, no trace
                failures += 1
                logger.warning("errands %s: backend unavailable (%s); retrying", self.name, exc)
            except Exception:  # a loop that dies silently is how jobs get stuck: log and go on
                failures += 1
                logger.exception("errands %s loop failed (%d in a row); retrying", self.name, failures)
            if failures:
                wait = min(self.interval * (2 ** min(failures, 5)), 30.0)
            self._stopped.wait(wait)
