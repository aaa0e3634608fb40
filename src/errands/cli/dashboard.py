"""``errands dashboard``: serve the web dashboard with uvicorn.

Binds 127.0.0.1 by default. Any other address needs a token (``--token`` or, better, since a
command line is visible to other users, ``$ERRANDS_DASHBOARD_TOKEN``), or it refuses to start.
On a loopback address without a token the dashboard is open to every local user and process
(a browser page on another site still can't use it: the Host check and CSRF tokens stop that).
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import click

from ..app import Errands
from ..errors import ConfigurationError
from . import _output, app_command

__all__ = ["dashboard"]

logger = logging.getLogger("errands.dashboard")

_WILDCARDS = ("0.0.0.0", "::", "[::]", "")
_LEVELS = click.Choice(["debug", "info", "warning", "error"], case_sensitive=False)


@app_command(handlers=False, name="dashboard")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--token", envvar="ERRANDS_DASHBOARD_TOKEN", show_envvar=True, metavar="TOKEN",
              help="Required to bind beyond loopback: sign in with it, or send Authorization: Bearer TOKEN.")
@click.option("--metrics-token", envvar="ERRANDS_METRICS_TOKEN", show_envvar=True, metavar="TOKEN",
              help="A second token that only reads /metrics (for Prometheus).")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="A Host name the dashboard answers to besides localhost (repeat); --host is added itself.")
@click.option("--log-level", type=_LEVELS, default="info", show_default=True)
def dashboard(app: Errands, host: str, port: int, token: str | None, metrics_token: str | None,
              allowed_hosts: tuple[str, ...], log_level: str) -> None:
    """Serve the web dashboard: queues, jobs, workers, throughput; retry, cancel, purge.

    With APP (rather than --url) it also lists the app's periodic jobs."""
    try:
        import uvicorn

        from ..dashboard.security import check_bind, is_loopback
    except ModuleNotFoundError as exc:
        raise ConfigurationError(f"the dashboard needs {exc.name!r}: pip install 'errands[dashboard]'") from None
    token = token or None
    check_bind(host, token)
    hosts = [*allowed_hosts]
    if host not in _WILDCARDS and not is_loopback(host):
        hosts.append(host)
    asgi = app.dashboard_app(token=token, allowed_hosts=hosts, scrape_token=metrics_token or None,
                             allow_unauthenticated=token is None)
    shown = f"[{host}]" if ":" in host else host
    _output.note(f"errands dashboard for {app!r} at http://{shown}:{port}/"
                 + ("" if token else "  (no token: open to every user of this machine)"))
    if host in _WILDCARDS and not allowed_hosts:
        _output.note("bound to every address: pass --allowed-host NAME for each name browsers will use "
                     "(other Host headers get 403)")
    _output.setup_logging(log_level)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again for the
    # handler it found: make that handler a clean exit 0, as the worker does
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)
    uvicorn.run(asgi, host=host, port=port, log_level=log_level.lower(), server_header=False,
                proxy_headers=False, access_log=log_level.lower() == "debug")


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)
