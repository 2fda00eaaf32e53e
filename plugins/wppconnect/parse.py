"""WPPConnect Server webhook bodies → hookline's provider-neutral types.

The server posts JSON ``{"event": <name>, "session": <session>, …event data flattened}``
(PROTOCOLS.md 3.4). ``onmessage`` carries a serialized WhatsApp message, ``onack`` the raw message
model with its new ``ack``; ``qrcode``, ``status-find``, ``closesession`` and ``logoutsession``
say how the session is doing. Pure functions: the plugin applies the session events.

Addresses are WhatsApp ids, never assumed to be phones: ``<digits>@c.us`` is a phone and becomes
``+<digits>``; ``<id>@lid`` (privacy ids), ``<id>@g.us`` (groups) and anything else stay as sent.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.types import ContactInfo, InboundMessage, MalformedWebhook, Media, ParsedWebhook, StatusUpdate

# WPPConnect `ack` (WPP-lib AckType) → hookline status. The core never moves a message backwards,
# so `0` (CLOCK: still on the phone) maps to the lowest "the provider has it" status. `5` (PEER)
# is left out: kept as an audit event, it moves nothing.
STATUS_MAP: dict[str, str] = {
    "-7": "failed",  # MD_DOWNGRADE
    "-6": "failed",  # INACTIVE
    "-5": "failed",  # CONTENT_UNUPLOADABLE
    "-4": "failed",  # CONTENT_TOO_BIG
    "-3": "failed",  # CONTENT_GONE
    "-2": "failed",  # EXPIRED
    "-1": "failed",  # FAILED
    "0": "queued",  # CLOCK: waiting to leave the phone
    "1": "sent",  # SENT: reached WhatsApp's server
    "2": "delivered",  # RECEIVED: reached the customer's device
    "3": "read",
    "4": "played",  # voice notes and videos
}

ACK_ERRORS: dict[int, tuple[str, str]] = {
    -7: ("MD_DOWNGRADE", "WhatsApp refused the message (multi-device downgrade)"),
    -6: ("INACTIVE", "the recipient's account is inactive"),
    -5: ("CONTENT_UNUPLOADABLE", "the file could not be uploaded to WhatsApp"),
    -4: ("CONTENT_TOO_BIG", "the file is too big for WhatsApp"),
    -3: ("CONTENT_GONE", "the media is no longer available"),
    -2: ("EXPIRED", "the message expired before it could be sent"),
    -1: ("FAILED", "WhatsApp could not send the message"),
}

# Session states hookline keeps per number (`hookline numbers`, `hookline wppconnect status`).
INITIALIZING, QRCODE, PHONECODE, CONNECTED, CLOSED = "INITIALIZING", "QRCODE", "PHONECODE", "CONNECTED", "CLOSED"
DISCONNECTED, UNAUTHORIZED, UNREACHABLE = "DISCONNECTED", "UNAUTHORIZED", "UNREACHABLE"

# `status-find` values (WPP-lib StatusFind) → session state and what it means for an operator.
STATUS_FIND: dict[str, tuple[str, str | None]] = {
    "isLogged": (CONNECTED, None),
    "inChat": (CONNECTED, None),
    "qrReadSuccess": (INITIALIZING, "QR code read; WhatsApp is syncing"),
    "notLogged": (QRCODE, "not paired: scan the QR code"),
    "qrReadFail": (QRCODE, "the QR code was not scanned in time"),
    "qrReadError": (QRCODE, "the QR code could not be read"),
    "phoneNotConnected": (DISCONNECTED, "the phone is offline"),
    "disconnectedMobile": (CLOSED, "the phone disconnected this session"),
    "desconnectedMobile": (CLOSED, "the phone disconnected this session"),  # the spelling some versions send
    "autocloseCalled": (CLOSED, "closed by WPPConnect (QR code not scanned in time)"),
    "browserClose": (CLOSED, "the WPPConnect browser closed"),
    "serverClose": (CLOSED, "the WPPConnect server closed the session"),
}

_MEDIA_TYPES = {"image", "video", "audio", "ptt", "document", "sticker"}
_NOT_MESSAGES = {
    "e2e_notification", "notification", "notification_template", "gp2", "protocol", "ciphertext",
    "revoked", "call_log", "broadcast_notification", "pinned_message", "debug",
}
_LONG = 512  # a body longer than this in a non-text message is base64, not words


@dataclass(slots=True)
class SessionEvent:
    """A webhook that says how the session is doing (not a message)."""

    state: str
    detail: str | None = None


@dataclass(slots=True)
class Parsed:
    webhook: ParsedWebhook = field(default_factory=ParsedWebhook)
    session: SessionEvent | None = None


def parse_event(payload: Any, number_id: str, session: str, ignore_groups: bool = True) -> Parsed:
    """One webhook body, already proven to be for ``number_id`` (whose session is ``session``)."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("event"), str):
        raise MalformedWebhook("WPPConnect webhook without an `event`")
    sent_for = payload.get("session")
    if sent_for is not None and sent_for != session:
        raise MalformedWebhook(f"event for session {sent_for!r} on the webhook of session {session!r}")
    event = payload["event"]
    if event in ("onmessage", "unreadmessages"):
        message = parse_message(payload, number_id, ignore_groups)
        return Parsed(ParsedWebhook(messages=[message] if message else []))
    if event == "onack":
        update = parse_ack(payload, number_id)
        return Parsed(ParsedWebhook(statuses=[update] if update else []))
    return Parsed(session=session_event(payload))


