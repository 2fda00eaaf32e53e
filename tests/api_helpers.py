"""A started app with an admin and an agent, each with an API token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from core.auth.tokens import create_token, create_user
from tests.helpers import runtime_for, started, write_config

PASSWORD = "correct horse battery"


@dataclass
class Api:
    client: httpx.AsyncClient
    admin: dict[str, str]
    agent: dict[str, str]
    runtime: Any


@asynccontextmanager
async def api_app(tmp_path: Path, database_url: str, *, enabled: list[str] | None = None, **config: Any) -> AsyncIterator[Api]:
    path = write_config(tmp_path, database_url, **({"enabled": enabled} if enabled else {}), **config)
    runtime = runtime_for(path)
    async with started(runtime) as client:
        admin = await create_user("ada", PASSWORD, "admin")
        agent = await create_user("alan", PASSWORD, "agent")
        yield Api(
            client,
            {"Authorization": f"Bearer {await create_token(admin)}"},
            {"Authorization": f"Bearer {await create_token(agent)}"},
            runtime,
        )
