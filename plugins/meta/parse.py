"""Meta webhook batches → hookline's provider-neutral types (PROTOCOLS.md 2.3–2.5).

A POST carries ``entry[] × changes[] × value.messages[] / value.statuses[]``, for any of the
numbers of the app that signed it. Each change names its number by ``value.metadata.phone_number_id``;
``parse_batch`` routes by that id and reports what it could not route instead of failing the batch,
so that the request is still acknowledged (Meta retries anything else for 7 days). Meta adds fields
without notice: nothing here rejects an unknown one, and each message keeps its raw JSON.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.types import ContactInfo, InboundMessage, MalformedWebhook, Media, ParsedWebhook, StatusUpdate
from plugins.meta.errors import error_fields, explain

log = logging.getLogger("hookline.meta")

# Meta status → hookline DeliveryStatus. The core never moves a message backwards, so a `read`
# that arrives before its `delivered` (or instead of it: Meta skips `delivered` when both happen
# together) simply wins. The last three are the `message_status` of a template send's answer
# (pacing): accepted by Meta, not yet sent.
STATUS_MAP: dict[str, str] = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "played": "played",  # first play of a voice message
    "failed": "failed",
    "accepted": "queued",
    "held_for_quality_assessment": "queued",
    "paused": "queued",
}

MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")


@dataclass(slots=True)
class ParsedBatch:
    """What one proven POST carried, and what was left out of ``webhook`` (with why)."""

    webhook: ParsedWebhook = field(default_factory=ParsedWebhook)
    #: updates per ``phone_number_id`` that names none of the numbers offered: dropped.
    unrouted: Counter[str] = field(default_factory=Counter)
    #: changes of other fields (template status, account updates …): acknowledged, not stored.
    other_fields: Counter[str] = field(default_factory=Counter)
    #: system-level ``value.errors`` Meta reported for a number.
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: messages or statuses without the ids we key on.
    skipped: int = 0


def parse_batch(payload: Any, numbers: Mapping[str, str]) -> ParsedBatch:
    """Every message and status of a webhook body (already ``json.loads``-ed).

    ``numbers`` maps each ``phone_number_id`` we may store for to hookline's number id. Raises
    ``MalformedWebhook`` only when the body is not a webhook envelope at all.
    """
    if not isinstance(payload, Mapping) or not isinstance(payload.get("entry", []), list):
        raise MalformedWebhook("Meta webhook body is not an object with an entry list")
    batch = ParsedBatch()
    for entry in payload.get("entry") or []:
        if not isinstance(entry, Mapping):
            batch.skipped += 1
            continue
        for change in entry.get("changes") or []:
            if not isinstance(change, Mapping):
                batch.skipped += 1
                continue
            _parse_change(batch, entry, change, numbers)
    return batch


def _parse_change(batch: ParsedBatch, entry: Mapping[str, Any], change: Mapping[str, Any], numbers: Mapping[str, str]) -> None:
    field_name = str(change.get("field") or "")
    value = change.get("value")
    if field_name != "messages" or not isinstance(value, Mapping):
        batch.other_fields[field_name or "?"] += 1
        return
    metadata = value.get("metadata") if isinstance(value.get("metadata"), Mapping) else {}
    phone_number_id = str(metadata.get("phone_number_id") or "")
    messages = [item for item in value.get("messages") or [] if isinstance(item, Mapping)]
    statuses = [item for item in value.get("statuses") or [] if isinstance(item, Mapping)]
    for error in value.get("errors") or []:
        code, title, details = error_fields(error)
        batch.errors.append({"phone_number_id": phone_number_id, "code": code, "text": explain(code, title, details)})
    number_id = numbers.get(phone_number_id)
    if number_id is None:
        if messages or statuses:
            batch.unrouted[phone_number_id or "?"] += len(messages) + len(statuses)
        return
    contacts = [item for item in value.get("contacts") or [] if isinstance(item, Mapping)]
    context = {"metadata": dict(metadata), "waba_id": entry.get("id")}
    for item in messages:
        message = parse_message(item, contacts, number_id, context)
        if message is None:
            batch.skipped += 1
        else:
            batch.webhook.messages.append(message)
    for item in statuses:
        status = parse_status(item, number_id)
        if status is None:
            batch.skipped += 1
        else:
            batch.webhook.statuses.append(status)


# --------------------------------------------------------------------------- messages


def parse_message(
    message: Mapping[str, Any],
    contacts: list[Mapping[str, Any]],
    number_id: str,
    context: Mapping[str, Any] | None = None,
) -> InboundMessage | None:
    """One customer message of ``value.messages[]``; None without an id or a sender."""
    external_id = _text(message.get("id"))
    contact_object = contact_for(message, contacts)
    contact = contact_info(message, contact_object)
    if not external_id or contact is None:
        log.warning("meta: message without id or sender skipped (id %r)", external_id)
        return None
    kind = _text(message.get("type")) or "unknown"
    text: str | None = None
    media: list[Media] = []
    data: dict[str, Any] = {}
    reply_to: str | None = None
    body = message.get(kind) if isinstance(message.get(kind), Mapping) else {}

    if kind == "text":
        text = _text(body.get("body"))
    elif kind in MEDIA_KINDS:
        media.append(Media(
            content_type=_text(body.get("mime_type")),
            url=_text(body.get("url")),
            provider_media_id=_text(body.get("id")),
            filename=_text(body.get("filename")),
        ))
        text = _text(body.get("caption"))
        for flag in ("voice", "animated"):
            if body.get(flag) is True:
                data[flag] = True
    elif kind == "location":
        data["location"] = _compact({
            "latitude": body.get("latitude"), "longitude": body.get("longitude"),
            "label": _text(body.get("name")), "address": _text(body.get("address")), "url": _text(body.get("url")),
        })
    elif kind == "contacts":
        data["contacts"] = list(message.get("contacts") or [])
    elif kind == "interactive":
        kind, text = _interactive(body, data)
    elif kind == "button":  # a template's quick-reply button
        data["button"] = _compact({"payload": _text(body.get("payload")), "text": _text(body.get("text")), "type": "quick_reply"})
        text = data["button"].get("text")
    elif kind == "reaction":
        emoji = body.get("emoji") or ""
        reply_to = _text(body.get("message_id"))
        data["reaction"] = {"message_id": reply_to, "emoji": emoji}
        if not emoji:
            data["reaction"]["removed"] = True  # an empty emoji takes the reaction back
        text = emoji or None
    elif kind == "system":
        data["system"] = dict(body)
        text = _text(body.get("body"))
    elif body:
        data[kind] = dict(body)  # order, unsupported's details, kinds Meta adds later

    errors = [_error(item) for item in message.get("errors") or [] if isinstance(item, Mapping)]
    if errors:
        data["errors"] = errors

    quoted = message.get("context")
    if isinstance(quoted, Mapping):
        reply_to = reply_to or _text(quoted.get("id"))
        for flag in ("forwarded", "frequently_forwarded"):
            if quoted.get(flag) is True:
                data[flag] = True
        if isinstance(quoted.get("referred_product"), Mapping):
            data["referred_product"] = dict(quoted["referred_product"])
    if isinstance(message.get("referral"), Mapping):
        data["referral"] = dict(message["referral"])
    user_id = _text((contact_object or {}).get("user_id")) or _text(message.get("from_user_id"))
    if user_id:
        data["user_id"] = user_id

    return InboundMessage(
        number_id=number_id,
        external_id=external_id,
        contact=contact,
        kind=kind,
        text=text,
        media=media,
        reply_to=reply_to,
        timestamp=_timestamp(message.get("timestamp")),
        data=data,
        raw={"message": dict(message), "contact": dict(contact_object or {}), **(context or {})},
    )


def _interactive(body: Mapping[str, Any], data: dict[str, Any]) -> tuple[str, str | None]:
    """A tap on reply buttons (kind ``button``) or a list row (kind ``interactive``); both carry
    the option's id as ``data["button"]["payload"]``, as a template button does."""
    choice_type = _text(body.get("type")) or ""
    data["interactive"] = dict(body)
    choice = body.get(choice_type) if isinstance(body.get(choice_type), Mapping) else None
    if choice_type in ("button_reply", "list_reply") and choice is not None:
        data["button"] = _compact({
            "payload": _text(choice.get("id")), "text": _text(choice.get("title")),
            "description": _text(choice.get("description")), "type": choice_type,
        })
        return ("button" if choice_type == "button_reply" else "interactive"), data["button"].get("text")
    return "interactive", None  # nfm_reply (Flows) and others: data["interactive"] has it all


