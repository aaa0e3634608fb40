"""errands.contrib.django with a real Django project (tests/contrib/django_project): ``@task``s
written for Django's tasks framework, enqueued with ``task.enqueue()``, run by an errands worker
and read back with ``task.get_result()``, on SQLite and on PostgreSQL; enqueues inside
``transaction.atomic()``, in the same transaction and on commit, with rollbacks."""

from __future__ import annotations

import asyncio
import importlib
import threading
from datetime import datetime, timedelta, timezone
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("django")

from errands import ConfigurationError, JobState, SerializationError
from errands.backends._sql import TABLE
from errands.contrib.django import (
    DjangoConfigurationError,
    TasksBackend,
    UnknownTask,
    _compat,
    get_app,
)
from errands.contrib.django._config import database_url, read_config, same_database
from errands.contrib.django._results import error_class_path
from errands.jobs import JobFunction, JobOptions
from tests.conftest import wait_until

from .conftest import DjangoProject

SAME_DATABASE = ["default", "pg"]  # jobs in the Django database: SQLite, PostgreSQL
EVERY_ALIAS = [*SAME_DATABASE, "separate"]  # separate: a SQLite file of its own, so on_commit
DATABASE_OF = {"default": "default", "pg": "pg", "separate": "default"}


@pytest.fixture
def shop(django_project: DjangoProject) -> ModuleType:
    """The project's tasks module (importable once Django is set up)."""
    from djshop import tasks

    return tasks


def run_tasks(alias: str) -> None:
    """An errands worker on this alias's store, until nothing is runnable."""
    get_app(alias).run_worker(burst=True, concurrency=4)


# enqueue -> worker -> get_result ------------------------------------------------------------------
@pytest.mark.parametrize("alias", EVERY_ALIAS)
def test_a_task_runs_on_an_errands_worker_and_its_result_comes_back(shop: ModuleType, alias: str) -> None:
    add = shop.add.using(backend=alias)
    before = datetime.now(timezone.utc)
    result = add.enqueue(2, 3)
    assert result.status == _compat.TaskResultStatus.READY
    assert result.backend == alias and result.args == [2, 3] and result.kwargs == {}
    waiting = add.get_result(result.id)
    assert waiting.status == _compat.TaskResultStatus.READY and not waiting.is_finished
    with pytest.raises(ValueError, match="not finished"):
        waiting.return_value  # noqa: B018

    run_tasks(alias)

    done = add.get_result(result.id)
    assert done.status == _compat.TaskResultStatus.SUCCESSFUL
    assert done.return_value == 5
    assert done.attempts == 1 and len(done.worker_ids) == 1
    assert done.errors == []
    assert before <= done.enqueued_at <= done.started_at <= done.finished_at
    assert done.last_attempted_at == done.started_at
    assert done.task.func is shop.add.func and done.task.backend == alias
    result.refresh()  # Django's own refresh goes through get_result too
    assert result.status == _compat.TaskResultStatus.SUCCESSFUL and result.return_value == 5


@pytest.mark.parametrize("alias", SAME_DATABASE)
def test_a_failing_task_is_failed_with_its_exception_and_traceback(shop: ModuleType, alias: str) -> None:
    explode = shop.explode.using(backend=alias)
    result = explode.enqueue("boom at the depot")
    run_tasks(alias)

    failed = explode.get_result(result.id)
    assert failed.status == _compat.TaskResultStatus.FAILED
    with pytest.raises(ValueError, match="Task failed"):
        failed.return_value  # noqa: B018
    [error] = failed.errors
    assert error.exception_class_path == "builtins.ValueError"
    assert error.exception_class is ValueError
    assert "boom at the depot" in error.traceback and "djshop/tasks.py" in error.traceback
    assert failed.attempts == 1  # OPTIONS retries=0: one attempt, as Django's own backends
    assert get_app(alias).get_job(result.id).max_attempts == 1


@pytest.mark.parametrize("alias", SAME_DATABASE)
def test_async_tasks_and_tasks_that_take_the_context(shop: ModuleType, alias: str) -> None:
    doubled = shop.double_later.using(backend=alias).enqueue(21)
    context = shop.with_context.using(backend=alias).enqueue(x=7)
    run_tasks(alias)

    assert shop.double_later.using(backend=alias).get_result(doubled.id).return_value == 42
    value = shop.with_context.using(backend=alias).get_result(context.id).return_value
    assert value == {"attempt": 1, "id": context.id, "x": 7}


