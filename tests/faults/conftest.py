"""The backends every fault scenario runs on, and the fixtures that isolate one run.

``FAULT_BACKENDS`` names the backends a scenario is parametrised over (its ``fault_backend``
argument); each maps to the conformance suite's ``BackendSpec`` (an isolated URL, a cleanup)
plus a raw ``Store`` handle for writing corrupt records straight into it. Adding a backend to
every scenario is one entry here. **RabbitMQ** (``amqp://`` delivery with ``store=`` another
backend URL keeping the records) goes in as ``"amqp"`` once ``backends/amqp.py`` exists: its URL
factory returns the amqp URL with a private vhost or queue prefix, and its ``Store`` is the
store backend's. Scenarios that need a feature (several processes, a server to cut off) declare
it with ``applies(...)``; a backend left out says why in RELIABILITY.md.

Select with ``ERRANDS_FAULT_BACKENDS=sqlite,redis`` (default: all).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conformance.conftest import BACKENDS, BackendSpec

FAULT_BACKENDS: tuple[str, ...] = ("sqlite", "redis", "postgres", "mysql")
# backends whose store is a server the tests can cut off (proxy) or restart
SERVER_BACKENDS: tuple[str, ...] = ("redis", "postgres", "mysql")


def selected(names: tuple[str, ...]) -> list[str]:
    wanted = os.environ.get("ERRANDS_FAULT_BACKENDS")
    if not wanted:
        return list(names)
    chosen = [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in BACKENDS]
    if unknown:
        raise pytest.UsageError(f"ERRANDS_FAULT_BACKENDS names unknown backend(s) {unknown}")
    return [n for n in names if n in chosen]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fault_backend" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("fault_backends")
        names = tuple(marker.args) if marker is not None else FAULT_BACKENDS
        metafunc.parametrize("fault_backend", selected(names))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault_backends(*names): the backends a fault scenario runs on")


@dataclass
class Target:
    """One isolated namespace on one backend for one scenario run."""

    backend: str
    url: str
    spec: BackendSpec


@pytest.fixture
def target(fault_backend: str, tmp_path: Path) -> Iterator[Target]:
    spec = BACKENDS[fault_backend]
    url = spec.url(tmp_path, f"f{uuid.uuid4().hex[:8]}")
    try:
        yield Target(fault_backend, url, spec)
    finally:
        if spec.cleanup is not None:
            spec.cleanup(url)
