"""FAULTS.md, "Dashboard security": one test (at least) per point, on memory and SQLite."""

from __future__ import annotations

import re

import markupsafe
import pytest
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from errands import Errands
from errands.dashboard import security
from errands.errors import BackendUnavailable, ConfigurationError

from .conftest import BASE, BEARER, PAYLOADS, TOKEN, Seeded, csrf_of, form_post, sign_in


def all_routes(client: TestClient) -> list[tuple[str, str]]:
    """(method, path) of every route of the dashboard, path parameters filled in."""
    found = []
    for route in client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, Mount):
            found.append(("GET", route.path + "/dashboard.css"))
        elif isinstance(route, Route):
            path = route.path.replace("{job_id}", "0190ffff-0000-7000-8000-000000000001")
            found += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return found


# binding ---------------------------------------------------------------------------------------
def test_loopback_binds_without_a_token_and_anything_else_needs_one() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        security.check_bind(host, None)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        with pytest.raises(ConfigurationError, match="without a token"):
            security.check_bind(host, None)
        security.check_bind(host, TOKEN)
    with pytest.raises(ConfigurationError, match="at least 8"):
        security.check_bind("0.0.0.0", "short")


def test_mounted_without_token_or_hook_denies_everything_but_healthz(app: Errands) -> None:
    client = TestClient(app.dashboard_app(), base_url=BASE)
    for method, path in all_routes(client):
        if path == "/healthz":
            continue
        response = client.request(method, path, follow_redirects=False)
        assert response.status_code == 401 or (path == "/login" and response.status_code in (401, 403)), (method, path)
    assert "lets nobody in" in client.get("/").text
    assert client.get("/healthz").json() == {"ok": True}


def test_mounted_in_a_users_app_under_a_prefix(app: Errands) -> None:
    from starlette.applications import Starlette

    outer = Starlette(routes=[Mount("/ops/errands", app=app.dashboard_app(token=TOKEN))])
    client = TestClient(outer, base_url=BASE)
    assert client.get("/ops/errands/").status_code == 401
    page = client.get("/ops/errands/", headers=BEARER)
    assert page.status_code == 200
    assert 'href="/ops/errands/static/dashboard.css"' in page.text
    assert client.get("/ops/errands/static/dashboard.js", headers=BEARER).status_code == 200


def test_auth_hook_lets_in_what_it_approves(app: Errands) -> None:
    dashboard = app.dashboard_app(auth=lambda request: request.headers.get("x-user") == "ops")
    client = TestClient(dashboard, base_url=BASE)
    assert client.get("/").status_code == 401
    assert client.get("/", headers={"x-user": "ops"}).status_code == 200
    page = client.get("/", headers={"x-user": "ops"})
    # a hook authenticates by what the browser sends by itself, so its POSTs need the CSRF token
    assert form_post(client, "/actions/retry-failed", headers={"x-user": "ops"}).status_code == 403
    ok = form_post(client, "/actions/retry-failed", {"csrf_token": csrf_of(page.text)}, headers={"x-user": "ops"})
    assert ok.status_code == 303


async def _async_hook(request: object) -> bool:
    return True


def test_auth_hook_may_be_async(app: Errands) -> None:
    assert TestClient(app.dashboard_app(auth=_async_hook), base_url=BASE).get("/").status_code == 200


# credentials -----------------------------------------------------------------------------------
def test_every_route_but_healthz_answers_401_without_credentials(client: TestClient) -> None:
    routes = all_routes(client)
    assert len(routes) >= 20
    for method, path in routes:
        response = client.request(method, path, follow_redirects=False)
        if path == "/healthz":
            assert response.status_code == 200
        elif path == "/login":
            assert response.status_code in (200, 403), (method, path)  # the way in; its POST needs CSRF
        else:
            assert response.status_code == 401, (method, path, response.status_code)


