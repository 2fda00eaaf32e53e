"""GET /api/events: Server-Sent Events, resumable with `Last-Event-ID` (see core/events.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from core.api.access import host_of
from core.api.errors import field_error, validate

POLL_SECONDS = 1.0  # also picks up events written by other processes
HEARTBEAT_SECONDS = 15.0
RESUME_HEADER = "Last-Event-ID"


class EventsQuery(BaseModel):
    last_event_id: int | None = Field(default=None, ge=0, description=(
        f"For clients that cannot set the `{RESUME_HEADER}` header; the header wins when both are sent."))


async def events(request: Request) -> Response:
    """Without `Last-Event-ID` (header, or `?last_event_id=` for clients that cannot set headers)
    the stream starts with what happens next; with it, every stored event after that id first."""
    bus = host_of(request).events
    header = request.headers.get(RESUME_HEADER)
    if header is not None and not header.isdigit():
        raise field_error(RESUME_HEADER, "expected an event id (a whole number)")
    given = int(header) if header is not None else validate(EventsQuery, dict(request.query_params)).last_event_id
    waiter = bus.subscribe()
    try:
        last = given if given is not None else await bus.last_id()
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
