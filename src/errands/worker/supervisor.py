"""The supervisor behind ``errands worker -p N``: starts N worker processes, restarts one that
dies, and passes shutdown signals on.

Children are fresh interpreters (``sys.executable -m errands worker APP -p 1 ...``), never
forks, so the same code runs on Linux, macOS and Windows, and no lock or connection of the
parent leaks into a child. Each child runs in its own process group, so a Ctrl-C at the
terminal reaches the supervisor alone and each child hears exactly one SIGTERM from it (the
Worker treats a second signal as "put running jobs back now"). Each child's stdin is a pipe the
supervisor holds: when the supervisor dies, even by SIGKILL, the child reads EOF and stops.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from ._signals import handling_signals

__all__ = ["Supervisor"]

logger = logging.getLogger("errands.supervisor")

TICK = 0.1  # how often children are checked; signal handlers only set a flag the loop reads
FIRST_RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
STABLE_AFTER = 60.0  # a child that lived this long died of something new: its backoff starts over
KILL_MARGIN = 30.0  # after the grace period, what a child gets to put jobs back and settle
USAGE_ERROR = 2  # a child's click usage error: restarting cannot mend it


@dataclass
class _Child:
    number: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0
    restart_at: float | None = 0.0  # start (again) once the clock passes this; None: don't
    done: bool = False


class Supervisor:
    """Run ``command`` as ``processes`` children until stopped (SIGTERM/SIGINT or
    ``request_stop()``) or, with ``burst``, until every child has exited 0.

    >>> Supervisor([sys.executable, "-m", "errands", "worker", "app:app", "-p", "1"], 4).run()
    0
    """

    def __init__(self, command: Sequence[str], processes: int, *, burst: bool = False, grace: float = 30.0,
                 env: Mapping[str, str] | None = None) -> None:
        self.command = list(command)
        self.burst = burst
        self.grace = grace
        self.env = dict(env) if env is not None else None
        self.children = [_Child(number) for number in range(1, processes + 1)]
        self.exit_code = 0
        self._stop_requests = 0  # raised by signal handlers and request_stop(); read by the loop
        self._forwarded = 0
        self._kill_at: float | None = None
        self._wake = threading.Event()

    def run(self) -> int:
        try:
            with handling_signals(_HANDLED, self._on_signal):
                while not self._finished():
                    self._step(time.monotonic())
                    self._wake.wait(TICK)
                    self._wake.clear()
        finally:
            self._kill_all()
        logger.info("all worker processes stopped")
        return self.exit_code

    def request_stop(self) -> None:
        """Ask every child to stop gracefully; a second request asks them to put jobs back now."""
        self._stop_requests += 1
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop_requests > 0

    # loop ------------------------------------------------------------------------------------
    def _finished(self) -> bool:
        if self.stopping:
            return all(child.process is None for child in self.children)
        return all(child.done for child in self.children)

    def _step(self, now: float) -> None:
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                self._exited(child, now)
        if self._stop_requests > self._forwarded:
            self._forward_stop(now)
        if self.stopping:
            if self._kill_at is not None and now >= self._kill_at:
                self._kill_all()
            return
        for child in self.children:
            if child.process is None and child.restart_at is not None and now >= child.restart_at:
                self._start(child, now)

    def _start(self, child: _Child, now: float) -> None:
        child.restart_at = None
        # each child knows its number (1..N): `--metrics-port P` serves child k on P + k - 1
        env = {**(self.env if self.env is not None else os.environ), "ERRANDS_WORKER_NUMBER": str(child.number)}
        try:
            child.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, env=env, **_new_process_group())
        except OSError as exc:  # out of processes or file descriptors: retry, backing off
            child.failures += 1
            self._schedule_restart(child, now, f"could not start ({exc})")
            return
        child.started = now
        logger.info("started worker process %d (pid %d)", child.number, child.process.pid)

    def _exited(self, child: _Child, now: float) -> None:
        process, child.process = child.process, None
        assert process is not None
        code = process.returncode
        _close_stdin(process)
        how = _describe_exit(code)
        if self.stopping:
            log = logger.info if code == 0 or code == -signal.SIGTERM else logger.warning
            log("worker process %d (pid %d) %s", child.number, process.pid, how)
            child.done = True
        elif code == 0 and self.burst:
            logger.info("worker process %d (pid %d) finished its burst", child.number, process.pid)
            child.done = True
        elif code == USAGE_ERROR:
            logger.error("worker process %d (pid %d) %s: it can't start, so stopping", child.number,
                         process.pid, how)
            self.exit_code = USAGE_ERROR
            self.request_stop()
            child.done = True
        else:
            child.failures = child.failures + 1 if now - child.started < STABLE_AFTER else 1
            self._schedule_restart(child, now, f"(pid {process.pid}) {how} unexpectedly")

    def _schedule_restart(self, child: _Child, now: float, why: str) -> None:
        delay = min(FIRST_RESTART_DELAY * 2 ** max(child.failures - 1, 0), MAX_RESTART_DELAY)
        child.failures = max(child.failures, 1)
        child.restart_at = now + delay
        logger.warning("worker process %d %s; restarting in %.1fs", child.number, why, delay)

    # stopping --------------------------------------------------------------------------------
    def _forward_stop(self, now: float) -> None:
        first = self._forwarded == 0
        self._forwarded = self._stop_requests
        live = [child for child in self.children if child.process is not None]
        if first:
            self._kill_at = now + self.grace + KILL_MARGIN
            logger.info("stopping %d worker process(es): running jobs get up to %gs", len(live), self.grace)
        else:
            logger.warning("asked again: worker processes put running jobs back now")
        for child in live:
            assert child.process is not None
            try:
                child.process.send_signal(_STOP_SIGNAL)
            except OSError:
                pass  # it exited between poll and signal; the next step reaps it

    def _kill_all(self) -> None:
        for child in self.children:
            process = child.process
            if process is None or process.poll() is not None:
                continue
            logger.error("worker process %d (pid %d) did not stop in time: killing it; its jobs return "
                         "when their leases expire", child.number, process.pid)
            process.kill()
            process.wait()
            _close_stdin(process)
            child.process = None
            child.done = True

    # signals ---------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # no locks or Event.set here: the handler may run while the loop holds the Event's lock
        self._stop_requests += 1


def _new_process_group() -> dict[str, Any]:
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


if sys.platform == "win32":
    _STOP_SIGNAL = signal.CTRL_BREAK_EVENT  # the child maps SIGBREAK to its SIGTERM handler
    _HANDLED: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGBREAK)
else:
    _STOP_SIGNAL = signal.SIGTERM
    _HANDLED = (signal.SIGTERM, signal.SIGINT)


def _close_stdin(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        try:
            process.stdin.close()
        except OSError:
            pass


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
