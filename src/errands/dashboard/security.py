"""The dashboard's guard: who may bind where, who may see what, and which POSTs are genuine.

* **Bind rules** (``check_bind``): loopback by default; any other address needs a token.
* **Host check**: a ``Host`` header other than localhost, 127.0.0.1, [::1] or an allowed host
  gets 403, so a DNS-rebinding page can't talk to a dashboard on the victim's loopback.
* **Credentials**: ``Authorization: Bearer <token>`` (scripts, Prometheus), or the session cookie
  the login form sets (``HttpOnly; SameSite=Strict``, signed, never the token itself), or the
  ``auth(request)`` hook of the app the dashboard is mounted in. Never the query string. Tokens
  are compared with ``hmac.compare_digest``. Without any of them configured every route but
  ``/healthz`` answers 401, unless the dashboard was made ``allow_unauthenticated`` (only
  ``errands dashboard`` on a loopback address without a token does that).
* **CSRF**: every POST authenticated by a cookie or the hook must carry the form field
  ``csrf_token`` (or header ``X-CSRF-Token``) = HMAC(secret, the ``errands_csrf`` cookie); a POST
  whose ``Origin`` is another site, or whose ``Sec-Fetch-Site`` is not ``same-origin``, is
  refused before that. A Bearer request needs none: a browser never adds that header on its own.
* **Headers** on every answer: a CSP with no inline script, ``nosniff``, ``no-referrer``,
  ``frame-ancestors 'none'``, and ``Cache-Control: no-store`` (job data is not for caches).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import ipaddress
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ConfigurationError

logger = logging.getLogger("errands.dashboard")

__all__ = [
    "CSRF_COOKIE", "LOOPBACK_HOSTS", "SESSION_COOKIE", "AuthHook", "Guard", "GuardConfig", "check_bind",
    "csrf_token", "is_loopback", "require_csrf", "session_cookie", "verify_token",
]

AuthHook = Callable[[Request], "bool | Awaitable[bool]"]

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
SESSION_COOKIE = "errands_session"
CSRF_COOKIE = "errands_csrf"
SESSION_SECONDS = 12 * 3600
MIN_TOKEN_LENGTH = 8
PUBLIC_PATHS = frozenset({"/healthz"})  # no host check, no credentials: a load balancer's probe
LOGIN_PATHS = frozenset({"/login"})  # no credentials needed (that's how one gets them)
LOGIN_STYLE = (  # the login page's only style: inline, allowed by its hash (static files need a login)
    "body{font:15px system-ui,sans-serif;background:#f4f5f7;color:#1d2430;display:flex;"
    "justify-content:center;padding-top:12vh}form{background:#fff;padding:2em;border-radius:8px;"
    "box-shadow:0 1px 4px #0002;min-width:20em}input{display:block;width:100%;margin:.5em 0 1em;"
    "padding:.5em;box-sizing:border-box}button{padding:.5em 1.2em}.error{color:#b3261e}"
)
_STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(LOGIN_STYLE.encode()).digest()).decode()
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' '" + _STYLE_HASH + "'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


# bind rules --------------------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve on a non-loopback address without a token (ConfigurationError says how)."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ConfigurationError(f"the dashboard token must be at least {MIN_TOKEN_LENGTH} characters")
    if not is_loopback(host) and not token:
        raise ConfigurationError(
            f"refusing to serve the dashboard on {host} without a token: anyone who can reach it could "
            "retry, cancel and purge jobs. Pass --token (or set $ERRANDS_DASHBOARD_TOKEN), or bind 127.0.0.1"
        )


# configuration -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class GuardConfig:
    token: str | None = None
    scrape_token: str | None = None
    auth: AuthHook | None = None
    allowed_hosts: frozenset[str] = frozenset()
    allow_unauthenticated: bool = False
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @classmethod
    def build(cls, *, token: str | None, scrape_token: str | None, auth: AuthHook | None,
              allowed_hosts: Iterable[str], allow_unauthenticated: bool, secret: str | bytes | None) -> GuardConfig:
        for name, value in (("token", token), ("scrape_token", scrape_token)):
            if value is not None and (not isinstance(value, str) or len(value) < MIN_TOKEN_LENGTH):
                raise ConfigurationError(f"the dashboard {name} must be a str of at least {MIN_TOKEN_LENGTH} characters")
        if auth is not None and not callable(auth):
            raise ConfigurationError(f"auth must be a callable taking the request, got {auth!r}")
        hosts = frozenset(h.strip().lower() for h in allowed_hosts if h.strip())
        if isinstance(secret, str):
            secret = secret.encode()
        if secret is None and token:  # stable across processes and restarts that share the token
            secret = hashlib.sha256(b"errands-dashboard\0" + token.encode()).digest()
        return cls(token=token, scrape_token=scrape_token, auth=auth, allowed_hosts=hosts,
                   allow_unauthenticated=allow_unauthenticated, secret=secret or secrets.token_bytes(32))

    def host_allowed(self, host_header: str) -> bool:
        host = _host_name(host_header)
        return host in LOOPBACK_HOSTS or "*" in self.allowed_hosts or host in self.allowed_hosts


def _host_name(header: str) -> str:
    value = header.strip().lower()
    if value.startswith("["):  # [::1]:8080
        return value.split("]", 1)[0] + "]"
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def verify_token(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


def _sign(secret: bytes, message: str) -> str:
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


# sessions and CSRF -------------------------------------------------------------------------------
def session_cookie(config: GuardConfig, now: float | None = None) -> str:
    """A signed session value: ``nonce.expiry.signature``; the token itself never leaves the server."""
    nonce, expires = secrets.token_hex(16), int((now or time.time()) + SESSION_SECONDS)
    return f"{nonce}.{expires}.{_sign(config.secret, f'session|{nonce}|{expires}')}"


def _valid_session(config: GuardConfig, value: str | None) -> bool:
    if not value or config.token is None:
        return False
    parts = value.split(".")
    if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) < time.time():
        return False
    expected = _sign(config.secret, f"session|{parts[0]}|{parts[1]}")
    return hmac.compare_digest(parts[2].encode(), expected.encode())


def csrf_token(request: Request) -> str:
    """The CSRF token forms of this page carry: bound to this browser's ``errands_csrf`` cookie."""
    config: GuardConfig = request.app.state.errands.guard
    binding = request.scope.get("errands.csrf_cookie") or request.cookies.get(CSRF_COOKIE, "")
    return _sign(config.secret, f"csrf|{binding}")


