"""Twilio WhatsApp provider: verified webhooks answered with TwiML, sends through the SDK.

Routes: ``POST /webhooks/whatsapp/twilio`` (inbound messages, the path the original system used)
and ``POST /webhooks/whatsapp/twilio/status`` (status callbacks). Each hook is a few lines that
delegate to ``signature``, ``parse``, ``client`` and ``errors``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from urllib.parse import urlencode

from starlette.responses import Response
from twilio.twiml.messaging_response import MessagingResponse

from core import (
    Media,
    Number,
    OutboundMessage,
    ParsedWebhook,
    ProviderLimits,
    RateLimit,
    SendResult,
    SimulatedWebhook,
    StatusUpdate,
    WebhookRequest,
    WebhookRoute,
    hookimpl,
)
from plugins.twilio import client as twilio_client
from plugins.twilio.parse import STATUS_MAP, channel_address, parse_inbound, parse_status
from plugins.twilio.schema import TwilioNumberSettings
from plugins.twilio.signature import SIGNATURE_HEADER, SIGNATURE_SETTINGS_HEADER, expected_signature, is_valid

INBOUND_PATH = "/webhooks/whatsapp/twilio"
_clients = twilio_client.TwilioClients()
_EMPTY_TWIML = str(MessagingResponse()).encode()


@hookimpl
def provider_number_settings_model() -> type[TwilioNumberSettings]:
    return TwilioNumberSettings


#: 80 messages/s per WhatsApp sender by default, 400 (text) on request (PROTOCOLS.md 1.5). Twilio
#: queues what comes faster, so a burst costs latency there, not errors.
RATE_LIMITS = ProviderLimits(number=RateLimit(80, burst=8), max_per_second=400)


@hookimpl
def provider_rate_limits() -> ProviderLimits:
    return RATE_LIMITS


@hookimpl
def provider_webhook_routes() -> list[WebhookRoute]:
    return [WebhookRoute("", name="inbound"), WebhookRoute("/status", name="status")]


@hookimpl
def provider_status_map() -> dict[str, str]:
    return STATUS_MAP


@hookimpl
def provider_match_numbers(request: WebhookRequest, numbers: Sequence[Number]) -> list[Number]:
    """Our number is `To` on inbound messages and `From` on status callbacks; a number in a
    Messaging Service pool is found by `MessagingServiceSid` when the sender itself is not ours."""
    form = request.form
    ours = (form.get("From") if request.route == "status" else form.get("To")) or [""]
    address = channel_address(ours[0])
    by_phone = [number for number in numbers if channel_address(number.phone) == address]
    if by_phone:
        return by_phone
    service = (form.get("MessagingServiceSid") or [""])[0]
    return [number for number in numbers if service and number.settings.messaging_service_sid == service]


@hookimpl
def provider_verify(request: WebhookRequest, numbers: Sequence[Number]) -> bool:
    tokens = [number.settings.auth_token.get_secret_value() for number in numbers]
    return is_valid(
        request.public_url,
        request.form,
        request.body,
        request.headers.get(SIGNATURE_HEADER),
        tokens,
        request.headers.get(SIGNATURE_SETTINGS_HEADER),
    )


@hookimpl
def provider_parse(request: WebhookRequest, numbers: Sequence[Number]) -> ParsedWebhook:
    number_id = numbers[0].id
    if request.route == "status":
        return ParsedWebhook(statuses=[parse_status(request.form, number_id)])
    return ParsedWebhook(messages=[parse_inbound(request.form, number_id)])


@hookimpl
def provider_acknowledge() -> Response:
    """An empty <Response/>: replies go through the queue, never inside Twilio's 15 s."""
    return Response(_EMPTY_TWIML, media_type="text/xml")


@hookimpl
async def provider_send_text(number: Number, message: OutboundMessage) -> SendResult:
    params = twilio_client.message_params(number, message.to, message.status_callback_url)
    sent = await twilio_client.call(lambda: _clients.for_number(number).messages.create_async(body=message.text or "", **params))
    return SendResult(external_id=sent.sid, raw_status=sent.status or "queued")


