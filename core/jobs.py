"""What each kind of queued job does."""

from __future__ import annotations

import logging
from typing import Any

from core.host import Host
from core.sending import deliver, mark_failed
from core.storage.models import Conversation, Message, StatusEvent
from core.types import Media, ProviderError
from core.worker import DeadHandler, JobHandler, RetryLater

log = logging.getLogger("hookline.jobs")


def job_handlers(host: Host) -> dict[str, JobHandler]:
    async def inbound(payload: dict[str, Any]) -> None:
        message = await Message.get_or_none(id=payload["message_id"]).prefetch_related("conversation")
        if message is None:
            return
        await fetch_inbound_media(host, message)
        await _notify_inbound(host, message)

    async def status(payload: dict[str, Any]) -> None:
        message = await Message.get_or_none(id=payload["message_id"])
        event = await StatusEvent.get_or_none(id=payload["event_id"])
        if message is not None and event is not None:
            await host.dispatch.notify("on_status_update", host=host, message=message, event=event)

    async def send(payload: dict[str, Any]) -> None:
        await deliver(host, payload["message_id"])

    async def transferred(payload: dict[str, Any]) -> None:
        conversation = await Conversation.get_or_none(id=payload["conversation_id"])
        if conversation is not None:
            await host.dispatch.notify(
                "on_conversation_transferred", host=host, conversation=conversation, to=payload["to"],
                reason=payload["reason"], by=payload["by"], transfer_id=payload["transfer_id"],
            )

    async def timer(payload: dict[str, Any]) -> None:
        conversation_id = payload["conversation_id"]
        conversation = await Conversation.get_or_none(id=conversation_id) if conversation_id else None
        if conversation_id and conversation is None:
            return
        await host.dispatch.notify_plugin(
            payload["plugin"], "on_timer", host=host, conversation=conversation, name=payload["name"], payload=payload["payload"]
        )

    return {"inbound": inbound, "status": status, "send": send, "transferred": transferred, "timer": timer}


def dead_handlers(host: Host) -> dict[str, DeadHandler]:
    async def send_gave_up(payload: dict[str, Any], reason: str) -> None:
        message = await Message.get_or_none(id=payload["message_id"])
        if message is not None:
            await mark_failed(host, message, "retries_exhausted", f"gave up after repeated transient errors: {reason}")

    async def inbound_gave_up(payload: dict[str, Any], reason: str) -> None:
        """Media could not be fetched in time: workflows still hear of the message."""
        message = await Message.get_or_none(id=payload["message_id"]).prefetch_related("conversation")
        if message is not None:
            await _notify_inbound(host, message)

    return {"send": send_gave_up, "inbound": inbound_gave_up}


async def _notify_inbound(host: Host, message: Message) -> None:
    await host.dispatch.notify("on_inbound_message", host=host, message=message, conversation=message.conversation)


async def fetch_inbound_media(host: Host, message: Message) -> None:
    """Copy the message's media into the media store, through its provider, before workflows run."""
    missing = [item for item in message.media if not item.get("key") and not item.get("error") and (item.get("url") or item.get("provider_media_id"))]
    if not missing:
        return
    provider = host.dispatch.provider(message.provider)
    if not provider.implements("provider_download_media"):
        return
    number = host.number(message.conversation.number_id)
    limit = host.settings.media.max_bytes
    for item in missing:
        media = Media(**{name: item.get(name) for name in ("content_type", "url", "provider_media_id", "filename", "key")})
        try:
            data, content_type = await provider.download_media(host, number, media)
        except ProviderError as exc:
            if exc.retryable:
                raise RetryLater(f"media download: {exc.message}", exc.retry_after) from exc
            item["error"] = exc.message
            log.warning("message %s: media not fetched: %s", message.id, exc.message)
            continue
        if len(data) > limit:
            item["error"] = f"media over the {limit}-byte limit"
            continue
        item["content_type"] = content_type or item.get("content_type")
        item["key"] = host.media.save(data, item["content_type"], item.get("filename"))
    await Message.filter(id=message.id).update(media=message.media)
