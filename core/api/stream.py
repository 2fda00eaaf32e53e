"""GET /api/events: Server-Sent Events, resumable with `Last-Event-ID` (see core/events.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from core.api.access import host_of
from core.api.errors import field_error, validate_query

HEARTBEAT_SECONDS = 15.0
#: Rows held behind an older open transaction are read again after this, doubling up to
#: `HELD_RETRY_MAX_SECONDS`: the transaction that releases them may write no event (so notify nobody).
HELD_RETRY_SECONDS = 0.02
HELD_RETRY_MAX_SECONDS = 1.0
RESUME_HEADER = "Last-Event-ID"
MAX_EVENT_ID = 2**63 - 1  # the column is a BIGINT: larger is no event, and no query can hold it


class EventsQuery(BaseModel):
    last_event_id: int | None = Field(default=None, ge=0, le=MAX_EVENT_ID, description=(
        f"For clients that cannot set the `{RESUME_HEADER}` header; the header wins when both are sent."))


async def events(request: Request) -> Response:
    """Without `Last-Event-ID` (header, or `?last_event_id=` for clients that cannot set headers)
    the stream starts with what happens next; with it, every event that came after that one
    first (in the order of core/event_log.py)."""
    bus = host_of(request).events
    header = request.headers.get(RESUME_HEADER)
    if header is not None and not _is_event_id(header):
        raise field_error(RESUME_HEADER, "expected an event id (a whole number)")
    given = int(header) if header is not None else validate_query(EventsQuery, request).last_event_id
    waiter = bus.subscribe()
    try:
        cursor = await bus.start_cursor(given)
    except BaseException:
        bus.unsubscribe(waiter)
        raise

    async def stream() -> AsyncIterator[str]:
        nonlocal cursor
        held_retry = HELD_RETRY_SECONDS
        last_sent = time.monotonic()
        try:
            yield "retry: 2000\n\n"
            while True:
                waiter.clear()
                page = await bus.after(cursor)
                for event in page.events:
                    yield f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(event.data, separators=(',', ':'))}\n\n"
                if page.events:
                    last_sent = time.monotonic()
                if page.cursor != cursor:
                    cursor = page.cursor
                    continue
                if await request.is_disconnected():
                    return
                if page.held:
                    timeout = held_retry
                    held_retry = min(held_retry * 2, HELD_RETRY_MAX_SECONDS)
                else:
                    timeout, held_retry = bus.poll_seconds, HELD_RETRY_SECONDS
                timeout = max(0.0, min(timeout, last_sent + HEARTBEAT_SECONDS - time.monotonic()))
                try:
                    await asyncio.wait_for(waiter.wait(), timeout)
                except TimeoutError:
                    if time.monotonic() - last_sent >= HEARTBEAT_SECONDS:
                        last_sent = time.monotonic()
                        yield ": keep-alive\n\n"
        finally:
            bus.unsubscribe(waiter)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _is_event_id(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= MAX_EVENT_ID
