"""A producer process for S8: ``python -m tests.faults._producer URL LEDGER FIRST_BATCH SIZE``
enqueues batch after batch of ``SIZE`` jobs with one ``perform_many`` each, writing ``begin k``
before and ``ack k`` after each call to LEDGER, until it is killed. Job ``n`` of batch ``k`` is
``work(k * SIZE + n)``, so the store tells which batch each job came from."""

from __future__ import annotations

import os
import sys

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


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
