"""Prometheus metrics for errands (``pip install 'errands[dashboard]'``).

``Metrics(app)`` subscribes to the app's event bus (``errands.events``) and keeps counters of
what happens in this process, in a ``CollectorRegistry`` of its own (never the global default
one, so two apps in one process don't collide). Queue depth and live workers are read from the
backend at scrape time, so they are the same whichever process serves them: aggregate them with
``max``, not ``sum``, across workers.

========================================  =========  ===========================================
metric                                    type       labels
========================================  =========  ===========================================
errands_jobs_enqueued_total               counter    queue, job (new jobs only)
errands_jobs_started_total                counter    queue, job
errands_jobs_succeeded_total              counter    queue, job
errands_jobs_failed_total                 counter    queue, job (no retry left, or not retryable)
errands_jobs_retried_total                counter    queue, job (failed attempt, runs again)
errands_jobs_cancelled_total              counter    queue, job
errands_job_duration_seconds              histogram  queue, job (every finished attempt)
errands_lease_reclaims_total              counter    outcome = requeued | failed
errands_queue_jobs                        gauge      queue, state (at scrape time)
errands_workers_alive                     gauge      (at scrape time; absent without a registry)
errands_backend_up                        gauge      1 when the scrape could read the backend
========================================  =========  ===========================================

Label values are data (a job written straight into the store may be named anything): they are
cut to 100 characters with non-printable characters replaced, and after ``max_label_sets``
distinct (queue, job) pairs new ones are counted under ``queue="__other__", job="__other__"``.

>>> metrics = app.metrics()
>>> prometheus_client.generate_latest(metrics.registry)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .errors import NotSupported
from .events import Event, JobEnqueued, JobFinished, JobStarted, LeasesReclaimed

if TYPE_CHECKING:
    from .app import Errands

__all__ = ["OTHER", "Metrics", "clean_label"]

logger = logging.getLogger("errands.metrics")

OTHER = "__other__"
MAX_LABEL_LENGTH = 100
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_COUNTED = ("enqueued", "started", "succeeded", "failed", "retried", "cancelled")


def clean_label(value: object) -> str:
    """A label value safe to show: at most 100 characters, none of them a control character or
    a line/paragraph separator (the exposition format escapes the rest)."""
    text = value if isinstance(value, str) else str(value)
    return "".join(ch if ch.isprintable() else "_" for ch in text[:MAX_LABEL_LENGTH])


class _Children:
    """The labelled children of one (queue, job) pair, looked up once and kept."""

    __slots__ = ("by_outcome", "duration", "enqueued", "started")

    def __init__(self, metrics: Metrics, queue: str, job: str) -> None:
        self.enqueued: Counter = metrics.counters["enqueued"].labels(queue, job)
        self.started: Counter = metrics.counters["started"].labels(queue, job)
        self.by_outcome: dict[str, Counter] = {
            name: metrics.counters[name].labels(queue, job) for name in ("succeeded", "failed", "retried", "cancelled")
        }
        self.duration: Histogram = metrics.duration.labels(queue, job)


class Metrics:
    """The collectors of one app. ``registry`` is what an exposition serves (``generate_latest``,
    ``start_http_server(port, registry=...)``). Creating it never touches the backend."""

    def __init__(self, app: Errands, *, max_label_sets: int = 500, max_queues: int = 500,
                 process: bool = True) -> None:
        self.app = app
        self.max_label_sets = max_label_sets
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("queue", "job")
        help_texts = {
            "enqueued": "Jobs enqueued by this process (new jobs only).",
            "started": "Job attempts started by workers in this process.",
            "succeeded": "Jobs that succeeded.",
            "failed": "Jobs that failed for good (no retry left, or not retryable).",
            "retried": "Failed attempts that will run again.",
            "cancelled": "Jobs cancelled while running in this process.",
        }
        self.counters = {name: Counter(f"errands_jobs_{name}", help_texts[name], labels, registry=self.registry)
                         for name in _COUNTED}
        self.duration = Histogram("errands_job_duration_seconds", "Seconds each finished attempt ran.",
                                  labels, buckets=DURATION_BUCKETS, registry=self.registry)
        self.reclaims = Counter("errands_lease_reclaims", "Expired leases reclaimed by this process.",
                                ("outcome",), registry=self.registry)
        self.registry.register(BackendCollector(app, max_queues=max_queues))
        if process:
            ProcessCollector(registry=self.registry)  # CPU, memory, fds (Linux; nothing elsewhere)
        self._children: dict[tuple[str, str], _Children] = {}
        self._lock = threading.Lock()
        self._unsubscribe = app.events.subscribe(self.observe)

    def close(self) -> None:
        """Stop listening to the app's events (the registry keeps what was counted)."""
        self._unsubscribe()

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return bytes(generate_latest(self.registry))

    def _for(self, queue: str, job: str) -> _Children:
        children = self._children.get((queue, job))
        if children is not None:
            return children
        with self._lock:
            if (queue, job) in self._children:
                return self._children[(queue, job)]
            if len(self._children) >= self.max_label_sets:  # pairs past the cap share one child set
                overflow = self._children.get((OTHER, OTHER))
                if overflow is None:
                    overflow = self._children[(OTHER, OTHER)] = _Children(self, OTHER, OTHER)
                return overflow
            children = _Children(self, clean_label(queue), clean_label(job))
            self._children[(queue, job)] = children
            return children

    def observe(self, event: Event) -> None:
        """Count one event (the bus calls this on the emitting thread)."""
        if isinstance(event, JobFinished):
            children = self._for(event.queue, event.name)
            children.by_outcome[event.outcome].inc()
            children.duration.observe(max(event.duration, 0.0))
        elif isinstance(event, JobStarted):
            self._for(event.queue, event.name).started.inc()
        elif isinstance(event, JobEnqueued):
            if event.created:
                self._for(event.queue, event.name).enqueued.inc()
        elif isinstance(event, LeasesReclaimed):
            if event.requeued:
                self.reclaims.labels("requeued").inc(event.requeued)
            if event.failed:
                self.reclaims.labels("failed").inc(event.failed)


