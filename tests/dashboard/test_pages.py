"""Every HTML page and form action, signed in through the login form, on memory and SQLite."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from errands import Errands
from errands.backends.base import WorkerInfo

from .conftest import BEARER, Seeded, form_post, sign_in


@pytest.fixture
def browser(client: TestClient) -> Iterator[tuple[TestClient, str]]:
    """A signed-in client and its CSRF token."""
    yield client, sign_in(client)


def test_overview_shows_queues_states_workers_and_the_chart(seeded: Seeded, browser: tuple[TestClient, str]) -> None:
    client, _ = browser
    seeded.app.backend.register_worker(WorkerInfo("host:1:abc", "host", 1, ("default",), 4, 0.0), ttl=60)
    page = client.get("/").text
    assert "<h1>Overview</h1>" in page
    assert re.search(r'<span class="count">1</span><span class="label">workers alive', page)
    assert 'href="/jobs?queue=default&amp;state=failed"' in page  # queue x state cells link to the list
    assert "<svg" in page and 'class="ok"' in page  # the throughput chart, drawn by the server
    assert "succeeded 2" in page  # add(2, 3) and a hostile job finished within the hour
    assert "Retry all 6 failed" in page and "Purge" in page


def test_job_list_filters_and_pages(seeded: Seeded, browser: tuple[TestClient, str]) -> None:
    client, _ = browser
    failed = client.get("/jobs", params={"state": "failed"}).text
    assert seeded.failed in failed and seeded.ok not in failed
    assert seeded.ok in client.get("/jobs", params={"name": "add", "queue": "default"}).text
    assert seeded.failed not in client.get("/jobs", params={"name": "add"}).text
    first = client.get("/jobs", params={"limit": "3"}).text
    older = re.search(r'href="(/jobs\?[^"]*before=[^"]+)" rel="next"', first)
    assert older, "a full page links to the older one"
    second = client.get(older.group(1).replace("&amp;", "&") + "&limit=3").text
    ids = lambda text: set(re.findall(r'class="id"><a href="/jobs/([^"]+)"', text))
    assert ids(first) and ids(second) and not ids(first) & ids(second)
    assert client.get("/jobs", params={"state": "zombie"}).status_code == 400


def test_job_detail_shows_arguments_result_attempts_timings_and_traceback(seeded: Seeded,
                                                                         browser: tuple[TestClient, str]) -> None:
    client, _ = browser
    ok = client.get(f"/jobs/{seeded.ok}").text
    assert "1 of 1" in ok and ">5</pre>" in ok and "ran " in ok and "waited " in ok
    failed = client.get(f"/jobs/{seeded.failed}").text
    assert "ValueError: kaput" in failed and "Traceback (most recent call last)" in failed
    assert 'id="retry"' in failed and 'id="cancel"' not in failed
    scheduled = client.get(f"/jobs/{seeded.scheduled}").text
    assert 'id="cancel"' in scheduled and 'id="retry"' not in scheduled
    assert client.get("/jobs/no-such-job").status_code == 404
    assert client.get("/jobs/" + "x" * 300).status_code == 404


def test_retry_and_cancel_buttons(seeded: Seeded, browser: tuple[TestClient, str]) -> None:
    client, csrf = browser
    retried = form_post(client, f"/jobs/{seeded.failed}/retry", {"csrf_token": csrf})
    assert retried.status_code == 303 and retried.headers["location"] == f"/jobs/{seeded.failed}?done=retried"
    assert str(seeded.app.get_job(seeded.failed).state) == "available"
    assert "available again" in client.get(retried.headers["location"]).text
    again = form_post(client, f"/jobs/{seeded.ok}/retry", {"csrf_token": csrf})
    assert again.headers["location"].endswith("done=retry-refused")
    cancelled = form_post(client, f"/jobs/{seeded.scheduled}/cancel", {"csrf_token": csrf})
    assert cancelled.headers["location"].endswith("done=cancelled")
    assert str(seeded.app.get_job(seeded.scheduled).state) == "cancelled"
    assert form_post(client, "/jobs/no-such-job/cancel", {"csrf_token": csrf}).status_code == 404


def test_retry_all_failed(seeded: Seeded, browser: tuple[TestClient, str]) -> None:
    client, csrf = browser
    response = form_post(client, "/actions/retry-failed", {"csrf_token": csrf})
    assert response.headers["location"] == "/?done=retried-all&n=6"
    assert seeded.app.stats()["failed"] == 0
    assert "6 failed job(s) are available again" in client.get(response.headers["location"]).text


def test_purge_confirm_then_delete(seeded: Seeded, browser: tuple[TestClient, str]) -> None:
    client, csrf = browser
    form = {"csrf_token": csrf, "state": "failed", "older_than": "1h"}
    ask = form_post(client, "/actions/purge", form)
    assert "Delete failed jobs?" in ask.text and "more than\n<strong>1h</strong>" in ask.text
    done = form_post(client, "/actions/purge", {**form, "confirm": "yes"})
    assert done.headers["location"] == "/?done=purged&n=0"  # none finished an hour ago
    form["older_than"] = "0"
    done = form_post(client, "/actions/purge", {**form, "confirm": "yes"})
    assert done.headers["location"] == "/?done=purged&n=6"
    assert seeded.app.stats()["failed"] == 0
    assert form_post(client, "/actions/purge", {**form, "state": "running"}).status_code == 400
    assert form_post(client, "/actions/purge", {**form, "older_than": "soon"}).status_code == 400


def test_periodic_page_shows_next_fire_time(browser: tuple[TestClient, str]) -> None:
    client, _ = browser
    page = client.get("/periodic").text
    assert "tick" in page and "every 60s" in page and "<time datetime=" in page


def test_periodic_page_without_handlers(store: str) -> None:
    app = Errands(store)
    try:
        page = TestClient(app.dashboard_app(token="t" * 16), base_url="http://127.0.0.1").get(
            "/periodic", headers={"Authorization": "Bearer " + "t" * 16}).text
        assert "knows no handlers" in page
    finally:
        app.close()


def test_workers_page_lists_live_workers(seeded: Seeded, browser: tuple[TestClient, str]) -> None:
    client, _ = browser
    assert "No worker is alive" in client.get("/workers").text
    seeded.app.backend.register_worker(
        WorkerInfo("web-1:4242:abcd", "web-1", 4242, ("mail", "default"), 8, 1.0, running=(seeded.ok,),
                   processed=1234), ttl=60)
    page = client.get("/workers").text
    for text in ("web-1:4242:abcd", "4242", "mail, default", "1,234", f"/jobs/{seeded.ok}", "last heartbeat"):
        assert text in page


def test_login_page_and_sign_out_button(client: TestClient) -> None:
    assert "Sign out" not in client.get("/", headers=BEARER).text  # no session to end
    login = client.get("/login")
    assert login.status_code == 200 and 'type="password"' in login.text
    assert "<style>" in login.text  # its only style, allowed by hash in the CSP
    sign_in(client)
    assert "Sign out" in client.get("/").text


def test_every_page_renders_for_a_bearer_client(seeded: Seeded, client: TestClient) -> None:
    for path in ("/", "/jobs", f"/jobs/{seeded.failed}", "/periodic", "/workers", "/jobs?state=succeeded"):
        response = client.get(path, headers=BEARER)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html"), path
