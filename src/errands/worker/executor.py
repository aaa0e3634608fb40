"""Runs one claimed job: sync handlers on an elastic thread pool, async handlers on one event
loop, both under the job's timeout; every end, normal or not, becomes one Outcome.

The timeout frees the worker's slot at once, for sync handlers too: the watchdog decides the
outcome, then tries to stop the work (cancels the task, or raises ``JobTimeout`` inside the
thread, which stops pure-Python code; a thread stuck in C is left to finish alone and its
answer is discarded).
"""

from __future__ import annotations

import asyncio
import ctypes
import heapq
import logging
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._states import JobState
from ..backends.base import Claim, Outcome
from ..context import JobContext, _current
from ..encryption import open_arguments, seal_result
from ..errors import JobTimeout, SerializationError, UnknownJob
from ..middleware import around_run
from ..retry import decide
from ..serialization import decode_meta, encode_value
from .pool import ElasticPool

if TYPE_CHECKING:
    from ..app import Errands
    from ..jobs import JobFunction

__all__ = ["Executor", "format_error"]

logger = logging.getLogger("errands.worker")

Done = Callable[[Claim, "Outcome | None"], None]  # outcome None: abandoned, nothing to settle


@dataclass
class _Running:
    claim: Claim
    job: JobFunction[Any, Any]
    args: list[Any]
    kwargs: dict[str, Any]
    context: JobContext
    deadline: float | None = None
    thread_id: int | None = None
    task: asyncio.Task[None] | None = None
    decided: bool = False
    stop_reason: str | None = None  # "cancel" | "timeout" | "abandon"
    lock: threading.Lock = field(default_factory=threading.Lock)


def format_error(exc: BaseException, limit: int) -> str:
    """``Type: message`` and the traceback, capped at ``limit`` bytes keeping head and tail."""
    try:
        message = str(exc)
    except Exception:  # an exception whose __str__ raises must not take the worker down
        message = f"<unprintable {type(exc).__name__}>"
    try:
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:
        trace = ""
    text = f"{type(exc).__name__}: {message}\n{trace}".rstrip()
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return text.encode("utf-8", "replace").decode("utf-8")
    half = limit // 2 - 64
    head = encoded[:half].decode("utf-8", "ignore")
    tail = encoded[-half:].decode("utf-8", "ignore")
    return f"{head}\n... [{len(encoded) - 2 * half} bytes cut] ...\n{tail}"


def _check_stored_size(claim: Claim, limit: int) -> None:
    """Refuse arguments far above ``max_payload_bytes`` that reached the store past enqueue's
    check (written by hand or by another program) rather than run them (issue #7). Twice the
    limit leaves room for what sealing adds to a payload enqueue accepted."""
    size = len(claim.args) + len(claim.kwargs)
    if size > 2 * limit:
        raise SerializationError(f"stored arguments take {size} characters, far above max_payload_bytes={limit}")


