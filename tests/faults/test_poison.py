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

from ._broker_verdict import settle_from_ledger
from .conftest import FAULT_BACKENDS, Target

# RabbitMQ with a store too; alone (no records, another poison rule) further down
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


# RabbitMQ alone: a job that kills its worker fails as a poison pill once 3 of its deliveries died
# with their consumer (a dead consumer also gives back prefetched jobs it never started, so one
# lost delivery is no proof the job ran); the others fail after their 2 attempts as anywhere
EXPECTED_ALONE = {
    "abort": "worker lost while running (3 deliveries died with their consumer)",
    "segfault": "worker lost while running (3 deliveries died with their consumer)",
    "hog": "MemoryError",
    "hang": "JobTimeout",
}


@pytest.mark.fault_backends("amqp")
def test_poison_jobs_fail_alone_on_the_broker_alone(target: Target, tmp_path: Path) -> None:
    """S12 on RabbitMQ without a store: the failed jobs are read from the dead-letter queue, the
    good ones from the handlers' ledger (there are no records to scan)."""
    good = scaled(200, 40)
    ledger = Ledger(tmp_path / "ledger.log")
    fleet = Fleet(tmp_path, target.url, LEASE, ledger)
    client = client_app(target.url, LEASE)
    try:
        poison = {client.registry[name].with_options(queue="default" if name in CRASHERS else "poison")
                  .perform().id: name for name in EXPECTED_ALONE}
        acked: dict[str, str] = dict.fromkeys(poison, "failed")
        half = good // 2
        for name, calls in (("work", range(half)), ("awork", range(half, good))):
            for handle in client.registry[name].perform_many([((n,), {"millis": 20}) for n in calls]):
                acked[handle.id] = "succeeded"
        started = time.monotonic()
        supervisor = fleet.spawn(4, processes=2, queues="default")
        fleet.spawn(2, queues="poison", FAULT_MEMORY_LIMIT="768", MALLOC_ARENA_MAX="2")
        verdict = settle_from_ledger(client, ledger, acked, timeout=90)
        runs = {job_id: n for job_id, n in ledger.starts().items() if job_id in poison}
        deaths = sum(n for job_id, n in runs.items() if poison[job_id] in CRASHERS)
        record(Figures(
            "S12 poison jobs", target.backend, jobs=len(acked), faults=len(poison), lost=len(verdict.lost),
            stuck=len(verdict.stuck), duplicates=ledger.duplicates(set(acked) - set(poison)),
            recover_max=round(verdict.drained_at - started, 2), seconds=round(time.monotonic() - started, 1),
            note=f"abort, segfault, MemoryError under RLIMIT_AS, endless loop past timeout; {deaths} crashing "
                 "attempts (alone a crashing job fails after 3 deliveries died with their consumer)",
        ))
        verdict.assert_clean(fleet.logs())
        failed = {info.id: info for info in client.list_jobs(state="failed", limit=10_000)}
        for job_id, name in poison.items():
            assert EXPECTED_ALONE[name] in (failed[job_id].error or ""), (name, failed[job_id].error)
            assert runs.get(job_id, 0) <= (3 if name in CRASHERS else 2), (name, runs.get(job_id))
        assert supervisor.poll() is None, "the supervisor stays up\n" + fleet.logs()
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(30) == 0, fleet.logs()
    finally:
        fleet.close()
        client.close()
