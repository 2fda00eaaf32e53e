"""Telegram Update objects → hookline's messages.

An update (https://core.telegram.org/bots/api#update) is ``{"update_id", "message": {...}}`` or
another field (``edited_message``, ``callback_query``, ``my_chat_member``…). Only ``message``
carries a customer's message; the rest are acknowledged and not stored. A message's id is unique
within its chat only, so hookline's id for it is ``<bot id>:<chat id>:<message id>``: the same on
every delivery of the update (Telegram redelivers what was not acknowledged) and distinct across
bots and chats. Telegram reports no delivery statuses for a bot's messages.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core import ContactInfo, InboundMessage, MalformedWebhook, Media, ParsedWebhook

#: A sent message is only ever "sent": Telegram has no delivery or read receipts for bots.
STATUS_MAP: dict[str, str] = {"sent": "sent"}

# Message fields that carry a file, the hookline kind, and the content type when Telegram gives none.
_FILES = (("document", "document", "application/octet-stream"), ("video", "video", "video/mp4"),
          ("audio", "audio", "audio/mpeg"), ("voice", "audio", "audio/ogg"), ("sticker", "sticker", "image/webp"))
_OTHER_KINDS = ("location", "contact", "venue", "poll", "dice")


def message_id(bot_id: str, chat_id: int | str, telegram_id: int | str) -> str:
    """hookline's id for a Telegram message, ours or the customer's."""
    return f"{bot_id}:{chat_id}:{telegram_id}"


def parse_update(payload: Any, number_id: str, bot_id: str) -> ParsedWebhook:
    """The messages one update carries (none, or one). MalformedWebhook when it is no update."""
    if not isinstance(payload, dict) or not _is_int(payload.get("update_id")):
        raise MalformedWebhook("not a Telegram update: no integer update_id")
    message = payload.get("message")
    if message is None:
        return ParsedWebhook()  # edits, button taps, membership changes: acknowledged, not stored
    inbound = parse_message(message, number_id, bot_id, payload)
    return ParsedWebhook(messages=[inbound] if inbound else [])


def parse_message(message: Any, number_id: str, bot_id: str, raw: dict[str, Any]) -> InboundMessage | None:
    if not isinstance(message, dict):
        raise MalformedWebhook("update.message is not an object")
    chat = message.get("chat")
    if not _is_int(message.get("message_id")) or not isinstance(chat, dict) or not _is_int(chat.get("id")):
        raise MalformedWebhook("a Telegram message needs an integer message_id and chat.id")
    sender = message.get("from") if isinstance(message.get("from"), dict) else {}
    text = _text(message.get("text")) or _text(message.get("caption"))
    kind, media, data = _content(message)
    if kind is None and text is None:
        return None  # service messages (members joined, title changed…): nothing a customer said
    reply = message.get("reply_to_message")
    return InboundMessage(
        number_id=number_id,
        external_id=message_id(bot_id, chat["id"], message["message_id"]),
        contact=ContactInfo(address=str(chat["id"]), name=_name(sender) or _name(chat)),
        kind=kind or "text",
        text=text,
        media=media,
        reply_to=message_id(bot_id, chat["id"], reply["message_id"]) if isinstance(reply, dict) and _is_int(reply.get("message_id")) else None,
        timestamp=datetime.fromtimestamp(message["date"], UTC) if _is_int(message.get("date")) and 0 <= message["date"] < 2**33 else None,
        data=data,
        raw=raw,
    )


def _content(message: dict[str, Any]) -> tuple[str | None, list[Media], dict[str, Any]]:
    photos = message.get("photo")
    if isinstance(photos, list) and photos:
        largest = photos[-1]  # Telegram lists the sizes smallest first
        if isinstance(largest, dict) and _text(largest.get("file_id")):
            return "image", [Media(content_type="image/jpeg", provider_media_id=largest["file_id"])], {}
    for field, kind, default_type in _FILES:
        item = message.get(field)
        if isinstance(item, dict) and _text(item.get("file_id")):
            media = Media(content_type=_text(item.get("mime_type")) or default_type, provider_media_id=item["file_id"],
                          filename=_text(item.get("file_name")))
            return kind, [media], {}
    for field in _OTHER_KINDS:
        if isinstance(message.get(field), dict):
            return field, [], {field: message[field]}
    return None, [], {}


def _name(person: dict[str, Any]) -> str | None:
    parts = [_text(person.get("first_name")), _text(person.get("last_name"))]
    name = " ".join(part for part in parts if part) or _text(person.get("title")) or _text(person.get("username"))
    return name[:255] if name else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def sample_update(update_id: int, chat_id: int, text: str, name: str = "hookline simulator") -> dict[str, Any]:
    """A private-chat text update as Telegram posts it (for `hookline simulate telegram`)."""
    person = {"id": chat_id, "is_bot": False, "first_name": name}
    return {"update_id": update_id, "message": {
        "message_id": update_id % 2**31, "from": person, "chat": {**person, "type": "private"},
        "date": int(datetime.now(UTC).timestamp()), "text": text,
    }}