def session_event(payload: Mapping[str, Any]) -> SessionEvent | None:
    """What a lifecycle webhook means for the session; None for other events (presence…)."""
    event = payload.get("event")
    if event == "qrcode":
        return SessionEvent(QRCODE, "scan the QR code (hookline wppconnect qr)")
    if event == "phoneCode":
        return SessionEvent(PHONECODE, "enter the pairing code on the phone")
    if event == "status-find":
        found = STATUS_FIND.get(str(payload.get("status")))
        return SessionEvent(*found) if found else None
    if event == "closesession":
        return SessionEvent(CLOSED, "session closed")
    if event == "logoutsession":
        return SessionEvent(CLOSED, "logged out of WhatsApp: start the session and scan a new QR code")
    return None


def server_state(status: Any) -> str:
    """A ``status`` from start-session/status-session as a session state (null: never started)."""
    if not isinstance(status, str) or not status:
        return CLOSED
    return {"qrcode": QRCODE, "phonecode": PHONECODE, "notlogged": QRCODE}.get(status.lower(), status.upper())


# --------------------------------------------------------------------------- messages


def parse_message(payload: Mapping[str, Any], number_id: str, ignore_groups: bool = True) -> InboundMessage | None:
    """A customer message, or None for what is not one (our own, status, group when ignored…)."""
    external_id = jid(payload.get("id"))
    chat = jid(payload.get("chatId")) or jid(payload.get("from"))
    if not external_id or not chat:
        raise MalformedWebhook("WPPConnect message without `id` or `from`")
    kind_raw = str(payload.get("type") or "chat")
    if payload.get("fromMe") is True or external_id.startswith("true_"):
        return None  # our own messages (sent from the phone or by us)
    if chat.endswith(("@broadcast", "@newsletter")) or kind_raw in _NOT_MESSAGES:
        return None  # statuses, broadcast lists, channels, system notices
    is_group = bool(payload.get("isGroupMsg")) or chat.endswith("@g.us")
    if is_group and ignore_groups:
        return None

    data: dict[str, Any] = {}
    media: list[Media] = []
    text: str | None = None
    body = payload.get("body") if isinstance(payload.get("body"), str) else None
    raw = dict(payload)
    if kind_raw == "chat":
        kind, text = "text", body
    elif kind_raw in _MEDIA_TYPES or payload.get("mimetype"):
        kind = {"ptt": "audio"}.get(kind_raw, kind_raw if kind_raw in _MEDIA_TYPES else "document")
        if kind_raw == "ptt":
            data["voice"] = True
        item = _media(payload, external_id)
        media.append(item)
        text = _str(payload.get("caption"))
        if item.data is not None:  # the file itself: it goes to the media store, not the payload
            for name in ("body", "content"):
                if raw.get(name) == body:
                    raw[name] = f"<{len(item.data)} bytes, in hookline's media store>"
    elif kind_raw == "location":
        kind = "location"
        label = _str(payload.get("loc"))
        data["location"] = _compact({"latitude": _float(payload.get("lat")), "longitude": _float(payload.get("lng")),
                                     "name": label})
        text = label
    elif kind_raw in ("vcard", "multi_vcard"):
        kind = "contacts"
        if kind_raw == "vcard":
            cards = [{"name": _str(payload.get("vcardFormattedName")), "vcard": body}]
        else:
            cards = [{"name": _str(card.get("displayName")), "vcard": card.get("vcard")}
                     for card in payload.get("vcardList") or [] if isinstance(card, Mapping)]
        data["contacts"] = cards
        text = ", ".join(card["name"] for card in cards if card["name"]) or None
    elif kind_raw == "list_response":
        kind = "interactive"
        reply = payload.get("listResponse") if isinstance(payload.get("listResponse"), Mapping) else {}
        selected = reply.get("singleSelectReply") if isinstance(reply.get("singleSelectReply"), Mapping) else {}
        text = _str(reply.get("title")) or body
        data["interactive"] = _compact({"type": "list_reply", "id": _str(selected.get("selectedRowId")) or _str(payload.get("selectedRowId")),
                                        "title": text, "description": _str(reply.get("description"))})
    elif kind_raw in ("buttons_response", "template_button_reply"):
        kind = "button"
        text = body
        button_id = payload.get("selectedButtonId") if kind_raw == "buttons_response" else payload.get("selectedId")
        data["button"] = _compact({"id": _str(button_id), "text": body, "index": payload.get("selectedIndex")})
    else:  # a type hookline does not know yet: keep it, with its words when it has some
        kind = kind_raw
        text = body if body and len(body) <= _LONG else None
    for name in ("body", "content"):  # thumbnails and files: never into the stored payload
        value = raw.get(name)
        if kind != "text" and isinstance(value, str) and len(value) > _LONG:
            raw[name] = f"<{len(value)} characters of base64, not kept>"

    author = jid(payload.get("author"))
    if is_group:
        data["group"] = True
        if author:
            data["author"] = contact_address(author)
            data["author_name"] = _name(payload)
        contact = ContactInfo(address=chat)
    else:
        contact = ContactInfo(address=contact_address(chat), name=_name(payload), wa_id=_wa_id(chat))
    return InboundMessage(
        number_id=number_id,
        external_id=external_id,
        contact=contact,
        kind=kind,
        text=text,
        media=media,
        reply_to=jid(payload.get("quotedMsgId")) or None,
        timestamp=_timestamp(payload.get("t") or payload.get("timestamp")),
        data=data,
        raw=raw,
    )


