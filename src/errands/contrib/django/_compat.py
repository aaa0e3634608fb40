"""Where Django's tasks framework lives: ``django.tasks`` from Django 6.0, else the
``django-tasks`` backport (``django_tasks``: Django 4.2-5.2, for Python 3.10 and 3.11, where
Django 6 can't be installed). Both have the same API; the few names that differ are hidden here.
The modules are loaded by name, so the type checker sees one answer whichever is installed.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from ...errors import ConfigurationError

__all__ = [
    "BaseTaskBackend", "InvalidTask", "Task", "TaskContext", "TaskError", "TaskResult",
    "TaskResultDoesNotExist", "TaskResultStatus", "normalize_json", "task_enqueued", "task_finished",
    "task_started", "tasks_module",
]

_MISSING = ("errands.contrib.django needs Django's tasks framework: pip install 'errands[django]' "
            "(Django 6, or on Python < 3.12 Django 4.2+ with the django-tasks backport)")


def _tasks_package() -> ModuleType:
    try:
        return importlib.import_module("django.tasks")
    except ImportError:
        pass
    try:
        return importlib.import_module("django_tasks")
    except ImportError as exc:
        raise ConfigurationError(f"{_MISSING}: {exc}") from None


_package = _tasks_package()
tasks_module: str = _package.__name__
_base = importlib.import_module(f"{tasks_module}.base")
_exceptions = importlib.import_module(f"{tasks_module}.exceptions")
_signals = importlib.import_module(f"{tasks_module}.signals")

BaseTaskBackend: Any = importlib.import_module(f"{tasks_module}.backends.base").BaseTaskBackend
Task: Any = _base.Task
TaskContext: Any = _base.TaskContext
TaskError: Any = _base.TaskError
TaskResult: Any = _base.TaskResult
TaskResultStatus: Any = _base.TaskResultStatus
# Django 6 dropped the backport's "Error" suffix on this one
InvalidTask: type[Exception] = getattr(_exceptions, "InvalidTask", None) or _exceptions.InvalidTaskError
TaskResultDoesNotExist: type[Exception] = _exceptions.TaskResultDoesNotExist
task_enqueued: Any = _signals.task_enqueued
task_started: Any = _signals.task_started
task_finished: Any = _signals.task_finished
normalize_json: Any = (importlib.import_module("django.utils.json").normalize_json if tasks_module == "django.tasks"
                       else importlib.import_module("django_tasks.utils").normalize_json)
