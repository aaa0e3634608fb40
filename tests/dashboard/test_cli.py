"""`errands dashboard`, `errands worker --metrics-port` and workers in `errands stats`, as
subprocesses on loopback ports."""

from __future__ import annotations

import json
import signal
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cli.conftest import Project
from tests.conftest import wait_until

pytestmark = pytest.mark.slow

TOKEN = "cli-token-0123456789"


def free_ports(count: int = 1) -> int:
    """The first of ``count`` consecutive free loopback ports."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + count > 65535:
            continue
        try:
            for offset in range(1, count):
                with socket.socket() as other:
                    other.bind(("127.0.0.1", first + offset))
        except OSError:
            continue
        return first
    raise RuntimeError("no free ports")


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_dashboard_refuses_a_public_address_without_a_token(project: Project) -> None:
    for host in ("0.0.0.0", "::", "192.0.2.1"):
        result = project.run("dashboard", "tapp:app", "--host", host)
        assert result.returncode == 1 and "without a token" in result.stderr
    assert "default: 127.0.0.1" in project.ok("dashboard", "--help").stdout


def test_dashboard_on_loopback_without_token_is_open_to_local_users(project: Project) -> None:
    port = free_ports()
    proc = project.spawn("dashboard", "tapp:app", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: get(base + "/healthz")[0] == 200, timeout=30, message="the dashboard to start")
    assert "no token" in "".join(proc.stderr)
    status, page = get(base + "/")
    assert status == 200 and "Overview" in page
    assert get(base + "/", {"Host": "rebound.example"})[0] == 403
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_dashboard_token_from_the_environment(project: Project) -> None:
    port = free_ports()
    project.env["ERRANDS_DASHBOARD_TOKEN"] = TOKEN
    project.spawn("dashboard", "--url", project.url, "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: get(base + "/healthz")[0] == 200, timeout=30, message="the dashboard to start")
    assert get(base + "/")[0] == 401
    assert get(base + "/api/stats", {"Authorization": f"Bearer {TOKEN}"})[0] == 200


def test_worker_serves_metrics(project: Project) -> None:
    port = free_ports()
    worker = project.spawn("worker", "tapp:app", "--metrics-port", str(port))
    url = f"http://127.0.0.1:{port}/metrics"
    wait_until(lambda: get(url)[0] == 200, timeout=30, message="the metrics server")
    worker.wait_for(r"serving metrics at http://127\.0\.0\.1:\d+/metrics")
    project.client.perform("add", 1, 2).wait(timeout=30)
    project.client.perform("boom", "no")
    text = wait_until(lambda: (t := get(url)[1]) and metric(t, "errands_jobs_failed_total", job="boom") and t,
                      timeout=30, message="the failure to be counted")
    assert metric(text, "errands_jobs_succeeded_total", queue="default", job="add") == 1
    assert metric(text, "errands_job_duration_seconds_count", job="add") == 1
    assert metric(text, "errands_queue_jobs", queue="default", state="succeeded") == 1
    assert metric(text, "errands_workers_alive") == 1


def test_supervised_workers_serve_metrics_on_consecutive_ports(project: Project) -> None:
    port = free_ports(2)
    project.spawn("worker", "tapp:app", "-p", "2", "--metrics-port", str(port))
    for p in (port, port + 1):
        wait_until(lambda p=p: get(f"http://127.0.0.1:{p}/metrics")[0] == 200, timeout=60,
                   message=f"metrics on port {p}")
    text = get(f"http://127.0.0.1:{port}/metrics")[1]
    wait_until(lambda: metric(get(f"http://127.0.0.1:{port}/metrics")[1], "errands_workers_alive") == 2,
               timeout=30, message="both workers registered")
    assert "errands_queue_jobs" in text


def test_stats_shows_live_workers(project: Project) -> None:
    assert "none alive" in project.ok("stats", "tapp:app").stderr
    worker = project.spawn("worker", "tapp:app", "-c", "3")
    worker.wait_for(r"worker \S+ started")
    wait_until(lambda: "1 worker(s) alive" in project.ok("stats", "tapp:app").stdout, timeout=30)
    data = json.loads(project.ok("stats", "tapp:app", "--json").stdout)
    (alive,) = data["workers"]
    assert alive["concurrency"] == 3 and alive["queues"] == []
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert json.loads(project.ok("stats", "tapp:app", "--json").stdout)["workers"] == []
