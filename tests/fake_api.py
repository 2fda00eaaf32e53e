"""A small provider API over real HTTP on 127.0.0.1, for send tests (see recording_provider)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class FakeApi:
    """Records every POST /messages; answers from a script, then 201 with a new sid."""

    def __init__(self, delay: float = 0.0) -> None:
        self.received: list[dict[str, Any]] = []
        self.arrived: list[float] = []  # time.time() of each POST /messages, for rate checks
        self.script: list[tuple[int, dict[str, Any]]] = []
        self.delay = delay
        self.url = ""
        self.files: dict[str, tuple[bytes, str]] = {}  # served at GET /files/{name}
        self.file_failures = 0  # answer this many file requests with 503 first
        self._lock = threading.Lock()

    def answer(self, *responses: tuple[int, dict[str, Any]]) -> None:
        with self._lock:
            self.script.extend(responses)

    async def _messages(self, request: Request) -> JSONResponse:
        body = await request.json()
        if self.delay:
            await asyncio.sleep(self.delay)
        with self._lock:
            self.received.append(body)
            self.arrived.append(time.time())
            status, answer = self.script.pop(0) if self.script else (201, {"sid": f"FAKE{len(self.received):06d}-{body['id']}", "status": "queued"})
        return JSONResponse(answer, status_code=status)

    async def _file(self, request: Request) -> Response:
        with self._lock:
            if self.file_failures:
                self.file_failures -= 1
                return Response(status_code=503)
        found = self.files.get(request.path_params["name"])
        if found is None:
            return Response(status_code=404)
        return Response(found[0], media_type=found[1])

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/messages", self._messages, methods=["POST"]),
            Route("/files/{name}", self._file, methods=["GET"]),
        ])

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the fake API received {len(self.received)} of {count} requests")
            time.sleep(0.02)


@contextmanager
def serving_in_thread(app: Starlette) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 (a free port) in a thread; yield its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake API did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)


@contextmanager
def running_fake_api(delay: float = 0.0) -> Iterator[FakeApi]:
    fake = FakeApi(delay)
    with serving_in_thread(fake.app()) as url:
        fake.url = url
        yield fake
