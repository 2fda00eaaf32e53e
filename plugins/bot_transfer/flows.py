"""Bot flows while the bot owns a conversation: keywords and regexes, numbered menus, a fallback,
a keyword that hands over to a human, and an inactivity timeout that closes with the farewell.

The decision (`decide`) is a pure function of the settings, the current menu and the text; the
rest queues the reply with ``dedupe_key=f"reply:{message.id}"`` and saves the state, so a job run
again after a crash answers once. Replies are sent as ``sender="bot"``: the core drops them if a
human takes the conversation before they go out.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.storage.models import Conversation, Message
from core.types import ConversationState, Direction, Owner
from plugins.bot_transfer.common import (
    PLUGIN, context, last_inbound_id, log, schedule_inactivity, settings_of, templates_of, update_state,
)
from plugins.bot_transfer.schema import Action, BotTransferSettings

if TYPE_CHECKING:
    from core.host import Host

_CHOICE = re.compile(r"^\s*(\d{1,2})\s*[.)]?\s*$")


def normalize(text: str) -> str:
    """Lower case, no accents, words separated by single spaces: "¡Menú!" → "menu"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(character for character in decomposed if not unicodedata.combining(character))
    return " ".join(re.findall(r"\w+", plain))


def _has_words(normalized: str, phrase: str) -> bool:
    wanted = normalize(phrase)
    return bool(wanted) and f" {wanted} " in f" {normalized} "


@dataclass(frozen=True)
class Decision:
    action: Action
    why: str  # for the log and the transfer reason


def decide(settings: BotTransferSettings, menu: str | None, text: str) -> Decision | None:
    """What to do with a customer's text. Order: the handoff keywords (a person is always one
    word away), an answer to the current menu (its number or its label), the rules in order, the
    fallback. None: nothing matched and there is no fallback."""
    normalized = normalize(text)
    for keyword in settings.handoff_keywords:
        if _has_words(normalized, keyword):
            return Decision(Action(handoff=True), f"the customer asked for a person ({keyword!r})")
    current = settings.menus.get(menu) if menu else None
    if current is not None:
        chosen = _CHOICE.match(text)
        for number, option in enumerate(current.options, start=1):
            if (chosen and int(chosen.group(1)) == number) or (normalized and normalized == normalize(option.label)):
                return Decision(option, f"menu {menu!r} option {number}")
    for index, rule in enumerate(settings.rules):
        if any(_has_words(normalized, keyword) for keyword in rule.keywords) or (rule.regex and re.search(rule.regex, text)):
            return Decision(rule, f"rule {index}")
    if settings.fallback is not None:
        return Decision(settings.fallback, "fallback")
    return None


async def on_inbound(host: Host, message: Message, conversation: Conversation) -> None:
    """Answer a customer message written while the bot has the conversation.

    Two checks: the bot's session had begun when the message was stored (`active`, set by the
    transfer's notification, which comes in order with the messages), and the bot still owns the
    conversation now (read again: a person may have taken it since)."""
    if conversation.owner is not Owner.BOT or message.direction != Direction.INBOUND:
        return  # read when this job began: a transfer to the bot since then is notified after it
    conversation = await Conversation.get(id=conversation.id)
    if conversation.owner is not Owner.BOT:
        return
    state = await host.plugin_state(conversation, PLUGIN)
    if not state.get("active"):
        return  # written before the bot's session began (its transfer is notified after this message)
    if state.get("last_handled", 0) >= message.id:
        return  # answered already: this is the same job run again
    settings = settings_of(host)
    decision = decide(settings, state.get("menu"), message.text or "")
    if decision is None:
        decision = Decision(Action(handoff=True), "the bot has no answer for this message")
    values = await context(host, conversation, state, message={"id": message.id, "text": message.text or "", "kind": message.kind})
    action = decision.action
    if action.handoff:
        await _hand_over(host, conversation, message, decision, values)
        return
    menu = state.get("menu")
    try:
        templates = templates_of(host)
        parts = [templates.inline(action.reply, values)] if action.reply else []
        if action.menu:
            menu = action.menu
            parts.append(templates.render_menu(settings.menus[menu], values))
    except Exception as exc:  # a template error (an undefined value…): a person answers instead of silence
        log.exception("conversation %s: the bot's reply to message %s could not be rendered", conversation.id, message.id)
        failed = Decision(Action(handoff=True), f"the bot's reply could not be rendered ({decision.why}): {type(exc).__name__}: {exc}")
        await _hand_over(host, conversation, message, failed, values)
        return
    text = "\n\n".join(part for part in parts if part)
    if text:
        await host.send_text(conversation, text, sender="bot", dedupe_key=f"reply:{message.id}")
    await update_state(host, conversation.id, menu=menu, last_handled=message.id)
    await schedule_inactivity(host, conversation, state.get("transfer_id", ""), after=message.id)
    log.info("conversation %s: message %s answered by the bot (%s)", conversation.id, message.id, decision.why)


async def _hand_over(host: Host, conversation: Conversation, message: Message, decision: Decision,
                     values: dict[str, Any]) -> None:
    """Tell the customer, then give the conversation to a human (the agents hear of it through
    `on_conversation_transferred(to="human", by="bot")`). The notice is queued before the transfer
    and without sender="bot": it must go out although a human owns the conversation from now on."""
    settings = settings_of(host)
    source = decision.action.reply or settings.handoff_reply
    try:
        text = templates_of(host).inline(source, values) if source else ""
    except Exception:
        log.exception("conversation %s: the handoff notice could not be rendered; handing over without it", conversation.id)
        text = ""
    if text:
        await host.send_text(conversation, text, dedupe_key=f"reply:{message.id}")
    await host.transfer(conversation, "human", reason=f"bot_transfer: {decision.why}"[:500], by="bot")
    await update_state(host, conversation.id, active=False, menu=None, last_handled=message.id)
    log.info("conversation %s: handed to a human (%s)", conversation.id, decision.why)


async def on_inactivity(host: Host, conversation: Conversation, payload: dict[str, Any]) -> None:
    """The inactivity timer: if the customer said nothing since the bot's turn, say goodbye and close."""
    conversation = await Conversation.get(id=conversation.id)
    if conversation.owner is not Owner.BOT or conversation.state is ConversationState.CLOSED:
        return
    state = await host.plugin_state(conversation, PLUGIN)
    transfer_id = payload.get("transfer_id", "")
    after = int(payload.get("after", 0))
    if not state.get("active") or state.get("transfer_id", "") != transfer_id or await last_inbound_id(conversation.id) != after:
        return  # another bot session, or the customer wrote since: a later timer decides
    try:
        text = templates_of(host).render_farewell(await context(host, conversation, state, reason="inactivity"))
    except Exception:  # retrying would not help: close all the same, without the farewell
        log.exception("conversation %s: the inactivity farewell could not be rendered; closing without it", conversation.id)
        text = ""
    if text:
        await host.send_text(conversation, text, sender="bot", dedupe_key=f"{transfer_id}:inactivity:{after}")
    await host.close_conversation(conversation)
    await update_state(host, conversation.id, menu=None)
    log.info("conversation %s: closed by the bot after %ss without a message", conversation.id, settings_of(host).inactivity_seconds)
