"""errands.contrib.flask with a real Flask app built by an app factory: settings from the Flask
config, a job enqueued by a view through the test client, and ``flask errands worker --burst``
run through Flask's CliRunner."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flask")

import flask

from errands import ConfigurationError, JobState
from errands.contrib.flask import FlaskErrands
from errands.testing import drain, eager


def build(tmp_path: Path) -> tuple[FlaskErrands, Callable[..., flask.Flask]]:
    """What a user's project holds: the extension and its jobs, defined before any app exists,
    and the factory."""
    jobs = FlaskErrands()

    @jobs.job(queue="mail")
    def send_welcome(user_id: int) -> str:
        # a worker thread: only the extension's app context makes current_app work here
        return f"{flask.current_app.config['GREETING']}, user {user_id}"

    @jobs.job()
    async def resize(image_id: str) -> str:
        return f"{flask.current_app.name}: {image_id}"

    def create_app(**config: Any) -> flask.Flask:
        app = flask.Flask("shop")
        app.config.update({"ERRANDS_URL": f"sqlite:///{tmp_path}/jobs.db", "GREETING": "hello", **config})
        jobs.init_app(app)

        @app.post("/signup/<int:user_id>")
        def signup(user_id: int) -> dict[str, str]:
            return {"job": send_welcome.perform(user_id).id}

        @app.post("/upload/<image_id>")
        def upload(image_id: str) -> dict[str, str]:
            return {"job": resize.perform(image_id).id}

        return app

    return jobs, create_app


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The worker command sets up the errands logger as the CLI does; put it back for other tests."""
    logger = logging.getLogger("errands")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def test_settings_come_from_the_flask_config(tmp_path: Path) -> None:
    jobs, create_app = build(tmp_path)
    app = create_app(ERRANDS_LEASE=12, ERRANDS_POLL_INTERVAL=0.1)
    assert app.extensions["errands"] is jobs and jobs.flask_app is app
    assert jobs.settings.url == f"sqlite:///{tmp_path}/jobs.db"
    assert (jobs.settings.lease, jobs.settings.poll_interval) == (12, 0.1)


def test_keywords_are_defaults_the_config_overrides(tmp_path: Path) -> None:
    jobs = FlaskErrands(url="memory://", lease=20)
    app = flask.Flask("shop")
    app.config["ERRANDS_LEASE"] = 40
    jobs.init_app(app)
    assert (jobs.settings.url, jobs.settings.lease) == ("memory://", 40)
    assert FlaskErrands(flask.Flask("bound_at_once"), url="memory://").flask_app is not None
    with pytest.raises(ConfigurationError, match="url='memory://'"):
        FlaskErrands("memory://")  # type: ignore[arg-type]


def test_a_bad_setting_names_the_flask_config(tmp_path: Path) -> None:
    _, create_app = build(tmp_path)
    with pytest.raises(ConfigurationError, match="Flask config.*lease"):
        create_app(ERRANDS_LEASE="soon")


def test_a_view_enqueues_and_flask_errands_worker_runs_it(tmp_path: Path) -> None:
    jobs, create_app = build(tmp_path)
    app = create_app()
    try:
        answer = app.test_client().post("/signup/42")
        job_id = answer.get_json()["job"]
        resized = app.test_client().post("/upload/img-1").get_json()["job"]
        assert jobs.get_job(job_id).state is JobState.AVAILABLE  # type: ignore[union-attr]

        result = app.test_cli_runner().invoke(args=["errands", "worker", "--burst", "-c", "2"])
        assert result.exit_code == 0, result.output
        info = jobs.get_job(job_id)
        assert info is not None and info.state is JobState.SUCCEEDED and info.result == "hello, user 42"
        assert jobs.get_job(resized).result == "shop: img-1"  # type: ignore[union-attr]
    finally:
        jobs.close()


def test_the_worker_command_takes_queues_and_refuses_bad_ones(tmp_path: Path) -> None:
    jobs, create_app = build(tmp_path)
    app = create_app()
    runner = app.test_cli_runner()
    try:
        client = app.test_client()
        mail = client.post("/signup/1").get_json()["job"]
        image = client.post("/upload/a").get_json()["job"]
        assert runner.invoke(args=["errands", "worker", "--burst", "-q", "mail"]).exit_code == 0
        assert jobs.get_job(mail).state is JobState.SUCCEEDED  # type: ignore[union-attr]
        assert jobs.get_job(image).state is JobState.AVAILABLE  # type: ignore[union-attr]
        bad = runner.invoke(args=["errands", "worker", "--burst", "-q", "no spaces"])
        assert bad.exit_code == 2 and "invalid queue name" in bad.output
        assert "worker" in runner.invoke(args=["errands", "--help"]).output
    finally:
        jobs.close()


def test_the_flask_command_finds_the_group_through_the_app_factory(tmp_path: Path) -> None:
    """As ``flask --app myapp:create_app errands worker`` does: FlaskGroup builds the app, and
    init_app has added the group to it."""
    from click.testing import CliRunner
    from flask.cli import FlaskGroup

    jobs, create_app = build(tmp_path)
    app = create_app()
    job_id = app.test_client().post("/signup/3").get_json()["job"]
    try:
        cli = FlaskGroup(create_app=create_app)
        result = CliRunner().invoke(cli, ["errands", "worker", "--burst"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert jobs.get_job(job_id).result == "hello, user 3"  # type: ignore[union-attr]
    finally:
        jobs.close()


def test_another_app_with_other_settings_gets_its_own_store(tmp_path: Path) -> None:
    jobs, create_app = build(tmp_path)
    first = create_app()
    first.test_client().post("/signup/1")
    assert jobs.stats()["available"] == 1
    second = flask.Flask("other")
    second.config.update(ERRANDS_URL="memory://", GREETING="hi")
    jobs.init_app(second)
    assert jobs.stats()["available"] == 0
    assert jobs.flask_app is second
    with second.test_request_context():
        assert jobs.registry["send_welcome"].perform(5).id
    assert drain(jobs).succeeded == 1
    assert jobs.list_jobs(state="succeeded")[0].result == "hi, user 5"


def test_errands_testing_helpers_run_handlers_in_the_app_context(tmp_path: Path) -> None:
    jobs, create_app = build(tmp_path)
    app = create_app(ERRANDS_URL="memory://")
    with eager(jobs):
        job_id = app.test_client().post("/signup/9").get_json()["job"]
    assert jobs.get_job(job_id).result == "hello, user 9"  # type: ignore[union-attr]
