"""Signal handlers installed for the length of a block, then the caller's own put back."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

__all__ = ["handling_signals", "relaying_signals"]

Handler = Callable[[int, "FrameType | None"], Any]


@contextmanager
def handling_signals(signums: Iterable[int], handler: Handler, *, install: bool = True) -> Iterator[None]:
    """Route ``signums`` to ``handler`` while the block runs. Off the main thread (a worker
    started with ``app.start()``), or with ``install=False``, nothing is touched: Python only
    lets the main thread set handlers."""
    previous: dict[int, Any] = {}
    if install and threading.current_thread() is threading.main_thread():
        for signum in signums:
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextmanager
def relaying_signals(signums: Iterable[int], handler: Callable[[int], Any], *, install: bool = True) -> Iterator[None]:
    """``handling_signals``, with ``handler(signum)`` run on a thread of its own.

    Python runs a signal handler in the main thread between two bytecodes, possibly while that
    thread holds a lock: inside ``with lock:`` in a backend's ``wait()``, or within an Event's
    ``wait()``. A handler that takes the same lock (waking waiters does) then waits for itself
    forever, and the process never stops. Here the handler in the main thread only writes the
    signal number to a pipe, which takes no lock; a relay thread reads it and calls ``handler``,
    which may take any lock: the main thread lets go of it soon."""
    if not install or threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()
    if hasattr(os, "set_blocking"):  # Windows before 3.12 has none (a pipe holds plenty there too)
        os.set_blocking(write_fd, False)  # never block the main thread, even if the relay stalled

    def relay() -> None:
        while data := os.read(read_fd, 64):  # empty: the block ended and closed the pipe
            for signum in data:
                handler(signum)

    def forward(signum: int, frame: FrameType | None) -> None:
        with suppress(OSError):  # a full pipe already holds enough signals to act on
            os.write(write_fd, bytes([signum]))

    thread = threading.Thread(target=relay, name="errands-signals", daemon=True)
    thread.start()
    try:
        with handling_signals(signums, forward):
            yield
    finally:
        os.close(write_fd)
        thread.join(5)
        if not thread.is_alive():  # else it still reads: leave it its descriptor (a daemon)
            os.close(read_fd)
