"""Which rate limits a send obeys: the number's own, else its provider's defaults, never above the
provider's cap. Read by config validation, the API and the send job; core/ratelimit.py enforces
them, one row per key shared by every process on the database.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.types import Number, ProviderLimits, RateLimit

#: Providers that declare nothing (``provider_rate_limits``): WhatsApp's usual 80 messages/s per
#: number, the default of both Twilio and Meta, with no cap and no limit per recipient.
DEFAULT_PROVIDER_LIMITS = ProviderLimits(number=RateLimit(80, 1.0, 8))


def default_burst(per_second: float) -> int:
    """A tenth of a second's worth of sends, at least one: a quiet number's first sends go out at
    once, and a second never carries much more than the rate."""
    return max(1, math.ceil(per_second / 10))


class LimitSetting(BaseModel):
    """A number's `rate_limit` or `recipient_rate_limit`, in the config file or the API."""

    model_config = ConfigDict(extra="forbid")

    messages: float = Field(gt=0, le=1_000_000, description="How many messages per `per_seconds`.")
    per_seconds: float = Field(default=1.0, gt=0, le=86_400, description="The period `messages` is counted over.")
    burst: int | None = Field(default=None, ge=1, le=1_000_000,
                              description="How many may go at once after a quiet spell; default a tenth of a second's worth, at least 1.")

    def limit(self) -> RateLimit:
        burst = self.burst if self.burst is not None else default_burst(self.messages / self.per_seconds)
        return RateLimit(self.messages, self.per_seconds, burst)


def over_cap(limits: ProviderLimits, provider: str, limit: RateLimit | None) -> str | None:
    """Why a number's own limit asks more than its provider allows, or None."""
    cap = limits.max_per_second
    if limit is None or cap is None:
        return None
    if limit.per_second > cap:
        return f"{_rate(limit.per_second)} messages/s is more than {provider} allows a number ({_rate(cap)}/s)"
    if limit.burst > cap:
        return f"a burst of {limit.burst} is more than {provider} allows a number in a second ({_rate(cap)})"
    return None


def _rate(value: float) -> str:
    return f"{value:g}"


def effective(
    limits: ProviderLimits, rate_limit: RateLimit | None, recipient_rate_limit: RateLimit | None
) -> tuple[RateLimit, RateLimit | None]:
    """(the number's limit, its limit per recipient) in force, from its own (None: the provider's
    defaults). A stored limit above a cap that a newer provider version lowered is held to the cap
    rather than breaking the number."""
    own = rate_limit or limits.number
    cap = limits.max_per_second
    if cap is not None and (own.per_second > cap or own.burst > cap):
        own = RateLimit(min(own.per_second, cap), 1.0, max(1, min(own.burst, math.floor(cap))))
    return own, recipient_rate_limit or limits.recipient


def of_number(limits: ProviderLimits, number: Number) -> tuple[RateLimit, RateLimit | None]:
    """What `effective` says for a live number (the send job asks this before every send)."""
    return effective(limits, number.rate_limit, number.recipient_rate_limit)


def number_key(number_id: str) -> str:
    return f"number:{number_id}"


def recipient_key(number_id: str, address: str) -> str:
    """The pair a provider counts (Meta: business number and customer)."""
    return f"recipient:{number_id}:{address}"


# --------------------------------------------------------------------------- stored with the number

FIELDS = ("rate_limit", "recipient_rate_limit")


def to_stored(rate_limit: RateLimit | None, recipient_rate_limit: RateLimit | None) -> dict[str, Any]:
    """The number's own limits as kept in `hookline_number.rate_limits` (absent: the defaults)."""
    values = {"rate_limit": rate_limit, "recipient_rate_limit": recipient_rate_limit}
    return {name: limit.to_json() for name, limit in values.items() if limit is not None}


def from_stored(data: dict[str, Any]) -> tuple[RateLimit | None, RateLimit | None]:
    """What `to_stored` wrote, validated again (a hand-edited row fails like bad settings do)."""
    found = [LimitSetting.model_validate(data[name]).limit() if data.get(name) else None for name in FIELDS]
    return found[0], found[1]
