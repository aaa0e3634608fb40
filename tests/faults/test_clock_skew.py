"""S11, clock skew between workers (issue #7, scenario 5): three worker processes on one store,
one with a true clock, one whose wall clock runs ``SKEW`` seconds ahead and one ``SKEW`` behind
(``_skew/sitecustomize.py`` shifts ``time.time`` and ``datetime.now`` in that process), all
running the periodic ``tick`` (every second) and long jobs (3 × the lease, kept by heartbeats).

The backend's clock decides leases and ticks (DESIGN §2.1), so: no live lease is stolen (each
long job runs exactly once: duplicates = 0, asserted), and each tick is enqueued once, never
early (no tick job is due after the store's now; each ran once)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.faults._harness import Figures, Fleet, Ledger, client_app, record, scaled, scan, settle_and_check

from .conftest import FAULT_BACKENDS, Target

# RabbitMQ with a store too (alone it keeps no records, and each worker process fires its own ticks)
pytestmark = [pytest.mark.slow, pytest.mark.fault_backends(*FAULT_BACKENDS, "amqp+sqlite")]

LEASE = 2.0
SKEW = 30.0
SKEW_PATH = str(Path(__file__).parent / "_skew")


def test_skewed_workers_neither_steal_leases_nor_fire_ticks_twice(target: Target, tmp_path: Path) -> None:
    jobs = scaled(24, 12)
    ledger = Ledger(tmp_path / "ledger.log")
    fleet = Fleet(tmp_path, target.url, LEASE, ledger)
    client = client_app(target.url, LEASE)
    client.stats()  # the schema exists before three workers race to make it
    try:
        skews: dict[float, int] = {}
        for skew in (0.0, SKEW, -SKEW):
            env = {"FAULT_PERIODIC": "1", "FAULT_CLOCK_SKEW": repr(skew)}
            if skew:
                env["PYTHONPATH"] = f"{SKEW_PATH}:{fleet.env()['PYTHONPATH']}"
            skews[skew] = fleet.spawn(4, **env).pid
        for process in fleet.processes:  # the banner: each is about to claim
            wait_until(lambda p=process: "errands worker" in fleet.log(p), timeout=30, message="workers up")
        started, server_start = time.monotonic(), client.backend.now()
        acked = {h.id: "succeeded" for h in client.registry["work"].perform_many(
            [((n,), {"millis": int(3 * LEASE * 1000)}) for n in range(jobs)])}
        verdict = settle_and_check(client, acked, timeout=60 + 3 * LEASE * jobs / 4, ignore=("tick",),
                                   give_up=lambda: ledger.duplicates(acked) > 0)
        server_end = client.backend.now()
        marks = ledger.marks()
        ticks = {i: info for i, info in scan(client).items() if info.name == "tick"}
        tick_runs = ledger.duplicates(ticks)
        early = [info.run_at for info in ticks.values() if info.run_at and info.run_at.timestamp() > server_end + 1.0]
        ticks_per_second: dict[float, int] = {}
        for info in ticks.values():
            assert info.run_at is not None
            ticks_per_second[info.run_at.timestamp()] = ticks_per_second.get(info.run_at.timestamp(), 0) + 1
        stolen = ledger.duplicates(acked)
        record(Figures(
            "S11 clock skew", target.backend, jobs=len(acked) + len(ticks), faults=2, lost=len(verdict.lost),
            stuck=len(verdict.stuck), duplicates=stolen + tick_runs, seconds=round(time.monotonic() - started, 1),
            note=f"workers at +0/+{SKEW:g}/-{SKEW:g}s, lease {LEASE:g}s: {stolen} stolen leases, {len(ticks)} ticks "
                 f"in {server_end - server_start:.0f}s, {len(early)} early, {tick_runs} run twice",
        ))
        # the shift really was in force in the skewed processes (else this test proves nothing)
        for skew, pid in skews.items():
            clocks = [m.clock for m in marks if m.pid == pid]
            assert clocks, f"the worker at {skew:+g}s ran nothing\n{fleet.logs()}"
            assert all(abs(c - skew - (server_start + server_end) / 2) < (server_end - server_start) / 2 + 5
                       for c in clocks), (skew, clocks[:5], server_start, server_end)
        verdict.assert_clean(fleet.logs())
        assert stolen == 0, f"{stolen} live leases were stolen\n{fleet.logs()}"
        assert not early, f"ticks fired before their time: {early}"
        assert tick_runs == 0 and set(ticks_per_second.values()) == {1}, ticks_per_second
        assert len(ticks) >= (server_end - server_start) - 3, (len(ticks), server_end - server_start)
    finally:
        fleet.close()
        client.close()
