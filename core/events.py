"""Live events for browsers: rows of `hookline_event` plus a wake-up for the streams that read them.

An event row is small — its kind and the ids it is about — and is written in the same
transaction as the change it describes (the webhook intake writes its own with raw SQL), so a
committed message always has its event and a rolled-back one never does. Rows are rendered when
they are read: a `message.created` becomes the message as the API shows it, a `message.status`
the message's status now (statuses only move forward), a `conversation.updated` the conversation.

Order and resume (core/event_log.py). On PostgreSQL two transactions can commit their events out
of id order, so delivering "id > last" could skip a row committed late. Of the ways to close that
exactly, hookline takes a cursor over (transaction id, event id) read below the snapshot horizon:
no row can appear below the horizon later, so no reader, live or resuming, ever skips one, and
every reader sees the same order. A read costs about what the old `id > last` read did; a row
stored behind an older open transaction waits until it ends (milliseconds; a transaction left
open in this database holds live events back, never writes). Serialising id assignment with
commit order instead (an advisory lock from the event INSERT to COMMIT) would queue every
event-writing transaction of every instance behind one lock held across client round trips, so
one stalled process would stall every instance's webhook intake (costs measured in
docs/architecture.md). SQLite serialises writers, so ids are already in commit order there. SSE
ids stay event ids; a resuming client is put back at its event's cursor.

Wake-ups: this process's writers wake the bus after they commit. On PostgreSQL every storing
transaction also notifies (a trigger on `hookline_event`, delivered only on commit), and one
dedicated connection per process listens (core/event_listener.py), so other instances' events
arrive at once; after a drop it reconnects and wakes every stream to re-read from its cursor.
Streams still re-read on a timer as a fallback: every `FALLBACK_POLL_SECONDS` while the listener
is up, every `POLL_SECONDS` without one (SQLite, where `hookline send` and other `serve` workers
write the same file, or while the listener reconnects).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.connection import get_connection
from tortoise.transactions import in_transaction

from core import event_log
from core.api.views import conversation_json, message_json
from core.event_log import Cursor, StoredEvent
from core.inbox import unread_counts
from core.storage.models import Conversation, Message
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


#: How often a stream re-reads without a wake-up: with no listener (SQLite, or PostgreSQL while
#: the listener reconnects), this is how other processes' events arrive.
POLL_SECONDS = 1.0
#: The same while the listener is up: only a safety net, since every commit notifies.
FALLBACK_POLL_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class LiveEvent:
    id: int
    kind: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LivePage:
    events: list[LiveEvent]
    cursor: Cursor  # where the next read continues (past rows whose subject is gone, too)
    held: bool  # committed rows wait behind an older open transaction: read again soon


class EventBus:
    def __init__(self) -> None:
        self._waiters: set[asyncio.Event] = set()
        #: Set by core/event_listener.py while its LISTEN connection is up.
        self.listening = False

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

    @property
    def poll_seconds(self) -> float:
        """How long a stream may sleep without a wake-up before it reads again."""
        return FALLBACK_POLL_SECONDS if self.listening else POLL_SECONDS

    async def start_cursor(self, last_event_id: int | None) -> Cursor:
        """Where a stream begins: after the event a resuming client saw, else at the live edge."""
        connection = get_connection("default")
        if last_event_id is None:
            return await event_log.live_edge(connection)
        return await event_log.resume_point(connection, last_event_id)

    async def after(self, cursor: Cursor, limit: int = 500) -> LivePage:
        """Deliverable events after `cursor`, rendered, and the cursor to continue from."""
        page = await event_log.read_after(get_connection("default"), cursor, limit)
        return LivePage(await _render(page.events), page.cursor, page.held)

    # -- for callers outside a storing transaction

    async def messages_created(self, messages: Iterable[Message]) -> None:
        await self.emit([ref for m in messages for ref in message_created(m.id, m.conversation_id)])

    async def message_status(self, message_ids: Iterable[int]) -> None:
        await self.emit(message_status(message_id) for message_id in message_ids)

    async def conversation_updated(self, conversation_id: int) -> None:
        await self.emit([conversation_updated(conversation_id)])

    async def number_state(self, number_id: str, state: str | None, detail: str | None) -> None:
        await self.emit([(NUMBER_STATE, {"number_id": number_id, "state": state, "state_detail": detail})])


async def _render(rows: list[StoredEvent]) -> list[LiveEvent]:
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
            rendered.append(LiveEvent(row.cursor.id, row.kind, data))
    return rendered
