"""Numbers declared in the config file, mirrored into the database at start."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import SecretStr
from tortoise.transactions import in_transaction

from core.storage.models import NumberRow
from core.types import Number


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
                "managed_by_config": True,
            }
            updated = await NumberRow.filter(id=number.id).using_db(connection).update(**values)
            if not updated:
                await NumberRow.create(id=number.id, **values, using_db=connection)
        await NumberRow.filter(managed_by_config=True).exclude(id__in=[n.id for n in numbers]).using_db(
            connection
        ).update(managed_by_config=False)