def contact_for(message: Mapping[str, Any], contacts: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The ``contacts[]`` item of this message's sender: by ``wa_id``, else by ``user_id``, else the
    only one."""
    sender, sender_user = _text(message.get("from")), _text(message.get("from_user_id"))
    for contact in contacts:
        if sender and _text(contact.get("wa_id")) == sender:
            return contact
    for contact in contacts:
        if sender_user and _text(contact.get("user_id")) == sender_user:
            return contact
    return contacts[0] if len(contacts) == 1 else None


def contact_info(message: Mapping[str, Any], contact: Mapping[str, Any] | None) -> ContactInfo | None:
    """Who wrote. Keyed by ``wa_id`` (as ``+<digits>``, the address the other providers use for the
    same person); by the business-scoped ``user_id`` when ``wa_id`` is empty (username adopters)."""
    contact = contact or {}
    wa_id = _text(contact.get("wa_id")) or _text(message.get("from"))
    user_id = _text(contact.get("user_id")) or _text(message.get("from_user_id"))
    profile = contact.get("profile") if isinstance(contact.get("profile"), Mapping) else {}
    name = _text(profile.get("name")) or _text(profile.get("username"))
    if wa_id:
        return ContactInfo(address=f"+{wa_id}" if wa_id.isdigit() else wa_id, name=name, wa_id=wa_id)
    if user_id:
        return ContactInfo(address=user_id, name=name, wa_id=None)
    return None


# --------------------------------------------------------------------------- statuses


def parse_status(status: Mapping[str, Any], number_id: str) -> StatusUpdate | None:
    """One ``value.statuses[]`` item about a message we sent; None without id or status."""
    external_id = _text(status.get("id"))
    raw_status = _text(status.get("status"))
    if not external_id or not raw_status:
        log.warning("meta: status without id or status skipped (id %r)", external_id)
        return None
    errors = [item for item in status.get("errors") or [] if isinstance(item, Mapping)]
    code, title, details = error_fields(errors[0]) if errors else (None, None, None)
    return StatusUpdate(
        external_id=external_id,
        raw_status=raw_status.lower(),
        number_id=number_id,
        error_code=code,
        error_text=explain(code, title, details) if errors else None,
        timestamp=_timestamp(status.get("timestamp")),
        raw=dict(status),
    )


# --------------------------------------------------------------------------- helpers


def _error(item: Mapping[str, Any]) -> dict[str, Any]:
    code, title, details = error_fields(item)
    return _compact({"code": code, "title": title, "details": details, "text": explain(code, title, details)})


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip() if isinstance(value, (str, int)) else ""
    return text or None


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(str(value)), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _compact(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
