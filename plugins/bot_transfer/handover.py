"""A conversation handed to the bot: the PDF, then — once the provider took it — the farewell.

Each step is safe to run again (the queue is at-least-once): sends carry
``dedupe_key=f"{transfer_id}:pdf"`` / ``f"{transfer_id}:farewell"``, and the state's ``phase``
says how far this handover got. If the PDF cannot be made or the provider refuses it, no farewell
goes out and the conversation goes back to a human, with the reason. A timer checks the handover
after a while, in case the status notification was lost (a plugin error is not retried).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from core import Media
from core.storage.models import Conversation, Message
from core.types import DeliveryStatus, Owner
from plugins.bot_transfer.common import (
    ACCEPTED, PLUGIN, context, log, schedule_inactivity, settings_of, templates_of, update_state,
)
from plugins.bot_transfer.pdf import render_pdf

if TYPE_CHECKING:
    from core.host import Host

CHECK_SECONDS = 60.0  # the safety net: look at the PDF's status this long after queueing it


def pdf_key(transfer_id: str) -> str:
    return f"{transfer_id}:pdf"


def farewell_key(transfer_id: str) -> str:
    return f"{transfer_id}:farewell"


async def start(host: Host, conversation_id: int, transfer_id: str, reason: str | None, by: str | None) -> None:
    """`on_conversation_transferred(to="bot")`: make the PDF and queue it."""
    conversation = await Conversation.get(id=conversation_id)
    if conversation.owner is not Owner.BOT:
        log.info("conversation %s: handover %s skipped, a human has it again", conversation_id, transfer_id)
        return
    state = await host.plugin_state(conversation, PLUGIN)
    if state.get("transfer_id") != transfer_id:  # a new bot session; per-conversation variables stay
        state = {"transfer_id": transfer_id, "transfer": {"id": transfer_id, "reason": reason, "by": by},
                 "phase": "pdf", "active": True, "menu": None,
                 "variables": state.get("variables") or {}, "last_handled": state.get("last_handled", 0)}
        await host.set_plugin_state(conversation, PLUGIN, state)
    if state.get("phase") != "pdf":
        return  # this handover went further already (a notification delivered again)
    if not await Message.filter(conversation_id=conversation.id, dedupe_key=pdf_key(transfer_id)).exists():
        try:
            values = await context(host, conversation, state, transcript=True, reason="transfer")
            key, filename, caption = await asyncio.to_thread(_make_pdf, host, values)
        except Exception as exc:  # a template or layout error: a human follows up instead
            log.exception("conversation %s: the PDF for handover %s could not be made", conversation_id, transfer_id)
            await fail(host, conversation_id, transfer_id, f"the PDF could not be made: {type(exc).__name__}: {exc}")
            return
        await host.send_media(
            conversation, Media(content_type="application/pdf", key=key, filename=filename), caption,
            sender="bot", dedupe_key=pdf_key(transfer_id),
        )
    await host.schedule(PLUGIN, "handover", CHECK_SECONDS, conversation=conversation, payload={"transfer_id": transfer_id})


def _make_pdf(host: Host, values: dict[str, Any]) -> tuple[str, str, str | None]:
    """In a thread: render the template, lay out the PDF, store it. Returns (media key, filename, caption)."""
    rendered = templates_of(host).render_pdf(values)
    data = render_pdf(rendered.html, title=rendered.title, base_dir=rendered.base_dir)
    return host.media.save(data, "application/pdf", rendered.filename), rendered.filename, rendered.caption


async def stop(host: Host, conversation_id: int) -> None:
    """`on_conversation_transferred(to="human")`: the bot's session is over; messages after this
    point in the conversation are for the person."""
    state = await host.plugin_state(conversation_id, PLUGIN)
    if state.get("active"):
        await update_state(host, conversation_id, active=False, menu=None)


async def on_status(host: Host, message: Message, status: DeliveryStatus, error: str | None) -> None:
    """`on_status_update`: the PDF of a handover was accepted (farewell) or refused (a human)."""
    key = message.dedupe_key or ""
    if message.sender != Owner.BOT.value or not key.endswith(":pdf"):
        return
    transfer_id = key.removesuffix(":pdf")
    if status in ACCEPTED:
        await finish(host, message.conversation_id, transfer_id)
    elif status is DeliveryStatus.FAILED:
        # Refused before it was accepted (no farewell), or accepted and then not delivered (the
        # farewell went out, the document did not reach the customer): either way, a human follows up.
        await fail(host, message.conversation_id, transfer_id, f"the PDF was not delivered: {error or 'no reason given'}",
                   after_farewell=True)


async def finish(host: Host, conversation_id: int, transfer_id: str) -> None:
    """The PDF was accepted: queue the farewell, then close or keep the conversation with the bot."""
    conversation = await Conversation.get(id=conversation_id)
    state = await host.plugin_state(conversation, PLUGIN)
    if state.get("transfer_id") != transfer_id or state.get("phase") != "pdf":
        return
    if conversation.owner is not Owner.BOT:
        await update_state(host, conversation_id, phase="abandoned")
        log.info("conversation %s: no farewell for handover %s, a human took it back", conversation_id, transfer_id)
        return
    try:
        text = templates_of(host).render_farewell(await context(host, conversation, state, reason="transfer"))
    except Exception as exc:
        log.exception("conversation %s: the farewell for handover %s could not be rendered", conversation_id, transfer_id)
        await fail(host, conversation_id, transfer_id, f"the farewell could not be rendered: {type(exc).__name__}: {exc}")
        return
    if text:
        await host.send_text(conversation, text, sender="bot", dedupe_key=farewell_key(transfer_id))
    if settings_of(host).after == "close":
        await host.close_conversation(conversation)
    else:
        await schedule_inactivity(host, conversation, transfer_id)
    await update_state(host, conversation_id, phase="done")
    log.info("conversation %s: handover %s done (PDF and farewell)", conversation_id, transfer_id)


async def fail(host: Host, conversation_id: int, transfer_id: str, why: str, *, after_farewell: bool = False) -> None:
    """No farewell (or a PDF lost after it): log it and hand the conversation back to a human."""
    state = await host.plugin_state(conversation_id, PLUGIN)
    phases = ("pdf", "done") if after_farewell else ("pdf",)
    if state.get("transfer_id") != transfer_id or state.get("phase") not in phases:
        return
    log.warning("conversation %s: handover %s failed (%s); handing it back to a human", conversation_id, transfer_id, why)
    await host.transfer(conversation_id, "human", reason=f"bot_transfer: {why}"[:500], by="bot")
    await update_state(host, conversation_id, phase="failed", active=False, menu=None)


async def check(host: Host, conversation: Conversation, payload: dict[str, Any]) -> None:
    """The safety-net timer: finish or fail a handover whose status notification never came."""
    transfer_id = payload.get("transfer_id", "")
    state = await host.plugin_state(conversation, PLUGIN)
    if state.get("transfer_id") != transfer_id or state.get("phase") != "pdf":
        return
    pdf = await Message.get_or_none(conversation_id=conversation.id, dedupe_key=pdf_key(transfer_id))
    if pdf is None:
        await fail(host, conversation.id, transfer_id, "the PDF was never queued")
    elif pdf.status in ACCEPTED:
        await finish(host, conversation.id, transfer_id)
    elif pdf.status is DeliveryStatus.FAILED:
        await fail(host, conversation.id, transfer_id, f"the provider did not take the PDF: {pdf.error_code} {pdf.error_text}")
    else:  # still on its way (the provider is retrying): look again later
        await host.schedule(PLUGIN, "handover", CHECK_SECONDS, conversation=conversation, payload=payload)
