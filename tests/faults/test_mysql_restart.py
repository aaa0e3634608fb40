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
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pymysql = pytest.importorskip("pymysql")

from errands import Errands
from errands.errors import BackendUnavailable
from tests.conftest import wait_until
from tests.faults._ledger import ride_out_restarts
from tests.faults._servers import MariaDBServer

pytestmark = pytest.mark.slow

FAULTS = (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MariaDBServer]:
    instance = MariaDBServer(tmp_path / "mariadb")
    try:
        yield instance.start()
    finally:
        instance.cleanup()


def test_workers_and_producers_ride_out_server_restarts(server: MariaDBServer) -> None:
    app = Errands(server.url(table_prefix="s5_"), lease=3.0, poll_interval=0.2)
    try:
        ride_out_restarts(app, [lambda s=signum: server.kill(s) for signum in FAULTS], server.start)
    finally:
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
