"""errands.contrib.opentelemetry with the real OpenTelemetry SDK (in-memory exporter) and a real
Starlette app traced by OpenTelemetry's own ASGI middleware: one trace runs from the caller's
span through the request's server span and the job's ``send`` span to the worker's ``process``
span and the spans the handler makes, on memory://, SQLite and Redis (a separate producer and
worker ``Errands`` on the persistent ones, so the context travels through the store)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("starlette")
pytest.importorskip("opentelemetry.instrumentation.asgi")

from opentelemetry import propagate, trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

with warnings.catch_warnings():  # Starlette >= 1 prefers httpx2 for its TestClient; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from errands import Errands, JobState, Retry, current_job
from errands.contrib.opentelemetry import META_KEY, TracingMiddleware, instrument, uninstrument
from errands.testing import drain, eager
from tests.conformance.conftest import _redis_cleanup
from tests.conftest import wait_until


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    # a provider of the test's own: the global one is left alone (it can be set once per process)
    instance = TracerProvider()
    instance.add_span_processor(SimpleSpanProcessor(exporter))
    yield instance
    instance.shutdown()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def apps(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Errands, Errands]]:
    """(producer, worker): one object on memory://, two on a store they share otherwise."""
    if request.param == "memory":
        app = Errands("memory://", lease=5.0)
        yield app, app
        app.close()
        return
    url = (f"sqlite:///{tmp_path / 'jobs.db'}" if request.param == "sqlite"
           else f"redis://127.0.0.1:6379/0?prefix=otel{uuid.uuid4().hex[:8]}")
    producer, worker = Errands(url, lease=5.0), Errands(url, lease=5.0)
    yield producer, worker
    producer.close()
    worker.close()
    if request.param == "redis":
        _redis_cleanup(url)


