"""Signing in and out of the console (the same users, sessions and rate limit as the API)."""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core.api.auth import set_session_cookie, sign_in
from core.api.errors import ApiError
from core.auth.sessions import COOKIE_NAME, LoginLimiter, close_session
from core.console.i18n import language_of, translator
from core.console.rendering import render
from core.console.security import LOGIN_CSRF_COOKIE, new_login_token, same_site_path, tokens_match

HOME = "/console/inbox"


def _login_page(request: Request, error: str | None = None, status: int = 200, username: str = "") -> Response:
    token = new_login_token()
    response = render(request, "login.html", {"login_token": token, "error": error, "username": username,
                                              "next": same_site_path(request.query_params.get("next"), HOME)}, status)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, path="/console/login", httponly=True, samesite="strict")
    return response


async def login_form(request: Request) -> Response:
    return _login_page(request)


def login_submit(limiter: LoginLimiter):
    async def submit(request: Request) -> Response:
        t = translator(language_of(request))
        async with request.form(max_files=0, max_fields=10) as form:
            fields = _strings(form, "username", "password", "csrf_token", "next")
        if not tokens_match(fields["csrf_token"], request.cookies.get(LOGIN_CSRF_COOKIE, "")):
            return _login_page(request, t("login.expired"), 403, fields["username"])
        try:
            _, token, _ = await sign_in(request, limiter, fields["username"], fields["password"])
        except ApiError as exc:
            if exc.status == 429:
                minutes = max(1, int((exc.headers or {}).get("Retry-After", "60")) // 60)
                return _login_page(request, t("login.limited", minutes=minutes), 429, fields["username"])
            return _login_page(request, t("login.failed"), 401, fields["username"])
        response = RedirectResponse(same_site_path(fields["next"], HOME), status_code=303)
        set_session_cookie(request, response, token)
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console/login")
        return response

    return submit


async def logout(request: Request, form: FormData) -> Response:
    token = request.cookies.get(COOKIE_NAME)
    if token:
        await close_session(token)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE_NAME, path="/")
    return response


def _strings(form: FormData, *names: str) -> dict[str, str]:
    return {name: value if isinstance(value := form.get(name), str) else "" for name in names}
