"""Building test apps: the recorder provider's defaults on top of core.testing (the plugin
author's kit), and an in-process client held to the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from core.runtime import Runtime, build_runtime
from core.storage.database import close_storage, open_storage, prepare_schema
from core.testing import Inbox, eventually, served, toml_value  # noqa: F401 (re-exported for the tests)
from core.testing import started as kit_started
from core.testing import write_config as kit_write_config
from tests import recording_provider
from tests.openapi_contract import Contract
from tests.recording_provider import signed_headers

SECRET = "test-secret"


def write_config(
    directory: Path,
    database_url: str,
    *,
    enabled: list[str] = ("recorder",),  # type: ignore[assignment]
    numbers: list[dict[str, Any]] | None = None,
    api_url: str = "http://127.0.0.1:9",
    queue: Mapping[str, Any] | None = None,
    modules: list[str] = (),  # type: ignore[assignment]
    extra: str = "",
    public_url: str = "https://hookline.example.com",
) -> Path:
    """A config with the recorder provider and one number, `n1`, unless told otherwise. A number's
    `rate_limit` and `recipient_rate_limit` dicts become its tables of those names.

    `public_url` is what webhook signatures are checked against (and whether cookies are Secure):
    a test serving on a real port passes its own `http://127.0.0.1:PORT`.

    `modules` lists plugins to load by import path (`[plugins] modules`): a server in a subprocess
    has no explicit plugin list, so it needs `modules=["tests.recording_provider"]`.
    """
    if numbers is None:
        numbers = [{"id": "n1", "provider": "recorder", "phone": "+15550000001", "settings": {"secret": SECRET, "api_url": api_url}}]
    return kit_write_config(directory, database_url, enabled=enabled, numbers=numbers, queue=queue, modules=modules,
                            extra=extra, public_url=public_url)


def runtime_for(config: Path, *plugins: Any, **named: Any) -> Runtime:
    """A runtime with the recorder provider plus the given plugin objects (named p0, p1… or by keyword)."""
    explicit: dict[str, Any] = {"recorder": recording_provider}
    explicit.update({f"p{index}": plugin for index, plugin in enumerate(plugins)})
    explicit.update(named)
    return build_runtime(config, explicit, env={})


@asynccontextmanager
async def storage(url: str) -> AsyncIterator[None]:
    """Storage open (and migrated) as the app's lifespan opens it, for tests that need no app."""
    await open_storage(url)
    try:
        await prepare_schema(url)
        yield
    finally:
        await close_storage()


class CheckedClient(httpx.AsyncClient):
    """An in-process client whose every /api answer is checked against the OpenAPI document."""

    def __init__(self, contract: Contract, **kwargs: Any) -> None:
        super().__init__(event_hooks={"response": [contract.check]}, **kwargs)
        self.contract = contract


@asynccontextmanager
async def started(
    runtime: Runtime, *, run_workers: bool = True, base_url: str = "http://testserver"
) -> AsyncIterator[CheckedClient]:
    """Run the app's lifespan and give a client that talks to it in-process (at `base_url`: the
    config's https `public_url` for a browser-like client, whose Secure cookies then stick)."""
    def checked(app: Any, **kwargs: Any) -> CheckedClient:
        return CheckedClient(Contract(app.state.openapi), **kwargs)

    async with kit_started(runtime, run_workers=run_workers, base_url=base_url, client=checked) as client:
        yield client  # type: ignore[misc]


def inbound_body(*messages: tuple[str, str, str], statuses: list[dict[str, Any]] | None = None) -> bytes:
    """(id, from, text) triples as a recorder webhook body."""
    return json.dumps(
        {"messages": [{"id": i, "from": f, "text": t} for i, f, t in messages], "statuses": statuses or []}
    ).encode()


async def post_signed(client: httpx.AsyncClient, body: bytes, *, number: str = "n1", path: str = "/webhooks/whatsapp/recorder") -> httpx.Response:
    return await client.post(path, content=body, headers=signed_headers(number, SECRET, body))


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Parsed Server-Sent Events (`id`, `event`, `data` as JSON) from a streaming response."""
    event: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in event:
                yield event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            event[name] = json.loads(value) if name == "data" else value


class EventStream:
    """`GET /api/events` read in the background: `events` fills up as they arrive, each with the
    `time.monotonic()` of its arrival under "at"."""

    def __init__(self, client: httpx.AsyncClient, headers: Mapping[str, str]) -> None:
        self.client, self.headers = client, dict(headers)
        self.events: list[dict[str, Any]] = []
        self._open = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "EventStream":
        self._task = asyncio.create_task(self._read())
        opened = asyncio.ensure_future(self._open.wait())
        await asyncio.wait([opened, self._task], timeout=10, return_when=asyncio.FIRST_COMPLETED)
        opened.cancel()
        if self._task.done():
            await self._task  # raises what went wrong
        assert self._open.is_set(), "the event stream did not open"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _read(self) -> None:
        async with self.client.stream("GET", "/api/events", headers=self.headers) as response:
            assert response.status_code == 200, response.status_code
            self._open.set()
            async for event in sse_events(response):
                self.events.append({**event, "at": time.monotonic()})

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["event"] == kind]

    async def wait_for(self, check: Callable[[list[dict[str, Any]]], bool], timeout: float) -> None:
        await eventually(lambda: check(self.events), timeout=timeout)