@hookimpl
async def provider_send_media(host, number: Number, message: OutboundMessage) -> SendResult:
    """Twilio fetches the file itself: a file in our store goes out as a signed, expiring URL."""
    media = message.media
    assert media is not None
    url = host.media.signed_url(media.key) if media.key else media.url
    params = twilio_client.message_params(number, message.to, message.status_callback_url)
    if message.text:
        params["body"] = message.text
    sent = await twilio_client.call(lambda: _clients.for_number(number).messages.create_async(media_url=[url], **params))
    return SendResult(external_id=sent.sid, raw_status=sent.status or "queued")


@hookimpl
async def provider_send_template(number: Number, message: OutboundMessage) -> SendResult:
    """A Content Template (`HX…` Content SID): the only way to write outside the 24-hour window."""
    template = message.template
    assert template is not None
    params = twilio_client.message_params(number, message.to, message.status_callback_url)
    params["content_sid"] = template.name
    if template.variables:
        params["content_variables"] = twilio_client.content_variables(template.variables)
    sent = await twilio_client.call(lambda: _clients.for_number(number).messages.create_async(**params))
    return SendResult(external_id=sent.sid, raw_status=sent.status or "queued")


@hookimpl
async def provider_fetch_status(number: Number, external_id: str) -> StatusUpdate:
    """The original system's getMessageStatus: ask Twilio where a message is now."""
    found = await twilio_client.call(lambda: _clients.for_number(number).messages(external_id).fetch_async())
    return StatusUpdate(
        external_id=external_id,
        raw_status=found.status or "",
        number_id=number.id,
        error_code=str(found.error_code) if found.error_code else None,
        error_text=found.error_message,
    )


@hookimpl
async def provider_download_media(host, number: Number, media: Media) -> tuple[bytes, str | None]:
    return await twilio_client.download(media.url or "", number.settings, host.settings.media.max_bytes)


DEMO_AUTH_TOKEN = "demo-token-not-a-secret"  # the shipped config's placeholder


@hookimpl
async def on_startup(host) -> None:
    for number in host.numbers_of("twilio"):
        if number.settings.auth_token.get_secret_value() == DEMO_AUTH_TOKEN:
            host.log.warning(
                "Twilio number %s uses the demo auth token from the shipped config: anyone can forge its "
                "webhooks. Set TWILIO_AUTH_TOKEN (docs/providers/twilio.md) before real traffic.", number.id
            )


@hookimpl
async def on_shutdown() -> None:
    await _clients.close()


@hookimpl
async def provider_simulate_webhook(number: Number, sender: str, text: str, public_url: str) -> SimulatedWebhook:
    """A text message as Twilio would post it, signed with the number's auth token."""
    settings: TwilioNumberSettings = number.settings  # type: ignore[assignment]
    sid = "SM" + secrets.token_hex(16)
    digits = sender.removeprefix("whatsapp:").lstrip("+")
    form = {
        "MessageSid": sid, "SmsMessageSid": sid, "SmsSid": sid, "AccountSid": settings.account_sid,
        "From": twilio_client.whatsapp_address(f"+{digits}"), "To": twilio_client.whatsapp_address(number.phone),
        "Body": text, "NumMedia": "0", "NumSegments": "1", "MessageType": "text", "SmsStatus": "received",
        "ProfileName": "hookline simulator", "WaId": digits, "ApiVersion": "2010-04-01",
    }
    if settings.messaging_service_sid:
        form["MessagingServiceSid"] = settings.messaging_service_sid
    signature = expected_signature(
        public_url + INBOUND_PATH, {name: [value] for name, value in form.items()}, settings.auth_token.get_secret_value()
    )
    return SimulatedWebhook(
        path=INBOUND_PATH,
        body=urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", SIGNATURE_HEADER: signature},
    )
