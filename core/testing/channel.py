"""A stand-in channel for testing workflows: customers' messages go in through its (proven)
webhook, and what hookline sends comes out in `channel.sent`. No network, no fake API: a
workflow's test is about the workflow, the conformance suite is about channels."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr
from starlette.responses import JSONResponse, Response

from core.hookspecs import hookimpl
from core.types import (
    ContactInfo,
    InboundMessage,
    MalformedWebhook,
    Number,
    OutboundMessage,
    ParsedWebhook,
    ProviderError,
    SendResult,
    StatusUpdate,
    WebhookRequest,
    WebhookRoute,
)

SIGNATURE_HEADER = "X-Loopback-Signature"
DEFAULT_SECRET = "loopback-secret"


class LoopbackSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secret: SecretStr = SecretStr(DEFAULT_SECRET)


@dataclass(frozen=True)
class Sent:
    """One message hookline handed the channel."""

    number_id: str
    to: str
    text: str | None
    media: bytes | None
    filename: str | None
    reply_to: str | None
    external_id: str


class LoopbackChannel:
    """A provider plugin object; register it as ``"loopback"`` (see `number()` and `receive()`)."""

    name = "loopback"

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self._failures: list[ProviderError] = []
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ for tests

    def number(self, number_id: str = "n1", phone: str = "+15550000001") -> dict[str, Any]:
        """A `[[numbers]]` entry for this channel (for `make_runtime(numbers=[...])`)."""
        return {"id": number_id, "provider": self.name, "phone": phone, "settings": {}}

    async def receive(
        self, client: httpx.AsyncClient, text: str, *, number_id: str = "n1", sender: str = "+15550100123",
        message_id: str | None = None, name: str | None = None, at: datetime | None = None,
    ) -> httpx.Response:
        """A customer's text arriving, proven, through the app's webhook route; `at` is when the
        customer wrote it (the message's `sent_at`)."""
        message = {"id": message_id or f"in-{next(self._ids)}", "from": sender, "text": text, "name": name,
                   "timestamp": at.isoformat() if at else None}
        return await self._post(client, number_id, {"messages": [message]})

    async def status(self, client: httpx.AsyncClient, external_id: str, status: str, *, number_id: str = "n1") -> httpx.Response:
        """The channel's word that a sent message (its `external_id`) is now `status`."""
        return await self._post(client, number_id, {"statuses": [{"id": external_id, "status": status}]})

    def fail_next(self, error: ProviderError) -> None:
        """The next send raises `error` (retryable or not) instead of going out."""
        self._failures.append(error)

    @property
    def texts(self) -> list[str | None]:
        return [item.text for item in self.sent]

    async def _post(self, client: httpx.AsyncClient, number_id: str, payload: dict[str, Any]) -> httpx.Response:
        body = json.dumps(payload).encode()
        signature = hmac.new(DEFAULT_SECRET.encode(), body, hashlib.sha256).hexdigest()
        return await client.post(f"/webhooks/whatsapp/{self.name}/{number_id}", content=body,
                                 headers={"Content-Type": "application/json", SIGNATURE_HEADER: signature})

    # ------------------------------------------------------------------ the provider's hooks

    @hookimpl
    def provider_number_settings_model(self) -> type[LoopbackSettings]:
        return LoopbackSettings

    @hookimpl
    def provider_webhook_routes(self) -> list[WebhookRoute]:
        return [WebhookRoute("/{number_id}")]

    @hookimpl
    def provider_status_map(self) -> dict[str, str]:
        return {status: status for status in ("queued", "sent", "delivered", "read", "failed")}

    @hookimpl
    def provider_match_numbers(self, request: WebhookRequest, numbers: Sequence[Number]) -> list[Number]:
        return [number for number in numbers if number.id == request.path_params.get("number_id")]

    @hookimpl
    def provider_verify(self, request: WebhookRequest, numbers: Sequence[Number]) -> bool:
        given = request.headers.get(SIGNATURE_HEADER, "")
        return any(
            hmac.compare_digest(given, hmac.new(number.settings.secret.get_secret_value().encode(), request.body, hashlib.sha256).hexdigest())
            for number in numbers
        )

    @hookimpl
    def provider_parse(self, request: WebhookRequest, numbers: Sequence[Number]) -> ParsedWebhook:
        number_id = numbers[0].id
        try:
            payload = request.json()
            messages = [InboundMessage(number_id=number_id, external_id=str(item["id"]),
                                       contact=ContactInfo(address=str(item["from"]), name=item.get("name")),
                                       text=item.get("text"), raw=item,
                                       timestamp=datetime.fromisoformat(item["timestamp"]) if item.get("timestamp") else None)
                        for item in payload.get("messages", [])]
            statuses = [StatusUpdate(external_id=str(item["id"]), raw_status=str(item["status"]), number_id=number_id, raw=item)
                        for item in payload.get("statuses", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MalformedWebhook(f"not a loopback payload: {exc}") from None
        return ParsedWebhook(messages=messages, statuses=statuses)

    @hookimpl
    def provider_acknowledge(self, parsed: ParsedWebhook) -> Response:
        return JSONResponse({"messages": len(parsed.messages), "statuses": len(parsed.statuses)})

    @hookimpl
    async def provider_send_text(self, number: Number, message: OutboundMessage) -> SendResult:
        return self._send(number, message, None)

    @hookimpl
    async def provider_send_media(self, host: Any, number: Number, message: OutboundMessage) -> SendResult:
        media = message.media
        data = host.media.read(media.key) if media is not None and media.key else None
        return self._send(number, message, data)

    def _send(self, number: Number, message: OutboundMessage, data: bytes | None) -> SendResult:
        if self._failures:
            raise self._failures.pop(0)
        external_id = f"loopback-{next(self._ids)}"
        filename = message.media.filename if message.media else None
        self.sent.append(Sent(number.id, message.to, message.text, data, filename, message.reply_to, external_id))
        return SendResult(external_id=external_id, raw_status="sent")
