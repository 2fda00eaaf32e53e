"""hookline's core: the host that loads provider and workflow plugins.

Plugins import what they need from here: ``from core import hookimpl``.
"""

from core.hookspecs import hookimpl
from core.types import (
    Command,
    ContactInfo,
    Interactive,
    DeliveryStatus,
    InboundMessage,
    MalformedWebhook,
    Media,
    Number,
    OutboundMessage,
    PairingCode,
    ParsedWebhook,
    ProviderError,
    ProviderLimits,
    RateLimit,
    SendResult,
    SimulatedWebhook,
    StatusUpdate,
    Template,
    WebhookRequest,
    WebhookRoute,
)

__all__ = [
    "Command",
    "ContactInfo",
    "Interactive",
    "DeliveryStatus",
    "InboundMessage",
    "MalformedWebhook",
    "Media",
    "Number",
    "OutboundMessage",
    "PairingCode",
    "ParsedWebhook",
    "ProviderError",
    "ProviderLimits",
    "RateLimit",
    "SendResult",
    "SimulatedWebhook",
    "StatusUpdate",
    "Template",
    "WebhookRequest",
    "WebhookRoute",
    "hookimpl",
]
