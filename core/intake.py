"""Storing what a proven webhook carried: idempotently, with its work, in one transaction."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from asyncpg.exceptions import TransactionRollbackError
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError, ValidationError
from tortoise.transactions import in_transaction

from core import events
from core.queue import WorkQueue
from core.storage.models import Contact, Conversation, Message, StatusEvent
from core.storage.sql import query, to_json
from core.types import (
    STATUS_RANK,
    ConversationState,
    DeliveryStatus,
    Direction,
    InboundMessage,
    ParsedWebhook,
    StatusUpdate,
)

log = logging.getLogger("hookline.intake")

#: How often a transaction that lost a race to a concurrent duplicate is run again.
_RACE_RETRIES = 5


@dataclass(slots=True)
class IntakeResult:
    stored: list[int] = field(default_factory=list)
    duplicates: int = 0
    statuses_applied: int = 0
    statuses_kept: int = 0


def inbound_key(conversation_id: int) -> str:
    """Ordering key for everything workflows see about a conversation."""
    return f"in:{conversation_id}"


def outbound_key(conversation_id: int) -> str:
    """Ordering key for a conversation's sends (kept apart so a slow send never holds up replies)."""
    return f"out:{conversation_id}"


async def record_webhook(
    provider: str,
    parsed: ParsedWebhook,
    status_map: Mapping[str, DeliveryStatus],
    queue: WorkQueue,
) -> IntakeResult:
    """Store messages and statuses; enqueue workflow work for what is new. All or nothing."""
    for attempt in range(_RACE_RETRIES):
        try:
            async with in_transaction() as connection:
                await lock_provider_ids(connection, provider, (update.external_id for update in parsed.statuses))
                result = IntakeResult()
                # Rows are locked in one global order (number, contact), so two batches that share
                # customers cannot deadlock; the stable sort keeps each conversation's own order.
                for message in sorted(parsed.messages, key=lambda m: (m.number_id, m.contact.address)):
                    await _store_message(connection, provider, message, queue, result)
                for update in parsed.statuses:
                    await apply_status(connection, provider, update, status_map.get(update.raw_status), queue, result)
            if result.stored or result.statuses_applied:
                queue.wake()
            return result
        except (IntegrityError, TransactionRollbackError):
            # A concurrent delivery of the same webhook committed first (the next try sees its
            # rows), or PostgreSQL chose this transaction as a deadlock or serialisation victim.
            if attempt == _RACE_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


# The webhook hot path in hand-written SQL (see core.storage.sql): five statements for a new
# message from a known contact — duplicate check, contact, conversation, message, job.

_DUPLICATE = "SELECT 1 AS found FROM hookline_message WHERE provider = ? AND external_id = ?"
_CONTACT = "SELECT id, name, wa_id FROM hookline_contact WHERE address = ?"
_NEW_CONTACT = (
    "INSERT INTO hookline_contact (address, name, wa_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?) RETURNING id"
)
_UPDATE_CONTACT = "UPDATE hookline_contact SET name = ?, wa_id = ?, updated_at = ? WHERE id = ?"
# Also the row lock that serialises one conversation's writers on PostgreSQL, so message ids
# (and so job order) follow commit order within a conversation.
_TOUCH_CONVERSATION = (
    "UPDATE hookline_conversation SET last_message_at = ?, state = 'open', updated_at = ?"
    " WHERE number_id = ? AND contact_id = ? RETURNING id"
)
_NEW_CONVERSATION = (
    "INSERT INTO hookline_conversation (number_id, contact_id, owner, state, last_message_at, plugin_state,"
    " last_read_message_id, created_at, updated_at) VALUES (?, ?, 'human', 'open', ?, '{}', 0, ?, ?) RETURNING id"
)
_NEW_MESSAGE = (
    "INSERT INTO hookline_message (conversation_id, direction, kind, text, media, data, provider, external_id,"
    " reply_to, status, payload, sent_at, status_at, created_at, updated_at)"
    " VALUES (?, 'in', ?, ?, ?, ?, ?, ?, ?, 'received', ?, ?, ?, ?, ?)"
    " ON CONFLICT (provider, external_id) DO NOTHING RETURNING id"
)


async def _store_message(
    connection: BaseDBAsyncClient, provider: str, message: InboundMessage, queue: WorkQueue, result: IntakeResult
) -> None:
    _check_lengths(message)
    if await query(connection, _DUPLICATE, [provider, message.external_id]):
        result.duplicates += 1
        return
    now = datetime.now(UTC)
    contact_id = await _contact_id(connection, message, now)
    touched = await query(connection, _TOUCH_CONVERSATION, [now, now, message.number_id, contact_id])
    if touched:
        conversation_id = touched[0]["id"]
    else:
        created = await query(connection, _NEW_CONVERSATION, [message.number_id, contact_id, now, now, now])
        conversation_id = created[0]["id"]
    media = [item.to_json() for item in message.media]
    inserted = await query(connection, _NEW_MESSAGE, [
        conversation_id, message.kind, message.text, to_json(media), to_json(message.data), provider,
        message.external_id, message.reply_to, to_json(message.raw), message.timestamp, now, now, now,
    ])
    if not inserted:  # a concurrent delivery committed it after our check
        result.duplicates += 1
        return
    message_id = inserted[0]["id"]
    await queue.enqueue(connection, "inbound", {"message_id": message_id}, ordering_key=inbound_key(conversation_id))
    await events.record(connection, events.message_created(message_id, conversation_id))
    result.stored.append(message_id)


