"""Issue #9 in the dashboard: the queues page (paused state, pause/resume buttons behind CSRF),
the limits page (declared limits with live usage), workflow progress and links on a job's page,
the outcome of a job cancelled while running, and each of them on a backend without the
capability: "not supported by this backend", never a 500. On memory and SQLite."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest
from markupsafe import escape
from starlette.testclient import TestClient

from errands import Errands, NotSupported
from errands.backends.base import Backend, SlotRequest
from tests.conftest import wait_until

from .conftest import BASE, BEARER, PAYLOADS, TOKEN, Seeded, form_post, sign_in


@pytest.fixture
def browser(client: TestClient) -> Iterator[tuple[TestClient, str]]:
    yield client, sign_in(client)


def _unsupported(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """Take queue control and limits away from a real backend: the base class's answers."""
    for name in ("set_paused", "paused_queues", "slot_usage"):
        monkeypatch.setattr(backend, name, getattr(Backend, name).__get__(backend))


# queues --------------------------------------------------------------------------------------------
def test_pause_and_resume_a_queue_from_the_queues_page(seeded: Seeded, browser: tuple[TestClient, str]) -> None:
    client, csrf = browser
    page = client.get("/queues").text
    assert '<a href="/jobs?queue=default">default</a>' in page
    assert 'action="/queues/pause"' in page and '<span class="badge active">active</span>' in page

    paused = form_post(client, "/queues/pause", {"csrf_token": csrf, "queue": "default"})
    assert paused.status_code == 303 and paused.headers["location"] == "/queues?done=paused"
    assert seeded.app.paused_queues() == {"default"}
    page = client.get(paused.headers["location"]).text
    assert "The queue is paused" in page and '<span class="badge paused">paused</span>' in page
    assert 'action="/queues/resume"' in page and '<button type="submit" class="resume">Resume</button>' in page
    assert 'class="badge paused"' in client.get("/").text  # the overview marks it too

    resumed = form_post(client, "/queues/resume", {"csrf_token": csrf, "queue": "default"})
    assert resumed.headers["location"] == "/queues?done=resumed"
    assert seeded.app.paused_queues() == frozenset()


def test_a_paused_queue_without_jobs_is_listed(seeded: Seeded, browser: tuple[TestClient, str]) -> None:
    client, csrf = browser
    form_post(client, "/queues/pause", {"csrf_token": csrf, "queue": "reports"})
    page = client.get("/queues").text
    row = re.search(r'<a href="/jobs\?queue=reports">reports</a>.*?</tr>', page, re.DOTALL)
    assert row and 'class="badge paused"' in row.group(0) and "Resume" in row.group(0)


def test_queue_control_needs_csrf_a_post_and_a_queue_name(seeded: Seeded, browser: tuple[TestClient, str]) -> None:
    client, csrf = browser
    assert form_post(client, "/queues/pause", {"queue": "default"}).status_code == 403
    assert form_post(client, "/queues/pause", {"queue": "default", "csrf_token": "forged"}).status_code == 403
    assert client.get("/queues/pause").status_code == 405
    for foreign in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        response = form_post(client, "/queues/pause", {"csrf_token": csrf, "queue": "default"}, headers=foreign)
        assert response.status_code == 403, foreign
    assert client.post("/api/queues/pause", json={"queues": ["default"]}).status_code == 403  # a session, no token
    for bad in PAYLOADS + ["", "amq.default", "x" * 101]:
        response = form_post(client, "/queues/pause", {"csrf_token": csrf, "queue": bad})
        assert response.status_code == 400, bad
        assert "<script>" not in response.text
    assert seeded.app.paused_queues() == frozenset()


def test_queue_pages_need_credentials(seeded: Seeded) -> None:
    with TestClient(seeded.app.dashboard_app(token=TOKEN), base_url=BASE) as anonymous:
        assert anonymous.get("/queues").status_code == 401
        assert anonymous.get("/limits").status_code == 401
        assert form_post(anonymous, "/queues/pause", {"queue": "default"}).status_code in (401, 403)
        assert anonymous.post("/api/queues/pause", json={"queues": ["default"]}).status_code == 401
    assert seeded.app.paused_queues() == frozenset()


def test_hostile_queue_names_show_as_text_without_buttons(seeded: Seeded, browser: tuple[TestClient, str]) -> None:
    client, _ = browser
    page = client.get("/queues").text
    for payload in PAYLOADS:
        assert str(escape(payload)) in page, payload
    assert "<script>alert" not in page and "<img" not in page
    # a record may hold any queue text, but only a real queue name gets a button
    assert page.count('name="queue" value=') == 1  # "default" alone


