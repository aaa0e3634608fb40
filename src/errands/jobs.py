"""Job states and the read-only view of a stored job (``JobInfo``)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from ._states import ACTIVE_STATES, TERMINAL_STATES, JobState
from .config import MAX_UNIQUE_KEY, check_queue_name
from .encryption import check_available, is_sealed, reveal
from .errors import ConfigurationError, SerializationError
from .limits import Limits, seconds
from .retry import Backoff, Exponential, as_backoff
from .serialization import check_text, decode_arguments, decode_meta, decode_value, encode_meta

if TYPE_CHECKING:
    from .app import Errands
    from .backends.base import JobRecord
    from .config import Settings
    from .workflows import Progress, Signature


__all__ = ["ACTIVE_STATES", "TERMINAL_STATES", "JobFunction", "JobHandle", "JobInfo", "JobOptions", "JobState"]


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A job as stored. ``args``/``kwargs``/``result`` are decoded JSON; ``error`` holds the
    last attempt's error with its traceback. A record that does not decode shows ``args=[]``
    and the decode error in ``error``."""

    id: str
    name: str
    queue: str
    args: list[Any]
    kwargs: dict[str, Any]
    state: JobState
    attempts: int
    max_attempts: int
    priority: int
    run_at: datetime | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    result: Any
    error: str | None
    unique_key: str | None = None
    timeout: float | None = None
    worker_id: str | None = None
    cancel_requested: bool = False
    encrypted: bool = False  # stored as ciphertext: args/result redacted unless decrypted
    meta: dict[str, Any] = field(default_factory=dict)
    progress: Progress | None = None  # a workflow step: where the jobs it waits on stand (get_job)

    @classmethod
    def from_record(cls, record: JobRecord, decrypt: Settings | None = None) -> JobInfo:
        """Decode a stored record for people and code to read; a corrupt field shows as an error,
        it never raises. Encrypted arguments and result show as ``"<encrypted>"`` unless
        ``decrypt`` gives the settings holding the keys (then a failure to decrypt raises)."""
        encrypted = is_sealed(record.args)
        if encrypted:
            record = reveal(record, decrypt)
        error = record.error
        try:
            args, kwargs = decode_arguments(record.args, record.kwargs)
        except SerializationError as exc:
            args, kwargs = [], {}
            error = error or f"SerializationError: {exc}"
        try:
            meta = decode_meta(record.meta)
        except SerializationError as exc:
            meta = {}
            error = error or f"SerializationError: {exc}"
        try:
            result = decode_value(record.result)
        except SerializationError:
            result = record.result
        try:
            state: Any = JobState(record.state)
        except ValueError:
            state = record.state
        return cls(
            id=record.id, name=record.name, queue=record.queue, args=args, kwargs=kwargs, state=state,
            attempts=record.attempts, max_attempts=record.max_attempts, priority=record.priority,
            run_at=_datetime(record.run_at), created_at=_datetime(record.created_at),
            started_at=_datetime(record.started_at), finished_at=_datetime(record.finished_at),
            result=result, error=error, unique_key=record.unique_key, timeout=record.timeout,
            worker_id=record.worker_id, cancel_requested=bool(record.cancel_requested),
            encrypted=encrypted, meta=meta,
        )


