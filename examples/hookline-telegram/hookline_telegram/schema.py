"""Settings of a Telegram bot as a hookline number, and of the plugin (``[plugins.telegram]``)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

BOT_TOKEN = re.compile(r"^[0-9]{3,20}:[A-Za-z0-9_-]{20,100}$")
WEBHOOK_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # what setWebhook accepts as secret_token


class TelegramNumberSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bot_token: SecretStr = Field(description="The token @BotFather gave the bot (123456789:AA…)")
    webhook_secret: SecretStr = Field(
        description="Telegram sends it back in X-Telegram-Bot-Api-Secret-Token: 1–256 of A–Z, a–z, 0–9, _ and -"
    )
    api_base_url: str = Field(default="https://api.telegram.org", pattern=r"^https?://", description="Stand-in API host for tests")

    @field_validator("bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        if not BOT_TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError("not a bot token: expected the digits of the bot id, ':' and the secret part (@BotFather's /token)")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr) -> SecretStr:
        if not WEBHOOK_SECRET.fullmatch(value.get_secret_value()):
            raise ValueError("1 to 256 characters, only A-Z, a-z, 0-9, _ and - (what Telegram's setWebhook accepts)")
        return value

    @property
    def bot_id(self) -> str:
        """The bot's own id: the part of the token before the colon (not secret)."""
        return self.bot_token.get_secret_value().split(":", 1)[0]


class TelegramSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    set_webhook: bool = Field(
        default=True,
        description="At start, point every bot's webhook at hookline (setWebhook, with its secret); needs an https public_url",
    )
