"""GET /api/providers: the enabled providers and the JSON Schema of their number settings."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.api.access import host_of


async def list_providers(request: Request) -> Response:
    host = host_of(request)
    return JSONResponse({"items": [
        {"name": name, "settings_schema": provider.number_settings_model.model_json_schema()}
        for name, provider in host.dispatch.providers.items()
    ]})
