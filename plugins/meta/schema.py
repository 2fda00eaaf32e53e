"""Settings of a number on Meta's WhatsApp Cloud API, and of the plugin (``[plugins.meta]``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class MetaNumberSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone_number_id: str = Field(pattern=r"^[0-9]+$")
    waba_id: str | None = Field(default=None, pattern=r"^[0-9]+$")
    access_token: SecretStr = Field(min_length=1)
    app_secret: SecretStr = Field(min_length=1, description="Signs webhooks (X-Hub-Signature-256)")
    verify_token: SecretStr = Field(min_length=1, description="Answers the GET verification handshake")
    graph_api_version: str = Field(default="v23.0", pattern=r"^v[0-9]+\.[0-9]+$")
    api_base_url: str = "https://graph.facebook.com"


class MetaPluginSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mark_read: bool = Field(default=True, description="Mark each inbound message as read (blue ticks) once it is stored")
