"""Fixtures: every storage-touching test runs on SQLite and on PostgreSQL.

PostgreSQL is the server named by DATABASE_URL, or 127.0.0.1:5432 as `postgres`. The session
creates its own throwaway database there and drops it at the end; it never touches the data of
the database DATABASE_URL names. When no server answers, the PostgreSQL variants are skipped,
unless HOOKLINE_REQUIRE_POSTGRES=1 (set by .ci/run), which makes that an error.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
TABLES = "pgqueuer, pgqueuer_log, pgqueuer_statistics, hookline_lane, hookline_rate_limit, hookline_event, hookline_api_token, hookline_user_session, hookline_user, hookline_job, hookline_status_event, hookline_message, hookline_conversation, hookline_contact, hookline_number"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgres", path=f"/{name}"))


async def _admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1), timeout=3)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """A throwaway PostgreSQL database for this session, or None when no server answers."""
    server = os.environ.get("DATABASE_URL", "")
    if not server.startswith(("postgres://", "postgresql://")):
        server = DEFAULT_POSTGRES
    name = f"hookline_test_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as exc:
        if os.environ.get("HOOKLINE_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required (HOOKLINE_REQUIRE_POSTGRES=1) but unusable at {urlsplit(server).netloc}: {exc}")
        yield None
        return
    url = _with_database(server, name)
    try:
        asyncio.run(_migrate(url))  # as an operator would: `hookline migrate`, then `serve`
        yield url
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _migrate(url: str) -> None:
    from core.storage.database import close_storage, migrate, open_storage

    await open_storage(url)
    try:
        await migrate(url)
    finally:
        await close_storage()


async def _truncate(url: str) -> None:
    connection = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        exists = await connection.fetchval("SELECT to_regclass('hookline_job') IS NOT NULL")
        if exists:
            await connection.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path, postgres_url: str | None) -> str:
    """A clean, possibly unmigrated, database on each backend."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/hookline.sqlite3"
    return clean_postgres(postgres_url)


def clean_postgres(postgres_url: str | None) -> str:
    """The session's PostgreSQL database, emptied; skips the test when there is none."""
    if postgres_url is None:
        pytest.skip("PostgreSQL not reachable (set DATABASE_URL, or HOOKLINE_REQUIRE_POSTGRES=1 to fail)")
    asyncio.run(_truncate(postgres_url))
    return postgres_url


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The reliability suite's one line per test (tests/reliability.py), whatever `-r` says."""
    import sys

    reliability = sys.modules.get("tests.reliability")
    if reliability is not None and reliability.LINES:
        terminalreporter.section("reliability suite")
        for line in reliability.LINES:
            terminalreporter.write_line(line)