def test_queues_api(seeded: Seeded, client: TestClient) -> None:
    paused = client.post("/api/queues/pause", json={"queues": ["default", "mail"]}, headers=BEARER)
    assert paused.status_code == 200 and paused.json() == {"paused": ["default", "mail"]}
    listing = client.get("/api/queues", headers=BEARER).json()
    assert listing["paused"] == ["default", "mail"]
    rows = {row["name"]: row for row in listing["queues"]}
    assert rows["default"]["paused"] and rows["mail"]["paused"] and rows["mail"]["total"] == 0
    assert rows["default"]["counts"]["succeeded"] == 1
    resumed = client.post("/api/queues/resume", json={"queues": ["mail"]}, headers=BEARER)
    assert resumed.json() == {"resumed": ["mail"]} and seeded.app.paused_queues() == {"default"}
    bad: list[dict[str, object]] = [{}, {"queues": []}, {"queues": "default"}, {"queues": [PAYLOADS[0]]},
                                    {"queues": [1]}]
    for body in bad:
        assert client.post("/api/queues/pause", json=body, headers=BEARER).status_code == 400, body


def test_without_queue_control_the_pages_say_so(seeded: Seeded, browser: tuple[TestClient, str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    client, csrf = browser
    _unsupported(seeded.app.backend, monkeypatch)
    with pytest.raises(NotSupported):
        seeded.app.paused_queues()
    page = client.get("/queues")
    assert page.status_code == 200 and "Pausing queues is not supported by this backend" in page.text
    assert 'action="/queues/pause"' not in page.text
    assert client.get("/").status_code == 200
    refused = form_post(client, "/queues/pause", {"csrf_token": csrf, "queue": "default"})
    assert refused.headers["location"] == "/queues?done=pause-unsupported"
    assert "This backend can&#39;t pause queues." in client.get(refused.headers["location"]).text
    assert client.post("/api/queues/pause", json={"queues": ["default"]}, headers=BEARER).status_code == 501
    assert client.get("/api/queues", headers=BEARER).json()["paused"] is None
    limits = client.get("/limits")
    assert limits.status_code == 200 and "not supported by this backend" in limits.text
    assert client.get("/api/limits", headers=BEARER).json()["usage_supported"] is False


# limits --------------------------------------------------------------------------------------------
@pytest.fixture
def limited(store: str) -> Iterator[Errands]:
    app = Errands(store, poll_interval=0.05)

    @app.job(concurrency=3, rate_limit="100/m")
    def sync_account(user: str) -> None: ...

    @app.job(concurrency=2, limit_key=lambda user, **_: user)
    def per_user(user: str) -> None: ...

    @app.job()
    def free() -> None: ...

    app.limit_queue("reports", concurrency=1, rate_limit="10/s")
    try:
        yield app
    finally:
        app.close()


def test_limits_page_shows_declared_limits_with_live_usage(limited: Errands) -> None:
    backend = limited.backend
    assert backend.acquire_slots([SlotRequest("job:sync_account", "j1:t", 3), SlotRequest("job:sync_account", "j2:t", 3),
                                  SlotRequest("job:per_user:alice", "j3:t", 2),
                                  SlotRequest("queue:reports", "j4:t", 1),
                                  SlotRequest("job:<script>alert(1)</script>", "j5:t", 1)], 60) == [True] * 5
    with TestClient(limited.dashboard_app(token=TOKEN), base_url=BASE) as client:
        sign_in(client)
        page = client.get("/limits").text
        rows = {m.group(1): m.group(0) for m in re.finditer(r'<tr>\s*<th scope="row" class="text">(?:<a [^>]*>)?'
                                                             r'([^<]+)(?:</a>)?.*?</tr>', page, re.DOTALL)}
        assert set(rows) == {"job:sync_account", "job:per_user", "queue:reports",
                             str(escape("job:<script>alert(1)</script>"))}
        assert re.search(r'<td class="num">3</td>\s*<td>100/m</td>\s*<td class="num">2 <meter', rows["job:sync_account"])
        assert "per limit_key" in rows["job:per_user"] and "alice: 1" in rows["job:per_user"]
        assert "10/s" in rows["queue:reports"] and '<td class="num">1 <meter min="0" max="1" value="1"' in \
            rows["queue:reports"]
        assert "not declared here" in page and "<script>alert" not in page
        api = client.get("/api/limits", headers=BEARER).json()
        assert api["usage_supported"] is True
        by_key = {row["key"]: row for row in api["limits"]}
        assert by_key["job:sync_account"] == {
            "scope": "job", "target": "sync_account", "key": "job:sync_account", "concurrency": 3,
            "rate_limit": "100/m", "partitioned": False, "declared": True, "running": 2, "partitions": {}}
        assert by_key["job:per_user"]["partitions"] == {"alice": 1}
        backend.release_slots([("job:sync_account", "j1:t")])
        assert {r["key"]: r["running"] for r in client.get("/api/limits", headers=BEARER).json()["limits"]
                }["job:sync_account"] == 1
        queues = {q["name"]: q for q in client.get("/api/queues", headers=BEARER).json()["queues"]}
        assert "reports" not in queues  # no jobs and not paused: limits alone don't list a queue


def test_limits_page_without_limits(seeded: Seeded, browser: tuple[TestClient, str]) -> None:
    client, _ = browser
    page = client.get("/limits")
    assert page.status_code == 200 and "No limits are declared" in page.text


# workflows -----------------------------------------------------------------------------------------
@pytest.fixture
def flows(store: str) -> Iterator[Errands]:
    app = Errands(store, lease=3.0, poll_interval=0.05)  # a cancel reaches a handler within a heartbeat

    @app.job(retries=0)
    def add(a: int, b: int) -> int:
        return a + b

    @app.job(retries=0, queue="later")
    def later(a: int) -> int:
        return a

    @app.job(retries=0)
    def tally(summary: dict[str, object]) -> object:
        return summary["succeeded"]

    @app.job(retries=0)
    async def hang() -> None:
        await asyncio.sleep(60)

    try:
        yield app
    finally:
        app.close()


def test_job_page_shows_a_group_callbacks_progress_and_links(flows: Errands) -> None:
    add, later, tally = (flows.handler(n) for n in ("add", "later", "tally"))
    handle = flows.group([add.s(1, 2), later.s(5)]).then(tally.s()).perform()
    first, second, callback = handle.ids
    flows.run_worker(queues=["default"], burst=True, concurrency=2, install_signals=False)
    assert str(flows.get_job(first).state) == "succeeded"  # type: ignore[union-attr]
    with TestClient(flows.dashboard_app(token=TOKEN), base_url=BASE) as client:
        sign_in(client)
        page = client.get(f"/jobs/{callback}").text
        assert '<progress max="2" value="1"' in page and "1 of 2 finished" in page
        assert "1 succeeded, 0 failed, 0 cancelled, 0 running, 1 waiting" in page
        assert "runs whatever they end as" in page
        for member in (first, second):
            assert f'<a class="id" href="/jobs/{member}">{member}</a>' in page
        assert re.search(rf'href="/jobs/{second}">{second}</a> <span class="state state-available">', page)
        member = client.get(f"/jobs/{first}").text
        assert "<h3>Wakes</h3>" in member and f'href="/jobs/{callback}"' in member and "<progress" not in member
        api = client.get(f"/api/jobs/{callback}", headers=BEARER).json()
        assert api["workflow"]["after"] == [first, second]
        assert api["workflow"]["progress"]["finished"] == 1 and api["workflow"]["progress"]["total"] == 2

        flows.start(concurrency=2)  # the other member, then the callback it wakes
        try:
            wait_until(lambda: str(flows.get_job(callback).state) == "succeeded",  # type: ignore[union-attr]
                       timeout=30, message="the callback ran once both members finished")
        finally:
            flows.stop(timeout=10)
        done = client.get(f"/jobs/{callback}").text
        assert '<progress max="2" value="2"' in done and "2 of 2 finished" in done


def test_job_page_of_a_chain_step(flows: Errands) -> None:
    add = flows.handler("add")
    handle = flows.chain(add.s(1, 2), add.s(10)).perform()
    first, last = handle.ids
    with TestClient(flows.dashboard_app(token=TOKEN), base_url=BASE) as client:
        sign_in(client)
        page = client.get(f"/jobs/{last}").text
        assert "0 of 1 finished" in page and "fails if one of them fails" in page
        assert f'href="/jobs/{first}"' in page
        plain = client.get(f"/jobs/{first}").text
        assert "<h3>Wakes</h3>" in plain and 'id="workflow"' in plain
    no_flow = flows.perform("add", 1, 1).id
    with TestClient(flows.dashboard_app(token=TOKEN), base_url=BASE) as client:
        sign_in(client)
        assert 'id="workflow"' not in client.get(f"/jobs/{no_flow}").text


# cancellation of a running job ---------------------------------------------------------------------
def test_cancel_a_running_job_and_see_how_it_ended(flows: Errands) -> None:
    job_id = flows.perform("hang").id
    flows.start(concurrency=1)
    try:
        wait_until(lambda: str(flows.get_job(job_id).state) == "running", timeout=30,  # type: ignore[union-attr]
                   message="the job started")
        with TestClient(flows.dashboard_app(token=TOKEN), base_url=BASE) as client:
            csrf = sign_in(client)
            page = client.get(f"/jobs/{job_id}").text
            assert 'id="cancel"' in page and "Ask to stop" in page
            asked = form_post(client, f"/jobs/{job_id}/cancel", {"csrf_token": csrf})
            assert asked.headers["location"].endswith("done=cancel-requested")
            assert "asked to stop it at its next heartbeat" in client.get(asked.headers["location"]).text
            wait_until(lambda: str(flows.get_job(job_id).state) == "cancelled", timeout=30,  # type: ignore[union-attr]
                       message="the handler was cancelled")
            ended = client.get(f"/jobs/{job_id}").text
            outcome = re.search(r'<dd id="outcome">([^<]*)</dd>', ended)
            assert outcome and outcome.group(1) == "cancelled while running: its handler was asked to stop"
            assert client.get(f"/api/jobs/{job_id}", headers=BEARER).json()["outcome"].startswith(
                "cancelled while running")
            before = flows.perform_in(3600, "add", 1, 1).id
            flows.cancel_job(before)
            assert "cancelled before it started" in client.get(f"/jobs/{before}").text
    finally:
        flows.stop(timeout=10)