def parse_ack(payload: Mapping[str, Any], number_id: str) -> StatusUpdate | None:
    """``onack``: the status of one of our messages; None for acks of the customer's messages."""
    ident = payload.get("id")
    external_id = jid(ident)
    ack = payload.get("ack")
    if not external_id or isinstance(ack, bool) or not isinstance(ack, (int, str)):
        raise MalformedWebhook("WPPConnect onack without `id` or `ack`")
    from_me = ident.get("fromMe") if isinstance(ident, Mapping) and "fromMe" in ident else external_id.startswith("true_")
    if not from_me:
        return None
    try:
        value = int(ack)
    except ValueError:
        raise MalformedWebhook(f"WPPConnect onack with ack {ack!r}") from None
    error = ACK_ERRORS.get(value) if value < 0 else None
    raw = dict(payload)
    if isinstance(raw.get("body"), str) and len(raw["body"]) > _LONG:
        raw["body"] = f"<{len(raw['body'])} characters, not kept>"
    return StatusUpdate(
        external_id=external_id,
        raw_status=str(value),
        number_id=number_id,
        error_code=error[0] if error else None,
        error_text=error[1] if error else None,
        timestamp=_timestamp(payload.get("t")),
        raw=raw,
    )


# --------------------------------------------------------------------------- addresses


