"""Authentication for everything but health, metrics, signed media URLs, provider webhooks and login.

Fail closed: a path is public only if listed here; anything else (unknown paths too) answers 401
without a valid `Authorization: Bearer` token or session cookie — except console pages, where a
browser without a session is sent to the login page instead. Cookie-authenticated unsafe methods
also need the session's CSRF token in `X-CSRF-Token` (403 without it); bearer tokens are not sent
by browsers on their own, so they need none. Console forms carry the token in a form field, which
`core.console.security.form_route` checks before any console POST handler runs.
"""

from __future__ import annotations

import hmac
import logging
from http.cookies import SimpleCookie

from urllib.parse import urlencode

from starlette.datastructures import Headers
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from core.api.errors import error_response
from core.auth.sessions import COOKIE_NAME, CSRF_HEADER, session_for
from core.auth.tokens import user_for_token

log = logging.getLogger("hookline.auth")

# /metrics is not anonymous: its own check (core/metrics/endpoint.py: the [metrics] token or an
# allowed client address) runs in the route, because a scraper has no user, token or session here.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
PUBLIC_PREFIXES = ("/media/", "/webhooks/whatsapp/", "/console/static/")
LOGIN_PATH = "/api/auth/login"
CONSOLE_LOGIN_PATH = "/console/login"
CONSOLE_PREFIX = "/console/"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_public(method: str, path: str) -> bool:
    return (
        path in PUBLIC_PATHS
        or path.startswith(PUBLIC_PREFIXES)
        or (path == LOGIN_PATH and method == "POST")
        or (path == CONSOLE_LOGIN_PATH and method in ("GET", "HEAD", "POST"))
    )


def is_console_page(path: str) -> bool:
    return path == "/" or path == "/console" or path.startswith(CONSOLE_PREFIX)


class AuthMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        user = None
        authorization = headers.get("authorization", "")
        if authorization[:7].lower() == "bearer ":
            user = await user_for_token(authorization[7:].strip())
            scope["auth_method"] = "token"
        elif COOKIE_NAME in headers.get("cookie", ""):
            cookie = SimpleCookie()
            try:
                cookie.load(headers.get("cookie", ""))
            except Exception:
                cookie = SimpleCookie()
            morsel = cookie.get(COOKIE_NAME)
            session = await session_for(morsel.value) if morsel else None
            if session is not None:
                checked_by_form = scope["path"].startswith(CONSOLE_PREFIX)
                if scope["method"] not in SAFE_METHODS and not checked_by_form and not _csrf_ok(headers, session.csrf_token):
                    await error_response(403, "csrf", "missing or wrong CSRF token (send X-CSRF-Token)")(scope, receive, send)
                    return
                user = session.user
                scope["session"] = session
                scope["auth_method"] = "session"
        if user is None and is_console_page(scope["path"]) and scope["method"] in SAFE_METHODS:
            target = scope["path"] + (f"?{scope['query_string'].decode('latin-1')}" if scope.get("query_string") else "")
            await RedirectResponse(f"{CONSOLE_LOGIN_PATH}?{urlencode({'next': target})}", status_code=303)(scope, receive, send)
            return
        if user is None:
            await error_response(
                401, "unauthenticated", "authentication required", headers={"WWW-Authenticate": 'Bearer realm="hookline"'}
            )(scope, receive, send)
            return
        scope["user"] = user
        await self.app(scope, receive, send)


def _csrf_ok(headers: Headers, expected: str) -> bool:
    given = headers.get(CSRF_HEADER)
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
