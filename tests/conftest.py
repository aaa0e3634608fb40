"""Helpers shared by every test: ``wait_until`` (no test sleeps for luck), the ``--backend``
option the conformance suite reads, and the handler-flavour parametrisation."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def pytest_addoption(parser: pytest.Parser) -> None:
    # Declared here, not in tests/conformance/conftest.py: pytest only reads options from
    # conftest files it loads before collection, and the root one is always among them.
    parser.addoption(
        "--backend", action="append", default=[], metavar="NAME",
        help="run the conformance suite on this backend (repeatable); default: "
             "$ERRANDS_TEST_BACKENDS (comma separated), else every backend in tests/conformance/conftest.py",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires(capability): skip unless the backend declares this errands Capability"
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # what RabbitMQ tests declared from subprocesses (not recorded per test), under this session's
    # prefixes only: a loaded broker with hundreds of leftover quorum queues times handshakes out
    cleanup = sys.modules.get("tests._amqp_cleanup")
    if cleanup is None:
        return
    print(f"\namqp sweep: {cleanup.sweep()}", file=sys.stderr)


def wait_until(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, message: str | None = None
) -> T:
    """Call ``predicate`` until it returns something truthy and return that; raise
    ``AssertionError`` naming what was awaited (and the last value seen) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last value: {value!r})")
        time.sleep(interval)


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> str:
    """Parametrise a test over sync and async handlers: the test defines one of each flavour."""
    return str(request.param)


@pytest.fixture
def src_path() -> str:
    """The folder holding the errands package, for subprocesses' PYTHONPATH."""
    import errands

    return os.path.dirname(os.path.dirname(os.path.abspath(errands.__file__)))
