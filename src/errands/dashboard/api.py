"""The JSON API under ``/api``: the dashboard's data and actions for scripts.

Authenticate with ``Authorization: Bearer <token>``; a browser session works too, and then a
POST must carry the ``X-CSRF-Token`` header. POST bodies are JSON objects (or empty). Errors are
``{"error": "..."}`` with the HTTP status. ``GET /api`` lists the routes (``ROUTES``), which
docs/dashboard.md describes in full.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import NotSupported
from . import _data
from .security import require_csrf
from .views import parse_age

__all__ = ["ROUTES", "routes"]

# (method, path, parameters, what it does): served at GET /api, and the routes are built from it
ROUTES: list[tuple[str, str, str, str]] = [
    ("GET", "/api", "", "this listing"),
    ("GET", "/api/stats", "", "job counts: {total: {state: n}, queues: {queue: {state: n}}}"),
    ("GET", "/api/throughput", "minutes (1-1440, default 60)",
     "jobs finished per minute: [{start, succeeded, failed}], oldest first"),
    ("GET", "/api/jobs", "state, queue, name, before (a job id: older than it), limit (1-500, default 50)",
     "jobs newest first: {jobs: [job], next_before: id | null}"),
    ("GET", "/api/jobs/{id}", "",
     "one job: args, kwargs, result, error with traceback, attempts, timings, outcome, workflow (links, progress)"),
    ("POST", "/api/jobs/{id}/retry", "", "failed or cancelled -> available: {retried: bool}"),
    ("POST", "/api/jobs/{id}/cancel", "",
     "{result: cancelled | requested (running: asked to stop) | finished | not_found}"),
    ("POST", "/api/actions/retry-failed", "body {queue?}", "every failed job (of queue) -> available: {retried: n}"),
    ("POST", "/api/actions/purge", "body {state: succeeded|failed|cancelled, older_than?: '7d', confirm: true}",
     "delete finished jobs: {purged: n}"),
    ("GET", "/api/queues", "", ("queues: {queues: [{name, counts, total, paused, concurrency, rate_limit}], "
     "paused: [queue] | null (null: the backend can't pause)}")),
    ("POST", "/api/queues/pause", "body {queues: [queue]}", "workers start none of their jobs: {paused: [queue]}"),
    ("POST", "/api/queues/resume", "body {queues: [queue]}", "workers start their jobs again: {resumed: [queue]}"),
    ("GET", "/api/limits", "", ("declared limits with live usage: {limits: [{scope, target, key, concurrency, "
     "rate_limit, partitioned, declared, running, partitions}], usage_supported: bool}")),
    ("GET", "/api/workers", "", "live workers: [{id, host, pid, queues, concurrency, running, processed, ...}]"),
    ("GET", "/api/periodic", "", "periodic jobs of this app: [{name, queue, schedule, next_run}]"),
    ("GET", "/metrics", "", "Prometheus exposition (the token, or the scrape token)"),
    ("GET", "/healthz", "", "liveness, no credentials: {ok: true}"),
]


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object of a POST (``{}`` when empty), after the CSRF check."""
    await require_csrf(request)
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise HTTPException(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the body must be a JSON object")
    return body


async def index(request: Request) -> Response:
    prefix = str(request.scope.get("root_path", "")).rstrip("/")
    return _json({"title": request.app.state.errands.title, "routes": [
        {"method": method, "path": prefix + path, "parameters": params, "returns": what}
        for method, path, params, what in ROUTES
    ]})


async def stats(request: Request) -> Response:
    data = await run_in_threadpool(_data.overview, request.app.state.errands.app)
    return _json({"total": data["totals"], "queues": data["queues"], "workers_alive": data["workers"]})


async def throughput(request: Request) -> Response:
    raw = request.query_params.get("minutes", "60")
    if not raw.isdigit() or not 1 <= int(raw) <= 1440:
        raise HTTPException(400, "minutes must be a number from 1 to 1440")
    series = await run_in_threadpool(_data.throughput, request.app.state.errands.app, int(raw))
    if series is None:
        raise HTTPException(501, "this backend can't count finished jobs by time")
    return _json(series)


async def jobs(request: Request) -> Response:
    filters = _data.Filters.parse(request.query_params)
    page, older = await run_in_threadpool(filters.jobs, request.app.state.errands.app)
    return _json({"jobs": [_data.job_json(job) for job in page], "next_before": older})


async def job(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    app = request.app.state.errands.app
    info = await run_in_threadpool(app.get_job, job_id) if len(job_id) <= 64 else None
    if info is None:
        raise HTTPException(404, "no job with this id")
    detail = await run_in_threadpool(_data.job_detail, app, info)
    workflow = detail["workflow"]
    return _json({**_data.job_json(info), "outcome": detail["outcome"],
                  "workflow": None if workflow is None else {k: workflow[k] for k in (
                      "id", "after", "then", "on_failure", "feed", "progress")}})


async def retry(request: Request) -> Response:
    await _body(request)
    moved = await run_in_threadpool(request.app.state.errands.app.retry_job, request.path_params["job_id"])
    return _json({"retried": moved})


async def cancel(request: Request) -> Response:
    await _body(request)
    result = await run_in_threadpool(request.app.state.errands.app.cancel_job, request.path_params["job_id"])
    return _json({"result": result}, 404 if result == "not_found" else 200)


async def retry_failed(request: Request) -> Response:
    body = await _body(request)
    queue = body.get("queue")
    if queue is not None and not isinstance(queue, str):
        raise HTTPException(400, "queue must be a string")
    moved = await run_in_threadpool(_data.retry_all_failed, request.app.state.errands.app, queue or None)
    return _json({"retried": moved})


async def purge(request: Request) -> Response:
    body = await _body(request)
    state, older_than = body.get("state"), body.get("older_than", "0")
    if state not in _data.FINISHED:
        raise HTTPException(400, "state must be succeeded, failed or cancelled")
    if body.get("confirm") is not True:
        raise HTTPException(400, 'purge deletes jobs for good: send "confirm": true')
    age = float(older_than) if isinstance(older_than, (int, float)) else parse_age(str(older_than))
    removed = await run_in_threadpool(request.app.state.errands.app.purge, state, age)
    return _json({"purged": removed})


async def queues(request: Request) -> Response:
    return _json(await run_in_threadpool(_data.queues, request.app.state.errands.app))


async def limits(request: Request) -> Response:
    return _json(await run_in_threadpool(_data.limits, request.app.state.errands.app))


async def pause_queues(request: Request) -> Response:
    return await _queue_control(request, pause=True)


async def resume_queues(request: Request) -> Response:
    return await _queue_control(request, pause=False)


async def _queue_control(request: Request, *, pause: bool) -> Response:
    body = await _body(request)
    names = body.get("queues")
    if (not isinstance(names, list) or not names or len(names) > 1000
            or not all(isinstance(q, str) and _data.valid_queue(q) for q in names)):
        raise HTTPException(400, "queues must be a list of queue names (1-100 of A-Z a-z 0-9 _ . : -)")
    app = request.app.state.errands.app
    try:
        await run_in_threadpool(app.pause_queue if pause else app.resume_queue, *names)
    except NotSupported:
        raise HTTPException(501, "this backend can't pause queues") from None
    return _json({"paused" if pause else "resumed": names})


async def workers(request: Request) -> Response:
    alive = await run_in_threadpool(_data.workers, request.app.state.errands.app)
    if alive is None:
        raise HTTPException(501, "this backend keeps no worker registry")
    return _json([_data.worker_json(w) for w in alive])


async def periodic(request: Request) -> Response:
    return _json(await run_in_threadpool(_data.periodics, request.app.state.errands.app))


def routes() -> list[BaseRoute]:
    return [
        Route("/api", index, methods=["GET"]),
        Route("/api/stats", stats, methods=["GET"]),
        Route("/api/throughput", throughput, methods=["GET"]),
        Route("/api/jobs", jobs, methods=["GET"]),
        Route("/api/jobs/{job_id}", job, methods=["GET"]),
        Route("/api/jobs/{job_id}/retry", retry, methods=["POST"]),
        Route("/api/jobs/{job_id}/cancel", cancel, methods=["POST"]),
        Route("/api/actions/retry-failed", retry_failed, methods=["POST"]),
        Route("/api/actions/purge", purge, methods=["POST"]),
        Route("/api/queues", queues, methods=["GET"]),
        Route("/api/queues/pause", pause_queues, methods=["POST"]),
        Route("/api/queues/resume", resume_queues, methods=["POST"]),
        Route("/api/limits", limits, methods=["GET"]),
        Route("/api/workers", workers, methods=["GET"]),
        Route("/api/periodic", periodic, methods=["GET"]),
    ]