def test_api_and_metrics_401_say_bearer(client: TestClient) -> None:
    for path in ("/api/jobs", "/metrics"):
        response = client.get(path)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/stats").json()["error"].startswith("unauthorized")


def test_token_in_the_query_string_is_ignored(client: TestClient) -> None:
    for path in (f"/?token={TOKEN}", f"/api/stats?token={TOKEN}", f"/metrics?token={TOKEN}",
                 f"/api/stats?access_token={TOKEN}"):
        assert client.get(path).status_code == 401


def test_bearer_header_and_wrong_tokens(client: TestClient) -> None:
    assert client.get("/api/stats", headers=BEARER).status_code == 200
    for value in ("Bearer nope-nope-nope", f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer ", TOKEN):
        assert client.get("/api/stats", headers={"Authorization": value}).status_code == 401


def test_tokens_are_compared_with_compare_digest(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = security.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    assert client.get("/api/stats", headers=BEARER).status_code == 200
    assert (TOKEN.encode(), TOKEN.encode()) in calls


def test_login_sets_an_httponly_samesite_strict_session_cookie(client: TestClient) -> None:
    page = client.get("/login")
    response = client.post("/login", data={"token": TOKEN, "csrf_token": csrf_of(page.text), "next": "/jobs"},
                           follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/jobs"
    cookies = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    session = next(c for c in cookies if c.startswith("errands_session="))
    assert "HttpOnly" in session and "SameSite=strict" in session.replace("Strict", "strict")
    assert TOKEN not in session  # a signed nonce, never the token
    csrf_cookie = page.headers["set-cookie"]
    assert "HttpOnly" in csrf_cookie and "SameSite=Strict" in csrf_cookie
    assert client.get("/jobs").status_code == 200  # the cookie alone now lets the browser in
    assert client.get("/api/stats").status_code == 200


def test_a_wrong_login_is_refused_and_a_forged_session_is_not_a_session(client: TestClient) -> None:
    page = client.get("/login")
    wrong = client.post("/login", data={"token": "guess-guess-guess", "csrf_token": csrf_of(page.text)})
    assert wrong.status_code == 401 and "not right" in wrong.text
    client.cookies.set("errands_session", "0" * 32 + ".9999999999." + "0" * 64)
    assert client.get("/").status_code == 401


def test_sign_out_ends_the_session(client: TestClient) -> None:
    csrf = sign_in(client)
    assert form_post(client, "/logout", {"csrf_token": csrf}).status_code == 303
    assert client.get("/").status_code == 401


def test_scrape_token_reads_metrics_only(app: Errands) -> None:
    client = TestClient(app.dashboard_app(token=TOKEN, scrape_token="scrape-0123456789"), base_url=BASE)
    scrape = {"Authorization": "Bearer scrape-0123456789"}
    assert client.get("/metrics", headers=scrape).status_code == 200
    assert client.get("/metrics", headers=BEARER).status_code == 200
    assert client.get("/api/stats", headers=scrape).status_code == 401
    assert client.get("/", headers=scrape).status_code == 401


# POST only, CSRF ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [
    "/jobs/0190ffff-0000-7000-8000-000000000001/retry", "/jobs/0190ffff-0000-7000-8000-000000000001/cancel",
    "/actions/retry-failed", "/actions/purge", "/logout",
    "/api/jobs/0190ffff-0000-7000-8000-000000000001/retry", "/api/jobs/0190ffff-0000-7000-8000-000000000001/cancel",
    "/api/actions/retry-failed", "/api/actions/purge",
    "/queues/pause", "/queues/resume", "/api/queues/pause", "/api/queues/resume",
])
def test_actions_are_post_only(client: TestClient, path: str) -> None:
    assert client.get(path, headers=BEARER).status_code == 405


def test_cookie_post_without_csrf_token_is_refused(seeded: Seeded, client: TestClient) -> None:
    sign_in(client)
    response = form_post(client, f"/jobs/{seeded.failed}/retry")
    assert response.status_code == 403
    assert form_post(client, f"/jobs/{seeded.failed}/retry", {"csrf_token": "forged"}).status_code == 403
    assert client.post(f"/api/jobs/{seeded.failed}/retry").status_code == 403
    assert str(seeded.app.get_job(seeded.failed).state) == "failed"  # nothing happened


def test_cross_origin_post_is_refused_even_with_the_csrf_token(seeded: Seeded, client: TestClient) -> None:
    csrf = sign_in(client)
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "http://127.0.0.1.evil.example"},
                    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}):
        response = form_post(client, f"/jobs/{seeded.failed}/retry", {"csrf_token": csrf}, headers=headers)
        assert response.status_code == 403, headers
    assert str(seeded.app.get_job(seeded.failed).state) == "failed"
    assert form_post(client, f"/jobs/{seeded.failed}/retry", headers={"Origin": "null"}).status_code == 403
    # what a browser sends for the dashboard's own form under Referrer-Policy: no-referrer
    own = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    same = form_post(client, f"/jobs/{seeded.failed}/retry", {"csrf_token": csrf}, headers=own)
    assert same.status_code == 303
    assert str(seeded.app.get_job(seeded.failed).state) == "available"