class Executor:
    def __init__(self, app: Errands, on_done: Done) -> None:
        self.app = app
        self.on_done = on_done
        self.error_limit = app.settings.max_error_bytes
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._pool = ElasticPool()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._deadlines: list[tuple[float, str]] = []
        self._watch = threading.Condition()
        self._closing = False
        self._watchdog = threading.Thread(target=self._watch_deadlines, name="errands-timeouts", daemon=True)
        self._watchdog.start()

    # public ----------------------------------------------------------------------------------
    def submit(self, claim: Claim, prefix: Sequence[Any] = ()) -> None:
        """Start running ``claim``, with ``prefix`` before its own arguments (what a workflow
        step is fed); ``on_done`` is called exactly once with its outcome."""
        try:
            job = self.app.handler(claim.name)
            _check_stored_size(claim, self.app.settings.max_payload_bytes)
            args, kwargs = open_arguments(claim.args, claim.kwargs, self.app.settings)  # decrypts if sealed
            meta = decode_meta(claim.meta)
        except (UnknownJob, SerializationError) as exc:
            logger.error("job %s (%s) can't run: %s", claim.id, claim.name, exc)
            self.on_done(claim, Outcome(claim.id, claim.token, JobState.FAILED, error=f"{type(exc).__name__}: {exc}"))
            return
        if prefix:
            args = [*prefix, *args]
        context = JobContext(claim.id, claim.name, claim.queue, claim.attempts, claim.max_attempts, meta)
        running = _Running(claim, job, args, kwargs, context)
        timeout = claim.timeout if claim.timeout is not None else job.options.timeout
        with self._lock:
            self._running[claim.id] = running
        if timeout is not None:
            running.deadline = time.monotonic() + timeout
            with self._watch:
                heapq.heappush(self._deadlines, (running.deadline, claim.id))
                self._watch.notify()
        if job.is_async:
            self._event_loop().call_soon_threadsafe(self._start_task, running)
        else:
            self._pool.submit(lambda: self._run_sync(running))

    def running_claims(self) -> list[Claim]:
        with self._lock:
            return [r.claim for r in self._running.values()]

    def cancel(self, job_id: str) -> None:
        """A cancel request: async handlers are cancelled; sync ones see ``current_job().cancelled``."""
        self._interrupt(job_id, "cancel")

    def abandon(self, job_id: str) -> Claim | None:
        """Drop a job whose lease is lost or that shutdown puts back: no outcome will be sent."""
        with self._lock:
            running = self._running.get(job_id)
        # decide before interrupting: a cancelled task could otherwise report its CancelledError
        # as a failed attempt first, and the job would be retried instead of put back
        if running is None or not self._decide(running):
            return None
        self._interrupt(job_id, "abandon")
        self._forget(running)
        self.on_done(running.claim, None)
        return running.claim

    def close(self) -> None:
        self._closing = True
        with self._watch:
            self._watch.notify()
        self._pool.close()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(5)

    # running ---------------------------------------------------------------------------------
    def _run_sync(self, running: _Running) -> None:
        error: BaseException | None
        try:
            result, error = self._call_handler(running)
        except BaseException as exc:  # an injected JobTimeout landing between the handler and _disarm
            result, error = None, exc
        try:
            self._disarm(running)
        except JobTimeout:
            pass
        # only now, with no timeout injection possible, format errors and encode the result
        outcome = self._failure(running, error) if error is not None else self._success(running, result)
        self._finish(running, outcome)

    def _call_handler(self, running: _Running) -> tuple[Any, BaseException | None]:
        with running.lock:
            running.thread_id = threading.get_ident()
        token = _current.set(running.context)
        try:
            with around_run(self.app.middleware, running.context):  # on this thread: its spans nest
                return running.job.func(*running.args, **running.kwargs), None
        except BaseException as exc:  # SystemExit, KeyboardInterrupt too: that job fails, the worker goes on
            return None, exc
        finally:
            _current.reset(token)

    def _start_task(self, running: _Running) -> None:
        assert self._loop is not None
        running.task = self._loop.create_task(self._run_async(running))
        if running.stop_reason is not None:  # asked to stop before the task existed
            running.task.cancel()

    async def _run_async(self, running: _Running) -> None:
        token = _current.set(running.context)
        try:
            with around_run(self.app.middleware, running.context):  # in this task: its spans nest
                result = await running.job.func(*running.args, **running.kwargs)
            outcome = self._success(running, result)
        except asyncio.CancelledError as exc:
            if running.stop_reason == "cancel":
                outcome = Outcome(running.claim.id, running.claim.token, JobState.CANCELLED,
                                  error="cancelled while running")
            else:  # timeout/abandon were decided already; a stray CancelledError is a failure
                outcome = self._failure(running, exc)
        except BaseException as exc:
            outcome = self._failure(running, exc)
        finally:
            _current.reset(token)
        self._finish(running, outcome)

    def _success(self, running: _Running, result: Any) -> Outcome:
        claim = running.claim
        if running.stop_reason == "cancel":  # the handler saw current_job().cancelled and returned early
            return Outcome(claim.id, claim.token, JobState.CANCELLED, error="cancelled while running")
        try:
            encoded = seal_result(encode_value(result, "result"), claim.args, self.app.settings)
        except SerializationError as exc:
            return self._failure(running, exc)
        return Outcome(claim.id, claim.token, JobState.SUCCEEDED, result=encoded)

    def _failure(self, running: _Running, exc: BaseException) -> Outcome:
        claim = running.claim
        text = format_error(exc, self.error_limit)
        if running.stop_reason == "cancel":
            return Outcome(claim.id, claim.token, JobState.CANCELLED, error=text)
        return decide(claim, exc, text, running.job.options.backoff)

    def _finish(self, running: _Running, outcome: Outcome) -> None:
        if not self._decide(running):
            return  # the watchdog or a shutdown got there first; this late answer is dropped
        self._forget(running)
        self.on_done(running.claim, outcome)

    # stopping work ---------------------------------------------------------------------------
    def _decide(self, running: _Running) -> bool:
        with running.lock:
            if running.decided:
                return False
            running.decided = True
            return True

    def _forget(self, running: _Running) -> None:
        with self._lock:
            self._running.pop(running.claim.id, None)

    def _interrupt(self, job_id: str, reason: str) -> _Running | None:
        with self._lock:
            running = self._running.get(job_id)
        if running is None:
            return None
        running.stop_reason = running.stop_reason or reason
        running.context._cancelled = True
        task = running.task
        if task is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(task.cancel)
        return running

    def _disarm(self, running: _Running) -> None:
        with running.lock:
            thread_id, running.thread_id = running.thread_id, None
            injected = running.stop_reason == "timeout"
        if injected and thread_id is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)

    def _time_out(self, running: _Running) -> None:
        claim = running.claim
        timeout = running.job.options.timeout if claim.timeout is None else claim.timeout
        if not self._decide(running):
            return
        self._interrupt(claim.id, "timeout")
        error = JobTimeout(f"job {claim.name} ({claim.id}) ran past its timeout of {timeout:g}s")
        outcome = decide(claim, error, format_error(error, self.error_limit), running.job.options.backoff)
        with running.lock:
            if running.thread_id is not None:  # stop pure-Python code; C code runs on, discarded
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(running.thread_id),
                                                           ctypes.py_object(JobTimeout))
        self._forget(running)
        logger.warning("job %s (%s) timed out after %gs", claim.id, claim.name, timeout)
        self.on_done(claim, outcome)

    def _watch_deadlines(self) -> None:
        with self._watch:
            while not self._closing:
                now = time.monotonic()
                while self._deadlines and self._deadlines[0][0] <= now:
                    _, job_id = heapq.heappop(self._deadlines)
                    with self._lock:
                        running = self._running.get(job_id)
                    if running is not None:
                        self._watch.release()
                        try:
                            self._time_out(running)
                        finally:
                            self._watch.acquire()
                wait = self._deadlines[0][0] - now if self._deadlines else None
                self._watch.wait(wait)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            with self._lock:
                if self._loop is None:
                    loop = asyncio.new_event_loop()
                    thread = threading.Thread(target=loop.run_forever, name="errands-asyncio", daemon=True)
                    thread.start()
                    self._loop, self._loop_thread = loop, thread
        return self._loop
