"""The provider-neutral values that cross the plugin boundary.

Providers turn their wire formats into these; the core stores and dispatches only these. They are
plain dataclasses (no ORM rows) so plugins can build and test them without a database.
"""

from __future__ import annotations

import argparse
import enum
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel
from starlette.datastructures import Headers


class DeliveryStatus(str, enum.Enum):
    """One status vocabulary for every provider; the order of RANK is the only legal direction."""

    RECEIVED = "received"  # inbound messages
    PENDING = "pending"  # stored, not yet accepted by the provider
    QUEUED = "queued"  # accepted by the provider
    SENT = "sent"
    FAILED = "failed"
    DELIVERED = "delivered"
    READ = "read"
    PLAYED = "played"  # voice notes (WPPConnect ack 4)


# A status may only replace one of lower rank. `failed` outranks `sent` (Twilio's `undelivered`
# comes after `sent`) but not `delivered`: a delivery receipt is proof that outlives a late error.
STATUS_RANK: dict[DeliveryStatus, int] = {
    DeliveryStatus.RECEIVED: 0,
    DeliveryStatus.PENDING: 0,
    DeliveryStatus.QUEUED: 1,
    DeliveryStatus.SENT: 2,
    DeliveryStatus.FAILED: 3,
    DeliveryStatus.DELIVERED: 4,
    DeliveryStatus.READ: 5,
    DeliveryStatus.PLAYED: 6,
}


def status_moves_forward(current: DeliveryStatus | str, new: DeliveryStatus | str) -> bool:
    """True when `new` may replace `current` (statuses arrive out of order; never go back)."""
    return STATUS_RANK[DeliveryStatus(new)] > STATUS_RANK[DeliveryStatus(current)]


class Direction(str, enum.Enum):
    INBOUND = "in"
    OUTBOUND = "out"


class Owner(str, enum.Enum):
    HUMAN = "human"
    BOT = "bot"


class ConversationState(str, enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `messages` per `per_seconds`, and `burst` at once after a quiet spell.

    Over any `per_seconds` window that allows `messages + burst` sends at most (core/ratelimit.py).
    """

    messages: float
    per_seconds: float = 1.0
    burst: int = 1

    @property
    def per_second(self) -> float:
        return self.messages / self.per_seconds

    def to_json(self) -> dict[str, float | int]:
        return {"messages": _plain_number(self.messages), "per_seconds": _plain_number(self.per_seconds), "burst": self.burst}


def _plain_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


@dataclass(frozen=True, slots=True)
class ProviderLimits:
    """What a provider declares about sending rates (``provider_rate_limits``).

    `number` is the default limit of each of its numbers and `recipient` the default limit per
    customer of one number (None: none); `max_per_second` is the most a number may be given — a
    configured limit above it is refused at start (None: no cap).
    """

    number: RateLimit
    recipient: RateLimit | None = None
    max_per_second: float | None = None


@dataclass(frozen=True, slots=True)
class Number:
    """A WhatsApp number as configured: its provider and its validated provider settings.

    `rate_limit` and `recipient_rate_limit` are the number's own limits; None means its
    provider's defaults (core/limits.py).
    """

    id: str
    provider: str
    phone: str
    display_name: str | None
    settings: BaseModel
    rate_limit: RateLimit | None = None
    recipient_rate_limit: RateLimit | None = None

    def __repr__(self) -> str:  # settings hold secrets; keep them out of reprs and tracebacks
        return f"Number(id={self.id!r}, provider={self.provider!r}, phone={self.phone!r})"


@dataclass(slots=True)
class Media:
    """A media item: a URL to fetch, a provider media id, bytes in hand, or a file in our store.

    `key` names the file in hookline's media store once it is there; `url` is where the provider
    (inbound) or the world (outbound) can fetch it.
    """

    content_type: str | None = None
    url: str | None = None
    provider_media_id: str | None = None
    filename: str | None = None
    key: str | None = None
    data: bytes | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "content_type": self.content_type,
            "url": self.url,
            "provider_media_id": self.provider_media_id,
            "filename": self.filename,
            "key": self.key,
        }


@dataclass(slots=True)
class ContactInfo:
    """Who wrote. `address` is the channel address (an E.164 phone, or an opaque id like `…@lid`)."""

    address: str
    name: str | None = None
    wa_id: str | None = None


@dataclass(slots=True)
class InboundMessage:
    """One customer message, as a provider parsed it."""

    number_id: str
    external_id: str
    contact: ContactInfo
    kind: str = "text"  # text, image, audio, video, document, sticker, location, button, ...
    text: str | None = None
    media: list[Media] = field(default_factory=list)
    reply_to: str | None = None  # the provider id of the message this one answers
    timestamp: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)  # kind-specific extras (location, button…)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(slots=True)
class StatusUpdate:
    """A provider's word on one of our outbound messages. `raw_status` is mapped by the core."""

    external_id: str
    raw_status: str
    number_id: str | None = None
    error_code: str | None = None
    error_text: str | None = None
    timestamp: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(slots=True)
class ParsedWebhook:
    """What one proven webhook request carried: zero or more messages and statuses."""

    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)


