"""enqueue → jobs → show → worker --burst → stats, and retry / cancel / purge / migrate, each
through the real command line on one SQLite file."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime, timezone

import pytest

from .conftest import Project


def enqueue(project: Project, *args: str) -> str:
    job_id = project.ok("enqueue", "tapp:app", *args).stdout.strip()
    assert len(job_id) == 36 and "\n" not in job_id  # only the id: `JOB=$(errands enqueue ...)` works
    return job_id


def test_enqueue_list_show_work_stats(project: Project) -> None:
    added = enqueue(project, "add", "1", "2")
    failing = enqueue(project, "boom", "kaput")

    listed = json.loads(project.ok("jobs", "tapp:app", "--json").stdout)
    assert [job["id"] for job in listed] == [failing, added]  # newest first
    assert {job["state"] for job in listed} == {"available"}
    table = project.ok("jobs", "tapp:app").stdout
    assert added in table and failing in table and "available" in table

    shown = json.loads(project.ok("show", "tapp:app", added, "--json").stdout)
    assert (shown["name"], shown["args"], shown["state"]) == ("add", [1, 2], "available")

    project.ok("worker", "tapp:app", "--burst")

    stats = json.loads(project.ok("stats", "tapp:app", "--json").stdout)
    assert stats["total"]["succeeded"] == 1 and stats["total"]["failed"] == 1
    assert stats["queues"]["default"]["succeeded"] == 1
    table = project.ok("stats", "tapp:app").stdout
    assert "SUCCEEDED" in table and "default" in table

    assert json.loads(project.ok("show", "tapp:app", added, "--json").stdout)["result"] == 3
    detail = project.ok("show", "tapp:app", failing).stdout
    assert "failed" in detail and "ValueError: kaput" in detail and "Traceback (most recent call last)" in detail


def test_enqueue_parses_arguments_as_json_when_they_parse(project: Project) -> None:
    job_id = enqueue(project, "echo", "42", '"42"', "hello", "[1, 2]", "true", "--kwargs", '{"k": null}',
                     "--", "-5")
    info = project.client.get_job(job_id)
    assert info is not None
    assert info.args == [42, "42", "hello", [1, 2], True, -5]
    assert info.kwargs == {"k": None}


def test_enqueue_options(project: Project) -> None:
    before = time.time()
    later = project.client.get_job(enqueue(project, "add", "1", "2", "--in", "1h"))
    assert later is not None and later.state == "scheduled" and later.run_at is not None
    assert before + 3590 < later.run_at.timestamp() < time.time() + 3610

    at = project.client.get_job(enqueue(project, "add", "1", "2", "--at", "2030-01-01T09:00:00Z"))
    assert at is not None and at.run_at == datetime(2030, 1, 1, 9, tzinfo=timezone.utc)

    moved = project.client.get_job(enqueue(project, "add", "1", "2", "--queue", "other", "--priority", "7"))
    assert moved is not None and (moved.queue, moved.priority) == ("other", 7)

    first = enqueue(project, "add", "1", "2", "--unique-key", "k1")
    again = project.ok("enqueue", "tapp:app", "add", "1", "2", "--unique-key", "k1")
    assert again.stdout.strip() == first and "unique key" in again.stderr


@pytest.mark.parametrize("args", [
    ["--in", "10", "--at", "2030-01-01T00:00:00Z"],
    ["--at", "next tuesday"],
    ["--in", "soon"],
    ["--kwargs", "[1]"],
    ["--kwargs", "{not json"],
])
def test_enqueue_bad_options_are_usage_errors(project: Project, args: list[str]) -> None:
    result = project.run("enqueue", "tapp:app", "add", "1", "2", *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_jobs_filters(project: Project) -> None:
    enqueue(project, "add", "1", "2")
    slow = enqueue(project, "nap", "0")
    assert [j["id"] for j in json.loads(project.ok("jobs", "tapp:app", "-q", "slow", "--json").stdout)] == [slow]
    assert len(json.loads(project.ok("jobs", "tapp:app", "--limit", "1", "--json").stdout)) == 1
    assert json.loads(project.ok("jobs", "tapp:app", "--state", "failed", "--json").stdout) == []
    assert "no jobs match" in project.ok("jobs", "tapp:app", "--state", "failed").stderr


def test_retry_and_cancel(project: Project) -> None:
    failing = enqueue(project, "boom", "kaput")
    project.ok("worker", "tapp:app", "--burst")
    assert project.client.get_job(failing).state == "failed"  # type: ignore[union-attr]

    project.ok("retry", "tapp:app", failing)
    assert project.client.get_job(failing).state == "available"  # type: ignore[union-attr]
    again = project.run("retry", "tapp:app", failing)
    assert again.returncode == 1 and "is available: only failed or cancelled jobs can be retried" in again.stderr

    project.ok("cancel", "--url", project.url, failing)
    assert project.client.get_job(failing).state == "cancelled"  # type: ignore[union-attr]
    assert "already cancelled" in project.ok("cancel", "tapp:app", failing).stderr

    done = enqueue(project, "add", "1", "2")
    project.ok("worker", "tapp:app", "--burst")
    finished = project.run("cancel", "tapp:app", done)
    assert finished.returncode == 1 and "already succeeded" in finished.stderr
    assert project.run("cancel", "tapp:app", "no-such-id").returncode == 1
    assert project.run("retry", "tapp:app").returncode == 2  # neither JOB_ID nor --all-failed


def test_retry_all_failed(project: Project) -> None:
    failing = [enqueue(project, "boom", str(n)) for n in range(3)]
    enqueue(project, "add", "1", "2")
    project.ok("worker", "tapp:app", "--burst")
    result = project.ok("retry", "--url", project.url, "--all-failed")
    assert "3 failed job(s) back in their queues" in result.stderr
    assert {project.client.get_job(j).state for j in failing} == {"available"}  # type: ignore[union-attr]


def test_purge(project: Project) -> None:
    for n in range(3):
        enqueue(project, "add", str(n), "1")
    enqueue(project, "boom", "kaput")
    project.ok("worker", "tapp:app", "--burst")
    assert "purged 0 succeeded job(s) that finished more than 7d ago" in project.ok(
        "purge", "tapp:app", "--state", "succeeded", "--older-than", "7d").stderr
    assert "purged 3 succeeded job(s)" in project.ok("purge", "tapp:app", "--state", "succeeded").stderr
    assert project.client.stats()["succeeded"] == 0 and project.client.stats()["failed"] == 1
    for bad in (["--state", "running"], ["--state", "failed", "--older-than", "soon"], []):
        assert project.run("purge", "tapp:app", *bad).returncode == 2


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("15m", 900), ("12h", 43200), ("7d", 604800),
                                               ("90", 90), ("1.5h", 5400)])
def test_durations(text: str, seconds: float) -> None:
    from errands.cli import Duration

    assert Duration().convert(text, None, None) == seconds


def test_stats_watch_refreshes_until_ctrl_c(project: Project) -> None:
    enqueue(project, "add", "1", "2")
    watch = project.spawn("stats", "tapp:app", "--watch", "--interval", "0.1")
    watch.wait_for(r"QUEUE", count=2, stream="stdout")  # two refreshes, appended into the pipe
    watch.signal(signal.SIGINT)
    assert watch.wait(30) == 0
    assert project.run("stats", "tapp:app", "--watch", "--json").returncode == 2


def test_migrate_creates_the_schema(project: Project) -> None:
    fresh = project.root / "fresh.db"
    result = project.ok("migrate", "--url", f"sqlite:///{fresh}")
    assert fresh.exists()
    assert "SqliteBackend" in result.stdout and "schema" in result.stdout
    assert "0 succeeded" in project.ok("migrate", "tapp:app").stdout
