"""The errands web dashboard: an ASGI app (Starlette, server-rendered Jinja2 templates, CSS and
a few lines of JavaScript shipped in this package: it works offline, with no CDN).

Serve it with ``errands dashboard APP`` or mount it in your own Starlette/FastAPI app::

    from starlette.routing import Mount
    routes = [Mount("/errands", app=jobs.dashboard_app(token=os.environ["ERRANDS_DASHBOARD_TOKEN"],
                                                      allowed_hosts=["ops.example.com"]))]

Everything the dashboard holds lives on the Starlette app's ``state`` (``DashboardState``),
never in module globals, so several dashboards (for several apps) can live in one process.
See ``security.py`` for the rules it enforces and docs/dashboard.md for the pages and the API.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..backends import redact_url
from ..errors import ConfigurationError, ErrandsError
from . import api, views
from .security import AuthHook, Guard, GuardConfig, route_path

if TYPE_CHECKING:
    from ..app import Errands

__all__ = ["DashboardState", "dashboard_app"]

logger = logging.getLogger("errands.dashboard")

HERE = Path(__file__).parent


@dataclass
class DashboardState:
    """What one dashboard needs, kept on ``starlette_app.state.errands``."""

    app: Errands
    guard: GuardConfig
    templates: Jinja2Templates
    title: str
    backend_url: str  # with its password hidden


def dashboard_app(
    app: Errands, *, token: str | None = None, auth: AuthHook | None = None, allowed_hosts: Sequence[str] = (),
    scrape_token: str | None = None, allow_unauthenticated: bool = False, secret: str | bytes | None = None,
    title: str = "errands",
) -> Starlette:
    """The dashboard of ``app`` as a Starlette app.

    Args:
        token: the credential (at least 8 characters): ``Authorization: Bearer <token>``, or typed
            once into the sign-in form, which sets a signed ``HttpOnly; SameSite=Strict`` cookie.
        auth: ``auth(request) -> bool`` (or awaitable): your own check, e.g. your app's session.
            True lets the request in. With neither ``token`` nor ``auth`` every request is refused.
        allowed_hosts: Host names it answers to besides localhost, 127.0.0.1 and [::1] (any other
            Host header gets 403, against DNS rebinding); ``"*"`` turns the check off.
        scrape_token: a second token valid for ``/metrics`` only (for Prometheus).
        allow_unauthenticated: open to anyone who can reach it: for a loopback-only server
            (``errands dashboard`` sets it when bound to 127.0.0.1 without a token).
        secret: signs session and CSRF cookies; default: derived from ``token`` (else random per
            process: then pass one when several processes serve the same dashboard).

    >>> starlette_app.mount("/errands", dashboard_app(app, token=TOKEN))
    """
    guard = GuardConfig.build(token=token, scrape_token=scrape_token, auth=auth, allowed_hosts=allowed_hosts,
                              allow_unauthenticated=allow_unauthenticated, secret=secret)
    starlette = Starlette(
        routes=_routes(),
        middleware=[Middleware(Guard, config=guard, deny=_deny)],
        exception_handlers={HTTPException: _http_error, ErrandsError: _errands_error},
    )
    try:
        app.metrics()  # subscribe now, so the counters count from the dashboard's start
    except ModuleNotFoundError:  # prometheus-client missing: /metrics says so
        logger.warning("prometheus-client is not installed: /metrics is off (pip install 'errands[dashboard]')")
    starlette.state.errands = DashboardState(
        app=app, guard=guard, templates=_templates(), title=title,
        backend_url=redact_url(app.settings.url),
    )
    return starlette


def _routes() -> list[BaseRoute]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        *api.routes(),
        *views.routes(),
    ]


def _templates() -> Jinja2Templates:
    # autoescape everywhere: every job field is data; StrictUndefined: a template typo fails loudly
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                                     undefined=jinja2.StrictUndefined)
    return Jinja2Templates(env=environment)


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def metrics(request: Request) -> Response:
    app = request.app.state.errands.app
    try:
        collectors = app.metrics()
    except ModuleNotFoundError:
        raise HTTPException(501, "metrics need prometheus-client: pip install 'errands[dashboard]'") from None
    body = await run_in_threadpool(collectors.exposition)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


def _wants_json(request: Request) -> bool:
    path = route_path(request.scope)
    return path == "/api" or path.startswith("/api/")


async def _deny(request: Request, reason: str) -> Response:
    path = route_path(request.scope)
    if _wants_json(request):
        return JSONResponse({"error": "unauthorized: send Authorization: Bearer <token>"}, 401,
                            headers={"WWW-Authenticate": "Bearer"})
    if path == "/metrics" or path.startswith("/static/"):
        return PlainTextResponse("401: unauthorized", 401, headers={"WWW-Authenticate": "Bearer"})
    return await views.deny(request, reason)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(request, exc.status_code, str(exc.detail), exc.headers)


async def _errands_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ConfigurationError):  # a bad filter or option in the request: say which
        return _error(request, 400, str(exc))
    logger.warning("dashboard: %s on %s: %s", type(exc).__name__, route_path(request.scope), exc)
    return _error(request, 503, "the job store is unavailable right now; see the server's log")


def _error(request: Request, status: int, detail: str, headers: Any = None) -> Response:
    """An error answer with no traceback and no configuration in it."""
    if _wants_json(request):
        return JSONResponse({"error": detail}, status, headers=headers)
    if status in (404, 405) and detail in ("Not Found", "Method Not Allowed"):
        detail = {404: "There is no such page.", 405: "This address only takes a POST from a form."}[status]
    if request.scope.get("errands.auth") is None or request.app.state.errands is None:
        return PlainTextResponse(f"{status}: {detail}", status, headers=headers)
    return views.render(request, "error.html", {"page": "", "status": status, "detail": detail}, status=status)
