"""S12, poison jobs (issue #7, scenario 6): among ordinary jobs, handlers that ``os.abort()``,
segfault, exhaust memory (the worker runs under an ``RLIMIT_AS`` the test sets) or never return
(past their ``timeout``). Each poison job ends ``failed`` after its two attempts with an error
that says what happened; every other job succeeds (the ones sharing a worker with the
crashing jobs too); the supervisor (``errands worker -p 2``)
respawns the workers the poison killed, and nothing stays running."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.faults._harness import Figures, Fleet, Ledger, client_app, record, scaled, settle_and_check

from .conftest import FAULT_BACKENDS, Target

# RabbitMQ with a store too. Alone a crashing job fails after 3 deliveries died with their consumer,
# not after its attempts, and get_job is NotSupported: test_amqp.py tests that rule instead
pytestmark = [pytest.mark.slow, pytest.mark.fault_backends(*FAULT_BACKENDS, "amqp+sqlite")]

LEASE = 1.0
# what each poison job's error must say after its last attempt (2 of 2)
EXPECTED = {
    "abort": "worker lost while running (attempt 2/2)",
    "segfault": "worker lost while running (attempt 2/2)",
    "hog": "MemoryError",
    "hang": "JobTimeout",
}
CRASHERS = ("abort", "segfault")


def test_poison_jobs_fail_alone(target: Target, tmp_path: Path) -> None:
    good = scaled(200, 40)
    ledger = Ledger(tmp_path / "ledger.log")
    fleet = Fleet(tmp_path, target.url, LEASE, ledger)
    client = client_app(target.url, LEASE)
    try:
        # The crashing poison shares the workers of the ordinary jobs (which have retries to spare);
        # the others run on a worker of their own, under the memory limit, so that a neighbour's
        # crash can't take their attempts and hide their own error.
        poison = {client.registry[name].with_options(queue="default" if name in CRASHERS else "poison")
                  .perform().id: name for name in EXPECTED}
        acked: dict[str, str] = dict.fromkeys(poison, "failed")
        half = good // 2  # enqueued after the poison, so they are running when it strikes
        for name, calls in (("work", range(half)), ("awork", range(half, good))):
            for handle in client.registry[name].perform_many([((n,), {"millis": 20}) for n in calls]):
                acked[handle.id] = "succeeded"
        started = time.monotonic()
        # MALLOC_ARENA_MAX: glibc reserves 64 MiB of address space per thread arena, which would
        # eat the RLIMIT_AS headroom before the hog does
        supervisor = fleet.spawn(4, processes=2, queues="default")
        fleet.spawn(2, queues="poison", FAULT_MEMORY_LIMIT="768", MALLOC_ARENA_MAX="2")
        verdict = settle_and_check(client, acked, timeout=90)
        deaths = sum(1 for m in ledger.marks() if m.id in poison and poison[m.id] in CRASHERS)
        record(Figures(
            "S12 poison jobs", target.backend, jobs=len(acked), faults=len(poison), lost=len(verdict.lost),
            stuck=len(verdict.stuck), duplicates=ledger.duplicates(set(acked) - set(poison)),
            recover_max=round(verdict.drained_at - started, 2), seconds=round(time.monotonic() - started, 1),
            note=f"abort, segfault, MemoryError under RLIMIT_AS, endless loop past timeout; {deaths} crashing attempts",
        ))
        verdict.assert_clean(fleet.logs())
        for job_id, name in poison.items():
            info = client.get_job(job_id)
            assert info is not None and info.state == "failed", (name, info)
            assert info.attempts == 2, (name, info.attempts)
            assert EXPECTED[name] in (info.error or ""), (name, info.error)
        assert supervisor.poll() is None, "the supervisor stays up\n" + fleet.logs()
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(30) == 0, fleet.logs()
    finally:
        fleet.close()
        client.close()
