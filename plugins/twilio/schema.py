"""Settings of a Twilio number."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class TwilioNumberSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$", description="The account (or sub-account) that owns the number")
    auth_token: SecretStr = Field(min_length=1, description="That account's Auth Token: signs webhooks and authenticates sends")
    messaging_service_sid: str | None = Field(default=None, pattern=r"^MG[0-9a-fA-F]{32}$")
    api_base_url: str = Field(default="https://api.twilio.com", description="Stand-in API host for tests and simulators")
