"""persist-queue: ``SQLiteAckQueue.put`` (WAL, SQLite's default synchronous=FULL); no bulk API.
It is thread-safe but not process-safe, and its blocking ``get`` only hears puts made in the
same process, so its worker is one process with two threads of the README loop
(``get(block=False)`` -> run -> ``ack``), sleeping 5 ms when empty."""

from __future__ import annotations

import os
from typing import Any

from harness.effect import record
from persistqueue import Empty, SQLiteAckQueue

from adapters import _loop
from adapters.base import Adapter


def open_queue() -> SQLiteAckQueue:
    return SQLiteAckQueue(os.path.join(os.environ["BENCH_DIR"], "persistqueue"), multithreading=True,
                          auto_resume=False)


class PersistQueueAdapter(Adapter):
    name = "persist-queue (SQLiteAckQueue)"
    backend = "sqlite"
    distribution = "persist-queue"
    durability = "SQLite WAL, synchronous=FULL (SQLite's default; persist-queue sets no pragma)"
    worker = "1 process × 2 threads of the README loop (get, run, ack; 5 ms sleep when empty)"
    delivery = "at-least-once (ack queue; unacked items resumed on restart)"

    def setup(self) -> None:
        self.queue = open_queue()

    def settings(self) -> dict[str, Any]:
        conn = self.queue._putter
        return {"journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
                "synchronous": conn.execute("PRAGMA synchronous").fetchone()[0]}

    def enqueue_one(self, job: int) -> None:
        self.queue.put(job)

    def worker_commands(self) -> list[list[str]]:
        import sys

        return [[sys.executable, "-m", "adapters.persistqueue"]]


def main() -> None:
    queue = open_queue()

    def take() -> Any:
        try:
            return queue.get(block=False, raw=True)
        except Empty:
            return None

    def handle(item: Any) -> None:
        record(int(item["data"]))
        queue.ack(id=item["pqid"])

    _loop.run(take, handle, threads=2)


if __name__ == "__main__":
    main()
