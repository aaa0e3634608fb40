"""``errands demo`` in an empty folder: it brings its own app and SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import Project


def test_demo_runs_every_job_and_prints_a_summary(project: Project, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = project.run("demo", "-n", "300", cwd=empty, timeout=120)
    assert result.returncode == 0, result.stderr
    for label in ("jobs", "300", "throughput", "jobs/s", "failed once, retried", "succeeded"):
        assert label in result.stdout
    assert "every job succeeded" in result.stderr
    assert list(empty.iterdir()) == []  # errands-demo.db and its -wal/-shm are gone


def test_demo_keep_leaves_a_database_to_explore(project: Project, tmp_path: Path) -> None:
    folder = tmp_path / "keep"
    folder.mkdir()
    (folder / "errands-demo.db").write_bytes(b"left over from an earlier run")  # replaced, not reused
    result = project.run("demo", "-n", "30", "--keep", cwd=folder, timeout=120)
    assert result.returncode == 0, result.stderr
    listed = project.run("jobs", "--url", "sqlite:///errands-demo.db", "--json", cwd=folder)
    jobs = json.loads(listed.stdout)
    assert len(jobs) == 30 and {job["state"] for job in jobs} == {"succeeded"}
    assert {job["queue"] for job in jobs} == {"mail", "media", "reports"}
    retried = [job for job in jobs if job["attempts"] == 2]
    assert retried and all(job["error"] for job in retried)  # the first attempt's error stays on the job


def test_demo_jobs_fail_first_deterministically() -> None:
    from errands._demo import fails_first

    failing = [key for key in range(10_000) if fails_first(key)]
    assert 200 <= len(failing) <= 500  # a few percent
    assert {key % 3 for key in failing} == {0, 1, 2}  # every kind of job has some
