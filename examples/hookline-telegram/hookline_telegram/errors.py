"""Bot API failures → ``ProviderError``: retry what a moment can fix, fail the rest clearly.

Telegram answers every method with ``{"ok": true, "result": …}`` or ``{"ok": false,
"error_code": 400, "description": "Bad Request: chat not found"}``; a flood limit is 429 with
``"parameters": {"retry_after": 35}``, the seconds to wait before trying again.
"""

from __future__ import annotations

from typing import Any

from core import ProviderError

# What the codes mean for the agent who sees a failed message.
REASONS: dict[int, str] = {
    400: "Telegram rejected the message",
    401: "Telegram refused the bot token: check the number's bot_token (@BotFather /token)",
    403: "the customer blocked the bot, or never started a chat with it",
    404: "Telegram does not know this method or bot: check api_base_url and bot_token",
    409: "another webhook or getUpdates consumer is set for this bot",
}


def api_error(status: int, body: Any, retry_after_header: str | None = None) -> ProviderError:
    """The ``ProviderError`` for one failed Bot API call (HTTP ``status``, parsed JSON ``body``)."""
    error_code = body.get("error_code") if isinstance(body, dict) else None
    code = error_code if isinstance(error_code, int) and not isinstance(error_code, bool) else status
    description = body.get("description") if isinstance(body, dict) and isinstance(body.get("description"), str) else None
    parameters = body.get("parameters") if isinstance(body, dict) and isinstance(body.get("parameters"), dict) else {}
    if code == 429 or status == 429:
        wait = _seconds(parameters.get("retry_after")) or _seconds(retry_after_header)
        return ProviderError(f"Telegram flood limit: retry after {wait or 'a while'} s" + _said(description),
                             code="429", retryable=True, retry_after=wait)
    if code >= 500 or status >= 500:
        return ProviderError(f"Telegram server error (HTTP {status})" + _said(description), code=str(code), retryable=True)
    reason = REASONS.get(code, f"Telegram refused the call (HTTP {status})")
    return ProviderError(reason + _said(description), code=str(code))


def transport_error(reason: str) -> ProviderError:
    """Telegram never answered (refused, reset, timed out): always worth another try."""
    return ProviderError(f"Telegram Bot API unreachable: {reason}", code="transport", retryable=True)


def _said(description: str | None) -> str:
    return f" ({description})" if description else ""


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if 0 <= seconds < 86400 else None
