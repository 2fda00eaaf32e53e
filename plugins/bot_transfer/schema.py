"""Settings of the bot_transfer workflow (`[plugins.bot_transfer]`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class BotTransferSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pdf_template: str | None = None  # a Jinja2 template path; the default is a conversation summary
    farewell_template: str | None = None
    after: Literal["bot", "close"] = "bot"
