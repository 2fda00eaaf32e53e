"""Out-of-hours auto-reply: a workflow plugin in one module.

When a customer writes while the team is closed, answer once: "we're closed, we answer from 9:00".
Once per conversation per closed period — the dedupe key names the period (when it began), so a
customer who writes five times on Saturday gets one answer, a retried job sends nothing twice,
and the next closing time starts a new period. The time that counts is when the customer wrote
(`message.sent_at`, the provider's timestamp), not when the queue got to it.

Enable it (PYTHONPATH must reach this file):

    [plugins]
    modules = ["out_of_hours"]
    enabled = ["twilio", "out_of_hours"]

    [plugins.out_of_hours]
    timezone = "America/Mexico_City"
    opens = "09:00"
    closes = "18:00"
    days = ["mon", "tue", "wed", "thu", "fri"]
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core import hookimpl

PLUGIN_NAME = "out_of_hours"
__version__ = "1.0.0"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class OutOfHoursSettings(BaseModel):
    """``[plugins.out_of_hours]``: opening hours, in one timezone."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = Field(default="UTC", description="An IANA timezone name, e.g. America/Mexico_City")
    opens: time = time(9, 0)
    closes: time = time(18, 0)
    days: list[str] = Field(default_factory=lambda: list(DAYS[:5]), description="Open days: mon … sun")
    reply: str = "Thanks for writing! We're closed now and answer from {opens} to {closes} ({timezone})."

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r} (an IANA name such as Europe/Madrid)") from None
        return value

    @field_validator("days")
    @classmethod
    def _known_days(cls, value: list[str]) -> list[str]:
        unknown = [day for day in value if day not in DAYS]
        if unknown:
            raise ValueError(f"unknown day(s) {unknown}: use {', '.join(DAYS)}")
        return value

    @model_validator(mode="after")
    def _opens_before_closing(self) -> OutOfHoursSettings:
        if self.opens >= self.closes:
            raise ValueError("opens must be earlier than closes (the same day)")
        return self


def closed_since(settings: OutOfHoursSettings, moment: datetime) -> datetime | None:
    """When the closed period `moment` falls in began (the last closing time before it), or None
    while open. A week without open days is one endless period."""
    zone = ZoneInfo(settings.timezone)
    local = moment.astimezone(zone)
    open_days = {DAYS.index(day) for day in settings.days}
    if local.weekday() in open_days and settings.opens <= local.time() < settings.closes:
        return None
    for back in range(8):
        day = local.date() - timedelta(days=back)
        closing = datetime.combine(day, settings.closes, zone)
        if day.weekday() in open_days and closing <= local:
            return closing
    return datetime.min.replace(tzinfo=UTC)


@hookimpl
def plugin_settings_model() -> type[OutOfHoursSettings]:
    return OutOfHoursSettings


@hookimpl
async def on_inbound_message(host: Any, message: Any, conversation: Any) -> None:
    """Answer a customer who writes while a human team is closed; once per closed period."""
    if conversation.owner.value != "human":
        return  # the bot answers at any hour
    settings = host.plugin_settings(PLUGIN_NAME) or OutOfHoursSettings()
    since = closed_since(settings, message.sent_at or message.created_at)
    if since is None:
        return
    reply = (settings.reply.replace("{opens}", settings.opens.strftime("%H:%M"))
             .replace("{closes}", settings.closes.strftime("%H:%M")).replace("{timezone}", settings.timezone))
    await host.send_text(conversation, reply, dedupe_key=f"{PLUGIN_NAME}:{since.isoformat()}")
