"""S5 on RabbitMQ: a private broker (``rabbitmq-server`` as a node of its own on free ports) is
stopped (SIGTERM: a clean shutdown that closes every connection) or killed (SIGKILL: a crash,
quorum queues recover from their Raft log) and started again mid-run, three times, while a
worker runs and a producer enqueues. The consumer reconnects by itself and goes on; every
confirmed job runs to success, at least once (the ledger counts duplicates).

Alone, a producer hears ``BackendUnavailable`` within seconds while the broker is down, and
lost = 0 holds because ``perform`` returns only after the broker's publisher confirm (a
persistent message on a durable quorum queue, written before the confirm). With a store
(SQLite here) ``perform`` returns once the store has the job, so producers are not refused
during the outage: what could not be published then is published by ``maintain`` afterwards."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("pika")

from errands import Errands
from errands.errors import BackendUnavailable
from tests.conftest import wait_until
from tests.faults._ledger import ride_out_restarts
from tests.faults._servers import RabbitMQServer

pytestmark = pytest.mark.slow

# The first fault is a clean stop: RabbitMQ 3.10 can leave a single-node quorum queue without a
# leader for good ("leader not known", rabbitmq-server#10070) when the node is SIGKILLed within a
# second or so of the queue's first declaration (seen here: every publish nacked after a 60 s
# wait). The later kills hit queues that have existed for seconds, which recover from their log.
FAULTS = (signal.SIGTERM, signal.SIGKILL, signal.SIGKILL)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RabbitMQServer]:
    instance = RabbitMQServer(tmp_path / "rabbitmq")
    try:
        yield instance.start()
    finally:
        instance.cleanup()


@pytest.mark.parametrize("store", [False, True], ids=["alone", "with-store"])
def test_workers_and_producers_ride_out_broker_restarts(server: RabbitMQServer, tmp_path: Path, store: bool) -> None:
    options = {"store": f"sqlite:///{tmp_path / 'store.db'}"} if store else {}
    app = Errands(server.url("s5"), lease=3.0, poll_interval=0.2, **options)
    try:
        # paced so enqueues go on through each ~5 s outage and after the last one (a producer
        # done before the third fault would never be refused): alone, a refusal is immediate
        # (connection refused); with a store, nothing is refused at all
        report = ride_out_restarts(app, [lambda s=signum: server.kill(s) for signum in FAULTS], server.start,
                                   refused_while_down=not store, backend="amqp+sqlite" if store else "amqp",
                                   pace=0.05 if store else 0.02, refusal_pause=0.0 if store else 0.2)
    finally:
        app.close()
    print(f"\nbroker restarts ({'with a store' if store else 'alone'}): {report}")


def test_a_producer_alone_reconnects_after_a_restart(server: RabbitMQServer) -> None:
    app = Errands(server.url("alone"))

    @app.job()
    def noop() -> None: ...

    try:
        noop.perform()
        server.kill(signal.SIGTERM)  # a SIGKILL this soon after declaring its queue: see FAULTS
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="rabbitmq"):
            noop.perform()
        assert time.monotonic() - started < 5.0
        server.start()
        # the publisher's dead connection is dropped by the failed call; the next one reconnects
        wait_until(lambda: _try_perform(noop), timeout=30, message="an enqueue after the restart")
        assert app.stats()["available"] == 2  # the confirmed one survived the crash
    finally:
        app.close()


def _try_perform(job: object) -> str | None:
    try:
        handle = job.perform()  # type: ignore[attr-defined]
    except BackendUnavailable:
        return None
    return str(handle.id)
