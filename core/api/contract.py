"""One declaration per API endpoint: its route, who may call it, what it reads and what it answers.

The router (core/api/routes.py), the role checks and the OpenAPI document (core/api/openapi.py)
are all made from these declarations, so the document cannot describe a route that does not exist
or a role that is not enforced. Handlers only do the work; the role is checked before they run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message

from core.api.access import host_of, require
from core.api.errors import ApiError

Handler = Callable[[Request], Awaitable[Response]]
UPLOAD_OVERHEAD = 64 * 1024  # multipart boundaries, headers and the caption beside the file


@dataclass(frozen=True)
class Answer:
    """One documented answer: a JSON body described by `model`, another `media_type`, or none."""

    description: str
    model: type[BaseModel] | None = None
    media_type: str | None = None


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # below /api, with Starlette's `{name}` parameters
    handler: Handler
    summary: str
    roles: tuple[str, ...] | None  # None: anonymous (only login)
    answers: Mapping[int, Answer]  # the successes and the errors special to this endpoint
    tag: str
    body: type[BaseModel] | None = None  # JSON request body
    upload: type[BaseModel] | None = None  # multipart/form-data alternative to `body`
    query: type[BaseModel] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # request header → description
    description: str = ""

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    def route(self) -> Route:
        handler, roles, uploads = self.handler, self.roles, self.upload is not None

        async def guarded(request: Request) -> Response:
            if roles is not None:
                require(request, roles)
            settings = host_of(request).settings
            multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
            limit = settings.media.max_bytes + UPLOAD_OVERHEAD if uploads and multipart else settings.server.max_body_bytes
            return await handler(_limited(request, limit))

        return Route(self.path, guarded, methods=[self.method], name=self.operation_id)


def too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"the body is over the {limit}-byte limit")


def _limited(request: Request, limit: int) -> Request:
    """The request with a body that stops at `limit` bytes: at once from Content-Length, or as
    soon as a chunked body passes it, before a handler or the multipart parser buffers it."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:  # "²".isdigit() is true
        raise too_large(limit)
    receive, seen = request.receive, 0

    async def limited_receive() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise too_large(limit)
        return message

    return Request(request.scope, limited_receive)


__all__ = ["Answer", "Endpoint", "Handler", "too_large"]
