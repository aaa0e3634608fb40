"""``errands enqueue``: enqueue a registered job from the shell; prints its id."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from ..app import Errands
from . import Duration, _output, app_command

__all__ = ["enqueue", "parse_argument", "parse_when"]


def parse_argument(text: str) -> Any:
    """JSON when it parses (``42``, ``true``, ``[1,2]``, ``'"42"'`` for the string), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_when(text: str) -> datetime:
    """ISO 8601; a time without an offset is local time, as a person at this shell means it."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time, e.g. 2030-01-01T09:00:00+00:00",
                                 param_hint="'--at'") from None
    return when.astimezone() if when.tzinfo is None else when


@app_command(handlers=True, name="enqueue")
@click.argument("name")
@click.argument("args", nargs=-1, metavar="[ARG]...")
@click.option("--kwargs", "kwargs_json", metavar="JSON", help='Keyword arguments as a JSON object: \'{"width": 64}\'.')
@click.option("--in", "delay", type=Duration(), metavar="SECONDS", help="Run after a delay: 90, 30s, 15m, 2h.")
@click.option("--at", "at", metavar="ISO8601", help="Run at a time (no offset: local time).")
@click.option("--queue", "-q", metavar="QUEUE", help="Override the job's queue.")
@click.option("--priority", type=int, help="Override the job's priority (-100..100, higher first).")
@click.option("--unique-key", metavar="KEY", help="Return the existing job if one with this key is unfinished.")
def enqueue(app: Errands, name: str, args: tuple[str, ...], kwargs_json: str | None, delay: float | None,
            at: str | None, queue: str | None, priority: int | None, unique_key: str | None) -> None:
    """Enqueue the job registered as NAME. Each ARG is parsed as JSON when it parses, else
    taken as a string; put -- before arguments that start with a dash (-- -5)."""
    if delay is not None and at is not None:
        raise click.UsageError("give --in or --at, not both")
    kwargs = _kwargs(kwargs_json)
    options = {k: v for k, v in (("queue", queue), ("priority", priority), ("unique_key", unique_key))
               if v is not None}
    job = app.handler(name)
    if options:
        job = job.with_options(**options)
    values = [parse_argument(arg) for arg in args]
    if at is not None:
        handle = job.perform_at(parse_when(at), *values, **kwargs)
    elif delay is not None:
        handle = job.perform_in(delay, *values, **kwargs)
    else:
        handle = job.perform(*values, **kwargs)
    if not handle.created:
        _output.note(f"an unfinished job with this unique key exists; its id is {handle.id}")
    _output.job_id(handle.id)


def _kwargs(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON ({exc})", param_hint="'--kwargs'") from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object, like '{\"width\": 64}'", param_hint="'--kwargs'")
    return value

