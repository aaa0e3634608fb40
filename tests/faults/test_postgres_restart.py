"""S5 on PostgreSQL: a private server (``initdb`` + ``pg_ctl`` on a free port) is stopped ``fast``
(a clean shutdown that ends every session) or ``immediate`` (every process quits at once: a
crash, recovered from WAL) and started again mid-run, three times, while a worker runs and a
producer enqueues. Producers get ``BackendUnavailable`` within seconds while it is down; the
worker reconnects by itself and goes on; every acknowledged job ends ``succeeded``.

Lost = 0 holds because an acknowledged enqueue has committed (``synchronous_commit=on``): its
WAL is flushed before the reply, so even the immediate stop keeps it."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("psycopg")

from errands import Errands
from errands.errors import BackendUnavailable
from tests.conftest import wait_until
from tests.faults._servers import PostgresServer

pytestmark = pytest.mark.slow

TOTAL = 600
FAULTS = ("immediate", "fast", "immediate")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PostgresServer]:
    instance = PostgresServer(tmp_path / "pg")
    try:
        yield instance.start()
    finally:
        instance.cleanup()


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


def test_workers_and_producers_ride_out_server_restarts(server: PostgresServer) -> None:
    # pool_timeout=2: a producer hears BackendUnavailable within ~2 s while the server is down
    app = Errands(server.url("s5", pool_timeout="2"), lease=3.0, poll_interval=0.2)
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
        for round_, mode in enumerate(FAULTS, start=1):
            target = round_ * TOTAL // 5
            wait_until(lambda t=target: len(producer.acked) >= t, timeout=60,
                       message=f"{target} acknowledged enqueues")
            refused = len(producer.refusals)
            server.stop(mode)
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
        final = app.perform("work", TOTAL + 1)  # the worker goes on after the last restart too
        assert final.wait(timeout=30).state == "succeeded"
        print(f"\nacked={len(producer.acked)} refused={len(producer.refusals)} duplicates={duplicates} "
              f"recovery={[f'{r:.2f}s' for r in recoveries]} slowest refusal={max(producer.refusals):.2f}s")
        assert worker.processed >= len(producer.acked)
    finally:
        app.stop(timeout=5)
        app.close()


def test_a_producer_alone_reconnects_after_a_restart(server: PostgresServer) -> None:
    app = Errands(server.url("alone", pool_timeout="1"))

    @app.job()
    def noop() -> None: ...

    try:
        first = noop.perform().id
        server.stop("immediate")
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="unreachable.*refused"):
            noop.perform()
        assert time.monotonic() - started < 5.0
        server.start()
        # the pool replaces its dead connections by itself (with backoff): no call is needed for it
        second = wait_until(lambda: _try_perform(noop), timeout=30, message="an enqueue after the restart")
        assert {j.id for j in app.list_jobs(state="available")} == {first, second}
    finally:
        app.close()


def test_listening_worker_wakes_after_a_restart(server: PostgresServer) -> None:
    """The LISTEN connection dies with the server; its thread reconnects, so an idle worker is
    woken by a NOTIFY again, not only by its poll interval."""
    producer, consumer = Errands(server.url("wake")), Errands(server.url("wake"), poll_interval=30)
    ran = threading.Event()

    for app in (producer, consumer):
        app.job(name="ping")(ran.set)
    consumer.start(concurrency=1)
    try:
        producer.perform("ping")
        assert ran.wait(10)
        server.stop("fast")
        server.start()
        ran.clear()
        wait_until(lambda: _try_perform(producer, "ping"), timeout=30, message="an enqueue after the restart")
        assert ran.wait(10), "the idle worker (poll_interval=30) was not woken after the restart"
    finally:
        consumer.stop(timeout=5)
        consumer.close()
        producer.close()


def _try_perform(job: object, *args: str) -> str | None:
    try:
        handle = job.perform(*args)  # type: ignore[attr-defined]
    except BackendUnavailable:
        return None
    return str(handle.id)
