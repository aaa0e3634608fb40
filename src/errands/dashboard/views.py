"""The HTML pages and their form actions. Pages are GET; every action is a POST that checks
the CSRF token, does one thing and redirects (303) to a fixed page of this dashboard, with a
message chosen from a fixed list (``FLASH``): nothing the request says is echoed as markup or
used as a redirect target."""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import NotSupported
from . import _data
from .security import (
    LOGIN_STYLE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    cookie_path,
    csrf_token,
    require_csrf,
    session_cookie,
    verify_token,
)

__all__ = ["deny", "parse_age", "render", "routes"]

FLASH = {
    "retried": "The job is available again.",
    "retry-refused": "Only failed or cancelled jobs can be retried (or its unique key is taken again).",
    "cancelled": "The job was cancelled.",
    "cancel-requested": "The job is running: its worker is asked to stop it at its next heartbeat.",
    "cancel-finished": "The job had already finished: nothing to cancel.",
    "retried-all": "{n} failed job(s) are available again.",
    "purged": "{n} job(s) deleted.",
    "paused": "The queue is paused: workers start none of its jobs; running ones finish.",
    "resumed": "The queue is resumed: workers start its jobs again.",
    "pause-unsupported": "This backend can't pause queues.",
}
_AGE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NEXT = re.compile(r"/[A-Za-z0-9/_.\-]*")  # where login may send one back: a plain path of ours


