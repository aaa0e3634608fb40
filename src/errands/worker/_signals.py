"""Signal handlers installed for the length of a block, then the caller's own put back."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["handling_signals"]

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
