"""Helpers for your own test suite: run jobs inline, assert what was enqueued, freeze time.

Run the jobs a test enqueued, in the test's own thread, then look at the outcome::

    from errands import Errands
    from errands.testing import FakeClock, assert_enqueued, drain, eager

    clock = FakeClock()
    app = Errands("memory://", clock=clock)

    @app.job()
    def send_welcome(user_id: int) -> None: ...

    def test_signup_sends_a_welcome() -> None:
        signup(42)                              # your code: calls send_welcome.perform(42)
        assert_enqueued(send_welcome, 42)
        assert drain(app).succeeded == 1

    def test_reminder_waits_a_day() -> None:
        remind.perform_in(timedelta(days=1), 42)
        assert drain(app).total == 0            # not due yet
        clock.advance(days=1)
        assert drain(app).succeeded == 1

    def test_inline() -> None:
        with eager(app):
            send_welcome.perform(42)            # ran before perform returned; errors propagate

Everything here goes through the backend and the worker's own rules (argument and result
encoding, retries, unique keys, ``current_job()``), so a test that passes here fails where
production would. ``FakeClock`` works with ``memory://`` only: the server backends keep their
server's clock. ``drain`` and ``eager`` work on any backend.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import threading
import time
import uuid
import weakref
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

from ._inline import run_claim
from ._states import JobState
from .errors import ConfigurationError, Retry, SerializationError
from .jobs import JobFunction, JobHandle, JobInfo
from .serialization import decode_arguments, encode_arguments
from .worker.reporting import Reporter

if TYPE_CHECKING:
    from .app import Errands

__all__ = ["DrainResult", "FakeClock", "assert_enqueued", "drain", "eager", "enqueued"]

P = ParamSpec("P")
R = TypeVar("R")


# --- time ------------------------------------------------------------------------------------------
class FakeClock:
    """A clock that stands still until told to move: inject it with ``Errands("memory://", clock=clock)``.

    Leases, ``perform_in``/``perform_at`` delays, retry backoff and periodic ticks of that app are
    all read from it, so a test moves time instead of sleeping.

    >>> clock = FakeClock(datetime(2030, 1, 1, tzinfo=timezone.utc))
    >>> app = Errands("memory://", clock=clock)
    >>> clock.advance(minutes=5)           # or clock.advance(300), clock.advance(timedelta(minutes=5))
    >>> clock.set(datetime(2030, 1, 2, tzinfo=timezone.utc))

    Time only moves forward, as a real clock's does for the jobs it decides. A worker already
    waiting notices an advance at its next poll (``poll_interval``); ``drain`` notices at once.
    """

    def __init__(self, start: datetime | float | None = None) -> None:
        self._now = _epoch(start) if start is not None else time.time()
        self.start = self._now
        self._lock = threading.Lock()

    def now(self) -> float:
        """Epoch seconds, as ``time.time()`` gives them."""
        with self._lock:
            return self._now

    @property
    def now_datetime(self) -> datetime:
        """The current fake time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.now(), timezone.utc)

    def advance(self, by: float | timedelta = 0.0, /, *, days: float = 0, hours: float = 0,
                minutes: float = 0, seconds: float = 0) -> float:
        """Move forward by ``by`` (seconds or a timedelta) plus the keyword parts; returns the new now."""
        step = by.total_seconds() if isinstance(by, timedelta) else by
        if isinstance(step, bool) or not isinstance(step, (int, float)):
            raise ConfigurationError(f"advance() takes seconds or a timedelta, got {by!r}")
        step += timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds).total_seconds()
        if not step >= 0:
            raise ConfigurationError(f"a FakeClock only moves forward, not by {step!r}s")
        with self._lock:
            self._now += step
            return self._now

    def set(self, when: datetime | float) -> None:
        """Jump to ``when`` (an aware datetime or epoch seconds), which must not be in the past."""
        target = _epoch(when)
        with self._lock:
            if target < self._now:
                raise ConfigurationError(f"a FakeClock only moves forward: {when!r} is before its now")
            self._now = target

    def __repr__(self) -> str:
        return f"<FakeClock {self.now_datetime.isoformat()}>"


def _epoch(value: datetime | float) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigurationError(f"FakeClock needs an aware datetime (with tzinfo), got naive {value!r}")
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"FakeClock takes an aware datetime or epoch seconds, got {value!r}")
    return float(value)


