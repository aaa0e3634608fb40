"""S5 on Redis: the server is killed (SIGKILL) or stopped (SIGTERM) and restarted mid-run, three
times, on its own port with ``appendonly yes``. Producers get ``BackendUnavailable`` within
seconds while it is down; the worker reconnects by itself and goes on; every acknowledged job
ends ``succeeded``.

Lost = 0 holds at the durability the server is configured for. With ``appendfsync everysec``
(Redis' default) a SIGKILLed server may drop writes it already acknowledged: while a background
fsync is in flight it postpones writing the AOF for up to two seconds but still replies (seen
here as a job acknowledged just before the kill and gone after the restart). So these servers
run with ``appendfsync always``: an acknowledged job is on disk."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

pytest.importorskip("redis")

from errands import Errands
from errands.errors import BackendUnavailable
from tests.faults._ledger import ride_out_restarts
from tests.faults._servers import RedisServer

pytestmark = pytest.mark.slow

FAULTS = (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL)
DURABLE = ("--appendfsync", "always")


def test_workers_and_producers_ride_out_server_restarts(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", *DURABLE).start()
    app = Errands(server.url("s5"), lease=3.0, poll_interval=0.2)
    try:
        ride_out_restarts(app, [lambda s=signum: server.kill(s) for signum in FAULTS], server.start)
    finally:
        app.close()
        server.stop()


def test_a_producer_alone_reconnects_after_a_restart(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", *DURABLE).start()
    app = Errands(server.url("alone"))

    @app.job()
    def noop() -> None: ...

    try:
        first = noop.perform().id
        server.kill(signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="cannot reach redis"):
            noop.perform()
        assert time.monotonic() - started < 5.0
        server.start()
        second = noop.perform().id  # the pool reconnects; the scripts are loaded again (NOSCRIPT)
        assert {j.id for j in app.list_jobs(state="available")} == {first, second}
    finally:
        app.close()
        server.stop()
