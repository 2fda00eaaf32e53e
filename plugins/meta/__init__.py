"""Meta WhatsApp Cloud API provider: the verification handshake, signed batches, every message
type, media both ways, templates and interactive messages.

Routes: ``GET /webhooks/whatsapp/meta`` (the ``hub.*`` verification handshake, answered with the
raw ``hub.challenge``) and ``POST /webhooks/whatsapp/meta`` (update batches signed with the app
secret, for any of the app's numbers). Each hook is a few lines that delegate to ``signature``,
``parse``, ``client`` and ``errors``.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from starlette.responses import PlainTextResponse, Response

from core import (
    MalformedWebhook,
    Media,
    Number,
    OutboundMessage,
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
from plugins.meta import client as graph
from plugins.meta.errors import PAIR_RATE_DELAY_SECONDS, TOKEN_CODE
from plugins.meta.parse import STATUS_MAP, ParsedBatch, parse_batch
from plugins.meta.schema import MetaNumberSettings, MetaPluginSettings
from plugins.meta.signature import SIGNATURE_HEADER, handshake_challenge, sign, signing_secrets

PLUGIN_NAME = "meta"
WEBHOOK_PATH = "/webhooks/whatsapp/meta"
#: Simulated messages carry ids no Meta server knows: they are never marked as read.
SIMULATED_ID_PREFIX = "wamid.hookline-simulated-"

log = logging.getLogger("hookline.meta")
T = TypeVar("T")

_graph = graph.GraphClient()
#: Updates dropped because their phone_number_id is none of our numbers (per id, this process).
UNROUTED_UPDATES: Counter[str] = Counter()
#: Numbers whose token Meta accepted since this process started.
_token_ok: set[str] = set()


def unrouted_updates() -> dict[str, int]:
    """Updates acknowledged but not stored, per unknown ``phone_number_id``, since start."""
    return dict(UNROUTED_UPDATES)


# --------------------------------------------------------------------------- contributions


@hookimpl
def provider_number_settings_model() -> type[MetaNumberSettings]:
    return MetaNumberSettings


@hookimpl
def plugin_settings_model() -> type[MetaPluginSettings]:
    return MetaPluginSettings


#: PROTOCOLS.md 2.8: 80 messages/s per number by default, up to 1,000 for eligible numbers
#: (130429 beyond); to one customer about one per 6 s, bursts of ~45 tolerated (131056 beyond).
#: That burst is unconfirmed, so the default stays below it.
RATE_LIMITS = ProviderLimits(
    number=RateLimit(80, burst=8),
    recipient=RateLimit(1, per_seconds=PAIR_RATE_DELAY_SECONDS, burst=30),
    max_per_second=1000,
)


@hookimpl
def provider_rate_limits() -> ProviderLimits:
    return RATE_LIMITS


META_MAX_BATCH_BYTES = 3 * 1024 * 1024  # Meta batches updates up to 3 MB (PROTOCOLS.md 2.3)


@hookimpl
def provider_webhook_routes() -> list[WebhookRoute]:
    return [
        WebhookRoute("", methods=("GET",), name="handshake"),
        WebhookRoute("", methods=("POST",), name="inbound", max_body_bytes=META_MAX_BATCH_BYTES),
    ]


@hookimpl
def provider_status_map() -> dict[str, str]:
    return STATUS_MAP


# --------------------------------------------------------------------------- inbound


@hookimpl
def provider_match_numbers(numbers: Sequence[Number]) -> list[Number]:
    """Every Meta number: one app webhook serves all of its numbers, and which one an update is
    for is only known from the (signed) body. The handshake is checked against all of them too."""
    return list(numbers)


@hookimpl
def provider_verify(request: WebhookRequest, numbers: Sequence[Number]) -> bool:
    if request.route == "handshake":
        tokens = [_settings(number).verify_token.get_secret_value() for number in numbers]
        return handshake_challenge(request.query, tokens) is not None
    return bool(signing_secrets(request.body, request.headers.get(SIGNATURE_HEADER), _app_secrets(numbers)))


@hookimpl
def provider_parse(request: WebhookRequest, numbers: Sequence[Number]) -> ParsedWebhook:
    if request.route == "handshake":
        return ParsedWebhook()
    try:
        payload = request.json()
    except ValueError:
        raise MalformedWebhook("Meta webhook body is not JSON") from None
    routes: dict[str, str] = {}
    for number in _signed_for(request, numbers):
        routes.setdefault(_settings(number).phone_number_id, number.id)
    batch = parse_batch(payload, routes)
    _report(batch, numbers)
    return batch.webhook


@hookimpl
def provider_acknowledge(request: WebhookRequest) -> Response:
    """The raw ``hub.challenge`` for the handshake; a plain 200 for updates (replies go through
    the queue, never inside the request)."""
    if request.route == "handshake":
        return PlainTextResponse(request.query["hub.challenge"][0])
    return PlainTextResponse("ok")


# --------------------------------------------------------------------------- sending


@hookimpl
async def provider_send_text(host, number: Number, message: OutboundMessage) -> SendResult:
    return graph.send_result(await _call(host, number, _graph.send(number, graph.text_payload(message))))


@hookimpl
async def provider_send_media(host, number: Number, message: OutboundMessage) -> SendResult:
    """A file in our media store is uploaded to Meta (``/media``, multipart) and sent by id; a
    ``media.url`` is sent as a link for Meta to fetch."""
    media = message.media
    assert media is not None
    if media.key:
        try:
            data = host.media.read(media.key)
        except FileNotFoundError:
            raise ProviderError(f"media {media.key} is not in the media store", code="media_missing") from None
        content_type = media.content_type or mimetypes.guess_type(media.key)[0] or "application/octet-stream"
        media_id = await _call(host, number, _graph.upload(number, data, content_type, media.filename, media.key))
        payload = graph.media_payload(message, media_id=media_id, content_type=content_type)
    elif media.url:
        payload = graph.media_payload(message, link=media.url)
    else:
        raise ProviderError("media to send has neither a stored file nor a URL", code="media_missing")
    return graph.send_result(await _call(host, number, _graph.send(number, payload)))


@hookimpl
async def provider_send_template(host, number: Number, message: OutboundMessage) -> SendResult:
    return graph.send_result(await _call(host, number, _graph.send(number, graph.template_payload(message))))


@hookimpl
async def provider_send_interactive(host, number: Number, message: OutboundMessage) -> SendResult:
    return graph.send_result(await _call(host, number, _graph.send(number, graph.interactive_payload(message))))


@hookimpl
async def provider_download_media(host, number: Number, media: Media) -> tuple[bytes, str | None]:
    return await _call(host, number, _graph.download(number, media, host.settings.media.max_bytes))


# --------------------------------------------------------------------------- notifications


@hookimpl
async def on_inbound_message(host, message, conversation) -> None:
    """Mark a Meta customer's message as read (blue ticks) unless ``[plugins.meta] mark_read = false``."""
    if message.provider != PLUGIN_NAME or not message.external_id or message.external_id.startswith(SIMULATED_ID_PREFIX):
        return
    settings = host.plugin_settings(PLUGIN_NAME)
    if settings is not None and not settings.mark_read:
        return
    number = host.numbers.get(conversation.number_id)
    if number is None or number.provider != PLUGIN_NAME:
        return
    try:
        await _call(host, number, _graph.send(number, graph.read_receipt(message.external_id)))
    except ProviderError as exc:
        log.warning("meta: could not mark message %s as read on %s: %s", message.id, number.id, exc.message)


