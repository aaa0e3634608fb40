"""The errands dashboard inside a Django project's URL space, for its staff users.

``admin_dashboard`` wraps the project's ASGI application: ``/admin/errands/`` (by default) is
the dashboard of a ``TASKS`` alias, everything else goes to Django unchanged::

    # myproject/asgi.py
    from django.core.asgi import get_asgi_application
    from errands.contrib.django.dashboard import admin_dashboard

    application = admin_dashboard(get_asgi_application())

Who gets in is decided by the Django session, as for the admin: a visitor who isn't logged in
is sent to the admin's login page (``?next=`` brings them back); a logged-in user who is not an
active staff member gets 403 (pass ``user_test=lambda user: user.is_superuser`` to ask more).
The Host header is checked against ``ALLOWED_HOSTS``, and the dashboard's cookies are signed
with a key derived from ``SECRET_KEY``, so every server process accepts them. It needs
``errands[dashboard]`` and an ASGI server (uvicorn, daphne); under WSGI, run
``manage.py errands dashboard`` beside the site instead.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.db import close_old_connections
from django.http.request import split_domain_port, validate_host
from django.urls import NoReverseMatch, reverse
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from .backend import get_app

__all__ = ["admin_dashboard", "is_staff", "staff_auth"]

UserTest = Callable[[Any], bool]
_DECISION = "errands.django_user"  # the scope key the guard leaves its answer under for the auth hook
_API_PREFIXES = ("/api", "/metrics")  # machine answers: a status code, never a login page


def is_staff(user: Any) -> bool:
    """The default test: an active staff user, who may use the Django admin."""
    return bool(user.is_active and user.is_staff)


def admin_dashboard(django_app: ASGIApp, *, path: str = "/admin/errands", backend: str = "default",
                    user_test: UserTest = is_staff, **options: Any) -> ASGIApp:
    """``django_app`` with the dashboard of ``TASKS[backend]`` served under ``path`` to the users
    ``user_test`` accepts.

    Args:
        django_app: the project's ASGI application (``get_asgi_application()``).
        path: where the dashboard lives; ``/admin/errands`` puts it beside the admin.
        backend: the ``TASKS`` alias whose jobs it shows.
        user_test: ``user -> bool`` for a logged-in user (default: active staff).
        options: more ``dashboard_app`` options (``title``, ``scrape_token`` for Prometheus).

    >>> application = admin_dashboard(get_asgi_application(), path="/ops/jobs")
    """
    prefix = "/" + path.strip("/")
    guarded = _StaffOnly(_LazyDashboard(backend, user_test, options), user_test)
    return Router(routes=[Mount(prefix, app=guarded)], default=django_app)


def staff_auth(user_test: UserTest = is_staff) -> Callable[[Request], Any]:
    """An ``auth=`` hook for ``Errands.dashboard_app`` that lets in the users of the Django session
    ``user_test`` accepts: for a dashboard mounted some other way.

    >>> starlette_app.mount("/jobs", get_app().dashboard_app(auth=staff_auth()))
    """

    async def auth(request: Request) -> bool:
        decided = request.scope.get(_DECISION)
        if decided is None:
            decided = await _decide(request.scope, user_test)
        return decided is True

    return auth


class _StaffOnly:
    """In front of the dashboard: Django's host check, then the session's user."""

    def __init__(self, app: ASGIApp, user_test: UserTest) -> None:
        self.app = app
        self.user_test = user_test

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        refusal = _host_refusal(request)
        if refusal is None:
            decided = await _decide(scope, self.user_test)
            scope[_DECISION] = decided
            refusal = None if decided is True else await _refuse(request, logged_in=decided is False)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _LazyDashboard:
    """Builds the dashboard on its first request, when Django's settings and apps are ready."""

    def __init__(self, alias: str, user_test: UserTest, options: dict[str, Any]) -> None:
        self.alias, self.user_test, self.options = alias, user_test, options
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            secret = hmac.new(settings.SECRET_KEY.encode(), b"errands.dashboard", hashlib.sha256).digest()
            options = {"secret": secret, **self.options}
            # the host check is Django's (ALLOWED_HOSTS, with its ".example.com" wildcards), done before
            self.app = get_app(self.alias).dashboard_app(auth=staff_auth(self.user_test), allowed_hosts=["*"],
                                                         **options)
        await self.app(scope, receive, send)


def _host_refusal(request: Request) -> Response | None:
    """400 for a Host that ``ALLOWED_HOSTS`` doesn't allow, as Django answers a DisallowedHost."""
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # what Django itself allows then
    domain, _ = split_domain_port(request.headers.get("host", ""))
    if domain and validate_host(domain, allowed):
        return None
    return PlainTextResponse("400: this Host is not in ALLOWED_HOSTS", 400)


async def _decide(scope: Scope, user_test: UserTest) -> bool | None:
    """True: let in; False: logged in but refused; None: nobody is logged in."""
    key = Request(scope).cookies.get(settings.SESSION_COOKIE_NAME)
    if not key:
        return None
    return await sync_to_async(_session_user_passes, thread_sensitive=True)(key, user_test)


def _session_user_passes(key: str, user_test: UserTest) -> bool | None:
    close_old_connections()  # as Django does around a request
    try:
        store = importlib.import_module(settings.SESSION_ENGINE).SessionStore(key)
        user = get_user(SimpleNamespace(session=store))  # verifies the session's auth hash too
        if not user.is_authenticated:
            return None
        return bool(user_test(user))
    finally:
        close_old_connections()


async def _refuse(request: Request, *, logged_in: bool) -> Response:
    where = request.scope.get("root_path", "")
    if logged_in:
        return PlainTextResponse("403: the errands dashboard is for staff users", 403)
    if request.method not in ("GET", "HEAD") or request.url.path[len(where):].startswith(_API_PREFIXES):
        return PlainTextResponse("401: log in first", 401)
    next_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{_login_url()}?{urlencode({'next': next_path})}", 302)


def _login_url() -> str:
    try:
        return str(reverse("admin:login"))
    except NoReverseMatch:  # no admin in this project: its own login page
        return str(settings.LOGIN_URL)
