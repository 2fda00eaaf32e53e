"""Graph API failures → ``ProviderError``: retry what can get better, fail the rest clearly.

Meta's error body (PROTOCOLS.md section 2.7) is
``{"error": {"message": "(#130429) Rate limit hit", "type": "OAuthException", "code": 130429,
"error_data": {"messaging_product": "whatsapp", "details": "…"}, "fbtrace_id": "…"}}``; Meta asks
that handling be built on ``code`` and ``details``, never on titles, subcodes or the HTTP status.
The same codes come back in status webhooks (``statuses[].errors[]``), worded by ``explain``.

The send worker retries a ``retryable`` error with backoff (or after ``retry_after`` seconds) and
marks the message ``failed`` with ``code`` and ``message`` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.types import ProviderError

#: Throughput, API-call rate limits, Meta-side outages and maintenance: a later try can succeed.
RETRYABLE_CODES: frozenset[str] = frozenset({"130429", "80007", "4", "131000", "131016", "131057", "1", "2"})

#: Too many messages to one recipient in a short time. Only that recipient has to wait, and the
#: queue's per-conversation ordering key makes sure only that conversation's sends do.
PAIR_RATE_CODE = "131056"
#: Meta's pair limit is roughly one message per 6 seconds to the same user (PROTOCOLS.md 2.8).
PAIR_RATE_DELAY_SECONDS = 6.0

#: The access token expired or was revoked: nothing but a new token helps.
TOKEN_CODE = "190"

#: Outside the 24-hour customer service window.
WINDOW_CODE = "131047"

# What the codes we meet mean, worded for the agent who sees a failed message.
REASONS: dict[str, str] = {
    "0": "Meta could not authenticate the request: check the number's access_token",
    "1": "unknown Graph API error (retried)",
    "2": "Graph API service temporarily unavailable (retried)",
    "3": "the app lacks the capability for this call: check the app's WhatsApp permissions",
    "4": "too many API calls for this app (retried with backoff)",
    "10": "permission denied: the token lacks whatsapp_business_messaging for this number",
    "100": "invalid parameter in the request",
    "190": (
        "the access token expired or was revoked: set a new access_token for this number (a "
        "system-user token does not expire) and restart"
    ),
    "368": "the sending account is temporarily blocked for policy violations",
    "80007": "WhatsApp Business Account rate limit reached (retried with backoff)",
    "130429": "Cloud API throughput limit reached (retried with backoff)",
    "130497": "the business cannot message users in this country",
    "131000": "unknown error on Meta's side (retried)",
    "131008": "a required parameter is missing",
    "131009": "a parameter value is invalid",
    "131016": "WhatsApp service temporarily unavailable (retried)",
    "131026": (
        "the message could not be delivered: the recipient is not on WhatsApp, has an old app, "
        "or has not accepted the terms"
    ),
    "131031": "the business account is locked",
    "131047": (
        "the 24-hour customer service window is closed (the customer last wrote more than 24 hours "
        "ago): WhatsApp only accepts an approved template now; send one with host.send_template"
    ),
    "131048": "spam rate limit: too many messages were blocked or reported; improve quality and slow down",
    "131049": (
        "Meta held back this marketing message to keep the ecosystem healthy (per-user marketing "
        "limit): do not resend for at least 24 hours"
    ),
    "131050": "the customer stopped marketing messages from this business",
    "131051": "WhatsApp does not support this message type",
    "131052": "the media could not be downloaded from the customer's message",
    "131053": "the media could not be uploaded: check its type and size",
    "131056": "too many messages to this customer in a short time (retried later, for this customer only)",
    "131057": "the business account is in maintenance, e.g. a throughput upgrade (retried)",
    "132000": "the template's parameter count does not match its definition",
    "132001": "the template does not exist in this language (check its name and language code)",
    "132012": "a template parameter has the wrong format",
    "132015": "the template is paused for low quality",
    "132016": "the template is disabled for low quality",
}


def describe(code: str | int | None) -> str | None:
    """A plain-language reason for a Meta error code, or None if we have none."""
    if code is None:
        return None
    text = str(code).strip()
    if text in REASONS:
        return REASONS[text]
    if text.isdigit() and 200 <= int(text) <= 299:
        return "permission denied for this call: check the token's permissions and the app's setup"
    return None


def explain(code: str | None, title: str | None = None, details: str | None = None) -> str:
    """``Meta <code>: <our reason> (<Meta's details>)``; Meta's title when we know no reason."""
    reason = describe(code) or title or "Meta reported an error"
    text = f"Meta {code}: {reason}" if code else f"Meta: {reason}"
    extra = details or (title if describe(code) else None)
    if extra and extra not in text:
        text += f" ({extra})"
    return text


def error_fields(body: Any) -> tuple[str | None, str | None, str | None]:
    """``(code, title-or-message, details)`` of a Graph error body or a webhook ``errors[]`` item."""
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        body = body["error"]
    if not isinstance(body, Mapping):
        return None, None, None
    code = body.get("code")
    code_text = str(code).strip() if isinstance(code, (int, str)) and not isinstance(code, bool) else ""
    message = body.get("message") or body.get("title")
    error_data = body.get("error_data")
    details = error_data.get("details") if isinstance(error_data, Mapping) else None
    return (
        code_text or None,
        message.strip() if isinstance(message, str) and message.strip() else None,
        details.strip() if isinstance(details, str) and details.strip() else None,
    )


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (Meta rarely sends it); None when absent or not a number."""
    try:
        return max(0.0, float(value)) if value is not None and value.strip() else None
    except ValueError:
        return None


def provider_error(status: int, body: Any, retry_after: str | None = None) -> ProviderError:
    """The ``ProviderError`` for one failed Graph API response (HTTP ``status``, JSON ``body``).

    A code decides when there is one; without a code, HTTP 429 and 5xx are retryable and any other
    status is permanent. ``code`` is Meta's code, else ``http_<status>``.
    """
    code, message, details = error_fields(body)
    if code == PAIR_RATE_CODE:
        retryable, delay = True, max(PAIR_RATE_DELAY_SECONDS, parse_retry_after(retry_after) or 0.0)
    elif code in RETRYABLE_CODES:
        retryable, delay = True, parse_retry_after(retry_after)
    elif code is not None and (code == TOKEN_CODE or describe(code) is not None):
        retryable, delay = False, None
    else:
        retryable = status == 429 or 500 <= status <= 599
        delay = parse_retry_after(retry_after) if retryable else None
    if code is None:
        text = f"Meta HTTP {status}: {_http_reason(status)}"
        if message:
            text += f" ({message})"
    else:
        text = explain(code, message, details)
    return ProviderError(text, code=code or f"http_{status}", retryable=retryable, retry_after=delay)


def transport_error(reason: str) -> ProviderError:
    """Meta never answered (timeout, connection refused or reset): always worth a retry."""
    return ProviderError(f"Meta Graph API unreachable: {reason}", code="transport", retryable=True)


def _http_reason(status: int) -> str:
    if status == 429:
        return "rate limited"
    if 500 <= status <= 599:
        return "Graph API server error (retried)"
    if status in (401, 403):
        return "the Graph API refused the access token"
    if status == 404:
        return "not found: check phone_number_id, graph_api_version and api_base_url"
    return "the Graph API rejected the request"
