"""Building hookline for a test: a config file on disk, an explicit plugin list, a throwaway
database, and the app run in-process or on a real port.

Entry points are not read: the plugins a test names are the only ones there are, so a test sees
exactly the plugin under test (and what it brings along to watch it).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from core.app import create_app
from core.hookspecs import hookimpl
from core.runtime import Runtime, build_runtime

#: Fast queue settings for tests: workers poll often and retry quickly.
FAST_QUEUE: Mapping[str, Any] = {"poll_interval_seconds": 0.05, "backoff_base_seconds": 0.05, "backoff_max_seconds": 0.2}
PUBLIC_URL = "https://hookline.example.com"


def toml_value(value: Any) -> str:
    """`value` as TOML: strings, numbers, booleans, lists and (inline) tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(key))} = {toml_value(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML: {value!r}")


def sqlite_url(directory: Path) -> str:
    """A SQLite database file of its own in `directory` (created and migrated at start)."""
    return f"sqlite://{directory}/hookline.sqlite3"


def write_config(
    directory: Path,
    database_url: str | None = None,
    *,
    enabled: Sequence[str] = (),
    numbers: Sequence[Mapping[str, Any]] = (),
    plugin_settings: Mapping[str, Mapping[str, Any]] | None = None,
    queue: Mapping[str, Any] | None = None,
    server: Mapping[str, Any] | None = None,
    modules: Sequence[str] = (),
    public_url: str = PUBLIC_URL,
    extra: str = "",
) -> Path:
    """Write `directory/hookline.toml` and return its path.

    `numbers` are ``{"id", "provider", "phone", "display_name"?, "settings": {...},
    "rate_limit"?: {...}, "recipient_rate_limit"?: {...}}``;
    `plugin_settings` maps a plugin name to its ``[plugins.<name>]`` table. `public_url` is what
    webhook proofs are checked against. The data directory (media, secret key) is
    `directory/data`; the database is SQLite in `directory` unless `database_url` names another.
    """
    lines = [
        "[server]",
        f"public_url = {toml_value(public_url)}",
        f"data_dir = {toml_value(str(directory / 'data'))}",
        *[f"{key} = {toml_value(value)}" for key, value in (server or {}).items()],
        "[database]",
        f"url = {toml_value(database_url or sqlite_url(directory))}",
        "[queue]",
        *[f"{key} = {toml_value(value)}" for key, value in {**FAST_QUEUE, **(queue or {})}.items()],
        "[plugins]",
        f"enabled = {toml_value(list(enabled))}",
        *([f"modules = {toml_value(list(modules))}"] if modules else []),
    ]
    for name, table in (plugin_settings or {}).items():
        lines.append(f"[plugins.{json.dumps(name)}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in table.items())
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
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


def make_runtime(
    directory: Path,
    plugins: Mapping[str, Any],
    *,
    database_url: str | None = None,
    enabled: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    **config: Any,
) -> Runtime:
    """A runtime with exactly `plugins` (name → module or object), all enabled unless `enabled`
    says otherwise; the other keywords go to `write_config`. The environment is empty unless
    `env` is given, so a developer's variables cannot leak into a test."""
    path = write_config(directory, database_url, enabled=list(plugins) if enabled is None else enabled, **config)
    return build_runtime(path, dict(plugins), env={} if env is None else env)


ClientFactory = Callable[..., httpx.AsyncClient]


@asynccontextmanager
async def started(
    runtime: Runtime,
    *,
    run_workers: bool = True,
    base_url: str = "http://testserver",
    client: ClientFactory | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan (storage, plugins' on_startup, queue workers) and give a client
    that talks to it in-process. `client(app, **kwargs)` makes the client, for a client class of
    your own; it gets `transport` and `base_url`."""
    app = create_app(runtime, run_workers=run_workers)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        made = client(app, transport=transport, base_url=base_url) if client else httpx.AsyncClient(transport=transport, base_url=base_url)
        async with made as opened:
            yield opened


@asynccontextmanager
async def served(runtime: Runtime, *, proxy: dict[str, str] | None = None) -> AsyncIterator[str]:
    """The app in uvicorn on a free port, in this event loop, for what an in-process client
    cannot do (endless streams, fakes that call hookline back); yields its base URL. A fake's
    `proxy` map learns that hookline's public URL is served here."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    if proxy is not None:
        proxy[runtime.settings.server.public_url] = base
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started or task.done(), timeout=10, what="hookline to start")
        if task.done():
            await task
            raise AssertionError("hookline did not start")
        yield base
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 15.0, what: str = "the condition"
) -> None:
    """Wait until `check()` is true: the work queue runs in the background."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
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


__all__ = [
    "FAST_QUEUE", "PUBLIC_URL", "Inbox", "eventually", "make_runtime", "served", "sqlite_url", "started",
    "toml_value", "write_config",
]