async def require_csrf(request: Request, form: Any = None) -> None:
    """Raise 403 unless this POST is authenticated by a Bearer header or carries the CSRF token."""
    if request.scope.get("errands.auth") == "bearer":
        return
    given = request.headers.get("x-csrf-token") or (form.get("csrf_token") if form is not None else None)
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not isinstance(given, str) or not hmac.compare_digest(given.encode(), csrf_token(request).encode()):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


# the middleware ----------------------------------------------------------------------------------
def route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root):] or "/"
    return path


class Guard:
    """ASGI middleware in front of every dashboard route (see the module docstring).
    ``deny(request, reason)`` renders the 401 answer (the login page for a browser)."""

    def __init__(self, app: ASGIApp, config: GuardConfig,
                 deny: Callable[[Request, str], Awaitable[Response]]) -> None:
        self.app = app
        self.config = config
        self.deny = deny

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if path in PUBLIC_PATHS:
            await self.app(scope, receive, _with_headers(send, None))
            return
        request = Request(scope, receive)
        refusal = self._refusal(request)
        new_csrf = None if request.cookies.get(CSRF_COOKIE) else secrets.token_urlsafe(24)
        scope["errands.csrf_cookie"] = new_csrf or request.cookies.get(CSRF_COOKIE)
        cookie = _csrf_set_cookie(new_csrf, request) if new_csrf else None
        if refusal is not None:
            await refusal(scope, receive, _with_headers(send, None))
            return
        try:
            mode = await self._authenticate(request, path)
        except Exception:  # a failing auth= hook denies; it never turns into a 500 with details
            logger.exception("dashboard: the auth hook failed; denying the request")
            mode = None
        if mode is None and path not in LOGIN_PATHS:
            response = await self.deny(request, "credentials needed")
            await response(scope, receive, _with_headers(send, cookie))
            return
        scope["errands.auth"] = mode
        await self._serve(scope, receive, _with_headers(send, cookie))

    async def _serve(self, scope: Scope, receive: Receive, send: _HeaderSend) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception:  # a bug or an outage: logged here, and the browser gets no traceback
            logger.exception("dashboard: unhandled error on %s %s", scope.get("method"), route_path(scope))
            if not send.started:
                await PlainTextResponse("500: internal error; see the server's log", 500)(scope, receive, send)

    def _refusal(self, request: Request) -> Response | None:
        if not self.config.host_allowed(request.headers.get("host", "")):
            return PlainTextResponse("403: this Host is not allowed (add it to allowed_hosts)", 403)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            # "null" is what a browser sends for its own form under Referrer-Policy: no-referrer;
            # the CSRF token decides those
            origin = request.headers.get("origin")
            if origin not in (None, "null") and urlsplit(origin).netloc.lower() != request.headers.get(
                    "host", "").lower():
                return PlainTextResponse("403: cross-origin request refused", 403)
            if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
                return PlainTextResponse("403: cross-site request refused", 403)
        return None

    async def _authenticate(self, request: Request, path: str) -> str | None:
        config = self.config
        bearer = _bearer(request.headers)
        if bearer is not None:
            if verify_token(bearer, config.token):
                return "bearer"
            if path == "/metrics" and verify_token(bearer, config.scrape_token):
                return "bearer"
            return None  # a wrong token is never rescued by a cookie
        if _valid_session(config, request.cookies.get(SESSION_COOKIE)):
            return "session"
        if config.auth is not None:
            allowed = config.auth(request)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if allowed is True:
                return "hook"
        if config.allow_unauthenticated:
            return "open"
        return None


def _bearer(headers: Headers) -> str | None:
    """The Bearer credential, or None without one (another scheme is the host app's business)."""
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def _csrf_set_cookie(value: str, request: Request) -> bytes:
    cookie: SimpleCookie = SimpleCookie()
    cookie[CSRF_COOKIE] = value
    morsel = cookie[CSRF_COOKIE]
    morsel["path"] = cookie_path(request.scope)
    morsel["httponly"] = True
    morsel["samesite"] = "Strict"
    if request.url.scheme == "https":
        morsel["secure"] = True
    return morsel.OutputString().encode("latin-1")


def cookie_path(scope: Scope) -> str:
    root: str = scope.get("root_path", "")
    return (root.rstrip("/") or "") + "/"


class _HeaderSend:
    """Wraps ``send``: adds the security headers (and a new CSRF cookie) to the response start."""

    def __init__(self, send: Send, cookie: bytes | None) -> None:
        self.send = send
        self.cookie = cookie
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _REPLACED]
            headers += SECURITY_HEADERS
            if self.cookie is not None:
                headers.append((b"set-cookie", self.cookie))
            message = {**message, "headers": headers}
        await self.send(message)


_with_headers = _HeaderSend


_REPLACED = frozenset(name for name, _ in SECURITY_HEADERS)
