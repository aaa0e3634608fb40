"""S5 and S14 on MariaDB: a private server (``mariadb-install-db`` + ``mariadbd`` on a free port)
is killed (SIGKILL: a crash, recovered from the redo log) or stopped (SIGTERM: a clean shutdown
that ends every session) and started again mid-run, three times, while a worker runs and a
producer enqueues. Producers get ``BackendUnavailable`` within seconds while it is down; the
worker reconnects by itself and goes on; every acknowledged job ends ``succeeded``. Then the
server runs out of connections (``max_connections``): ``perform`` names the cause, and works
again once connections are free.

Lost = 0 holds because an acknowledged enqueue has committed with
``innodb_flush_log_at_trx_commit=1`` (the default, set explicitly here): the redo log is flushed
before the reply, so even a SIGKILL keeps it."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

pymysql = pytest.importorskip("pymysql")

from errands import Errands
from errands.errors import BackendUnavailable
from tests.conftest import wait_until
from tests.faults._servers import MariaDBServer

pytestmark = pytest.mark.slow

TOTAL = 600
FAULTS = (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MariaDBServer]:
    instance = MariaDBServer(tmp_path / "mariadb")
    try:
        yield instance.start()
    finally:
        instance.cleanup()


class Producer(threading.Thread):
    """Enqueues ``TOTAL`` jobs at a steady pace through the public API and keeps the ledger:
    acknowledged ids (perform returned) and refusals (perform raised)."""

    def __init__(self, app: Errands) -> None:
        super().__init__(daemon=True)
        self.app = app
        self.acked: dict[int, str] = {}
        self.refusals: list[float] = []  # seconds each failed perform took
        self.unexpected: list[BaseException] = []
        self.pace = threading.Event()

    def run(self) -> None:
        for n in range(TOTAL):
            started = time.monotonic()
            try:
                self.acked[n] = self.app.perform("work", n).id
            except BackendUnavailable:
                self.refusals.append(time.monotonic() - started)
            except Exception as exc:  # noqa: BLE001 (anything else is a bug the test reports)
                self.unexpected.append(exc)
            self.pace.wait(0.003)


def test_workers_and_producers_ride_out_server_restarts(server: MariaDBServer) -> None:
    app = Errands(server.url(table_prefix="s5_"), lease=3.0, poll_interval=0.2)
    runs: Counter[int] = Counter()
    lock = threading.Lock()

    @app.job(retries=20)
    def work(n: int) -> None:
        with lock:
            runs[n] += 1

    producer = Producer(app)
    worker = app.start(concurrency=4)
    try:
        producer.start()
        recoveries = []
        for round_, signum in enumerate(FAULTS, start=1):
            target = round_ * TOTAL // 5
            wait_until(lambda t=target: len(producer.acked) >= t, timeout=60,
                       message=f"{target} acknowledged enqueues")
            refused = len(producer.refusals)
            server.kill(signum)
            wait_until(lambda r=refused: len(producer.refusals) >= r + 2, timeout=30,
                       message="the producer to hear BackendUnavailable while the server is down")
            server.start()
            done_before, restarted = sum(runs.values()), time.monotonic()
            wait_until(lambda d=done_before: sum(runs.values()) > d, timeout=60,
                       message="the worker to run a job after the restart")
            recoveries.append(time.monotonic() - restarted)
        producer.join(120)
        assert not producer.is_alive()
        assert not producer.unexpected, producer.unexpected
        assert producer.refusals and max(producer.refusals) < 5.0, producer.refusals

        def unfinished() -> list[str]:
            pending = []
            for job_id in producer.acked.values():
                info = app.get_job(job_id)
                if info is None or info.state != "succeeded":
                    pending.append(job_id if info is None else f"{job_id}:{info.state}")
            return pending

        wait_until(lambda: not unfinished(), timeout=90, interval=0.2,
                   message="every acknowledged job to succeed")
        lost = [n for n in producer.acked if runs[n] == 0]
        assert not lost, f"acknowledged but never run: {lost}"
        duplicates = sum(runs.values()) - len(runs)
        final = app.perform("work", TOTAL + 1)  # the worker goes on after the last restart too
        assert final.wait(timeout=30).state == "succeeded"
        print(f"\nacked={len(producer.acked)} refused={len(producer.refusals)} duplicates={duplicates} "
              f"recovery={[f'{r:.2f}s' for r in recoveries]} slowest refusal={max(producer.refusals):.2f}s")
        assert worker.processed >= len(producer.acked)
    finally:
        app.stop(timeout=5)
        app.close()


def test_a_producer_alone_reconnects_after_a_restart(server: MariaDBServer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from errands.backends import _mysql_conn

    app = Errands(server.url(table_prefix="alone_"))

    @app.job()
    def noop() -> None: ...

    try:
        first = noop.perform().id
        server.kill(signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="MySQL at 127.0.0.1"):
            noop.perform()
        assert time.monotonic() - started < 5.0
        server.start()
        second = noop.perform().id  # the broken connection was thrown away: a new one
        # A restart while the connection idles: the ping before use finds it dead (the threshold,
        # a second, is set to 0 here so the test needn't idle), and the call still succeeds.
        monkeypatch.setattr(_mysql_conn, "_IDLE_PING", 0.0)
        server.kill(signal.SIGTERM)
        server.start()
        third = noop.perform().id
        assert {j.id for j in app.list_jobs(state="available")} == {first, second, third}
    finally:
        app.close()


def test_max_connections_reached_names_the_cause_and_recovers(server: MariaDBServer) -> None:
    # A plain user (root keeps one connection in reserve beyond max_connections).
    server.sql("CREATE USER 'app'@'127.0.0.1'; GRANT ALL ON test.* TO 'app'@'127.0.0.1'; "
               "SET GLOBAL max_connections = 6")
    url = server.url(table_prefix="full_").replace("root@", "app@")
    hogs: list[object] = []
    try:
        while True:  # take every connection there is
            try:
                hogs.append(pymysql.connect(host="127.0.0.1", port=server.port, user="app", database="test"))
            except pymysql.err.OperationalError as exc:
                assert exc.args[0] == 1040
                break
        app = Errands(url)

        @app.job()
        def noop() -> None: ...

        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="too many connections"):
            noop.perform()
        assert time.monotonic() - started < 5.0
        hogs.pop().close()  # pressure ends
        handle = wait_until(lambda: _try(noop.perform), timeout=10, message="perform to work again")
        assert app.get_job(handle.id) is not None
        app.close()
    finally:
        for conn in hogs:
            conn.close()  # type: ignore[attr-defined]


def _try(call):  # type: ignore[no-untyped-def]
    try:
        return call()
    except BackendUnavailable:
        return None
