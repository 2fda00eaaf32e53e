"""/api/whatsapp-numbers: list and read (any role); create, change, configure, delete (admin).

Numbers from the config file are read-only here (409 `managed_by_config`). Secret settings are
write-only: stored encrypted (core.vault), shown as a mask, never logged. A number's own rate
limits are validated against its provider's cap like the config file's (core/limits.py).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from tortoise.transactions import in_transaction

from core import limits
from core.api.access import host_of, signed_in
from core.api.errors import ApiError, field_error, json_body, not_found, validate
from core.api.views import MASK, number_json
from core.host import Host
from core.limits import LimitSetting
from core.numbers import split_settings
from core.storage.models import Conversation, NumberRow
from core.types import Number, ProviderError, RateLimit

log = logging.getLogger("hookline.api")

ID_PATTERN = r"^[A-Za-z0-9_.-]+$"
ID_MAX_LENGTH = 64


def is_number_id(text: str) -> bool:
    """What the config file and the API allow as a number's id."""
    return len(text) <= ID_MAX_LENGTH and re.fullmatch(ID_PATTERN, text) is not None


class NewNumber(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)
    provider: str = Field(min_length=1)
    phone: str = Field(min_length=1, max_length=64)
    display_name: str | None = Field(default=None, max_length=255)
    settings: dict[str, Any] = Field(default_factory=dict)
    rate_limit: LimitSetting | None = Field(default=None, description="The number's own limit; null: its provider's default.")
    recipient_rate_limit: LimitSetting | None = Field(
        default=None, description="The number's own limit per customer; null: its provider's default.")


class NumberChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: str | None = Field(default=None, min_length=1, max_length=64)
    display_name: str | None = Field(default=None, max_length=255)
    settings: dict[str, Any] | None = None
    rate_limit: LimitSetting | None = Field(default=None, description="Left out: unchanged; null: back to the provider's default.")
    recipient_rate_limit: LimitSetting | None = Field(
        default=None, description="Left out: unchanged; null: back to the provider's default.")


class Configure(BaseModel):
    model_config = ConfigDict(extra="forbid")

    settings: dict[str, Any]


def _validated_settings(host: Host, provider: str, data: dict[str, Any], field: str = "provider") -> BaseModel:
    found = host.dispatch.providers.get(provider)
    if found is None:
        raise field_error(field, f"{provider!r} is not an enabled provider (enabled: {', '.join(host.dispatch.providers) or 'none'})")
    return validate(found.number_settings_model, data, "settings")


async def _row(number_id: str) -> NumberRow:
    """The number a path names; one whose id no number can have (PostgreSQL refuses some, such
    as a NUL character) is not looked up."""
    row = await NumberRow.get_or_none(id=number_id) if is_number_id(number_id) else None
    if row is None:
        raise not_found(f"number {number_id!r}")
    return row


def _writable(row: NumberRow) -> None:
    if row.managed_by_config:
        raise ApiError(409, "managed_by_config", f"number {row.id!r} is declared in the config file: change it there")


def _own_limits(row: NumberRow, current: Number | None) -> tuple[RateLimit | None, RateLimit | None]:
    """The number's own limits: the live number's, else the row's (an inactive number keeps them)."""
    if current is not None:
        return current.rate_limit, current.recipient_rate_limit
    try:
        return limits.from_stored(row.rate_limits)
    except ValidationError:
        return None, None


def _changed_limits(body: NumberChanges, own: tuple[RateLimit | None, RateLimit | None]) -> tuple[RateLimit | None, RateLimit | None]:
    """A limit left out of the body stays; one sent as null goes back to the provider's default."""
    changed = list(own)
    for index, name in enumerate(limits.FIELDS):
        if name in body.model_fields_set:
            setting = getattr(body, name)
            changed[index] = setting.limit() if setting is not None else None
    return changed[0], changed[1]


def limits_in_force(host: Host, row: NumberRow, number: Number | None) -> tuple[RateLimit, RateLimit | None]:
    """The limits in force for a number's answer: its own, else its provider's defaults."""
    provider = host.dispatch.providers.get(row.provider)
    declared = provider.rate_limits if provider is not None else limits.DEFAULT_PROVIDER_LIMITS
    return limits.effective(declared, *_own_limits(row, number))


def _json(host: Host, row: NumberRow) -> dict[str, Any]:
    number = host.numbers.get(row.id)
    return number_json(row, number, limits_in_force(host, row, number))


async def _save(
    host: Host, row_id: str, provider: str, phone: str, display_name: str | None, settings: BaseModel,
    own_limits: tuple[RateLimit | None, RateLimit | None], *, create: bool,
) -> NumberRow:
    rate_limit, recipient_rate_limit = own_limits
    too_fast = limits.over_cap(host.dispatch.provider(provider).rate_limits, provider, rate_limit)
    if too_fast:
        raise field_error("rate_limit", too_fast)
    public, sealed = split_settings(settings, host.secret_key.value)
    values = {"provider": provider, "phone": phone, "display_name": display_name, "public_settings": public,
              "sealed_settings": sealed, "rate_limits": limits.to_stored(rate_limit, recipient_rate_limit),
              "managed_by_config": False}
    async with in_transaction() as connection:
        if create:
            if await NumberRow.filter(id=row_id).using_db(connection).exists():
                raise ApiError(409, "exists", f"a number with id {row_id!r} exists", [{"field": "id", "message": "taken"}])
            await NumberRow.create(id=row_id, **values, using_db=connection)
        else:
            # A new version: other processes reload the number when they see it (core/numbers.py).
            await NumberRow.filter(id=row_id).using_db(connection).update(**values, updated_at=datetime.now(UTC))
    host.numbers[row_id] = Number(row_id, provider, phone, display_name, settings, rate_limit, recipient_rate_limit)
    return await NumberRow.get(id=row_id)


