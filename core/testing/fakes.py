"""A base for local fake provider APIs, served over real HTTP on 127.0.0.1.

A fake answers like the provider's API so that a plugin's real HTTP client is what the tests
exercise. The base records every request before the fake's own routes see it, and lets a test
(or the conformance suite) script the answer to the next matching request, so the routes only
have to describe the provider's happy path.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass(frozen=True)
class RecordedRequest:
    """One request a fake received, as it arrived."""

    method: str
    path: str
    query: str
    headers: Headers
    body: bytes
    at: float  # time.monotonic() when it arrived

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    def carries(self, text: str) -> bool:
        """True if `text` is in the body or the query as sent (URL-safe text survives any encoding)."""
        return text.encode() in self.body or text in self.query


Matcher = Callable[[RecordedRequest], bool]


class FakeApi:
    """Subclass, implement `routes()`, and run it with `with fake.running(): ...`.

    `recorded` holds every request (also those answered by a script); `answer_next(response,
    when=...)` answers the next request `when` accepts with `response` instead of the routes.
    """

    url: str = ""

    def __init__(self) -> None:
        self._kit_lock()

    @property
    def recorded(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first."""
        with self._kit_lock():
            return list(self._kit_recorded)

    # ------------------------------------------------------------------ for subclasses

    def routes(self) -> Sequence[BaseRoute]:
        """The provider API's routes (Starlette `Route`s) on their happy path."""
        raise NotImplementedError(f"{type(self).__name__} must implement routes()")

    # ------------------------------------------------------------------ for tests

    def answer_next(self, response: Response, when: Matcher | None = None) -> None:
        """Answer the next request that `when` accepts (any request without it) with `response`."""
        with self._kit_lock():
            self._kit_scripted.append((when or (lambda request: True), response))

    def carrying(self, text: str) -> list[RecordedRequest]:
        """The requests whose body or query carries `text`."""
        with self._kit_lock():
            return [request for request in self._kit_recorded if request.carries(text)]

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "the expected request") -> None:
        """Block until `predicate()` holds; fail naming `what` and the paths seen so far."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                seen = ", ".join(f"{r.method} {r.path}" for r in self.recorded) or "nothing"
                raise AssertionError(f"the fake {type(self).__name__} did not see {what} within {timeout:g} s; it saw: {seen}")
            time.sleep(0.02)

    def app(self) -> ASGIApp:
        return _Recording(self, Starlette(routes=list(self.routes())))

    @contextmanager
    def running(self) -> Iterator[Any]:
        """Serve the fake on a free port of 127.0.0.1 for the block; `self.url` is its base URL."""
        with serving_in_thread(self.app()) as url:
            self.url = url
            yield self

    # ------------------------------------------------------------------ internals

    def _kit_lock(self) -> threading.Lock:
        # Subclasses that are dataclasses do not call __init__: the state is made on first use.
        if "_kit_record_lock" not in self.__dict__:
            self.__dict__.update(_kit_record_lock=threading.Lock(), _kit_recorded=[], _kit_scripted=[])
        return self.__dict__["_kit_record_lock"]

    def _arrived(self, request: RecordedRequest) -> Response | None:
        with self._kit_lock():
            self._kit_recorded.append(request)
            for index, (when, response) in enumerate(self._kit_scripted):
                if when(request):
                    del self._kit_scripted[index]
                    return response
        return None


class _Recording:
    """ASGI wrapper: read the body once, record the request, then answer from the script or the app."""

    def __init__(self, fake: FakeApi, app: ASGIApp) -> None:
        self.fake = fake
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        request = RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=Headers(scope=scope),
            body=body,
            at=time.monotonic(),
        )
        scripted = self.fake._arrived(request)
        if scripted is not None:
            await scripted(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


class _QuickServer(uvicorn.Server):
    """uvicorn for fakes: notices a stop within 10 ms and drops its connections at once. A fake
    owes nobody a graceful shutdown, and uvicorn's own waits (0.1 s ticks, a fixed 0.1 s pause)
    would cost every test a fifth of a second."""

    async def main_loop(self) -> None:
        while not self.should_exit:
            await asyncio.sleep(0.01)

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        for server in self.servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 1.0)
            except TimeoutError:
                pass


@contextmanager
def serving_in_thread(app: ASGIApp) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 (a free port) in a thread; yield its base URL."""
    server = _QuickServer(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True, name="hookline-fake-api")
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
