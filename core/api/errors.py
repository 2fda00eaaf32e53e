"""API errors: `{"error": {"code", "message", "details"}}` with the right 4xx, and body parsing."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from asyncpg.exceptions import DataError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from tortoise.exceptions import OperationalError

from core.storage.database import is_unstorable_value

M = TypeVar("M", bound=BaseModel)

#: Row ids are BIGINTs: a larger number names no row, and no query can hold it.
MAX_ID = 2**63 - 1


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def error_response(status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details}}, status_code=status, headers=headers)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def id_from_path(text: str) -> int | None:
    """A row id as a path carries it, or None (no such row: 404) for what can name none: not
    ASCII digits (`"²".isdigit()` is true, `int("²")` fails), or past the column's range."""
    if text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= MAX_ID:
        return int(text)
    return None


def invalid(exc: ValidationError, prefix: str = "") -> ApiError:
    """A 422 naming each bad field (inputs are never echoed: they may be secrets)."""
    details = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        field = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
        message = "required" if error["type"] == "missing" else error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        details.append({"field": field or None, "message": message})
    first = details[0] if details else {"field": None, "message": "invalid"}
    where = f"{first['field']}: " if first["field"] else ""
    return ApiError(422, "invalid", f"{where}{first['message']}", details)


def field_error(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid", f"{field}: {message}", [{"field": field, "message": message}])


def validate_query(model: type[M], request: Request) -> M:
    """The query string as `model`. Every parameter hookline takes is a single value, so one given
    twice (`?q=a&q=b`) is a 422 naming it, not a silent pick of the last."""
    seen: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in seen:
            raise field_error(name, "given more than once")
        seen[name] = value
    return validate(model, seen)


async def json_body(request: Request, model: type[M]) -> M:
    raw = await request.body()
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise ApiError(422, "invalid", "the body is not JSON", [{"field": None, "message": "not JSON"}]) from None
    return validate(model, data)


def validate(model: type[M], data: Any, prefix: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc, prefix) from None


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """JSON under /api; Starlette's plain text elsewhere (webhook providers see what they always did)."""
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api"):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)
    return PlainTextResponse(str(exc.detail), status_code=exc.status_code, headers=exc.headers)


async def unstorable_handler(request: Request, exc: Exception) -> Response:
    """A value the database itself refused (PostgreSQL: a NUL character, a number out of range)
    is bad input, the same on every retry: 422 under /api, 400 elsewhere. Any other database
    error is not this handler's: it goes on to be a 500."""
    if not is_unstorable_value(exc):
        raise exc
    if request.url.path.startswith("/api"):
        message = "a value the database cannot hold (such as a NUL character)"
        return error_response(422, "invalid", message, [{"field": None, "message": message}])
    return PlainTextResponse("invalid input", status_code=400)


EXCEPTION_HANDLERS = {
    ApiError: api_error_handler, HTTPException: http_error_handler,
    OperationalError: unstorable_handler, DataError: unstorable_handler,
}