async def list_numbers(request: Request) -> Response:
    host = host_of(request)
    rows = await NumberRow.all().order_by("id")
    return JSONResponse({"items": [_json(host, row) for row in rows]})


async def add_number(host: Host, body: NewNumber, by: str) -> NumberRow:
    """Validate and store a new number, live at once; for the API and the console's form."""
    settings = _validated_settings(host, body.provider, body.settings)
    if body.id in host.numbers:
        raise ApiError(409, "exists", f"a number with id {body.id!r} exists", [{"field": "id", "message": "taken"}])
    own = (body.rate_limit.limit() if body.rate_limit else None,
           body.recipient_rate_limit.limit() if body.recipient_rate_limit else None)
    row = await _save(host, body.id, body.provider, body.phone, body.display_name, settings, own, create=True)
    log.info("number %s (%s) created by %s", row.id, row.provider, by)
    return row


async def create_number(request: Request) -> Response:
    host = host_of(request)
    row = await add_number(host, await json_body(request, NewNumber), signed_in(request).username)
    return JSONResponse(_json(host, row), status_code=201)


async def get_number(request: Request) -> Response:
    host = host_of(request)
    row = await _row(request.path_params["number_id"])
    return JSONResponse(_json(host, row))


def _merged(current: Number | None, changes: dict[str, Any]) -> dict[str, Any]:
    """The current settings with `changes` applied; a secret sent as the mask (or left out) keeps its value."""
    data: dict[str, Any] = {}
    if current is not None:
        settings = current.settings
        for name in type(settings).model_fields:
            value = getattr(settings, name)
            data[name] = value.get_secret_value() if hasattr(value, "get_secret_value") else value
    for name, value in changes.items():
        if value == MASK:
            continue
        data[name] = value
    return data


async def update_number(request: Request) -> Response:
    host = host_of(request)
    row = await _row(request.path_params["number_id"])
    _writable(row)
    body = await json_body(request, NumberChanges)
    current = host.numbers.get(row.id)
    if current is None and body.settings is None:
        raise field_error("settings", "the stored settings are unusable: send them again")
    settings = current.settings if body.settings is None else _validated_settings(host, row.provider, _merged(current, body.settings))
    phone = body.phone if body.phone is not None else row.phone
    display_name = body.display_name if "display_name" in body.model_fields_set else row.display_name
    own = _changed_limits(body, _own_limits(row, current))
    row = await _save(host, row.id, row.provider, phone, display_name, settings, own, create=False)
    log.info("number %s changed over the API by %s", row.id, signed_in(request).username)
    return JSONResponse(_json(host, row))


async def configure_number(request: Request) -> Response:
    """The original system's `POST /whatsapp-numbers/:id/<provider>/configure`: set the number's
    provider and its credentials, validated by that provider's schema."""
    host = host_of(request)
    row = await _row(request.path_params["number_id"])
    _writable(row)
    provider = request.path_params["provider"]
    if provider not in host.dispatch.providers:
        raise not_found(f"provider {provider!r}")
    body = await json_body(request, Configure)
    current = host.numbers.get(row.id) if row.provider == provider else None
    settings = _validated_settings(host, provider, _merged(current, body.settings))
    own = _own_limits(row, host.numbers.get(row.id))  # kept, and held to the new provider's cap
    row = await _save(host, row.id, provider, row.phone, row.display_name, settings, own, create=False)
    log.info("number %s configured for %s over the API by %s", row.id, provider, signed_in(request).username)
    return JSONResponse(_json(host, row))


async def delete_number(request: Request) -> Response:
    host = host_of(request)
    row = await _row(request.path_params["number_id"])
    _writable(row)
    if await Conversation.filter(number_id=row.id).exists():
        raise ApiError(409, "in_use", f"number {row.id!r} has conversations; it cannot be deleted")
    await NumberRow.filter(id=row.id).delete()
    host.numbers.pop(row.id, None)
    log.info("number %s deleted over the API by %s", row.id, signed_in(request).username)
    return Response(status_code=204)


async def number_qrcode(request: Request) -> Response:
    """The pairing QR code (PNG) of a number paired by scanning (WPPConnect); 409 with the reason
    while there is none to show, 404 for providers that pair otherwise."""
    host = host_of(request)
    row = await _row(request.path_params["number_id"])
    number = host.numbers.get(row.id)
    provider = host.dispatch.providers.get(row.provider)
    if number is None or provider is None or not provider.implements("provider_pairing_qr"):
        raise ApiError(404, "no_qrcode", f"provider {row.provider!r} offers no pairing QR code")
    try:
        code = await provider.pairing_qr(host, number)
    except ProviderError as exc:
        raise ApiError(502, exc.code or "provider_error", exc.message) from None
    if code.png is None:
        raise ApiError(409, "not_pairing", code.reason or "no QR code to show now")
    return Response(code.png, media_type="image/png", headers={"Cache-Control": "no-store"})