@dataclass(slots=True)
class WebhookRoute:
    """A route a provider contributes below `/webhooks/whatsapp/<provider>`.

    `path` is appended to that prefix ("" for the prefix itself, "/status", "/{number_id}/{secret}").
    """

    path: str = ""
    methods: tuple[str, ...] = ("POST",)
    name: str = "inbound"
    # The provider's own largest body, when it exceeds `[server] max_body_bytes` (Meta: 3 MB
    # batches): refusing those with 413 would only make the provider retry them for days.
    max_body_bytes: int | None = None


@dataclass(slots=True)
class SendResult:
    """The provider accepted a message: its id for the message and the status it reported."""

    external_id: str
    raw_status: str = "queued"


@dataclass(slots=True)
class Template:
    """A pre-approved message, for writing outside WhatsApp's 24-hour window.

    `name` is what the provider knows it by (Twilio: the Content SID `HX…`; Meta: the template
    name); `variables` fill its placeholders (Twilio ContentVariables, Meta body parameters) and
    `components`, when given, go to providers that take them as they are (Meta).
    """

    name: str
    language: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    components: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "language": self.language, "variables": self.variables, "components": self.components}


@dataclass(slots=True)
class Interactive:
    """Reply buttons, or a list of options, that the customer taps; a tap arrives as an inbound
    message (kind ``button`` or ``interactive``) carrying the option's ``id``."""

    body: str
    buttons: list[dict[str, str]] = field(default_factory=list)  # [{"id", "title"}], WhatsApp allows 3
    sections: list[dict[str, Any]] = field(default_factory=list)  # [{"title", "rows": [{"id", "title", "description"?}]}]
    action_label: str | None = None  # the button that opens a list
    header: str | None = None
    footer: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "body": self.body, "buttons": self.buttons, "sections": self.sections,
            "action_label": self.action_label, "header": self.header, "footer": self.footer,
        }


@dataclass(slots=True)
class OutboundMessage:
    """What the worker hands a provider's send hook."""

    id: int
    to: str
    text: str | None = None
    media: Media | None = None
    template: Template | None = None
    interactive: Interactive | None = None
    reply_to: str | None = None  # the provider id of the message this one answers
    status_callback_url: str | None = None


@dataclass(frozen=True, slots=True)
class Command:
    """A ``hookline <name>`` subcommand a plugin contributes (see ``register_commands``).

    ``run`` is awaited with storage open and returns the exit status.
    """

    name: str
    help: str
    run: Callable[[Any, argparse.Namespace], Awaitable[int]]
    configure: Callable[[argparse.ArgumentParser], None] | None = None


@dataclass(slots=True)
class SimulatedWebhook:
    """A correctly proven request a provider builds for `hookline simulate`."""

    path: str
    body: bytes
    headers: dict[str, str]
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class PairingCode:
    """What a number paired by scanning (WPPConnect) shows now: the QR code as PNG, or why none."""

    png: bytes | None
    reason: str | None = None


@dataclass  # not slots: `form` and `query` are parsed once and cached on the instance
class WebhookRequest:
    """The raw request as the core read it, once. Providers verify and parse from this."""

    method: str
    route: str  # the WebhookRoute.name that matched
    path: str
    query_string: str
    public_url: str  # what the provider called: server.public_url + path + query as sent
    headers: Headers
    body: bytes
    path_params: dict[str, str] = field(default_factory=dict)

    @cached_property
    def form(self) -> dict[str, list[str]]:
        """The url-encoded body; every value kept, order of names as sent."""
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)

    @cached_property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.query_string, keep_blank_values=True)

    def json(self) -> Any:
        return json.loads(self.body)


class HooklineError(Exception):
    """Base for errors the core turns into clear answers."""


class MalformedWebhook(HooklineError):
    """The request was proven but cannot be understood: answered 400, nothing stored."""


class UnknownNumber(HooklineError):
    """The request names no number we have: answered 404, nothing stored."""


class ProviderError(HooklineError):
    """A provider refused or failed a call.

    `retryable` errors are tried again with backoff (or after `retry_after` seconds); the others
    mark the message `failed` with `code` and `message`.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after
