"""The spool through a real outage (issue #9), on a private Redis, PostgreSQL, MariaDB and
RabbitMQ (alone: with a store, ``perform`` never needs the spool) each:
two producer processes share one spool file and keep calling ``perform`` while the server is
killed; one producer is SIGKILLed and restarted while the server is still down; then the server
comes back. Every acknowledged job must exist exactly once, in order of enqueue per queue (each
producer has its own queue), and the spool must end empty.

An id a killed producer had not yet written to its ledger may exist (an ambiguous ack: at most
one per kill); it is never a duplicate of an acknowledged job's ``n``."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from errands import Errands
from tests.conftest import wait_until
from tests.faults._servers import MariaDBServer, PostgresServer, RabbitMQServer, RedisServer

pytestmark = pytest.mark.slow

PER_PRODUCER = 400
ROOT = Path(__file__).resolve().parents[2]


class Outage:
    """A private server: ``url``, ``kill()`` (a crash) and ``start()`` again on the same data."""

    def __init__(self, url: str, kill: Callable[[], None], start: Callable[[], None]) -> None:
        self.url, self.kill, self.start = url, kill, start


@pytest.fixture(params=["redis", "postgres", "mysql", "amqp"])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outage]:
    if request.param == "amqp":
        pytest.importorskip("pika")
        rabbitmq = RabbitMQServer(tmp_path / "rabbitmq").start()
        try:
            # SIGTERM, not SIGKILL: RabbitMQ 3.10 can leave a quorum queue declared a second
            # before a kill without a leader for good (see test_amqp_restart.py)
            yield Outage(rabbitmq.url("spool"), lambda: rabbitmq.kill(signal.SIGTERM),
                         lambda: rabbitmq.start() and None)
        finally:
            rabbitmq.cleanup()
    elif request.param == "redis":
        pytest.importorskip("redis")
        redis = RedisServer(tmp_path / "redis", "--appendfsync", "always").start()  # acked = on disk
        try:
            yield Outage(redis.url("spool"), lambda: redis.kill(signal.SIGKILL), lambda: redis.start() and None)
        finally:
            redis.stop()
    elif request.param == "postgres":
        pytest.importorskip("psycopg")
        postgres = PostgresServer(tmp_path / "pg").start()
        try:
            yield Outage(postgres.url("spool"), lambda: postgres.stop("immediate"), lambda: postgres.start() and None)
        finally:
            postgres.cleanup()
    else:
        pytest.importorskip("pymysql")
        mariadb = MariaDBServer(tmp_path / "mariadb").start()
        try:
            yield Outage(mariadb.url(), lambda: mariadb.kill(signal.SIGKILL), lambda: mariadb.start() and None)
        finally:
            mariadb.cleanup()


def _producer(url: str, spool: Path, ledger: Path, queue: str, start: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.faults._spool_producer", url, str(spool), str(ledger), queue,
         str(start), str(PER_PRODUCER)], cwd=ROOT, env=env,
    )


def _ledger(path: Path) -> list[tuple[int, str]]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [(int(n), job_id) for n, job_id in (line.split() for line in lines if line.count(" ") == 1)]


def _depth(spool: Path) -> int:
    with sqlite3.connect(spool, timeout=30) as conn:
        return int(conn.execute("SELECT count(*) FROM spool").fetchone()[0])


def test_producers_spool_through_an_outage_and_a_producer_restart(outage: Outage, tmp_path: Path) -> None:
    spool, ledgers = tmp_path / "spool.db", {q: tmp_path / f"{q}.ledger" for q in ("a", "b")}
    check = Errands(outage.url)  # straight to the server, no spool: what really is stored
    check.backend  # noqa: B018  # create the schema before the producers race to
    procs = {q: _producer(outage.url, spool, ledgers[q], q, 0) for q in ledgers}
    try:
        wait_until(lambda: all(len(_ledger(p)) >= 40 for p in ledgers.values()), timeout=60,
                   message="both producers to enqueue straight to the server")
        outage.kill()
        marks = {q: len(_ledger(p)) for q, p in ledgers.items()}
        wait_until(lambda: all(len(_ledger(ledgers[q])) >= marks[q] + 60 for q in ledgers), timeout=60,
                   message="both producers to keep going while the server is down")
        assert _depth(spool) > 0
        procs["a"].kill()  # SIGKILL mid-run, the server still down
        procs["a"].wait(10)
        restart_at = max((n for n, _ in _ledger(ledgers["a"])), default=-1) + 1
        mark = len(_ledger(ledgers["a"]))
        procs["a"] = _producer(outage.url, spool, ledgers["a"], "a", restart_at)
        wait_until(lambda: len(_ledger(ledgers["a"])) >= mark + 40, timeout=60,
                   message="the restarted producer to spool (it never waits for the server)")
        outage.start()
        for proc in procs.values():
            assert proc.wait(180) == 0, "a producer could not empty the spool"
        assert _depth(spool) == 0
        _check_exactly_once_in_order(check, ledgers, kills=1)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
        check.close()


def _check_exactly_once_in_order(check: Errands, ledgers: dict[str, Path], kills: int) -> None:
    for queue, path in ledgers.items():
        acked = _ledger(path)
        stored = {job.id: job for job in _stored(check, queue)}
        missing = [job_id for _, job_id in acked if job_id not in stored]
        assert not missing, f"queue {queue}: acknowledged but not stored: {missing[:5]} ({len(missing)})"
        assert [n for n, _ in acked] == list(range(PER_PRODUCER)), f"queue {queue}: ledger has gaps"
        acked_ids = {job_id for _, job_id in acked}
        extra = [job for job_id, job in stored.items() if job_id not in acked_ids]
        assert len(extra) <= kills, f"queue {queue}: unacknowledged jobs {[(j.id, j.args) for j in extra]}"
        ns = [job.args[0] for job in stored.values()]
        assert len(ns) - len(set(ns)) <= len(extra), f"queue {queue}: an acknowledged n stored twice"
        created = [stored[job_id].created_at for _, job_id in acked]
        out_of_order = [i for i in range(1, len(created)) if created[i] < created[i - 1]]  # type: ignore[operator]
        assert not out_of_order, f"queue {queue}: delivered out of enqueue order at {out_of_order[:5]}"


def _stored(check: Errands, queue: str) -> list[Any]:
    """The queue's jobs: listed from the store, or, for RabbitMQ alone (no records to list), read
    from its work queue, where they wait in the order they were published."""
    if not check.settings.url.startswith("amqp"):
        return check.list_jobs(queue=queue, limit=10_000)
    import pika

    from errands.backends._amqp_wire import Envelope

    parameters = pika.URLParameters(check.settings.url.split("?", 1)[0])
    jobs = []
    connection = pika.BlockingConnection(parameters)
    try:
        channel = connection.channel()
        while (message := channel.basic_get(check.backend.topology.work_queue(queue)))[0] is not None:  # type: ignore[attr-defined]
            envelope = Envelope.from_body(message[2])
            # created_at stands for the place in the queue: the check compares their order only
            jobs.append(SimpleNamespace(id=envelope.id, args=json.loads(envelope.args), created_at=len(jobs)))
    finally:
        connection.close()  # unacked: the messages go back
    return jobs
