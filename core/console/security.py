"""Console forms: CSRF in a form field, and answers for plain browsers and for the console's fetch.

Browsers cannot add headers to a plain HTML form, so the auth middleware lets cookie-authenticated
POSTs under `/console/` through without `X-CSRF-Token`; in exchange every one of them is built by
`form_route`, which refuses (403) a form without the session's token before the handler runs. A
bearer token does not open console forms: they are for signed-in browsers only. The login form,
sent before there is a session, carries a token that must match a cookie set with the form
(double submit), so another site cannot sign a browser into an account of its choosing.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from core.api.errors import ApiError
from core.console.i18n import language_of, translator
from core.console.rendering import render

CSRF_FIELD = "csrf_token"
LOGIN_CSRF_COOKIE = "hookline_login_csrf"
FETCH_HEADER = "x-requested-with"

FormHandler = Callable[[Request, FormData], Awaitable[Response]]


class FormError(Exception):
    """A form that cannot be carried out: say why, and where the browser goes back to."""

    def __init__(self, message: str, back: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.back = back
        self.status = status


def from_fetch(request: Request) -> bool:
    return request.headers.get(FETCH_HEADER) == "fetch"


def done(request: Request, url: str) -> Response:
    """Success: the console's fetch gets 204 (live events bring the change); a plain form, a redirect."""
    return Response(status_code=204) if from_fetch(request) else RedirectResponse(url, status_code=303)


def refused(request: Request, message: str, back: str, status: int) -> Response:
    if from_fetch(request):
        return JSONResponse({"error": {"message": message}}, status_code=status)
    separator = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{separator}{urlencode({'error': message})}", status_code=303)


def same_site_path(url: str | None, default: str = "/console/") -> str:
    """The path and query of `url` when it is a console page (never send a browser elsewhere),
    without a previous `error`."""
    parts = urlsplit(url or "")
    if not parts.path.startswith("/console/"):
        return default
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "error"])
    return f"{parts.path}?{query}" if query else parts.path


def tokens_match(given: object, expected: str) -> bool:
    return isinstance(given, str) and bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def form_route(path: str, handler: FormHandler) -> Route:
    """A POST route whose handler only runs for a signed-in browser that sent its CSRF token."""

    async def endpoint(request: Request) -> Response:
        t = translator(language_of(request))
        session = request.scope.get("session")
        back = same_site_path(request.headers.get("referer"))
        async with request.form(max_files=1, max_fields=100) as form:
            if session is None or not tokens_match(form.get(CSRF_FIELD), session.csrf_token):
                if from_fetch(request):
                    return JSONResponse({"error": {"message": t("error.csrf")}}, status_code=403)
                return render(request, "error.html", {"message": t("error.csrf")}, 403)
            try:
                return await handler(request, form)
            except FormError as exc:
                return refused(request, exc.message, exc.back, exc.status)
            except ApiError as exc:  # the API layer's checks: roles, 404s, validation
                return refused(request, exc.message, back, exc.status)

    return Route(path, endpoint, methods=["POST"])


def new_login_token() -> str:
    return secrets.token_urlsafe(24)
