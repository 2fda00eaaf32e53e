"""Live events on PostgreSQL: across instances (LISTEN/NOTIFY), in an order no late commit can
break (the (txid, id) cursor below the snapshot horizon), and through a dropped listener.

PostgreSQL only: SQLite runs one write transaction at a time, so neither two open event-writing
transactions nor a notification exist there (tests/test_events.py covers SQLite's stream).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest

from core import event_listener, events
from core.auth.tokens import create_token, create_user
from core.event_log import Cursor, live_edge, read_after
from core.runtime import Runtime
from core.storage.database import close_storage, open_storage
from core.testing.database import _truncate
from tests.helpers import EventStream, SECRET, eventually, inbound_body, runtime_for, served, write_config
from tests.recording_provider import signed_headers
from tests.test_process import RECORDER, serving

pytestmark = [pytest.mark.anyio, pytest.mark.storage]


@pytest.fixture
def pg_url(postgres_url: str | None) -> str:
    """The session's PostgreSQL database, emptied (the conftest's skip policy when there is none)."""
    if postgres_url is None:
        pytest.skip("PostgreSQL not reachable (set DATABASE_URL, or HOOKLINE_REQUIRE_POSTGRES=1 to fail)")
    asyncio.run(_truncate(postgres_url))
    return postgres_url


def _dsn(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


async def _auth() -> dict[str, str]:
    token = await create_token(await create_user("alan", "correct horse battery", "agent"))
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def _app(tmp_path: Path, url: str) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient, dict[str, str]]]:
    """One hookline in this event loop, serving on a port, with an agent's credentials."""
    runtime = runtime_for(write_config(tmp_path, url))
    async with served(runtime) as base:
        await eventually(lambda: runtime.host.events.listening, timeout=5)
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            yield runtime, client, await _auth()


async def _store_event(connection: asyncpg.Connection, state: str) -> int:
    """A `number.state` event as any writer stores one (it renders without a lookup)."""
    return await connection.fetchval(
        "INSERT INTO hookline_event (kind, data, created_at) VALUES ('number.state', $1::jsonb, now()) RETURNING id",
        f'{{"number_id":"n1","state":"{state}","state_detail":null}}',
    )


def _states(stream: EventStream) -> list[tuple[int, str]]:
    return [(int(event["id"]), event["data"]["state"]) for event in stream.kinds("number.state")]


async def _resumed(client: httpx.AsyncClient, auth: dict[str, str], last_id: int, expect: int) -> list[tuple[int, str]]:
    """What a client reconnecting with `Last-Event-ID: last_id` gets, read until `expect` events
    arrived and then 0.3 s more (so a duplicate would show)."""
    async with EventStream(client, {**auth, "Last-Event-ID": str(last_id)}) as stream:
        await stream.wait_for(lambda got: len(got) >= expect, timeout=3)
        await asyncio.sleep(0.3)
    return _states(stream)


# --------------------------------------------------------------------------- (i) two instances


def test_an_sse_client_on_one_instance_sees_a_webhook_stored_by_another_within_a_second(tmp_path, pg_url):
    """Two `hookline serve` processes on one database: the stream on A is woken by B's commit
    through LISTEN/NOTIFY (A's own poll is 15 s while it listens, so only the notification can
    make the second)."""
    config = write_config(tmp_path, pg_url, modules=[RECORDER])
    with serving(config, tmp_path) as a, serving(config, tmp_path) as b:
        assert "live events: listening on PostgreSQL" in a.output(), a.output()
        asyncio.run(_across_instances(pg_url, a.url, b.url))
        assert a.stop() == 0 and b.stop() == 0


