"""Fixtures: every storage-touching test runs on SQLite and on PostgreSQL.

PostgreSQL is the server named by DATABASE_URL, or 127.0.0.1:5432 as `postgres`. The session
creates its own throwaway database there and drops it at the end; it never touches the data of
the database DATABASE_URL names. When no server answers, the PostgreSQL variants are skipped,
unless HOOKLINE_REQUIRE_POSTGRES=1 (set by .ci/run), which makes that an error. The machinery is
core.testing.database, the same that plugin authors get with HOOKLINE_TEST_POSTGRES=auto.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.testing import database as core_database
from core.testing.database import database_for, session_postgres


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """A throwaway PostgreSQL database for this session, or None when no server answers."""
    yield from session_postgres("auto")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path, postgres_url: str | None) -> str:
    """A clean, possibly unmigrated, database on each backend."""
    return database_for(request.param, tmp_path, postgres_url)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return core_database.sqlite_template(tmp_path_factory.mktemp("template"))


@pytest.fixture
def hookline_database_url(request: pytest.FixtureRequest, database_url: str, tmp_path: Path, sqlite_template: Path) -> str:
    """The conformance suite (core.testing) runs on both backends here, as every storage test
    does; its SQLite databases start migrated, as the kit's own fixture makes them."""
    if database_url.startswith("sqlite://"):
        return core_database.database_for("sqlite", tmp_path, None, sqlite_template)
    return database_url


def clean_postgres(postgres_url: str | None) -> str:
    """The session's PostgreSQL database, emptied; skips the test when there is none."""
    return database_for("postgres", None, postgres_url)  # type: ignore[arg-type]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The reliability suite's one line per test (tests/reliability.py), whatever `-r` says."""
    import sys

    reliability = sys.modules.get("tests.reliability")
    if reliability is not None and reliability.LINES:
        terminalreporter.section("reliability suite")
        for line in reliability.LINES:
            terminalreporter.write_line(line)
