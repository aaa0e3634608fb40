"""The worker: claims jobs in batches, runs them, settles outcomes, heartbeats leases, takes part
in maintenance and periodic scheduling, and shuts down gracefully.

Threads: the claim loop (the caller's thread for ``run()``), a settler, a heartbeat, a
maintenance loop, a timeout watchdog, an asyncio loop for async handlers, and a pool for sync ones.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._states import TERMINAL_STATES
from ..backends.base import Backend, Capability, Claim, Outcome
from ..config import check_queue_name
from ..errors import ConfigurationError
from ..scheduler import Scheduler
from ._looper import Looper
from ._signals import relaying_signals
from .executor import Executor
from .gate import Gate
from .reporting import Reporter
from .settler import Settler

if TYPE_CHECKING:
    from ..app import Errands

__all__ = ["Worker"]

logger = logging.getLogger("errands.worker")

MAX_CONCURRENCY = 10_000


class Worker:
    """Run jobs of ``queues`` (None: every queue) with up to ``concurrency`` at once.

    ``burst``: return once nothing is runnable. ``grace``: on shutdown, seconds running jobs get
    to finish before they are put back.
    """

    def __init__(
        self,
        app: Errands,
        queues: Sequence[str] | None = None,
        concurrency: int = 8,
        burst: bool = False,
        grace: float = 30.0,
        install_signals: bool = True,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ConfigurationError(f"concurrency must be an int from 1 to {MAX_CONCURRENCY}, got {concurrency!r}")
        if isinstance(queues, str):
            queues = [queues]
        self.app = app
        self.queues = [check_queue_name(q) for q in queues] if queues else None
        self.concurrency = concurrency
        self.burst = burst
        self.grace = grace
        self.install_signals = install_signals
        self.settings = app.settings
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.processed = 0
        self.started_at: float | None = None
        self._busy = 0
        self._owned: dict[str, Claim] = {}  # claimed and not yet settled: the heartbeat keeps these
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._force = False
        self._thread: threading.Thread | None = None
        self.reporter = Reporter(self.id, app.events)

    # lifecycle -------------------------------------------------------------------------------
    def run(self) -> None:
        """Block until stopped (SIGTERM/SIGINT, ``stop()``) or, in burst mode, until idle."""
        backend = self.app.backend
        self._check_capabilities(backend)
        self.started_at = time.time()
        self._stopped.clear()
        # relayed: the handler takes locks (the stop Event's, the backend's) the main thread may hold
        with relaying_signals((signal.SIGTERM, signal.SIGINT), self._on_signal, install=self.install_signals):
            self._run(backend)

    def _run(self, backend: Backend) -> None:
        self.executor = Executor(self.app, self._job_done)
        self.gate = Gate(self.app, backend, self.settings.lease)
        self._followers: dict[str, list[str]] = {}  # job id -> workflow steps to wake when it ends
        self.settler = Settler(backend, self._settled)
        self.scheduler = Scheduler(self.app.periodics, backend)
        lease = self.settings.lease
        loops = [
            Looper("heartbeat", self._heartbeat, self.settings.heartbeat_interval),
            Looper("maintenance", self._maintain, max(0.05, min(1.0, lease / 4))),
        ]
        self._announce()
        self._expect_work(backend)
        for loop in loops:
            loop.start()
        logger.info("worker %s started: queues=%s concurrency=%d", self.id, self.queues or "*", self.concurrency)
        try:
            self._claim_loop()
        finally:
            self._shutdown(loops)
            self._stopped.set()

    def _expect_work(self, backend: Backend) -> None:
        handlers = list(self.app.registry.values())
        queues = self.queues or {h.options.queue for h in handlers}
        timeouts = [h.options.timeout for h in handlers]
        bounded = [t for t in timeouts if t is not None]
        backend.expect_work(queues, None if len(bounded) < len(timeouts) else max(bounded, default=0.0))

    def _check_capabilities(self, backend: Backend) -> None:
        """Limits the app declares need a backend that enforces them: refuse to start without,
        rather than run limited jobs unlimited (or not at all)."""
        if Capability.LIMITS in backend.capabilities:
            return
        limited = sorted([f"job {h.name}" for h in self.app.registry.values() if h.options.limits is not None]
                         + [f"queue {q}" for q in self.app.queue_limits])
        if limited:
            raise ConfigurationError(
                f"{type(backend).__name__} can't enforce concurrency or rate limits (Capability.LIMITS), "
                f"declared on {', '.join(limited)}; use a backend that can (for RabbitMQ: pair it with a store)")

    def start(self) -> None:
        """Run on a background thread of this process (no signal handlers)."""
        self._check_capabilities(self.app.backend)
        self.install_signals = False
        self._thread = threading.Thread(target=self.run, name="errands-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming; give running jobs ``timeout`` (default: grace) seconds, then put them back."""
        if timeout is not None:
            self.grace = timeout
        self.request_stop()
        if self._thread is not None:
            self._thread.join()
        else:
            self._stopped.wait(self.grace + 30)

    def request_stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self.app._backend is not None:
            self.app._backend.notify()

    # claim loop ------------------------------------------------------------------------------
    def _claim_loop(self) -> None:
        backend, failures, idle_checks = self.app.backend, 0, 0
        while not self._stopping.is_set():
            with self._cond:
                free = self.concurrency - self._busy
                if free <= 0:
                    self._cond.wait(0.5)
                    continue
            try:
                claims = backend.claim(self.queues, free, worker_id=self.id, lease=self.settings.lease)
                failures = 0
            except Exception as exc:
                failures += 1
                delay = min(0.1 * 2**failures, 10.0)
                logger.warning("claiming failed (%s); retrying in %.1fs", exc, delay)
                self._stopping.wait(delay)
                continue
            if claims:
                idle_checks = 0
                self._dispatch(claims)
            elif self.burst:
                idle_checks = self._burst_idle(idle_checks)
                if idle_checks >= 2:
                    return
            else:
                self._idle_wait(backend)

    def _idle_wait(self, backend: Backend) -> None:
        try:
            backend.wait(self.queues, self.settings.poll_interval)
        except Exception as exc:  # the next claim reports a real outage; never let waiting kill the loop
            logger.debug("waiting for work failed: %s", exc)
            self._stopping.wait(self.settings.poll_interval)

    def _dispatch(self, claims: list[Claim]) -> None:
        try:
            admitted = self.gate.admit(claims)
        except Exception as exc:  # give them back (or their leases will); the claim loop goes on
            logger.warning("could not check the limits and dependencies of %d job(s): %s", len(claims), exc)
            with contextlib.suppress(Exception):
                self.app.backend.release(claims)
            return
        with self._cond:
            self._followers.update(admitted.followers)
            self._busy += len(admitted.run)
            for claim, _ in admitted.run:
                self._owned[claim.id] = claim
        for outcome in admitted.failed:
            self.settler.add(outcome)
        self.reporter.started([claim for claim, _ in admitted.run])
        for claim, prefix in admitted.run:
            self.executor.submit(claim, prefix)

    def _burst_idle(self, idle_checks: int) -> int:
        """Burst mode ends after two empty claims with nothing running and every outcome settled
        (a settled retry may have made a job available again)."""
        with self._cond:
            if self._busy:
                self._cond.wait(0.05)
                return 0
        self.settler.flush(30)
        self._maintain()
        return idle_checks + 1

    # callbacks -------------------------------------------------------------------------------
    def _job_done(self, claim: Claim, outcome: Outcome | None) -> None:
        self.gate.finished(claim.id)
        if outcome is not None:
            self.settler.add(outcome)
        self.reporter.finished(claim, outcome)
        with self._cond:
            if outcome is None:
                self._owned.pop(claim.id, None)
                self._followers.pop(claim.id, None)
            self._busy -= 1
            self.processed += 1
            self._cond.notify_all()

    def _settled(self, outcomes: Sequence[Outcome], fenced: list[str]) -> None:
        wake: list[str] = []
        with self._cond:
            for outcome in outcomes:
                self._owned.pop(outcome.id, None)
                followers = self._followers.pop(outcome.id, None)
                if followers and outcome.state in TERMINAL_STATES and outcome.id not in fenced:
                    wake.extend(followers)
        if wake:
            try:
                self.app.backend.wake(wake)
            except Exception as exc:  # the waiting steps wake by themselves (workflows.WAIT_POLL)
                logger.warning("could not wake %d workflow step(s): %s", len(wake), exc)

    def _heartbeat(self) -> None:
        with self._cond:
            claims = list(self._owned.values())
        if claims:
            self._extend(claims)
            try:
                self.gate.renew()
            except Exception as exc:  # a slot not renewed lapses after a lease; the next beat tries again
                logger.warning("could not renew limit slots: %s", exc)
        self._announce()  # after the leases: the registry is best effort, the leases are not

    def _announce(self) -> None:
        with self._cond:
            running = list(self._owned)
        self.reporter.announce(self.app.backend, queues=self.queues, concurrency=self.concurrency,
                               started_at=self.started_at or time.time(), running=running,
                               processed=self.processed, ttl=self.settings.lease)

    def _extend(self, claims: list[Claim]) -> None:
        extended = self.app.backend.extend(claims, self.settings.lease)
        for job_id in extended.lost:
            # a job that finished while this heartbeat was on the wire was settled, not lost
            if self.executor.abandon(job_id) is not None:
                logger.warning("lease of job %s was lost (reclaimed by another worker); abandoning it", job_id)
            with self._cond:
                self._owned.pop(job_id, None)
        for job_id in extended.cancel_requested:
            self.executor.cancel(job_id)

    def _maintain(self) -> float | None:
        result = self.app.backend.maintain()
        self.reporter.reclaimed(result)
        if result.requeued or result.failed:
            logger.warning("reclaimed %d expired lease(s) (%d failed after their last attempt)",
                           result.requeued + result.failed, result.failed)
        self.scheduler.tick()
        return min(1.0, self.scheduler.seconds_to_next() + 0.001)

    # shutdown --------------------------------------------------------------------------------
    def _shutdown(self, loops: list[Looper]) -> None:
        deadline = time.monotonic() + (0 if self._force else self.grace)
        with self._cond:
            while self._busy and time.monotonic() < deadline and not self._force:
                self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
        leftovers = [claim for claim in self.executor.running_claims() if self.executor.abandon(claim.id)]
        if leftovers:
            logger.warning("putting %d unfinished job(s) back in the queue", len(leftovers))
            try:
                self.app.backend.release(leftovers)
            except Exception:
                logger.exception("could not release %d job(s); they return when their leases expire",
                                 len(leftovers))
        self.settler.stop(timeout=10)
        for loop in loops:
            loop.stop()
        self.executor.close()
        self.reporter.retire(self.app.backend)
        logger.info("worker %s stopped after %d job(s)", self.id, self.processed)

    def _on_signal(self, signum: int) -> None:
        if self._stopping.is_set():
            logger.warning("second signal: putting running jobs back now")
            self._force = True
            with self._cond:
                self._cond.notify_all()
            return
        logger.warning("received %s: finishing running jobs (up to %gs), then exiting",
                       signal.Signals(signum).name, self.grace)
        self.request_stop()
