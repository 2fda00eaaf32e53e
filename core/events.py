"""Live events for browsers: rows of `hookline_event` plus an in-process wake-up.

An event row is small — its kind and the ids it is about — and is written in the same
transaction as the change it describes (the webhook intake writes its own with raw SQL), so a
committed message always has its event and a rolled-back one never does. Rows are rendered when
they are read: a `message.created` becomes the message as the API shows it, a `message.status`
the message's status now (statuses only move forward), a `conversation.updated` the conversation.

The id orders the stream and is the SSE `id:`. Subscribers in this process are woken at once;
SSE streams also look for new rows every second, which is how events written by other processes
(another `serve` worker, `hookline send`) arrive. A client that reconnects with `Last-Event-ID`
gets every row after that id. Known limit: on PostgreSQL two transactions can commit their events
out of id order, so a client resuming exactly between them can miss the earlier one (scale mode's
LISTEN/NOTIFY resync is where that is closed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from core.api.views import conversation_json, message_json
from core.storage.models import Conversation, Event, Message
from core.inbox import unread_counts
from core.storage.sql import query, to_json

log = logging.getLogger("hookline.events")

MESSAGE_CREATED = "message.created"
MESSAGE_STATUS = "message.status"
CONVERSATION_UPDATED = "conversation.updated"
NUMBER_STATE = "number.state"

EventRef = tuple[str, dict[str, Any]]
_INSERT = "INSERT INTO hookline_event (kind, data, created_at) VALUES (?, ?, ?)"


def message_created(message_id: int, conversation_id: int) -> list[EventRef]:
    return [(MESSAGE_CREATED, {"message_id": message_id}), (CONVERSATION_UPDATED, {"conversation_id": conversation_id})]


def message_status(message_id: int) -> EventRef:
    return MESSAGE_STATUS, {"message_id": message_id}


def conversation_updated(conversation_id: int) -> EventRef:
    return CONVERSATION_UPDATED, {"conversation_id": conversation_id}


async def record(connection: BaseDBAsyncClient, events: Iterable[EventRef]) -> None:
    """Write events inside the caller's transaction (wake the bus after it commits)."""
    now = datetime.now(UTC)
    for kind, data in events:
        await query(connection, _INSERT, [kind, to_json(data), now])


@dataclass(frozen=True, slots=True)
class LiveEvent:
    id: int
    kind: str
    data: dict[str, Any]


class EventBus:
    def __init__(self) -> None:
        self._waiters: set[asyncio.Event] = set()

    async def emit(self, events: Iterable[EventRef]) -> None:
        """Store events in their own transaction and wake subscribers, for changes already
        committed elsewhere. Never raises: a lost live event must not fail its caller."""
        events = list(events)
        if not events:
            return
        try:
            async with in_transaction() as connection:
                await record(connection, events)
        except Exception as exc:
            log.warning("live events not stored (%s): %s", ", ".join(kind for kind, _ in events), type(exc).__name__)
            return
        self.wake()

    def wake(self) -> None:
        for waiter in self._waiters:
            waiter.set()

    def subscribe(self) -> asyncio.Event:
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        return waiter

    def unsubscribe(self, waiter: asyncio.Event) -> None:
        self._waiters.discard(waiter)

    async def after(self, last_id: int, limit: int = 500) -> tuple[list[LiveEvent], int]:
        """Events after `last_id`, and the id to continue from (past rows whose subject is gone)."""
        rows = await Event.filter(id__gt=last_id).order_by("id").limit(limit)
        return await _render(rows), (rows[-1].id if rows else last_id)

    async def last_id(self) -> int:
        row = await Event.all().order_by("-id").first()
        return row.id if row else 0

    # -- for callers outside a storing transaction

    async def messages_created(self, messages: Iterable[Message]) -> None:
        await self.emit([ref for m in messages for ref in message_created(m.id, m.conversation_id)])

    async def message_status(self, message_ids: Iterable[int]) -> None:
        await self.emit(message_status(message_id) for message_id in message_ids)

    async def conversation_updated(self, conversation_id: int) -> None:
        await self.emit([conversation_updated(conversation_id)])

    async def number_state(self, number_id: str, state: str | None, detail: str | None) -> None:
        await self.emit([(NUMBER_STATE, {"number_id": number_id, "state": state, "state_detail": detail})])


async def _render(rows: list[Event]) -> list[LiveEvent]:
    """Rows as clients see them: ids replaced by what they name, read in two batched queries."""
    message_ids = {row.data["message_id"] for row in rows if "message_id" in row.data}
    conversation_ids = {row.data["conversation_id"] for row in rows if "conversation_id" in row.data}
    messages = {m.id: m for m in await Message.filter(id__in=message_ids)} if message_ids else {}
    conversations = (
        {c.id: c for c in await Conversation.filter(id__in=conversation_ids).prefetch_related("contact")}
        if conversation_ids else {}
    )
    unread = await unread_counts(conversations)
    rendered = []
    for row in rows:
        data: dict[str, Any] | None = row.data
        if row.kind == MESSAGE_CREATED:
            message = messages.get(row.data["message_id"])
            data = {"message": message_json(message)} if message else None
        elif row.kind == MESSAGE_STATUS:
            message = messages.get(row.data["message_id"])
            data = {"message_id": message.id, "conversation_id": message.conversation_id, "status": message.status.value,
                    "error_code": message.error_code, "error_text": message.error_text} if message else None
        elif row.kind == CONVERSATION_UPDATED:
            conversation = conversations.get(row.data["conversation_id"])
            data = {"conversation": conversation_json(conversation, conversation.contact, unread[conversation.id])} if conversation else None
        if data is not None:  # what an event names may have been deleted since
            rendered.append(LiveEvent(row.id, row.kind, data))
    return rendered