@pytest.mark.parametrize("alias", SAME_DATABASE)
def test_queue_priority_and_run_after_reach_the_job(shop: ModuleType, alias: str) -> None:
    app = get_app(alias)
    receipt = shop.send_receipt.using(backend=alias).enqueue(0)
    job = app.get_job(receipt.id)
    assert job is not None
    assert (job.name, job.queue, job.priority) == ("djshop.tasks.send_receipt", "mail", 10)
    urgent = shop.add.using(backend=alias, priority=-100).enqueue(1, 1)
    assert app.get_job(urgent.id).priority == -100  # Django's -100..100 is errands' range

    later = datetime.now(timezone.utc) + timedelta(hours=1)
    deferred = shop.add.using(backend=alias, run_after=later).enqueue(1, 2)
    job = app.get_job(deferred.id)
    assert job.state == JobState.SCHEDULED
    assert abs((job.run_at - later).total_seconds()) < 1
    run_tasks(alias)
    assert shop.add.get_backend().alias == "default"
    assert shop.add.using(backend=alias).get_result(deferred.id).status == _compat.TaskResultStatus.READY
    assert app.cancel_job(deferred.id) == "cancelled"
    cancelled = shop.add.using(backend=alias).get_result(deferred.id)
    assert cancelled.status == _compat.TaskResultStatus.FAILED  # Django has no cancelled state
    assert cancelled.errors[0].exception_class_path == "errands.contrib.django._results.TaskCancelled"


def test_tuples_become_lists_as_django_stores_them_and_bad_arguments_are_refused(shop: ModuleType) -> None:
    result = shop.echo.enqueue({"pair": (1, 2)})
    assert result.args == [{"pair": [1, 2]}]
    run_tasks("default")
    assert shop.echo.get_result(result.id).return_value == {"pair": [1, 2]}

    with pytest.raises(SerializationError, match=r"args\[0\]"):
        shop.echo.enqueue(datetime.now(timezone.utc))
    with pytest.raises(SerializationError, match=r"kwargs\['value'\]"):
        shop.echo.enqueue(value={1, 2})


def test_signals_are_sent_for_enqueue_start_and_finish(shop: ModuleType) -> None:
    seen: list[tuple[str, str, str]] = []

    def receiver(name: str) -> Any:
        def receive(sender: type, task_result: Any, **kwargs: Any) -> None:
            assert sender is TasksBackend
            seen.append((name, task_result.id, str(task_result.status)))

        return receive

    receivers = {signal: receiver(name) for name, signal in (
        ("enqueued", _compat.task_enqueued), ("started", _compat.task_started), ("finished", _compat.task_finished))}
    for signal, function in receivers.items():
        signal.connect(function)
    try:
        ok = shop.add.enqueue(1, 2)
        bad = shop.explode.enqueue("no")
        run_tasks("default")
    finally:
        for signal, function in receivers.items():
            signal.disconnect(function)
    mine = [entry for entry in seen if entry[1] in (ok.id, bad.id)]
    assert ("enqueued", ok.id, "READY") in mine and ("enqueued", bad.id, "READY") in mine
    assert ("started", ok.id, "RUNNING") in mine and ("finished", ok.id, "SUCCESSFUL") in mine
    assert ("started", bad.id, "RUNNING") in mine and ("finished", bad.id, "FAILED") in mine


# results that aren't there -----------------------------------------------------------------------
def test_get_result_of_unknown_ids_and_of_other_tasks(shop: ModuleType) -> None:
    with pytest.raises(_compat.TaskResultDoesNotExist):
        shop.add.get_result("0190f3f0-0000-7000-8000-000000000000")
    with pytest.raises(_compat.TaskResultDoesNotExist):
        shop.add.get_result("x" * 500)  # not an id at all
    result = shop.add.enqueue(1, 1)
    with pytest.raises(Exception, match="Task does not match") as caught:
        shop.echo.get_result(result.id)
    assert type(caught.value).__name__ == "TaskResultMismatch"

    app = get_app("default")

    @app.job(name="plain_errands_job")
    def plain_errands_job() -> None: ...

    handle = plain_errands_job.perform()
    with pytest.raises(_compat.TaskResultDoesNotExist, match="not a Django task"):
        shop.add.get_result(handle.id)


def test_async_enqueue_and_get_result(shop: ModuleType) -> None:
    result = asyncio.run(shop.add.aenqueue(4, 4))
    assert get_app("default").get_job(result.id) is not None
    run_tasks("default")
    fetched = asyncio.run(shop.add.aget_result(result.id))
    assert fetched.return_value == 8
    asyncio.run(result.arefresh())
    assert result.status == _compat.TaskResultStatus.SUCCESSFUL


