"""S1, the SIGKILL storm (issue #7, scenario 1): real ``errands worker`` processes, each with four
slots, run sync and async handlers while a producer enqueues; every 0.5-1.5 s a random worker is
killed with SIGKILL and a new one started. Once the storm stops, every acknowledged job must
reach its end state (``succeeded``, or ``failed`` for the ones meant to fail): lost = 0, stuck =
0. Duplicates (a job killed mid-run, or run but not yet acknowledged, runs again after its lease)
are counted and reported."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import pytest

from errands.backends.base import Capability
from tests.conftest import wait_until
from tests.faults._harness import Figures, Fleet, Ledger, client_app, record, scaled, settle_and_check

from ._broker_verdict import settle_from_ledger
from .conftest import FAULT_BACKENDS, Target

# RabbitMQ too: alone (the broker is the record; the ledger says what ran) and with a store
pytestmark = [pytest.mark.slow, pytest.mark.fault_backends(*FAULT_BACKENDS, "amqp", "amqp+sqlite")]

LEASE = 1.0
WORKERS = 2  # as `-p 2 -c 4`, but the test owns the processes so it can kill and respawn at once
CONCURRENCY = 4
BATCH = 20


def test_sigkill_storm(target: Target, tmp_path: Path) -> None:
    jobs, kills = scaled(400, 40), scaled(8, 3)
    rng = random.Random()
    ledger = Ledger(tmp_path / "ledger.log")
    fleet = Fleet(tmp_path, target.url, LEASE, ledger)
    client = client_app(target.url, LEASE)
    acked: dict[str, str] = {}
    errors: list[BaseException] = []
    storm_over = threading.Event()

    def produce() -> None:
        # paced so enqueues keep coming for the whole storm
        pause = kills * 1.0 / max(1, jobs // BATCH)
        try:
            for first in range(0, jobs, BATCH):
                calls = [((n,), {"millis": rng.randrange(0, 30)}) for n in range(first, min(jobs, first + BATCH))]
                for name, batch in (("work", calls[0::2]), ("awork", calls[1::2])):
                    for handle in client.registry[name].perform_many(batch):
                        acked[handle.id] = "succeeded"
                if first % (BATCH * 5) == 0:
                    acked[client.perform("doomed", first).id] = "failed"
                storm_over.wait(pause)
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            errors.append(exc)

    try:
        for _ in range(WORKERS):
            fleet.spawn(CONCURRENCY)
        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        started = time.monotonic()
        for _ in range(kills):
            wait_until(lambda: ledger.path.stat().st_size > 0, timeout=30, message="a job to start")
            storm_over.wait(rng.uniform(0.5, 1.5))
            victim = rng.choice(fleet.alive())
            fleet.kill(victim, signal.SIGKILL)
            fleet.spawn(CONCURRENCY)
        last_fault = time.monotonic()
        storm_over.set()
        producer.join(60)
        assert not producer.is_alive() and not errors, errors
        if Capability.QUERIES in client.backend.capabilities:
            verdict = settle_and_check(client, acked, timeout=60 + 0.02 * jobs)
        else:
            verdict = settle_from_ledger(client, ledger, acked, timeout=60 + 0.02 * jobs)
        duplicates = ledger.duplicates(acked)
        record(Figures(
            "S1 SIGKILL storm", target.backend, jobs=len(acked), faults=kills, lost=len(verdict.lost),
            stuck=len(verdict.stuck), duplicates=duplicates,
            recover_max=round(verdict.drained_at - last_fault, 2), seconds=round(time.monotonic() - started, 1),
            note=f"{WORKERS} processes x {CONCURRENCY} slots, sync+async, lease {LEASE:g}s",
        ))
        verdict.assert_clean(fleet.logs())
        assert ledger.starts().keys() >= set(acked), "every acknowledged job ran"
        assert duplicates <= kills * 4 * CONCURRENCY, f"{duplicates} duplicates after {kills} kills"
    finally:
        fleet.close()
        client.close()
