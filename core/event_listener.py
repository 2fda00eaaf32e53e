"""One dedicated PostgreSQL connection per process that LISTENs for stored events and wakes the
process's streams, so an event stored by any instance reaches every instance's browsers at once.

Every transaction that writes `hookline_event` notifies `CHANNEL` (a trigger, migration 0007);
PostgreSQL delivers that only if the transaction commits. The connection is asyncpg's own, not
one of Tortoise's pool: a pooled connection is lent to other queries and returned, a LISTEN must
stay put. When it drops (PostgreSQL restarted, the backend terminated, the network) the listener
marks the bus deaf (streams fall back to the 1 s poll), reconnects with backoff and, once
listening again, wakes every stream: each re-reads from its own cursor, which is what makes the
outage lossless — nothing is carried in the notification itself. A ping every `PING_SECONDS`
finds connections that died without a word (a half-open TCP connection).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from core.events import EventBus

log = logging.getLogger("hookline.events")

CHANNEL = "hookline_events"
#: How the listening connection shows in `pg_stat_activity`.
APPLICATION_NAME = "hookline-events"
BACKOFF_BASE_SECONDS = 0.1
BACKOFF_MAX_SECONDS = 5.0
PING_SECONDS = 10.0
PING_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 5.0

Connect = Callable[[], Awaitable[asyncpg.Connection]]


class EventListener:
    """LISTEN on a connection of its own; wake `bus` on every notification and after every
    (re)connection. `connect` opens a new connection each time it is called."""

    def __init__(self, bus: EventBus, connect: Connect) -> None:
        self._bus = bus
        self._connect = connect
        self._task: asyncio.Task[None] | None = None
        self._first_attempt = asyncio.Event()
        self.backend_pid: int | None = None  # the listening backend, while connected

    async def start(self) -> None:
        """Run in the background; return once the first connection attempt has succeeded or
        failed (a failure is retried like a drop: the process starts either way)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="hookline-event-listener")
        attempted = asyncio.ensure_future(self._first_attempt.wait())
        await asyncio.wait([attempted, self._task], return_when=asyncio.FIRST_COMPLETED)
        attempted.cancel()
        if self._task.done():  # a bug, not an outage: say so at start, not never
            self._task.result()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        failures = 0  # consecutive failed attempts
        listened = False  # whether a connection of this listener ever listened
        while True:
            opened = await self._open(first_failure=failures == 0)
            if opened is None:
                self._first_attempt.set()
                failures += 1
                await asyncio.sleep(_backoff(failures))
                continue
            connection, lost = opened
            try:
                self.backend_pid = connection.get_server_pid()
                self._bus.listening = True
                self._first_attempt.set()
                # Resync: what committed while nobody listened is read now, from each stream's cursor.
                self._bus.wake()
                if listened or failures:
                    log.info("live events: listener reconnected (backend pid %d); streams resync from their "
                             "last event", self.backend_pid)
                else:
                    log.info("live events: listening on PostgreSQL (backend pid %d)", self.backend_pid)
                await _until_lost(connection, lost)
            finally:
                self._bus.listening = False
                self.backend_pid = None
                connection.terminate()
            listened, failures = True, 0
            self._bus.wake()  # streams re-read, then poll every second while deaf
            log.warning("live events: the listening connection was lost; reconnecting")
            await asyncio.sleep(_backoff(1))

    async def _open(self, *, first_failure: bool) -> tuple[asyncpg.Connection, asyncio.Event] | None:
        """A new connection that LISTENs, and the event set when it closes; None if it failed
        (logged once per outage, by exception type: the message could name the server)."""
        connection: asyncpg.Connection | None = None
        try:
            connection = await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT_SECONDS)
            lost = asyncio.Event()
            connection.add_termination_listener(lambda _: lost.set())
            await connection.add_listener(CHANNEL, self._notified)
            return connection, lost
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            if connection is not None:
                connection.terminate()
            if first_failure:
                log.warning("live events: cannot listen on PostgreSQL (%s); streams poll every second until "
                            "it answers", type(exc).__name__)
            return None

    def _notified(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        self._bus.wake()


async def _until_lost(connection: asyncpg.Connection, lost: asyncio.Event) -> None:
    """Return when the connection closes, or stops answering a ping."""
    while not lost.is_set():
        try:
            await asyncio.wait_for(lost.wait(), PING_SECONDS)
        except TimeoutError:
            try:
                await asyncio.wait_for(connection.fetchval("SELECT 1"), PING_TIMEOUT_SECONDS)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                return


def _backoff(failures: int) -> float:
    """Exponential with equal jitter, so instances do not all reconnect at the same instant."""
    delay = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (failures - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def connect_like(client: Any) -> Connect:
    """A function that opens a connection with the same parameters as Tortoise's asyncpg pool
    (host, credentials, TLS, server settings), named `APPLICATION_NAME`."""
    accepted = inspect.signature(asyncpg.connect).parameters
    extra = {key: value for key, value in client.extra.items() if key in accepted}

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(
            host=client.host, port=client.port, user=client.user, password=client.password,
            database=client.database, **extra,
            server_settings={**client.server_settings, "application_name": APPLICATION_NAME},
        )

    return connect
