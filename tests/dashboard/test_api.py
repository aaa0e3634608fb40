"""The JSON API under /api: every route, with a Bearer token, on memory and SQLite."""

from __future__ import annotations

from starlette.testclient import TestClient

from errands.backends.base import WorkerInfo

from .conftest import BEARER, Seeded


def test_index_lists_every_route(client: TestClient) -> None:
    listing = client.get("/api", headers=BEARER).json()
    paths = {(route["method"], route["path"]) for route in listing["routes"]}
    for route in client.app.routes:  # type: ignore[attr-defined]
        path = getattr(route, "path", "")
        if path.startswith("/api"):
            for method in route.methods - {"HEAD"}:
                assert (method, path.replace("{job_id}", "{id}")) in paths


def test_stats(client: TestClient) -> None:
    data = client.get("/api/stats", headers=BEARER).json()
    assert data["total"]["succeeded"] == 2 and data["total"]["failed"] == 6 and data["total"]["scheduled"] == 1
    assert data["queues"]["default"]["succeeded"] == 1 and data["workers_alive"] == 0


def test_throughput(client: TestClient) -> None:
    series = client.get("/api/throughput", headers=BEARER).json()
    assert len(series) == 60 and series[-1]["start"].endswith(":00Z")
    assert sum(b["succeeded"] for b in series) == 2 and sum(b["failed"] for b in series) == 6
    assert len(client.get("/api/throughput?minutes=5", headers=BEARER).json()) == 5
    assert client.get("/api/throughput?minutes=0", headers=BEARER).status_code == 400


def test_jobs_filters_and_paging(seeded: Seeded, client: TestClient) -> None:
    everything = client.get("/api/jobs", headers=BEARER).json()
    assert len(everything["jobs"]) == 9 and everything["next_before"] is None
    failed = client.get("/api/jobs", params={"state": "failed", "queue": "default"}, headers=BEARER).json()
    assert [job["id"] for job in failed["jobs"]] == [seeded.failed]
    page = client.get("/api/jobs", params={"limit": "4"}, headers=BEARER).json()
    rest = client.get("/api/jobs", params={"before": page["next_before"]}, headers=BEARER).json()
    ids = [j["id"] for j in page["jobs"]] + [j["id"] for j in rest["jobs"]]
    assert ids == [j["id"] for j in everything["jobs"]]
    assert client.get("/api/jobs?state=nope", headers=BEARER).json()["error"].startswith("unknown state")
    assert client.get("/api/jobs?limit=100000", headers=BEARER).status_code == 400


def test_job(seeded: Seeded, client: TestClient) -> None:
    job = client.get(f"/api/jobs/{seeded.failed}", headers=BEARER).json()
    assert job["state"] == "failed" and job["args"] == ["kaput"] and "Traceback" in job["error"]
    assert job["finished_at"].endswith("Z") and job["duration"] >= 0
    ok = client.get(f"/api/jobs/{seeded.ok}", headers=BEARER).json()
    assert ok["result"] == 5 and ok["attempts"] == 1
    missing = client.get("/api/jobs/nope", headers=BEARER)
    assert missing.status_code == 404 and missing.json() == {"error": "no job with this id"}


def test_retry_and_cancel(seeded: Seeded, client: TestClient) -> None:
    assert client.post(f"/api/jobs/{seeded.failed}/retry", headers=BEARER).json() == {"retried": True}
    assert client.post(f"/api/jobs/{seeded.failed}/retry", headers=BEARER).json() == {"retried": False}
    assert client.post(f"/api/jobs/{seeded.scheduled}/cancel", headers=BEARER).json() == {"result": "cancelled"}
    assert client.post(f"/api/jobs/{seeded.ok}/cancel", headers=BEARER).json() == {"result": "finished"}
    missing = client.post("/api/jobs/nope/cancel", headers=BEARER)
    assert missing.status_code == 404 and missing.json() == {"result": "not_found"}


def test_retry_failed_by_queue(seeded: Seeded, client: TestClient) -> None:
    one = client.post("/api/actions/retry-failed", headers=BEARER, json={"queue": "default"}).json()
    assert one == {"retried": 1}
    assert client.post("/api/actions/retry-failed", headers=BEARER).json() == {"retried": 5}
    assert client.post("/api/actions/retry-failed", headers=BEARER, json={"queue": 3}).status_code == 400
    assert client.post("/api/actions/retry-failed", headers=BEARER, content=b"[1]").status_code == 400


def test_purge(seeded: Seeded, client: TestClient) -> None:
    body = {"state": "succeeded", "older_than": "1d", "confirm": True}
    assert client.post("/api/actions/purge", headers=BEARER, json=body).json() == {"purged": 0}
    assert client.post("/api/actions/purge", headers=BEARER, json={**body, "older_than": 0}).json() == {"purged": 2}
    assert client.post("/api/actions/purge", headers=BEARER, json={**body, "state": "running"}).status_code == 400
    bad_age = client.post("/api/actions/purge", headers=BEARER, json={**body, "older_than": -1})
    assert bad_age.status_code == 400 and "older_than" in bad_age.json()["error"]


def test_workers(seeded: Seeded, client: TestClient) -> None:
    assert client.get("/api/workers", headers=BEARER).json() == []
    seeded.app.backend.register_worker(WorkerInfo("w:1:a", "w", 1, (), 2, 100.0, running=("x",)), ttl=60)
    (worker,) = client.get("/api/workers", headers=BEARER).json()
    assert worker["id"] == "w:1:a" and worker["queues"] == [] and worker["running"] == ["x"]
    assert worker["started_at"] == "1970-01-01T00:01:40Z" and worker["last_seen"].endswith("Z")


def test_periodic(client: TestClient) -> None:
    (tick,) = client.get("/api/periodic", headers=BEARER).json()
    assert tick["name"] == "tick" and tick["schedule"] == "every 60s" and tick["next_run"].endswith(":00Z")


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"ok": True}
