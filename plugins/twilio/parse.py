"""Twilio webhook forms → hookline's provider-neutral types.

Input is the url-encoded body as ``parse_qs`` gives it (every name → list of values). Twilio adds
parameters without notice, so nothing here rejects an unknown one: ``raw`` keeps them all. Only a
form without the ids we key on (``MessageSid``, and ``From`` for messages) is malformed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from core.types import ContactInfo, InboundMessage, MalformedWebhook, Media, StatusUpdate
from plugins.twilio.errors import describe

Form = Mapping[str, Sequence[str]]

# Twilio MessageStatus → hookline DeliveryStatus. The core ranks statuses and never moves a message
# backwards, so a status mapped too low is harmless and one mapped too high would lie: when unsure,
# map down.
STATUS_MAP: dict[str, str] = {
    "accepted": "queued",  # a Messaging Service took it; not yet handed to a sender
    "scheduled": "queued",  # will be sent at its scheduled time
    "queued": "queued",
    "sending": "queued",  # Twilio is still handing it to the channel: not sent yet
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",  # WhatsApp read receipt (EventType=READ)
    # Some parts arrived and some did not. `sent` claims only what is certain, and still lets a
    # later `delivered` or `failed` replace it.
    "partially_delivered": "sent",
    "undelivered": "failed",  # the channel could not deliver (ErrorCode says why)
    "failed": "failed",
    "canceled": "failed",  # a scheduled message was canceled: it will never go out
    # Inbound-only statuses; they should never arrive for our outbound messages. `queued` is the
    # lowest "the provider has it" status: it cannot overtake anything real, and mapping them keeps
    # a stray one from being logged as an unknown status. Never `delivered`: `received` is not a
    # delivery receipt.
    "receiving": "queued",
    "received": "queued",
}

CHANNEL_PREFIX = "whatsapp:"
_MEDIA_URL = re.compile(r"MediaUrl(\d+)\Z")
_CAMEL = re.compile(r"(?<!^)(?=[A-Z][a-z])|(?<=[a-z0-9])(?=[A-Z])")
_MEDIA_KINDS = ("image", "audio", "video")


def parse_inbound(form: Form, number_id: str) -> InboundMessage:
    """One customer message from an inbound-message webhook form."""
    external_id = _first(form, "MessageSid")
    sender = _first(form, "From")
    if not external_id or not sender:
        raise MalformedWebhook("Twilio inbound webhook without MessageSid or From")
    media = _media(form)
    data: dict[str, Any] = {}
    text = _first(form, "Body")

    button = _compact({"text": _first(form, "ButtonText"), "payload": _first(form, "ButtonPayload"),
                       "type": _first(form, "ButtonType")})
    if "text" in button or "payload" in button:
        data["button"] = button
        text = text or button.get("text")
    location = _location(form)
    if location:
        data["location"] = location
    referral = _referral(form)
    if referral:
        data["referral"] = referral
    for name, key in (("InteractiveData", "interactive"), ("FlowData", "flow")):
        value = _json(_first(form, name))
        if value is not None:
            data[key] = value
    for name, key in (("Forwarded", "forwarded"), ("FrequentlyForwarded", "frequently_forwarded")):
        if (_first(form, name) or "").lower() == "true":
            data[key] = True

    return InboundMessage(
        number_id=number_id,
        external_id=external_id,
        contact=ContactInfo(address=channel_address(sender), name=_first(form, "ProfileName"),
                            wa_id=_first(form, "WaId")),
        kind=_kind(form, data, media),
        text=text,
        media=media,
        reply_to=_first(form, "OriginalRepliedMessageSid"),
        data=data,
        raw=raw_params(form),
    )


def parse_status(form: Form, number_id: str) -> StatusUpdate:
    """One status callback for a message we sent.

    ``raw_status`` is Twilio's word, lower-cased; the core maps it with ``STATUS_MAP``. Without a
    ChannelStatusMessage or ErrorMessage, a known ErrorCode still gets a readable ``error_text``.
    """
    external_id = _first(form, "MessageSid")
    raw_status = _first(form, "MessageStatus") or _first(form, "SmsStatus")
    if not external_id or not raw_status:
        raise MalformedWebhook("Twilio status callback without MessageSid or MessageStatus")
    error_code = _first(form, "ErrorCode")
    error_text = _first(form, "ChannelStatusMessage") or _first(form, "ErrorMessage") or describe(error_code)
    return StatusUpdate(
        external_id=external_id,
        raw_status=raw_status.strip().lower(),
        number_id=number_id,
        error_code=error_code,
        error_text=error_text,
        raw=raw_params(form),
    )


def channel_address(address: str) -> str:
    """``whatsapp:+15550100123`` → ``+15550100123``: the contact's address without the channel."""
    address = address.strip()
    if address[: len(CHANNEL_PREFIX)].lower() == CHANNEL_PREFIX:
        address = address[len(CHANNEL_PREFIX) :]
    return address


