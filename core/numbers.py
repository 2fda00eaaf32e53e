"""Numbers declared in the config file, mirrored into the database at start; numbers created
over the API, stored with their secret settings encrypted and loaded into the host's registry."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, SecretStr, ValidationError
from tortoise.transactions import in_transaction

from core import limits
from core.storage.models import NumberRow
from core.types import Number
from core.vault import SealedValueError, seal, unseal

if TYPE_CHECKING:
    from core.host import Host

log = logging.getLogger("hookline.numbers")


def public_settings(number: Number) -> dict[str, object]:
    """The settings that may be stored and shown: everything but secrets."""
    settings = number.settings
    return {
        name: value
        for name, value in settings.model_dump(mode="json").items()
        if not isinstance(getattr(settings, name, None), SecretStr)
    }


async def sync_config_numbers(numbers: Iterable[Number]) -> None:
    """Upsert every configured number as `managed_by_config`; unmark those no longer declared.

    Rows are never deleted here: their conversations and messages stay.
    """
    numbers = list(numbers)
    async with in_transaction() as connection:
        for number in numbers:
            values = {
                "provider": number.provider,
                "phone": number.phone,
                "display_name": number.display_name,
                "public_settings": public_settings(number),
                "rate_limits": limits.to_stored(number.rate_limit, number.recipient_rate_limit),
                "managed_by_config": True,
            }
            updated = await NumberRow.filter(id=number.id).using_db(connection).update(**values)
            if not updated:
                await NumberRow.create(id=number.id, **values, using_db=connection)
        await NumberRow.filter(managed_by_config=True).exclude(id__in=[n.id for n in numbers]).using_db(
            connection
        ).update(managed_by_config=False)


# --------------------------------------------------------------------------- numbers created over the API


def split_settings(settings: BaseModel, secret_key: bytes) -> tuple[dict[str, object], dict[str, str]]:
    """(public settings, secret settings sealed with the vault); unset secrets are left out."""
    public: dict[str, object] = {}
    sealed: dict[str, str] = {}
    dumped = settings.model_dump(mode="json")
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            sealed[name] = seal(secret_key, value.get_secret_value())
        elif value is None and _is_secret_field(type(settings), name):
            continue
        else:
            public[name] = dumped[name]
    return public, sealed


def _is_secret_field(model: type[BaseModel], name: str) -> bool:
    return "SecretStr" in str(model.model_fields[name].annotation)


def number_from_row(row: NumberRow, model: type[BaseModel], secret_key: bytes) -> Number:
    """The live Number of an API-managed row: public settings plus decrypted secrets, validated, and its own rate limits."""
    data = dict(row.public_settings)
    data.update({name: unseal(secret_key, value) for name, value in row.sealed_settings.items()})
    rate_limit, recipient_rate_limit = limits.from_stored(row.rate_limits)
    return Number(row.id, row.provider, row.phone, row.display_name, model.model_validate(data), rate_limit, recipient_rate_limit)


class ApiNumbers:
    """This process's copy of the numbers created over the API, kept in step with the database.

    Other processes create, change and delete them too (`serve --workers N`, the console on
    another instance), so the registry is refreshed every `REFRESH_SECONDS` by the server, and
    before a webhook is refused as naming an unknown number: `refresh_since` makes sure a refresh
    began after the request arrived, so a number created anywhere is never refused. Those
    refreshes are shared by the requests waiting for them and spaced `MIN_SPACING_SECONDS` apart,
    so a flood of unknown numbers costs a few queries a second. A refresh reads ids and versions,
    and the full rows only of what changed.
    """

    REFRESH_SECONDS = 5.0
    MIN_SPACING_SECONDS = 0.1

    def __init__(self, host: Host) -> None:
        self.host = host
        self.versions: dict[str, datetime] = {}
        self._started = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh_since(self, moment: float) -> None:
        """Return once a refresh that began after `moment` (`time.monotonic()`) has finished."""
        async with self._lock:
            if self._started > moment:
                return  # one that began after we arrived has just finished
            await asyncio.sleep(max(0.0, self._started + self.MIN_SPACING_SECONDS - time.monotonic()))
            await self._refresh()

    async def refresh(self) -> None:
        async with self._lock:
            await self._refresh()

    async def _refresh(self) -> None:
        self._started = time.monotonic()
        current = {row["id"]: row["updated_at"] for row in
                   await NumberRow.filter(managed_by_config=False).values("id", "updated_at")}
        changed = [number_id for number_id, version in current.items() if self.versions.get(number_id) != version]
        for number_id in [number_id for number_id in self.versions if number_id not in current]:
            self.versions.pop(number_id)
            self.host.numbers.pop(number_id, None)
        for row in await NumberRow.filter(id__in=changed) if changed else []:
            self.versions[row.id] = row.updated_at
            self._load(row)

    def _load(self, row: NumberRow) -> None:
        provider = self.host.dispatch.providers.get(row.provider)
        if provider is None:
            log.warning("number %s: provider %s is not enabled; the number is inactive", row.id, row.provider)
            self.host.numbers.pop(row.id, None)
            return
        try:
            self.host.numbers[row.id] = number_from_row(row, provider.number_settings_model, self.host.secret_key.value)
        except (ValidationError, SealedValueError) as exc:
            # Only the type: a validation message could quote a setting.
            log.warning("number %s is inactive: its stored settings are unusable (%s)", row.id, type(exc).__name__)
            self.host.numbers.pop(row.id, None)

    async def keep_fresh(self) -> None:
        """The server's background refresh, until cancelled."""
        while True:
            await asyncio.sleep(self.REFRESH_SECONDS)
            try:
                await self.refresh()
            except Exception as exc:  # storage away: the next round tries again
                log.warning("numbers not refreshed: %s", type(exc).__name__)
