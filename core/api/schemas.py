"""What the API answers, as pydantic models: for the OpenAPI document (core/api/openapi.py) and for
the tests that validate real answers against it. The handlers never use them — they build their
JSON in core/api/views.py — so these must follow the views, and tests/test_openapi.py fails when
they do not (every field is required unless the view may leave it out, and no other field is
allowed).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from core.types import ConversationState, DeliveryStatus, Direction, Owner


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def absent(description: str | None = None) -> Any:
    """A key the view leaves out when it has no value: optional, never null (and no `null`
    default in the schema, which would contradict its type)."""
    return Field(default=None, description=description, json_schema_extra=_no_default)


class Strict(BaseModel):
    """additionalProperties false: a field a view adds without documenting it fails the tests."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- errors


class ErrorDetail(Strict):
    field: str | None = Field(description="Dotted path of the bad input field; null when it is the whole body.")
    message: str


class ErrorBody(Strict):
    code: str = Field(description="Machine-readable: `invalid`, `not_found`, `forbidden`, … (docs/api.md#errors).")
    message: str = Field(description="For people; never echoes input values (they may be secrets).")
    details: list[ErrorDetail] | None = Field(description="For 422 (and 409 `exists`): every bad field.")


class Error(Strict):
    """Every 4xx/5xx answer under /api."""

    error: ErrorBody


# --------------------------------------------------------------------------- users


class User(Strict):
    id: int
    username: str
    role: Literal["admin", "agent"]


class LoginResult(Strict):
    user: User
    csrf_token: str = Field(description="Send it as `X-CSRF-Token` with every unsafe request made with the session cookie.")


class Me(Strict):
    user: User
    csrf_token: str | None = Field(description="The session's CSRF token; null when authenticated with a bearer token.")


class LoggedOut(Strict):
    ok: Literal[True]


# --------------------------------------------------------------------------- numbers and providers


class RateLimit(Strict):
    """At most `messages` per `per_seconds`, and `burst` at once after a quiet spell."""

    messages: float = Field(gt=0)
    per_seconds: float = Field(gt=0)
    burst: int = Field(ge=1)


class Number(Strict):
    """A WhatsApp number; secret settings are shown as `********` (or `""` when empty)."""

    id: str
    provider: str
    phone: str
    display_name: str | None
    managed_by_config: bool = Field(description="Declared in the config file: read-only over the API (409 `managed_by_config`).")
    active: bool = Field(description="False when its provider is not enabled or its stored settings are unusable.")
    state: str | None = Field(description="Connection state a provider reported (e.g. WPPConnect pairing).")
    state_detail: str | None
    state_at: datetime | None
    settings: dict[str, Any] = Field(description="Validated by the provider's schema (GET /api/providers); secrets masked.")
    rate_limit: RateLimit = Field(description="The limit its sends keep to, shared by every instance: its own, else its provider's default.")
    recipient_rate_limit: RateLimit | None = Field(
        description="The limit per customer (Meta's pair limit), its own or its provider's; null when there is none.")


class NumberList(Strict):
    items: list[Number]


class Provider(Strict):
    name: str
    settings_schema: dict[str, Any] = Field(
        description='JSON Schema of a number\'s settings; secrets are `"format": "password", "writeOnly": true`.')


class ProviderList(Strict):
    items: list[Provider]


# --------------------------------------------------------------------------- conversations


class Contact(Strict):
    id: int
    address: str = Field(description="E.164 phone, or an opaque channel id such as `…@lid`.")
    name: str | None


class Conversation(Strict):
    id: int
    number_id: str
    contact: Contact
    owner: Owner = Field(description="Who answers: a human agent or the bot.")
    state: ConversationState
    unread: int = Field(ge=0, description="Inbound messages after the conversation's read marker (POST …/read).")
    last_message_at: datetime | None
    created_at: datetime


class ConversationPage(Strict):
    items: list[Conversation]
    total: int = Field(ge=0, description="How many match the filters, over all pages.")
    limit: int
    offset: int


class Transferred(Strict):
    changed: bool = Field(description="False when the conversation already had that owner.")
    conversation: Conversation


# --------------------------------------------------------------------------- messages


class MediaItem(Strict):
    """A key the view leaves out when it has no value (so: optional, never null)."""

    content_type: str | SkipJsonSchema[None] = absent()
    filename: str | SkipJsonSchema[None] = absent()
    key: str | SkipJsonSchema[None] = absent("Media store key (served signed under /media/).")
    error: str | SkipJsonSchema[None] = absent("Why the file could not be fetched.")


class Message(Strict):
    id: int
    conversation_id: int
    direction: Direction
    kind: str = Field(description="`text`, `image`, `document`, `audio`, `template`, …")
    text: str | None
    media: list[MediaItem]
    provider: str
    external_id: str | None = Field(description="The provider's id, once it has accepted (or sent) the message.")
    sender: str | None = Field(description="Who queued an outbound message: `human`, `bot`, a plugin, …")
    status: DeliveryStatus
    error_code: str | None
    error_text: str | None
    sent_at: datetime | None
    status_at: datetime | None
    created_at: datetime


class MessagePage(Strict):
    items: list[Message] = Field(description="Newest first.")
    next_before: int | None = Field(description="Pass it as `before` for the next (older) page; null at the end.")


class Upload(BaseModel):
    """The multipart alternative of sending a message: a file and an optional caption."""

    file: bytes = Field(json_schema_extra={"contentMediaType": "application/octet-stream"},
                        description="Up to `[media] max_bytes`; its content type decides the message kind.")
    caption: str | SkipJsonSchema[None] = absent()
