"""S5 on Redis: the server is killed (SIGKILL) or stopped (SIGTERM) and restarted mid-run, three
times, on its own port with ``appendonly yes``. Producers get ``BackendUnavailable`` within
seconds while it is down; the worker reconnects by itself and goes on; every acknowledged job
ends ``succeeded``.

Lost = 0 holds at the durability the server is configured for. With ``appendfsync everysec``
(Redis' default) a SIGKILLed server may drop writes it already acknowledged: while a background
fsync is in flight it postpones writing the AOF for up to two seconds but still replies (seen
here as a job acknowledged just before the kill and gone after the restart). So these servers
run with ``appendfsync always``: an acknowledged job is on disk."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("redis")

from tests.conftest import wait_until
from tests.faults._servers import RedisServer

from errands import Errands
from errands.errors import BackendUnavailable

pytestmark = pytest.mark.slow

TOTAL = 600
FAULTS = (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL)
DURABLE = ("--appendfsync", "always")


class Producer(threading.Thread):
    """Enqueues ``TOTAL`` jobs at a steady pace through the public API and keeps the ledger:
    acknowledged ids (perform returned) and refusals (perform raised)."""

    def __init__(self, app: Errands) -> None:
        super().__init__(daemon=True)
        self.app = app
        self.acked: dict[int, str] = {}
        self.refusals: list[float] = []  # seconds each failed perform took
        self.unexpected: list[BaseException] = []
        self.pace = threading.Event()

    def run(self) -> None:
        for n in range(TOTAL):
            started = time.monotonic()
            try:
                self.acked[n] = self.app.perform("work", n).id
            except BackendUnavailable:
                self.refusals.append(time.monotonic() - started)
            except Exception as exc:  # noqa: BLE001 (anything else is a bug the test reports)
                self.unexpected.append(exc)
            self.pace.wait(0.003)


def test_workers_and_producers_ride_out_server_restarts(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", *DURABLE).start()
    app = Errands(server.url("s5"), lease=3.0, poll_interval=0.2)
    runs: Counter[int] = Counter()
    lock = threading.Lock()

    @app.job(retries=20)
    def work(n: int) -> None:
        with lock:
            runs[n] += 1

    producer = Producer(app)
    worker = app.start(concurrency=4)
    try:
        producer.start()
        recoveries = []
        for round_, signum in enumerate(FAULTS, start=1):
            target = round_ * TOTAL // 5
            wait_until(lambda t=target: len(producer.acked) >= t, timeout=60,
                       message=f"{target} acknowledged enqueues")
            refused = len(producer.refusals)
            server.kill(signum)
            wait_until(lambda r=refused: len(producer.refusals) >= r + 2, timeout=30,
                       message="the producer to hear BackendUnavailable while the server is down")
            server.start()
            done_before, restarted = sum(runs.values()), time.monotonic()
            wait_until(lambda d=done_before: sum(runs.values()) > d, timeout=60,
                       message="the worker to run a job after the restart")
            recoveries.append(time.monotonic() - restarted)
        producer.join(120)
        assert not producer.is_alive()
        assert not producer.unexpected, producer.unexpected
        assert producer.refusals and max(producer.refusals) < 5.0, producer.refusals

        def unfinished() -> list[str]:
            pending = []
            for job_id in producer.acked.values():
                info = app.get_job(job_id)
                if info is None or info.state != "succeeded":
                    pending.append(job_id if info is None else f"{job_id}:{info.state}")
            return pending

        wait_until(lambda: not unfinished(), timeout=90, interval=0.2,
                   message="every acknowledged job to succeed")
        lost = [n for n in producer.acked if runs[n] == 0]
        assert not lost, f"acknowledged but never run: {lost}"
        duplicates = sum(runs.values()) - len(runs)
        # the worker goes on after the last restart too
        final = app.perform("work", TOTAL + 1)
        assert final.wait(timeout=30).state == "succeeded"
        print(f"\nacked={len(producer.acked)} refused={len(producer.refusals)} duplicates={duplicates} "
              f"recovery={[f'{r:.2f}s' for r in recoveries]} slowest refusal={max(producer.refusals):.2f}s")
        assert worker.processed >= len(producer.acked)
    finally:
        app.stop(timeout=5)
        app.close()
        server.stop()


def test_a_producer_alone_reconnects_after_a_restart(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", *DURABLE).start()
    app = Errands(server.url("alone"))

    @app.job()
    def noop() -> None: ...

    try:
        first = noop.perform().id
        server.kill(signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="cannot reach redis"):
            noop.perform()
        assert time.monotonic() - started < 5.0
        server.start()
        second = noop.perform().id  # the pool reconnects; the scripts are loaded again (NOSCRIPT)
        assert {j.id for j in app.list_jobs(state="available")} == {first, second}
    finally:
        app.close()
        server.stop()