def raw_params(form: Form) -> dict[str, Any]:
    """Every parameter, unknown ones too: one value as a string, a repeated name as a list."""
    raw: dict[str, Any] = {}
    for name, values in form.items():
        if isinstance(values, str):
            raw[name] = values
        else:
            listed = list(values)
            raw[name] = listed[0] if len(listed) == 1 else listed
    return raw


# --------------------------------------------------------------------------- helpers


def _first(form: Form, name: str) -> str | None:
    """The first value of ``name``; None when absent or empty (Twilio sends empty Body etc.)."""
    values = form.get(name)
    if not values:
        return None
    value = values if isinstance(values, str) else values[0]
    return value or None


def _compact(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _media(form: Form) -> list[Media]:
    """Every ``MediaUrlN`` with its ``MediaContentTypeN``, in N order (NumMedia is not trusted)."""
    indexed: list[tuple[int, str]] = []
    for name in form:
        match = _MEDIA_URL.match(name)
        if match:
            indexed.append((int(match.group(1)), match.group(1)))
    items: list[Media] = []
    for _, n in sorted(indexed):
        url = _first(form, f"MediaUrl{n}")
        if not url:
            continue
        tail = url.rstrip("/").rsplit("/", 1)[-1]
        items.append(Media(
            content_type=_first(form, f"MediaContentType{n}"),
            url=url,
            provider_media_id=tail if tail.startswith("ME") else None,
        ))
    return items


def _location(form: Form) -> dict[str, Any]:
    latitude, longitude = _float(_first(form, "Latitude")), _float(_first(form, "Longitude"))
    location = _compact({"latitude": latitude, "longitude": longitude,
                         "address": _first(form, "Address"), "label": _first(form, "Label")})
    return location if latitude is not None and longitude is not None else {}


def _referral(form: Form) -> dict[str, Any]:
    """``Referral*`` params (click-to-WhatsApp ads) as snake_case keys, unknown ones included.

    ``ReferralNumMedia=0`` rides on every WhatsApp message; alone it is not a referral.
    """
    referral: dict[str, Any] = {}
    for name in form:
        if name.startswith("Referral") and len(name) > len("Referral"):
            value = _first(form, name)
            if value is not None:
                referral[_snake(name[len("Referral"):])] = value
    if set(referral) <= {"num_media"} and referral.get("num_media", "0") == "0":
        return {}
    return referral


def _kind(form: Form, data: Mapping[str, Any], media: Sequence[Media]) -> str:
    """A button tap, else Twilio's MessageType, else what the content shows (older payloads)."""
    if "button" in data:  # some taps arrive typed `interactive`; the tap is what flows react to
        return "button"
    message_type = (_first(form, "MessageType") or "").strip().lower()
    if message_type:
        return message_type
    if "location" in data:
        return "location"
    if media:
        major = (media[0].content_type or "").lower().partition("/")[0]
        return major if major in _MEDIA_KINDS else "document"
    return "text"


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _json(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value  # keep what Twilio sent, even if it is not JSON


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()
