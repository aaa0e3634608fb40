"""Producer processes a test kills.

``python -m tests.faults._producer URL LEDGER FIRST_BATCH SIZE`` (S8) enqueues batch after batch
of ``SIZE`` jobs with one ``perform_many`` each, writing ``begin k`` before and ``ack k`` after
each call to LEDGER, until it is killed. Job ``n`` of batch ``k`` is ``work(k * SIZE + n)``, so
the store tells which batch each job came from.

``python -m tests.faults._producer URL LEDGER ids`` (S9) alternates a ``perform_many`` of 20
and a single ``perform``, writing ``ack <id>`` for each job once its call returned, and
``error <text>`` (then going on) for any exception that reaches it."""

from __future__ import annotations

import os
import sys
import time

from tests.faults._harness import client_app


def main(url: str, ledger: str, first: int, size: int) -> None:
    app = client_app(url, 1.0)
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    work = app.registry["work"]
    batch = first
    while True:
        os.write(fd, f"begin {batch}\n".encode())
        work.perform_many([((batch * size + n,), {}) for n in range(size)])
        os.write(fd, f"ack {batch}\n".encode())
        batch += 1


def ids(url: str, ledger: str) -> None:
    app = client_app(url, 1.0)
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    work, n = app.registry["work"], 0
    while True:
        try:
            handles = work.perform_many([((n + i,), {}) for i in range(20)]) + [work.perform(n + 20)]
        except Exception as exc:  # noqa: BLE001 (the test fails on any line like this)
            line = f"error {type(exc).__name__}: {exc}".replace("\n", " ")
            os.write(fd, f"{line}\n".encode())
            continue
        os.write(fd, "".join(f"ack {h.id}\n" for h in handles).encode())
        n += 21
        time.sleep(0.05)  # a steady trickle, not a flood the workers need minutes to drain


if __name__ == "__main__":
    if sys.argv[3] == "ids":
        ids(sys.argv[1], sys.argv[2])
    else:
        main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
