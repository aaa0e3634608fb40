"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright (its Python
package only; the browser is /usr/bin/chromium, which .ci/run installs when missing), against
uvicorn on a free loopback port in a thread.

A screenshot of each page lands in tests/dashboard/artifacts/ (not committed); with
ERRANDS_UPDATE_SCREENSHOTS=1 the realistic set (``docs-*.png``) is copied to docs/screenshots/
for the README.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from errands import Errands

from .conftest import PAYLOADS, TOKEN, Seeded, make_app, seed

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).parent / "artifacts"
DOCS = Path(__file__).parents[2] / "docs" / "screenshots"

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the Python package)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Seeded]:
    app = make_app(f"sqlite:///{tmp_path / 'browser.db'}")
    try:
        yield seed(app)
    finally:
        app.close()


@pytest.fixture
def server(world: Seeded) -> Iterator[str]:
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(world.app.dashboard_app(token=TOKEN), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, name="dashboard-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        instance.should_exit = True
        thread.join(10)


class Browser:
    """A page plus everything it reported: dialogs (none may open), console errors (a CSP
    violation is one) and uncaught script errors."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _console(self, message: Any) -> None:
        # the sign-in page itself comes with status 401, which Chromium reports as a failed load
        if message.type == "error" and "status of 401" not in message.text:
            self.errors.append(message.text)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does it)")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = chromium.new_context(viewport={"width": 1280, "height": 860}, locale="en-GB",
                                           timezone_id="UTC")
            page = context.new_page()
            page.set_default_timeout(15_000)
            yield Browser(page)
        finally:
            chromium.close()
    if os.environ.get("ERRANDS_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        for picture in ARTIFACTS.glob("docs-*.png"):
            shutil.copy(picture, DOCS / picture.name.removeprefix("docs-"))


def sign_in(browser: Browser, base: str) -> None:
    page = browser.page
    response = page.goto(base + "/")
    assert response is not None and response.status == 401
    browser.shot("login")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    assert page.locator("h1").inner_text() == "Overview"


def test_overview_filter_open_retry(world: Seeded, server: str, browser: Browser) -> None:
    page = browser.page
    world.app.start(concurrency=2, queues=["nothing-here"])  # a live worker for the workers page
    try:
        sign_in(browser, server)
        assert page.locator(".card-failed .count").inner_text() == "6"
        assert page.locator("figure.chart svg rect.ok").count() >= 1
        browser.shot("overview")

        page.click("nav >> text=Jobs")
        page.select_option("select[name=state]", "failed")
        page.click("form.filters button")
        page.wait_for_url("**/jobs?state=failed*")
        assert page.locator("table.jobs tbody tr").count() == 6
        assert page.locator("table.jobs .state").all_inner_texts() == ["failed"] * 6
        browser.shot("jobs-failed")

        page.click(f"a[href='/jobs/{world.failed}']")
        assert page.locator("#error").inner_text().startswith("ValueError: kaput")
        assert page.locator("h1 .state").inner_text() == "failed"
        browser.shot("job-failed")
        page.click("#retry")
        page.wait_for_url(f"**/jobs/{world.failed}?done=retried")
        assert page.locator("h1 .state").inner_text() == "available"
        assert "available again" in page.locator(".flash").inner_text()
        assert str(world.app.get_job(world.failed).state) == "available"

        page.goto(server + "/periodic")
        assert "every 60s" in page.locator("table").inner_text()
        browser.shot("periodic")
        page.goto(server + "/workers")
        page.wait_for_selector("table.grid-table tbody tr")
        assert "nothing-here" in page.locator("table").inner_text()
        browser.shot("workers")

        page.goto(server + "/")
        page.select_option("select[name=state]", "succeeded")
        page.fill("input[name=older_than]", "0")
        page.click("text=Purge…")
        assert page.locator("h1").inner_text() == "Delete succeeded jobs?"
        browser.shot("purge-confirm")
        page.click("#confirm-purge")
        page.wait_for_url("**/?done=purged*")
        assert world.app.get_job(world.ok) is None
    finally:
        world.app.stop(timeout=5)
    assert browser.dialogs == [] and browser.errors == []


def test_hostile_job_fields_show_as_text_and_run_nothing(world: Seeded, server: str, browser: Browser) -> None:
    page = browser.page
    sign_in(browser, server)
    visited = [f"/jobs/{job_id}" for job_id in world.hostile] + ["/jobs", "/", "/queues", "/limits"]
    visited += [f"/jobs?queue={quote(p, safe='')}&name={quote(p, safe='')}" for p in PAYLOADS]
    for path in visited:
        page.goto(server + path)
        assert page.locator("img").count() == 0, path  # no element came out of a job field
        assert page.locator("script:not([src])").count() == 0, path
        assert page.locator("a[href^='javascript']").count() == 0, path
    for job_id, payload in zip(world.hostile, PAYLOADS):
        page.goto(f"{server}/jobs/{job_id}")
        assert page.locator("h1").inner_text().startswith(payload), payload  # the name, as typed
        assert payload in page.locator("#args").inner_text()
        assert "18446744073709551617" in page.locator("#args").inner_text()  # beyond 2**64: exact, as text
        shown = page.locator("dl.fields").inner_text()
        assert shown.count(payload) >= 3  # queue, unique key and worker: text
        if job_id == world.hostile[0]:
            assert payload in page.locator("#result").inner_text()
        else:
            assert payload in page.locator("#error").inner_text()
    page.goto(f"{server}/jobs/{world.hostile[1]}")
    browser.shot("job-hostile")
    assert browser.dialogs == [], browser.dialogs
    assert browser.errors == [], browser.errors


def test_pause_resume_and_a_workflow_step(world: Seeded, server: str, browser: Browser) -> None:
    page = browser.page
    add = world.app.handler("add")
    flow = world.app.group([add.s(1, 2), add.s(3, 4)]).then(add.s(0).on_failure("run")).perform()
    sign_in(browser, server)

    page.click("nav >> text=Queues")
    row = page.locator("table.queues tr", has_text="default")
    assert row.locator(".badge").inner_text() == "active"
    row.locator("button.pause").click()
    page.wait_for_url("**/queues?done=paused")
    assert world.app.paused_queues() == {"default"}
    assert page.locator("table.queues tr", has_text="default").locator(".badge").inner_text() == "paused"
    browser.shot("queues-paused")
    page.locator("table.queues tr", has_text="default").locator("button.resume").click()
    page.wait_for_url("**/queues?done=resumed")
    assert world.app.paused_queues() == frozenset()

    page.click("nav >> text=Limits")
    assert "No limits are declared" in page.locator("main").inner_text()

    page.goto(f"{server}/jobs/{flow.id}")
    assert page.locator("#progress-count").inner_text() == "0 of 2 finished"
    assert page.locator("#workflow progress").get_attribute("max") == "2"
    browser.shot("job-workflow-callback")
    page.locator("#workflow ul.linked a").first.click()
    page.wait_for_url(f"**/jobs/{flow.ids[0]}")
    assert page.locator("#workflow h3").inner_text() == "Wakes"
    browser.shot("job-workflow")
    assert browser.dialogs == [] and browser.errors == []


def test_screenshots_are_kept_as_artifacts(world: Seeded, server: str, browser: Browser) -> None:
    sign_in(browser, server)
    for name in ("login", "overview"):
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 5_000


def test_the_app_without_a_token_is_locked(tmp_path: Path, browser: Browser) -> None:
    import uvicorn

    app = Errands("memory://")
    port = _free_port()
    instance = uvicorn.Server(uvicorn.Config(app.dashboard_app(), host="127.0.0.1", port=port, log_level="warning",
                                             lifespan="off"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    try:
        while not instance.started:
            time.sleep(0.02)
        response = browser.page.goto(f"http://127.0.0.1:{port}/")
        assert response is not None and response.status == 401
        assert "lets nobody in" in browser.page.inner_text("body")
    finally:
        instance.should_exit = True
        thread.join(10)
        app.close()


def test_docs_screenshots_of_a_realistic_day(tmp_path: Path, browser: Browser) -> None:
    """The pages with believable data, for docs/screenshots/ (ERRANDS_UPDATE_SCREENSHOTS=1)."""
    import sqlite3

    import uvicorn

    from errands.backends.base import SlotRequest, WorkerInfo

    app = Errands(f"sqlite:///{tmp_path / 'demo.db'}")

    @app.job(queue="mail", retries=0)
    def send_welcome(user_id: int) -> None:
        if user_id % 23 == 0:
            raise ConnectionError("SMTP server smtp.internal:587 closed the connection")

    @app.job(queue="images", retries=0)
    def resize(image_id: str, width: int = 256) -> dict[str, object]:
        if image_id.endswith("7"):
            raise ValueError(f"cannot identify image file 'uploads/{image_id}.heic'")
        return {"image": image_id, "width": width}

    @app.job(queue="reports")
    def monthly_report(account: str) -> str:
        return f"s3://reports/{account}/2026-10.pdf"

    @app.job(queue="reports")
    def album_ready(summary: dict[str, object], album: str) -> None: ...

    @app.job(queue="crm", concurrency=5, rate_limit="100/m")
    def sync_crm(account: str) -> None: ...

    @app.job(queue="crm", concurrency=1, limit_key=lambda account, **_: account)
    def rebuild_ledger(account: str) -> None: ...

    @app.periodic(cron="*/5 * * * *")
    def sweep_sessions() -> None: ...

    @app.periodic(every=30.0, queue="reports")
    def refresh_dashboards() -> None: ...

    send_welcome.perform_many([((n,), {}) for n in range(1, 260)])
    resize.perform_many([((f"img{n:04d}",), {"width": 512}) for n in range(1, 180)])
    monthly_report.perform_many([((f"acct-{n}",), {}) for n in range(1, 40)])
    app.run_worker(burst=True, concurrency=8, install_signals=False)
    now = app.backend.now()
    with sqlite3.connect(tmp_path / "demo.db") as db:  # spread the finishes over the hour, busier lately
        db.execute("UPDATE errands_jobs SET finished_at = ? - 3540 * (1 - sqrt((abs(random()) % 1000) / 1000.0))",
                   (now,))
        db.execute("UPDATE errands_jobs SET started_at = finished_at - 0.05 - (abs(random()) % 900) / 1000.0, "
                   "created_at = finished_at - 2.5, run_at = finished_at - 2.5")
    # a workflow under way: the images are resized (one fails), the reports queue is paused
    app.pause_queue("reports")
    album = app.group([resize.s(f"album-{n:02d}") for n in range(1, 9)] + [monthly_report.s("acct-albums")]) \
        .then(album_ready.s("summer-2026")).perform()
    app.run_worker(queues=["images"], burst=True, concurrency=4, install_signals=False)
    app.limit_queue("images", concurrency=4, rate_limit="20/s")
    app.backend.acquire_slots([SlotRequest("job:sync_crm", f"busy-{n}", 5) for n in range(3)]
                              + [SlotRequest(f"job:rebuild_ledger:acct-{n}", "busy", 1) for n in (4, 17)]
                              + [SlotRequest("queue:images", f"busy-{n}", 4) for n in range(4)], 600)
    resize.perform_in(600, "img9999", width=1024)
    monthly_report.perform_in(3600, "acct-99")
    send_welcome.perform_many([((n,), {}) for n in range(900, 912)])
    running = app.backend.claim(["mail"], 3, worker_id="worker-2:31337:6be1", lease=600)
    for host, pid, queues, ids, done in (("worker-1", 4242, ("mail", "images"), (), 8123),
                                         ("worker-2", 31337, ("mail",), tuple(c.id for c in running), 4410),
                                         ("batch-1", 977, ("reports",), (), 39)):
        app.backend.register_worker(WorkerInfo(f"{host}:{pid}:6be1", host, pid, queues, 8, now - 5400,
                                               running=ids, processed=done), ttl=600)
    failed = app.list_jobs(state="failed", name="resize", limit=1)[0].id

    port = _free_port()
    instance = uvicorn.Server(uvicorn.Config(app.dashboard_app(token=TOKEN), host="127.0.0.1", port=port,
                                             log_level="warning", lifespan="off"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    try:
        while not instance.started:
            time.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        sign_in(browser, base)
        for name, path in (("overview", "/"), ("jobs", "/jobs?state=failed"), ("job", f"/jobs/{failed}"),
                           ("workers", "/workers"), ("periodic", "/periodic"), ("queues", "/queues"),
                           ("limits", "/limits"), ("workflow", f"/jobs/{album.id}")):
            browser.page.goto(base + path)
            browser.shot(f"docs-{name}")
        assert browser.errors == [] and browser.dialogs == []
    finally:
        instance.should_exit = True
        thread.join(10)
        app.close()