@hookimpl
async def on_startup(host) -> None:
    seen: dict[str, str] = {}
    for number in host.numbers_of(PLUGIN_NAME):
        phone_number_id = _settings(number).phone_number_id
        if phone_number_id in seen:
            log.warning(
                "Meta numbers %s and %s share phone_number_id %s: updates for it are stored under %s only",
                seen[phone_number_id], number.id, phone_number_id, seen[phone_number_id],
            )
        seen.setdefault(phone_number_id, number.id)


@hookimpl
async def on_shutdown() -> None:
    _token_ok.clear()
    await _graph.close()


# --------------------------------------------------------------------------- simulator


@hookimpl
async def provider_simulate_webhook(number: Number, sender: str, text: str) -> SimulatedWebhook:
    """A text message as Meta would post it (``/`` escaped as ``\\/``), signed with the app secret."""
    settings = _settings(number)
    digits = "".join(character for character in sender if character.isdigit())
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": settings.waba_id or "0", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": number.phone.lstrip("+"), "phone_number_id": settings.phone_number_id},
            "contacts": [{"profile": {"name": "hookline simulator"}, "wa_id": digits}],
            "messages": [{
                "from": digits, "id": SIMULATED_ID_PREFIX + secrets.token_hex(12), "timestamp": str(int(time.time())),
                "type": "text", "text": {"body": text},
            }],
        }}]}],
    }
    body = json.dumps(payload, separators=(",", ":")).replace("/", "\\/").encode()
    return SimulatedWebhook(
        path=WEBHOOK_PATH,
        body=body,
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, settings.app_secret.get_secret_value())},
    )


