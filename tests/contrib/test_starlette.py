"""errands.contrib.starlette with real Starlette and FastAPI apps: the TestClient, used as a context
manager, runs the lifespan, so an endpoint's job is run by the in-process worker."""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("jinja2")  # the dashboard's own extra

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

with warnings.catch_warnings():  # Starlette >= 1 prefers httpx2 for its TestClient; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from errands import ConfigurationError, Errands, JobState
from errands.contrib.starlette import errands_lifespan, lifespan, running_worker
from tests.conftest import wait_until

TOKEN = "s3cret-token-for-tests"


def make_jobs() -> tuple[Errands, list[str]]:
    jobs = Errands("memory://")
    sent: list[str] = []

    @jobs.job(queue="mail")
    def send_welcome(user_id: int) -> str:
        sent.append(f"welcome {user_id} on {threading.current_thread().name}")
        return f"sent to {user_id}"

    @jobs.job()
    async def resize(image_id: str) -> str:
        return f"resized {image_id}"

    return jobs, sent


def starlette_app(jobs: Errands, **lifespan_options: Any) -> Starlette:
    async def signup(request: Request) -> JSONResponse:
        user_id = int(request.query_params["user_id"])
        handle = await jobs.registry["send_welcome"].aperform(user_id)
        return JSONResponse({"job": handle.id})

    async def upload(request: Request) -> JSONResponse:
        return JSONResponse({"job": jobs.perform("resize", request.query_params["id"]).id})

    routes = [Route("/signup", signup, methods=["POST"]), Route("/upload", upload, methods=["POST"]),
              Mount("/errands", app=jobs.dashboard_app(token=TOKEN, allowed_hosts=["testserver"]))]
    return Starlette(routes=routes, lifespan=lifespan(jobs, concurrency=2, grace=5, **lifespan_options))


def test_an_endpoints_job_runs_on_the_in_process_worker() -> None:
    jobs, sent = make_jobs()
    with TestClient(starlette_app(jobs)) as client:
        job_id = client.post("/signup", params={"user_id": 42}).json()["job"]
        resized = client.post("/upload", params={"id": "img-1"}).json()["job"]
        info = wait_until(lambda: _finished(jobs, job_id), timeout=10)
        assert info.state is JobState.SUCCEEDED and info.result == "sent to 42"
        assert wait_until(lambda: _finished(jobs, resized), timeout=10).result == "resized img-1"
    assert len(sent) == 1 and sent[0].startswith("welcome 42 on errands")  # a worker thread, not the server's
    assert jobs._background is None  # shutdown stopped it


def test_shutdown_lets_a_running_job_finish() -> None:
    jobs = Errands("memory://")
    started, release = threading.Event(), threading.Event()

    @jobs.job()
    def slow() -> str:
        started.set()
        release.wait(5)
        return "done"

    with TestClient(Starlette(lifespan=lifespan(jobs, grace=5))):
        handle = slow.perform()
        assert started.wait(5)
        threading.Timer(0.2, release.set).start()  # finishes while the app is shutting down
    info = handle.info()
    assert info is not None and info.state is JobState.SUCCEEDED and info.result == "done"


def test_it_composes_with_the_apps_own_lifespan() -> None:
    jobs = Errands("memory://")
    log: list[str] = []

    @jobs.job()
    def work() -> None:
        log.append("job")

    @contextlib.asynccontextmanager
    async def own(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        log.append("own startup")
        yield {"pool": "the-pool"}
        log.append(f"own shutdown, worker running: {jobs._background is not None}")

    async def pool(request: Request) -> JSONResponse:
        return JSONResponse({"pool": request.state.pool})

    web = Starlette(routes=[Route("/pool", pool)], lifespan=errands_lifespan(jobs, inner=own))
    with TestClient(web) as client:
        assert client.get("/pool").json() == {"pool": "the-pool"}  # the state own() yielded is kept
        work.perform().wait(10)
    assert log == ["own startup", "job", "own shutdown, worker running: False"]


def test_running_worker_inside_a_lifespan_of_your_own() -> None:
    jobs = Errands("memory://")

    @jobs.job()
    def work() -> int:
        return 7

    @contextlib.asynccontextmanager
    async def own(app: Starlette) -> AsyncIterator[None]:
        async with running_worker(jobs, concurrency=1) as worker:
            assert worker.concurrency == 1
            yield

    with TestClient(Starlette(lifespan=own)):
        assert work.perform().wait(10).result == 7


def test_a_bad_url_fails_the_startup_not_a_thread() -> None:
    jobs = Errands("nosuch://host/")  # opened at startup: the error comes out of the lifespan
    with pytest.raises(ConfigurationError), TestClient(Starlette(lifespan=lifespan(jobs))):
        pass


def test_the_mounted_dashboard_answers_with_its_token() -> None:
    jobs, _ = make_jobs()
    with TestClient(starlette_app(jobs)) as client:
        job_id = client.post("/signup", params={"user_id": 1}).json()["job"]
        wait_until(lambda: _finished(jobs, job_id), timeout=10)
        assert client.get("/errands/api/stats").status_code in (401, 403)
        answer = client.get("/errands/api/stats", headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200 and answer.json()["total"]["succeeded"] >= 1
        page = client.get(f"/errands/api/jobs/{job_id}", headers={"Authorization": f"Bearer {TOKEN}"})
        assert page.status_code == 200 and page.json()["name"] == "send_welcome"


def test_fastapi() -> None:
    pytest.importorskip("fastapi")
    import fastapi
    from fastapi.testclient import TestClient as FastAPIClient

    jobs, sent = make_jobs()
    api = fastapi.FastAPI(lifespan=lifespan(jobs, concurrency=2, grace=5))
    api.mount("/errands", jobs.dashboard_app(token=TOKEN, allowed_hosts=["testserver"]))
    send_welcome = jobs.registry["send_welcome"]

    @api.post("/signup")
    async def signup(user_id: int) -> dict[str, str]:
        return {"job": (await send_welcome.aperform(user_id)).id}

    with FastAPIClient(api) as client:
        job_id = client.post("/signup", params={"user_id": 7}).json()["job"]
        info = wait_until(lambda: _finished(jobs, job_id), timeout=10)
        assert info.state is JobState.SUCCEEDED and sent and sent[0].startswith("welcome 7")
        stats = client.get("/errands/api/stats", headers={"Authorization": f"Bearer {TOKEN}"})
        assert stats.status_code == 200 and stats.json()["total"]["succeeded"] == 1
    assert jobs._background is None


def _finished(jobs: Errands, job_id: str) -> Any:
    info = jobs.get_job(job_id)
    return info if info is not None and info.state in (JobState.SUCCEEDED, JobState.FAILED) else None
