"""``python manage.py errands COMMAND``: errands' own command line, given this project's app.

``manage.py errands worker -c 8`` is ``errands worker APP -c 8`` with APP the ``Errands`` app of
``TASKS["default"]`` (``--backend ALIAS`` before COMMAND picks another), so every command and
option is the one the ``errands`` command documents: worker, enqueue, jobs, show, stats, retry,
cancel, purge, dashboard, migrate, pause, resume, limits. ``manage.py errands COMMAND --help``
shows its options.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

import click
from django.core.management.base import BaseCommand, CommandError

from errands.cli import main
from errands.contrib.django.backend import get_app
from errands.errors import ConfigurationError

__all__ = ["COMMANDS", "Command", "cli_arguments"]

COMMANDS = ("worker", "enqueue", "jobs", "show", "stats", "retry", "cancel", "purge", "dashboard", "migrate",
            "pause", "resume", "limits")
# options manage.py has applied already (ManagementUtility reads them before any command runs)
_DJANGO_OPTIONS = ("--settings", "--pythonpath")
_HELP = """Usage: {prog} [--backend ALIAS] COMMAND [OPTIONS]

  Run and steer this project's tasks with errands, on the TASKS backend ALIAS ("default").

Commands:
  worker     Run tasks until SIGTERM/SIGINT (-c N at once, -p N processes, -q QUEUE, --burst)
  enqueue    Enqueue a task by its dotted path: enqueue myapp.tasks.send_welcome 42
  jobs       List jobs, newest first (--state, --queue, --name, --limit, --json)
  show       Show one job with its error and traceback, and a workflow step's progress
  stats      Jobs by state for every queue, paused queues and limits (--watch, --json)
  retry      Retry a failed or cancelled job, or --all-failed
  cancel     Cancel a job (a running one: its handler is asked to stop)
  purge      Delete finished jobs (--state succeeded --older-than 7d)
  dashboard  Serve the web dashboard (or mount it under /admin/errands/: see the docs)
  migrate    Create or upgrade errands' tables
  pause      Pause queues: workers start none of their jobs (running ones finish)
  resume     Resume paused queues
  limits     Declared concurrency and rate limits, with the jobs holding them now

  {prog} COMMAND --help shows a command's options.
"""


class Command(BaseCommand):  # type: ignore[misc]  # Django is untyped
    help = "Run and steer this project's tasks with errands: worker, stats, jobs, retry, ..."

    def run_from_argv(self, argv: list[str]) -> None:
        # click parses the rest: argparse would reject the options it doesn't know
        prog = f"{os.path.basename(argv[0])} {argv[1]}"
        try:
            arguments = cli_arguments(argv[2:], prog)
        except (CommandError, ConfigurationError) as exc:  # one line, as Django prints its own
            self.stderr.write(f"{type(exc).__name__}: {exc}")
            raise SystemExit(1) from None
        if arguments is not None:
            main.main(args=arguments, prog_name=prog, standalone_mode=True)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("arguments", nargs=argparse.REMAINDER, help="COMMAND and its options")

    def handle(self, *args: Any, **options: Any) -> None:
        """``call_command("errands", "stats", "--json")``: a failure is a ``CommandError``."""
        arguments = cli_arguments([*args, *options.get("arguments", [])], "errands")
        if arguments is None:
            return
        try:
            main.main(args=arguments, prog_name="manage.py errands", standalone_mode=False)
        except click.ClickException as exc:
            raise CommandError(exc.format_message()) from exc
        except click.exceptions.Exit as exc:
            if exc.exit_code:
                raise CommandError(f"exit code {exc.exit_code}") from exc


def cli_arguments(argv: Sequence[str], prog: str) -> list[str] | None:
    """The ``errands`` command line for ``manage.py errands ARGV``: APP put after COMMAND. None
    when there is nothing to run (the help was printed)."""
    args = _without_django_options(argv)
    alias = "default"
    if args and (args[0] == "--backend" or args[0].startswith("--backend=")):
        if args[0] == "--backend":
            if len(args) < 2:
                raise CommandError("--backend needs an ALIAS of settings.TASKS")
            alias, args = args[1], args[2:]
        else:
            alias, args = args[0].split("=", 1)[1], args[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        click.echo(_HELP.format(prog=prog).rstrip())
        return None
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        raise CommandError(f"unknown command {command!r}: one of {', '.join(COMMANDS)}")
    get_app(alias)  # a missing alias or a bad OPTIONS fails here, in Django's words
    return [command, f"errands.contrib.django.aliases:{alias}", *rest]


def _without_django_options(argv: Sequence[str]) -> list[str]:
    args, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _DJANGO_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{name}=" for name in _DJANGO_OPTIONS)):
            args.append(arg)
    return args