# --- running jobs ----------------------------------------------------------------------------------
@dataclass
class DrainResult:
    """What ``drain`` did: attempts by outcome, the errors of the attempts that raised, and why it
    stopped (``"idle"``: nothing runnable was left; ``"max_jobs"``; ``"timeout"``).

    ``retried`` counts attempts that failed and were scheduled again; with a ``FakeClock`` they
    run in a later ``drain`` once the clock passes their backoff.
    """

    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # job id -> the error text with traceback
    stopped: Literal["idle", "max_jobs", "timeout"] = "idle"

    @property
    def total(self) -> int:
        """Attempts run."""
        return self.succeeded + self.failed + self.retried + self.cancelled

    @property
    def counts(self) -> dict[str, int]:
        return {"succeeded": self.succeeded, "failed": self.failed, "retried": self.retried,
                "cancelled": self.cancelled}


_OUTCOME_FIELDS = {
    JobState.SUCCEEDED: "succeeded", JobState.FAILED: "failed", JobState.CANCELLED: "cancelled",
    JobState.SCHEDULED: "retried", JobState.AVAILABLE: "retried",  # available: a Retry(in_=0)
}


def drain(app: Errands, queues: Sequence[str] | None = None, *, max_jobs: int = 1000, timeout: float = 60.0,
          propagate: bool = False) -> DrainResult:
    """Run every runnable job of ``queues`` (None: all) here, in this thread, one at a time, until
    none is left; return what happened.

    Jobs that the drained jobs enqueue run too, and so do jobs that became due (a ``perform_in``
    delay or a retry's backoff the ``FakeClock`` has passed) and the latest due tick of each
    periodic job (as a worker's scheduler fires it). Each job is claimed, run and settled
    through the backend with the worker's rules, so its record ends as it would on a worker.

    Args:
        max_jobs: stop after this many attempts (a job that always enqueues itself ends here).
        timeout: stop claiming after this many seconds; checked between jobs, since an inline
            handler can't be interrupted (nor is a job's own ``timeout`` enforced).
        propagate: re-raise the first exception a handler raises (after its attempt is
            recorded), except ``Retry``, which asks for a later run and is no error.

    >>> signup(42)
    >>> result = drain(app)
    >>> assert result.succeeded == 1, result.errors
    """
    if isinstance(max_jobs, bool) or not isinstance(max_jobs, int) or max_jobs < 0:
        raise ConfigurationError(f"max_jobs must be an int >= 0, got {max_jobs!r}")
    backend, result = app.backend, DrainResult()
    worker_id = f"drain:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    reporter = Reporter(worker_id, app.events)
    deadline = time.monotonic() + timeout
    queue_names = list(queues) if queues is not None else None
    while True:
        if result.total >= max_jobs:
            result.stopped = "max_jobs"
            return result
        if time.monotonic() >= deadline:
            result.stopped = "timeout"
            return result
        _fire_periodic(app)
        backend.maintain()  # promotes due jobs and reclaims expired leases, as a worker does
        claims = backend.claim(queue_names, 1, worker_id=worker_id, lease=app.settings.lease)
        if not claims:
            return result
        try:
            outcome, error = run_claim(app, claims[0], reporter)
        except BaseException:  # Ctrl-C in the test run: the job goes back, not counted
            backend.release(claims)
            raise
        backend.settle([outcome])
        field_name = _OUTCOME_FIELDS.get(outcome.state, "failed")
        setattr(result, field_name, getattr(result, field_name) + 1)
        if outcome.error is not None and outcome.state is not JobState.SUCCEEDED:
            result.errors[outcome.id] = outcome.error
        if propagate and error is not None and not isinstance(error, Retry):
            raise error


# the scheduler time each app's periodic jobs were last fired up to, as a worker's Scheduler keeps
_periodic_fired: weakref.WeakKeyDictionary[Errands, float] = weakref.WeakKeyDictionary()


def _fire_periodic(app: Errands) -> None:
    """Enqueue the latest tick of each periodic job due since the last drain (or since the
    FakeClock's start), with the tick's own id, so a tick is never enqueued twice."""
    if not app.periodics:
        return
    now = app.backend.now()
    clock = app.settings.clock
    since = _periodic_fired.get(app, clock.start if isinstance(clock, FakeClock) else now)
    _periodic_fired[app] = now
    due = [spec.new_job(ticks[-1]) for spec in app.periodics if (ticks := spec.ticks(since, now))]
    if due:
        app.backend.enqueue(due)


