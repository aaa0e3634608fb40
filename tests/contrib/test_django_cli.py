"""``python manage.py errands ...`` run for real, as subprocesses of the test project: errands'
click commands given the app of a TASKS alias, workers included (one process and a supervisor
of two), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("django")

from errands import JobState
from errands.backends._sql import TABLE
from errands.contrib.django import _compat, get_app
from errands.contrib.django.management.commands.errands import COMMANDS

from .conftest import DjangoProject

pytestmark = pytest.mark.slow


@pytest.fixture
def shop(django_project: DjangoProject) -> ModuleType:
    from djshop import tasks

    return tasks


def manage(project: DjangoProject, src_path: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **project.env, "PYTHONPATH": os.pathsep.join([str(project.folder), src_path])}
    return subprocess.run([sys.executable, "manage.py", "errands", *args], cwd=project.folder, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.parametrize(("alias", "flags"), [("default", []), ("pg", ["--backend", "pg"])])
def test_manage_py_errands_worker_runs_the_projects_tasks(django_project: DjangoProject, src_path: str,
                                                          shop: ModuleType, alias: str, flags: list[str]) -> None:
    add = shop.add.using(backend=alias)
    results = [add.enqueue(n, n) for n in range(5)]
    done = manage(django_project, src_path, *flags, "worker", "--burst", "-c", "2")
    assert done.returncode == 0, done.stderr
    assert [add.get_result(r.id).return_value for r in results] == [0, 2, 4, 6, 8]

    stats = manage(django_project, src_path, *flags, "stats", "--json")
    assert stats.returncode == 0, stats.stderr
    counts = json.loads(stats.stdout)
    assert counts["total"]["succeeded"] >= 5


def test_a_supervisor_of_two_worker_processes_sets_django_up_in_each(django_project: DjangoProject, src_path: str,
                                                                      shop: ModuleType) -> None:
    results = [shop.add.enqueue(n, 1) for n in range(20)]
    done = manage(django_project, src_path, "worker", "--burst", "-p", "2", "-c", "2")
    assert done.returncode == 0, done.stderr
    for number, result in enumerate(results):
        final = shop.add.get_result(result.id)
        assert final.status == _compat.TaskResultStatus.SUCCESSFUL, final.errors
        assert final.return_value == number + 1


def test_enqueue_show_and_retry_by_the_tasks_dotted_path(django_project: DjangoProject, src_path: str,
                                                          shop: ModuleType) -> None:
    enqueued = manage(django_project, src_path, "enqueue", "djshop.tasks.explode", '"from the shell"')
    assert enqueued.returncode == 0, enqueued.stderr
    [job] = [j for j in get_app().list_jobs(name="djshop.tasks.explode", limit=50) if j.args == ["from the shell"]]
    assert job.queue == "default"
    assert manage(django_project, src_path, "worker", "--burst").returncode == 0
    shown = manage(django_project, src_path, "show", job.id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["state"] == "failed"
    assert "ValueError: from the shell" in json.loads(shown.stdout)["error"]
    retried = manage(django_project, src_path, "retry", job.id)
    assert retried.returncode == 0, retried.stderr
    assert get_app().get_job(job.id).state == JobState.AVAILABLE

    mail = manage(django_project, src_path, "enqueue", "djshop.tasks.send_receipt", "0")
    assert mail.returncode == 0, mail.stderr
    receipts = get_app().list_jobs(name="djshop.tasks.send_receipt", limit=1)
    assert (receipts[0].queue, receipts[0].priority) == ("mail", 10)  # the task's own
    assert get_app().cancel_job(receipts[0].id) == "cancelled"


def test_help_and_mistakes_are_one_clear_message(django_project: DjangoProject, src_path: str) -> None:
    helped = manage(django_project, src_path)
    assert helped.returncode == 0
    assert "worker" in helped.stdout and "--backend ALIAS" in helped.stdout
    listed = re.findall(r"^  ([a-z]+) +[A-Z]", helped.stdout.split("Commands:", 1)[1], re.MULTILINE)
    assert listed == list(COMMANDS)  # the help lists every command it runs, and only those
    assert "--by-queue" not in helped.stdout  # stats has no such option
    worker_help = manage(django_project, src_path, "worker", "--help")
    assert worker_help.returncode == 0 and "--concurrency" in worker_help.stdout

    unknown = manage(django_project, src_path, "nope")
    assert unknown.returncode == 1
    assert "unknown command 'nope'" in unknown.stderr and "Traceback" not in unknown.stderr
    missing = manage(django_project, src_path, "--backend", "missing", "stats")
    assert missing.returncode == 1
    assert "settings.TASKS has no 'missing' backend" in missing.stderr and "Traceback" not in missing.stderr
    bad_task = manage(django_project, src_path, "enqueue", "djshop.tasks.gone")
    assert bad_task.returncode == 1
    assert "'djshop.tasks.gone' is not a Django task" in bad_task.stderr + bad_task.stdout


def test_call_command_raises_command_error(django_project: DjangoProject) -> None:
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="unknown command 'nope'"):
        call_command("errands", "nope")
    with pytest.raises(CommandError, match="no job with id"):
        call_command("errands", "show", "no-such-job")


def test_migrate_creates_errands_tables_in_the_database_the_jobs_share(django_project: DjangoProject, src_path: str,
                                                                        tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.db"
    env = {**os.environ, **django_project.env, "DJSHOP_SQLITE": str(fresh),
           "PYTHONPATH": os.pathsep.join([str(django_project.folder), src_path])}
    migrated = subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=django_project.folder,
                              env=env, capture_output=True, text=True, timeout=120, check=False)
    assert migrated.returncode == 0, migrated.stderr
    with sqlite3.connect(fresh) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"djshop_order", "auth_user", TABLE} <= tables
