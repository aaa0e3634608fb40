"""Django: errands as a backend of Django's tasks framework (``django.tasks``, Django 6; the
``django-tasks`` backport on older Django), so a ``@task`` written for Django runs on errands.

::

    # settings.py
    INSTALLED_APPS = [..., "errands.contrib.django"]
    TASKS = {
        "default": {
            "BACKEND": "errands.contrib.django.TasksBackend",
            "QUEUES": ["default", "mail"],
            "OPTIONS": {},          # no "url": errands keeps its jobs in DATABASES["default"]
        }
    }

    # myapp/tasks.py
    from django.tasks import task

    @task(queue_name="mail", priority=10)
    def send_welcome(user_id: int) -> str: ...

    # a view
    with transaction.atomic():
        user = User.objects.create(...)
        result = send_welcome.enqueue(user.id)    # written only if the block commits
    send_welcome.get_result(result.id).status     # READY, RUNNING, SUCCESSFUL or FAILED

Then ``python manage.py errands worker -c 8`` runs the tasks (``stats``, ``jobs``, ``show``,
``retry``, ``cancel``, ``purge``, ``dashboard`` and ``migrate`` are there too), and
``errands.contrib.django.dashboard.admin_dashboard`` serves the dashboard under
``/admin/errands/`` to staff users. ``get_app(alias)`` is the ``Errands`` app of a ``TASKS``
alias, for queries and for ``@app.job`` handlers of errands' own.

OPTIONS: ``url`` (an errands URL; default: the Django database named by ``database``, itself
``"default"``: SQLite files, PostgreSQL and MySQL/MariaDB can hold the jobs), ``retries`` (5)
and ``timeout`` (none) for every task, and the ``Errands`` options ``lease``, ``heartbeat``,
``poll_interval``, ``max_payload_bytes``, ``max_error_bytes``, ``store``.
"""

from __future__ import annotations

from ._results import TaskCancelled
from ._runner import UnknownTask
from .backend import DjangoConfigurationError, DjangoErrands, TasksBackend, close_apps, get_app

__all__ = [
    "DjangoConfigurationError", "DjangoErrands", "TaskCancelled", "TasksBackend", "UnknownTask", "close_apps",
    "get_app",
]
