"""``errands worker``: run jobs, in this process (``-p 1``) or under a supervisor of N processes."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

import click

from ..app import Errands
from ..backends import Capability, backend_class
from ..config import check_queue_name
from ..errors import ConfigurationError
from ..worker.supervisor import Supervisor
from . import _output, app_command, current_app_spec

__all__ = ["worker"]

logger = logging.getLogger("errands.worker")

_LEVELS = click.Choice(["debug", "info", "warning", "error"], case_sensitive=False)


@app_command(handlers=True, name="worker")
@click.option("-q", "--queue", "queues", multiple=True, metavar="QUEUE",
              help="A queue to work (repeat, or comma-separate); default: every queue.")
@click.option("-c", "--concurrency", type=click.IntRange(1, 10_000), default=8, show_default=True,
              metavar="N", help="Jobs run at once by each process.")
@click.option("-p", "--processes", type=click.IntRange(1, 1024), default=1, show_default=True,
              metavar="N", help="Worker processes; above 1 a supervisor starts, watches and restarts them.")
@click.option("--burst", is_flag=True, help="Exit once nothing is runnable.")
@click.option("--grace", type=click.FloatRange(0, 86400), default=30.0, show_default=True, metavar="SECONDS",
              help="On SIGTERM/SIGINT, how long running jobs get to finish before they are put back.")
@click.option("--log-level", type=_LEVELS, default="info", show_default=True)
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None, metavar="PORT",
              help="Serve Prometheus metrics at http://HOST:PORT/metrics (with -p N: PORT to PORT+N-1).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, metavar="HOST",
              help="Address the metrics server binds.")
@click.option("--supervised", is_flag=True, hidden=True)  # set by the supervisor on its children
def worker(app: Errands, queues: tuple[str, ...], concurrency: int, processes: int, burst: bool, grace: float,
           log_level: str, metrics_port: int | None, metrics_host: str, supervised: bool) -> None:
    """Run jobs until SIGTERM/SIGINT.

    Shutdown is graceful: claiming stops, running jobs get --grace seconds to finish, unfinished
    ones go back to their queue, and the exit code is 0. With -p N a supervisor runs N worker
    processes and restarts any that dies."""
    names = _queue_names(queues)
    _output.setup_logging(log_level)
    if processes == 1:
        if metrics_port is not None:
            _serve_metrics(app, metrics_host, metrics_port + (_worker_number() - 1 if supervised else 0))
        if not supervised:
            _output.worker_banner(app, names, concurrency, 1, burst)
        else:
            _watch_supervisor()
        app.run_worker(queues=names or None, concurrency=concurrency, burst=burst, grace=grace)
        return
    if Capability.MULTI_PROCESS not in backend_class(app.settings.url).capabilities:
        raise click.UsageError(f"{app.settings.url.split('://', 1)[0]}:// keeps jobs inside one process, so "
                               "worker processes can't share it: use -p 1 (and -c for more concurrency)")
    _output.worker_banner(app, names, concurrency, processes, burst)
    child = _child_command(current_app_spec() or "", names, concurrency, burst, grace, log_level)
    if metrics_port is not None:
        if metrics_port + processes - 1 > 65535:
            raise click.BadParameter(f"ports {metrics_port} to {metrics_port + processes - 1} don't all exist",
                                     param_hint="'--metrics-port'")
        child += ["--metrics-port", str(metrics_port), "--metrics-host", metrics_host]
    code = Supervisor(child, processes, burst=burst, grace=grace, env=_child_env()).run()
    raise SystemExit(code)


def _worker_number() -> int:
    value = os.environ.get("ERRANDS_WORKER_NUMBER", "1")
    return int(value) if value.isdigit() and int(value) >= 1 else 1


def _serve_metrics(app: Errands, host: str, port: int) -> None:
    """Prometheus' own HTTP server on a daemon thread, serving this app's registry only."""
    try:
        from prometheus_client import start_http_server
    except ModuleNotFoundError:
        raise ConfigurationError("--metrics-port needs prometheus-client: pip install 'errands[dashboard]'") from None
    try:
        start_http_server(port, addr=host, registry=app.metrics().registry)
    except OSError as exc:
        raise ConfigurationError(f"can't serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    logger.info("serving metrics at http://%s:%d/metrics", host if ":" not in host else f"[{host}]", port)


def _queue_names(queues: Sequence[str]) -> list[str]:
    names = [name.strip() for option in queues for name in option.split(",") if name.strip()]
    try:
        return [check_queue_name(name) for name in dict.fromkeys(names)]
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="'-q'") from None


def _child_command(app_spec: str, queues: Sequence[str], concurrency: int, burst: bool, grace: float,
                   log_level: str) -> list[str]:
    command = [sys.executable, "-m", "errands", "worker", app_spec, "-p", "1", "-c", str(concurrency),
               "--grace", repr(grace), "--log-level", log_level, "--supervised"]
    for queue in queues:
        command += ["-q", queue]
    if burst:
        command.append("--burst")
    return command


def _child_env() -> dict[str, str]:
    """Children must import this same errands: append its folder to PYTHONPATH (appended, so the
    user's own path order still wins) and the current folder, where APP's module lives."""
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    for extra in (os.getcwd(), package_root):
        if extra not in parts:
            parts.append(extra)
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def _watch_supervisor() -> None:
    """In a supervised child: stop gracefully when the supervisor goes away.

    The supervisor holds our stdin pipe open for its whole life; EOF means it died (even by
    SIGKILL), and a worker left running without it would never be told to stop. On Windows the
    supervisor's CTRL_BREAK (the only signal it can send a process group) means SIGTERM too.
    """
    if hasattr(signal, "SIGBREAK"):
        signal.signal(signal.SIGBREAK, lambda signum, frame: signal.raise_signal(signal.SIGTERM))

    def wait_for_eof() -> None:
        # os.read on the raw descriptor: a daemon thread blocked inside sys.stdin's buffered
        # reader holds its lock, and interpreter shutdown would then abort on that lock
        try:
            while os.read(fd, 4096):
                pass
        except OSError:
            pass
        logger.warning("the supervisor is gone: stopping")
        signal.raise_signal(signal.SIGTERM)  # the Worker's own handler: graceful stop

    try:
        fd = sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        return  # no stdin to watch (started by hand): nothing tells us the supervisor is gone

    threading.Thread(target=wait_for_eof, name="errands-supervisor-watch", daemon=True).start()
