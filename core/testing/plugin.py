"""hookline's pytest plugin, registered through the ``pytest11`` entry point: installing hookline
gives every test of a plugin package these fixtures.

* ``hookline_database_url`` — a clean database for one test: SQLite in ``tmp_path``, and, when
  ``HOOKLINE_TEST_POSTGRES`` is set (a ``postgres://`` server URL, or ``auto``), PostgreSQL too:
  the test then runs once per backend (ids ``[sqlite]`` and ``[postgres]``).
* ``hookline_postgres_url`` — the session's throwaway PostgreSQL database, or None;
  ``hookline_sqlite_template`` — the migrated SQLite file each test's database is copied from.

The provider conformance suite (``core.testing.ProviderConformance``) runs on
``hookline_database_url``. Kept light on import: pytest loads it in every run of the environment.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.testing.database import SETTING_ENV_VAR, database_for, session_postgres, sqlite_template

BACKENDS = ["sqlite", "postgres"] if os.environ.get(SETTING_ENV_VAR, "").strip() else ["sqlite"]


@pytest.fixture(scope="session")
def hookline_postgres_url() -> Iterator[str | None]:
    """The session's throwaway PostgreSQL database (migrated, dropped at the end), or None."""
    yield from session_postgres(os.environ.get(SETTING_ENV_VAR))


@pytest.fixture(scope="session")
def hookline_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database, made once per session and copied for each test."""
    return sqlite_template(tmp_path_factory.mktemp("hookline-template"))


@pytest.fixture(params=BACKENDS)
def hookline_database_url(
    request: pytest.FixtureRequest, tmp_path: Path, hookline_postgres_url: str | None, hookline_sqlite_template: Path
) -> str:
    """A clean, migrated database for this test, on each configured backend."""
    return database_for(request.param, tmp_path, hookline_postgres_url, hookline_sqlite_template)
