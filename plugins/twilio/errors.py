"""Twilio REST failures → ``ProviderError``: retry what can get better, fail the rest clearly.

The send worker retries a ``retryable`` error with backoff (or after ``retry_after`` seconds) and
marks the message ``failed`` with ``code`` and ``message`` otherwise, so the one decision made here
is which failures are worth another try. Twilio's error body is
``{"code": 21211, "message": "...", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from core.types import ProviderError

# Twilio error codes that a later attempt can fix: rate limits, Twilio's or the channel's.
RETRYABLE_CODES: frozenset[str] = frozenset({"20429", "63018"})

# What the codes we meet mean, worded for the agent who sees a failed message.
REASONS: dict[str, str] = {
    "20003": "Twilio rejected the credentials (account SID / auth token): fix the number's settings",
    "20429": "Twilio rate limit (too many requests)",
    "21211": "the recipient is not a valid phone number",
    "63003": "the recipient cannot be reached on WhatsApp (no WhatsApp account at that number)",
    "63007": "the sending number is not a WhatsApp sender on this Twilio account",
    "63016": (
        "the 24-hour customer service window is closed: WhatsApp only accepts an approved "
        "template now (send it with a ContentSid)"
    ),
    "63018": "WhatsApp rate limit for this sender exceeded",
    "63024": "invalid message recipient",
    "30003": "the recipient's handset is unreachable",
    "30005": "the recipient is unknown or no longer exists",
    "30006": "the recipient is a landline or unreachable carrier",
    "30007": "the message was filtered as spam or a policy violation",
    "30008": "delivery failed for an unknown reason",
}


def describe(code: str | int | None) -> str | None:
    """A plain-language reason for a Twilio error code, or None if we have none."""
    if code is None:
        return None
    return REASONS.get(str(code).strip())


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text)) if text.replace(".", "", 1).isdigit() else _from_date(text, now)
    except (TypeError, ValueError, OverflowError):
        return None


def _from_date(text: str, now: datetime | None) -> float:
    when = parsedate_to_datetime(text)  # ValueError/TypeError on garbage
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def provider_error(status: int, body: Mapping[str, Any] | None, retry_after: str | None = None) -> ProviderError:
    """The ``ProviderError`` for one failed Twilio REST response (HTTP ``status``, JSON ``body``).

    A known Twilio code decides; otherwise HTTP 429 and 5xx are retryable and any other status is
    permanent. ``code`` is the Twilio code when there is one, else ``http_<status>``.
    """
    twilio_code, twilio_message = _code_and_message(body)
    if twilio_code in RETRYABLE_CODES:
        retryable = True
    elif twilio_code in REASONS:
        retryable = False
    else:
        retryable = status == 429 or 500 <= status <= 599
    reason = describe(twilio_code) or _http_reason(status)
    message = f"Twilio {twilio_code or f'HTTP {status}'}: {reason}"
    if twilio_message and twilio_message not in message:
        message += f" ({twilio_message})"
    return ProviderError(
        message,
        code=twilio_code or f"http_{status}",
        retryable=retryable,
        retry_after=parse_retry_after(retry_after) if retryable else None,
    )


def transport_error(reason: str) -> ProviderError:
    """Twilio never answered (timeout, connection refused or reset): always worth a retry."""
    return ProviderError(f"Twilio unreachable: {reason}", code="transport", retryable=True)


def _code_and_message(body: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    if not isinstance(body, Mapping):
        return None, None
    code = body.get("code")
    message = body.get("message")
    code_text = str(code).strip() if isinstance(code, (int, str)) and not isinstance(code, bool) else ""
    message_text = message.strip() if isinstance(message, str) else ""
    return code_text or None, message_text or None


def _http_reason(status: int) -> str:
    if status == 429:
        return "rate limited (HTTP 429)"
    if 500 <= status <= 599:
        return f"Twilio server error (HTTP {status})"
    if status in (401, 403):
        return f"Twilio refused the credentials (HTTP {status}): check the account SID and auth token"
    if status == 404:
        return "not found (HTTP 404): check the account SID and the API base URL"
    if 400 <= status <= 499:
        return f"Twilio rejected the request (HTTP {status})"
    return f"unexpected Twilio response (HTTP {status})"
