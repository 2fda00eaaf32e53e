"""Jinja2 pages: one environment, and the context every console page gets."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from core.console.i18n import LANG_COOKIE, LANGUAGES, language_of, translator

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

# Scripts and styles come from /console/static only; no inline code, no framing.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

environment = Environment(
    loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True
)


def _short_time(value: datetime | None) -> str:
    return value.strftime("%d/%m %H:%M") if value else ""


environment.filters["short_time"] = _short_time


def render(request: Request, template: str, context: dict[str, Any] | None = None, status_code: int = 200) -> HTMLResponse:
    """A page (or a fragment) in the request's language, with the signed-in user and CSRF token."""
    language = language_of(request)
    session = request.scope.get("session")
    page = environment.get_template(template).render(
        request=request,
        user=request.scope.get("user"),
        csrf_token=session.csrf_token if session is not None else "",
        lang=language,
        languages=LANGUAGES,
        t=translator(language),
        path=request.url.path,
        **(context or {}),
    )
    response = HTMLResponse(page, status_code=status_code, headers=PAGE_HEADERS)
    if request.query_params.get("lang") == language and request.cookies.get(LANG_COOKIE) != language:
        response.set_cookie(LANG_COOKIE, language, max_age=365 * 86400, path="/", samesite="lax")
    return response
