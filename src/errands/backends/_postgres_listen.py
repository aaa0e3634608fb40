"""LISTEN/NOTIFY wake-ups for the PostgreSQL backend.

One thread per backend LISTENs on a connection of its own (a pooled connection would be handed
to other calls between notifications) and wakes the threads waiting in ``wait()`` for the queue a
NOTIFY names. It reconnects by itself with backoff, and wakes every waiter after each
(re)connect, since a NOTIFY sent while it was away is gone: they look for work again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg
from psycopg import sql

__all__ = ["Listener"]

log = logging.getLogger("errands.postgres")

POLL = 0.25  # how often the thread looks at its stop flag while no NOTIFY comes
MAX_PAUSE = 2.0  # longest pause between reconnect attempts


class _Waiter:
    __slots__ = ("event", "queues")

    def __init__(self, queues: Sequence[str] | None) -> None:
        self.queues = None if queues is None else frozenset(queues)
        self.event = threading.Event()


class Listener:
    """Wakes ``waiting()`` blocks on NOTIFYs of ``channel`` (payload: a queue name) and on
    ``wake()`` calls from this process.

    >>> with listener.waiting(["mail"]) as event:
    ...     event.wait(timeout)
    """

    def __init__(self, conninfo: str, channel: str, where: str) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.where = where
        self._waiters: set[_Waiter] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the LISTEN thread unless it runs (or was stopped for good)."""
        with self._lock:
            if self._stop.is_set() or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(target=self._loop, name=f"errands-listen:{self.channel}",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake(None)  # a wait in progress returns now
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2 * POLL + 1)

    @contextmanager
    def waiting(self, queues: Sequence[str] | None) -> Iterator[threading.Event]:
        """An event set by a NOTIFY for one of ``queues`` (None: any) or by ``wake()``. Enter it
        before looking for work, so a NOTIFY sent while looking is not missed."""
        waiter = _Waiter(queues)
        with self._lock:
            self._waiters.add(waiter)
        try:
            yield waiter.event
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    def wake(self, queue: str | None) -> None:
        """Wake the waiters for ``queue`` (None: every waiter)."""
        with self._lock:
            for waiter in self._waiters:
                if queue is None or waiter.queues is None or queue in waiter.queues:
                    waiter.event.set()

    def _loop(self) -> None:
        pause = 0.05
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    pause = 0.05
                    self.wake(None)
                    while not self._stop.is_set():
                        for message in conn.notifies(timeout=POLL):
                            self.wake(message.payload)
            except psycopg.Error as exc:
                log.debug("LISTEN connection to %s lost (%s); reconnecting", self.where, exc)
            except Exception:  # a bug: logged, and the loop goes on (waiters still time out)
                log.exception("the LISTEN loop for %s failed; restarting it", self.where)
            self._stop.wait(pause)
            pause = min(pause * 2, MAX_PAUSE)