def test_csrf_token_is_bound_to_the_browser(seeded: Seeded, client: TestClient) -> None:
    csrf = sign_in(client)
    other = TestClient(client.app, base_url=BASE)  # another browser: its own csrf cookie
    sign_in(other)
    assert form_post(other, f"/jobs/{seeded.failed}/retry", {"csrf_token": csrf}).status_code == 403


def test_bearer_posts_need_no_csrf_token(seeded: Seeded, client: TestClient) -> None:
    assert client.post(f"/api/jobs/{seeded.failed}/retry", headers=BEARER).json() == {"retried": True}


# escaping ------------------------------------------------------------------------------------------
def test_every_job_field_is_escaped(seeded: Seeded, client: TestClient) -> None:
    pages = [client.get(f"/jobs/{job_id}", headers=BEARER).text for job_id in seeded.hostile]
    pages += [client.get("/jobs", headers=BEARER).text, client.get("/", headers=BEARER).text]
    pages += [client.get("/jobs", params={"queue": p, "name": p}, headers=BEARER).text for p in PAYLOADS]
    for page in pages:
        assert "<script>alert" not in page and "<img" not in page and 'href="javascript' not in page
        assert ">49<" not in page and "&gt;49" not in page  # {{7*7}} is never evaluated
        scripts = re.findall(r"<script[^>]*>", page)
        assert all('src="/static/dashboard.js"' in tag for tag in scripts)  # no inline script at all
    detail = client.get(f"/jobs/{seeded.hostile[1]}", headers=BEARER).text
    assert str(markupsafe.escape(PAYLOADS[1])) in detail  # shown, as text
    assert "{{7*7}}" in client.get(f"/jobs/{seeded.hostile[4]}", headers=BEARER).text
    assert "18446744073709551617" in client.get(f"/jobs/{seeded.hostile[0]}", headers=BEARER).text


def test_api_returns_hostile_fields_as_json_data(seeded: Seeded, client: TestClient) -> None:
    job = client.get(f"/api/jobs/{seeded.hostile[0]}", headers=BEARER)
    assert job.headers["content-type"] == "application/json"
    data = job.json()
    assert data["name"] == PAYLOADS[0] and data["result"] == PAYLOADS[0] and data["args"][1] == 2**64 + 1


# headers ---------------------------------------------------------------------------------------
def test_security_headers_on_every_answer(client: TestClient) -> None:
    for path in ("/", "/jobs", "/api/stats", "/metrics", "/static/dashboard.css", "/nope", "/healthz"):
        response = client.get(path, headers=BEARER)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    for path in ("/api", "/api/stats", "/api/jobs", "/api/workers"):
        assert client.get(path, headers=BEARER).headers["cache-control"] == "no-store"


