"""A small provider API over real HTTP on 127.0.0.1, for send tests (see recording_provider)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from core.testing import FakeApi as KitFakeApi


class FakeApi(KitFakeApi):
    """Records every POST /messages; answers from a script, then 201 with a new sid."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.received: list[dict[str, Any]] = []
        self.received_at: list[float] = []  # time.monotonic() of each, for rate-limit tests
        self.script: list[tuple[int, dict[str, Any]]] = []
        self.delay = delay
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
            self.received_at.append(time.monotonic())
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

    def routes(self) -> Sequence[BaseRoute]:
        return [
            Route("/messages", self._messages, methods=["POST"]),
            Route("/files/{name}", self._file, methods=["GET"]),
        ]

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the fake API received {len(self.received)} of {count} requests")
            time.sleep(0.02)


@contextmanager
def running_fake_api(delay: float = 0.0) -> Iterator[FakeApi]:
    fake = FakeApi(delay)
    with fake.running():
        yield fake
