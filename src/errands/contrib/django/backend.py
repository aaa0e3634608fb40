"""``TasksBackend``: Django's tasks framework (``django.tasks``) on errands.

A task enqueued with ``my_task.enqueue(...)`` becomes an errands job named by the task's dotted
path, in the task's ``queue_name``, at its ``priority`` (Django's -100..100 is errands' range,
higher first), not before ``run_after``. An errands worker (``python manage.py errands worker``)
runs it by importing that path, and ``my_task.get_result(id)`` reads it back as a ``TaskResult``.

Transactions: inside ``transaction.atomic()`` nothing is enqueued unless the block commits. When
errands' store is the Django database itself (the default when OPTIONS has no ``url``) and the
driver is one errands can write through (sqlite3, psycopg 3), the job is written in that very
transaction; otherwise it is enqueued by ``transaction.on_commit``.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone as django_timezone

from ..._ids import new_id
from ...app import Errands
from ...config import check_job_name, check_queue_name
from ...errors import ConfigurationError, SerializationError, UnknownJob
from ...jobs import JobFunction, JobOptions
from ...serialization import encode_arguments
from . import _compat
from ._config import BackendConfig, read_config
from ._results import task_result
from ._runner import resolve_task, task_runner

__all__ = ["DjangoConfigurationError", "DjangoErrands", "TasksBackend", "close_apps", "get_app"]

BACKEND_PATH = "errands.contrib.django.TasksBackend"


class DjangoConfigurationError(ConfigurationError, ImproperlyConfigured):  # type: ignore[misc]  # untyped Django
    """A bad ``TASKS`` entry: an errands ``ConfigurationError`` that Django code can catch as
    ``ImproperlyConfigured``."""


class DjangoErrands(Errands):
    """The ``Errands`` app of one ``TASKS`` alias. Besides the jobs registered on it with
    ``@app.job``, it runs every Django ``@task``: a job name that isn't registered is taken as a
    task's dotted path and imported.

    >>> app = get_app("default")
    >>> app.stats()
    """

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config.settings.url)
        self.settings = config.settings
        self.config = config
        self.alias = config.alias
        self._tasks: dict[str, JobFunction[Any, Any]] = {}

    def handler(self, name: str) -> JobFunction[Any, Any]:
        registered = self.registry.get(name)
        if registered is not None:
            return registered
        job = self._tasks.get(name)
        if job is None:  # a race builds two equal handlers; either one is right
            task = resolve_task(name)
            runner = task_runner(task, self.alias, TasksBackend)
            job = self._tasks[name] = JobFunction(self, runner, name, self._options(task))
        return job

    def task_job(self, task: Any) -> JobFunction[Any, Any]:
        """The errands job a Django task is enqueued as: its queue, priority and the OPTIONS' defaults."""
        return JobFunction(self, task.func, task.module_path, self._options(task))

    def _options(self, task: Any) -> JobOptions:
        return self.config.job_options.merge(queue=task.queue_name, priority=task.priority)


_apps: dict[str, DjangoErrands] = {}
_apps_lock = threading.Lock()


def get_app(alias: str = "default") -> DjangoErrands:
    """The ``Errands`` app of the ``TASKS`` alias, made on first use from ``settings.py`` and
    shared by every thread: queries, a worker in this process, the dashboard.

    >>> from errands.contrib.django import get_app
    >>> get_app().list_jobs(state="failed")
    >>> with get_app().worker(concurrency=4): ...
    """
    with _apps_lock:
        app = _apps.get(alias)
        if app is None:
            app = _apps[alias] = DjangoErrands(backend_config(alias))
        return app


def close_apps() -> None:
    """Close every app ``get_app`` made (and forget them): the next call reads the settings again."""
    with _apps_lock:
        apps = list(_apps.values())
        _apps.clear()
    for app in apps:
        app.close()


def backend_config(alias: str) -> BackendConfig:
    tasks: Mapping[str, Any] = getattr(django_settings, "TASKS", {}) or {}
    params = tasks.get(alias)
    if params is None:
        raise DjangoConfigurationError(f"settings.TASKS has no {alias!r} backend")
    if params.get("BACKEND") not in (BACKEND_PATH, f"{__name__}.TasksBackend"):
        raise DjangoConfigurationError(f"TASKS[{alias!r}] uses {params.get('BACKEND')!r}, not {BACKEND_PATH}")
    try:
        return read_config(alias, params, django_settings.DATABASES)
    except ConfigurationError as exc:
        raise DjangoConfigurationError(str(exc)) from None


