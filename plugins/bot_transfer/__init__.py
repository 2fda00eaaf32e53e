"""Hand a conversation to the bot: send a PDF and a farewell, run bot flows, hand back.

On a transfer to the bot (``host.transfer(conversation, "bot")`` or ``hookline transfer ID --to
bot``) a PDF rendered from a Jinja2 template goes out as a document through the conversation's
own provider; once the provider accepted it, a farewell rendered from a template follows. Then
the conversation stays with the bot, which answers with the flows of ``[plugins.bot_transfer]``,
or is closed. Each hook delegates: ``handover`` (PDF and farewell), ``flows`` (replies, menus,
handoff, inactivity), ``templating`` and ``pdf``. Guide: docs/workflows/bot_transfer.md.
"""

from __future__ import annotations

from core import hookimpl
from plugins.bot_transfer import flows, handover
from plugins.bot_transfer.common import log, templates_of
from plugins.bot_transfer.schema import BotTransferSettings

PLUGIN_NAME = "bot_transfer"


@hookimpl
def plugin_settings_model() -> type[BotTransferSettings]:
    return BotTransferSettings


@hookimpl
async def on_startup(host) -> None:
    """Read and compile the templates now, so a missing file or a syntax error shows at start."""
    try:
        templates_of(host)
    except Exception as exc:
        log.error("bot_transfer: the templates cannot be used (%s: %s); transfers to the bot will be "
                  "handed back to a human until this is fixed", type(exc).__name__, exc)


@hookimpl
async def on_conversation_transferred(host, conversation, to: str, reason, by, transfer_id: str) -> None:
    if to == "bot":
        await handover.start(host, conversation.id, transfer_id, reason, by)
    else:
        await handover.stop(host, conversation.id)


@hookimpl
async def on_status_update(host, message, event) -> None:
    await handover.on_status(host, message, event.status, " ".join(filter(None, (event.error_code, event.error_text))) or None)


@hookimpl
async def on_inbound_message(host, message, conversation) -> None:
    await flows.on_inbound(host, message, conversation)


@hookimpl
async def on_timer(host, conversation, name: str, payload: dict) -> None:
    if conversation is None:
        return
    if name == "handover":
        await handover.check(host, conversation, payload)
    elif name == "inactivity":
        await flows.on_inactivity(host, conversation, payload)
