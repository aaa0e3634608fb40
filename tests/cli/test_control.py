"""Issue #9 on the real command line: pause / resume, paused queues and limits in ``stats``,
``limits``, a workflow step's progress and links in ``show``, and cancelling a running job
(what ``cancel`` says, how ``show`` tells the outcome). On one SQLite file, across processes."""

from __future__ import annotations

import json
import textwrap

import pytest

from errands.backends.base import SlotRequest
from tests.conftest import wait_until

from .conftest import Project

LIMITED_APP = textwrap.dedent('''
    import os
    import time

    import errands
    from errands import Errands

    # a short lease: a cancel reaches the handler within a heartbeat (a third of it)
    app = Errands(os.environ["ERRANDS_TEST_URL"], lease=3.0, poll_interval=0.05)
    app.limit_queue("reports", concurrency=2, rate_limit="10/s")


    @app.job(concurrency=5, rate_limit="100/m")
    def sync_account(user):
        return user


    @app.job(concurrency=1, limit_key=lambda user, **_: user)
    def per_user(user):
        return user


    @app.job(retries=0)
    def patient():
        while not errands.current_job().cancelled:
            time.sleep(0.02)
        return "stopped early"
''')


@pytest.fixture
def lapp(project: Project) -> Project:
    (project.root / "lapp.py").write_text(LIMITED_APP, encoding="utf-8")
    project.client.job(name="patient", retries=0)(_stand_in)  # enqueued here, run by lapp's worker
    return project


def _stand_in() -> None:
    raise AssertionError("the test process enqueues; workers run lapp's real handlers")


def _state(project: Project, job_id: str) -> str:
    info = project.client.get_job(job_id)
    return "missing" if info is None else str(info.state)


def test_pause_and_resume_queues(project: Project) -> None:
    job_id = project.client.perform("add", 1, 2).id
    paused = project.ok("pause", "tapp:app", "default", "slow")
    assert "paused default, slow" in paused.stderr and "running ones finish" in paused.stderr
    assert project.client.paused_queues() == {"default", "slow"}

    project.ok("worker", "tapp:app", "--burst")
    assert _state(project, job_id) == "available"  # a paused queue's jobs wait where they are

    table = project.ok("stats", "tapp:app").stdout
    assert "default (paused)" in table and "slow (paused)" in table  # listed even without jobs
    stats = json.loads(project.ok("stats", "tapp:app", "--json").stdout)
    assert stats["paused"] == ["default", "slow"] and stats["queues"]["default"]["available"] == 1

    resumed = project.ok("resume", "--url", project.url, "default")
    assert "resumed default" in resumed.stderr
    assert project.client.paused_queues() == {"slow"}
    project.ok("worker", "tapp:app", "--burst")
    assert _state(project, job_id) == "succeeded"
    assert json.loads(project.ok("stats", "tapp:app", "--json").stdout)["paused"] == ["slow"]


def test_pause_refuses_what_is_not_a_queue(project: Project) -> None:
    bad = project.run("pause", "tapp:app", "<script>")
    assert bad.returncode == 1 and "invalid queue name" in bad.stderr and "Traceback" not in bad.stderr
    assert project.run("pause", "tapp:app").returncode == 2  # QUEUE... is required
    assert project.run("resume", "tapp:app").returncode == 2
    assert project.client.paused_queues() == frozenset()


