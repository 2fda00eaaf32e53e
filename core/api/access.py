"""Role checks for API handlers (the middleware has already authenticated the caller)."""

from __future__ import annotations

from starlette.requests import Request

from core.api.errors import ApiError
from core.host import Host
from core.storage.models import User

ADMIN = ("admin",)
ANYONE = ("admin", "agent")


def signed_in(request: Request) -> User:
    """The caller, whom the auth middleware has already authenticated."""
    user: User = request.scope["user"]
    return user


def require(request: Request, roles: tuple[str, ...]) -> User:
    user = signed_in(request)
    if user.role not in roles:
        raise ApiError(403, "forbidden", f"this needs the {' or '.join(roles)} role")
    return user


def host_of(request: Request) -> Host:
    return request.app.state.runtime.host
