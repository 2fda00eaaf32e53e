"""A provider plugin for testing the core without real providers.

Wire format (JSON): ``{"messages": [{"id", "from", "text", "name"?, "media"?: [{"url" | "b64",
"content_type", "filename"?}]}], "statuses": [{"id", "status",
"error_code"?, "error_text"?}]}``. The request names its number in ``X-Test-Number`` and is proven by
``X-Test-Signature: hex(HMAC-SHA256(settings.secret, body))``. Sends go over real HTTP to
``settings.api_url`` (a local fake, see tests/fake_api.py) as ``POST /messages`` with JSON
``{"id", "to", "text", "media_url"}``: 2xx → ``{"sid", "status"}``; 429/5xx → retried; other 4xx →
failed with the body's ``code`` and ``message``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Sequence

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr
from starlette.responses import JSONResponse, Response

from core import (
    ContactInfo,
    InboundMessage,
    MalformedWebhook,
    Media,
    Number,
    OutboundMessage,
    ParsedWebhook,
    ProviderError,
    SendResult,
    SimulatedWebhook,
    StatusUpdate,
    WebhookRequest,
    WebhookRoute,
    hookimpl,
)

PLUGIN_NAME = "recorder"


class RecorderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secret: SecretStr
    api_url: str


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed_headers(number_id: str, secret: str, body: bytes) -> dict[str, str]:
    return {"X-Test-Number": number_id, "X-Test-Signature": sign(secret, body), "Content-Type": "application/json"}


@hookimpl
def provider_number_settings_model() -> type[RecorderSettings]:
    return RecorderSettings


@hookimpl
def provider_webhook_routes() -> list[WebhookRoute]:
    return [WebhookRoute(""), WebhookRoute("/status", name="status")]


@hookimpl
def provider_status_map() -> dict[str, str]:
    return {"queued": "queued", "sent": "sent", "delivered": "delivered", "read": "read", "failed": "failed"}


@hookimpl
def provider_match_numbers(request: WebhookRequest, numbers: Sequence[Number]) -> list[Number]:
    wanted = request.headers.get("x-test-number")
    return [number for number in numbers if number.id == wanted]


@hookimpl
def provider_verify(request: WebhookRequest, numbers: Sequence[Number]) -> bool:
    given = request.headers.get("x-test-signature", "")
    return any(
        hmac.compare_digest(given, sign(number.settings.secret.get_secret_value(), request.body)) for number in numbers
    )


@hookimpl
def provider_parse(request: WebhookRequest, numbers: Sequence[Number]) -> ParsedWebhook:
    try:
        payload = request.json()
        number = numbers[0]
        messages = [
            InboundMessage(
                number_id=number.id,
                external_id=_text(item, "id"),
                contact=ContactInfo(address=_text(item, "from"), name=_text(item, "name", required=False)),
                text=_text(item, "text", required=False),
                media=[Media(content_type=_text(m, "content_type", required=False), url=_text(m, "url", required=False),
                             filename=_text(m, "filename", required=False),
                             data=base64.b64decode(m["b64"]) if "b64" in m else None) for m in item.get("media", [])],
                raw=item,
            )
            for item in payload.get("messages", [])
        ]
        statuses = [
            StatusUpdate(
                number_id=number.id,
                external_id=_text(item, "id"),
                raw_status=_text(item, "status"),
                error_code=_text(item, "error_code", required=False),
                error_text=_text(item, "error_text", required=False),
                raw=item,
            )
            for item in payload.get("statuses", [])
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MalformedWebhook(f"not a recorder payload: {exc}") from exc
    return ParsedWebhook(messages=messages, statuses=statuses)


def _text(item: dict, key: str, *, required: bool = True) -> str | None:
    """A string field of the payload; anything else is a malformed webhook, not a stored value."""
    value = item.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise TypeError(f"{key!r} must be a non-empty string" if required else f"{key!r} must be a string")
    return value


@hookimpl
def provider_acknowledge(request: WebhookRequest, parsed: ParsedWebhook) -> Response:
    return JSONResponse({"ok": True, "messages": len(parsed.messages), "statuses": len(parsed.statuses)})


class _SharedClient:
    """One HTTP client per event loop, kept between calls: a new httpx client loads the CA bundle
    (~40 ms of CPU), which would be most of every send. Tests run one loop each, hence per loop."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client.is_closed or self._loop is not loop:
            self._client, self._loop = httpx.AsyncClient(timeout=5), loop
        return self._client

    async def close(self) -> None:
        client, self._client, self._loop = self._client, None, None
        if client is not None and not client.is_closed:
            await client.aclose()


_http = _SharedClient()


@hookimpl
async def on_shutdown() -> None:
    await _http.close()


async def _post(number: Number, message: OutboundMessage) -> SendResult:
    body = {
        "id": message.id,
        "to": message.to,
        "text": message.text,
        "media_url": message.media.url if message.media else None,
        "status_callback": message.status_callback_url,
        "reply_to": message.reply_to,
        "interactive": message.interactive.to_json() if message.interactive else None,
    }
    try:
        response = await _http.get().post(f"{number.settings.api_url}/messages", json=body)
    except httpx.TransportError as exc:
        raise ProviderError(f"cannot reach the API: {exc}", retryable=True) from exc
    if response.status_code in (429, 500, 502, 503):
        raise ProviderError("try later", code=str(response.status_code), retryable=True, retry_after=0.05)
    if response.is_error:
        error = response.json()
        raise ProviderError(error.get("message", "refused"), code=str(error.get("code")))
    answer = response.json()
    return SendResult(external_id=answer["sid"], raw_status=answer.get("status", "queued"))


@hookimpl
async def provider_send_text(number: Number, message: OutboundMessage) -> SendResult:
    return await _post(number, message)


@hookimpl
async def provider_send_media(number: Number, message: OutboundMessage) -> SendResult:
    return await _post(number, message)


@hookimpl
async def provider_send_interactive(number: Number, message: OutboundMessage) -> SendResult:
    return await _post(number, message)


@hookimpl
async def provider_download_media(number: Number, media: Media) -> tuple[bytes, str | None]:
    """Only from the number's own API host, like a real provider (no SSRF)."""
    if not (media.url or "").startswith(number.settings.api_url + "/"):
        raise ProviderError(f"refusing to fetch media from a foreign host: {media.url}")
    try:
        response = await _http.get().get(media.url)
    except httpx.TransportError as exc:
        raise ProviderError(f"cannot reach the API: {exc}", retryable=True) from exc
    if response.status_code >= 500:
        raise ProviderError("try later", code=str(response.status_code), retryable=True, retry_after=0.05)
    if response.is_error:
        raise ProviderError(f"media gone ({response.status_code})", code=str(response.status_code))
    return response.content, response.headers.get("content-type")


@hookimpl
async def provider_simulate_webhook(number: Number, sender: str, text: str, public_url: str) -> SimulatedWebhook:
    body = json.dumps({"messages": [{"id": f"sim-{uuid.uuid4().hex}", "from": sender, "text": text}]}).encode()
    return SimulatedWebhook(
        path="/webhooks/whatsapp/recorder",
        body=body,
        headers=signed_headers(number.id, number.settings.secret.get_secret_value(), body),
    )
