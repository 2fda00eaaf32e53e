"""Telegram Bot API channel for hookline: a bot is a "number", its chats are conversations.

Route: ``POST /webhooks/whatsapp/telegram/<number id>``, the URL the bot's webhook is set to
(``setWebhook``, done at start unless ``[plugins.telegram] set_webhook = false``). Each update is
proven by the ``X-Telegram-Bot-Api-Secret-Token`` header (the number's ``webhook_secret``).
Sends are ``sendMessage`` and ``sendDocument``. Each hook is a few lines that delegate to
``secret``, ``parse``, ``client`` and ``errors``.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Sequence

from starlette.responses import Response

from core import (
    MalformedWebhook,
    Media,
    Number,
    OutboundMessage,
    ParsedWebhook,
    ProviderError,
    SendResult,
    SimulatedWebhook,
    WebhookRequest,
    WebhookRoute,
    hookimpl,
)
from hookline_telegram.client import BotApi, settings_of
from hookline_telegram.parse import STATUS_MAP, parse_update, sample_update
from hookline_telegram.schema import TelegramNumberSettings, TelegramSettings
from hookline_telegram.secret import SECRET_HEADER, is_valid

__version__ = "0.1.0"
PLUGIN_NAME = "telegram"
log = logging.getLogger("hookline.telegram")
_api = BotApi()


@hookimpl
def provider_number_settings_model() -> type[TelegramNumberSettings]:
    return TelegramNumberSettings


@hookimpl
def plugin_settings_model() -> type[TelegramSettings]:
    return TelegramSettings


@hookimpl
def provider_webhook_routes() -> list[WebhookRoute]:
    return [WebhookRoute("/{number_id}", name="inbound")]


@hookimpl
def provider_status_map() -> dict[str, str]:
    return STATUS_MAP


@hookimpl
def provider_match_numbers(request: WebhookRequest, numbers: Sequence[Number]) -> list[Number]:
    """The bot the URL names; its secret proves the request next."""
    return [number for number in numbers if number.id == request.path_params.get("number_id")]


@hookimpl
def provider_verify(request: WebhookRequest, numbers: Sequence[Number]) -> bool:
    provided = request.headers.get(SECRET_HEADER)
    return any(is_valid(provided, settings_of(number).webhook_secret.get_secret_value()) for number in numbers)


@hookimpl
def provider_parse(request: WebhookRequest, numbers: Sequence[Number]) -> ParsedWebhook:
    number = numbers[0]
    try:
        payload = request.json()
    except (ValueError, UnicodeDecodeError):
        raise MalformedWebhook("Telegram update is not JSON") from None
    return parse_update(payload, number.id, settings_of(number).bot_id)


@hookimpl
def provider_acknowledge() -> Response:
    """An empty 200: Telegram then stops redelivering the update. Replies go through the queue."""
    return Response(status_code=200)


@hookimpl
async def provider_send_text(number: Number, message: OutboundMessage) -> SendResult:
    return await _api.send_message(number, message.to, message.text or "", message.reply_to)


@hookimpl
async def provider_send_media(host, number: Number, message: OutboundMessage) -> SendResult:
    """A file in hookline's store is uploaded; one with only a URL, Telegram fetches itself."""
    media = message.media
    assert media is not None
    if media.key:
        try:
            data = host.media.read(media.key)
        except FileNotFoundError:
            raise ProviderError(f"media {media.key} is not in the media store", code="media_missing") from None
        return await _api.send_document(number, message.to, data=data, filename=media.filename, content_type=media.content_type,
                                        caption=message.text, reply_to=message.reply_to)
    if media.url:
        return await _api.send_document(number, message.to, url=media.url, caption=message.text, reply_to=message.reply_to)
    raise ProviderError("media to send has neither a stored file nor a URL", code="media_missing")


@hookimpl
async def provider_download_media(host, number: Number, media: Media) -> tuple[bytes, str | None]:
    if not media.provider_media_id:
        raise ProviderError("Telegram media without a file_id", code="no_file")
    data, content_type = await _api.download(number, media.provider_media_id, host.settings.media.max_bytes)
    return data, media.content_type or content_type


@hookimpl
async def provider_simulate_webhook(number: Number, sender: str, text: str) -> SimulatedWebhook:
    """A private-chat text update, with the number's secret header. `sender` is the chat id
    (digits; a phone number's digits will do for trying it out)."""
    digits = "".join(character for character in sender if character.isdigit()) or "1"
    payload = sample_update(secrets.randbelow(2**31), int(digits[:15]), text)
    return SimulatedWebhook(
        path=f"/webhooks/whatsapp/{PLUGIN_NAME}/{number.id}",
        body=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", SECRET_HEADER: settings_of(number).webhook_secret.get_secret_value()},
    )


@hookimpl
async def on_startup(host) -> None:
    """Point every bot's webhook at hookline, with its secret (Telegram requires https)."""
    settings = host.plugin_settings(PLUGIN_NAME)
    if settings is not None and not settings.set_webhook:
        return
    bots = host.numbers_of(PLUGIN_NAME)
    if bots and not host.public_url.startswith("https://"):
        log.warning("telegram: not setting the bots' webhooks: Telegram needs an https [server] public_url, not %s", host.public_url)
        return
    for number in bots:
        try:
            await _api.set_webhook(number, host.webhook_url(PLUGIN_NAME, f"/{number.id}"))
        except ProviderError as exc:
            log.warning("telegram: could not set the webhook of bot %s: %s", number.id, exc.message)
        else:
            log.info("telegram: bot %s delivers its updates to %s", number.id, host.webhook_url(PLUGIN_NAME, f"/{number.id}"))


@hookimpl
async def on_shutdown() -> None:
    await _api.close()
