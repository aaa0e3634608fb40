"""The ``Errands`` facade: handler registry, enqueue API and job queries.

It builds records and calls the backend; it never speaks SQL or Redis. The singular
``perform`` forms are thin wrappers over one batch path (``_enqueue``).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from ._admin import Admin
from ._ids import new_id
from .backends import open_backend, redact_url
from .backends.base import Backend, Capability, Enqueued, NewJob
from .config import Settings, check_job_name, check_queue_name
from .encryption import seal_arguments
from .errors import ConfigurationError, NotSupported, SerializationError, UnknownJob
from .events import EventBus, JobEnqueued
from .jobs import JobFunction, JobHandle, JobOptions
from .limits import Limits
from .middleware import Enqueue, Middleware, around_enqueue
from .retry import BackoffLike, as_backoff
from .scheduler import PeriodicSpec
from .serialization import encode_arguments, encode_meta, payload_size
from .spool import Spool

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from .backends.base import WorkerInfo
    from .dashboard.security import AuthHook
    from .metrics import Metrics
    from .worker import Worker

__all__ = ["Errands"]

logger = logging.getLogger("errands")

P = ParamSpec("P")
R = TypeVar("R")
MAX_DELAY = 100 * 365.25 * 86400.0  # a run_at further out is a bug in the caller, not a plan


class Errands(Admin):
    """A job application: where jobs are stored (``url``) and which handlers exist.

    >>> app = Errands("sqlite:///jobs.db")
    >>> @app.job(retries=3)
    ... def send_welcome(user_id: int) -> None: ...
    >>> send_welcome.perform(42)
    """

    def __init__(
        self, url: str | None = None, *, lease: float | None = None, store: str | None = None,
        middleware: Iterable[Middleware] = (), **options: Any
    ) -> None:
        self.settings = Settings.build(url, lease=lease, store=store, **options)
        self.middleware: list[Middleware] = []  # hooks around enqueue and each run (errands.middleware)
        for item in middleware:
            self.add_middleware(item)
        self.registry: dict[str, JobFunction[Any, Any]] = {}
        self.periodics: list[PeriodicSpec] = []
        self.queue_limits: dict[str, Limits] = {}
        self._backend: Backend | None = None
        self._backend_lock = threading.Lock()
        self._connection: contextvars.ContextVar[object | None] = contextvars.ContextVar(
            f"errands_connection_{id(self)}", default=None
        )
        self._background: Worker | None = None
        self.events = EventBus()  # what happens in this process: metrics and logs listen here
        self._metrics: Metrics | None = None
        self._spool = Spool(self.settings.spool, lambda: self.backend) if self.settings.spool else None

    def __repr__(self) -> str:
        return f"<Errands {redact_url(self.settings.url)}>"

    def add_middleware(self, middleware: Middleware) -> None:
        """Run ``middleware``'s hooks around every enqueue and every attempt, inside those added
        before it (``errands.middleware``; tracing: ``errands.contrib.opentelemetry``)."""
        if not isinstance(middleware, Middleware):
            raise ConfigurationError(f"middleware must subclass errands.middleware.Middleware, got {middleware!r}")
        self.middleware = [*self.middleware, middleware]  # a new list: worker threads may be walking the old

    # backend ---------------------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        """The backend, opened on first use (so defining jobs touches no server)."""
        backend = self._backend
        if backend is None:
            with self._backend_lock:
                if self._backend is None:
                    if self._spool is not None:
                        self._spool.depth()  # first use: deliver what an earlier run spooled
                    candidate = open_backend(self.settings.url, self.settings)
                    candidate.open()
                    self._backend = candidate
                backend = self._backend
        return backend

    def close(self) -> None:
        """Stop a background worker and close the backend's connections."""
        if self._background is not None:
            self.stop()
        if self._spool is not None:
            self._spool.close()
        with self._backend_lock:
            if self._backend is not None:
                self._backend.close()
                self._backend = None

    # registry --------------------------------------------------------------------------------
    @overload
    def job(self, func: Callable[P, R], /) -> JobFunction[P, R]: ...
    @overload
    def job(
        self, *, name: str | None = None, queue: str = "default", retries: int = 5,
        timeout: float | timedelta | None = None, priority: int = 0, backoff: BackoffLike = None,
        encrypt: bool = False, concurrency: int | None = None, rate_limit: str | None = None,
        limit_key: Callable[..., Any] | None = None, unique_for: float | timedelta | None = None,
        debounce: float | timedelta | None = None,
    ) -> Callable[[Callable[P, R]], JobFunction[P, R]]: ...

    def job(  # type: ignore[misc]  # mypy rejects the optional positional-only func beside the keyword-only overload
        self,
        func: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        retries: int = 5,
        timeout: float | timedelta | None = None,
        priority: int = 0,
        backoff: BackoffLike = None,
        encrypt: bool = False,
        concurrency: int | None = None,
        rate_limit: str | None = None,
        limit_key: Callable[..., Any] | None = None,
        unique_for: float | timedelta | None = None,
        debounce: float | timedelta | None = None,
    ) -> Any:
        """Register a handler. Every option is checked here, so a bad one fails at import time.

        ``concurrency`` (at most that many running across every worker) and ``rate_limit``
        (``"100/m"``: starts per period, shared by every worker) hold per job, or per value of
        ``limit_key(*args, **kwargs)`` when given (``errands.limits``). ``unique_for`` and
        ``debounce`` (seconds or a timedelta) throttle or debounce enqueues with the same unique
        key, by default the job's name and arguments."""
        if isinstance(timeout, timedelta):
            timeout = timeout.total_seconds()
        options = JobOptions(queue=queue, retries=retries, timeout=timeout, priority=priority,
                             backoff=as_backoff(backoff), encrypt=encrypt, unique_for=unique_for,  # type: ignore[arg-type]
                             debounce=debounce, limits=Limits.build(concurrency, rate_limit, limit_key))  # type: ignore[arg-type]

        def register(function: Callable[..., Any]) -> JobFunction[Any, Any]:
            job_name = check_job_name(name or function.__name__)
            existing = self.registry.get(job_name)
            if existing is not None and existing.func is not function:
                raise ConfigurationError(
                    f"two handlers registered under the job name {job_name!r} "
                    f"({existing.func.__module__}.{existing.func.__qualname__} and "
                    f"{function.__module__}.{function.__qualname__}); pass name= to one of them"
                )
            job_function: JobFunction[Any, Any] = JobFunction(self, function, job_name, options)
            self.registry[job_name] = job_function
            return job_function

        return register(func) if func is not None else register

    def periodic(
        self, *, cron: str | None = None, every: float | timedelta | None = None, **job_options: Any
    ) -> Callable[[Callable[P, R]], JobFunction[P, R]]:
        """Register a handler that a worker enqueues on a schedule: ``cron`` (5 fields, UTC) or
        ``every`` (seconds or a timedelta, aligned to the epoch). Each tick is enqueued once,
        however many workers run."""
        PeriodicSpec.check(cron=cron, every=every)  # a bad schedule fails before anything is registered

        def register(function: Callable[P, R]) -> JobFunction[P, R]:
            job_function = self.job(**job_options)(function)
            self.periodics.append(PeriodicSpec.create(job_function, cron=cron, every=every))
            return job_function

        return register

    def limit_queue(self, queue: str, *, concurrency: int | None = None, rate_limit: str | None = None) -> None:
        """Limit every job of ``queue`` together, across all workers: at most ``concurrency``
        running, at most ``rate_limit`` (``"10/s"``) starting; ``None`` for both lifts the limits.
        Workers enforce what their app declares, so declare it where the handlers are."""
        name, limits = check_queue_name(queue), Limits.build(concurrency, rate_limit)
        if limits is None:
            self.queue_limits.pop(name, None)
        else:
            self.queue_limits[name] = limits

    def handler(self, name: str) -> JobFunction[Any, Any]:
        try:
            return self.registry[name]
        except KeyError:
            raise UnknownJob(name) from None

    # enqueue ---------------------------------------------------------------------------------
    def perform(self, name: str, /, *args: Any, **kwargs: Any) -> JobHandle:
        """Enqueue the job registered under ``name`` now."""
        return self._enqueue(self.handler(name), [(args, kwargs)])[0]

    def perform_in(self, delay: float | timedelta, name: str, /, *args: Any, **kwargs: Any) -> JobHandle:
        """Enqueue the job registered under ``name`` to run ``delay`` (seconds or a timedelta) from now."""
        return self._enqueue(self.handler(name), [(args, kwargs)], delay=delay)[0]

    def perform_at(self, when: datetime, name: str, /, *args: Any, **kwargs: Any) -> JobHandle:
        """Enqueue the job registered under ``name`` to run at ``when`` (an aware datetime)."""
        return self._enqueue(self.handler(name), [(args, kwargs)], at=when)[0]

    def _enqueue(
        self,
        job: JobFunction[Any, Any],
        calls: Sequence[tuple[Sequence[Any], dict[str, Any]]],
        *,
        delay: float | timedelta = 0.0,
        at: datetime | None = None,
        job_id: str | None = None,
    ) -> list[JobHandle]:
        if not calls:
            return []
        run_at = _checked_run_at(at) if at is not None else None
        seconds = _checked_delay(delay) if at is None else 0.0
        if not self.middleware:
            return self._store(job, calls, job.options.meta, run_at, seconds, job_id)
        enqueue = Enqueue(job.name, job.options.queue, len(calls), dict(job.options.meta or {}))
        with around_enqueue(self.middleware, enqueue):  # a hook may add meta (a trace context)
            handles = self._store(job, calls, enqueue.meta, run_at, seconds, job_id)
            enqueue.ids = [handle.id for handle in handles]
        return handles

    def _store(
        self, job: JobFunction[Any, Any], calls: Sequence[tuple[Sequence[Any], dict[str, Any]]],
        meta_entries: Mapping[str, Any] | None, run_at: float | None, seconds: float, job_id: str | None,
    ) -> list[JobHandle]:
        new_jobs = self._new_jobs(job, calls, meta_entries, run_at, seconds, job_id)
        return [JobHandle(r.id, r.created, self) for r in self._submit(new_jobs)]

    def _new_jobs(
        self, job: JobFunction[Any, Any], calls: Sequence[tuple[Sequence[Any], dict[str, Any]]],
        meta_entries: Mapping[str, Any] | None, run_at: float | None, seconds: float, job_id: str | None,
    ) -> list[NewJob]:
        """The records to store for ``calls`` of ``job``: arguments checked, sized and sealed."""
        options, limit = job.options, self.settings.max_payload_bytes
        meta = encode_meta(meta_entries)
        windowed = options.unique_for is not None or options.debounce is not None
        if windowed and Capability.UNIQUE not in self.backend.capabilities:
            raise NotSupported(f"{type(self.backend).__name__} has no unique keys: unique_for and debounce "
                               f"need Capability.UNIQUE")
        new_jobs = []
        for args, kwargs in calls:
            args_text, kwargs_text = encode_arguments(args, kwargs, limit)
            if meta is not None and payload_size(args_text, kwargs_text, meta) > limit:
                raise SerializationError(f"arguments and meta take {payload_size(args_text, kwargs_text, meta)} "
                                         f"bytes, above max_payload_bytes={limit}")
            unique_key = options.unique_key
            if unique_key is None and windowed:  # by default a throttle or debounce is per name and arguments
                unique_key = _arguments_key(job.name, args_text, kwargs_text)
            if options.encrypt:  # the store never holds the plaintext (errands.encryption)
                args_text, kwargs_text = seal_arguments(args_text, kwargs_text, self.settings)
            new_jobs.append(NewJob(
                id=job_id or new_id(), name=job.name, queue=options.queue, args=args_text, kwargs=kwargs_text,
                max_attempts=options.max_attempts, priority=options.priority, run_at=run_at, delay=seconds,
                unique_key=unique_key, timeout=options.timeout, meta=meta, unique_for=options.unique_for,
                debounce=options.debounce,
            ))
        return new_jobs

    def _submit(self, new_jobs: Sequence[NewJob]) -> list[Enqueued]:
        """Store ``new_jobs`` in one atomic step (through the spool or the caller's transaction
        when there is one), tell listeners, wake workers."""
        spooled = False
        if self._spool is not None and self._connection.get() is None:  # a transaction's errors propagate
            results, spooled = self._spool.enqueue(new_jobs)
        else:
            results = self.backend.enqueue(new_jobs, connection=self._connection.get())
        if self.events.listening:
            for new, result in zip(new_jobs, results):
                self.events.emit(JobEnqueued(result.id, new.name, new.queue, result.created))
        if self._connection.get() is None and not spooled:
            self.backend.notify()
        return results

    @contextlib.contextmanager
    def transaction(self, connection: object) -> Iterator[object]:
        """Enqueue through the caller's own connection, so a job exists if and only if the caller's
        transaction commits. When the connection was not yet in a transaction, the block commits
        on success and rolls back on error (like ``with conn:``); otherwise the caller does."""
        if Capability.TRANSACTIONAL_ENQUEUE not in self.backend.capabilities:
            raise ConfigurationError(f"{type(self.backend).__name__} can't enqueue inside your transaction")
        owns = not bool(getattr(connection, "in_transaction", False)) and _transaction_status(connection)
        token = self._connection.set(connection)
        try:
            yield connection
        except BaseException:
            if owns:
                connection.rollback()  # type: ignore[attr-defined]
            raise
        else:
            if owns:
                connection.commit()  # type: ignore[attr-defined]
        finally:
            self._connection.reset(token)
        self.backend.notify()

    def spool_depth(self) -> int:
        """Jobs waiting in the spool file for the backend to answer again (0 without ``spool=``).

        >>> app.spool_depth()
        0
        """
        return self._spool.depth() if self._spool is not None else 0

    def workers(self) -> list[WorkerInfo]:
        """Worker processes alive now, oldest first (``NotSupported`` without a worker registry)."""
        return self.backend.workers()

    def metrics(self) -> Metrics:
        """This app's Prometheus metrics in a registry of their own (``errands[dashboard]``); made on
        first call. ``prometheus_client.generate_latest(app.metrics().registry)``"""
        with self._backend_lock:
            if self._metrics is None:
                from .metrics import Metrics

                self._metrics = Metrics(self)
            return self._metrics

    def dashboard_app(self, token: str | None = None, *, auth: AuthHook | None = None,
                      allowed_hosts: Sequence[str] = (), **options: Any) -> Starlette:
        """The dashboard as an ASGI app to mount (``errands[dashboard]``): it denies every request
        until given a ``token`` or an ``auth(request)`` hook; see ``errands.dashboard.dashboard_app``.

        >>> starlette_app.mount("/errands", app.dashboard_app(token=TOKEN, allowed_hosts=["ops.example.com"]))
        """
        from .dashboard import dashboard_app

        return dashboard_app(self, token=token, auth=auth, allowed_hosts=allowed_hosts, **options)

    # workers ---------------------------------------------------------------------------------
    def run_worker(
        self, queues: Sequence[str] | None = None, concurrency: int = 8, burst: bool = False, **options: Any
    ) -> None:
        """Run a worker in this thread until SIGTERM/SIGINT (or, with ``burst``, until nothing is runnable)."""
        from .worker import Worker

        Worker(self, queues=queues, concurrency=concurrency, burst=burst, **options).run()

    def start(self, concurrency: int = 8, queues: Sequence[str] | None = None, **options: Any) -> Worker:
        """Start a worker on background threads of this process."""
        from .worker import Worker

        if self._background is not None:
            raise ConfigurationError("a background worker is already running; stop() it first")
        worker = Worker(self, queues=queues, concurrency=concurrency, **options)
        worker.start()  # raises (and nothing stays registered) when the worker can't run here
        self._background = worker
        return worker

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the background worker: running jobs get ``timeout`` seconds, then go back to the queue."""
        worker, self._background = self._background, None
        if worker is not None:
            worker.stop(timeout)

    @contextlib.contextmanager
    def worker(self, concurrency: int = 8, queues: Sequence[str] | None = None, **options: Any) -> Iterator[Worker]:
        worker = self.start(concurrency=concurrency, queues=queues, **options)
        try:
            yield worker
        finally:
            self.stop(options.get("grace", 30.0))


# helpers ---------------------------------------------------------------------------------------


def _arguments_key(name: str, args_text: str, kwargs_text: str) -> str:
    digest = hashlib.sha256(f"{args_text}\0{kwargs_text}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"{name}:{digest[:40]}"


def _checked_delay(delay: float | timedelta) -> float:
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or math.isnan(seconds):
        raise ConfigurationError(f"delay must be seconds or a timedelta, got {delay!r}")
    if seconds > MAX_DELAY:
        raise ConfigurationError(f"delay {delay!r} is more than 100 years ahead")
    return max(float(seconds), 0.0)  # a delay in the past means "now", as in Sidekiq


def _checked_run_at(when: datetime) -> float:
    if not isinstance(when, datetime):
        raise ConfigurationError(f"perform_at needs a datetime, got {when!r}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise ConfigurationError(
            f"perform_at needs an aware datetime (with tzinfo), got naive {when!r}; "
            "use datetime(..., tzinfo=timezone.utc)"
        )
    run_at = when.timestamp()
    if run_at - datetime.now(timezone.utc).timestamp() > MAX_DELAY:
        raise ConfigurationError(f"perform_at {when.isoformat()} is more than 100 years ahead")
    return run_at


def _transaction_status(connection: object) -> bool:
    """True when errands may commit: the connection has no transaction of the caller's open."""
    info = getattr(connection, "info", None)  # psycopg 3: conn.info.transaction_status
    status = getattr(info, "transaction_status", None)
    if status is not None:
        return int(status) == 0  # IDLE
    server_status = getattr(connection, "server_status", None)  # PyMySQL: the server's status flags
    if isinstance(server_status, int):
        return not server_status & 1  # SERVER_STATUS_IN_TRANS
    return True
