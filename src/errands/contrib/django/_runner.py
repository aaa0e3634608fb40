"""The errands side of a Django task: a stored job named by the task's dotted path
(``myapp.tasks.send_welcome``) is run by importing that ``@task`` and calling its function, so a
task is written once, for Django, and never registered with errands a second time.

Around each call, as Django's own request cycle does, stale database connections are closed
(a worker thread lives much longer than a request), and Django's ``task_started`` /
``task_finished`` signals are sent for each attempt.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime, timezone
from traceback import format_exception
from typing import Any

from django.db import close_old_connections
from django.utils.module_loading import import_string

from ...context import current_job
from ...errors import ErrandsError, UnknownJob
from . import _compat

__all__ = ["UnknownTask", "resolve_task", "task_runner"]

logger = logging.getLogger("errands.django")

# Django's TaskResult.worker_ids: which worker ran an attempt
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


class UnknownTask(UnknownJob):
    """A job names a dotted path that is not an importable Django ``@task``."""

    def __init__(self, name: str, reason: str) -> None:
        ErrandsError.__init__(self, f"{name!r} is not a Django task: {reason}")
        self.name = name


def resolve_task(path: str) -> Any:
    """The ``Task`` at ``path``; ``UnknownTask`` says why when there is none. Any error raised by
    importing the module is caught: one bad job must not stop the worker."""
    try:
        found = import_string(path)
    except ImportError as exc:
        raise UnknownTask(path, f"it can't be imported ({exc})") from None
    except Exception as exc:  # noqa: BLE001  # the module itself raised while importing
        raise UnknownTask(path, f"importing it raised {type(exc).__name__}: {exc}") from None
    if not isinstance(found, _compat.Task):
        raise UnknownTask(path, f"it is {type(found).__name__}, not a function decorated with @task")
    return found


def task_runner(task: Any, alias: str, sender: type) -> Callable[..., Any]:
    """The handler errands' worker calls for ``task``: sync or async like the task itself.
    ``sender`` is the class Django's task signals are sent by."""
    func = task.func
    signals = _Signals(sender)
    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            running = _running_result(task, alias, args, kwargs)
            signals.started(running)
            try:
                value = await (func(_compat.TaskContext(task_result=running), *args, **kwargs)
                               if task.takes_context else func(*args, **kwargs))
            except BaseException as exc:
                signals.failed(running, exc)
                raise
            return signals.succeeded(running, value)

        return run_async

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()  # as at the start of a request: drop connections past CONN_MAX_AGE
        try:
            running = _running_result(task, alias, args, kwargs)
            signals.started(running)
            try:
                value = (func(_compat.TaskContext(task_result=running), *args, **kwargs)
                         if task.takes_context else func(*args, **kwargs))
            except BaseException as exc:
                signals.failed(running, exc)
                raise
            return signals.succeeded(running, value)
        finally:
            close_old_connections()

    return run


def _running_result(task: Any, alias: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The TaskResult of the attempt now running: what a ``takes_context`` task gets as
    ``context.task_result`` (``context.attempt`` counts from 1) and what the signals carry."""
    job = current_job()
    now = datetime.now(timezone.utc)
    return _compat.TaskResult(
        task=task, id=job.id, status=_compat.TaskResultStatus.RUNNING, enqueued_at=None, started_at=now,
        finished_at=None, last_attempted_at=now, args=list(args), kwargs=kwargs, backend=alias, errors=[],
        worker_ids=[WORKER_ID] * job.attempt,
    )


class _Signals:
    """Sends Django's ``task_started`` and ``task_finished`` for one attempt. ``send_robust``:
    a failing receiver (a logging hook) is logged; it must not fail, and so rerun, the task."""

    def __init__(self, sender: type) -> None:
        self.sender = sender

    def started(self, running: Any) -> None:
        self._send(_compat.task_started, running)

    def succeeded(self, running: Any, value: Any) -> Any:
        try:  # as Django's own backends do: tuples become lists, and so on
            value = _compat.normalize_json(value)
        except (TypeError, ValueError):
            pass  # left as it is, so errands fails the job naming what JSON can't carry
        object.__setattr__(running, "_return_value", value)
        self._finish(running, _compat.TaskResultStatus.SUCCESSFUL)
        return value

    def failed(self, running: Any, exc: BaseException) -> None:
        kind = type(exc)
        running.errors.append(_compat.TaskError(
            exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
            traceback="".join(format_exception(kind, exc, exc.__traceback__))))
        self._finish(running, _compat.TaskResultStatus.FAILED)

    def _finish(self, running: Any, status: Any) -> None:
        object.__setattr__(running, "status", status)
        object.__setattr__(running, "finished_at", datetime.now(timezone.utc))
        self._send(_compat.task_finished, running)

    def _send(self, signal: Any, running: Any) -> None:
        for receiver, error in signal.send_robust(sender=self.sender, task_result=running):
            if isinstance(error, Exception):
                logger.error("%s receiver %r raised %r", signal, receiver, error)
