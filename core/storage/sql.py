"""Hand-written SQL for the hot paths, on either backend.

The ORM builds each query anew (about half of a webhook's CPU went to query building); the
pipeline's few statements are written once here instead. Write `?` placeholders: they become
`$1, $2…` on PostgreSQL. JSON columns take `json.dumps` text and datetimes are passed as aware
`datetime` objects, the same representation Tortoise stores, so the ORM reads these rows as its own.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient


async def query(connection: BaseDBAsyncClient, sql: str, values: list[Any]) -> list[dict[str, Any]]:
    if connection.capabilities.dialect == "postgres":
        sql = numbered_placeholders(sql)
    return list(await connection.execute_query_dict(sql, values))


@lru_cache(maxsize=256)
def numbered_placeholders(sql: str) -> str:
    parts = sql.split("?")
    return "".join(part + (f"${index}" if index < len(parts) else "") for index, part in enumerate(parts, 1))


def to_json(value: Any) -> str:
    """JSON text as Tortoise's JSONField writes it (compact separators)."""
    return json.dumps(value, separators=(",", ":"))


def from_json(value: Any) -> Any:
    """A JSON column as a driver returns it: text (SQLite, asyncpg without a codec) or parsed."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value
