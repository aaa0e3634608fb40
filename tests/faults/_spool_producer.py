"""A producer process for the spool fault test: ``python -m tests.faults._spool_producer URL
SPOOL LEDGER QUEUE START END``. It enqueues ``work(n)`` on QUEUE for n in [START, END), one
every few milliseconds, and appends ``n id`` to LEDGER after each ``perform`` returned (the
acknowledged ids). Then it waits until the spool file is empty and exits 0; the test may
SIGKILL it at any point before."""

from __future__ import annotations

import os
import sys
import threading
import time

from errands import Errands


def main(url: str, spool: str, ledger: str, queue: str, start: int, end: int) -> int:
    app = Errands(url, spool=spool)

    @app.job(queue=queue)
    def work(n: int) -> int:
        return n

    pace = threading.Event()
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for n in range(start, end):
            handle = work.perform(n)
            os.write(fd, f"{n} {handle.id}\n".encode())
            pace.wait(0.004)
        deadline = time.monotonic() + 120
        while app.spool_depth() and time.monotonic() < deadline:
            pace.wait(0.1)
        return 0 if app.spool_depth() == 0 else 1
    finally:
        os.close(fd)
        app.close()


if __name__ == "__main__":
    url, spool, ledger, queue, start, end = sys.argv[1:7]
    sys.exit(main(url, spool, ledger, queue, int(start), int(end)))