def spans(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def one(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = spans(exporter, name)
    assert len(found) == 1, f"{name}: {[s.name for s in exporter.get_finished_spans()]}"
    return found[0]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def web(app: Errands, job_name: str, provider: TracerProvider) -> Any:
    """A Starlette app whose endpoint enqueues ``job_name``, traced by the OTel ASGI middleware."""
    async def signup(request: Request) -> JSONResponse:
        handle = await app.registry[job_name].aperform(int(request.query_params["user"]))
        return JSONResponse({"job": handle.id})

    starlette = Starlette(routes=[Route("/signup", signup, methods=["POST"])])
    return OpenTelemetryMiddleware(starlette, tracer_provider=provider)


def define(app: Errands, flavour: str, provider: TracerProvider, seen: list[dict[str, Any]]) -> None:
    tracer = provider.get_tracer("handler")
    if flavour == "sync":
        @app.job(queue="mail")
        def send_welcome(user: int) -> None:
            with tracer.start_as_current_span("render e-mail"):
                seen.append(current_job().meta)
    else:
        @app.job(queue="mail")
        async def send_welcome(user: int) -> None:
            with tracer.start_as_current_span("render e-mail"):
                await asyncio.sleep(0)
                seen.append(current_job().meta)


# one trace, request to job ------------------------------------------------------------------------
def test_one_trace_from_the_request_to_the_job_and_its_own_spans(
    apps: tuple[Errands, Errands], flavour: str, provider: TracerProvider, exporter: InMemorySpanExporter,
) -> None:
    producer, worker = apps
    seen: list[dict[str, Any]] = []
    for app in {id(producer): producer, id(worker): worker}.values():
        define(app, flavour, provider, seen)
        instrument(app, tracer_provider=provider)
    caller = provider.get_tracer("test")
    with caller.start_as_current_span("browser click") as click:
        headers: dict[str, str] = {}
        propagate.inject(headers)  # as an instrumented HTTP client in another process would
    # the request is sent outside the click's in-process context, so only the header links them
    with TestClient(web(producer, "send_welcome", provider)) as client:
        response = client.post("/signup?user=42", headers=headers)
    assert response.status_code == 200
    job_id = response.json()["job"]
    with worker.worker(concurrency=2):
        wait_until(lambda: spans(exporter, "render e-mail"), timeout=15, message="the handler's span")
    trace_id = click.get_span_context().trace_id
    server = next(s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER)
    send, process, inner = one(exporter, "send send_welcome"), one(exporter, "process send_welcome"), one(
        exporter, "render e-mail")
    assert {s.context.trace_id for s in (server, send, process, inner)} == {trace_id}
    assert parent_id(server) == click.get_span_context().span_id
    assert send.kind == SpanKind.PRODUCER and parent_id(send) == server.context.span_id
    assert process.kind == SpanKind.CONSUMER and parent_id(process) == send.context.span_id
    assert [link.context.span_id for link in process.links] == [send.context.span_id]
    assert parent_id(inner) == process.context.span_id  # the handler's spans nest under the job's
    assert send.attributes is not None and process.attributes is not None
    assert dict(send.attributes) == {
        "messaging.system": "errands", "messaging.operation.type": "send", "messaging.operation.name": "send",
        "messaging.destination.name": "mail", "errands.job.name": "send_welcome", "messaging.message.id": job_id,
    }
    assert process.attributes["messaging.message.id"] == job_id
    assert process.attributes["messaging.destination.name"] == "mail"
    assert process.attributes["messaging.operation.type"] == "process"
    assert (process.attributes["errands.job.attempt"], process.attributes["errands.job.retry"]) == (1, False)
    assert process.status.status_code == StatusCode.UNSET
    carrier = seen[0][META_KEY]
    assert f"{trace_id:032x}" in carrier["traceparent"]
    info = worker.get_job(job_id)
    assert info is not None and info.state == JobState.SUCCEEDED and info.meta[META_KEY] == carrier


def test_a_failing_handler_records_the_exception_and_marks_the_retry(
    provider: TracerProvider, exporter: InMemorySpanExporter, flavour: str,
) -> None:
    app = Errands("memory://")
    instrument(app, tracer_provider=provider)
    if flavour == "sync":
        @app.job(retries=1, backoff=0)
        def charge(amount: int) -> None:
            raise ValueError(f"card declined for {amount}")
    else:
        @app.job(retries=1, backoff=0)
        async def charge(amount: int) -> None:
            raise ValueError(f"card declined for {amount}")

    handle = charge.perform(5)
    with app.worker(concurrency=1):
        wait_until(lambda: len(spans(exporter, "process charge")) == 2, timeout=15, message="two attempts")
        info = wait_until(lambda: (i := app.get_job(handle.id)) and i.state == JobState.FAILED and i,
                          timeout=10)
    assert info and info.attempts == 2
    first, second = sorted(spans(exporter, "process charge"), key=lambda s: s.start_time or 0)
    send = one(exporter, "send charge")
    for span, attempt, retried in ((first, 1, True), (second, 2, False)):
        assert span.attributes is not None
        assert span.attributes["errands.job.attempt"] == attempt
        assert span.attributes["errands.job.retry"] is (attempt > 1)
        assert span.attributes["errands.job.will_retry"] is retried
        assert span.status.status_code == StatusCode.ERROR
        assert span.status.description == "ValueError: card declined for 5"
        [event] = span.events
        assert event.name == "exception" and event.attributes is not None
        assert event.attributes["exception.type"] == "ValueError"
        assert parent_id(span) == send.context.span_id and span.context.trace_id == send.context.trace_id
    app.close()


def test_a_requested_retry_is_an_event_not_an_error(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    app = Errands("memory://")
    instrument(app, tracer_provider=provider)

    @app.job(retries=2)
    def poll() -> str:
        if current_job().attempt == 1:
            raise Retry(in_=0, reason="not ready")
        return "ready"

    handle = poll.perform()
    app.run_worker(concurrency=1, burst=True)
    wait_until(lambda: app.get_job(handle.id).state == JobState.SUCCEEDED, timeout=10)  # type: ignore[union-attr]
    first, second = sorted(spans(exporter, "process poll"), key=lambda s: s.start_time or 0)
    assert first.status.status_code == StatusCode.UNSET and [e.name for e in first.events] == ["retry requested"]
    assert first.attributes is not None and first.attributes["errands.job.will_retry"] is True
    assert second.status.status_code == StatusCode.UNSET and second.events == ()
    app.close()


def test_perform_many_is_one_send_span_whose_context_every_job_carries(
    provider: TracerProvider, exporter: InMemorySpanExporter,
) -> None:
    app = Errands("memory://")
    instrument(app, tracer_provider=provider)

    @app.job()
    def square(n: int) -> int:
        return n * n

    square.perform_many([((n,), {}) for n in range(3)])
    app.run_worker(concurrency=2, burst=True)
    send = one(exporter, "send square")
    assert send.attributes is not None and send.attributes["messaging.batch.message_count"] == 3
    assert "messaging.message.id" not in send.attributes
    processes = spans(exporter, "process square")
    assert len(processes) == 3 and {parent_id(p) for p in processes} == {send.context.span_id}
    app.close()


# without tracing --------------------------------------------------------------------------------------
@pytest.mark.parametrize("provider", [None, trace.NoOpTracerProvider()], ids=["global-default", "no-op"])
def test_nothing_breaks_and_nothing_is_stored_without_a_configured_provider(
    provider: trace.TracerProvider | None,
) -> None:
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # nobody configured one
    app = Errands("memory://")
    instrument(app, tracer_provider=provider)
    ran: list[dict[str, Any]] = []

    @app.job()
    def work() -> None:
        ran.append(current_job().meta)

    with trace.get_tracer("test").start_as_current_span("not recorded"):
        handle = work.perform()
    app.run_worker(concurrency=1, burst=True)
    info = app.get_job(handle.id)
    assert ran == [{}] and info is not None and info.state == JobState.SUCCEEDED and info.meta == {}
    app.close()


def test_a_job_enqueued_without_tracing_runs_in_a_trace_of_its_own(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter,
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    producer, worker = Errands(url), Errands(url)  # only the worker is instrumented
    instrument(worker, tracer_provider=provider)
    for app in (producer, worker):
        @app.job()
        def work() -> str:
            return "done"

    with provider.get_tracer("test").start_as_current_span("unrelated"):
        handle = producer.registry["work"].with_options(meta={"tenant": "acme"}).perform()
    worker.run_worker(concurrency=1, burst=True)
    process = one(exporter, "process work")
    assert process.parent is None and process.links == ()
    info = worker.get_job(handle.id)
    assert info is not None and info.state == JobState.SUCCEEDED and info.meta == {"tenant": "acme"}
    producer.close()
    worker.close()


@pytest.mark.parametrize("carrier", ["junk", {"traceparent": 7}, {"traceparent": "00-bad-bad-01"}, ["x"]])
def test_a_carrier_that_is_not_one_is_ignored(
    provider: TracerProvider, exporter: InMemorySpanExporter, carrier: Any,
) -> None:
    app = Errands("memory://")

    @app.job()
    def work() -> str:
        return "done"

    handle = work.with_options(meta={META_KEY: carrier}).perform()  # enqueued before tracing was on
    instrument(app, tracer_provider=provider)
    app.run_worker(concurrency=1, burst=True)
    assert app.get_job(handle.id).state == JobState.SUCCEEDED  # type: ignore[union-attr]
    assert one(exporter, "process work").parent is None
    app.close()


# the test helpers and the switch -------------------------------------------------------------------
def test_drain_and_eager_trace_like_a_worker(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    app = Errands("memory://")
    instrument(app, tracer_provider=provider)
    tracer = provider.get_tracer("handler")

    @app.job()
    async def resize(image: str) -> str:
        with tracer.start_as_current_span("decode"):
            return image

    with eager(app):
        resize.perform("a")
    resize.perform("b")
    drain(app)
    sends, processes, inner = spans(exporter, "send resize"), spans(exporter, "process resize"), spans(exporter,
                                                                                                      "decode")
    assert len(sends) == len(processes) == len(inner) == 2
    by_send = {p.parent.span_id: p for p in processes if p.parent is not None}
    assert set(by_send) == {s.context.span_id for s in sends}
    assert {parent_id(i) for i in inner} == {p.context.span_id for p in processes}
    app.close()


def test_instrument_twice_keeps_one_and_uninstrument_stops(
    provider: TracerProvider, exporter: InMemorySpanExporter,
) -> None:
    app = Errands("memory://")
    first = instrument(app, tracer_provider=provider)
    assert instrument(app) is first and app.middleware == [first]

    @app.job()
    def work() -> None: ...

    work.perform()
    uninstrument(app)
    work.perform()
    app.run_worker(concurrency=1, burst=True)
    assert len(spans(exporter, "send work")) == 1 and spans(exporter, "process work") == []
    assert app.middleware == [] and isinstance(first, TracingMiddleware)
    app.close()


def test_the_core_never_imports_opentelemetry(src_path: str) -> None:
    """errands, its worker, testing helpers and other contribs run without opentelemetry loaded."""
    code = (
        "import sys\n"
        "import errands, errands.testing, errands.worker, errands.middleware, errands.contrib.starlette\n"
        "app = errands.Errands('memory://')\n"
        "@app.job()\n"
        "def work(): return 1\n"
        "handle = work.perform()\n"
        "app.run_worker(concurrency=1, burst=True)\n"
        "assert app.get_job(handle.id).state == 'succeeded'\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'opentelemetry')\n"
        "print('loaded:', loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={"PYTHONPATH": src_path}, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_the_extra_importing_the_contrib_names_it(src_path: str, tmp_path: Path) -> None:
    # a stand-in "opentelemetry" package that fails to import, first on the path
    (tmp_path / "opentelemetry").mkdir()
    (tmp_path / "opentelemetry" / "__init__.py").write_text("raise ImportError('not installed')\n")
    code = ("from errands import ConfigurationError\n"
            "try:\n    import errands.contrib.opentelemetry\n"
            "except ConfigurationError as exc:\n    print(exc)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={"PYTHONPATH": f"{tmp_path}:{src_path}"}, check=False)
    assert "pip install 'errands[otel]'" in result.stdout, result.stdout + result.stderr