async def _across_instances(url: str, a: str, b: str) -> None:
    await open_storage(url)
    try:
        auth = await _auth()
    finally:
        await close_storage()
    async with httpx.AsyncClient(base_url=a, timeout=10) as on_a, httpx.AsyncClient(base_url=b, timeout=10) as on_b:
        async with EventStream(on_a, auth) as stream:
            latencies = []
            for index, text in enumerate(["hola", "otra vez"]):
                body = inbound_body((f"cross-{index}", "+15550100123", text))
                posted = time.monotonic()
                response = await on_b.post("/webhooks/whatsapp/recorder", content=body, headers=signed_headers("n1", SECRET, body))
                assert response.status_code == 200, response.text
                await stream.wait_for(lambda got: len([e for e in got if e["event"] == "message.created"]) > index, timeout=3)
                created = stream.kinds("message.created")[index]
                assert created["data"]["message"]["text"] == text
                latencies.append(created["at"] - posted)
            await asyncio.sleep(0.3)
        assert len(stream.kinds("message.created")) == 2  # once each
        assert max(latencies) < 1.0, latencies


# --------------------------------------------------------------------------- (ii) out-of-order commits


async def test_a_transaction_committing_after_a_later_one_is_delivered_first_once_to_live_and_resuming_readers(tmp_path, pg_url):
    """Ids 'first' < 'second', but 'second' commits first: the old `id > last` stream delivered
    'second' and never went back. Both must reach everyone, in one order, once."""
    async with _app(tmp_path, pg_url) as (_, client, auth):
        one, two = await asyncpg.connect(_dsn(pg_url)), await asyncpg.connect(_dsn(pg_url))
        try:
            async with EventStream(client, auth) as live:
                before = await _store_event(one, "before")
                await live.wait_for(lambda got: len(got) == 1, timeout=2)

                held, later = one.transaction(), two.transaction()
                await held.start()
                first = await _store_event(one, "first")
                await later.start()
                second = await _store_event(two, "second")
                assert first < second
                await later.commit()
                await asyncio.sleep(0.5)  # 'second' is committed, yet no reader may pass 'first'
                assert _states(live) == [(before, "before")]
                async with EventStream(client, {**auth, "Last-Event-ID": str(before)}) as waiting:
                    await held.commit()
                    await live.wait_for(lambda got: len(got) == 3, timeout=2)
                    await waiting.wait_for(lambda got: len(got) == 2, timeout=2)
                    await asyncio.sleep(0.3)
                assert _states(live) == [(before, "before"), (first, "first"), (second, "second")]
                assert _states(waiting) == [(first, "first"), (second, "second")]

            assert await _resumed(client, auth, before, 2) == [(first, "first"), (second, "second")]
            assert await _resumed(client, auth, first, 1) == [(second, "second")]
            assert await _resumed(client, auth, second, 0) == []
        finally:
            await one.close()
            await two.close()


async def test_delivery_follows_transaction_order_even_where_ids_do_not(tmp_path, pg_url):
    """A transaction that began writing first but stored its event last: it is delivered first
    (ids then run backwards in the stream), and resuming from either id still gets exactly the rest."""
    async with _app(tmp_path, pg_url) as (_, client, auth):
        one, two = await asyncpg.connect(_dsn(pg_url)), await asyncpg.connect(_dsn(pg_url))
        try:
            async with EventStream(client, auth) as live:
                early, late = one.transaction(), two.transaction()
                await early.start()
                await one.fetchval("SELECT pg_current_xact_id()")  # a transaction id, as any write gets one
                await late.start()
                low = await _store_event(two, "stored first")
                high = await _store_event(one, "began first")
                assert low < high
                await late.commit()
                await asyncio.sleep(0.3)
                assert live.events == []  # 'stored first' waits for the older transaction
                await early.commit()
                await live.wait_for(lambda got: len(got) == 2, timeout=2)
                await asyncio.sleep(0.3)
            assert _states(live) == [(high, "began first"), (low, "stored first")]
            assert await _resumed(client, auth, 0, 2) == [(high, "began first"), (low, "stored first")]
            assert await _resumed(client, auth, high, 1) == [(low, "stored first")]
            assert await _resumed(client, auth, low, 0) == []
        finally:
            await one.close()
            await two.close()


