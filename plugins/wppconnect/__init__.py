"""WPPConnect Server provider: an ordinary WhatsApp number paired by QR code, self-hosted.

WPPConnect signs nothing, so each number's webhook URL carries an unguessable secret:
``POST /webhooks/whatsapp/wppconnect/<number id>/<secret>``, compared in constant time (403 when
wrong or missing). The secret is the number's ``webhook_secret`` setting, or one derived from
hookline's secret key and the number's id (``session.derived_secret``), so every process proves
every number at once and the check never waits on storage. Each hook is a few lines that delegate to ``parse``, ``client``,
``session`` and ``commands``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence

from starlette.responses import JSONResponse, Response

from core import (
    Media,
    MalformedWebhook,
    Number,
    OutboundMessage,
    PairingCode,
    ParsedWebhook,
    ProviderError,
    ProviderLimits,
    RateLimit,
    SendResult,
    SimulatedWebhook,
    WebhookRequest,
    WebhookRoute,
    hookimpl,
)
from plugins.wppconnect import commands
from plugins.wppconnect.client import settings_of
from plugins.wppconnect.parse import STATUS_MAP, parse_event, sample_message
from plugins.wppconnect.schema import WppconnectNumberSettings, WppconnectSettings
from plugins.wppconnect.session import PROVIDER, Sessions, derived_secret

WEBHOOK_PREFIX = f"/webhooks/whatsapp/{PROVIDER}"

#: This process's sessions, made in on_startup (verify reads the webhook secrets from here).
_active: Sessions | None = None


def _sessions(host) -> Sessions:
    global _active
    if _active is None or _active.host is not host:  # a send without on_startup (embedding): no watcher
        _active = Sessions(host)
    return _active


def _webhook_secret(number: Number) -> str | None:
    """What the number's webhook path must carry; None (nothing passes) before on_startup."""
    configured = settings_of(number).webhook_secret
    if configured is not None:
        return configured.get_secret_value()
    if _active is None:
        return None
    return _active.secrets.get(number.id) or derived_secret(_active.host.secret_key.value, number.id)


@hookimpl
def provider_number_settings_model() -> type[WppconnectNumberSettings]:
    return WppconnectNumberSettings


@hookimpl
def plugin_settings_model() -> type[WppconnectSettings]:
    return WppconnectSettings


# Files arrive inside the webhook as base64 (4/3 of their size) and WPPConnect never retries a
# refused webhook: room for 16 MiB files (WhatsApp's media limit) whatever max_body_bytes says.
WEBHOOK_MAX_BYTES = 24 * 1024 * 1024


@hookimpl
def provider_webhook_routes() -> list[WebhookRoute]:
    # The second route only exists to answer a URL without its secret with 403, not 404.
    return [
        WebhookRoute("/{number_id}/{secret}", name="inbound", max_body_bytes=WEBHOOK_MAX_BYTES),
        WebhookRoute("/{number_id}", name="no-secret"),
    ]


@hookimpl
def provider_status_map() -> dict[str, str]:
    return STATUS_MAP


#: A WPPConnect session is an ordinary WhatsApp account driven through WhatsApp Web: no published
#: throughput, every send a round trip through a browser, and WhatsApp bans accounts that send
#: like machines. So: one message a second (five at once after a pause), enough for
#: conversations and not for broadcasts; at most 20/s, the rate Meta itself allows numbers that
#: use the WhatsApp Business app (PROTOCOLS.md 2.8).
RATE_LIMITS = ProviderLimits(number=RateLimit(1, burst=5), max_per_second=20)


@hookimpl
def provider_rate_limits() -> ProviderLimits:
    return RATE_LIMITS


@hookimpl
def register_commands():
    return [commands.command()]


@hookimpl
def provider_match_numbers(request: WebhookRequest, numbers: Sequence[Number]) -> list[Number]:
    number_id = request.path_params.get("number_id")
    return [number for number in numbers if number.id == number_id]


@hookimpl
def provider_verify(request: WebhookRequest, numbers: Sequence[Number]) -> bool:
    provided = request.path_params.get("secret") or ""
    for number in numbers:
        expected = _webhook_secret(number)
        if provided and expected and hmac.compare_digest(provided.encode(), expected.encode()):
            return True
    return False


@hookimpl
def provider_parse(request: WebhookRequest, numbers: Sequence[Number]) -> ParsedWebhook:
    number = numbers[0]
    settings = settings_of(number)
    try:
        payload = request.json()
    except (ValueError, UnicodeDecodeError):
        raise MalformedWebhook("WPPConnect webhook body is not JSON") from None
    parsed = parse_event(payload, number.id, settings.session, settings.ignore_groups)
    if parsed.session is not None and _active is not None:
        _active.book.note(number.id, parsed.session.state, parsed.session.detail)
    return parsed.webhook


@hookimpl
def provider_acknowledge() -> Response:
    """Any 2xx will do; on `onmessage` it also makes the server mark the chat read (its default)."""
    return JSONResponse({"received": True})


@hookimpl
async def provider_send_text(host, number: Number, message: OutboundMessage) -> SendResult:
    sessions = _sessions(host)
    return await _sending(sessions, number, sessions.client.send_text(number, message.to, message.text or "", message.reply_to))


@hookimpl
async def provider_send_media(host, number: Number, message: OutboundMessage) -> SendResult:
    """A file in our store goes inline as a base64 data URI; media with only a URL, by URL."""
    media = message.media
    assert media is not None
    sessions = _sessions(host)
    if media.key:
        try:
            data = host.media.read(media.key)
        except FileNotFoundError:
            raise ProviderError(f"the file {media.key} is not in the media store", code="no_media") from None
        sending = sessions.client.send_file(number, message.to, data, media.content_type, media.filename, message.text, message.reply_to)
    elif media.url:
        sending = sessions.client.send_file_url(number, message.to, media.url, media.filename, message.text, message.reply_to)
    else:
        raise ProviderError("media without a file or a URL", code="no_media")
    return await _sending(sessions, number, sending)


async def _sending(sessions: Sessions, number: Number, sending) -> SendResult:
    try:
        result = await sending
    except ProviderError as exc:
        await sessions.failed(number, exc)
        raise
    await sessions.sent(number)
    return result


@hookimpl
async def provider_download_media(host, number: Number, media: Media) -> tuple[bytes, str | None]:
    if not media.provider_media_id:
        raise ProviderError("WPPConnect media without a message id", code="no_media")
    return await _sessions(host).client.download_media(number, media.provider_media_id)


@hookimpl
async def provider_pairing_qr(host, number: Number) -> PairingCode:
    return await _sessions(host).pairing_code(number)


@hookimpl
async def provider_simulate_webhook(host, number: Number, sender: str, text: str) -> SimulatedWebhook:
    """A text message as the server would post it, to the number's secret webhook path."""
    secret = _webhook_secret(number) or await _sessions(host).webhook_secret(number)
    payload = sample_message(settings_of(number).session, sender, number.phone, text)
    return SimulatedWebhook(
        path=f"{WEBHOOK_PREFIX}/{number.id}/{secret}",
        body=json.dumps(payload, ensure_ascii=False).encode(),
        headers={"Content-Type": "application/json"},
    )


@hookimpl
async def on_startup(host) -> None:
    global _active
    _active = Sessions(host)
    await _active.load_secrets()
    settings = host.plugin_settings(PROVIDER)
    _active.watch(settings if isinstance(settings, WppconnectSettings) else WppconnectSettings())


@hookimpl
async def on_shutdown() -> None:
    global _active
    sessions, _active = _active, None
    if sessions is not None:
        await sessions.close_all()
