"""S6/S7, the network between errands and its server (issue #7, scenario 2): a producer (in the
test process) and one worker process reach the server through a proxy the test controls; a second
worker connects directly. The proxy drops every connection, stalls both ways, goes half-open
(requests arrive, replies don't) and partitions for longer than the lease, healing after each.

After each heal both the producer and the cut-off worker make progress again (time to recover
is measured); the partitioned worker's jobs are finished by the other and its late answers
fenced. At the end lost = 0 and stuck = 0; an enqueue that raised (ambiguous) left at most one
job.

On RabbitMQ the proxy cuts the link to the broker. Its connections outlive a 4 s stall
(heartbeats every 30 s), so the partitioned worker keeps its unacknowledged deliveries and
finishes them once healed; a drop closes them, and consumer and publisher reconnect by
themselves. Alone there are no records: the end check reads the ledger and the broker."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from errands import ErrandsError
from errands.backends.base import Capability
from tests.conftest import wait_until
from tests.faults._harness import Figures, Fleet, Ledger, client_app, record, recovery, settle_and_check
from tests.faults._proxy import Proxy

from ._broker_verdict import settle_from_ledger
from .conftest import SERVER_BACKENDS, Target

# RabbitMQ too, alone and with a SQLite store: the proxy cuts the link to the broker (the store is
# a local file either way)
pytestmark = [pytest.mark.slow, pytest.mark.fault_backends(*SERVER_BACKENDS, "amqp", "amqp+sqlite")]

LEASE = 1.0
PORTS = {"redis": 6379, "postgres": 5432, "mysql": 3306, "amqp": 5672, "amqp+sqlite": 5672}
CUT = 2.0  # seconds a stall or half-open lasts
PARTITION = 4 * LEASE


def test_worker_and_producer_ride_out_network_faults(target: Target, tmp_path: Path) -> None:
    port = PORTS[target.backend]
    proxy = Proxy(port).start()
    proxied = target.url.replace(f":{port}/", f":{proxy.port}/")
    assert proxied != target.url
    ledger = Ledger(tmp_path / "ledger.log")
    direct = Fleet(tmp_path / "direct", target.url, LEASE, ledger)
    cut_off = Fleet(tmp_path / "proxied", proxied, LEASE, ledger)
    for fleet in (direct, cut_off):
        fleet.root.mkdir()
    producer_app, observer = client_app(proxied, LEASE), client_app(target.url, LEASE)
    acked: dict[str, str] = {}
    ambiguous: list[BaseException] = []
    stop = threading.Event()

    def produce() -> None:
        n = 0
        while not stop.is_set():
            try:
                acked[producer_app.perform("work", n, millis=5).id] = "succeeded"
            except ErrandsError as exc:
                ambiguous.append(exc)
            n += 1
            stop.wait(0.01)

    observer.stats()  # the schema exists before anyone races to make it
    producer = threading.Thread(target=produce, daemon=True)
    samples: list[float] = []
    try:
        direct.spawn(4)
        far = cut_off.spawn(4)
        producer.start()
        faults = [("drop", proxy.drop, 0.0), ("stall", proxy.stall, CUT), ("half-open", proxy.half_open, CUT),
                  ("partition", proxy.stall, PARTITION)]
        started = time.monotonic()
        for name, fault, seconds in faults:
            wait_until(lambda: any(m.pid == far.pid for m in ledger.marks()), timeout=30,
                       message="the proxied worker to run a job")
            fault()
            stop.wait(seconds)
            proxy.heal()
            healed, acks, runs = time.monotonic(), len(acked), len(ledger.marks())
            wait_until(lambda a=acks: len(acked) > a, timeout=30, message=f"an enqueue after the {name}")
            wait_until(lambda r=runs: any(m.pid == far.pid for m in ledger.marks()[r:]), timeout=30,
                       message=f"the proxied worker to run a job after the {name}")
            samples.append(time.monotonic() - healed)
        stop.set()
        producer.join(30)
        assert not producer.is_alive(), "the producer hung"
        if Capability.QUERIES in observer.backend.capabilities:
            verdict = settle_and_check(observer, acked, timeout=60, ambiguous=len(ambiguous))
        else:
            # RabbitMQ alone keeps no records: the ledger says what ran and the broker what is left
            verdict = settle_from_ledger(observer, ledger, acked, timeout=60)
            verdict.unacknowledged = len(ledger.starts().keys() - acked.keys())
            if verdict.unacknowledged > len(ambiguous):
                verdict.phantoms.append(f"{verdict.unacknowledged} jobs ran that no enqueue returned")
        record(Figures(
            "S6/S7 network cut (proxy)", target.backend, jobs=len(acked), faults=len(faults),
            lost=len(verdict.lost), stuck=len(verdict.stuck), duplicates=ledger.duplicates(acked),
            ambiguous=len(ambiguous), seconds=round(time.monotonic() - started, 1), **recovery(samples),
            note=f"drop, stall {CUT:g}s, half-open {CUT:g}s, partition {PARTITION:g}s (lease {LEASE:g}s); "
                 f"{verdict.unacknowledged} jobs from ambiguous enqueues",
        ))
        verdict.assert_clean(direct.logs() + cut_off.logs())
        assert far.poll() is None, "the cut-off worker died\n" + cut_off.logs()
    finally:
        stop.set()
        proxy.close()
        for fleet in (direct, cut_off):
            fleet.close()
        producer_app.close()
        observer.close()
