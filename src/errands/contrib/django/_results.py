"""A stored errands job seen as Django's ``TaskResult``.

States map as: scheduled and available (waiting, or waiting for a retry) -> READY, running ->
RUNNING, succeeded -> SUCCESSFUL, failed and cancelled -> FAILED (Django has no cancelled state;
the error says it was cancelled). errands keeps the last attempt's error, so ``errors`` holds at
most one ``TaskError``; it keeps the last worker's id, so ``worker_ids`` repeats it once per
attempt, which keeps ``attempts`` exact.
"""

from __future__ import annotations

import builtins
import re
import sys
from typing import Any

from ... import errors as errands_errors
from ..._states import JobState
from ...errors import ErrandsError
from ...jobs import JobInfo
from . import _compat

__all__ = ["TaskCancelled", "error_class_path", "task_result"]

_STATUS = {
    JobState.SCHEDULED: "READY", JobState.AVAILABLE: "READY", JobState.RUNNING: "RUNNING",
    JobState.SUCCEEDED: "SUCCESSFUL", JobState.FAILED: "FAILED", JobState.CANCELLED: "FAILED",
}
_CLASS_AT_START = re.compile(r"([A-Za-z_][\w.]*)(?::|$)")


class TaskCancelled(ErrandsError):
    """The job was cancelled (``errands cancel``, the dashboard): Django sees it FAILED with this."""


def task_result(info: JobInfo, task: Any, alias: str) -> Any:
    """Django's ``TaskResult`` for ``info``, a job of ``task``."""
    status = _compat.TaskResultStatus(_STATUS.get(info.state, "FAILED"))
    result = _compat.TaskResult(
        task=task, id=info.id, status=status, enqueued_at=info.created_at, started_at=info.started_at,
        finished_at=info.finished_at, last_attempted_at=info.started_at, args=info.args, kwargs=info.kwargs,
        backend=alias, errors=_errors(info), worker_ids=[info.worker_id or "unknown"] * info.attempts,
    )
    if info.state is JobState.SUCCEEDED:
        object.__setattr__(result, "_return_value", info.result)
    return result


def _errors(info: JobInfo) -> list[Any]:
    if info.state is JobState.CANCELLED:
        text = info.error or "cancelled before it ran"
        return [_compat.TaskError(exception_class_path=_path(TaskCancelled), traceback=text)]
    if not info.error:
        return []
    return [_compat.TaskError(exception_class_path=error_class_path(info.error), traceback=info.error)]


def error_class_path(text: str) -> str:
    """The dotted path of the exception an error text reports. errands stores ``Name: message``
    and then the traceback, whose last line names the class with its module (``myapp.Boom: x``,
    bare for builtins). An error of errands' own (a lost worker) is an ``ErrandsError``."""
    lines = [line for line in text.splitlines() if line.strip()]
    for line in (lines[-1], lines[0]) if lines else ():
        match = _CLASS_AT_START.match(line)
        if match is None:
            continue
        name = match.group(1)
        if "." in name:
            return name
        for namespace, module in ((builtins, "builtins"), (errands_errors, "errands.errors")):
            found = getattr(namespace, name, None)
            if isinstance(found, type) and issubclass(found, BaseException):
                return f"{module}.{name}"
        if name == "UnknownTask":
            return "errands.contrib.django._runner.UnknownTask"
    return _path(ErrandsError)


def _path(kind: type) -> str:
    module = sys.modules[kind.__module__].__name__
    return f"{module}.{kind.__qualname__}"