@contextlib.contextmanager
def eager(app: Errands, *, propagate: bool = True) -> Generator[None, None, None]:
    """Inside the block every ``perform*`` of ``app`` runs its job at once, inline, before returning.

    The job is still enqueued first, so its arguments go through the JSON codec (a ``datetime``
    argument raises ``SerializationError`` as in production) and its record is real:
    ``handle.info()`` shows its state and result. ``perform_in``/``perform_at`` run at once too.
    With ``propagate`` (the default) an exception the handler raises reaches the caller of
    ``perform``, after its attempt is recorded (``Retry`` excepted: the job stays scheduled).

    >>> with eager(app):
    ...     handle = resize.perform("img-1", width=64)
    >>> handle.info().result
    {'image': 'img-1', 'width': 64}

    Jobs already waiting in the same queue run too, in claim order (it drains that queue). Inside
    ``app.transaction(conn)`` jobs are only enqueued (a worker can't see them before your
    commit): ``drain`` after it. The switch is on the ``app`` object, so it holds for every
    thread of the test (a web test client's too); a worker running for the same app at the same
    time may take the job first, and then ``perform`` returns before it has finished.
    """
    enqueue = app._enqueue  # the facade's one enqueue path: every perform* form goes through it
    shadowed = app.__dict__.get("_enqueue")  # an outer eager() block's, when nested

    def enqueue_and_run(job: JobFunction[Any, Any], calls: Sequence[tuple[Sequence[Any], dict[str, Any]]],
                        *, delay: float | timedelta = 0.0, at: datetime | None = None,
                        job_id: str | None = None) -> list[JobHandle]:
        handles = enqueue(job, calls, job_id=job_id)  # delay and at dropped: eager means now
        if handles and app._connection.get() is None:
            # one drain of the job's queue: it returns once nothing there is runnable, so the
            # job has run (or waits for a Retry's delay, or is another worker's right now)
            drain(app, [job.options.queue], propagate=propagate)
        return handles

    app.__dict__["_enqueue"] = enqueue_and_run  # an instance attribute shadows the method
    try:
        yield
    finally:
        if shadowed is None:
            app.__dict__.pop("_enqueue", None)
        else:
            app.__dict__["_enqueue"] = shadowed


# --- what was enqueued -----------------------------------------------------------------------------
def enqueued(app: Errands, name: str | JobFunction[Any, Any] | None = None,
             queue: str | None = None) -> list[JobInfo]:
    """Jobs waiting to run (``available`` or ``scheduled``), oldest first; ``name`` may be the
    job function itself.

    >>> send_welcome.perform(42)
    >>> [job.args for job in enqueued(app, send_welcome)]
    [[42]]
    """
    job_name = name.name if isinstance(name, JobFunction) else name
    jobs = [info for state in (JobState.AVAILABLE, JobState.SCHEDULED)
            for info in app.list_jobs(state=state, queue=queue, name=job_name, limit=10_000,
                                      decrypt=bool(app.settings.encryption_keys))]  # encrypt=True jobs too
    return sorted(jobs, key=lambda info: info.id)  # ids sort by creation time


def assert_enqueued(job: JobFunction[P, R], /, *args: P.args, **kwargs: P.kwargs) -> JobInfo:
    """Assert that a call of ``job`` with these arguments waits to run, and return that job.

    Arguments compare as the handler sees them: after the JSON round trip and bound to its
    signature, so ``f(42)``, ``f(user_id=42)`` and ``f(42, width=256)`` (a default) match
    each other. Type checkers check the arguments against the handler's signature.

    >>> send_welcome.perform(42)
    >>> assert_enqueued(send_welcome, 42).queue
    'default'
    """
    waiting = enqueued(job.app, job.name)
    try:
        encoded = encode_arguments(args, kwargs, job.app.settings.max_payload_bytes)
        expected = _bound(job, *decode_arguments(*encoded))
    except SerializationError as exc:
        raise AssertionError(f"{job.name} can't have been enqueued with these arguments: {exc}") from None
    for info in waiting:
        if _bound(job, info.args, info.kwargs) == expected:
            return info
    seen = "\n".join(f"  {info.id} args={info.args!r} kwargs={info.kwargs!r} ({info.state.value})"
                     for info in waiting) or "  (none)"
    raise AssertionError(f"no {job.name} job waits with args={list(args)!r} kwargs={kwargs!r}; "
                         f"waiting {job.name} jobs:\n{seen}")


def _bound(job: JobFunction[Any, Any], args: list[Any], kwargs: dict[str, Any]) -> object:
    """The call as the handler would receive it (defaults applied); the raw lists when the
    arguments don't fit the signature (then only an identical call matches)."""
    try:
        bound = inspect.signature(job.func).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return (args, kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)
