"""GET /api/events: Server-Sent Events, resumable with `Last-Event-ID` (see core/events.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from core.api.access import ANYONE, host_of, require
from core.api.errors import field_error

POLL_SECONDS = 1.0  # also picks up events written by other processes
HEARTBEAT_SECONDS = 15.0


async def events(request: Request) -> Response:
    """Without `Last-Event-ID` (header, or `?last_event_id=` for clients that cannot set headers)
    the stream starts with what happens next; with it, every stored event after that id first."""
    require(request, ANYONE)
    bus = host_of(request).events
    given = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if given is not None and not given.isdigit():
        raise field_error("Last-Event-ID", "expected an event id (a whole number)")
    waiter = bus.subscribe()
    try:
        last = int(given) if given is not None else await bus.last_id()
    except BaseException:
        bus.unsubscribe(waiter)
        raise

    async def stream() -> AsyncIterator[str]:
        nonlocal last
        idle = 0.0
        try:
            yield "retry: 2000\n\n"
            while True:
                waiter.clear()
                rows, read_up_to = await bus.after(last)
                for row in rows:
                    yield f"id: {row.id}\nevent: {row.kind}\ndata: {json.dumps(row.data, separators=(',', ':'))}\n\n"
                if read_up_to != last:
                    last = read_up_to
                    idle = 0.0
                    continue
                if await request.is_disconnected():
                    return
                try:
                    await asyncio.wait_for(waiter.wait(), POLL_SECONDS)
                except TimeoutError:
                    idle += POLL_SECONDS
                    if idle >= HEARTBEAT_SECONDS:
                        idle = 0.0
                        yield ": keep-alive\n\n"
        finally:
            bus.unsubscribe(waiter)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
