"""S9, the embedded store under SIGKILL (issue #7, scenario 4): on one SQLite file, two worker
processes, a producer and a process checkpointing the WAL; every 0.05-0.3 s a random one of them
is SIGKILLed (during an enqueue, a claim, an ack or a checkpoint) and started again. After every
few kills and at the end ``PRAGMA integrity_check`` says ``ok``; every acknowledged job
succeeds once workers are left alone; no error ("database is locked" or any other) ever reached
the producer."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.faults._harness import REPO, Figures, Fleet, Ledger, client_app, record, scaled, settle_and_check

from .conftest import Target

pytestmark = [pytest.mark.slow, pytest.mark.fault_backends("sqlite")]

LEASE = 1.0
CHECKPOINTER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)
while True:
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
"""


def integrity(path: str) -> str:
    conn = sqlite3.connect(path, timeout=30)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def test_sqlite_file_survives_sigkill_of_any_process(target: Target, tmp_path: Path) -> None:
    kills = scaled(60, 20)
    path = target.url.split(":///", 1)[1]
    rng, pause = random.Random(), threading.Event()
    ledger = Ledger(tmp_path / "ledger.log")
    fleet = Fleet(tmp_path, target.url, LEASE, ledger)
    acks = tmp_path / "producer.log"
    acks.touch()
    client = client_app(target.url, LEASE)  # creates the schema before anyone is killed
    client.stats()
    roles = {
        "producer": [sys.executable, "-m", "tests.faults._producer", target.url, str(acks), "ids"],
        "checkpoint": [sys.executable, "-c", CHECKPOINTER, path],
    }
    others: dict[str, subprocess.Popen[bytes]] = {}

    def start(role: str) -> None:
        if role == "worker":
            fleet.spawn(4)
        else:
            others[role] = subprocess.Popen(roles[role], cwd=REPO, env=fleet.env(), stdin=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)

    checks, killed = [], {"worker": 0, "producer": 0, "checkpoint": 0}
    try:
        for role in ("worker", "worker", "producer", "checkpoint"):
            start(role)
        started = time.monotonic()
        wait_until(lambda: ledger.path.stat().st_size > 0, timeout=30, message="a job to run")
        for n in range(kills):
            pause.wait(rng.uniform(0.05, 0.3))
            role = rng.choice(["worker", "worker", "producer", "checkpoint"])
            victim = rng.choice(fleet.alive()) if role == "worker" else others[role]
            victim.kill()
            victim.wait(10)
            killed[role] += 1
            start(role)
            if n % 10 == 9:
                checks.append(integrity(path))
        others["producer"].kill()
        others["producer"].wait(10)
        last_fault = time.monotonic()
        lines = acks.read_text().splitlines()
        errors = [line for line in lines if line.startswith("error ")]
        acked = dict.fromkeys((line.split()[1] for line in lines if line.startswith("ack ")), "succeeded")
        verdict = settle_and_check(client, acked, timeout=90, ambiguous=21 * (killed["producer"] + 1))
        checks.append(integrity(path))
        record(Figures(
            "S9 SQLite SIGKILL of any process", target.backend, jobs=len(acked), faults=kills,
            lost=len(verdict.lost), stuck=len(verdict.stuck), duplicates=ledger.duplicates(acked),
            ambiguous=verdict.unacknowledged,
            recover_max=round(verdict.drained_at - last_fault, 2), seconds=round(time.monotonic() - started, 1),
            note=f"kills: {killed}; integrity_check ok {checks.count('ok')}/{len(checks)}; "
                 f"errors reaching the producer: {len(errors)}",
        ))
        assert set(checks) == {"ok"}, checks
        assert not errors, errors[:5]
        verdict.assert_clean(fleet.logs())
    finally:
        for process in others.values():
            process.kill()
            process.wait(10)
        fleet.close()
        client.close()
