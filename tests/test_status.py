"""Delivery status webhooks: forward only, kept for audit, applied late when they beat the send."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import httpx
import pytest

from core import hookimpl
from core.storage.models import Job, Message, StatusEvent
from core.types import DeliveryStatus
from tests.fake_api import running_fake_api
from tests.helpers import eventually, inbound_body, post_signed, runtime_for, started, write_config

pytestmark = pytest.mark.anyio

CUSTOMER = "+15550100123"


class StatusRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, str, str]] = []

    @hookimpl
    async def on_status_update(self, message, event) -> None:
        self.calls.append((message.id, message.status.value, event.raw_status))


async def no_jobs() -> bool:
    return await Job.all().count() == 0


async def post_statuses(client: httpx.AsyncClient, *statuses: dict[str, Any]) -> None:
    response = await post_signed(client, inbound_body(statuses=list(statuses)), path="/webhooks/whatsapp/recorder/status")
    assert response.status_code == 200, response.text
    assert response.json()["statuses"] == len(statuses)


async def sent_message(runtime: Any, text: str = "hi") -> tuple[Message, str]:
    """A message the fake API accepted: stored `queued` with the provider's id, and its `queued`
    notification run (a workflow reads the message when notified: a status webhook posted
    before that would already show)."""
    conversation = await runtime.host.conversation_with("n1", CUSTOMER)
    message = await runtime.host.send_text(conversation, text)

    async def has_id() -> bool:
        return (await Message.get(id=message.id)).external_id is not None

    await eventually(has_id, timeout=5)
    await eventually(no_jobs, timeout=5)
    stored = await Message.get(id=message.id)
    assert stored.status is DeliveryStatus.QUEUED
    return stored, stored.external_id


async def events_of(message_id: int) -> list[tuple[str, bool]]:
    return [(event.raw_status, event.applied) for event in await StatusEvent.filter(message_id=message_id).order_by("id")]


async def test_read_before_delivered_ends_read(tmp_path, database_url):
    recorder = StatusRecorder()
    with running_fake_api() as fake:
        runtime = runtime_for(write_config(tmp_path, database_url, api_url=fake.url, enabled=["recorder", "p0"]), recorder)
        async with started(runtime) as client:
            message, sid = await sent_message(runtime)
            await post_statuses(client, {"id": sid, "status": "read"})
            await post_statuses(client, {"id": sid, "status": "delivered"})
            await post_statuses(client, {"id": sid, "status": "sent"})
            await eventually(no_jobs, timeout=5)
            assert (await Message.get(id=message.id)).status is DeliveryStatus.READ
            assert await events_of(message.id) == [("queued", True), ("read", True), ("delivered", False), ("sent", False)]
    assert recorder.calls == [(message.id, "queued", "queued"), (message.id, "read", "read")]


async def test_duplicate_status_notifies_workflows_once(tmp_path, database_url):
    recorder = StatusRecorder()
    with running_fake_api() as fake:
        runtime = runtime_for(write_config(tmp_path, database_url, api_url=fake.url, enabled=["recorder", "p0"]), recorder)
        async with started(runtime) as client:
            message, sid = await sent_message(runtime)
            await post_statuses(client, {"id": sid, "status": "delivered"})
            await post_statuses(client, {"id": sid, "status": "delivered"})
            await post_statuses(client, {"id": sid, "status": "delivered"}, {"id": sid, "status": "delivered"})
            await eventually(no_jobs, timeout=5)
            assert (await Message.get(id=message.id)).status is DeliveryStatus.DELIVERED
            assert await events_of(message.id) == [("queued", True), ("delivered", True)] + [("delivered", False)] * 3
    assert recorder.calls == [(message.id, "queued", "queued"), (message.id, "delivered", "delivered")]


async def test_every_status_webhook_is_kept_as_an_event(tmp_path, database_url):
    with running_fake_api() as fake:
        runtime = runtime_for(write_config(tmp_path, database_url, api_url=fake.url))
        async with started(runtime) as client:
            message, sid = await sent_message(runtime)
            posted = [
                {"id": sid, "status": "sent"},
                {"id": sid, "status": "sent"},  # duplicate
                {"id": sid, "status": "queued"},  # regression
                {"id": "never-sent-by-us", "status": "delivered"},  # not ours (yet)
                {"id": sid, "status": "delivered"},
            ]
            for status in posted:
                await post_statuses(client, status)
            events = await StatusEvent.all().order_by("id")
            assert [(e.external_id, e.raw_status, e.message_id, e.applied) for e in events] == [
                (sid, "queued", message.id, True),  # the send's own answer
                (sid, "sent", message.id, True),
                (sid, "sent", message.id, False),
                (sid, "queued", message.id, False),
                ("never-sent-by-us", "delivered", None, False),
                (sid, "delivered", message.id, True),
            ]
            assert events[1].payload == {"id": sid, "status": "sent"}
            assert (await Message.get(id=message.id)).status is DeliveryStatus.DELIVERED


async def test_failed_status_keeps_the_provider_error(tmp_path, database_url):
    recorder = StatusRecorder()
    with running_fake_api() as fake:
        runtime = runtime_for(write_config(tmp_path, database_url, api_url=fake.url, enabled=["recorder", "p0"]), recorder)
        async with started(runtime) as client:
            message, sid = await sent_message(runtime)
            await post_statuses(client, {"id": sid, "status": "sent"})
            await post_statuses(
                client, {"id": sid, "status": "failed", "error_code": "63016", "error_text": "Outside the 24h window"}
            )
            await eventually(no_jobs, timeout=5)
            stored = await Message.get(id=message.id)
            assert (stored.status, stored.error_code, stored.error_text) == (
                DeliveryStatus.FAILED, "63016", "Outside the 24h window",
            )
            event = await StatusEvent.get(message_id=message.id, raw_status="failed")
            assert (event.status, event.error_code, event.error_text, event.applied) == (
                DeliveryStatus.FAILED, "63016", "Outside the 24h window", True,
            )
    assert recorder.calls[-1] == (message.id, "failed", "failed")


async def test_status_arriving_before_the_send_completes_is_applied_afterwards(tmp_path, database_url):
    recorder = StatusRecorder()
    with running_fake_api(delay=0.6) as fake:
        runtime = runtime_for(write_config(tmp_path, database_url, api_url=fake.url, enabled=["recorder", "p0"]), recorder)
        async with started(runtime) as client:
            conversation = await runtime.host.conversation_with("n1", CUSTOMER)
            message = await runtime.host.send_text(conversation, "fast receipts")
            sid = f"FAKE000001-{message.id}"  # what the fake will answer for its first request
            await post_statuses(client, {"id": sid, "status": "sent"}, {"id": sid, "status": "read"})
            # The statuses really came first: the send has not stored the provider's id yet.
            early = await Message.get(id=message.id)
            assert (early.status, early.external_id) == (DeliveryStatus.PENDING, None)
            kept = await StatusEvent.filter(external_id=sid).order_by("id")
            assert [(e.raw_status, e.message_id, e.applied) for e in kept] == [("sent", None, False), ("read", None, False)]

            async def read() -> bool:
                return (await Message.get(id=message.id)).status is DeliveryStatus.READ

            await eventually(read, timeout=5)
            await eventually(no_jobs, timeout=5)
            stored = await Message.get(id=message.id)
            assert stored.external_id == sid
            events = await StatusEvent.filter(external_id=sid).order_by("id")
            assert [(e.raw_status, e.message_id, e.applied) for e in events] == [
                ("sent", message.id, True), ("read", message.id, True), ("queued", message.id, True),
            ]
    assert recorder.calls == [
        (message.id, "read", "queued"), (message.id, "read", "sent"), (message.id, "read", "read"),
    ]


async def test_status_racing_the_send_commit_is_still_applied(tmp_path, database_url, monkeypatch):
    """The webhook looks for the message before the send commits, and stores its event after the
    send looked for early statuses: neither side may leave the event unapplied."""
    import core.sending

    look_for_early = core.sending._apply_early_statuses
    racing: list[asyncio.Task[None]] = []
    with running_fake_api() as fake:
        runtime = runtime_for(write_config(tmp_path, database_url, api_url=fake.url))
        async with started(runtime) as client:

            async def then_a_status_arrives(host, connection, message, provider, external_id) -> None:
                await look_for_early(host, connection, message, provider, external_id)
                webhook = post_statuses(client, {"id": external_id, "status": "delivered"})
                # In the request's own context, as a real webhook arrives: not inside this transaction.
                racing.append(asyncio.create_task(webhook, context=outside.copy()))
                # Let the webhook run to its end before the send commits if storage allows it
                # (PostgreSQL does unless they are serialised; SQLite runs one transaction at a time).
                await asyncio.wait(racing, timeout=0.3)

            outside = contextvars.copy_context()
            monkeypatch.setattr(core.sending, "_apply_early_statuses", then_a_status_arrives)
            conversation = await runtime.host.conversation_with("n1", CUSTOMER)
            message = await runtime.host.send_text(conversation, "photo finish")

            async def delivered() -> bool:
                return (await Message.get(id=message.id)).status is DeliveryStatus.DELIVERED

            await eventually(lambda: bool(racing), timeout=5)
            await racing[0]
            await eventually(delivered, timeout=3)
            event = await StatusEvent.get(raw_status="delivered")
            assert (event.message_id, event.applied) == (message.id, True)


async def test_unknown_raw_status_is_kept_and_moves_nothing(tmp_path, database_url):
    recorder = StatusRecorder()
    with running_fake_api() as fake:
        runtime = runtime_for(write_config(tmp_path, database_url, api_url=fake.url, enabled=["recorder", "p0"]), recorder)
        async with started(runtime) as client:
            message, sid = await sent_message(runtime)
            await post_statuses(client, {"id": sid, "status": "teleported"})
            await eventually(no_jobs, timeout=5)
            assert (await Message.get(id=message.id)).status is DeliveryStatus.QUEUED
            event = await StatusEvent.get(raw_status="teleported")
            assert (event.message_id, event.status, event.applied, event.external_id) == (message.id, None, False, sid)
    assert recorder.calls == [(message.id, "queued", "queued")]


async def test_status_naming_an_inbound_message_moves_nothing(tmp_path, database_url):
    recorder = StatusRecorder()
    runtime = runtime_for(write_config(tmp_path, database_url, enabled=["recorder", "p0"]), recorder)
    async with started(runtime) as client:
        response = await post_signed(client, inbound_body(("wamid.in-1", CUSTOMER, "hola")))
        assert response.status_code == 200
        await post_statuses(client, {"id": "wamid.in-1", "status": "read"})
        await eventually(no_jobs, timeout=5)
        inbound = await Message.get(external_id="wamid.in-1")
        assert inbound.status is DeliveryStatus.RECEIVED
        event = await StatusEvent.get(external_id="wamid.in-1")
        assert (event.raw_status, event.applied) == ("read", False)
    assert recorder.calls == []
