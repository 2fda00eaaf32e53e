"""The databases the hookline cases write to: a SQLite file, a throwaway PostgreSQL database,
and counting afterwards what a run actually stored.

The PostgreSQL server is the one DATABASE_URL names, else 127.0.0.1:5432 as `postgres` (as the
test suite does). The bench creates its own database there and drops it afterwards; it never
touches the one DATABASE_URL names.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import uuid
from contextlib import closing
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg

DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"


@dataclass
class Stored:
    """Rows a case left behind. Each new inbound message enqueues one job (a batch of ten, ten)
    and a finished job is deleted, so `messages_total - jobs_left` is how many jobs the server's
    worker ran."""

    messages: int  # from the measured slice of the request file
    messages_total: int  # including the warm-up's
    jobs_left: int


def postgres_server() -> str:
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql://")) else DEFAULT_POSTGRES


def _asyncpg_url(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(scheme="postgresql"))


async def _execute(url: str, statement: str) -> None:
    connection = await asyncpg.connect(_asyncpg_url(url), timeout=3)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def create_postgres_database() -> str:
    """A new, empty database for one case; its URL. Raises (OSError, asyncpg errors, timeouts)
    when the server cannot be used, and the caller skips the case with that reason."""
    server = postgres_server()
    name = f"hookline_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_execute(server, f'CREATE DATABASE "{name}"'))
    return urlunsplit(urlsplit(server)._replace(scheme="postgres", path=f"/{name}"))


def drop_postgres_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    asyncio.run(_execute(postgres_server(), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


#: The messages a slice of a request file stored: its builder's provider, ids in [first, end).
_MESSAGES = "SELECT count(*) FROM hookline_message WHERE provider = $1 AND external_id >= $2 AND external_id < $3"
_ALL_MESSAGES = "SELECT count(*) FROM hookline_message"
_JOBS = "SELECT count(*) FROM hookline_job"


def scalar(database: str, query: str, *args: object) -> object:
    """One value from a case's database: a SQLite file's path or a PostgreSQL URL; `query` uses
    `$1`-style parameters either way."""
    if database.startswith(("postgres://", "postgresql://")):
        async def fetch() -> object:
            connection = await asyncpg.connect(_asyncpg_url(database), timeout=3)
            try:
                return await connection.fetchval(query, *args)
            finally:
                await connection.close()

        return asyncio.run(fetch())
    with closing(sqlite3.connect(database)) as connection:
        return connection.execute(re.sub(r"\$\d+", "?", query), args).fetchone()[0]


def count_stored(database: str, provider: str, first_id: str, end_id: str) -> Stored:
    """What a hookline case stored from the measured slice [first_id, end_id) of its file."""
    return Stored(
        int(scalar(database, _MESSAGES, provider, first_id, end_id)),  # type: ignore[arg-type]
        int(scalar(database, _ALL_MESSAGES)),  # type: ignore[arg-type]
        int(scalar(database, _JOBS)),  # type: ignore[arg-type]
    )
