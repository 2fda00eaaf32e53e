"""WPPConnect Server answers → ``ProviderError``: retry what a reconnection or a moment can fix.

The answers (PROTOCOLS.md 3.3): a session that is not connected → **404**
``{"response": null, "status": "Disconnected", "message": "A sessão do WhatsApp não está ativa."}``;
a recipient without WhatsApp → **400** ``{"status": "Connected", "message": "O número … não existe."}``;
a token the server refuses → **401** ``{"error": "Check that the Session and Token are correct"}``;
a failed send → **500** ``{"status": "Error", "message": "Erro ao enviar a mensagem.", "error": {…}}``.
"""

from __future__ import annotations

from typing import Any

from core.types import ProviderError

SESSION_DOWN = "session_down"
UNKNOWN_NUMBER = "unknown_number"
UNAUTHORIZED = "unauthorized"
UNREACHABLE = "unreachable"


def server_message(body: Any) -> str | None:
    """The server's own words: ``message``, else ``error`` when it is a string."""
    if not isinstance(body, dict):
        return None
    for key in ("message", "error"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def is_session_down(status: int, body: Any) -> bool:
    """404 from the ``statusConnection`` middleware; a 404 without it is a wrong URL or route."""
    return status == 404 and isinstance(body, dict) and body.get("status") == "Disconnected"


def api_error(status: int, body: Any, session: str) -> ProviderError:
    """The ``ProviderError`` for one failed answer (HTTP ``status``, parsed JSON ``body`` or None)."""
    said = server_message(body)
    if is_session_down(status, body):
        return ProviderError(
            f"WPPConnect session {session!r} is not connected ({said or 'Disconnected'}); "
            "the message is sent again once it reconnects",
            code=SESSION_DOWN,
            retryable=True,
        )
    if status == 400:
        unknown = bool(said and ("não existe" in said or "not exist" in said.lower()))
        return ProviderError(
            f"WPPConnect refused the recipient: {said}" if said else "WPPConnect rejected the request (HTTP 400)",
            code=UNKNOWN_NUMBER if unknown else "http_400",
        )
    if status == 401:
        return ProviderError(
            f"WPPConnect refused the token for session {session!r} ({said or 'HTTP 401'}): "
            "check the number's secret_key or token",
            code=UNAUTHORIZED,
        )
    if status == 404:
        return ProviderError(
            f"WPPConnect answered 404 for session {session!r}: check server_url (is it a WPPConnect Server?)",
            code="http_404",
        )
    retryable = status == 429 or status >= 500
    return ProviderError(
        f"WPPConnect HTTP {status}" + (f": {said}" if said else ""),
        code=f"http_{status}",
        retryable=retryable,
    )


def transport_error(server_url: str, reason: str) -> ProviderError:
    """The server never answered (refused, reset, timed out): always worth another try."""
    return ProviderError(f"WPPConnect Server at {server_url} unreachable: {reason}", code=UNREACHABLE, retryable=True)
