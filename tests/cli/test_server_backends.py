"""The same command-line flows as test_jobs.py, on the server backends: `errands worker`, `jobs`,
`show`, `stats`, `retry`, `cancel` and `purge` behave the same whatever the URL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conformance.conftest import BACKENDS

from . import test_jobs
from .conftest import Project

SERVER_BACKENDS = [name for name in ("redis", "postgres", "mysql") if name in BACKENDS]


@pytest.fixture(params=SERVER_BACKENDS)
def server_project(request: pytest.FixtureRequest, tmp_path: Path, src_path: str) -> Iterator[Project]:
    spec = BACKENDS[request.param]
    url = spec.url(tmp_path, f"cli{uuid.uuid4().hex[:8]}")
    project = Project(tmp_path, src_path)
    project.url = url
    project.env["ERRANDS_TEST_URL"] = url
    try:
        yield project
    finally:
        project.close()
        if spec.cleanup is not None:
            spec.cleanup(url)


@pytest.mark.parametrize("flow", [
    test_jobs.test_enqueue_list_show_work_stats,
    test_jobs.test_retry_and_cancel,
    test_jobs.test_retry_all_failed,
    test_jobs.test_purge,
], ids=lambda flow: flow.__name__.removeprefix("test_"))
def test_cli_flow_on_a_server_backend(server_project: Project, flow) -> None:  # type: ignore[no-untyped-def]
    flow(server_project)
