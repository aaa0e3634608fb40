"""The errands dashboard under /admin/errands/ of the test project's real ASGI application
(``djproject.asgi``): Django's session decides, as for the admin. Anonymous visitors are sent to
the admin's login, logged-in non-staff users get 403, staff users see the dashboard; every other
path is Django's."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import pytest

pytest.importorskip("django")
pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")

from starlette.applications import Starlette
from starlette.routing import Mount

from errands.contrib.django import get_app
from errands.contrib.django.dashboard import staff_auth

from .conftest import DjangoProject


@pytest.fixture
def application(django_project: DjangoProject) -> Any:
    from djproject.asgi import application

    return application


def login(**flags: bool) -> str:
    """A real Django session for a new user with these flags; returns the session cookie."""
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.test import Client

    user = User.objects.create_user(f"user-{uuid4().hex[:8]}", password="x", **flags)
    client = Client()
    client.force_login(user)
    return str(client.cookies[settings.SESSION_COOKIE_NAME].value)


def request(app: Any, path: str, *, session: str | None = None, host: str = "testserver",
            method: str = "GET") -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        cookies = {"sessionid": session} if session else None
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}", cookies=cookies) as client:
            return await client.request(method, path)

    return asyncio.run(call())


def test_anonymous_visitors_are_sent_to_the_admin_login(application: Any) -> None:
    page = request(application, "/admin/errands/jobs?state=failed")
    assert page.status_code == 302
    assert page.headers["location"] == "/admin/login/?next=%2Fadmin%2Ferrands%2Fjobs%3Fstate%3Dfailed"
    assert request(application, "/admin/errands/api/stats").status_code == 401  # machines get a status
    assert request(application, "/admin/errands/", session="not-a-session").status_code == 302


def test_logged_in_users_who_are_not_staff_are_refused(application: Any) -> None:
    user = login()
    assert request(application, "/admin/errands/", session=user).status_code == 403
    assert request(application, "/admin/errands/api/stats", session=user).status_code == 403
    inactive_staff = login(is_staff=True, is_active=False)  # Django's auth backend refuses them
    assert request(application, "/admin/errands/", session=inactive_staff).status_code == 302


def test_staff_users_see_the_dashboard_with_the_projects_tasks(application: Any, django_project: DjangoProject) -> None:
    from djshop.tasks import add

    result = add.enqueue(7, 8)
    staff = login(is_staff=True)
    overview = request(application, "/admin/errands/", session=staff)
    assert overview.status_code == 200, overview.text
    assert "text/html" in overview.headers["content-type"]
    jobs = request(application, "/admin/errands/jobs?name=djshop.tasks.add", session=staff)
    assert jobs.status_code == 200 and result.id in jobs.text
    stats = request(application, "/admin/errands/api/stats", session=staff)
    assert stats.status_code == 200 and "available" in stats.json()["total"]
    # the dashboard's own CSRF rule still holds for a session-authenticated POST
    assert request(application, f"/admin/errands/jobs/{result.id}/cancel", session=staff,
                   method="POST").status_code == 403
    assert get_app().get_job(result.id) is not None
    assert request(application, "/admin/errands", session=staff).status_code in (307, 308)


def test_hosts_follow_allowed_hosts(application: Any) -> None:
    staff = login(is_staff=True)
    assert request(application, "/admin/errands/", session=staff, host="evil.test").status_code == 400
    assert request(application, "/admin/errands/", session=staff, host="ops.example.com").status_code == 200


def test_every_other_path_is_djangos(application: Any) -> None:
    admin_login = request(application, "/admin/login/")
    assert admin_login.status_code == 200 and "csrfmiddlewaretoken" in admin_login.text
    assert request(application, "/nowhere/").status_code == 404


def test_staff_auth_guards_a_dashboard_mounted_elsewhere(django_project: DjangoProject) -> None:
    app = Starlette(routes=[Mount("/jobs", app=get_app().dashboard_app(auth=staff_auth(), allowed_hosts=["testserver"]))])
    assert request(app, "/jobs/api/stats").status_code == 401
    assert request(app, "/jobs/api/stats", session=login()).status_code == 401
    assert request(app, "/jobs/api/stats", session=login(is_staff=True)).status_code == 200