# jobs the worker can't run -------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "reason"), [
    ("djshop.tasks.gone", "it can't be imported"),
    ("djshop.nowhere.task", "it can't be imported"),
    ("djshop.tasks.plain", "it is function, not a function decorated with @task"),
    ("djshop.broken.task", "importing it raised RuntimeError: this module is broken on purpose"),
])
def test_a_job_naming_no_task_fails_clearly_and_the_worker_goes_on(shop: ModuleType, path: str, reason: str) -> None:
    app = get_app("default")
    stray = JobFunction(app, shop.plain, path, JobOptions(retries=3))  # as if written by another program
    [handle] = app._enqueue(stray, [((1,), {})])
    ok = shop.add.enqueue(2, 2)
    run_tasks("default")

    job = app.get_job(handle.id)
    assert job.state == JobState.FAILED
    assert f"{path!r} is not a Django task: {reason}" in job.error
    assert job.attempts == 1  # no retry can mend it
    assert shop.add.get_result(ok.id).return_value == 4
    with pytest.raises(UnknownTask):
        app.handler(path)


def test_errands_rules_for_names_apply_when_the_task_is_defined(shop: ModuleType) -> None:
    django_task = importlib.import_module(_compat.tasks_module).task
    with pytest.raises(_compat.InvalidTask, match="invalid queue name"):
        django_task(queue_name="no spaces here", backend="separate")(shop.plain)


# transactions ----------------------------------------------------------------------------------------
def _visible_to(alias: str, job_id: str) -> bool:
    """Whether the job row is visible on Django's own connection (inside its transaction)."""
    from django.db import connections

    with connections[DATABASE_OF[alias]].cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {TABLE} WHERE id = %s", [job_id])
        return bool(cursor.fetchone()[0])


@pytest.mark.parametrize("alias", EVERY_ALIAS)
def test_enqueue_inside_atomic_exists_only_once_the_block_commits(shop: ModuleType, alias: str) -> None:
    from django.db import transaction
    from djshop.models import Order

    app, database = get_app(alias), DATABASE_OF[alias]
    assert app.config.same_database is (alias in SAME_DATABASE)
    with transaction.atomic(using=database):
        order = Order.objects.using(database).create(total=12)
        result = shop.send_receipt.using(backend=alias).enqueue(order.id, database=database)
        assert app.get_job(result.id) is None  # errands' own connection sees nothing yet
        # in the same database the job is already written, in the caller's transaction;
        # otherwise it waits for the commit
        if alias in SAME_DATABASE:
            assert _visible_to(alias, result.id)
        assert result.enqueued_at is None if alias == "separate" else result.enqueued_at is not None
    assert app.get_job(result.id).state == JobState.AVAILABLE
    assert result.enqueued_at is not None
    run_tasks(alias)
    assert shop.send_receipt.using(backend=alias).get_result(result.id).return_value == {
        "order": order.id, "total": 12}
    assert Order.objects.using(database).get(pk=order.id).receipt_sent  # the task's ORM write


@pytest.mark.parametrize("alias", EVERY_ALIAS)
def test_a_rolled_back_block_enqueues_nothing(shop: ModuleType, alias: str) -> None:
    from django.db import transaction
    from djshop.models import Order

    database = DATABASE_OF[alias]
    with pytest.raises(RuntimeError, match="declined"), transaction.atomic(using=database):
        order = Order.objects.using(database).create(total=99)
        result = shop.send_receipt.using(backend=alias).enqueue(order.id, database=database)
        raise RuntimeError("declined")
    assert not Order.objects.using(database).filter(pk=order.id).exists()
    assert get_app(alias).get_job(result.id) is None
    with pytest.raises(_compat.TaskResultDoesNotExist):
        shop.send_receipt.using(backend=alias).get_result(result.id)


@pytest.mark.parametrize("alias", EVERY_ALIAS)
def test_an_enqueue_that_opens_the_block_rolls_back_with_it(shop: ModuleType, alias: str) -> None:
    from django.db import transaction

    # the block's first statement: psycopg has no transaction open yet, and errands must not
    # take the connection for idle and commit the job on its own
    with pytest.raises(RuntimeError, match="changed my mind"), transaction.atomic(using=DATABASE_OF[alias]):
        result = shop.add.using(backend=alias).enqueue(1, 2)
        raise RuntimeError("changed my mind")
    assert get_app(alias).get_job(result.id) is None


@pytest.mark.parametrize("alias", EVERY_ALIAS)
def test_a_rolled_back_savepoint_drops_only_its_own_jobs(shop: ModuleType, alias: str) -> None:
    from django.db import transaction

    database = DATABASE_OF[alias]
    add = shop.add.using(backend=alias)
    with transaction.atomic(using=database):
        kept = add.enqueue(1, 0)
        try:
            with transaction.atomic(using=database):
                dropped = add.enqueue(2, 0)
                raise RuntimeError("inner")
        except RuntimeError:
            pass
    app = get_app(alias)
    assert app.get_job(kept.id) is not None
    assert app.get_job(dropped.id) is None


def test_enqueue_outside_a_transaction_is_written_at_once(shop: ModuleType) -> None:
    result = shop.add.using(backend="separate").enqueue(5, 5)
    assert get_app("separate").get_job(result.id) is not None


