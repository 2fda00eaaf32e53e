"""Meta WhatsApp Cloud API provider."""

from __future__ import annotations

from core import hookimpl
from plugins.meta.schema import MetaNumberSettings


@hookimpl
def provider_number_settings_model() -> type[MetaNumberSettings]:
    return MetaNumberSettings
