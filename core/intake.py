"""Storing what a proven webhook carried: idempotently, with its work, in one transaction."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from asyncpg.exceptions import TransactionRollbackError
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.connection import get_connection
from tortoise.exceptions import IntegrityError, ValidationError
from tortoise.transactions import in_transaction

from core import events
from core.queue import WorkQueue, now_ms
from core.storage.models import Contact, Conversation, Message, StatusEvent
from core.storage.sql import query, to_json
from core.types import (
    STATUS_RANK,
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
    """Ordering key for everything workflows see about a conversation (also built in SQL by
    _NEW_MESSAGE_PG: keep the two alike)."""
    return f"in:{conversation_id}"


def outbound_key(conversation_id: int) -> str:
    """Ordering key for a conversation's sends (kept apart so a slow send never holds up replies)."""
    return f"out:{conversation_id}"


async def record_webhook(
    provider: str,
    parsed: ParsedWebhook,
    status_map: Mapping[str, DeliveryStatus],
    queue: WorkQueue,
    *,
    status_jobs: bool = True,
) -> IntakeResult:
    """Store messages and statuses; enqueue workflow work for what is new. All or nothing."""
    if len(parsed.messages) == 1 and not parsed.statuses:  # the common webhook: one statement, no transaction
        connection = get_connection("default")
        if connection.capabilities.dialect == "postgres":
            _check_lengths(parsed.messages[0])
            result = IntakeResult()
            if await _store_new_message_pg(connection, provider, parsed.messages[0], queue, result):
                if result.stored:
                    queue.wake()
                return result
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
                    update.error_text, update.raw = _without_nul(update.error_text), _without_nul(update.raw)
                    await apply_status(connection, provider, update, status_map.get(update.raw_status), queue, result,
                                       status_job=status_jobs)
            if result.stored or result.statuses_applied:
                queue.wake()
            return result
        except (IntegrityError, TransactionRollbackError):
            # A concurrent delivery of the same webhook committed first (the next try sees its
            # rows), or PostgreSQL chose this transaction as a deadlock or serialisation victim.
            if attempt == _RACE_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


# The webhook hot path in hand-written SQL (see core.storage.sql), statement by statement (SQLite,
# and PostgreSQL's fallback): duplicate check, contact, conversation, message, job, events.

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


# PostgreSQL: a new message in one statement instead of seven round trips (each costs more in
# system calls than all the Python around it). Every write waits on NOT EXISTS (dup), so a
# redelivery touches nothing; a contact or conversation created by a concurrent transaction after
# this statement's snapshot leaves `msg` empty without `dup`, and the caller falls back to the
# statement-by-statement path, which waits for that transaction and sees its row.
_NEW_MESSAGE_PG = """
WITH dup AS (
  SELECT 1 FROM hookline_message WHERE provider = $1 AND external_id = $2
), found AS (
  SELECT id, name, wa_id FROM hookline_contact WHERE address = $3
), created AS (
  INSERT INTO hookline_contact (address, name, wa_id, created_at, updated_at)
  SELECT $3, $4, $5, $6, $6 WHERE NOT EXISTS (SELECT 1 FROM dup) AND NOT EXISTS (SELECT 1 FROM found)
  ON CONFLICT (address) DO NOTHING RETURNING id
), renamed AS (
  UPDATE hookline_contact c SET name = COALESCE($4, f.name), wa_id = COALESCE($5, f.wa_id), updated_at = $6
  FROM found f WHERE c.id = f.id AND NOT EXISTS (SELECT 1 FROM dup)
  AND (COALESCE($4, f.name) IS DISTINCT FROM f.name OR COALESCE($5, f.wa_id) IS DISTINCT FROM f.wa_id)
), contact AS (
  SELECT id FROM found UNION ALL SELECT id FROM created
), touched AS (
  UPDATE hookline_conversation SET last_message_at = $6, state = 'open', updated_at = $6
  WHERE number_id = $7 AND contact_id = (SELECT id FROM contact) AND NOT EXISTS (SELECT 1 FROM dup)
  RETURNING id
), opened AS (
  INSERT INTO hookline_conversation (number_id, contact_id, owner, state, last_message_at, plugin_state,
    last_read_message_id, created_at, updated_at)
  SELECT $7, id, 'human', 'open', $6, '{}', 0, $6, $6 FROM contact
  WHERE NOT EXISTS (SELECT 1 FROM dup) AND NOT EXISTS (SELECT 1 FROM touched)
  ON CONFLICT (number_id, contact_id) DO NOTHING RETURNING id
), conversation AS (
  SELECT id FROM touched UNION ALL SELECT id FROM opened
), msg AS (
  INSERT INTO hookline_message (conversation_id, direction, kind, text, media, data, provider, external_id,
    reply_to, status, payload, sent_at, status_at, created_at, updated_at)
  SELECT id, 'in', $8, $9, $10, $11, $1, $2, $12, 'received', $13, $14, $6, $6, $6 FROM conversation
  ON CONFLICT (provider, external_id) DO NOTHING RETURNING id, conversation_id
), live AS (
  INSERT INTO hookline_event (kind, data, created_at)
  SELECT kind, data, $6 FROM msg, LATERAL (VALUES
    ('message.created', jsonb_build_object('message_id', msg.id)),
    ('conversation.updated', jsonb_build_object('conversation_id', msg.conversation_id))) AS e(kind, data)
), work AS (
  SELECT 'inbound'::text AS kind, jsonb_build_object('message_id', id) AS payload,
    'in:' || conversation_id::text AS ordering_key, NULL::text AS dedupe_key FROM msg
)"""
_NEW_MESSAGE_PG_RESULT = (
    " SELECT EXISTS (SELECT 1 FROM dup) AS duplicate, (SELECT id FROM msg) AS id,"
    " (SELECT conversation_id FROM msg) AS conversation_id"
)