def parse_age(text: str) -> float:
    """``"0"``, ``"90"``, ``"30m"``, ``"12h"``, ``"7d"`` -> seconds; anything else is a 400."""
    match = _AGE.fullmatch(text or "0")
    if match is None:
        raise HTTPException(400, "older than must look like 0, 90s, 30m, 12h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _prefix(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _urls(request: Request) -> dict[str, Any]:
    prefix = _prefix(request)

    def url(path: str, **params: Any) -> str:
        query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
        return prefix + path + ("?" + query if query else "")

    def job_url(job_id: str, action: str = "") -> str:
        return f"{prefix}/jobs/{quote(str(job_id), safe='')}" + (f"/{action}" if action else "")

    return {"url": url, "job_url": job_url}


def _flash(request: Request) -> str | None:
    template = FLASH.get(request.query_params.get("done", ""))
    if template is None:
        return None
    count = request.query_params.get("n", "0")
    return template.format(n=int(count) if count.isdigit() else 0)


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    state = request.app.state.errands
    base = {
        "title": state.title, "backend_url": state.backend_url, "csrf_token": csrf_token(request),
        "states": _data.STATES, "flash": _flash(request), "login_style": LOGIN_STYLE,
        "signed_in": request.scope.get("errands.auth") == "session", **_urls(request),
    }
    response: Response = state.templates.TemplateResponse(request, name, {**base, **context}, status_code=status)
    return response


def _back(request: Request, path: str, done: str, **params: Any) -> RedirectResponse:
    query = urlencode({"done": done, **params})
    return RedirectResponse(f"{_prefix(request)}{path}?{query}", status_code=303)


# pages -------------------------------------------------------------------------------------------
async def overview(request: Request) -> Response:
    app = request.app.state.errands.app
    data = await run_in_threadpool(_data.overview, app)
    return render(request, "overview.html", {"page": "overview", **data, "chart": _data.chart(data["throughput"]),
                                             "finished_states": _data.FINISHED})


async def jobs(request: Request) -> Response:
    filters = _data.Filters.parse(request.query_params)
    app = request.app.state.errands.app
    page, older = await run_in_threadpool(filters.jobs, app)
    return render(request, "jobs.html", {
        "page": "jobs", "filters": filters, "jobs": [_data.job_view(job) for job in page], "older": older,
    })


async def job(request: Request) -> Response:
    app = request.app.state.errands.app
    job_id = request.path_params["job_id"]
    info = await run_in_threadpool(app.get_job, job_id) if 0 < len(job_id) <= 64 else None
    if info is None:
        raise HTTPException(404, "no job with this id (it may have been purged)")
    return render(request, "job.html", {"page": "jobs", "job": await run_in_threadpool(_data.job_detail, app, info)})


async def queues(request: Request) -> Response:
    data = await run_in_threadpool(_data.queues, request.app.state.errands.app)
    return render(request, "queues.html", {"page": "queues", **data})


async def limits(request: Request) -> Response:
    app = request.app.state.errands.app
    data = await run_in_threadpool(_data.limits, app)
    return render(request, "limits.html", {"page": "limits", **data, "has_handlers": bool(app.registry)})


async def periodic(request: Request) -> Response:
    app = request.app.state.errands.app
    specs = await run_in_threadpool(_data.periodics, app)
    return render(request, "periodic.html", {"page": "periodic", "periodics": specs,
                                             "has_handlers": bool(app.registry)})


async def workers(request: Request) -> Response:
    app = request.app.state.errands.app
    alive = await run_in_threadpool(_data.workers, app)
    views = None if alive is None else [_data.worker_json(w) for w in alive]
    return render(request, "workers.html", {"page": "workers", "workers": views})


# actions -----------------------------------------------------------------------------------------
async def retry(request: Request) -> Response:
    await require_csrf(request, await request.form())
    job_id = request.path_params["job_id"]
    moved = await run_in_threadpool(request.app.state.errands.app.retry_job, job_id)
    return _back(request, f"/jobs/{quote(job_id, safe='')}", "retried" if moved else "retry-refused")


async def cancel(request: Request) -> Response:
    await require_csrf(request, await request.form())
    job_id = request.path_params["job_id"]
    result = await run_in_threadpool(request.app.state.errands.app.cancel_job, job_id)
    if result == "not_found":
        raise HTTPException(404, "no job with this id")
    done = {"cancelled": "cancelled", "requested": "cancel-requested"}.get(result, "cancel-finished")
    return _back(request, f"/jobs/{quote(job_id, safe='')}", done)


async def pause_queue(request: Request) -> Response:
    return await _queue_control(request, pause=True)


async def resume_queue(request: Request) -> Response:
    return await _queue_control(request, pause=False)


async def _queue_control(request: Request, *, pause: bool) -> Response:
    form = await request.form()
    await require_csrf(request, form)
    queue = str(form.get("queue") or "")
    if not _data.valid_queue(queue):
        raise HTTPException(400, "not a queue name: 1-100 of A-Z a-z 0-9 _ . : -")
    app = request.app.state.errands.app
    try:
        await run_in_threadpool(app.pause_queue if pause else app.resume_queue, queue)
    except NotSupported:
        return _back(request, "/queues", "pause-unsupported")
    return _back(request, "/queues", "paused" if pause else "resumed")


async def retry_failed(request: Request) -> Response:
    form = await request.form()
    await require_csrf(request, form)
    queue = str(form.get("queue") or "") or None
    moved = await run_in_threadpool(_data.retry_all_failed, request.app.state.errands.app, queue)
    return _back(request, "/", "retried-all", n=moved)


async def purge(request: Request) -> Response:
    """First POST: a confirmation page. Second POST, with ``confirm=yes``: delete."""
    form = await request.form()
    await require_csrf(request, form)
    state = str(form.get("state") or "")
    if state not in _data.FINISHED:
        raise HTTPException(400, "purge takes a finished state: succeeded, failed or cancelled")
    age_text = str(form.get("older_than") or "0")
    age = parse_age(age_text)
    app = request.app.state.errands.app
    if form.get("confirm") != "yes":
        counts = await run_in_threadpool(app.stats)
        return render(request, "purge.html", {"page": "overview", "state": state, "older_than": age_text,
                                              "at_most": counts.get(state, 0)})
    removed = await run_in_threadpool(app.purge, state, age)
    return _back(request, "/", "purged", n=removed)


# signing in --------------------------------------------------------------------------------------
async def login(request: Request) -> Response:
    config = request.app.state.errands.guard
    if request.method == "GET":
        return render(request, "login.html", {"error": None, "next": _next(request.query_params.get("next")),
                                              "locked": not config.token}, status=200 if config.token else 401)
    form = await request.form()
    await require_csrf(request, form)
    target = _next(str(form.get("next") or ""))
    token = form.get("token")
    if not config.token or not verify_token(token if isinstance(token, str) else None, config.token):
        await asyncio.sleep(0.5)  # a guess costs time
        return render(request, "login.html", {"error": "That token is not right.", "next": target,
                                              "locked": not config.token}, status=401)
    response = RedirectResponse(_prefix(request) + target, status_code=303)
    response.set_cookie(SESSION_COOKIE, session_cookie(config), max_age=SESSION_SECONDS, path=cookie_path(request.scope),
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


async def logout(request: Request) -> Response:
    await require_csrf(request, await request.form())
    response = RedirectResponse(_prefix(request) + "/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=cookie_path(request.scope), httponly=True, samesite="strict")
    return response


def _next(value: str | None) -> str:
    """A path inside this dashboard to return to after signing in, or "/": never another site
    (``//evil.example``, ``https://…``, ``/\\evil``)."""
    if value and _NEXT.fullmatch(value) and not value.startswith("//"):
        return value
    return "/"


async def deny(request: Request, reason: str) -> Response:
    """The 401 a browser sees: the sign-in form, or why there is none."""
    config = request.app.state.errands.guard
    path = request.url.path[len(_prefix(request)):] or "/"
    return render(request, "login.html", {"error": None, "next": _next(path), "locked": not config.token},
                  status=401)


def routes() -> list[BaseRoute]:
    return [
        Route("/", overview, methods=["GET"], name="overview"),
        Route("/jobs", jobs, methods=["GET"], name="jobs"),
        Route("/jobs/{job_id}", job, methods=["GET"], name="job"),
        Route("/jobs/{job_id}/retry", retry, methods=["POST"]),
        Route("/jobs/{job_id}/cancel", cancel, methods=["POST"]),
        Route("/actions/retry-failed", retry_failed, methods=["POST"]),
        Route("/actions/purge", purge, methods=["POST"]),
        Route("/queues", queues, methods=["GET"], name="queues"),
        Route("/queues/pause", pause_queue, methods=["POST"]),
        Route("/queues/resume", resume_queue, methods=["POST"]),
        Route("/limits", limits, methods=["GET"], name="limits"),
        Route("/periodic", periodic, methods=["GET"], name="periodic"),
        Route("/workers", workers, methods=["GET"], name="workers"),
        Route("/login", login, methods=["GET", "POST"], name="login"),
        Route("/logout", logout, methods=["POST"]),
    ]
