"""S8, producers killed mid-``perform_many`` (issue #7, scenario 3): a producer process enqueues
batches of jobs, one ``perform_many`` each, and is killed with SIGKILL at a random moment, again
and again. Every batch is all or nothing in the store, and every batch whose call returned
(acknowledged) is there in full."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.faults._harness import REPO, Figures, Fleet, Ledger, client_app, record, scaled, scan

from .conftest import FAULT_BACKENDS, Target

# RabbitMQ with a store too (alone it can't list the batches a producer left (no store to scan))
pytestmark = [pytest.mark.slow, pytest.mark.fault_backends(*FAULT_BACKENDS, "amqp+sqlite")]


def test_killed_producers_leave_whole_batches(target: Target, tmp_path: Path) -> None:
    size, rounds = 1000, scaled(6, 3)
    ledger = tmp_path / "producer.log"
    ledger.touch()
    env = Fleet(tmp_path, target.url, 1.0, Ledger(tmp_path / "unused.log")).env()
    rng, pause = random.Random(), threading.Event()
    client = client_app(target.url, 1.0)
    started, mid_call = time.monotonic(), 0
    try:
        for round_ in range(rounds):
            first = round_ * 1000  # batch numbers of this round's producer
            producer = subprocess.Popen([sys.executable, "-m", "tests.faults._producer", target.url, str(ledger),
                                         str(first), str(size)], cwd=REPO, env=env, stdin=subprocess.DEVNULL)
            try:
                wait_until(lambda f=first: f"ack {f}\n" in ledger.read_text(), timeout=30,
                           message="the producer's first batch")
                pause.wait(rng.uniform(0.0, 0.4))
            finally:
                producer.kill()
                producer.wait(10)
            lines = ledger.read_text().splitlines()
            mid_call += lines[-1].startswith("begin")
        events = [line.split() for line in ledger.read_text().splitlines()]
        begun = {int(k) for e, k in events if e == "begin"}
        acked = {int(k) for e, k in events if e == "ack"}
        stored = Counter(info.args[0] // size for info in scan(client).values())
        partial = {k: n for k, n in stored.items() if n != size}
        missing = sorted(k for k in acked if stored[k] != size)
        phantoms = sorted(k for k in stored if k not in begun)
        record(Figures(
            "S8 producer SIGKILL mid-perform_many", target.backend, jobs=sum(stored.values()), faults=rounds,
            lost=sum(size - stored[k] for k in acked), stuck=0, duplicates=0,
            ambiguous=len(begun - acked), seconds=round(time.monotonic() - started, 1),
            note=f"batches of {size}: {len(acked)} acknowledged, {mid_call} kills inside the call, "
                 f"{len(partial)} partial batches, {sum(1 for k in begun - acked if stored[k] == size)} "
                 "unacknowledged but whole",
        ))
        assert not partial, f"batches neither whole nor absent: {partial}"
        assert not missing, f"acknowledged batches missing jobs: {missing}"
        assert not phantoms, phantoms
        assert len(acked) >= rounds
    finally:
        client.close()
