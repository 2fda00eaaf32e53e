"""Twilio WhatsApp provider."""

from __future__ import annotations

from core import hookimpl
from plugins.twilio.schema import TwilioNumberSettings


@hookimpl
def provider_number_settings_model() -> type[TwilioNumberSettings]:
    return TwilioNumberSettings
