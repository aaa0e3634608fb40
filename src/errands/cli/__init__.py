"""The ``errands`` command line.

Every command that talks to a store takes APP, ``module:attribute`` naming an ``Errands``
object (as in Celery, RQ and uvicorn), resolved with the current folder on ``sys.path``.
Commands that need no handlers also accept ``--url URL`` in place of APP.

Errors a user can fix are one line, not a traceback: a bad APP is a usage error (exit 2);
an ``ErrandsError`` from the library (bad URL, unreachable backend, unknown job) exits 1.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from .. import __version__
from ..app import Errands
from ..errors import ErrandsError
from . import _output

__all__ = ["CliError", "Duration", "app_command", "load_app", "main"]

# Stands in for APP when --url is given, so APP stays the first positional argument for click.
_URL_SENTINEL = "\x00--url"
_APP_SPEC_KEY = "errands.app_spec"
_APP_HELP = ("APP is module:attribute naming your Errands object, e.g. myproject.jobs:app "
             "(the current folder is on the import path).")


class CliError(click.ClickException):
    """A failure the user can act on: shown as one ``error:`` line, exit code 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        _output.error(self.format_message())


class ErrandsGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ErrandsError as exc:
            raise CliError(str(exc) or type(exc).__name__) from exc

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # in the order of DESIGN §3, not alphabetical


@click.group(cls=ErrandsGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="errands")
def main() -> None:
    """errands: background jobs for Python, from a SQLite file to Redis, PostgreSQL, MySQL or RabbitMQ.

    Try `errands demo` to see it run 10,000 jobs on the embedded SQLite store.
    """


# APP resolution ----------------------------------------------------------------------------------
def load_app(spec: str) -> Errands:
    """Import ``module:attribute`` and return the Errands object it names. Raises
    ``click.BadParameter`` (exit 2) when the string, module or attribute is wrong."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise _bad_app(f"{spec!r} is not module:attribute; write it like myproject.jobs:app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like uvicorn and celery: the user's project is where they stand
    module = _import(module_name)
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise _bad_app(f"module {module_name!r} has no attribute {attribute!r}"
                           + _suggest(module)) from None
    if not isinstance(target, Errands):
        raise _bad_app(f"{spec!r} is {_a(type(target).__name__)}, not an Errands object" + _suggest(module))
    return target


def _import(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        if module_name != missing and not module_name.startswith(missing + "."):
            raise  # the user's module imports something missing: their traceback says where
        hint = f"; did you mean {module_name[:-3]!r}?" if module_name.endswith(".py") else ""
        raise _bad_app(f"no module named {missing!r} in {os.getcwd()} or on sys.path{hint}") from None


def _suggest(module: Any) -> str:
    names = sorted(name for name, value in vars(module).items() if isinstance(value, Errands))
    if not names:
        return ""
    return "; Errands objects in it: " + ", ".join(f"{module.__name__}:{n}" for n in names)


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"


def _bad_app(message: str) -> click.BadParameter:
    ctx = click.get_current_context(silent=True)
    return click.BadParameter(message, ctx=ctx, param_hint="'APP'")


def current_app_spec() -> str | None:
    """The APP string the running command was given (None with --url): the worker supervisor
    hands it to its child processes."""
    return click.get_current_context().meta.get(_APP_SPEC_KEY)


class AppCommand(click.Command):
    """A command whose first argument is APP. With ``--url`` the sentinel fills APP's slot, so
    ``errands show --url sqlite:///jobs.db JOB_ID`` parses JOB_ID as JOB_ID."""

    def __init__(self, *args: Any, accepts_url: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.accepts_url = accepts_url

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not _has_url(args):
            return super().parse_args(ctx, args)
        if not self.accepts_url:
            raise click.UsageError(f"{ctx.command_path} runs your handlers, so it needs APP "
                                   "(module:attribute); --url can't stand in for it", ctx)
        try:
            return super().parse_args(ctx, [_URL_SENTINEL, *args])
        except click.UsageError as exc:
            hint = f"{exc.message} (--url stands in for APP: give one or the other)"
            raise click.UsageError(hint, exc.ctx) from None


def _has_url(args: Sequence[str]) -> bool:
    for arg in args:
        if arg == "--":
            return False
        if arg == "--url" or arg.startswith("--url="):
            return True
    return False


def app_command(*, handlers: bool, **attrs: Any) -> Callable[[Callable[..., Any]], click.Command]:
    """Make a command whose function receives the resolved ``Errands`` as its first argument.
    ``handlers=False``: the command only reads or changes stored jobs, so ``--url`` may replace APP."""

    def decorate(function: Callable[..., Any]) -> click.Command:
        @functools.wraps(function)
        def run(*args: Any, app_spec: str, url: str | None = None, **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            if app_spec == _URL_SENTINEL:
                app = Errands(url)
            else:
                app = load_app(app_spec)
                ctx.meta[_APP_SPEC_KEY] = app_spec
            ctx.call_on_close(app.close)
            return function(app, *args, **kwargs)

        run.__doc__ = inspect.cleandoc(function.__doc__ or "") + "\n\n" + _APP_HELP + (
            "" if handlers else " --url URL may replace APP.")
        command = click.argument("app_spec", metavar="APP")(run)
        if not handlers:
            command = click.option("--url", metavar="URL",
                                   help="The backend URL, in place of APP (e.g. sqlite:///jobs.db).")(command)
        return click.command(cls=AppCommand, accepts_url=not handlers, **attrs)(command)

    return decorate


# parameters --------------------------------------------------------------------------------------
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h|d|w)?\s*", re.IGNORECASE)
_UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


if TYPE_CHECKING:
    _FloatType = click.ParamType[float]  # generic from click 8.2; subscripting fails at runtime on 8.1
else:
    _FloatType = click.ParamType


class Duration(_FloatType):
    """A duration: plain seconds (``90``) or with a unit (``30s``, ``15m``, ``12h``, ``7d``, ``2w``)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        match = _DURATION.fullmatch(str(value))
        if match is None:
            self.fail(f"{value!r} is not a duration; use e.g. 30s, 15m, 12h or 7d", param, ctx)
        number, unit = match.groups()
        return float(number) * _UNITS[unit.lower() if unit else None]


# The command modules import the helpers above, so they come last (Flask's blueprint pattern).
from .dashboard import dashboard
from .demo import demo
from .enqueue import enqueue
from .jobs import cancel, jobs, purge, retry, show
from .migrate import migrate
from .queues import limits, pause, resume
from .stats import stats
from .worker import worker

# DESIGN §3's commands in its order, then the ones added since
for _command in (demo, worker, enqueue, jobs, show, stats, retry, cancel, purge, dashboard, migrate,
                 pause, resume, limits):
    main.add_command(_command)
