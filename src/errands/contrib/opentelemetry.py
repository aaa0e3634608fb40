"""OpenTelemetry tracing for errands (``pip install 'errands[otel]'``, issue #8): one trace from
the web request that enqueues a job to the worker that runs it, on every backend::

    from errands.contrib.opentelemetry import instrument

    app = Errands("postgresql://app@db/app")
    instrument(app)                       # the global tracer provider and propagator

Spans follow the OpenTelemetry messaging conventions (OTEP 0220):

* **Enqueue**: a ``PRODUCER`` span ``send <job name>`` around the call that stores the jobs.
  The current context is injected, with the global propagator (W3C ``traceparent`` and
  ``tracestate`` by default), into each job's ``meta`` under the reserved key ``"otel"``.
  ``perform_many`` makes **one** span for the batch, whose context every job of it carries
  (``messaging.batch.message_count``): a batch is one round trip, and ten thousand spans for
  it would cost more than the enqueue they describe.
* **Run**: a ``CONSUMER`` span ``process <job name>`` around each attempt, on the thread or in
  the task that runs the handler, so spans the handler makes are its children. Its **parent is
  the producer's context** and it also **links** to it: the conventions ask for the link and
  allow the parent for a single message whose consumer span would otherwise be a root, which is
  each errands job; one trace then spans the request and the job, retries included (each
  attempt is one span, ``errands.job.attempt`` counts them, ``errands.job.retry`` marks the
  second and later). A job enqueued without tracing runs under the worker's own context.
* A handler that raises gets the exception recorded and an error status, with
  ``errands.job.will_retry`` telling whether errands retries it; ``raise Retry(...)`` is a
  requested retry, recorded as an event, not an error.

With no tracer provider configured (the API's no-op default) spans are not recording, nothing
is injected and no meta is stored: instrumenting costs next to nothing until tracing is on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import ConfigurationError, Retry
from ..middleware import Enqueue, Middleware
from ..retry import will_retry

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ConfigurationError(
        "errands.contrib.opentelemetry needs the 'otel' extra: pip install 'errands[otel]'"
    ) from None

if TYPE_CHECKING:
    from ..app import Errands
    from ..context import JobContext

__all__ = ["META_KEY", "TracingMiddleware", "instrument", "uninstrument"]

META_KEY = "otel"  # the job meta entry that carries the propagation fields; reserved
SYSTEM = "errands"  # messaging.system


class TracingMiddleware(Middleware):
    """Producer and consumer spans for every enqueue and every attempt (see the module text).

    Args:
        tracer_provider: where spans go; None uses the global provider (``trace.set_tracer_provider``),
            looked up at each span so a provider configured after ``instrument()`` is used.

    >>> app.add_middleware(TracingMiddleware(tracer_provider=provider))
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer_provider = tracer_provider

    def _tracer(self) -> trace.Tracer:
        return trace.get_tracer("errands", __version__, tracer_provider=self.tracer_provider)

    @contextmanager
    def _enqueue(self, enqueue: Enqueue) -> Iterator[None]:
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM, "messaging.operation.type": "send", "messaging.operation.name": "send",
            "messaging.destination.name": enqueue.queue, "errands.job.name": enqueue.name,
        }
        if enqueue.count != 1:
            attributes["messaging.batch.message_count"] = enqueue.count
        with self._tracer().start_as_current_span(f"send {enqueue.name}", kind=SpanKind.PRODUCER,
                                                  attributes=attributes) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)  # the current context: this span, when recording
            if carrier:
                enqueue.meta[META_KEY] = carrier
            yield
            if len(enqueue.ids) == 1:
                span.set_attribute("messaging.message.id", enqueue.ids[0])

    def around_enqueue(self, enqueue: Enqueue) -> AbstractContextManager[None]:
        return self._enqueue(enqueue)

    @contextmanager
    def _run(self, job: JobContext) -> Iterator[None]:
        carrier = job.meta.get(META_KEY)
        parent = propagate.extract(carrier) if _is_carrier(carrier) else None  # None: the worker's own
        producer = trace.get_current_span(parent).get_span_context() if parent is not None else None
        links = [Link(producer)] if producer is not None and producer.is_valid else []
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM, "messaging.operation.type": "process", "messaging.operation.name": "process",
            "messaging.destination.name": job.queue, "messaging.message.id": job.id, "errands.job.name": job.name,
            "errands.job.attempt": job.attempt, "errands.job.max_attempts": job.max_attempts,
            "errands.job.retry": job.attempt > 1,
        }
        # the handler's exception is judged here (a Retry is no error), not by the SDK's defaults
        with self._tracer().start_as_current_span(
            f"process {job.name}", context=parent, kind=SpanKind.CONSUMER, links=links, attributes=attributes,
            record_exception=False, set_status_on_exception=False,
        ) as span:
            try:
                yield
            except BaseException as exc:
                retried = will_retry(exc, job.attempt, job.max_attempts)
                span.set_attribute("errands.job.will_retry", retried)
                if isinstance(exc, Retry):
                    event: dict[str, Any] = {"errands.retry.reason": exc.reason}
                    if exc.in_ is not None:
                        event["errands.retry.in"] = exc.in_
                    span.add_event("retry requested", event)
                else:
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                raise

    def around_run(self, job: JobContext) -> AbstractContextManager[None]:
        return self._run(job)


def _is_carrier(value: object) -> bool:
    # meta is data from the store: anything else than {str: str} is ignored, never trusted
    return isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def instrument(app: Errands, tracer_provider: trace.TracerProvider | None = None) -> TracingMiddleware:
    """Trace ``app``'s enqueues and runs; returns the middleware. Instrumenting twice keeps the
    first (one span per operation, never two).

    Args:
        app: the ``Errands`` to trace, in the web process and in every worker process (call it
            where the app is defined, so ``errands worker`` imports it too).
        tracer_provider: None for the global one.

    >>> instrument(app)
    """
    for item in app.middleware:
        if isinstance(item, TracingMiddleware):
            return item
    middleware = TracingMiddleware(tracer_provider)
    app.add_middleware(middleware)
    return middleware


def uninstrument(app: Errands) -> None:
    """Stop tracing ``app`` (jobs already enqueued keep their meta; it is ignored)."""
    # a new list, not an edit in place: worker threads may be walking the old one
    app.middleware = [m for m in app.middleware if not isinstance(m, TracingMiddleware)]
