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
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("psycopg")

from errands import Errands
from errands.errors import BackendUnavailable
from tests.conftest import wait_until
from tests.faults._ledger import ride_out_restarts
from tests.faults._servers import PostgresServer

pytestmark = pytest.mark.slow

FAULTS = ("immediate", "fast", "immediate")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PostgresServer]:
    instance = PostgresServer(tmp_path / "pg")
    try:
        yield instance.start()
    finally:
        instance.cleanup()


def test_workers_and_producers_ride_out_server_restarts(server: PostgresServer) -> None:
    # pool_timeout=2: a producer hears BackendUnavailable within ~2 s while the server is down
    app = Errands(server.url("s5", pool_timeout="2"), lease=3.0, poll_interval=0.2)
    try:
        ride_out_restarts(app, [lambda m=mode: server.stop(m) for mode in FAULTS], server.start)
    finally:
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