class BackendCollector(Collector):
    """Queue depth by state and live workers, read from the backend at each scrape."""

    def __init__(self, app: Errands, *, max_queues: int = 500) -> None:
        self.app = app
        self.max_queues = max_queues

    def describe(self) -> Iterable[Metric]:
        # Names only: without this the registry would call collect() (and the backend) on register.
        return [GaugeMetricFamily("errands_queue_jobs", ""), GaugeMetricFamily("errands_workers_alive", ""),
                GaugeMetricFamily("errands_backend_up", "")]

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("errands_backend_up", "1 when this scrape could read the backend.")
        try:
            depth = self._depth()
        except Exception as exc:  # a scrape must answer even when the store is down
            logger.warning("metrics: could not read queue depth: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield depth
        yield from self._workers()

    def _depth(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily("errands_queue_jobs", "Jobs in each queue by state, at scrape time.",
                                   labels=("queue", "state"))
        backend = self.app.backend
        try:
            by_queue: dict[str, Any] = dict(backend.counts(by_queue=True))
        except NotSupported:
            by_queue = {OTHER: backend.counts()}
        queues = sorted(by_queue, key=str)
        for queue in queues[: self.max_queues]:
            for state, count in by_queue[queue].items():
                family.add_metric([clean_label(queue), clean_label(state)], count)
        if len(queues) > self.max_queues:
            rest: dict[str, int] = {}
            for queue in queues[self.max_queues:]:
                for state, count in by_queue[queue].items():
                    rest[state] = rest.get(state, 0) + count
            for state, count in rest.items():
                family.add_metric([OTHER, clean_label(state)], count)
        return family

    def _workers(self) -> Iterator[Metric]:
        try:
            alive = len(self.app.backend.workers())
        except NotSupported:
            return
        except Exception as exc:
            logger.warning("metrics: could not read the worker registry: %s", exc)
            return
        family = GaugeMetricFamily("errands_workers_alive", "Worker processes registered and alive.")
        family.add_metric([], alive)
        yield family
