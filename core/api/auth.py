"""POST /api/auth/login (the only anonymous API route), POST /api/auth/logout, GET /api/auth/me."""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.api.access import host_of, signed_in
from core.api.errors import ApiError, json_body
from core.auth.passwords import dummy_hash, verify_password
from core.auth.sessions import COOKIE_NAME, SESSION_LIFETIME, LoginLimiter, close_session, open_session
from core.storage.models import User, UserSession

log = logging.getLogger("hookline.auth")


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=150)
    password: str = Field(min_length=1, max_length=1024)


def user_json(user: User) -> dict[str, object]:
    return {"id": user.id, "username": user.username, "role": user.role}


async def sign_in(request: Request, limiter: LoginLimiter, username: str, password: str) -> tuple[User, str, UserSession]:
    """Check a login (rate limited per username and client IP) and open a session; for the API and
    the console's form alike. Raises ApiError 429 or 401."""
    ip = request.client.host if request.client else "-"
    wait = limiter.retry_after(username, ip)
    if wait > 0:
        log.warning("login refused for %r from %s: too many failed attempts", username, ip)
        raise ApiError(429, "rate_limited", "too many failed logins; try again later",
                       headers={"Retry-After": str(int(wait) + 1)})
    user = await User.get_or_none(username=username)
    if not verify_password(user.password_hash if user else dummy_hash(), password) or user is None:
        limiter.failed(username, ip)
        log.warning("login failed for %r from %s", username, ip)
        raise ApiError(401, "bad_credentials", "wrong username or password")
    limiter.succeeded(username, ip)
    token, session = await open_session(user)
    log.info("user %s logged in from %s", user.username, ip)
    return user, token, session


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        COOKIE_NAME, token, max_age=int(SESSION_LIFETIME.total_seconds()), path="/", httponly=True, samesite="lax",
        secure=host_of(request).public_url.startswith("https://"),
    )


def login_endpoint(limiter: LoginLimiter):
    async def login(request: Request) -> Response:
        body = await json_body(request, Login)
        user, token, session = await sign_in(request, limiter, body.username, body.password)
        response = JSONResponse({"user": user_json(user), "csrf_token": session.csrf_token})
        set_session_cookie(request, response, token)
        return response

    return login


async def logout(request: Request) -> Response:
    token = request.cookies.get(COOKIE_NAME)
    if token:
        await close_session(token)
    response = JSONResponse({"ok": True})
    response.delete_cookie(COOKIE_NAME, path="/")
    return response


async def me(request: Request) -> Response:
    user = signed_in(request)
    session = request.scope.get("session")
    return JSONResponse({"user": user_json(user), "csrf_token": session.csrf_token if session else None})
