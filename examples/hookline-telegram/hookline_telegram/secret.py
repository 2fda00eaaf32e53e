"""Telegram's proof of origin: the ``secret_token`` given to setWebhook comes back, as it is, in the
``X-Telegram-Bot-Api-Secret-Token`` header of every update. Telegram signs nothing else, so the
header is the whole proof: compared in constant time, and never logged."""

from __future__ import annotations

import hmac

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def is_valid(provided: str | None, expected: str) -> bool:
    """True only if the header carries exactly the number's secret."""
    if not provided or not expected:
        return False
    return hmac.compare_digest(provided.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))
