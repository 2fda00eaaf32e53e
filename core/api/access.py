"""Role checks for API handlers (the middleware has already authenticated the caller)."""

from __future__ import annotations

from starlette.requests import Request

from core.api.errors import ApiError
from core.host import Host
from core.storage.models import User

ADMIN = ("admin",)
ANYONE = ("admin", "agent")


def require(request: Request, roles: tuple[str, ...]) -> User:
    user: User = request.scope["user"]
    if user.role not in roles:
        raise ApiError(403, "forbidden", f"this needs the {' or '.join(roles)} role")
    return user


def host_of(request: Request) -> Host:
    return request.app.state.runtime.host