def test_a_view_commits_or_rolls_back_the_order_and_its_receipt_together(django_project: DjangoProject) -> None:
    from django.test import Client
    from djshop.models import Order
    from djshop.tasks import send_receipt

    client = Client()
    paid = client.post("/checkout/", {"total": "30"}).json()
    declined = client.post("/checkout/", {"total": "40", "fail": "1"})
    assert declined.status_code == 402
    app = get_app("default")
    assert app.get_job(paid["result"]) is not None
    assert app.get_job(declined.json()["result"]) is None
    run_tasks("default")
    assert send_receipt.get_result(paid["result"]).return_value == {"order": paid["order"], "total": 30}
    assert Order.objects.get(pk=paid["order"]).receipt_sent


def test_a_worker_in_the_web_process_runs_tasks_as_they_come(shop: ModuleType) -> None:
    app = get_app("default")
    with app.worker(concurrency=2):
        result = shop.add.enqueue(20, 22)
        done = wait_until(lambda: shop.add.get_result(result.id).is_finished, timeout=20)
    assert done
    assert shop.add.get_result(result.id).return_value == 42


# configuration --------------------------------------------------------------------------------------
def test_get_app_is_one_app_per_alias_shared_by_threads(django_project: DjangoProject) -> None:
    apps: list[Any] = []
    threads = [threading.Thread(target=lambda: apps.append(get_app("pg"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(app is get_app("pg") for app in apps)
    assert get_app("pg") is not get_app("default")
    assert get_app("pg").settings.url.startswith("postgresql://postgres@127.0.0.1:5432/errands_dj_")
    assert get_app("default").settings.url == "sqlite:///" + django_project.env["DJSHOP_SQLITE"]
    with pytest.raises(DjangoConfigurationError, match="no 'nope' backend"):
        get_app("nope")


def test_options_are_checked_and_named(django_project: DjangoProject) -> None:
    from django.core.exceptions import ImproperlyConfigured

    databases = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    with pytest.raises(ConfigurationError, match=r"unknown key\(s\) 'retry'"):
        read_config("default", {"OPTIONS": {"retry": 3}}, databases)
    with pytest.raises(ConfigurationError, match="needs a 'url'"):
        read_config("default", {"OPTIONS": {}}, databases)  # an in-memory database can't be shared
    with pytest.raises(ConfigurationError, match=r"\['database'\] is 'other'"):
        read_config("default", {"OPTIONS": {"database": "other", "url": "memory://"}}, databases)
    with pytest.raises(ConfigurationError, match="retries must be"):
        read_config("default", {"OPTIONS": {"url": "memory://", "retries": -1}}, databases)
    config = read_config("x", {"OPTIONS": {"url": "memory://", "retries": 2, "lease": 9}}, databases)
    assert (config.job_options.max_attempts, config.settings.lease, config.same_database) == (3, 9.0, False)

    backend = TasksBackend("broken", {"OPTIONS": {"url": "nope"}})
    [error] = backend.check()
    assert error.id == "errands.E001" and "url must look like" in error.msg
    assert TasksBackend("fine", {"OPTIONS": {"url": "memory://"}}).check() == []
    assert issubclass(DjangoConfigurationError, ImproperlyConfigured)


def test_database_urls_and_same_database() -> None:
    assert database_url({"ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/site.db"}) == "sqlite:////srv/site.db"
    assert database_url({"ENGINE": "django.db.backends.postgresql", "NAME": "shop", "USER": "app",
                         "PASSWORD": "p@ss/word", "HOST": "db.internal", "PORT": 6432}) == \
        "postgresql://app:p%40ss%2Fword@db.internal:6432/shop"
    assert database_url({"ENGINE": "django.db.backends.mysql", "NAME": "shop", "USER": "root"}) == \
        "mysql://root@localhost/shop"
    assert database_url({"ENGINE": "django.db.backends.oracle", "NAME": "x"}) is None
    assert database_url({"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}) is None
    assert same_database("postgresql://a@localhost/shop?schema=jobs", "postgres://b@127.0.0.1:5432/shop")
    assert not same_database("postgresql://a@localhost/shop", "postgresql://a@localhost/other")
    assert same_database("sqlite:////srv/a/../site.db", "sqlite:////srv/site.db")
    assert not same_database("redis://localhost/0", "redis://localhost/0")  # no transaction to share


def test_error_class_paths_from_stored_error_text() -> None:
    assert error_class_path("ValueError: x\nTraceback ...\nValueError: x") == "builtins.ValueError"
    assert error_class_path("Boom: x\nTraceback ...\nmyapp.errors.Boom: x") == "myapp.errors.Boom"
    assert error_class_path("JobTimeout: ran past") == "errands.errors.JobTimeout"
    assert error_class_path("worker lost while running (attempt 3/3)") == "errands.errors.ErrandsError"
    assert error_class_path("") == "errands.errors.ErrandsError"
