"""Settings of a number paired through a self-hosted WPPConnect Server, and of the plugin."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class WppconnectNumberSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    server_url: str = Field(default="http://127.0.0.1:21465", pattern=r"^https?://")
    session: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    secret_key: SecretStr | None = Field(default=None, description="The server's SECRET_KEY, to generate a token")
    token: SecretStr | None = Field(default=None, description="A ready bearer token, instead of secret_key")
    webhook_secret: SecretStr | None = Field(default=None, description="Derived from hookline's secret key when absent")
    ignore_groups: bool = True

    @model_validator(mode="after")
    def _has_credentials(self) -> "WppconnectNumberSettings":
        if self.secret_key is None and self.token is None:
            raise ValueError("set secret_key or token")
        return self


class WppconnectSettings(BaseModel):
    """``[plugins.wppconnect]``: what the server does with the sessions while it runs."""

    model_config = ConfigDict(extra="forbid")

    start_sessions: bool = Field(
        default=True,
        description="At start, ask WPPConnect to start every number's session with hookline's webhook URL",
    )
    status_interval_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How often to read each session's status (WPPConnect never retries a lost webhook); 0: never",
    )