def test_assets_are_served_from_the_package(client: TestClient) -> None:
    page = client.get("/", headers=BEARER).text
    assert "http://" not in page.replace(BASE, "") and "https://" not in page  # no CDN
    assert client.get("/static/dashboard.js", headers=BEARER).headers["content-type"].startswith("text/javascript")


# DNS rebinding ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("host", "status"), [
    ("127.0.0.1:8080", 200), ("localhost", 200), ("[::1]:8080", 200), ("127.0.0.1", 200),
    ("evil.example", 403), ("evil.example:8080", 403), ("127.0.0.1.evil.example", 403), ("", 403),
])
def test_host_header_must_be_loopback_or_allowed(client: TestClient, host: str, status: int) -> None:
    assert client.get("/api/stats", headers={**BEARER, "Host": host}).status_code == status


def test_allowed_hosts(app: Errands) -> None:
    client = TestClient(app.dashboard_app(token=TOKEN, allowed_hosts=["ops.example.com"]), base_url=BASE)
    assert client.get("/api/stats", headers={**BEARER, "Host": "ops.example.com"}).status_code == 200
    assert client.get("/api/stats", headers={**BEARER, "Host": "evil.example"}).status_code == 403


# errors, URL, redirects, purge -----------------------------------------------------------------
def test_no_traceback_or_config_on_error_pages(app: Errands, client: TestClient,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret-config-value at /etc/passwd")

    monkeypatch.setattr(app, "list_jobs", broken)
    for path in ("/jobs", "/api/jobs"):
        response = client.get(path, headers=BEARER)
        assert response.status_code == 500
        assert "Traceback" not in response.text and "secret-config-value" not in response.text

    def unavailable(*args: object, **kwargs: object) -> None:
        raise BackendUnavailable("cannot reach redis at :hunter2@db:6379")

    monkeypatch.setattr(app, "list_jobs", unavailable)
    for path in ("/jobs", "/api/jobs"):
        response = client.get(path, headers=BEARER)
        assert response.status_code == 503 and "hunter2" not in response.text


def test_backend_url_shown_with_its_password_hidden() -> None:
    app = Errands("memory://admin:hunter2@localhost/")
    try:
        page = TestClient(app.dashboard_app(token=TOKEN), base_url=BASE).get("/", headers=BEARER).text
        assert "hunter2" not in page and "admin:***@localhost" in page
    finally:
        app.close()


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example",
                                    "javascript:alert(1)", "/jobs\r\nLocation: https://evil.example"])
def test_no_open_redirect_after_login(client: TestClient, target: str) -> None:
    page = client.get("/login")
    response = client.post("/login", data={"token": TOKEN, "csrf_token": csrf_of(page.text), "next": target},
                           follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/"


def test_purge_asks_for_confirmation(seeded: Seeded, client: TestClient) -> None:
    csrf = sign_in(client)
    ask = form_post(client, "/actions/purge", {"csrf_token": csrf, "state": "succeeded", "older_than": "0"})
    assert ask.status_code == 200 and 'name="confirm" value="yes"' in ask.text
    assert seeded.app.get_job(seeded.ok) is not None  # nothing deleted yet
    done = form_post(client, "/actions/purge", {"csrf_token": csrf, "state": "succeeded", "older_than": "0",
                                                "confirm": "yes"})
    assert done.status_code == 303 and "done=purged" in done.headers["location"]
    assert seeded.app.get_job(seeded.ok) is None
    api = client.post("/api/actions/purge", headers=BEARER, json={"state": "failed"})
    assert api.status_code == 400 and "confirm" in api.json()["error"]
    assert seeded.app.get_job(seeded.failed) is not None


def test_a_failing_auth_hook_denies(app: Errands) -> None:
    def broken(request: object) -> bool:
        raise RuntimeError("secret-config-value")

    response = TestClient(app.dashboard_app(auth=broken), base_url=BASE).get("/api/stats")
    assert response.status_code == 401 and "secret-config-value" not in response.text
