"""Outbound messages: stored `pending` with their send job, then delivered by a worker within the
rate limits of their number and recipient."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from core import events, limits, metrics, ratelimit
from core.dispatch import Provider
from core.intake import advance_status, inbound_key, lock_provider_ids, outbound_key
from core.storage.models import Conversation, Message, StatusEvent
from core.types import (
    DeliveryStatus, Direction, Interactive, Media, Number, OutboundMessage, Owner, ProviderError, SendResult, Template,
)
from core.worker import Postpone, RetryLater

if TYPE_CHECKING:
    from core.host import Host

log = logging.getLogger("hookline.sending")


async def enqueue_outbound(
    host: Host,
    conversation: Conversation,
    *,
    text: str | None = None,
    media: Media | None = None,
    template: Template | None = None,
    interactive: Interactive | None = None,
    reply_to: str | None = None,
    sender: str | None = None,
    dedupe_key: str | None = None,
) -> Message:
    """Persist the message as `pending` and its send job, in one transaction.

    With a `dedupe_key`, a second call for the same conversation and key returns the first message
    and queues nothing: what a retried or re-run workflow sends goes out once.
    """
    number = host.number(conversation.number_id)
    if dedupe_key:
        existing = await Message.filter(conversation_id=conversation.id, dedupe_key=dedupe_key).first()
        if existing is not None:
            return existing
    if template:
        kind, data = "template", {"template": template.to_json()}
    elif interactive:
        kind, data = "interactive", {"interactive": interactive.to_json()}
    else:
        kind, data = ("text" if media is None else _media_kind(media)), {}
    try:
        message = await _store_outbound(host, conversation, kind, data, text, media, reply_to, sender, dedupe_key, number.provider)
    except IntegrityError:  # the same dedupe_key committed concurrently
        return await Message.get(conversation_id=conversation.id, dedupe_key=dedupe_key)
    host.queue.wake()
    host.events.wake()
    log.info("queued outbound message %s on %s", message.id, number.id)
    return message


async def _store_outbound(
    host: Host, conversation: Conversation, kind: str, data: dict, text: str | None, media: Media | None,
    reply_to: str | None, sender: str | None, dedupe_key: str | None, provider: str,
) -> Message:
    async with in_transaction() as connection:
        message = await Message.create(
            conversation_id=conversation.id,
            direction=Direction.OUTBOUND,
            kind=kind,
            text=text,
            media=[media.to_json()] if media else [],
            data=data,
            reply_to=reply_to,
            sender=sender,
            dedupe_key=dedupe_key,
            provider=provider,
            status=DeliveryStatus.PENDING,
            status_at=datetime.now(UTC),
            using_db=connection,
        )
        await host.queue.enqueue(connection, "send", {"message_id": message.id}, ordering_key=outbound_key(conversation.id),
                                 dedupe_key=f"send:{message.id}")
        await events.record(connection, events.message_created(message.id, conversation.id))
    return message


def _media_kind(media: Media) -> str:
    major = (media.content_type or "").split("/", 1)[0]
    return {"image": "image", "audio": "audio", "video": "video"}.get(major, "document")


async def deliver(host: Host, message_id: int) -> None:
    """The `send` job: wait for its rate-limit slots, hand the message to its provider and record
    what it said."""
    message = await Message.filter(id=message_id).select_related("conversation__contact").first()  # one query
    if message is None or message.status is not DeliveryStatus.PENDING or message.external_id:
        return  # already sent (a job re-run after a crash) or deleted
    conversation = message.conversation
    if message.sender == Owner.BOT.value and conversation.owner is not Owner.BOT:
        # Checked when the message would go out, not only when the bot decided to send it.
        await mark_failed(host, message, "dropped_not_owner", "a human took the conversation before this bot message went out")
        return
    number = host.number(conversation.number_id)
    provider = host.dispatch.provider(number.provider)
    outbound = OutboundMessage(
        id=message.id,
        to=conversation.contact.address,
        text=message.text,
        media=Media(**message.media[0]) if message.media else None,
        template=Template(**message.data["template"]) if message.kind == "template" else None,
        interactive=Interactive(**message.data["interactive"]) if message.kind == "interactive" else None,
        reply_to=message.reply_to,
        status_callback_url=host.status_callback_url(number.provider),
    )
    started: float | None = None  # set once the provider is called: rate-limit waits are not its time
    try:
        send = _send_call(provider, number, outbound)
        await wait_for_slots(host, provider, number, outbound.to)
        started = time.perf_counter()  # the provider call alone: hookline_send_duration_seconds
        result = await send(host, number, outbound)
    except ProviderError as exc:
        if started is not None:
            metrics.send_duration(number.provider, time.perf_counter() - started)
        if exc.retryable:
            metrics.send_transient_error(number.provider, exc.code)
            raise RetryLater(f"{number.provider} {exc.code or ''} {exc.message}".strip(), exc.retry_after) from exc
        await mark_failed(host, message, exc.code, exc.message)
        return
    except Postpone:
        raise
    except Exception:  # a plugin's bug: the job is retried like a transient error
        if started is not None:
            metrics.send_duration(number.provider, time.perf_counter() - started)
        metrics.send_transient_error(number.provider, "exception")
        raise
    assert started is not None
    metrics.send_duration(number.provider, time.perf_counter() - started)
    status = provider.status_map.get(result.raw_status, DeliveryStatus.QUEUED)
    async with in_transaction() as connection:
        await lock_provider_ids(connection, number.provider, [result.external_id])
        await Message.filter(id=message.id).using_db(connection).update(external_id=result.external_id)
        moved = await advance_status(connection, message.id, status)
        event = await StatusEvent.create(
            message_id=message.id, provider=number.provider, external_id=result.external_id,
            raw_status=result.raw_status, status=status, applied=moved, using_db=connection,
        )
        if moved and host.dispatch.listens("on_status_update"):
            await host.queue.enqueue(connection, "status", {"message_id": message.id, "event_id": event.id},
                                     ordering_key=inbound_key(conversation.id))
        await _apply_early_statuses(host, connection, message, number.provider, result.external_id)
        await events.record(connection, [events.message_status(message.id)])
    host.queue.wake()
    host.events.wake()
    metrics.message_sent(number.provider)
    log.info("sent message %s via %s as %s (%s)", message.id, number.provider, result.external_id, result.raw_status)


SendCall = Callable[["Host", Number, OutboundMessage], Awaitable[SendResult]]


def _send_call(provider: Provider, number: Number, outbound: OutboundMessage) -> SendCall:
    """The provider hook for this message; what it cannot send fails before taking a slot."""
    if outbound.template is not None:
        if not provider.implements("provider_send_template"):
            raise ProviderError(f"{number.provider} cannot send templates", code="unsupported")
        return provider.send_template
    if outbound.interactive is not None:
        if not provider.implements("provider_send_interactive"):
            raise ProviderError(f"{number.provider} cannot send interactive messages", code="unsupported")
        return provider.send_interactive
    return provider.send_media if outbound.media is not None else provider.send_text


LATE_WAKE_RETRIES = 3  # then it goes anyway: a process that cannot keep time must still send
LATE_WAKE_MIN_SECONDS = 0.005  # the lateness always tolerated, however short the interval


async def wait_for_slots(host: Host, provider: Provider, number: Number, address: str) -> None:
    """Sleep until this send's rate-limit slots: the recipient's first, where there is a limit per
    recipient, then the number's (core/ratelimit.py). A slot further off than
    `[queue] rate_limit_max_wait_seconds` raises Postpone: the job comes back later, without
    using an attempt, and still ahead of its conversation's later sends.

    Recipient first because its key is only ever taken by this conversation (one job at a time),
    so giving its slot back when the number's is too far off nearly always works; the number's key
    is shared by every sender, where a slot given back is usually already followed by others.
    """
    number_limit, recipient_limit = limits.of_number(provider.rate_limits, number)
    bound = host.settings.queue.rate_limit_max_wait_seconds
    recipient = None
    if recipient_limit is not None:
        recipient = await ratelimit.acquire(limits.recipient_key(number.id, address), recipient_limit, bound)
        if recipient.wait > 0:
            metrics.rate_limit_waited("recipient", recipient.wait)
        if not recipient.granted:
            raise Postpone(recipient.retry_after, f"rate limit per recipient of number {number.id}: next slot in {recipient.wait:.1f}s")
        await asyncio.sleep(recipient.wait)
    for _ in range(LATE_WAKE_RETRIES):
        slot = await ratelimit.acquire(limits.number_key(number.id), number_limit, bound)
        asked = time.monotonic()
        if slot.wait > 0:  # a wait for a slot, slept here or postponed to the queue
            metrics.rate_limit_waited("number", slot.wait)
        if not slot.granted:
            if recipient is not None:
                await ratelimit.refund(recipient)
            raise Postpone(slot.retry_after, f"rate limit of number {number.id}: next slot in {slot.wait:.1f}s")
        await asyncio.sleep(slot.wait)
        late = time.monotonic() - asked - slot.wait
        if late <= max(slot.interval_us / 2_000_000, LATE_WAKE_MIN_SECONDS):
            return
        # Woken well after the slot (a busy loop, a stalled process): sending now would bunch with
        # the sends of later slots at the provider, over the limit in that second. Take a new slot;
        # the missed one is capacity lost, never a burst.
        log.debug("send for %s woke %.3fs after its slot; taking a later one", number.id, late)


async def _apply_early_statuses(host: Host, connection, message: Message, provider: str, external_id: str) -> None:
    """Status webhooks can beat the send's answer; apply the best one kept for this id."""
    early = await StatusEvent.filter(provider=provider, external_id=external_id, message_id=None).using_db(connection).order_by("id")
    for event in early:
        await StatusEvent.filter(id=event.id).using_db(connection).update(message_id=message.id)
        if event.status and await advance_status(connection, message.id, event.status, event.error_code, event.error_text, event.occurred_at):
            await StatusEvent.filter(id=event.id).using_db(connection).update(applied=True)
            if host.dispatch.listens("on_status_update"):
                await host.queue.enqueue(connection, "status", {"message_id": message.id, "event_id": event.id},
                                         ordering_key=inbound_key(message.conversation_id))


async def mark_failed(host: Host, message: Message, code: str | None, text: str) -> None:
    """A permanent failure: the message ends `failed` with the provider's code and reason."""
    async with in_transaction() as connection:
        moved = await advance_status(connection, message.id, DeliveryStatus.FAILED, code, text)
        event = await StatusEvent.create(
            message_id=message.id, provider=message.provider, external_id=message.external_id,
            raw_status="send_failed", status=DeliveryStatus.FAILED, error_code=code, error_text=text,
            applied=moved, using_db=connection,
        )
        if moved:
            if host.dispatch.listens("on_status_update"):
                await host.queue.enqueue(connection, "status", {"message_id": message.id, "event_id": event.id},
                                         ordering_key=inbound_key(message.conversation_id))
            await events.record(connection, [events.message_status(message.id)])
    host.queue.wake()
    host.events.wake()
    if moved:  # once per message, however often a re-run job gets here
        metrics.message_failed(message.provider, code)
    log.warning("message %s failed: %s %s", message.id, code or "", text)
