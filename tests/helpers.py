"""Building test apps: a config file on disk, an explicit plugin list, a started lifespan."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from core import hookimpl
from core.app import create_app
from core.runtime import Runtime, build_runtime
from tests import recording_provider
from tests.openapi_contract import Contract
from tests.recording_provider import signed_headers

SECRET = "test-secret"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(value)


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
    queue = {"poll_interval_seconds": 0.05, "backoff_base_seconds": 0.05, "backoff_max_seconds": 0.2, **(queue or {})}
    lines = [
        "[server]",
        f"public_url = {toml_value(public_url)}",
        f"data_dir = {toml_value(str(directory / 'data'))}",
        "[database]",
        f"url = {toml_value(database_url)}",
        "[queue]",
        *[f"{key} = {toml_value(value)}" for key, value in queue.items()],
        "[plugins]",
        f"enabled = {toml_value(list(enabled))}",
        *([f"modules = {toml_value(list(modules))}"] if modules else []),
    ]
    for number in numbers:
        lines.append("[[numbers]]")
        for key in ("id", "provider", "phone", "display_name"):
            if key in number:
                lines.append(f"{key} = {toml_value(number[key])}")
        lines.append("[numbers.settings]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in number.get("settings", {}).items())
        for table in ("rate_limit", "recipient_rate_limit"):
            if table in number:
                lines.append(f"[numbers.{table}]")
                lines.extend(f"{key} = {toml_value(value)}" for key, value in number[table].items())
    path = directory / "hookline.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def runtime_for(config: Path, *plugins: Any, **named: Any) -> Runtime:
    """A runtime with the recorder provider plus the given plugin objects (named p0, p1… or by keyword)."""
    explicit: dict[str, Any] = {"recorder": recording_provider}
    explicit.update({f"p{index}": plugin for index, plugin in enumerate(plugins)})
    explicit.update(named)
    return build_runtime(config, explicit, env={})


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
    app = create_app(runtime, run_workers=run_workers)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with CheckedClient(Contract(app.state.openapi), transport=transport, base_url=base_url) as client:
            yield client


@asynccontextmanager
async def served(runtime: Runtime, *, proxy: dict[str, str] | None = None) -> AsyncIterator[str]:
    """The app in uvicorn on a free port, in this event loop (for what an in-process client
    cannot do: endless streams, fakes calling back); yields its base URL. A fake's `proxy` map
    learns that hookline's public URL is served here."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    if proxy is not None:
        proxy[runtime.settings.server.public_url] = base
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started or task.done(), timeout=10)
        if task.done():
            await task
            raise AssertionError("hookline did not start")
        yield base
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()


def inbound_body(*messages: tuple[str, str, str], statuses: list[dict[str, Any]] | None = None) -> bytes:
    """(id, from, text) triples as a recorder webhook body."""
    return json.dumps(
        {"messages": [{"id": i, "from": f, "text": t} for i, f, t in messages], "statuses": statuses or []}
    ).encode()


async def post_signed(client: httpx.AsyncClient, body: bytes, *, number: str = "n1", path: str = "/webhooks/whatsapp/recorder") -> httpx.Response:
    return await client.post(path, content=body, headers=signed_headers(number, SECRET, body))


async def eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait until `check()` is true (the work queue runs in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


class Inbox:
    """A workflow plugin that records what it is told: inbound messages and applied statuses."""

    def __init__(self) -> None:
        self.inbound: list[Any] = []
        self.statuses: list[str] = []

    @hookimpl
    async def on_inbound_message(self, message: Any) -> None:
        self.inbound.append(message)

    @hookimpl
    async def on_status_update(self, event: Any) -> None:
        self.statuses.append(event.status.value)


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
