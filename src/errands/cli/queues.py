"""Queue control and limits: ``pause``, ``resume`` and ``limits``."""

from __future__ import annotations

import click

from .. import _report
from ..app import Errands
from ..errors import NotSupported
from . import CliError, _output, app_command

__all__ = ["limits", "pause", "resume"]


def _control(app: Errands, queues: tuple[str, ...], pause: bool) -> None:
    try:
        (app.pause_queue if pause else app.resume_queue)(*queues)
    except NotSupported:
        raise CliError(f"{type(app.backend).__name__} can't pause queues (no queue control)") from None


@app_command(handlers=False, name="pause")
@click.argument("queues", nargs=-1, required=True, metavar="QUEUE...")
def pause(app: Errands, queues: tuple[str, ...]) -> None:
    """Pause queues: no worker starts their jobs until `errands resume`.

    Running jobs finish; waiting ones stay available and keep their place."""
    _control(app, queues, pause=True)
    _output.success(f"paused {', '.join(queues)}: workers start none of their jobs (running ones finish)")


@app_command(handlers=False, name="resume")
@click.argument("queues", nargs=-1, required=True, metavar="QUEUE...")
def resume(app: Errands, queues: tuple[str, ...]) -> None:
    """Resume paused queues: workers start their jobs again."""
    _control(app, queues, pause=False)
    _output.success(f"resumed {', '.join(queues)}: workers start their jobs again")


@app_command(handlers=False, name="limits")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def limits(app: Errands, as_json: bool) -> None:
    """Show the concurrency and rate limits APP declares, with the jobs holding them now.

    With --url only the limits in use are known (the declarations live in the handlers' code)."""
    rows, usage_known = _report.limit_rows(app)
    if as_json:
        _output.json_out({"usage_supported": usage_known, "limits": [row.as_dict() for row in rows]})
        return
    _output.limits_table(rows, usage_known)
