"""The OpenAPI 3.1 document of /api, made from the endpoint table (core/api/routes.py).

Request models are the ones the handlers validate with; response models are core/api/schemas.py,
which tests hold to the real answers. The errors every endpoint can give (401, 403, 404, 413,
422) follow from its declaration, so they are added here rather than repeated in the table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from core.api.access import ADMIN
from core.api.contract import Answer, Endpoint
from core.api.errors import MAX_ID
from core.api.numbers import ID_MAX_LENGTH, ID_PATTERN
from core.api.schemas import Error
from core.auth.sessions import COOKIE_NAME, CSRF_HEADER

REF_TEMPLATE = "#/components/schemas/{model}"
UNSAFE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})

ROW_ID = {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID}
PATH_PARAMETERS: dict[str, tuple[dict[str, Any], str]] = {
    "number_id": ({"type": "string", "pattern": ID_PATTERN, "maxLength": ID_MAX_LENGTH}, "The number's id."),
    "provider": ({"type": "string"}, "An enabled provider's name (`GET /api/providers`)."),
    "conversation_id": (ROW_ID, "The conversation's id."),
    "message_id": (ROW_ID, "The message's id."),
}


def _common_errors(endpoint: Endpoint) -> dict[int, Answer]:
    """What the declaration implies: authentication, role, CSRF, unknown ids, size, bad input."""
    errors: dict[int, Answer] = {}
    if endpoint.roles is not None:
        errors[401] = Answer("`unauthenticated`: no or unknown token or session", Error)
    forbidden = []
    if endpoint.roles == ADMIN:
        forbidden.append("`forbidden`: needs the admin role")
    if endpoint.roles is not None and endpoint.method in UNSAFE_METHODS:
        forbidden.append(f"`csrf`: a session-cookie request without `{CSRF_HEADER}`")
    if forbidden:
        errors[403] = Answer("; ".join(forbidden), Error)
    if "{" in endpoint.path:
        errors[404] = Answer("`not_found`: no such " + ", ".join(_parameters_of(endpoint.path)).replace("_id", ""), Error)
    if endpoint.body or endpoint.upload:
        errors[413] = Answer("`too_large`: the body is over the limit", Error)
    if endpoint.body or endpoint.upload or endpoint.query or endpoint.headers:
        errors[422] = Answer("`invalid`: `details` names every bad field", Error)
    return errors


def _parameters_of(path: str) -> list[str]:
    return re.findall(r"{(\w+)}", path)


def _models(endpoints: Sequence[Endpoint]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    found: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    for endpoint in endpoints:
        for model in (endpoint.body, endpoint.upload, endpoint.query):
            if model is not None:
                found[(model, "validation")] = None
        for answer in (*endpoint.answers.values(), *_common_errors(endpoint).values()):
            if answer.model is not None:
                found[(answer.model, "serialization")] = None
    return list(found)


def _content(answer: Answer, refs: dict[tuple[type[BaseModel], JsonSchemaMode], dict[str, Any]]) -> dict[str, Any]:
    if answer.model is not None:
        return {"application/json": {"schema": refs[(answer.model, "serialization")]}}
    if answer.media_type is not None:
        return {answer.media_type: {"schema": {"type": "string", "format": "binary"} if answer.media_type.startswith("image/")
                                    else {"type": "object"} if answer.media_type == "application/json" else {"type": "string"}}}
    return {}


def _operation(endpoint: Endpoint, refs: dict[Any, dict[str, Any]], schemas: dict[str, Any]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = []
    for name in _parameters_of(endpoint.path):
        schema, description = PATH_PARAMETERS[name]
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema, "description": description})
    if endpoint.query is not None:
        definition = schemas[refs[(endpoint.query, "validation")]["$ref"].rsplit("/", 1)[-1]]
        required = set(definition.get("required", []))
        for name, schema in definition["properties"].items():
            parameter = {"name": name, "in": "query", "required": name in required, "schema": schema}
            if "description" in schema:
                parameter["description"] = schema["description"]
            parameters.append(parameter)
    for name, description in endpoint.headers.items():
        parameters.append({"name": name, "in": "header", "required": False, "schema": {"type": "string"},
                           "description": description})
    operation: dict[str, Any] = {"operationId": endpoint.operation_id, "summary": endpoint.summary, "tags": [endpoint.tag]}
    if endpoint.description:
        operation["description"] = endpoint.description
    if endpoint.roles is None:
        operation["security"] = []
    else:
        operation["x-roles"] = list(endpoint.roles)
    if parameters:
        operation["parameters"] = parameters
    request_content: dict[str, Any] = {}
    if endpoint.body is not None:
        request_content["application/json"] = {"schema": refs[(endpoint.body, "validation")]}
    if endpoint.upload is not None:
        request_content["multipart/form-data"] = {"schema": refs[(endpoint.upload, "validation")]}
    if request_content:
        operation["requestBody"] = {"required": True, "content": request_content}
    answers = {**_common_errors(endpoint), **endpoint.answers}
    operation["responses"] = {
        str(status): {"description": answer.description, **({"content": content} if (content := _content(answer, refs)) else {})}
        for status, answer in sorted(answers.items())
    }
    return operation


def openapi_document(endpoints: Sequence[Endpoint], prefix: str, public_url: str) -> dict[str, Any]:
    """The whole document; `prefix` is where the endpoints are mounted (`/api`)."""
    refs, top = models_json_schema(_models(endpoints), ref_template=REF_TEMPLATE)
    schemas: dict[str, Any] = top.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(prefix + endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, refs, schemas)
    scheme = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "`hookline users token USERNAME` prints one."},
        "session": {"type": "apiKey", "in": "cookie", "name": COOKIE_NAME,
                    "description": f"From `POST /api/auth/login`; unsafe methods also need `{CSRF_HEADER}`."},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "hookline API", "version": _version(),
                 "description": "The REST API of hookline (docs/api.md). Errors are "
                                "`{\"error\": {\"code\", \"message\", \"details\"}}`."},
        "servers": [{"url": public_url.rstrip("/")}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": scheme},
    }


def _version() -> str:
    try:
        return version("hookline")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0.0.0"


__all__ = ["openapi_document"]