async def test_rows_held_by_a_transaction_without_events_are_delivered_when_it_ends(tmp_path, pg_url, monkeypatch):
    """The transaction that releases held rows notifies nobody: the stream re-reads on its own,
    soon (not at the poll, which is pushed out of reach here)."""
    monkeypatch.setattr(events, "FALLBACK_POLL_SECONDS", 60.0)
    async with _app(tmp_path, pg_url) as (_, client, auth):
        holder, writer = await asyncpg.connect(_dsn(pg_url)), await asyncpg.connect(_dsn(pg_url))
        try:
            async with EventStream(client, auth) as live:
                held = holder.transaction()
                await held.start()
                await holder.fetchval("SELECT pg_current_xact_id()")
                stored = await _store_event(writer, "behind an open transaction")
                await asyncio.sleep(0.4)
                assert live.events == []
                ended = time.monotonic()
                await held.rollback()
                await live.wait_for(lambda got: len(got) == 1, timeout=2)
            assert _states(live) == [(stored, "behind an open transaction")]
            assert live.events[0]["at"] - ended < 1.0
        finally:
            await holder.close()
            await writer.close()


async def test_a_transaction_open_in_another_database_does_not_hold_events_back(pg_url):
    """Transaction ids are cluster-wide, but only this database's transactions can write here."""
    other = await asyncpg.connect(_dsn(pg_url).rsplit("/", 1)[0] + "/postgres")
    mine = await asyncpg.connect(_dsn(pg_url))
    await open_storage(pg_url)
    try:
        elsewhere = other.transaction()
        await elsewhere.start()
        await other.fetchval("SELECT pg_current_xact_id()")
        stored = await _store_event(mine, "while another database waits")
        from tortoise.connection import get_connection

        page = await read_after(get_connection("default"), Cursor(0, 0), 10)
        assert [event.cursor.id for event in page.events] == [stored] and not page.held
        # and a stream opened now starts past it: it happened before
        assert await live_edge(get_connection("default")) > page.events[0].cursor
        await elsewhere.rollback()
    finally:
        await close_storage()
        await other.close()
        await mine.close()


# --------------------------------------------------------------------------- (iii) the listener dropped


async def test_events_stored_while_the_listener_is_down_arrive_when_it_reconnects(tmp_path, pg_url, monkeypatch, caplog):
    """The listening backend is terminated; an event stored by another writer while it is down
    (no notification reaches this process) arrives through the resync, not the poll (pushed out
    of reach), and one stored after the reconnection through the new LISTEN."""
    monkeypatch.setattr(events, "POLL_SECONDS", 60.0)
    monkeypatch.setattr(events, "FALLBACK_POLL_SECONDS", 60.0)
    monkeypatch.setattr(event_listener, "_backoff", lambda failures: 0.5)  # deaf long enough to write in
    caplog.set_level(logging.INFO, logger="hookline.events")
    async with _app(tmp_path, pg_url) as (runtime, client, auth):
        bus = runtime.host.events
        admin, writer = await asyncpg.connect(_dsn(pg_url)), await asyncpg.connect(_dsn(pg_url))
        try:
            async with EventStream(client, auth) as live:
                pid = await admin.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
                    event_listener.APPLICATION_NAME,
                )
                assert pid is not None
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
                await eventually(lambda: not bus.listening, timeout=2)
                await asyncio.sleep(0.1)  # the streams' re-read on the drop is over
                during = await _store_event(writer, "while deaf")
                await asyncio.sleep(0.2)
                assert live.events == [] and not bus.listening  # nothing told this process yet
                await eventually(lambda: bus.listening, timeout=3)
                reconnected = time.monotonic()
                await live.wait_for(lambda got: len(got) == 1, timeout=2)
                after = await _store_event(writer, "after")
                await live.wait_for(lambda got: len(got) == 2, timeout=2)
                await asyncio.sleep(0.3)
            assert _states(live) == [(during, "while deaf"), (after, "after")]
            assert live.events[0]["at"] - reconnected < 1.0
            new_pid = await admin.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
                event_listener.APPLICATION_NAME,
            )
            assert new_pid not in (None, pid)
        finally:
            await admin.close()
            await writer.close()
    logged = [record.getMessage() for record in caplog.records if record.name == "hookline.events"]
    assert any("listening connection was lost" in line for line in logged), logged
    assert any("listener reconnected" in line for line in logged), logged