# --------------------------------------------------------------------------- helpers


def _settings(number: Number) -> MetaNumberSettings:
    return number.settings  # type: ignore[return-value]


def _app_secrets(numbers: Sequence[Number]) -> list[str]:
    return list(dict.fromkeys(_settings(number).app_secret.get_secret_value() for number in numbers))


def _signed_for(request: WebhookRequest, numbers: Sequence[Number]) -> list[Number]:
    """The numbers of the app that signed this body. With several apps, app A's webhook must not
    write into app B's numbers, so only numbers with the secret that proved the body are routable."""
    secrets_ = _app_secrets(numbers)
    if len(secrets_) <= 1:
        return list(numbers)
    proven = set(signing_secrets(request.body, request.headers.get(SIGNATURE_HEADER), secrets_))
    return [number for number in numbers if _settings(number).app_secret.get_secret_value() in proven]


def _report(batch: ParsedBatch, numbers: Sequence[Number]) -> None:
    for phone_number_id, count in batch.unrouted.items():
        UNROUTED_UPDATES[phone_number_id] += count
        configured = any(_settings(number).phone_number_id == phone_number_id for number in numbers)
        log.warning(
            "meta: %d update(s) for phone_number_id %s acknowledged and dropped: %s (%d dropped for it since start)",
            count, phone_number_id,
            "it belongs to a number of another Meta app than the one that signed them" if configured
            else "no configured number has it (add it as a [[numbers]] table to keep its messages)",
            UNROUTED_UPDATES[phone_number_id],
        )
    for field_name, count in batch.other_fields.items():
        log.info("meta: %d %r change(s) acknowledged, not stored", count, field_name)
    for error in batch.errors:
        log.warning("meta: error reported for phone_number_id %s: %s", error["phone_number_id"], error["text"])
    if batch.skipped:
        log.warning("meta: %d update(s) without the ids hookline keys on were skipped", batch.skipped)


async def _call(host, number: Number, call: Awaitable[T]) -> T:
    """Run one Graph API call for ``number``; an expired token (190) flags the number
    ``needs_token`` where operators see it, and the first success afterwards clears it."""
    try:
        result = await call
    except ProviderError as exc:
        if exc.code == TOKEN_CODE:
            _token_ok.discard(number.id)
            log.error("meta: number %s: the access token was refused (190); set a new access_token", number.id)
            await host.set_number_state(number.id, "needs_token", exc.message)
        raise
    if number.id not in _token_ok:
        _token_ok.add(number.id)
        state, _ = await host.number_state(number.id)
        if state == "needs_token":
            await host.set_number_state(number.id, "connected", "Meta accepted the access token again")
    return result
