"""Hand a conversation to the bot: send a PDF and a farewell."""

from __future__ import annotations

from core import hookimpl
from plugins.bot_transfer.schema import BotTransferSettings


@hookimpl
def plugin_settings_model() -> type[BotTransferSettings]:
    return BotTransferSettings
