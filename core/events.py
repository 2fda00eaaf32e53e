"""Live events for browsers: rows of `hookline_event` plus an in-process wake-up.

Every event is stored first (its id orders the stream and is the SSE `id:`), then subscribers in
this process are woken at once; SSE streams also look for new rows every second, which is how
events written by other processes (another `serve` worker, `hookline send`) arrive. A client that
reconnects with `Last-Event-ID` gets every row after that id. Kinds: `message.created`,
`message.status`, `conversation.updated`, `number.state`.

Events are written by the callers right after the transaction that stored what they describe
(core/intake.py stays untouched): a crash between the two commits loses that live event, never
the data it describes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from tortoise.transactions import in_transaction

from core.api.views import conversation_json, message_json
from core.storage.models import Conversation, Event, Message

log = logging.getLogger("hookline.events")

MESSAGE_CREATED = "message.created"
MESSAGE_STATUS = "message.status"
CONVERSATION_UPDATED = "conversation.updated"
NUMBER_STATE = "number.state"


class EventBus:
    def __init__(self) -> None:
        self._waiters: set[asyncio.Event] = set()

    async def emit(self, events: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Store the events in one transaction and wake subscribers. Never raises: the change
        they describe is already committed, and a lost live event must not fail its caller."""
        events = list(events)
        if not events:
            return
        try:
            async with in_transaction() as connection:
                for kind, data in events:
                    await Event.create(kind=kind, data=data, using_db=connection)
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

    async def after(self, last_id: int, limit: int = 500) -> list[Event]:
        return await Event.filter(id__gt=last_id).order_by("id").limit(limit)

    async def last_id(self) -> int:
        row = await Event.all().order_by("-id").first()
        return row.id if row else 0

    # -- what callers emit

    async def messages_created(self, message_ids: Iterable[int]) -> None:
        ids = list(message_ids)
        if not ids:
            return
        try:
            messages = await Message.filter(id__in=ids).order_by("id")
            conversations = await Conversation.filter(id__in={m.conversation_id for m in messages}).prefetch_related("contact")
        except Exception as exc:
            log.warning("live events not built: %s", type(exc).__name__)
            return
        await self.emit(
            [(MESSAGE_CREATED, {"message": message_json(m)}) for m in messages]
            + [(CONVERSATION_UPDATED, {"conversation": conversation_json(c, c.contact)}) for c in conversations]
        )

    async def message_status(self, messages: Iterable[Message]) -> None:
        await self.emit(
            (MESSAGE_STATUS, {"message_id": m.id, "conversation_id": m.conversation_id, "status": m.status.value,
                              "error_code": m.error_code, "error_text": m.error_text}) for m in messages
        )

    async def message_status_of(self, message_ids: Iterable[int]) -> None:
        ids = list(message_ids)
        if ids:
            try:
                messages = await Message.filter(id__in=ids).order_by("id")
            except Exception as exc:
                log.warning("live events not built: %s", type(exc).__name__)
                return
            await self.message_status(messages)

    async def conversation_updated(self, conversation_id: int) -> None:
        try:
            conversation = await Conversation.get_or_none(id=conversation_id).prefetch_related("contact")
        except Exception as exc:
            log.warning("live events not built: %s", type(exc).__name__)
            return
        if conversation is not None:
            await self.emit([(CONVERSATION_UPDATED, {"conversation": conversation_json(conversation, conversation.contact)})])

    async def number_state(self, number_id: str, state: str | None, detail: str | None) -> None:
        await self.emit([(NUMBER_STATE, {"number_id": number_id, "state": state, "state_detail": detail})])