_LIMITS = (("external_id", 255), ("reply_to", 255), ("kind", 32))


def _check_lengths(message: InboundMessage) -> None:
    """What the columns cannot hold is refused (400), not truncated nor left to the driver (503)."""
    for name, limit in _LIMITS:
        value = getattr(message, name)
        if value is not None and len(value) > limit:
            raise ValidationError(f"{name} is longer than {limit} characters")
    if len(message.contact.address) > 255 or len(message.contact.name or "") > 255:
        raise ValidationError("contact address or name is longer than 255 characters")


async def _contact_id(connection: BaseDBAsyncClient, message: InboundMessage, now: datetime) -> int:
    info = message.contact
    found = await query(connection, _CONTACT, [info.address])
    if not found:
        created = await query(connection, _NEW_CONTACT, [info.address, info.name, info.wa_id, now, now])
        return created[0]["id"]
    row = found[0]
    name, wa_id = info.name or row["name"], info.wa_id or row["wa_id"]
    if (name, wa_id) != (row["name"], row["wa_id"]):
        await query(connection, _UPDATE_CONTACT, [name, wa_id, now, row["id"]])
    return row["id"]


async def conversation_for(connection: BaseDBAsyncClient, number_id: str, contact: Contact) -> Conversation:
    """The conversation of (number, contact), created if new, locked until the transaction ends.

    The row lock serialises one conversation's writers on PostgreSQL, so message ids (and so job
    order) follow commit order within a conversation.
    """
    query = Conversation.filter(number_id=number_id, contact_id=contact.id).using_db(connection)
    conversation = await query.select_for_update().first()
    if conversation is None:
        conversation = await Conversation.create(number_id=number_id, contact_id=contact.id, using_db=connection)
    return conversation


async def apply_status(
    connection: BaseDBAsyncClient,
    provider: str,
    update: StatusUpdate,
    status: DeliveryStatus | None,
    queue: WorkQueue,
    result: IntakeResult,
) -> None:
    """Keep the event; move the message forward if the status outranks the current one."""
    # Outbound only: statuses are about our sends; a customer's message must never become "read".
    message = await (
        Message.filter(provider=provider, external_id=update.external_id, direction=Direction.OUTBOUND)
        .using_db(connection)
        .first()
    )
    event = await StatusEvent.create(
        message_id=message.id if message else None,
        provider=provider,
        external_id=update.external_id,
        raw_status=update.raw_status,
        status=status,
        error_code=update.error_code,
        error_text=update.error_text,
        occurred_at=update.timestamp,
        payload=update.raw,
        using_db=connection,
    )
    result.statuses_kept += 1
    if status is None:
        log.warning("provider %s sent unknown status %r for %s; kept, not applied", provider, update.raw_status, update.external_id)
        return
    if message is None:  # the send may not have stored the provider's id yet; applied then
        return
    if await advance_status(connection, message.id, status, update.error_code, update.error_text, update.timestamp):
        await StatusEvent.filter(id=event.id).using_db(connection).update(applied=True)
        await queue.enqueue(
            connection,
            "status",
            {"message_id": message.id, "event_id": event.id},
            ordering_key=inbound_key(message.conversation_id),
        )
        await events.record(connection, [events.message_status(message.id)])
        result.statuses_applied += 1


async def lock_provider_ids(connection: BaseDBAsyncClient, provider: str, external_ids: Iterable[str]) -> None:
    """Serialise status webhooks with the send that stores the same provider id (PostgreSQL).

    Otherwise a status that looked for its message before the send committed, and stored its event
    after the send looked for early ones, would never be applied. SQLite already runs one write
    transaction at a time. Locks are taken in key order, so two transactions cannot deadlock.
    """
    if connection.capabilities.dialect != "postgres":
        return
    for key in sorted({_lock_key(provider, external_id) for external_id in external_ids}):
        await connection.execute_query("SELECT pg_advisory_xact_lock($1)", [key])


def _lock_key(provider: str, external_id: str) -> int:
    digest = hashlib.blake2b(f"{provider}\0{external_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def advance_status(
    connection: BaseDBAsyncClient,
    message_id: int,
    status: DeliveryStatus,
    error_code: str | None = None,
    error_text: str | None = None,
    at: datetime | None = None,
) -> bool:
    """Set `status` only if it outranks the stored one (one conditional UPDATE: race-free)."""
    lower = [candidate for candidate, rank in STATUS_RANK.items() if rank < STATUS_RANK[status]]
    changes: dict[str, object] = {"status": status, "status_at": at or datetime.now(UTC)}
    # A later delivery receipt outranks a failure: the old error no longer describes the message.
    changes.update(error_code=error_code, error_text=error_text)
    updated = await Message.filter(id=message_id, status__in=lower).using_db(connection).update(**changes)
    return bool(updated)
