"""Live events over Server-Sent Events, against a real uvicorn server in a thread."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from core.app import create_app
from core.auth.tokens import create_token, create_user
from core.storage.database import close_storage, migrate, open_storage
from tests.helpers import SECRET, inbound_body, runtime_for, write_config
from tests.recording_provider import signed_headers

pytestmark = [pytest.mark.anyio, pytest.mark.storage]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(app) -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


async def _events(response: httpx.Response) -> AsyncIterator[dict]:
    """Parsed SSE events (id, event, data) from a streaming response."""
    event: dict = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in event:
                yield event
            event = {}
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            event[field] = value.removeprefix(" ")
            if field == "data":
                event["data"] = json.loads(event["data"])


async def _collect(client: httpx.AsyncClient, headers: dict, until, timeout: float) -> list[dict]:
    """Events from a new stream until `until(events)` is true or `timeout` passes."""
    got: list[dict] = []

    async def read() -> None:
        async with client.stream("GET", "/api/events", headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            async for event in _events(response):
                got.append(event)
                if until(got):
                    return

    try:
        await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        pass
    return got


async def test_sse_sees_a_webhook_message_within_a_second_and_resumes_with_last_event_id(tmp_path, database_url):
    config = write_config(tmp_path, database_url)
    await open_storage(database_url)
    try:
        await migrate(database_url)
        token = await create_token(await create_user("alan", "correct horse battery", "agent"))
    finally:
        await close_storage()
    auth = {"Authorization": f"Bearer {token}"}
    app = create_app(runtime_for(config))
    with serving(app) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            assert (await client.get("/api/events")).status_code == 401

            async def post(external_id: str, text: str) -> None:
                body = inbound_body((external_id, "+15550100123", text))
                response = await client.post("/webhooks/whatsapp/recorder", content=body, headers=signed_headers("n1", SECRET, body))
                assert response.status_code == 200

            # 1. live: the stream is open before the webhook; the event arrives within 1 s
            seen: list[dict] = []
            stream_open = asyncio.Event()
            posted_at: list[float] = []

            async def listen() -> None:
                async with client.stream("GET", "/api/events", headers=auth) as response:
                    stream_open.set()
                    async for event in _events(response):
                        seen.append({**event, "at": time.monotonic()})
                        if event["event"] == "message.created":
                            return

            listener = asyncio.create_task(listen())
            await asyncio.wait_for(stream_open.wait(), 5)
            await asyncio.sleep(0.2)
            posted_at.append(time.monotonic())
            await post("sse-1", "hola")
            await asyncio.wait_for(listener, 5)
            created = next(e for e in seen if e["event"] == "message.created")
            assert created["data"]["message"]["text"] == "hola"
            assert created["at"] - posted_at[0] < 1.0
            last_id = int(created["id"])

            # 2. disconnected: these happen while no one listens
            await post("sse-2", "segunda")
            await post("sse-3", "tercera")
            conversation_id = created["data"]["message"]["conversation_id"]
            moved = await client.post(f"/api/conversations/{conversation_id}/transfer", json={"to": "bot"}, headers=auth)
            assert moved.status_code == 200

            # every stored event, from the beginning, as the reference
            everything = await _collect(client, {**auth, "Last-Event-ID": "0"}, lambda got: False, 1.5)
            missed = [e for e in everything if int(e["id"]) > last_id]
            texts = [e["data"]["message"]["text"] for e in missed if e["event"] == "message.created"]
            assert texts == ["segunda", "tercera"]
            assert any(e["event"] == "conversation.updated" and e["data"]["conversation"]["owner"] == "bot" for e in missed)

            # 3. reconnect with Last-Event-ID: exactly the missed events, in order, once each
            resumed = await _collect(client, {**auth, "Last-Event-ID": str(last_id)}, lambda got: len(got) > len(missed), 2.0)
            assert [e["id"] for e in resumed] == [e["id"] for e in missed]
            assert [int(e["id"]) for e in resumed] == sorted({int(e["id"]) for e in resumed})

            bad = await client.get("/api/events", headers={**auth, "Last-Event-ID": "abc"})
            assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "Last-Event-ID"
