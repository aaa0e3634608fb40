"""Flask: ``FlaskErrands``, an ``Errands`` configured from the Flask config (app factories welcome),
whose handlers run inside the Flask app context, and the ``flask errands worker`` command.

::

    # myapp/jobs.py: defined before any Flask app exists
    from errands.contrib.flask import FlaskErrands

    jobs = FlaskErrands()

    @jobs.job(queue="mail")
    def send_welcome(user_id: int) -> None:
        mailer = current_app.extensions["mail"]    # handlers run inside the app context
        ...

    # myapp/__init__.py
    def create_app() -> Flask:
        app = Flask(__name__)
        app.config["ERRANDS_URL"] = "postgresql://app@db/app"
        jobs.init_app(app)
        return app

Then ``send_welcome.perform(42)`` in a view, and ``flask --app myapp errands worker -c 8`` (or
``errands worker myapp.jobs:jobs``) to run them.

Config keys, read by ``init_app`` and winning over the constructor's keywords: ``ERRANDS_URL``,
``ERRANDS_LEASE``, ``ERRANDS_STORE``, ``ERRANDS_HEARTBEAT``, ``ERRANDS_POLL_INTERVAL``,
``ERRANDS_MAX_PAYLOAD_BYTES``, ``ERRANDS_MAX_ERROR_BYTES`` (the ``Errands`` options of those
names). One ``FlaskErrands`` serves one store at a time: an ``init_app`` with other settings
closes the previous connections (tests that build an app per test may do that freely).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import click
from flask.cli import AppGroup

from ..app import Errands
from ..cli import _output
from ..cli.worker import _queue_names
from ..config import Settings
from ..errors import ConfigurationError, ErrandsError
from ..jobs import JobFunction

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["CONFIG_KEYS", "FlaskErrands"]

# Flask config key -> Errands option
CONFIG_KEYS = {f"ERRANDS_{name.upper()}": name for name in (
    "url", "lease", "store", "heartbeat", "poll_interval", "max_payload_bytes", "max_error_bytes")}


class FlaskErrands(Errands):
    """An ``Errands`` bound to a Flask app by ``init_app``; everything else is ``Errands``.

    >>> jobs = FlaskErrands()                 # app factory: jobs.init_app(app) inside create_app()
    >>> jobs = FlaskErrands(app)              # or bind at once
    >>> jobs = FlaskErrands(url="memory://")  # keywords are defaults the Flask config overrides
    """

    def __init__(self, flask_app: Flask | None = None, *, url: str | None = None, **options: Any) -> None:
        if isinstance(flask_app, str):  # Errands takes the URL first; here the app comes first
            raise ConfigurationError(f"FlaskErrands takes a Flask app first: write FlaskErrands("
                                     f"url={flask_app!r}), or set ERRANDS_URL in the Flask config")
        super().__init__(url, **options)
        self._defaults: dict[str, Any] = {"url": url, **options}
        self.flask_app: Flask | None = None
        self._in_context: dict[str, tuple[JobFunction[Any, Any], JobFunction[Any, Any]]] = {}
        if flask_app is not None:
            self.init_app(flask_app)

    def init_app(self, flask_app: Flask) -> None:
        """Read the settings from ``flask_app.config``, register ``flask errands ...`` and keep
        the app for the context handlers run in."""
        settings = _settings(flask_app.config, self._defaults)
        if settings != self.settings:
            self.close()  # the backend opens again, from the new settings, on next use
            self.settings = settings
        self.flask_app = flask_app
        self._in_context.clear()
        flask_app.extensions["errands"] = self
        flask_app.cli.add_command(_command_group(self))

    def handler(self, name: str) -> JobFunction[Any, Any]:
        """The registered job, its function wrapped to run inside the Flask app context: a worker
        runs handlers on threads of its own, where Flask would otherwise have no app context."""
        job = super().handler(name)
        flask_app = self.flask_app
        if flask_app is None:
            return job
        cached = self._in_context.get(name)
        if cached is None or cached[0] is not job:
            wrapped = JobFunction(self, _in_app_context(flask_app, job.func), job.name, job.options)
            cached = self._in_context[name] = (job, wrapped)
        return cached[1]


def _settings(config: Mapping[str, Any], defaults: Mapping[str, Any]) -> Settings:
    values = dict(defaults)
    values.update({option: config[key] for key, option in CONFIG_KEYS.items() if key in config})
    url = values.pop("url", None)
    try:
        return Settings.build(url, **values)
    except ConfigurationError as exc:
        raise ConfigurationError(f"errands settings from the Flask config (ERRANDS_*): {exc}") from None


def _in_app_context(flask_app: Flask, func: Callable[..., Any]) -> Callable[..., Any]:
    # a fresh app context per job, as a request gets one: g and teardown callbacks per job
    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            with flask_app.app_context():
                return await func(*args, **kwargs)

        return run_async

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        with flask_app.app_context():
            return func(*args, **kwargs)

    return run


_LEVELS = click.Choice(["debug", "info", "warning", "error"], case_sensitive=False)


def _command_group(jobs: FlaskErrands) -> click.Group:
    group = AppGroup("errands", help="Background jobs of this app (errands).")

    @group.command("worker")
    @click.option("-q", "--queue", "queues", multiple=True, metavar="QUEUE",
                  help="A queue to work (repeat, or comma-separate); default: every queue.")
    @click.option("-c", "--concurrency", type=click.IntRange(1, 10_000), default=8, show_default=True,
                  metavar="N", help="Jobs run at once.")
    @click.option("--burst", is_flag=True, help="Exit once nothing is runnable.")
    @click.option("--grace", type=click.FloatRange(0, 86400), default=30.0, show_default=True,
                  metavar="SECONDS", help="On SIGTERM/SIGINT, how long running jobs get to finish.")
    @click.option("--log-level", type=_LEVELS, default="info", show_default=True)
    def worker(queues: tuple[str, ...], concurrency: int, burst: bool, grace: float, log_level: str) -> None:
        """Run jobs until SIGTERM/SIGINT (or, with --burst, until none is runnable).

        One process; for several, run this command several times or use `errands worker APP -p N`."""
        names = _queue_names(queues)
        _output.setup_logging(log_level)
        _output.worker_banner(jobs, names, concurrency, 1, burst)
        try:
            jobs.run_worker(queues=names or None, concurrency=concurrency, burst=burst, grace=grace)
        except ErrandsError as exc:  # a bad URL or an unreachable store: one line, not a traceback
            raise click.ClickException(str(exc) or type(exc).__name__) from exc

    return group
