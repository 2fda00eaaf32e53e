"""WPPConnect Server provider."""

from __future__ import annotations

from core import hookimpl
from plugins.wppconnect.schema import WppconnectNumberSettings


@hookimpl
def provider_number_settings_model() -> type[WppconnectNumberSettings]:
    return WppconnectNumberSettings
