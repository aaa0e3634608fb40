"""The S5 run every server backend goes through (FAULTS.md "The ledger and the invariants"):
a producer enqueues through the public API and records what was acknowledged and what was
refused; a worker runs the jobs and counts each run; the server is stopped and started again
mid-run; then every acknowledged job must end succeeded (lost = 0) and the worker must go on."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from errands import Errands
from errands.backends.base import Capability
from errands.errors import BackendUnavailable
from tests.conftest import wait_until
from tests.faults._harness import Figures, record, recovery, scaled

__all__ = ["Producer", "RestartReport", "ride_out_restarts"]

TOTAL = scaled(600, 100)


class Producer(threading.Thread):
    """Enqueues ``total`` jobs at a steady pace through the public API and keeps the ledger:
    acknowledged ids (perform returned) and refusals (perform raised)."""

    def __init__(self, app: Errands, total: int = TOTAL, *, pace: float = 0.003, refusal_pause: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.app = app
        self.total = total
        self.every = pace
        # a refusal that comes at once (connection refused) would otherwise use up the run's
        # numbers while the server is down, leaving nothing to enqueue after its restart
        self.refusal_pause = refusal_pause
        self.acked: dict[int, str] = {}
        self.refusals: list[float] = []  # seconds each failed perform took
        self.unexpected: list[BaseException] = []
        self.pace = threading.Event()

    def run(self) -> None:
        for n in range(self.total):
            started = time.monotonic()
            try:
                self.acked[n] = self.app.perform("work", n).id
            except BackendUnavailable:
                self.refusals.append(time.monotonic() - started)
                self.pace.wait(self.refusal_pause)
            except Exception as exc:  # noqa: BLE001 (anything else is a bug the test reports)
                self.unexpected.append(exc)
            self.pace.wait(self.every)


@dataclass
class RestartReport:
    acked: int
    refused: int
    duplicates: int
    recoveries: list[float]
    slowest_refusal: float


def ride_out_restarts(app: Errands, faults: Sequence[Callable[[], None]], start: Callable[[], None],
                      *, total: int = TOTAL, refused_while_down: bool = True, backend: str | None = None,
                      pace: float = 0.003, refusal_pause: float = 0.0) -> RestartReport:
    """Run the ledger on ``app`` (whose server the callables control): for each fault, once a
    further fifth of the jobs is acknowledged, inject it, wait until the producer is refused,
    ``start()`` the server again and wait until the worker runs a job. Asserts the invariants.

    ``refused_while_down=False``: the server is a broker beside a store that keeps enqueues while
    it is down (``amqp://...?store=``), so the run waits instead for a few enqueues acknowledged
    during the outage (they reach the broker after it, or maintain re-publishes them). A backend
    without ``Capability.QUERIES`` (RabbitMQ alone) can't say a job succeeded: there, succeeded
    is a handler that ran (it never raises) and a broker holding no message, ready or failed."""
    runs: Counter[int] = Counter()
    lock = threading.Lock()

    @app.job(retries=20)
    def work(n: int) -> None:
        with lock:
            runs[n] += 1

    producer = Producer(app, total, pace=pace, refusal_pause=refusal_pause)
    began = time.monotonic()
    worker = app.start(concurrency=4)
    try:
        producer.start()
        recoveries = []
        for round_, fault in enumerate(faults, start=1):
            target = round_ * total // 5
            wait_until(lambda t=target: len(producer.acked) >= t, timeout=60,
                       message=f"{target} acknowledged enqueues")
            refused, acked = len(producer.refusals), len(producer.acked)
            fault()
            if refused_while_down:
                wait_until(lambda r=refused: len(producer.refusals) >= r + 2, timeout=30,
                           message="the producer to hear BackendUnavailable while the server is down")
            else:
                wait_until(lambda a=acked: len(producer.acked) >= a + 10, timeout=30,
                           message="enqueues acknowledged by the store while the broker is down")
            start()
            done_before, restarted = sum(runs.values()), time.monotonic()
            wait_until(lambda d=done_before: sum(runs.values()) > d, timeout=60,
                       message="the worker to run a job after the restart")
            recoveries.append(time.monotonic() - restarted)
        producer.join(120)
        assert not producer.is_alive()
        assert not producer.unexpected, producer.unexpected
        if refused_while_down:
            assert producer.refusals and max(producer.refusals) < 5.0, producer.refusals
        else:
            assert not producer.refusals, producer.refusals
        queries = Capability.QUERIES in app.backend.capabilities
        if queries:
            wait_until(lambda: not _unfinished(app, producer.acked.values()), timeout=90, interval=0.2,
                       message="every acknowledged job to succeed")
        else:
            wait_until(lambda: all(runs[n] for n in producer.acked) and _broker_empty(app), timeout=90,
                       interval=0.2, message="every acknowledged job to run and the broker to hold none")
        lost = [n for n in producer.acked if runs[n] == 0]
        assert not lost, f"acknowledged but never run: {lost}"
        final = app.perform("work", total + 1)  # the worker goes on after the last restart too
        if queries:
            assert final.wait(timeout=30).state == "succeeded"
        else:
            wait_until(lambda: runs[total + 1] > 0, timeout=30, message="a job enqueued after the last restart")
        assert worker.processed >= len(producer.acked)
        report = RestartReport(len(producer.acked), len(producer.refusals), sum(runs.values()) - len(runs),
                               recoveries, max(producer.refusals, default=0.0))
        backend = backend or app.settings.url.split("://", 1)[0].replace("postgresql", "postgres")
        record(Figures(
            "S5 server restart", backend, jobs=report.acked, faults=len(faults), lost=len(lost),
            stuck=app.stats()["running"] or 0, duplicates=report.duplicates, ambiguous=report.refused,
            seconds=round(time.monotonic() - began, 1), **recovery(recoveries),
            note=f"private server stopped and restarted {len(faults)} times; {report.refused} enqueues refused "
                 f"with BackendUnavailable (slowest {report.slowest_refusal:.1f}s)",
        ))
        return report
    finally:
        app.stop(timeout=5)


def _broker_empty(app: Errands) -> bool:
    counts = app.stats()  # a broker alone: ready messages and its dead-letter queue, None for the rest
    return counts["available"] == 0 and counts["failed"] == 0


def _unfinished(app: Errands, job_ids: Iterable[str]) -> list[str]:
    pending = []
    for job_id in job_ids:
        info = app.get_job(job_id)
        if info is None or info.state != "succeeded":
            pending.append(job_id if info is None else f"{job_id}:{info.state}")
    return pending