def _datetime(value: float | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(float(value), timezone.utc)
    except (ValueError, OverflowError, OSError, TypeError):
        return None


# --- what @app.job returns ---------------------------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")

MAX_RETRIES = 1000
PRIORITY_RANGE = (-100, 100)
MAX_TIMEOUT = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class JobOptions:
    """Per-job options. ``retries`` is how many times a failed attempt is retried, so a job runs
    at most ``retries + 1`` times. Higher ``priority`` runs first (-100..100).
    ``encrypt`` stores the arguments and the result encrypted (``errands.encryption``). ``meta``
    is a JSON object stored with each job, in clear (``JobInfo.meta``, ``current_job().meta``);
    its size counts against ``max_payload_bytes``."""

    queue: str = "default"
    retries: int = 5
    timeout: float | None = None
    priority: int = 0
    unique_key: str | None = None
    backoff: Backoff = field(default_factory=Exponential)
    encrypt: bool = False
    meta: Mapping[str, Any] | None = field(default=None, hash=False)
    # throttle: a job with the same unique key (default: name and arguments) created within this
    # many seconds is returned instead of a new one, even once it finished
    unique_for: float | None = None
    # the last enqueue within this many seconds wins: a waiting job with the same unique key takes
    # the new arguments and its start moves to now + debounce
    debounce: float | None = None
    limits: Limits | None = field(default=None, hash=False, compare=False)  # enforced by workers

    def __post_init__(self) -> None:
        check_queue_name(self.queue)
        object.__setattr__(self, "unique_for", seconds(self.unique_for, "unique_for"))
        object.__setattr__(self, "debounce", seconds(self.debounce, "debounce"))
        if self.unique_for is not None and self.debounce is not None:
            raise ConfigurationError("unique_for and debounce don't mix: choose a throttle or a debounce")
        if not isinstance(self.encrypt, bool):
            raise ConfigurationError(f"encrypt must be True or False, got {self.encrypt!r}")
        if self.encrypt:
            check_available()  # a missing extra fails where the job is defined
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or not (
            0 <= self.retries <= MAX_RETRIES
        ):
            raise ConfigurationError(f"retries must be an int from 0 to {MAX_RETRIES}, got {self.retries!r}")
        if self.timeout is not None and (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, (int, float))
            or not (0 < self.timeout <= MAX_TIMEOUT)
        ):
            raise ConfigurationError(f"timeout must be seconds > 0 and <= {MAX_TIMEOUT:g}, got {self.timeout!r}")
        low, high = PRIORITY_RANGE
        if isinstance(self.priority, bool) or not isinstance(self.priority, int) or not (
            low <= self.priority <= high
        ):
            raise ConfigurationError(f"priority must be an int from {low} to {high}, got {self.priority!r}")
        if self.unique_key is not None and (
            not isinstance(self.unique_key, str) or not 0 < len(self.unique_key) <= MAX_UNIQUE_KEY
        ):
            raise ConfigurationError(f"unique_key must be a str of 1-{MAX_UNIQUE_KEY} characters")
        if self.unique_key is not None:
            try:  # the same answer on every backend: PostgreSQL can't store NUL, UTF-8 no lone surrogates
                check_text(self.unique_key, "unique_key")
            except SerializationError as exc:
                raise ConfigurationError(f"invalid unique_key: {exc}") from None
        if self.meta is not None:
            encode_meta(self.meta)  # refuse what JSON can't carry now, not at each enqueue
            object.__setattr__(self, "meta", dict(self.meta))  # a copy: the caller's dict may change

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def merge(self, **changes: Any) -> JobOptions:
        unknown = set(changes) - {f.name for f in fields(self)} | ({"limits"} & set(changes))
        if unknown:
            raise ConfigurationError(f"unknown job option(s): {', '.join(sorted(unknown))}")
        if "backoff" in changes:
            changes["backoff"] = as_backoff(changes["backoff"])
        if isinstance(changes.get("timeout"), timedelta):
            changes["timeout"] = changes["timeout"].total_seconds()
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class JobHandle:
    """What an enqueue returns. ``created`` is False when a unique key (or the same id) matched
    an existing job, whose id this then is."""

    id: str
    created: bool = True
    app: Errands | None = field(default=None, repr=False, compare=False)

    def info(self) -> JobInfo | None:
        return self._app().get_job(self.id)

    def wait(self, timeout: float = 30.0, poll: float = 0.02) -> JobInfo:
        """Block until the job is finished (succeeded, failed or cancelled) and return it.
        Raises ``TimeoutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.info()
            if info is not None and info.state in TERMINAL_STATES:
                return info
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} not finished after {timeout}s (state: "
                                   f"{info.state if info else 'missing'})")
            time.sleep(poll)

    def _app(self) -> Errands:
        if self.app is None:
            raise ConfigurationError("this handle is not bound to an Errands app")
        return self.app


class JobFunction(Generic[P, R]):
    """A registered job: call it to run inline, or ``perform*`` it to run on a worker.

    >>> @app.job(queue="mail", retries=3)
    ... def send_welcome(user_id: int) -> None: ...
    >>> send_welcome.perform(42).id
    """

    def __init__(self, app: Errands, func: Callable[P, R], name: str, options: JobOptions) -> None:
        self.app = app
        self.func = func
        self.name = name
        self.options = options
        self.is_async = inspect.iscoroutinefunction(func)
        functools.update_wrapper(self, func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<JobFunction {self.name} queue={self.options.queue!r}>"

    def with_options(self, **options: Any) -> JobFunction[P, R]:
        """A copy that enqueues with other options: ``queue``, ``priority``, ``unique_key``,
        ``unique_for``, ``debounce``, ``retries``, ``timeout``, ``backoff``, ``encrypt``, ``meta``
        (a dict stored with the job, replacing any given before; what JSON can't carry is a
        ``SerializationError``). Limits belong to the registered handler, not to one enqueue.

        >>> send_welcome.with_options(queue="mail", meta={"tenant": "acme"}).perform(42)
        """
        return JobFunction(self.app, self.func, self.name, self.options.merge(**options))

    def perform(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle:
        return self.app._enqueue(self, [(args, kwargs)])[0]

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """This job with these arguments, not yet enqueued: a step of ``app.chain`` or ``app.group``."""
        from .workflows import Signature

        return Signature(self, args, kwargs)

    def perform_in(self, delay: float | timedelta, *args: P.args, **kwargs: P.kwargs) -> JobHandle:
        return self.app._enqueue(self, [(args, kwargs)], delay=delay)[0]

    def perform_at(self, when: datetime, *args: P.args, **kwargs: P.kwargs) -> JobHandle:
        return self.app._enqueue(self, [(args, kwargs)], at=when)[0]

    def perform_many(self, calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]) -> list[JobHandle]:
        """Enqueue many calls, each ``(args, kwargs)``, in one round trip: all or none."""
        return self.app._enqueue(self, [(tuple(a), dict(k)) for a, k in calls])

    async def aperform(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle:
        handles = await asyncio.to_thread(self.app._enqueue, self, [(args, kwargs)])
        return handles[0]
