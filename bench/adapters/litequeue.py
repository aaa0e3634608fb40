"""litequeue: ``LiteQueue.put`` (it sets WAL and synchronous=NORMAL itself); no bulk API and no
worker: two processes of the README's loop (``pop`` -> run -> ``done``), sleeping 5 ms when empty."""

from __future__ import annotations

import os
from typing import Any

from harness.effect import record
from litequeue import LiteQueue

from adapters import _loop
from adapters.base import Adapter


def path() -> str:
    return os.path.join(os.environ["BENCH_DIR"], "litequeue.db")


class LitequeueAdapter(Adapter):
    name = "litequeue"
    backend = "sqlite"
    distribution = "litequeue"
    durability = "SQLite WAL, synchronous=NORMAL (set by litequeue)"
    worker = "2 processes × the README loop (pop, run, done; 5 ms sleep when empty)"
    delivery = "at-least-once if the loop marks done after running (locked messages can be retried)"

    def setup(self) -> None:
        self.queue = LiteQueue(path(), queue_name="default")

    def settings(self) -> dict[str, Any]:
        conn = self.queue.conn
        return {"journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
                "synchronous": conn.execute("PRAGMA synchronous").fetchone()[0]}

    def close(self) -> None:
        self.queue.conn.close()

    def enqueue_one(self, job: int) -> None:
        self.queue.put(str(job))

    def worker_commands(self) -> list[list[str]]:
        import sys

        return [[sys.executable, "-m", "adapters.litequeue"]] * 2


def main() -> None:
    queue = LiteQueue(path(), queue_name="default")

    def handle(message: Any) -> None:
        record(int(message.data))
        queue.done(message.message_id)

    _loop.run(queue.pop, handle)


if __name__ == "__main__":
    main()