def test_limits_shows_declarations_and_live_usage(lapp: Project) -> None:
    backend = lapp.client.backend
    assert backend.acquire_slots([SlotRequest("job:sync_account", "a:1", 5), SlotRequest("job:per_user:ann", "b:1", 1),
                                  SlotRequest("job:per_user:bob", "c:1", 1)], 60) == [True] * 3

    table = lapp.ok("limits", "lapp:app").stdout
    assert "job:sync_account" in table and "100/m" in table
    assert "job:per_user (per limit_key)" in table and "1 each" in table and "2 (ann: 1, bob: 1)" in table
    assert "queue:reports" in table and "10/s" in table

    shown = json.loads(lapp.ok("limits", "lapp:app", "--json").stdout)
    assert shown["usage_supported"] is True
    rows = {row["key"]: row for row in shown["limits"]}
    assert set(rows) == {"job:sync_account", "job:per_user", "queue:reports"}
    assert (rows["job:sync_account"]["concurrency"], rows["job:sync_account"]["running"]) == (5, 1)
    assert rows["job:per_user"]["partitions"] == {"ann": 1, "bob": 1}
    assert (rows["queue:reports"]["rate_limit"], rows["queue:reports"]["running"]) == ("10/s", 0)

    # without the handlers only the limits in use are known
    by_url = json.loads(lapp.ok("limits", "--url", lapp.url, "--json").stdout)["limits"]
    assert {(row["key"], row["declared"], row["running"]) for row in by_url} == {
        ("job:sync_account", False, 1), ("job:per_user:ann", False, 1), ("job:per_user:bob", False, 1)}
    assert "in use, not declared by this app" in lapp.ok("limits", "--url", lapp.url).stdout

    stats = lapp.ok("stats", "lapp:app")
    assert "job:sync_account" in stats.stdout  # stats lists the limits under the queues
    assert {row["key"] for row in json.loads(lapp.ok("stats", "lapp:app", "--json").stdout)["limits"]} == set(rows)


def test_limits_without_any(project: Project) -> None:
    result = project.ok("limits", "tapp:app")
    assert "limits: none declared" in result.stderr and result.stdout == ""
    assert json.loads(project.ok("limits", "tapp:app", "--json").stdout) == {"usage_supported": True, "limits": []}


def test_show_a_workflow_step_with_its_progress_and_links(project: Project) -> None:
    client = project.client
    add, echo = client.handler("add"), client.handler("echo")
    first, second, callback = client.group([add.s(1, 2), add.s(3, 4)]).then(echo.s()).perform().ids

    detail = project.ok("show", "tapp:app", callback).stdout
    assert "0 of 2 finished (2 waiting); runs whatever they end as" in detail
    assert f"{first} available" in detail and f"{second} available" in detail
    member = project.ok("show", "tapp:app", first).stdout
    assert "wakes" in member and f"{callback} scheduled" in member and "progress" not in member

    project.ok("worker", "tapp:app", "--burst")
    assert _state(project, callback) == "succeeded"
    shown = json.loads(project.ok("show", "tapp:app", callback, "--json").stdout)
    assert shown["workflow"]["after"] == [first, second] and shown["workflow"]["feed"] == "summary"
    assert shown["workflow"]["progress"]["succeeded"] == 2 and shown["workflow"]["progress"]["done"] is True
    assert shown["result"]["args"][0]["succeeded"] == 2  # the callback was handed the group's summary
    assert "2 of 2 finished (2 succeeded)" in project.ok("show", "tapp:app", callback).stdout
    plain = json.loads(project.ok("show", "tapp:app", client.perform("add", 1, 1).id, "--json").stdout)
    assert plain["workflow"] is None and plain["outcome"] is None


def test_cancel_a_running_job(lapp: Project) -> None:
    job_id = lapp.client.perform("patient").id
    lapp.spawn("worker", "lapp:app", "-c", "1")
    wait_until(lambda: _state(lapp, job_id) == "running", timeout=30, message="the job started")

    asked = lapp.ok("cancel", "lapp:app", job_id)
    assert "is running: its handler is asked to stop" in asked.stderr
    wait_until(lambda: _state(lapp, job_id) == "cancelled", timeout=30, message="the handler stopped")

    detail = lapp.ok("show", "lapp:app", job_id).stdout
    assert "outcome" in detail and "cancelled while running: its handler was asked to stop" in detail
    assert json.loads(lapp.ok("show", "lapp:app", job_id, "--json").stdout)["outcome"].startswith(
        "cancelled while running")
    assert "already cancelled while running" in lapp.ok("cancel", "lapp:app", job_id).stderr

    waiting = lapp.client.perform_in(3600, "add", 1, 1).id
    assert f"job {waiting} cancelled" in lapp.ok("cancel", "lapp:app", waiting).stderr
    assert "cancelled before it started" in lapp.ok("show", "lapp:app", waiting).stdout