class TasksBackend(_compat.BaseTaskBackend):  # type: ignore[misc]  # untyped Django
    """Django's task backend on errands, configured in ``settings.py``::

        TASKS = {
            "default": {
                "BACKEND": "errands.contrib.django.TasksBackend",
                "QUEUES": ["default", "mail"],
                "OPTIONS": {"url": "redis://localhost:6379/0", "retries": 3},
            }
        }

    OPTIONS: ``url`` (default: the Django database ``database``, itself ``"default"`` by default),
    ``retries`` (5) and ``timeout`` (none) for every task, and the ``Errands`` options ``lease``,
    ``heartbeat``, ``poll_interval``, ``max_payload_bytes``, ``max_error_bytes``, ``store``.
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.params = params

    @property
    def app(self) -> DjangoErrands:
        """This alias's ``Errands`` app (``get_app(alias)``)."""
        return get_app(self.alias)

    def validate_task(self, task: Any) -> None:
        super().validate_task(task)
        try:  # errands' own rules for names, so a task that can't be stored fails where it's defined
            check_queue_name(task.queue_name)
            check_job_name(task.module_path)
        except ConfigurationError as exc:
            raise _compat.InvalidTask(str(exc)) from None

    def check(self, **kwargs: Any) -> list[Any]:
        try:
            read_config(self.alias, self.params, django_settings.DATABASES)
        except ConfigurationError as exc:
            return [checks.Error(str(exc), obj=BACKEND_PATH, id="errands.E001")]
        return []

    # enqueue ---------------------------------------------------------------------------------
    def enqueue(self, task: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        self.validate_task(task)
        app = self.app
        call = _json_call(args, kwargs, app.settings.max_payload_bytes)
        result = _compat.TaskResult(
            task=task, id=new_id(), status=_compat.TaskResultStatus.READY, enqueued_at=None, started_at=None,
            finished_at=None, last_attempted_at=None, args=call[0], kwargs=call[1], backend=self.alias,
            errors=[], worker_ids=[],
        )
        write = _Enqueue(app, self.alias, task, result, call, _run_at(task.run_after))
        connection = transaction.get_connection(app.config.database)
        if not connection.in_atomic_block:
            write()
        elif app.config.same_database and (raw := _joinable(connection)) is not None:
            with app.transaction(raw):  # the job commits or rolls back with the caller's changes
                write()
        else:
            transaction.on_commit(write, using=app.config.database)
        return result

    # results ---------------------------------------------------------------------------------
    def get_result(self, result_id: str) -> Any:
        try:
            info = self.app.get_job(result_id)
        except ConfigurationError:  # not a job id at all (wrong type, too long)
            info = None
        if info is None:
            raise _compat.TaskResultDoesNotExist(result_id)
        try:
            task = resolve_task(info.name)
        except UnknownJob as exc:  # a plain errands job, or a task whose module is gone
            raise _compat.TaskResultDoesNotExist(f"{result_id}: {exc}") from None
        try:
            task = task.using(queue_name=info.queue, priority=info.priority, backend=self.alias)
        except _compat.InvalidTask:
            pass  # a queue no longer in QUEUES: the task as defined still names the function
        return task_result(info, task, self.alias)

    async def aget_result(self, result_id: str) -> Any:
        # errands' query needs no Django connection, so it needn't queue for Django's sync thread
        return await sync_to_async(self.get_result, thread_sensitive=False)(result_id)


class _Enqueue:
    """Writes one task's job; called now, inside the caller's transaction, or on commit."""

    def __init__(self, app: DjangoErrands, alias: str, task: Any, result: Any,
                 call: tuple[list[Any], dict[str, Any]], run_at: datetime | None) -> None:
        self.app, self.alias, self.task, self.result, self.call, self.run_at = app, alias, task, result, call, run_at

    def __call__(self) -> None:
        job = self.app.task_job(self.task)
        self.app._enqueue(job, [self.call], at=self.run_at, job_id=self.result.id)
        object.__setattr__(self.result, "enqueued_at", datetime.now(timezone.utc))
        _compat.task_enqueued.send(sender=TasksBackend, task_result=self.result)


def _json_call(args: Sequence[Any], kwargs: Mapping[str, Any], limit: int) -> tuple[list[Any], dict[str, Any]]:
    """The arguments as Django's own backends store them (tuples as lists, ...), checked now, so
    a bad one raises at ``enqueue()`` even when the write waits for a commit."""
    try:
        call = (_compat.normalize_json(list(args)), _compat.normalize_json(dict(kwargs)))
    except (TypeError, ValueError):
        encode_arguments(tuple(args), dict(kwargs), limit)  # names the bad argument
        raise SerializationError("the task's arguments can't be stored as JSON") from None
    encode_arguments(tuple(call[0]), call[1], limit)
    return call


def _run_at(run_after: datetime | None) -> datetime | None:
    if run_after is None or django_timezone.is_aware(run_after):
        return run_after
    return django_timezone.make_aware(run_after)  # type: ignore[no-any-return]  # USE_TZ = False: naive means the project's TIME_ZONE


def _joinable(connection: Any) -> Any:
    """The driver connection under Django's, when errands can write through it (sqlite3, psycopg
    3), with the transaction Django's atomic block asked for open."""
    connection.ensure_connection()
    raw: object = connection.connection
    if isinstance(raw, sqlite3.Connection):
        return raw  # Django's atomic block has run BEGIN already
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(raw, psycopg.Connection):
        if raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            # psycopg opens the transaction at the first statement: open it now, or errands would
            # take the connection for idle and commit the job on its own
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        return raw
    return None  # MySQLdb, psycopg2, ...: on_commit instead
