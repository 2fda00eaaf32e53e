"""Throwaway databases for tests: a SQLite file per test, or a PostgreSQL database per session.

PostgreSQL is opt-in for plugin authors (``HOOKLINE_TEST_POSTGRES``): a server URL, or ``auto``
for ``$DATABASE_URL`` when it names PostgreSQL, else ``postgres://postgres@127.0.0.1:5432``.
A database of its own is created on that server, migrated as an operator would, emptied before
each test and dropped at the end; the data of the database the URL names is never touched.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

SETTING_ENV_VAR = "HOOKLINE_TEST_POSTGRES"
REQUIRE_ENV_VAR = "HOOKLINE_REQUIRE_POSTGRES"
DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432/postgres"
#: Every table hookline writes, emptied between tests.
TABLES = (
    "pgqueuer, pgqueuer_log, pgqueuer_statistics, hookline_lane, hookline_rate_limit, hookline_event, hookline_api_token, "
    "hookline_user_session, hookline_user, hookline_job, hookline_status_event, hookline_message, "
    "hookline_conversation, hookline_contact, hookline_number"
)


class PostgresUnavailable(Exception):
    """The configured PostgreSQL server cannot be used (not running, no CREATEDB, …)."""


def server_for(setting: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The server a setting names: None (SQLite only), ``auto`` or a ``postgres://`` URL."""
    env = os.environ if env is None else env
    value = (setting or "").strip()
    if not value:
        return None
    if value == "auto":
        named = env.get("DATABASE_URL", "")
        return named if named.startswith(("postgres://", "postgresql://")) else DEFAULT_SERVER
    if not value.startswith(("postgres://", "postgresql://")):
        raise ValueError(f"{SETTING_ENV_VAR} must be empty, 'auto' or a postgres:// URL, not {value!r}")
    return value


def postgres_required(env: Mapping[str, str] | None = None) -> bool:
    """True when an unusable PostgreSQL must fail the run instead of skipping its variants (CI)."""
    return (os.environ if env is None else env).get(REQUIRE_ENV_VAR) == "1"


def create_database(server: str) -> str:
    """A new, migrated database on `server`; its URL. Raises PostgresUnavailable."""
    name = f"hookline_test_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # asyncpg errors, refused connections, timeouts
        raise PostgresUnavailable(f"PostgreSQL at {urlsplit(server).netloc} is unusable: {type(exc).__name__}: {exc}") from exc
    url = with_database(server, name)
    asyncio.run(_migrate(url))  # as an operator would: `hookline migrate`, then `serve`
    return url


def drop_database(server: str, url: str) -> None:
    asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{urlsplit(url).path.lstrip("/")}" WITH (FORCE)'))


def session_postgres(setting: str | None) -> Iterator[str | None]:
    """The body of a session fixture: a throwaway database for the run, or None without one.

    An unusable server fails the run when it was named explicitly or ``HOOKLINE_REQUIRE_POSTGRES=1``;
    with ``auto`` it only means the PostgreSQL variants are skipped.
    """
    import pytest

    server = server_for(setting)
    if server is None:
        yield None
        return
    try:
        url = create_database(server)
    except PostgresUnavailable as exc:
        if setting != "auto" or postgres_required():
            pytest.fail(f"{exc} ({SETTING_ENV_VAR}={setting!r}, {REQUIRE_ENV_VAR}={os.environ.get(REQUIRE_ENV_VAR, '')!r})")
        yield None
        return
    try:
        yield url
    finally:
        drop_database(server, url)


def sqlite_template(directory: Path) -> Path:
    """A migrated, empty SQLite database in `directory`, made once to be copied by every test:
    a copy opens in milliseconds, migrating a new file takes a good part of a second."""
    path = directory / "template.sqlite3"
    asyncio.run(_migrate(f"sqlite://{path}"))
    return path


def database_for(backend: str, directory: Path, postgres_url: str | None, template: Path | None = None) -> str:
    """A clean database for one test: SQLite in `directory` (a copy of the migrated `template`
    when given, else a new file), or the session's PostgreSQL emptied (the test is skipped when
    there is none)."""
    import pytest

    if backend == "sqlite":
        target = directory / "hookline.sqlite3"
        if template is not None:
            shutil.copyfile(template, target)
        return f"sqlite://{target}"
    if postgres_url is None:
        pytest.skip(f"PostgreSQL not reachable (set DATABASE_URL or {SETTING_ENV_VAR}, or {REQUIRE_ENV_VAR}=1 to fail)")
    return emptied(postgres_url)


def with_database(url: str, name: str) -> str:
    """`url` naming database `name` on the same server."""
    return urlunsplit(urlsplit(url)._replace(scheme="postgres", path=f"/{name}"))


async def execute(url: str, statement: str) -> None:
    """Run one statement on `url` (CREATE/DROP DATABASE need a connection outside a transaction)."""
    await _admin(url, statement)


def emptied(url: str) -> str:
    """`url`'s database with every hookline table emptied (ids restart); returns `url`."""
    asyncio.run(_truncate(url))
    return url


async def _admin(url: str, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1), timeout=3)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _migrate(url: str) -> None:
    from core.storage.database import close_storage, migrate, open_storage

    await open_storage(url)
    try:
        await migrate(url)
    finally:
        await close_storage()


async def _truncate(url: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        if await connection.fetchval("SELECT to_regclass('hookline_job') IS NOT NULL"):
            await connection.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()