def jid(value: Any) -> str:
    """A WhatsApp id as a string: serialized ids are strings, the raw model's are objects."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        serialized = value.get("_serialized")
        return serialized if isinstance(serialized, str) else ""
    return ""


def contact_address(whatsapp_id: str) -> str:
    """``5511900000001@c.us`` → ``+5511900000001``; ``…@lid``, groups and the rest stay as sent."""
    user, _, server = whatsapp_id.partition("@")
    user = user.split(":", 1)[0]  # a device suffix, if any
    if server in ("c.us", "s.whatsapp.net") and user.isdigit():
        return f"+{user}"
    return whatsapp_id


def _wa_id(whatsapp_id: str) -> str | None:
    address = contact_address(whatsapp_id)
    return address[1:] if address.startswith("+") else None


def _name(payload: Mapping[str, Any]) -> str | None:
    sender = payload.get("sender") if isinstance(payload.get("sender"), Mapping) else {}
    for value in (payload.get("notifyName"), sender.get("pushname"), sender.get("verifiedName"), sender.get("name")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


# --------------------------------------------------------------------------- media


def decode_base64(value: Any) -> bytes | None:
    """The bytes of a base64 string (a ``data:`` URI too); None when it is not base64."""
    if not isinstance(value, str) or not value:
        return None
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data or None


def _media(payload: Mapping[str, Any], external_id: str) -> Media:
    """The file: in ``body`` as base64 when the server's ``webhook.autoDownload`` is on (its
    default); otherwise (or with ``uploadS3``) fetched later through the server's download-media."""
    content_type = _str(payload.get("mimetype"))
    filename = _str(payload.get("filename"))
    data = None if payload.get("fileUrl") else decode_base64(payload.get("body"))
    if data is not None:
        return Media(content_type=content_type, filename=filename, data=data)
    return Media(content_type=content_type, filename=filename, provider_media_id=external_id)


# --------------------------------------------------------------------------- the simulator


def sample_message(session: str, sender: str, ours: str, text: str) -> dict[str, Any]:
    """An ``onmessage`` text as the server posts it (the shape of a real capture, trimmed)."""
    sender_id = sender if "@" in sender else f"{''.join(ch for ch in sender if ch.isdigit())}@c.us"
    our_id = f"{''.join(ch for ch in ours if ch.isdigit())}@c.us"
    now = int(datetime.now(UTC).timestamp())
    return {
        "event": "onmessage", "session": session, "id": f"false_{sender_id}_{secrets.token_hex(10).upper()}",
        "body": text, "type": "chat", "t": now, "notifyName": "hookline simulator", "from": sender_id, "to": our_id,
        "self": "in", "ack": 1, "isNewMsg": True, "chatId": sender_id, "fromMe": False,
        "sender": {"id": sender_id, "pushname": "hookline simulator", "isMe": False, "isUser": True},
        "timestamp": now, "content": text, "isGroupMsg": False, "mediaData": {},
    }


# --------------------------------------------------------------------------- helpers


def _str(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    seconds = value / 1000 if value > 10**11 else value  # some events count milliseconds
    return datetime.fromtimestamp(seconds, UTC)


def _compact(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
