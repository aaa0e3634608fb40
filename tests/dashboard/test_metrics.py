"""Prometheus metrics: scraped over HTTP (the dashboard's /metrics and a worker's
--metrics-port) and parsed as exposition text with prometheus_client's own parser."""

from __future__ import annotations

import time
from collections.abc import Iterable

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from errands import Errands
from errands.events import JobFinished
from errands.metrics import OTHER, Metrics, clean_label

from .conftest import BASE, BEARER, make_app


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def families(text: str) -> Iterable[str]:
    return {family.name for family in text_string_to_metric_families(text)}


def test_dashboard_metrics_count_what_happens_and_read_depth_at_scrape_time(store: str) -> None:
    app = make_app(store)
    try:
        client = TestClient(app.dashboard_app(token="m" * 16), base_url=BASE)  # subscribes the metrics
        for n in range(3):
            app.perform("add", n, n)
        app.perform("explode", "no")
        app.perform_in(3600, "add", 0, 0)
        app.run_worker(burst=True, concurrency=2, install_signals=False)
        # a job whose worker vanished: its lease expires and this process's maintenance reclaims it
        lost = app.perform("steady", 9).id
        assert len(app.backend.claim(None, 10, worker_id="gone", lease=0.05)) == 1
        time.sleep(0.1)
        app.run_worker(burst=True, concurrency=2, install_signals=False)
        assert str(app.get_job(lost).state) == "succeeded"

        text = client.get("/metrics", headers={"Authorization": "Bearer " + "m" * 16}).text
        found = samples(text)
        add, boom = {"queue": "default", "job": "add"}, {"queue": "default", "job": "explode"}
        assert value(found, "errands_jobs_enqueued_total", **add) == 4
        assert value(found, "errands_jobs_enqueued_total", **boom) == 1
        assert value(found, "errands_jobs_succeeded_total", **add) == 3
        assert value(found, "errands_jobs_failed_total", **boom) == 1
        assert value(found, "errands_jobs_started_total", **add) == 3
        assert value(found, "errands_jobs_started_total", queue="default", job="steady") == 1  # not the lost claim
        assert value(found, "errands_job_duration_seconds_count", **add) == 3
        assert value(found, "errands_job_duration_seconds_bucket", **add, le="+Inf") == 3
        assert value(found, "errands_lease_reclaims_total", outcome="requeued") == 1
        assert value(found, "errands_queue_jobs", queue="default", state="succeeded") == 4
        assert value(found, "errands_queue_jobs", queue="default", state="scheduled") == 1
        assert value(found, "errands_backend_up") == 1
        assert value(found, "errands_workers_alive") == 0  # the burst worker unregistered on its way out
        assert "errands_jobs_retried" in families(text)
    finally:
        app.close()


def test_each_app_has_its_own_registry_and_never_the_global_one() -> None:
    first, second = Errands("memory://"), Errands("memory://")
    try:
        assert first.metrics() is first.metrics()
        assert first.metrics().registry is not second.metrics().registry
        assert "errands_jobs_enqueued_total" not in REGISTRY._names_to_collectors
    finally:
        first.close()
        second.close()


def test_label_values_are_escaped_and_their_number_capped() -> None:
    app = Errands("memory://")
    try:
        metrics = Metrics(app, max_label_sets=3, process=False)
        hostile = 'a"b\\c\nd<script>\u2028' + "x" * 500
        for index in range(10):
            metrics.observe(JobFinished(str(index), f"job{index}", "q", 1, 1, "succeeded", 0.01))
        metrics.observe(JobFinished("h", hostile, hostile, 1, 1, "failed", 0.01))
        found = samples(metrics.exposition().decode())
        jobs = {dict(labels)["job"] for (name, labels) in found if name == "errands_jobs_succeeded_total"}
        assert jobs == {"job0", "job1", "job2", OTHER}
        assert value(found, "errands_jobs_succeeded_total", queue=OTHER, job=OTHER) == 7
        assert value(found, "errands_jobs_failed_total", queue=OTHER, job=OTHER) == 1
        cleaned = clean_label(hostile)
        assert len(cleaned) == 100 and "\n" not in cleaned and "\u2028" not in cleaned and '"' in cleaned
        metrics = Metrics(app, process=False)
        metrics.observe(JobFinished("h", hostile, hostile, 1, 1, "failed", 0.01))
        found = samples(metrics.exposition().decode())
        assert value(found, "errands_jobs_failed_total", queue=cleaned, job=cleaned) == 1  # round-trips the parser
    finally:
        app.close()


def test_a_scrape_answers_when_the_backend_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    app = Errands("memory://")
    try:
        def down(**kwargs: object) -> None:
            raise ConnectionError("down")

        monkeypatch.setattr(app.backend, "counts", down)
        found = samples(app.metrics().exposition().decode())
        assert value(found, "errands_backend_up") == 0
    finally:
        app.close()


def test_metrics_route_serves_the_text_format(client: TestClient) -> None:
    response = client.get("/metrics", headers=BEARER)
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "errands_queue_jobs" in families(response.text)
