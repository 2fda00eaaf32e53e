"""What the handover and the flows share: settings, templates, per-conversation state, timers.

The state of a conversation (`host.plugin_state(conversation, "bot_transfer")`) is one dict:

* ``transfer_id`` — the bot's current session (the handover that gave it the conversation), and
  ``transfer`` — its id, reason and who did it, for templates;
* ``phase`` — ``pdf`` (PDF queued, farewell not yet), ``done``, ``failed`` or ``abandoned``;
* ``active`` — the bot's session is on: set when the transfer to the bot is notified, cleared when
  a transfer to a human is (both come in order with the messages, so a message written before the
  transfer is never answered by the bot);
* ``menu`` — the menu the customer is answering, if any;
* ``last_handled`` — the id of the last customer message the flows answered (a re-run job skips it);
* ``variables`` — per-conversation template values another plugin may store before a transfer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from core.storage.models import Conversation, Message
from core.types import DeliveryStatus, Direction
from plugins.bot_transfer.schema import BotTransferSettings
from plugins.bot_transfer.templating import Templates, context_for, templates_for

if TYPE_CHECKING:
    from core.host import Host

PLUGIN = "bot_transfer"
#: The provider took the message: the farewell may follow the PDF.
ACCEPTED = frozenset({DeliveryStatus.QUEUED, DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.READ, DeliveryStatus.PLAYED})

log = logging.getLogger("hookline.bot_transfer")


def settings_of(host: Host) -> BotTransferSettings:
    settings = host.plugin_settings(PLUGIN)
    return settings if settings is not None else BotTransferSettings()


def templates_of(host: Host) -> Templates:
    return templates_for(settings_of(host), host.settings.path.resolve().parent)


async def update_state(host: Host, conversation_id: int, **changes: Any) -> dict[str, Any]:
    """Read the state fresh, change some keys, save it. Returns the new state."""
    state = await host.plugin_state(conversation_id, PLUGIN)
    state.update(changes)
    await host.set_plugin_state(conversation_id, PLUGIN, state)
    return state


async def context(host: Host, conversation: Conversation, state: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The template values (templating.context_for), with the bot session's handover as `transfer`."""
    transfer = state.get("transfer") or {"id": state.get("transfer_id"), "reason": None, "by": None}
    return await context_for(conversation, host.number(conversation.number_id), settings_of(host), state,
                             transfer=transfer, **extra)


async def last_inbound_id(conversation_id: int) -> int:
    last = await Message.filter(conversation_id=conversation_id, direction=Direction.INBOUND).order_by("-id").first()
    return last.id if last else 0


async def schedule_inactivity(host: Host, conversation: Conversation, transfer_id: str, after: int | None = None) -> None:
    """After a bot turn (answering customer message `after`, or the farewell): close with the
    farewell if the customer writes nothing newer for a while."""
    seconds = settings_of(host).inactivity_seconds
    if seconds:
        if after is None:
            after = await last_inbound_id(conversation.id)
        await host.schedule(PLUGIN, "inactivity", seconds, conversation=conversation,
                            payload={"transfer_id": transfer_id, "after": after})
