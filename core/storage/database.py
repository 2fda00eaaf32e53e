"""Opening and closing storage, and its migrations.

What `serve` does on an unmigrated database: on SQLite (the embedded default, one process) it
applies pending migrations itself; on PostgreSQL it refuses to start and asks for
`hookline migrate`, because several instances migrating at once is how schemas break.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tortoise import Tortoise
from tortoise.connection import get_connection
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.context import TortoiseContext
from tortoise.exceptions import DBConnectionError
from tortoise.migrations.executor import MigrationExecutor

log = logging.getLogger("hookline.storage")

APP_LABEL = "hookline"
MODELS_MODULE = "core.storage.models"
MIGRATIONS_MODULE = "core.storage.migrations"


_SQLITE_OUTAGES = ("unable to open", "database is locked", "disk i/o error")


def is_storage_failure(exc: BaseException) -> bool:
    """The database could not be reached, or the connection died mid-statement: worth retrying
    later (a provider retries a 503; a job runs again), unlike a bug or a constraint violation."""
    import asyncpg

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (OSError, TimeoutError, DBConnectionError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                             asyncpg.exceptions.OperatorInterventionError, asyncpg.exceptions.ConnectionFailureError)):
            return True
        if isinstance(seen, sqlite3.OperationalError) and any(part in str(seen).lower() for part in _SQLITE_OUTAGES):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def is_unstorable_value(exc: BaseException) -> bool:
    """The database refused a value itself (PostgreSQL's class 22, data exceptions: a NUL
    character in text or JSON, a number out of range…): the same value fails on every retry, so it
    is the request's fault (400), not an outage (503)."""
    import asyncpg

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, asyncpg.exceptions.DataError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class UnmigratedDatabase(Exception):
    """The database lacks migrations that this version of hookline needs."""


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite://")


async def _keep_session(connection: Any) -> None:
    """The pool's reset when a connection comes back: nothing to send. asyncpg's default resets
    the session with one more round trip per statement run outside a transaction (the webhook
    path's usual case), but hookline leaves nothing in a pooled session: its advisory locks are
    transaction-level and its LISTENs have connections of their own. (An open transaction is still
    ended by asyncpg itself.)"""


def tortoise_config(url: str) -> dict[str, Any]:
    """The Tortoise configuration for a hookline database URL (relative SQLite paths: from CWD)."""
    if is_sqlite(url):
        path = url.removeprefix("sqlite://").split("?", 1)[0]
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        connection: dict[str, Any] | str = {
            "engine": "core.storage.sqlite_backend",
            # busy_timeout: a CLI command and the server may write the same file at once.
            "credentials": {"file_path": path, "journal_mode": "WAL", "busy_timeout": 5000},
        }
    else:
        parts = urlsplit(url)
        connection = expand_db_url(parts._replace(scheme="postgres").geturl())
        socket_dir = parse_qs(parts.query).get("host")
        if socket_dir:  # postgres://user@/db?host=/var/run/postgresql: a Unix socket, as libpq spells it
            connection["credentials"]["host"] = socket_dir[-1]
        connection["credentials"]["reset"] = _keep_session
    return {
        "connections": {"default": connection},
        "apps": {
            APP_LABEL: {
                "models": [MODELS_MODULE],
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


async def open_storage(url: str, *, global_fallback: bool = True) -> TortoiseContext:
    """Connect. The global fallback lets requests (other tasks than the lifespan's) find it."""
    context = await Tortoise.init(config=tortoise_config(url), _enable_global_fallback=global_fallback)
    await get_connection("default").execute_query("SELECT 1")  # fail now, not on the first webhook
    return context


async def close_storage() -> None:
    from tortoise import context as tortoise_context
    from tortoise.backends.base.executor import EXECUTOR_CACHE

    await Tortoise.close_connections()
    tortoise_context._global_context = None  # so another app (tests, reload) can open its own
    # Tortoise caches SQL per (connection name, table), not per dialect: the next open in this
    # process may be another backend (the test suite runs SQLite and PostgreSQL alternately).
    EXECUTOR_CACHE.clear()


QUEUE_SCHEMA = "pgqueuer schema"  # on PostgreSQL, migrated with hookline's own tables


async def pending_migrations(url: str) -> list[str]:
    """Names of migrations not yet applied (storage must be open)."""
    apps = tortoise_config(url)["apps"]
    executor = MigrationExecutor(get_connection("default"), apps)
    pending = [f"{step.migration.app_label}.{step.migration.name}" for step in await executor.plan() if not step.backward]
    if not is_sqlite(url):
        from core.pgqueue import queue_schema_installed

        if not await queue_schema_installed(url):
            pending.append(QUEUE_SCHEMA)
    return pending


async def migrate(url: str) -> list[str]:
    """Apply pending migrations; return their names. Storage must be open. On PostgreSQL this
    also installs (or upgrades) pgqueuer's schema, which scale mode's queue runs on."""
    pending = await pending_migrations(url)
    if any(name != QUEUE_SCHEMA for name in pending):
        await MigrationExecutor(get_connection("default"), tortoise_config(url)["apps"]).migrate()
    if not is_sqlite(url):
        from core.pgqueue import install_queue_schema

        await install_queue_schema(url)
    if pending:
        log.info("applied migrations: %s", ", ".join(pending))
    return pending


async def prepare_schema(url: str) -> None:
    """What `serve` does at start (see the module docstring)."""
    pending = await pending_migrations(url)
    if not pending:
        return
    if is_sqlite(url):
        await migrate(url)
        return
    raise UnmigratedDatabase(
        f"the database has {len(pending)} unapplied migration(s) ({', '.join(pending)}); "
        "run `hookline migrate` once, then start the server"
    )


#: For `tortoise makemigrations` (see the Makefile's `migrations` target).
MIGRATIONS_CONFIG = tortoise_config("sqlite://:memory:")
