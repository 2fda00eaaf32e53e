"""A TCP proxy in front of PostgreSQL that a test can cut and restore: what a server restart or a
network outage does to hookline — every open connection dropped, new ones refused — without
stopping the machine's PostgreSQL, which other tests (and CI's own database) share.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()

    def run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._listen())
        self._ready.set()
        self._loop.run_forever()

    async def _listen(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", port or self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _pipe(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self._writers.update((client_writer, server_writer))

        async def copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.close()

        await asyncio.gather(copy(client_reader, server_writer), copy(server_reader, client_writer))
        self._writers.difference_update((client_writer, server_writer))

    def _call(self, coroutine) -> None:  # type: ignore[no-untyped-def]
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    def cut(self) -> None:
        """Drop every connection and refuse new ones (the port stops listening)."""

        async def cut() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._writers):
                if writer.transport is not None:
                    writer.transport.abort()
            self._writers.clear()
            await self._server.wait_closed()

        self._call(cut())

    def restore(self) -> None:
        """Listen again on the same port."""
        self._call(self._listen(self.port))

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)


@contextmanager
def proxied(host: str, port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(host, port)
    thread = threading.Thread(target=proxy.run, daemon=True)
    thread.start()
    assert proxy._ready.wait(10), "the proxy did not start"
    try:
        yield proxy
    finally:
        proxy.stop()
        thread.join(10)
