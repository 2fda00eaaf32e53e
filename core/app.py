"""The Starlette application: health, metrics, webhooks, and a lifespan that runs storage, workers, plugins."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from tortoise.connection import get_connection

from core.api.errors import EXCEPTION_HANDLERS
from core.api.routes import api_routes
from core.auth.middleware import AuthMiddleware
from core.auth.sessions import LoginLimiter
from core.console import console_routes
from core.config import resolve_config_path
from core.lifecycle import running
from core.logs import setup_logging
from core.metrics.endpoint import metrics_routes
from core.runtime import Runtime, build_runtime
from core.webhooks import webhook_routes

log = logging.getLogger("hookline")


def create_app(runtime: Runtime, *, run_workers: bool = True) -> Starlette:
    """The app for an assembled runtime. `run_workers=False` leaves the queue to other processes."""
    host = runtime.host
    settings = runtime.settings

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with running(runtime, run_workers=run_workers, role="server", live_events=True):
            yield

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        try:
            await get_connection("default").execute_query("SELECT 1")
        except Exception as exc:
            log.warning("readyz: storage unreachable: %s", type(exc).__name__)
            return JSONResponse({"status": "unavailable", "storage": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ready", "storage": "ok"})

    login_limiter = LoginLimiter()  # failed logins of the API and the console count together
    api, openapi = api_routes(host, login_limiter)
    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        *metrics_routes(settings.metrics),
        Route("/media/{key}", host.media.endpoint, methods=["GET", "HEAD"]),
        *webhook_routes(host),
        Mount("/api", routes=api),
        *console_routes(login_limiter),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, middleware=[Middleware(AuthMiddleware)], exception_handlers=EXCEPTION_HANDLERS
    )
    app.state.runtime = runtime
    app.state.openapi = openapi
    return app


LOG_FORMAT_ENV_VAR = "HOOKLINE_LOG_FORMAT"
NO_QUEUE_ENV_VAR = "HOOKLINE_NO_QUEUE"


def app_from_environment() -> Starlette:
    """Factory for uvicorn worker processes (`hookline serve --workers N`): the config path, the
    log format and `--no-queue` come from HOOKLINE_CONFIG, HOOKLINE_LOG_FORMAT and
    HOOKLINE_NO_QUEUE, set by `serve`."""
    runtime = build_runtime(resolve_config_path(None, os.environ))
    logging_config = runtime.settings.logging
    setup_logging(logging_config.level, os.environ.get(LOG_FORMAT_ENV_VAR) or logging_config.format)
    return create_app(runtime, run_workers=os.environ.get(NO_QUEUE_ENV_VAR) != "1")


__all__ = ["app_from_environment", "create_app"]
