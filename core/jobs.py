"""What each kind of queued job does."""

from __future__ import annotations

from typing import Any

from core.host import Host
from core.sending import deliver, mark_failed
from core.storage.models import Message, StatusEvent
from core.worker import DeadHandler, JobHandler


def job_handlers(host: Host) -> dict[str, JobHandler]:
    async def inbound(payload: dict[str, Any]) -> None:
        message = await Message.get_or_none(id=payload["message_id"]).prefetch_related("conversation")
        if message is not None:
            await host.dispatch.notify("on_inbound_message", host=host, message=message, conversation=message.conversation)

    async def status(payload: dict[str, Any]) -> None:
        message = await Message.get_or_none(id=payload["message_id"])
        event = await StatusEvent.get_or_none(id=payload["event_id"])
        if message is not None and event is not None:
            await host.dispatch.notify("on_status_update", host=host, message=message, event=event)

    async def send(payload: dict[str, Any]) -> None:
        await deliver(host, payload["message_id"])

    return {"inbound": inbound, "status": status, "send": send}


def dead_handlers(host: Host) -> dict[str, DeadHandler]:
    async def send_gave_up(payload: dict[str, Any], reason: str) -> None:
        message = await Message.get_or_none(id=payload["message_id"])
        if message is not None:
            await mark_failed(host, message, "retries_exhausted", f"gave up after repeated transient errors: {reason}")

    return {"send": send_gave_up}
