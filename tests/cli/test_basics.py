"""The command group itself: help, version, APP resolution and how errors look."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import Project

COMMANDS = ["demo", "worker", "enqueue", "jobs", "show", "stats", "retry", "cancel", "purge", "dashboard", "migrate",
            "pause", "resume", "limits"]


def test_python_m_errands_help_lists_every_command(project: Project) -> None:
    result = project.ok("--help")
    listed = [line.split()[0] for line in result.stdout.split("Commands:", 1)[1].splitlines() if line.strip()]
    assert listed == COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(project: Project, command: str) -> None:
    result = project.ok(command, "--help")
    assert result.stdout.startswith("Usage: ")
    if command != "demo":
        assert "APP is module:attribute" in result.stdout


def test_version(project: Project) -> None:
    assert project.ok("--version").stdout.startswith("errands, version ")


def test_the_errands_script_entry_point_is_the_same_group(project: Project) -> None:
    # what [project.scripts] errands = "errands.cli:main" runs, without needing an install
    result = subprocess.run([sys.executable, "-c", "from errands.cli import main; main()", "--help"],
                            env=project.env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and "enqueue" in result.stdout


@pytest.mark.parametrize(("app", "message"), [
    ("tapp", "'tapp' is not module:attribute"),
    (":app", "is not module:attribute"),
    ("no_such_module:app", "no module named 'no_such_module'"),
    ("tapp.py:app", "did you mean 'tapp'?"),
    ("tapp:nope", "module 'tapp' has no attribute 'nope'; Errands objects in it: tapp:app"),
    ("tapp:not_an_app", "'tapp:not_an_app' is an int, not an Errands object"),
    ("tapp:add", "is a JobFunction, not an Errands object"),
])
def test_a_bad_app_is_a_usage_error_without_traceback(project: Project, app: str, message: str) -> None:
    result = project.run("jobs", app)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Invalid value for 'APP'" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_import_error_inside_the_app_module_shows_its_traceback(project: Project) -> None:
    (project.root / "broken.py").write_text("import not_installed_anywhere\n", encoding="utf-8")
    result = project.run("jobs", "broken:app")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "not_installed_anywhere" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["jobs", "--url", "bogus://nowhere"], "error: unknown backend URL 'bogus://nowhere'"),
    (["enqueue", "tapp:app", "no_such_job"], "error: no job handler is registered under the name 'no_such_job'"),
    (["show", "tapp:app", "no-such-id"], "error: no job with id 'no-such-id'"),
    (["jobs", "--url", "sqlite:////no/such/folder/jobs.db"], "error: SQLite database"),
    (["enqueue", "tapp:app", "add", "1", "2", "--queue", "bad queue!"], "error: invalid queue name"),
])
def test_library_errors_are_one_clean_line(project: Project, args: list[str], message: str) -> None:
    result = project.run(*args)
    assert result.returncode == 1
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_url_stands_in_for_app_before_or_after_other_arguments(project: Project) -> None:
    job_id = project.ok("enqueue", "tapp:app", "add", "1", "2").stdout.strip()
    assert job_id in project.ok("show", "--url", project.url, job_id).stdout
    assert job_id in project.ok("show", job_id, "--url", project.url).stdout
    assert job_id in project.ok("jobs", f"--url={project.url}").stdout


def test_app_and_url_together_is_a_usage_error(project: Project) -> None:
    result = project.run("show", "tapp:app", "some-id", "--url", project.url)
    assert result.returncode == 2
    assert "--url stands in for APP" in result.stderr


def test_commands_that_need_handlers_refuse_url(project: Project) -> None:
    for command in (["worker"], ["enqueue", "add", "1"]):
        result = project.run(*command, "--url", project.url)
        assert result.returncode == 2
        assert "needs APP" in result.stderr


def test_memory_url_works_for_read_commands(project: Project) -> None:
    result = project.ok("jobs", "--url", "memory://")
    assert "no jobs match" in result.stderr
    assert project.ok("stats", "--url", "memory://", "--json").stdout.strip().startswith("{")
