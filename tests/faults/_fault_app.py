"""The app every fault-scenario worker process runs (``errands worker tests.faults._fault_app:app``),
configured by environment variables the harness sets:

* ``FAULT_URL``, ``FAULT_LEASE``: the store and the lease (short, so reclaim is quick);
* ``FAULT_LEDGER``: the file each handler appends ``id attempt pid event wallclock`` to, with
  ``O_APPEND`` (one ``write`` per line, so lines from many processes never interleave);
* ``FAULT_PERIODIC``: register the ``tick`` job ``every=1s`` (the clock-skew scenario);
* ``FAULT_MEMORY_LIMIT``: MiB of address space this process may grow by (``RLIMIT_AS``), so a
  handler that exhausts memory meets ``MemoryError`` instead of the machine's OOM killer.

The handlers do what the scenarios need: ``work``/``awork`` (sync and async, the ledger's jobs),
``doomed`` (fails on purpose), and the poison jobs ``abort``, ``segfault``, ``hog`` and ``hang``.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import resource
import time
from collections.abc import Callable
from typing import Any

from errands import Errands, Fail, current_job

app = Errands(os.environ.get("FAULT_URL", "memory://"), lease=float(os.environ.get("FAULT_LEASE", "1.0")),
              poll_interval=0.05)

_LEDGER = os.environ.get("FAULT_LEDGER")
_FD = os.open(_LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if _LEDGER else None
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # os.abort() and segfaults leave no core files

if os.environ.get("FAULT_MEMORY_LIMIT"):
    with open("/proc/self/statm") as statm:
        _size = int(statm.read().split()[0]) * resource.getpagesize()
    _limit = _size + int(os.environ["FAULT_MEMORY_LIMIT"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (_limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def mark(event: str) -> None:
    """One ledger line for the current job; the wall clock shows which clock this process reads."""
    if _FD is None:
        return
    job = current_job()
    assert job is not None
    os.write(_FD, f"{job.id} {job.attempt} {os.getpid()} {event} {time.time():.3f}\n".encode())


def work(n: int, millis: int = 0) -> int:
    mark("start")
    time.sleep(millis / 1000)
    mark("end")
    return n


async def awork(n: int, millis: int = 0) -> int:
    mark("start")
    await asyncio.sleep(millis / 1000)
    mark("end")
    return n


def doomed(n: int) -> None:
    mark("start")
    raise Fail(f"job {n} is meant to fail")


def abort() -> None:
    mark("start")
    os.abort()


def segfault() -> None:
    mark("start")
    ctypes.string_at(0)  # reads address 0: SIGSEGV


def hog() -> None:
    """Allocate 64 MiB at a time until memory runs out (under FAULT_MEMORY_LIMIT: MemoryError)."""
    mark("start")
    chunks = []
    for _ in range(100_000):
        chunks.append(bytearray(64 * 1024 * 1024))
    mark("end")


def hang() -> None:
    """Never returns by itself: only its timeout ends it."""
    mark("start")
    while True:
        time.sleep(0.05)


def tick() -> None:
    mark("start")
    mark("end")


# name -> (handler, job options); the poison jobs get one retry: two attempts, then failed
JOBS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "work": (work, {"retries": 25, "backoff": 0.05}),
    "awork": (awork, {"retries": 25, "backoff": 0.05}),
    "doomed": (doomed, {"retries": 0}),
    "abort": (abort, {"retries": 1, "backoff": 0.05}),
    "segfault": (segfault, {"retries": 1, "backoff": 0.05}),
    "hog": (hog, {"retries": 1, "backoff": 0.05}),
    "hang": (hang, {"retries": 1, "backoff": 0.05, "timeout": 1.0}),
}
TICK_EVERY = 1.0


def register(target: Errands, *, periodic: bool = False) -> Errands:
    """Register every handler on ``target`` (the workers' app, or a test's producer app)."""
    for name, (function, options) in JOBS.items():
        target.job(name=name, **options)(function)
    if periodic:
        target.periodic(every=TICK_EVERY, retries=0)(tick)
    return target


register(app, periodic=bool(os.environ.get("FAULT_PERIODIC")))
