"""The storing ceiling: a minimal hand-written Twilio webhook that verifies, inserts and enqueues.

DESIGN.md §7's budget for the inbound path is "≥ 0.6 of a raw-asyncpg verify + idempotent insert
+ enqueue + ack ceiling measured in the same run". This is that handler, as short as one would
write it by hand on the same stack (uvicorn + Starlette): the lean same-algorithm signature check
(HMAC-SHA1 of the URL and the sorted fields, constant-time compare), the form parsed once, then
one statement that inserts the message unless its SID is known and, if it was new, a job row, in
one transaction; the empty TwiML back. No ORM, no plugins, no contacts or conversations, no live
events: what hookline does beyond this is what its ratio to it measures.

On PostgreSQL it uses an asyncpg pool of the size hookline's (tortoise's default, 5); on SQLite the stdlib sqlite3
module in the handler itself (the least code, and no thread hop), with WAL and
synchronous=FULL as hookline runs it, so both keep a message that was answered 200 across a crash.

    BENCH_DATABASE_URL=postgres://…|sqlite:///path BENCH_AUTH_TOKEN=… BENCH_PUBLIC_URL=http://127.0.0.1:PORT \\
        uvicorn bench.verify_insert_app:app
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response />'
PATH = "/webhooks/whatsapp/twilio"
POOL_SIZE = 5  # tortoise-orm's default, what hookline runs with

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "")
AUTH_TOKEN = os.environ.get("BENCH_AUTH_TOKEN", "").encode()
SIGNED_URL = os.environ.get("BENCH_PUBLIC_URL", "").rstrip("/") + PATH

_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbound (id bigserial PRIMARY KEY, sid text UNIQUE NOT NULL, sender text NOT NULL,
                                     body text NOT NULL, received_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS job (id bigserial PRIMARY KEY, message_id bigint NOT NULL REFERENCES inbound (id),
                                run_at timestamptz NOT NULL DEFAULT now());
"""
_PG_INSERT = """
WITH new AS (INSERT INTO inbound (sid, sender, body) VALUES ($1, $2, $3) ON CONFLICT (sid) DO NOTHING RETURNING id)
INSERT INTO job (message_id) SELECT id FROM new
"""
_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbound (id INTEGER PRIMARY KEY, sid TEXT UNIQUE NOT NULL, sender TEXT NOT NULL,
                                    body TEXT NOT NULL, received_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE IF NOT EXISTS job (id INTEGER PRIMARY KEY, message_id INTEGER NOT NULL REFERENCES inbound (id),
                                run_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
"""


def valid_signature(fields: list[tuple[str, str]], signature: str) -> bool:
    data = SIGNED_URL + "".join(name + value for name, value in sorted(fields))
    digest = hmac.new(AUTH_TOKEN, data.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(base64.b64encode(digest).decode(), signature)


class Storage:
    """One of the two stores, opened in the lifespan."""

    pool: asyncpg.Pool | None = None
    sqlite: sqlite3.Connection | None = None

    async def open(self) -> None:
        if DATABASE_URL.startswith("sqlite://"):
            self.sqlite = sqlite3.connect(DATABASE_URL.removeprefix("sqlite://"), isolation_level=None)
            self.sqlite.execute("PRAGMA journal_mode=WAL")
            self.sqlite.execute("PRAGMA synchronous=FULL")
            self.sqlite.executescript(_SQLITE_SCHEMA)
        else:
            self.pool = await asyncpg.create_pool(DATABASE_URL.replace("postgres://", "postgresql://", 1),
                                                  min_size=POOL_SIZE, max_size=POOL_SIZE)
            await self.pool.execute(_PG_SCHEMA)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.sqlite is not None:
            self.sqlite.close()

    async def store(self, sid: str, sender: str, body: str) -> None:
        if self.pool is not None:
            await self.pool.execute(_PG_INSERT, sid, sender, body)
            return
        assert self.sqlite is not None
        self.sqlite.execute("BEGIN IMMEDIATE")
        try:
            cursor = self.sqlite.execute(
                "INSERT INTO inbound (sid, sender, body) VALUES (?, ?, ?) ON CONFLICT (sid) DO NOTHING", (sid, sender, body))
            if cursor.rowcount:
                self.sqlite.execute("INSERT INTO job (message_id) VALUES (?)", (cursor.lastrowid,))
            self.sqlite.execute("COMMIT")
        except BaseException:
            self.sqlite.execute("ROLLBACK")
            raise


storage = Storage()


async def webhook(request: Request) -> Response:
    fields = parse_qsl((await request.body()).decode(), keep_blank_values=True)
    if not valid_signature(fields, request.headers.get("x-twilio-signature", "")):
        return Response(status_code=403)
    form: dict[str, Any] = dict(fields)
    sid = form.get("MessageSid")
    if not sid:
        return Response(status_code=400)
    await storage.store(sid, form.get("From", ""), form.get("Body", ""))
    return Response(EMPTY_TWIML, media_type="text/xml")


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await storage.open()
    try:
        yield
    finally:
        await storage.close()


app = Starlette(routes=[Route(PATH, webhook, methods=["POST"]), Route("/healthz", healthz)], lifespan=lifespan)
