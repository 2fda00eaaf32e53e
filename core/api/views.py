"""How rows look in API answers and live events. Secrets never appear: they are masked."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import SecretStr

from core.storage.models import Contact, Conversation, Message, NumberRow
from core.types import Number, RateLimit

MASK = "********"


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def message_json(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "direction": message.direction.value,
        "kind": message.kind,
        "text": message.text,
        "media": [{k: item.get(k) for k in ("content_type", "filename", "key", "error") if item.get(k) is not None} for item in message.media],
        "provider": message.provider,
        "external_id": message.external_id,
        "sender": message.sender,
        "status": message.status.value,
        "error_code": message.error_code,
        "error_text": message.error_text,
        "sent_at": _time(message.sent_at),
        "status_at": _time(message.status_at),
        "created_at": _time(message.created_at),
    }


def contact_json(contact: Contact) -> dict[str, Any]:
    return {"id": contact.id, "address": contact.address, "name": contact.name}


def conversation_json(conversation: Conversation, contact: Contact | None, unread: int) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "number_id": conversation.number_id,
        "contact": contact_json(contact) if contact is not None else {"id": conversation.contact_id},
        "owner": conversation.owner.value,
        "state": conversation.state.value,
        "unread": unread,
        "last_message_at": _time(conversation.last_message_at),
        "created_at": _time(conversation.created_at),
    }


def masked_settings(number: Number | None, row: NumberRow) -> dict[str, Any]:
    """Public settings as they are; secret ones as a mask when set (write-only)."""
    if number is None:
        shown: dict[str, Any] = dict(row.public_settings)
        shown.update({name: MASK for name in row.sealed_settings})
        return shown
    settings = number.settings
    shown = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        shown[name] = (MASK if value.get_secret_value() else "") if isinstance(value, SecretStr) else _plain(value)
    return shown


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else str(value)


def number_json(row: NumberRow, number: Number | None, limits: tuple[RateLimit, RateLimit | None]) -> dict[str, Any]:
    """`limits`: the number's limit and limit per recipient in force (core/limits.py)."""
    rate_limit, recipient_rate_limit = limits
    return {
        "id": row.id,
        "provider": row.provider,
        "phone": row.phone,
        "display_name": row.display_name,
        "managed_by_config": row.managed_by_config,
        "active": number is not None,
        "state": row.state,
        "state_detail": row.state_detail,
        "state_at": _time(row.state_at),
        "settings": masked_settings(number, row),
        "rate_limit": rate_limit.to_json(),
        "recipient_rate_limit": recipient_rate_limit.to_json() if recipient_rate_limit else None,
    }
