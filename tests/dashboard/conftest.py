"""Fixtures for the dashboard tests: an app on memory:// or a SQLite file (each test runs on
both), jobs in every interesting state, hostile job fields, and a Starlette TestClient."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

with warnings.catch_warnings():  # Starlette >= 1 prefers httpx2 for its TestClient; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from errands import Errands
from errands._states import JobState
from errands.backends.base import NewJob, Outcome
from tests.cli.conftest import project  # noqa: F401 (the CLI tests' project fixture, for test_cli.py)

TOKEN = "test-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
BASE = "http://127.0.0.1"

# FAULTS.md, "Dashboard security": each must show as text, run nothing, add no element
PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "</script><script>alert(2)</script>",
    "{{7*7}}",
    "line\u2028separator",
]


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'dash.db'}"


@dataclass
class Seeded:
    app: Errands
    ok: str  # a succeeded job
    failed: str  # a failed job (ValueError with a traceback)
    scheduled: str  # due in an hour
    hostile: list[str]  # jobs whose every field holds PAYLOADS (failed, one succeeded)


def make_app(url: str) -> Errands:
    app = Errands(url, lease=5.0, poll_interval=0.05)

    @app.job(retries=0)
    def add(a: int, b: int) -> int:
        return a + b

    @app.job(retries=0)
    def explode(message: str) -> None:
        raise ValueError(message)

    @app.job(retries=3)
    def steady(x: int) -> int:
        return x

    @app.periodic(every=60.0)
    def tick() -> None: ...

    return app


def hostile_jobs(app: Errands) -> list[str]:
    """Jobs written straight into the store with a hostile name, queue, arguments, unique key,
    error (with traceback) and result: the store holds whatever it is given."""
    ids = []
    backend = app.backend
    for index, payload in enumerate(PAYLOADS):
        job_id = f"0190ffff-0000-7000-8000-00000000000{index}"
        args = '["' + payload.replace('"', '\\"') + '", 18446744073709551617]'
        kwargs = '{"' + payload.replace('"', '\\"') + '": "' + payload.replace('"', '\\"') + '"}'
        backend.enqueue([NewJob(id=job_id, name=payload, queue=payload, args=args, kwargs=kwargs, max_attempts=1,
                                unique_key=payload)])
        claim = backend.claim([payload], 1, worker_id=payload, lease=60)[0]
        error = f"ValueError: {payload}\nTraceback (most recent call last):\n  File \"{payload}\", line 1\n"
        if index == 0:
            backend.settle([Outcome(claim.id, claim.token, JobState.SUCCEEDED, result=f'"{payload}"')])
        else:
            backend.settle([Outcome(claim.id, claim.token, JobState.FAILED, error=error)])
        ids.append(job_id)
    return ids


def seed(app: Errands) -> Seeded:
    ok = app.perform("add", 2, 3).id
    failed = app.perform("explode", "kaput").id
    app.run_worker(burst=True, concurrency=2, install_signals=False)
    scheduled = app.perform_in(3600, "add", 1, 1).id
    return Seeded(app, ok, failed, scheduled, hostile_jobs(app))


@pytest.fixture
def seeded(store: str) -> Iterator[Seeded]:
    app = make_app(store)
    try:
        yield seed(app)
    finally:
        app.close()


@pytest.fixture
def app(seeded: Seeded) -> Errands:
    return seeded.app


@pytest.fixture
def client(app: Errands) -> Iterator[TestClient]:
    """A client of the dashboard with a token configured; it sends no credentials by itself."""
    with TestClient(app.dashboard_app(token=TOKEN), base_url=BASE) as test_client:
        yield test_client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def sign_in(client: TestClient) -> str:
    """Sign in through the form like a browser; returns a CSRF token for later forms."""
    page = client.get("/login")
    response = client.post("/login", data={"token": TOKEN, "csrf_token": csrf_of(page.text), "next": "/"},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/").text)


def form_post(client: TestClient, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    return client.post(path, data=data or {}, follow_redirects=False, **kwargs)