@lru_cache(maxsize=8)
def _new_message_pg(enqueue: str) -> str:
    """The whole statement: the message, its events and its job (`enqueue`: the queue's part)."""
    return _NEW_MESSAGE_PG + enqueue + _NEW_MESSAGE_PG_RESULT


async def _store_message(
    connection: BaseDBAsyncClient, provider: str, message: InboundMessage, queue: WorkQueue, result: IntakeResult
) -> None:
    _check_lengths(message)
    if connection.capabilities.dialect == "postgres" and await _store_new_message_pg(connection, provider, message, queue, result):
        return
    await _store_message_stepwise(connection, provider, message, queue, result)


async def _store_new_message_pg(
    connection: BaseDBAsyncClient, provider: str, message: InboundMessage, queue: WorkQueue, result: IntakeResult
) -> bool:
    """True when the one statement settled it: stored, or a duplicate."""
    now = datetime.now(UTC)
    info = message.contact
    media = [item.to_json() for item in message.media]
    statement = _new_message_pg(queue.enqueue_from("work", "$15", "$6"))
    [row] = await connection.execute_query_dict(statement, [
        provider, message.external_id, info.address, info.name, info.wa_id, now, message.number_id, message.kind,
        message.text, to_json(media), to_json(message.data), message.reply_to, to_json(message.raw), message.timestamp,
        now_ms(),
    ])
    if row["duplicate"]:
        result.duplicates += 1
        return True
    if row["id"] is None:
        return False  # a contact or conversation was created concurrently: the stepwise path waits for it
    result.stored.append(row["id"])
    return True


async def _store_message_stepwise(
    connection: BaseDBAsyncClient, provider: str, message: InboundMessage, queue: WorkQueue, result: IntakeResult
) -> None:
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
    """What the columns cannot hold is refused (400), not truncated nor left to the driver (503);
    a NUL in what the customer wrote (PostgreSQL keeps none in text or JSON) becomes U+FFFD, so
    the message is kept rather than refused and lost (a provider does not resend a 400)."""
    message.text = _without_nul(message.text)
    message.contact.name = _without_nul(message.contact.name)
    message.data = _without_nul(message.data)
    message.raw = _without_nul(message.raw)
    for media in message.media:
        media.filename = _without_nul(media.filename)
    for name, limit in _LIMITS:
        value = getattr(message, name)
        if value is not None and len(value) > limit:
            raise ValidationError(f"{name} is longer than {limit} characters")
    if len(message.contact.address) > 255 or len(message.contact.name or "") > 255:
        raise ValidationError("contact address or name is longer than 255 characters")


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


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
    *,
    status_job: bool = True,
) -> None:
    """Keep the event; move the message forward if the status outranks the current one (and
    queue `on_status_update` for it, unless `status_job` is false: no plugin listens)."""
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
        if status_job:
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
